"""`syncd daemon` with real inotify on temp folders: events reach the catalogue."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from conftest import put_file
from daemon_support import (
    DaemonProcess, ThreadDaemon, daemon_config, free_port, items, jobs, jpeg, thumbnail_of, wait_for,
)
from syncd.catalogue import Catalogue
from syncd.catalogue.jobs import JobQueue
from syncd.app import App
from syncd.service.daemon import Daemon

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


@pytest.fixture
def cfg(tmp_path, storage, catalogue_location):
    return daemon_config(tmp_path, storage, daemon="debounce_seconds = 0.05",
                         catalogue=catalogue_location)


def _location(cfg_path):
    return App.from_file(cfg_path).config.catalogue.location


def present(cfg_path, tmp_path):
    return {k for k, v in items(_location(cfg_path)).items() if v["state"] == "present"}


def test_create_modify_move_delete_reach_the_catalogue(catalogue_location, tmp_path, storage, cfg):
    db = catalogue_location
    with ThreadDaemon(cfg):
        put_file(storage, "cats/a.jpg", "one")
        item = wait_for(lambda: items(db).get("/cats/a.jpg"), what="created")
        (storage / "cats/a.jpg").write_text("two, longer")
        wait_for(lambda: items(db)["/cats/a.jpg"]["metadata"]["system"]["size"] == 11, what="modified")
        os.makedirs(storage / "dogs")
        os.rename(storage / "cats/a.jpg", storage / "dogs/b.jpg")
        # A rename into a folder that is new can reach watchdog as "created" (the new folder
        # was walked) plus an unpaired "moved from": still one moved item in the end.
        wait_for(lambda: set(items(db)) == {"/dogs/b.jpg"}, what="moved")
        assert items(db)["/dogs/b.jpg"]["id"] == item["id"]
        (storage / "dogs/b.jpg").unlink()
        wait_for(lambda: items(db)["/dogs/b.jpg"]["state"] == "missing", what="deleted")
    assert len(items(db)) == 1


def test_burst_into_new_nested_folders_converges(catalogue_location, tmp_path, storage, cfg):
    db = catalogue_location
    expected = set()
    with ThreadDaemon(cfg):
        for i in range(4):
            for j in range(25):
                key = f"burst/{i}/deep/{j}.bin"
                put_file(storage, key, f"{i}-{j}")
                expected.add("/" + key)
        wait_for(lambda: set(items(db)) == expected, what="all burst files")
    pks = [pk for pk, state in jobs(db) if state == "pending"]
    assert len(pks) == len(set(pks)) == len(expected)  # one job an item, no duplicates


def test_artifacts_folder_is_never_catalogued(catalogue_location, tmp_path, storage, cfg):
    db = catalogue_location
    with ThreadDaemon(cfg):
        put_file(storage, ".dataloop/thumbnails/x.jpg", "t")
        put_file(storage, "real.jpg", "r")
        wait_for(lambda: "/real.jpg" in items(db))
    assert list(items(db)) == ["/real.jpg"]


def test_start_syncs_new_datasets_and_catches_up_watched_folders(catalogue_location, tmp_path, storage, cfg):
    db = catalogue_location
    put_file(storage, "before.jpg", "b")
    with ThreadDaemon(cfg):
        wait_for(lambda: "/before.jpg" in items(db), what="initial sync")
    put_file(storage, "while-down.jpg", "w")
    (storage / "before.jpg").unlink()
    with ThreadDaemon(cfg):
        wait_for(lambda: "/while-down.jpg" in items(db)
                 and items(db)["/before.jpg"]["state"] == "missing", what="catch-up rescan")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_periodic_rescan_follows_the_injected_clock(catalogue_location, tmp_path, storage):
    cfg = daemon_config(tmp_path, storage, catalogue=catalogue_location, watch=False, daemon="rescan_interval_seconds = 100")
    db = catalogue_location
    clock = Clock()
    with App.from_file(cfg) as app:
        daemon = Daemon(app, clock=clock)
        daemon.start()
        try:
            def turn():
                daemon.run_once(timeout=0.01)
                return not daemon.rescans.running

            daemon.run_once(timeout=0)  # never synced: the initial sync starts
            wait_for(turn, what="initial sync")
            put_file(storage, "later.jpg", "l")
            clock.now = 99
            daemon.run_once(timeout=0)
            assert not daemon.rescans.running and "/later.jpg" not in items(db)
            clock.now = 101
            daemon.run_once(timeout=0)
            assert daemon.rescans.running  # due: started
            wait_for(turn, what="periodic rescan")
            assert "/later.jpg" in items(db)
        finally:
            daemon.shutdown()


def test_restart_keeps_the_rescan_schedule(catalogue_location, tmp_path, storage):
    """A dataset synced recently is not rescanned at once by a restarted daemon."""
    cfg = daemon_config(tmp_path, storage, catalogue=catalogue_location, watch=False, daemon="rescan_interval_seconds = 3600")
    with App.from_file(cfg) as app:
        app.sync("photos")
        daemon = Daemon(app, clock=Clock())
        daemon.start()
        try:
            daemon.run_once(timeout=0)
            assert not daemon.rescans.running
            assert 3500 < daemon.rescans.next_full["photos"] <= 3600
        finally:
            daemon.shutdown()


@pytest.mark.parametrize("mode", ["missing", "remove"])
def test_deleted_items_lose_artifacts_after_the_move_window(catalogue_location, tmp_path, storage, mode):
    cfg = daemon_config(tmp_path, storage, catalogue=catalogue_location,
                        daemon=f'on_delete = "{mode}"\nmove_window_seconds = 0.5\ndebounce_seconds = 0.05')
    db = catalogue_location
    with ThreadDaemon(cfg, workers=0):
        put_file(storage, "a.jpg", jpeg())
        thumbnail = storage / wait_for(lambda: thumbnail_of(items(db).get("/a.jpg")), what="thumbnail")
        assert thumbnail.exists()
        (storage / "a.jpg").unlink()
        wait_for(lambda: not thumbnail.exists(), what="artifact cleaned")
        if mode == "remove":
            wait_for(lambda: "/a.jpg" not in items(db), what="item removed")
        else:
            item = wait_for(lambda: (i := items(db).get("/a.jpg")) and not thumbnail_of(i) and i)
            assert item["state"] == "missing"
            assert item["metadata"]["system"]["mimetype"] == "image/jpeg"  # the ghost keeps the rest


def test_moved_item_keeps_its_thumbnail(catalogue_location, tmp_path, storage):
    cfg = daemon_config(tmp_path, storage, catalogue=catalogue_location, daemon="move_window_seconds = 0.2\ndebounce_seconds = 0.05")
    db = catalogue_location
    with ThreadDaemon(cfg, workers=0):
        put_file(storage, "a.jpg", jpeg())
        key = wait_for(lambda: thumbnail_of(items(db).get("/a.jpg")), what="thumbnail")
        os.rename(storage / "a.jpg", storage / "b.jpg")
        wait_for(lambda: set(items(db)) == {"/b.jpg"}, what="moved")
        # Well past the move window: nothing cleans the moved item's artifacts.
        put_file(storage, "later.jpg", jpeg(1))
        wait_for(lambda: thumbnail_of(items(db).get("/later.jpg")), what="a later thumbnail")
    assert (storage / key).exists() and thumbnail_of(items(db)["/b.jpg"]) == key
    b_pk = Catalogue(db).item_pk(items(db)["/b.jpg"]["id"])
    assert [(kind, state) for pk, kind, state in kinds(db) if pk == b_pk] == [("preprocess", "done")]


def kinds(db):
    with Catalogue(db) as catalogue:
        return [(catalogue.item_pk(j["item"]), j["kind"], j["state"]) for j in JobQueue(catalogue).rows()]


def test_sigterm_stops_cleanly_and_logs_json(catalogue_location, tmp_path, storage, cfg):
    db = catalogue_location
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log").start()
    try:
        put_file(storage, "cats/a.jpg", "a")
        wait_for(lambda: "/cats/a.jpg" in items(db))
        assert daemon.terminate(signal.SIGTERM) == 0
    finally:
        daemon.close()
    records = daemon.log_records()
    created = [r for r in records if r.get("item") and "created /cats/a.jpg" in r["message"]]
    assert created and created[0]["dataset"] == "photos" and created[0]["level"] == "info"
    assert records[-1]["message"].startswith("daemon stopped")


def test_sigint_stops_too(tmp_path, storage, cfg):
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log").start()
    try:
        assert daemon.terminate(signal.SIGINT) == 0
    finally:
        daemon.close()
    assert "daemon stopped" in daemon.log_text()


def test_a_failing_delivery_is_not_acknowledged_and_spares_the_rest(catalogue_location, tmp_path, storage, monkeypatch):
    """Storage failing for one delivery's key: that delivery reports the error (its source
    leaves the messages queued); the other deliveries of the same batch are applied."""
    from drivers import Unreachable
    from syncd.sync.events import Delivery, ObjectCreated

    cfg = daemon_config(tmp_path, storage, catalogue=catalogue_location, watch=False)
    db = catalogue_location
    with App.from_file(cfg) as app:
        app.sync("photos")  # synced: no startup rescan to race with
        put_file(storage, "good.jpg", "g")
        put_file(storage, "bad.jpg", "b")
        daemon = Daemon(app)
        daemon.start()
        try:
            driver = daemon.resolve("photos")[1]
            real_stat = driver.stat

            def stat(key):
                if key == "bad.jpg":
                    raise Unreachable("connection refused")
                return real_stat(key)

            monkeypatch.setattr(driver, "stat", stat)
            now = time.time()
            bad = Delivery((ObjectCreated(dataset="photos", key="bad.jpg", source="t", received=now),))
            good = Delivery((ObjectCreated(dataset="photos", key="good.jpg", source="t", received=now),))
            daemon.submit(bad)
            daemon.submit(good)
            daemon.run_once(timeout=1)
            assert good.wait(0) and not bad.wait(0)
            assert "connection refused" in str(bad.error)
            assert "/good.jpg" in items(db) and "/bad.jpg" not in items(db)
            assert daemon.metrics.failed_batches._value.get() == 1
            daemon.request_stop()
            assert daemon.health()[0] is False
        finally:
            daemon.shutdown()
