"""The catalogue's contract, on both engines: a SQLite file and a real PostgreSQL server.

Every test here runs on each backend (the `catalogue_backend` fixture); a few compare the two
side by side (the same storage synced into both gives the same item JSON, byte for byte).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import local_config, put_file
from syncd.app import App
from syncd.catalogue import Catalogue
from syncd.catalogue import items as item_writes
from syncd.catalogue.jobs import JobQueue
from syncd.catalogue.schema import MIGRATIONS
from syncd.config import load_config
from syncd.errors import CatalogueBusyError, CatalogueError, ConfigError

pytestmark = pytest.mark.both_backends

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def tree(storage: Path) -> None:
    put_file(storage, "a.jpg", "aaaa")
    put_file(storage, "cats/b.jpg", "bbbbbb")
    put_file(storage, "cats/deep/c.png", "c")
    put_file(storage, "dogs/d.txt", "dddd dddd")
    (storage / "ünï code.txt").write_text("ü")
    link = {"type": "link", "shebang": "dataloop",
            "metadata": {"dltype": "link", "linkInfo": {"type": "url", "ref": "https://example.com/x.jpg",
                                                         "mimetype": "image/jpeg"}}}
    put_file(storage, "links/x_link.json", json.dumps(link))


def normalized(item: dict, instance: str) -> str:
    """The item JSON as text, with what differs between two catalogues by design (their
    instance id, the clock) blanked."""
    text = json.dumps(item, ensure_ascii=False)
    text = text.replace(instance, "INSTANCE")
    for key in ("createdAt", "updatedAt", "at"):
        for value in _values(item, key):
            text = text.replace(value, "TIME")
    return text


def _values(data, key):
    if isinstance(data, dict):
        for k, v in data.items():
            if k == key and isinstance(v, str):
                yield v
            yield from _values(v, key)
    elif isinstance(data, list):
        for v in data:
            yield from _values(v, key)


# -- schema ---------------------------------------------------------------------------------

def test_schema_version_is_the_migrations_count_and_opening_again_keeps_it(catalogue_location):
    with Catalogue(catalogue_location) as catalogue:
        assert catalogue.version == len(MIGRATIONS)
        instance = catalogue.instance
    with Catalogue(catalogue_location) as catalogue:
        assert catalogue.version == len(MIGRATIONS)
        assert catalogue.instance == instance and len(instance) == 8


def test_a_newer_schema_is_refused(catalogue_location):
    with Catalogue(catalogue_location) as catalogue:
        with catalogue.transaction(immediate=True):
            catalogue.dialect.set_version(catalogue._conn, 99)
    with pytest.raises(CatalogueError, match="newer syncd"):
        Catalogue(catalogue_location)


def test_many_processes_opening_a_new_catalogue_migrate_it_once(catalogue_location):
    errors = []

    def open_it():
        try:
            Catalogue(catalogue_location).close()
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Catalogue(catalogue_location) as catalogue:
        assert catalogue.version == len(MIGRATIONS)


# -- items, the listing diff ----------------------------------------------------------------

def test_sync_diff_created_updated_moved_deleted(app, storage):
    tree(storage)
    first = app.sync("photos")
    assert (first.created, first.updated, first.moved, first.deleted) == (6, 0, 0, 0)
    os.rename(storage / "cats/b.jpg", storage / "dogs/b.jpg")  # same inode: a move
    put_file(storage, "a.jpg", "changed content")
    (storage / "dogs/d.txt").unlink()
    put_file(storage, "new.jpg", "new")
    second = app.sync("photos")
    assert (second.created, second.updated, second.moved, second.deleted, second.unchanged) == \
        (1, 1, 1, 1, 3)
    found = {i["filename"]: i for i in app.catalogue.iter_items(app.dataset("photos"))}
    assert found["/dogs/d.txt"]["state"] == "missing"
    assert "/cats/b.jpg" not in found and found["/dogs/b.jpg"]["state"] == "present"
    assert found["/links/x_link.json"]["type"] == "link"
    # Item ids keep their catalogue's instance and count up from 1.
    pks = sorted(app.catalogue.item_pk(i["id"]) for i in found.values())
    assert pks == list(range(1, 8))
    third = app.sync("photos", prune=True)
    assert third.unchanged == 6 and "/dogs/d.txt" not in {
        i["filename"] for i in app.catalogue.iter_items(app.dataset("photos"))}


def test_keyset_pages_and_folders_follow_bytewise_filename_order(app, storage):
    for key in ["B.jpg", "a.jpg", "a/b.jpg", "a-b.jpg", "é.jpg", "_x.jpg", "Z/1.jpg"]:
        put_file(storage, key, key)
    app.sync("photos")
    from syncd.catalogue import browse

    names = [i["filename"] for i in app.catalogue.iter_items(app.dataset("photos"), batch=2)]
    assert names == sorted(names, key=lambda n: n.encode())
    page, after = browse.page(app.catalogue, app.dataset("photos"), limit=3)
    assert [i["filename"] for i in page] == names[:3] and after == names[2]
    assert browse.folders(app.catalogue, app.dataset("photos")) == ["/Z", "/a"]


def test_item_writes_one_at_a_time(app):
    dataset = app.dataset("photos")
    catalogue = app.catalogue
    with catalogue.transaction(immediate=True):
        pk = item_writes.insert(catalogue, dataset, "/x/one.jpg", size=3, mtime=1.5, etag="e1",
                                md5="0cc175b9c0f1b6a831c399e269772661", user={"camera": "c1"})
        item_writes.set_metadata(catalogue, pk, system={"width": 4, "mimetype": "image/jpeg"})
    item = catalogue.get_item(dataset, "/x/one.jpg")
    assert item["metadata"]["user"] == {"camera": "c1"}
    assert item["metadata"]["system"]["width"] == 4 and item["metadata"]["system"]["etagIsMd5"] is False
    assert item_writes.content_key(catalogue, size=3, etag="e1", md5=None) == "etag:3:e1"
    with catalogue.transaction(immediate=True):
        item_writes.set_facts(catalogue, pk, "/y/two.jpg", size=3, mtime=2.0, etag="e1", md5=None)
    assert item_writes.by_pk(catalogue, pk)["filename"] == "/y/two.jpg"
    with catalogue.transaction(immediate=True):
        item_writes.mark_missing(catalogue, pk, at=10.0)
    source = item_writes.move_source(catalogue, dataset, "/z/two.jpg", content="etag:3:e1",
                                     missing_after=5.0)
    assert source is not None and source["pk"] == pk
    with catalogue.transaction(immediate=True):
        item_writes.delete(catalogue, [pk])
    assert item_writes.by_pk(catalogue, pk) is None


def test_queries_mean_the_same(app, storage):
    for key in ["a.jpg", "b.jpg", "cats/c.jpg"]:
        put_file(storage, key, key)
    app.sync("photos", )
    from syncd.catalogue.query import compile_query
    from syncd.usermeta import set_user_metadata  # noqa: F401 - the public writer exists

    catalogue, dataset = app.catalogue, app.dataset("photos")
    with catalogue.transaction(immediate=True):
        for name, user in [("/a.jpg", {"lot": 42, "tags": ["cat", "dog"], "ok": True}),
                           ("/b.jpg", {"lot": "42", "tags": "a cat"}),
                           ("/cats/c.jpg", {"lot": 7.5, "note": None})]:
            item_writes.set_metadata(catalogue, item_writes.find(catalogue, dataset, name)["pk"],
                                     user=user)

    def where(query):
        return [i["filename"] for i in catalogue.iter_items(dataset, where=compile_query(query))]

    assert where("user.lot = 42") == ["/a.jpg"]
    assert where('user.lot = "42"') == ["/b.jpg"]
    assert where("user.lot > 7") == ["/a.jpg", "/cats/c.jpg"]
    assert where("user.tags contains cat") == ["/a.jpg", "/b.jpg"]
    assert where("user.ok = true") == ["/a.jpg"]
    assert where("user.note = null") == ["/cats/c.jpg"]
    assert where("user.note exists and not user.ok exists") == ["/cats/c.jpg"]
    assert where('filename glob "/cats/*"') == ["/cats/c.jpg"]
    assert where("name like A%") == ["/a.jpg"]
    assert where("folder = /cats") == ["/cats/c.jpg"]
    assert where("user.lot != 42") == ["/b.jpg", "/cats/c.jpg"]
    assert where("size = 5 or name in (b.jpg)") == ["/a.jpg", "/b.jpg"]


# -- jobs -----------------------------------------------------------------------------------

def test_claims_never_overlap_and_a_lost_lease_is_taken_over(app, storage):
    for i in range(30):
        put_file(storage, f"f{i}.bin", str(i))
    app.sync("photos", )  # queues 30 preprocess jobs (no preprocessing run: see below)
    clock = Clock()
    first = JobQueue(app.catalogue, lease_seconds=10, clock=clock, owner="host-a:1:x")
    with Catalogue(app.config.catalogue.location) as other_catalogue:
        second = JobQueue(other_catalogue, lease_seconds=10, clock=clock, owner="host-b:1:y")
        a = first.claim(10)
        b = second.claim(10)
        assert len(a) == len(b) == 10 and not {j.id for j in a} & {j.id for j in b}
        # a's runner dies; after its lease, b takes its jobs over (a second attempt)
        clock.now += 11
        taken = second.claim(100)
        assert {j.id for j in a} <= {j.id for j in taken}
        assert all(j.attempts == 2 for j in taken if j.id in {x.id for x in a})
        with app.catalogue.transaction(immediate=True):
            assert not first.finish(a[0], "done")  # no longer a's to finish
        with other_catalogue.transaction(immediate=True):
            assert second.finish(a[0], "done")


def test_claims_from_threads_share_the_work_exactly_once(catalogue_location, tmp_path, storage):
    config = local_config(tmp_path, storage, catalogue=catalogue_location,
                          extra="[preprocess]\nenabled = false\n")
    for i in range(200):
        put_file(storage, f"f{i}.bin", str(i))
    with App.from_file(config) as app:
        app.sync("photos")
    claimed: list[list[int]] = []

    def worker(n: int) -> None:
        got = []
        with Catalogue(catalogue_location) as catalogue:
            queue = JobQueue(catalogue, owner=f"host:{n}:t")
            while jobs := queue.claim(7):
                with catalogue.transaction(immediate=True):
                    for job in jobs:
                        assert queue.finish(job, "done")
                got += [job.id for job in jobs]
        claimed.append(got)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = sorted(job for got in claimed for job in got)
    assert len(every) == 200 and len(set(every)) == 200


def test_a_writer_kept_waiting_gets_the_catalogue_busy_error(catalogue_location, app, storage):
    put_file(storage, "a.jpg", "a")
    app.sync("photos", )
    holder = app.catalogue
    with holder.transaction(immediate=True):
        holder._conn.execute("UPDATE items SET size = 1")  # holds the write lock / the row
        with Catalogue(catalogue_location, busy_timeout=0.2) as waiting:
            with pytest.raises(CatalogueBusyError):
                with waiting.transaction(immediate=True):
                    waiting._conn.execute("UPDATE items SET size = 2")


def test_a_path_another_writer_catalogues_during_a_sync_keeps_its_item(config_file, app, storage,
                                                                       monkeypatch):
    """A sync writes its created items after listing: a path the daemon's event applier
    (another connection) catalogued in between keeps that item and its one job, and the
    sync creates the others (on PostgreSQL, the optimistic INSERT falls back to skipping)."""
    from syncd.catalogue.listing import StagedListing
    from syncd.sync.applier import Applier
    from syncd.sync.events import ObjectCreated

    for i in range(5):
        put_file(storage, f"p/{i}.jpg", str(i))
    app.dataset("photos")
    original = StagedListing.apply

    def apply(self, *args, **kwargs):
        with App.from_file(config_file) as other:
            applier = Applier(other.catalogue,
                              lambda name: (other.dataset(name), other.dataset_driver(name)))
            applier.apply([ObjectCreated(dataset="photos", key="p/3.jpg", source="test",
                                         received=time.time())])
            applier.close()
            first = item_writes.find(other.catalogue, other.dataset("photos"), "/p/3.jpg")["pk"]
        apply.first = first
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StagedListing, "apply", apply)
    app.sync("photos")
    dataset = app.dataset("photos")
    found = {i["filename"]: i for i in app.catalogue.iter_items(dataset)}
    assert sorted(found) == [f"/p/{i}.jpg" for i in range(5)]
    assert item_writes.find(app.catalogue, dataset, "/p/3.jpg")["pk"] == apply.first
    jobs = [(j["item"], j["kind"]) for j in JobQueue(app.catalogue).rows()]
    assert sorted(jobs) == sorted((item["id"], "preprocess") for item in found.values())


# -- one sync per dataset -------------------------------------------------------------------

def test_a_second_sync_of_a_dataset_waits_for_the_first(config_file, storage, app):
    put_file(storage, "a.jpg", "a")
    dataset = app.dataset("photos")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with app.catalogue.dataset_lock(dataset):
        process = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(config_file), "--log-level", "info",
             "sync", "photos",
             "--no-preprocess", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env)
        time.sleep(3)  # long enough to start and reach the lock
        assert process.poll() is None  # still waiting for the lock
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "waiting for another sync of this dataset" in err
    assert json.loads(out)["created"] == 1


def test_the_lock_of_a_sync_that_died_is_released(catalogue_location, app):
    """The holder's process killed: SQLite's lock file lock and PostgreSQL's session
    advisory lock both go with it."""
    dataset = app.dataset("photos")
    code = ("import sys, time; from syncd.catalogue import Catalogue;"
            "c = Catalogue(sys.argv[1]); d = c.dataset('photos');"
            "l = c.dataset_lock(d); l.__enter__(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(catalogue_location)],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        acquired = threading.Event()

        def take():
            with Catalogue(catalogue_location) as catalogue, catalogue.dataset_lock(dataset):
                acquired.set()

        thread = threading.Thread(target=take)
        thread.start()
        assert not acquired.wait(1.0)  # the holder is alive: waiting
        holder.kill()
        assert acquired.wait(20)
        thread.join()
    finally:
        holder.kill()
        holder.wait()


# -- configuration --------------------------------------------------------------------------

def test_postgresql_config_errors_name_the_key(tmp_path, storage):
    both = local_config(tmp_path, storage, name="both.toml",
                        extra="") .read_text().replace(
        "[catalogue]\n", '[catalogue]\nurl = "postgresql://u@h/db"\n', 1)
    (tmp_path / "both.toml").write_text(both)
    with pytest.raises(ConfigError, match=r"catalogue: set path .* or url .* not both"):
        load_config(tmp_path / "both.toml")
    (tmp_path / "mysql.toml").write_text(
        both.replace('url = "postgresql://u@h/db"', 'url = "mysql://u@h/db"').replace(
            f'path = "{tmp_path / "catalogue.db"}"\n', ""))
    with pytest.raises(ConfigError, match=r"catalogue\.url: must be a postgresql:// URL"):
        load_config(tmp_path / "mysql.toml")


def test_the_password_never_reaches_messages_or_logs(tmp_path, storage, postgres_server,
                                                     monkeypatch, caplog):
    """A password from ${VAR}: not in a connection error, the CLI's message, or the logs."""
    secret = "s3cr3t-Pa55"
    monkeypatch.setenv("CATALOGUE_PASSWORD", secret)
    closed_port = postgres_server.port + 1 if postgres_server.port < 65535 else 1
    config = tmp_path / "pw.toml"
    config.write_text(local_config(tmp_path, storage).read_text().replace(
        f'path = "{tmp_path / "catalogue.db"}"',
        f'url = "postgresql://syncd:${{CATALOGUE_PASSWORD}}@127.0.0.1:{closed_port}/db"'))
    caplog.set_level(logging.DEBUG)
    with App.from_file(config) as app:
        with pytest.raises(CatalogueError) as raised:
            app.catalogue  # noqa: B018 - opening it is the test
    assert secret not in str(raised.value) and "***" in str(raised.value)
    assert secret not in repr(app.config)
    done = subprocess.run([sys.executable, "-m", "syncd", "--config", str(config), "--log-level",
                           "debug", "sync"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode != 0 and "cannot connect" in done.stderr
    assert secret not in done.stderr + done.stdout + caplog.text


def test_the_same_storage_gives_byte_identical_item_json_on_both(tmp_path, storage, postgres_url):
    tree(storage)
    apps = [App.from_file(local_config(tmp_path, storage, name=f"{name}.toml", catalogue=where,
                                       extra="[preprocess]\nenabled = false\n"))
            for name, where in (("lite", tmp_path / "lite.db"), ("pg", postgres_url))]
    try:
        texts = []
        for app in apps:
            app.sync("photos")
            dataset = app.dataset("photos")
            with app.catalogue.transaction(immediate=True):
                pk = item_writes.find(app.catalogue, dataset, "/a.jpg")["pk"]
                item_writes.set_metadata(app.catalogue, pk, system={
                    "zeta": 1, "alpha": {"b": 2, "a": [1, "ü"]}, "mimetype": "image/jpeg"},
                    user={"z": 1, "a": None, "m": {"y": 2, "x": 1}})
            texts.append([normalized(item, app.catalogue.instance)
                          for item in app.catalogue.iter_items(dataset)])
        assert texts[0] == texts[1]
        assert len(texts[0]) == 6
    finally:
        for app in apps:
            app.close()
