"""Outgoing webhooks against a real receiver on 127.0.0.1 that is down, slow, answers 500,
and a daemon killed with SIGKILL mid-delivery: every event arrives, duplicates only with the
same delivery id, signatures verify."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import Runner, local_config, put_file
from daemon_support import DaemonProcess, daemon_config, free_port, wait_for
from syncd.app import App
from syncd.catalogue import items
from syncd.catalogue.counts import read_counts
from syncd.sync.rules import RULES, Change
from syncd.service.webhooks import SIGNATURE_HEADER, Deliverer, sign, verify
from syncd.sync.applier import Applier
from syncd.sync.events import ObjectCreated

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL

SECRET = "whsec-test-0123456789"


class Receiver:
    """An HTTP receiver on 127.0.0.1: answers with `statuses` in turn (the last repeats),
    after `delay` seconds; records each request's events and whether its signature held."""

    def __init__(self, port: int | None = None, *, statuses=(200,), delay: float = 0.0):
        self.port = port or free_port()
        self.statuses, self.delay = list(statuses), delay
        self.requests: list[dict] = []
        self.started = threading.Event()  # set when a request has come in
        self._lock = threading.Lock()
        self.server = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.started.set()
                with receiver._lock:
                    status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                    receiver.requests.append({
                        "events": json.loads(body)["events"], "status": status,
                        "signed": verify(SECRET, self.headers.get(SIGNATURE_HEADER, ""), body)})
                time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up (timeout) or died

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def events(self, *, accepted_only=True) -> list[dict]:
        with self._lock:
            return [e for r in self.requests if r["status"] == 200 or not accepted_only for e in r["events"]]


def hook_config(tmp_path, storage, url: str, *, extra: str = "", allow=True) -> str:
    fetch = '[fetch]\nallow_hosts = ["127.0.0.1"]\n' if allow else ""
    return f"""
        {fetch}
        [[webhooks]]
        name = "rx"
        url = "{url}"
        secret = "{SECRET}"
        retry_seconds = 0.2
        max_attempts = 3
        timeout_seconds = 0.5
        {extra}
        """


@pytest.fixture
def clock():
    class Clock:
        now = time.time()

        def __call__(self):
            return self.now

    return Clock()


def created(app, storage, names):
    """Files written and their events applied: item.created rows in the outbox."""
    applier = Applier(app.catalogue, lambda n: (app.dataset(n), app.dataset_driver(n)),
                      path_filter=app.path_filter)
    try:
        for name in names:
            put_file(storage, name, name)
        applier.apply([ObjectCreated(dataset="photos", key=n, source="test", received=time.time())
                       for n in names])
    finally:
        applier.close()


def deliverer(app, clock):
    return Deliverer(app.config.catalogue.path, app.config.webhooks, app.config.fetch,
                     clock=clock)


def test_signature_recipe():
    body = b'{"events": []}'
    header = sign(SECRET, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, header, body, now=1_700_000_100)
    assert not verify(SECRET, header, body + b" ", now=1_700_000_100)  # body changed
    assert not verify("another-secret-000", header, body, now=1_700_000_100)
    assert not verify(SECRET, header, body, now=1_700_001_000)  # too old: a replay
    assert not verify(SECRET, "garbage", body)


def test_receiver_down_then_up_gets_every_event_once(tmp_path, storage, clock):
    receiver = Receiver()
    config = local_config(tmp_path, storage, extra=hook_config(tmp_path, storage, receiver.url))
    with App.from_file(config) as app:
        created(app, storage, ["a.jpg", "b.jpg", "c.jpg"])
        sender = deliverer(app, clock)
        try:
            assert sender.deliver_due() == 0  # nothing listens: connection refused
            [pending] = [c for c in Runner(config).json_lines("status") if c.get("webhook")]
            assert (pending["state"], pending["events"]) == ("pending", 3)
            assert "cannot connect" in pending["last_error"]
            receiver.start()
            assert sender.deliver_due() == 0  # not due yet: backoff
            clock.now += 0.25
            assert sender.deliver_due() == 3
        finally:
            sender.stop()
            receiver.stop()
    events = receiver.events()
    assert sorted(e["data"]["filename"] for e in events) == ["/a.jpg", "/b.jpg", "/c.jpg"]
    assert {e["type"] for e in events} == {"item.created"}
    assert len({e["id"] for e in events}) == 3
    assert all(r["signed"] for r in receiver.requests)
    assert events[0]["attempt"] == 2  # one failed try before


def test_500_and_slow_answers_are_retried_with_the_same_delivery_ids(tmp_path, storage, clock):
    receiver = Receiver(statuses=[500, 200, 200], delay=0.0).start()
    config = local_config(tmp_path, storage, extra=hook_config(tmp_path, storage, receiver.url))
    with App.from_file(config) as app:
        created(app, storage, ["a.jpg", "b.jpg"])
        sender = deliverer(app, clock)
        try:
            assert sender.deliver_due() == 0  # 500
            clock.now += 0.25
            receiver.delay = 1.0  # slower than timeout_seconds = 0.5: the sender gives up
            assert sender.deliver_due() == 0
            clock.now += 0.5
            receiver.delay = 0.0
            assert sender.deliver_due() == 2
        finally:
            sender.stop()
            receiver.stop()
    batches = [[e["id"] for e in r["events"]] for r in receiver.requests]
    assert len(batches) == 3 and batches[0] == batches[1] == batches[2]  # same events, same ids
    assert [e["attempt"] for e in receiver.requests[-1]["events"]] == [3, 3]


def test_dead_letters_after_max_attempts_show_in_status_and_metrics_and_retry(tmp_path, storage, clock):
    receiver = Receiver(statuses=[500]).start()
    config = local_config(tmp_path, storage, extra=hook_config(tmp_path, storage, receiver.url))
    run = Runner(config)
    with App.from_file(config) as app:
        created(app, storage, ["a.jpg"])
        sender = deliverer(app, clock)
        try:
            for _ in range(3):
                sender.deliver_due()
                clock.now += 10
            assert sender.dead == 1
        finally:
            sender.stop()
    [row] = [c for c in run.json_lines("status") if c.get("webhook")]
    assert (row["state"], row["events"], row["last_error"]) == ("dead", 1, "HTTP 500 Internal Server Error")
    text = run("status").stdout
    assert "webhook rx: dead 1 (last error: HTTP 500 Internal Server Error)" in text
    from syncd.service.metrics import Metrics

    exposition = Metrics(tmp_path / "catalogue.db").exposition().decode()
    assert 'syncd_webhook_events{state="dead",webhook="rx"} 1.0' in exposition
    assert run("webhooks", "retry").stdout.strip() == "1 dead events queued again"
    receiver.statuses = [200]
    with App.from_file(config) as app:
        sender = deliverer(app, clock)
        try:
            assert sender.deliver_due() == 1
        finally:
            sender.stop()
            receiver.stop()


def test_a_destination_the_ssrf_guard_refuses_is_dead_at_once(tmp_path, storage, clock):
    config = local_config(tmp_path, storage,
                          extra=hook_config(tmp_path, storage, "http://127.0.0.1:9/hook", allow=False))
    with App.from_file(config) as app:
        created(app, storage, ["a.jpg"])
        sender = deliverer(app, clock)
        try:
            assert sender.deliver_due() == 0
        finally:
            sender.stop()
    [row] = [c for c in Runner(config).json_lines("status") if c.get("webhook")]
    assert row["state"] == "dead" and "loopback address" in row["last_error"]


def test_an_item_and_its_event_are_written_together_or_not_at_all(tmp_path, storage):
    """The outbox rows come with the rule applied in the writer's transaction: a failure
    before the commit leaves neither the item nor its event."""
    config = local_config(tmp_path, storage, extra=hook_config(tmp_path, storage, "http://127.0.0.1:9/"))
    with App.from_file(config) as app:
        dataset = app.dataset("photos")
        with pytest.raises(RuntimeError):
            with app.catalogue.transaction(immediate=True):
                pk = items.insert(app.catalogue, dataset, "/x.jpg", size=1, mtime=1.0, etag="e", md5=None)
                items.apply_rule(app.catalogue, RULES[Change.CREATED], [pk])
                assert [r["events"] for r in read_counts(app.config.catalogue.path).webhooks] == []  # not committed
                raise RuntimeError("crash before commit")
        assert read_counts(app.config.catalogue.path).webhooks == []
        assert app.catalogue.count_items(dataset)["present"] == 0
        with app.catalogue.transaction(immediate=True):
            pk = items.insert(app.catalogue, dataset, "/x.jpg", size=1, mtime=1.0, etag="e", md5=None)
            items.apply_rule(app.catalogue, RULES[Change.CREATED], [pk])
        [row] = read_counts(app.config.catalogue.path).webhooks
        assert (row["webhook"], row["state"], row["events"]) == ("rx", "pending", 1)


def test_sync_emits_item_and_sync_events(tmp_path, storage, clock):
    receiver = Receiver().start()
    config = local_config(tmp_path, storage, extra=hook_config(tmp_path, storage, receiver.url))
    put_file(storage, "a.jpg", "a")
    put_file(storage, "b.jpg", "b")
    Runner(config)("sync", "--no-preprocess")
    (storage / "a.jpg").rename(storage / "c.jpg")
    (storage / "b.jpg").write_text("bb")
    Runner(config)("sync", "--no-preprocess")
    with App.from_file(config) as app:
        sender = deliverer(app, clock)
        try:
            sender.deliver_due()
        finally:
            sender.stop()
            receiver.stop()
    seen = [(e["type"], e["data"].get("filename")) for e in receiver.events()]
    assert seen.count(("sync.finished", None)) == 2
    assert sorted(s for s in seen if s[0] != "sync.finished") == [
        ("item.created", "/a.jpg"), ("item.created", "/b.jpg"), ("item.moved", "/c.jpg"),
        ("item.updated", "/b.jpg")]
    finished = [e["data"] for e in receiver.events() if e["type"] == "sync.finished"]
    assert finished[0]["created"] == 2 and finished[1]["moved"] == 1
    [moved] = [e["data"] for e in receiver.events() if e["type"] == "item.moved"]
    assert (moved["filename"], moved["old_filename"]) == ("/c.jpg", "/a.jpg")


def test_moves_seen_by_the_daemons_applier_carry_the_old_path(tmp_path, storage):
    """A rename event, and a delete followed by the same content elsewhere within the move
    window: both item.moved events name the path the item left."""
    from syncd.catalogue.outbox import Outbox
    from syncd.sync.events import ObjectDeleted, ObjectMoved

    config = local_config(tmp_path, storage, extra=hook_config(tmp_path, storage, "http://127.0.0.1:9/"))
    put_file(storage, "a.jpg", "a")
    put_file(storage, "b.jpg", "b")
    with App.from_file(config) as app:
        applier = Applier(app.catalogue, lambda name: (app.dataset(name), app.dataset_driver(name)),
                          move_window=30)

        def ev(kind, key, **extra):
            return kind(dataset="photos", key=key, source="test", received=time.time(), **extra)

        try:
            applier.apply([ev(ObjectCreated, "a.jpg"), ev(ObjectCreated, "b.jpg")])
            (storage / "a.jpg").rename(storage / "renamed.jpg")
            applier.apply([ev(ObjectMoved, "renamed.jpg", old_key="a.jpg")])
            (storage / "b.jpg").rename(storage / "sub-b.jpg")
            applier.apply([ev(ObjectDeleted, "b.jpg")])
            applier.apply([ev(ObjectCreated, "sub-b.jpg")])
        finally:
            applier.close()
        entries = Outbox(app.catalogue).claim("rx", time.time() + 60, limit=100, lease_seconds=60)
        moved = [e.data for e in entries if e.event == "item.moved"]
    assert [(m["old_filename"], m["filename"]) for m in moved] == [
        ("/a.jpg", "/renamed.jpg"), ("/b.jpg", "/sub-b.jpg")]


def test_daemon_killed_mid_delivery_delivers_everything_after_restart(tmp_path, storage):
    receiver = Receiver(delay=3.0).start()  # the first POST hangs while the daemon is killed
    # timeout 4 s: the killed daemon's claim on the batch in flight lapses 13 s later.
    config = daemon_config(tmp_path, storage, daemon="debounce_seconds = 0.05",
                           extra=hook_config(tmp_path, storage, receiver.url).replace(
                               "timeout_seconds = 0.5", "timeout_seconds = 4"))
    names = [f"k{i}.jpg" for i in range(5)]
    daemon = DaemonProcess(config, tmp_path / "daemon.log", "--no-preprocess").start()
    try:
        for name in names:
            put_file(storage, name, name)
        wait_for(receiver.started.is_set, what="a delivery under way")
        daemon.kill()  # SIGKILL while the receiver holds the POST open
        receiver.delay = 0.0
        daemon = DaemonProcess(config, tmp_path / "daemon.log", "--no-preprocess").start()
        wanted = {"/" + n for n in names}
        wait_for(lambda: wanted <= {e["data"].get("filename") for e in receiver.events()
                                    if e["type"] == "item.created"}, timeout=40, what="all received")

        def outbox_settled():
            rows = [r for r in Runner(config).json_lines("status") if r.get("webhook")]
            return rows if {r["state"] for r in rows} == {"delivered"} else None

        # The batch the killed daemon never heard back about is sent again, by id.
        wait_for(outbox_settled, timeout=40, what="every outbox row delivered")
    finally:
        daemon.close()
        receiver.stop()
    by_id: dict[str, dict] = {}
    for event in receiver.events(accepted_only=False):
        assert by_id.setdefault(event["id"], event)["data"] == event["data"]  # a duplicate is the same event
    created_names = sorted(e["data"]["filename"] for e in by_id.values() if e["type"] == "item.created")
    assert created_names == sorted(wanted)  # each event once by id, none lost
    first = receiver.requests[0]["events"]
    resent = [r for r in receiver.requests[1:] if [e["id"] for e in r["events"]][:len(first)] == [e["id"] for e in first]]
    assert resent, "the batch in flight at the kill was delivered again, with the same ids"


def test_jobs_emit_done_and_failed(tmp_path, storage, clock):
    from daemon_support import jpeg

    receiver = Receiver().start()
    config = local_config(tmp_path, storage, extra=hook_config(tmp_path, storage, receiver.url).replace(
        "secret =", 'events = ["job.done", "job.failed"]\n        secret ='))
    put_file(storage, "good.jpg", jpeg(1))
    put_file(storage, "bad.jpg", b"not a jpeg at all")
    Runner(config)("sync", expect=None)
    with App.from_file(config) as app:
        sender = deliverer(app, clock)
        try:
            sender.deliver_due()
        finally:
            sender.stop()
            receiver.stop()
    seen = sorted((e["type"], e["data"]["filename"]) for e in receiver.events())
    assert seen == [("job.done", "/good.jpg"), ("job.failed", "/bad.jpg")]
    [failed] = [e["data"] for e in receiver.events() if e["type"] == "job.failed"]
    assert failed["kind"] == "preprocess" and "not an image" in failed["error"]


def test_expand_jobs_name_their_archive_in_job_events(tmp_path, storage, clock):
    """An expand job never reaches a worker process: its job.failed / job.done events still
    carry the archive item's dataset, id and filename."""
    from test_expand_archives import tar_bytes

    receiver = Receiver().start()
    config = local_config(tmp_path, storage, extra="expand_archives = true\n" + hook_config(
        tmp_path, storage, receiver.url).replace(
        "secret =", 'events = ["job.done", "job.failed"]\n        secret ='))
    put_file(storage, "drops/fake.tar", b"not a tar archive")
    put_file(storage, "drops/good.tar", tar_bytes({"a.txt": b"a"}, mode="w"))
    Runner(config)("sync", "--no-preprocess")
    Runner(config)("jobs", "run", "--workers", "0", expect=None)
    with App.from_file(config) as app:
        ids = {i["filename"]: i["id"] for i in app.catalogue.iter_items(app.dataset("photos"))}
        sender = deliverer(app, clock)
        try:
            sender.deliver_due()
        finally:
            sender.stop()
            receiver.stop()
    expands = {e["data"]["filename"]: (e["type"], e["data"]) for e in receiver.events()
               if e["data"]["kind"] == "expand"}
    assert sorted(expands) == ["/drops/fake.tar", "/drops/good.tar"]
    kind, failed = expands["/drops/fake.tar"]
    assert kind == "job.failed" and "not a readable tar archive" in failed["error"]
    assert (failed["dataset"], failed["id"]) == ("photos", ids["/drops/fake.tar"])
    assert expands["/drops/good.tar"][0] == "job.done"
    assert expands["/drops/good.tar"][1]["id"] == ids["/drops/good.tar"]
