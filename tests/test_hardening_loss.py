"""Issue 11, data loss: faults that used to lose items, each against the real component.
On both catalogue engines."""

from __future__ import annotations

import os

import pytest

from catalogue_reads import is_url
from conftest import local_config, put_file
from syncd.app import App
from syncd.usermeta import set_user_metadata
from unprivileged import as_nobody, give_to_nobody, nobody_tree  # noqa: F401 (a fixture)

pytestmark = pytest.mark.both_backends


def hold_every_write(location: str):
    """Another process's connection holding the catalogue against writers until COMMIT:
    SQLite's write lock; on PostgreSQL, the items and jobs tables locked (reads still go)."""
    if is_url(location):
        import psycopg

        holder = psycopg.connect(location, autocommit=True)
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE items, jobs IN EXCLUSIVE MODE")
        return holder
    import sqlite3

    holder = sqlite3.connect(location, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


@pytest.mark.parametrize("lister", ["find", "scandir"])
def test_unreadable_folder_keeps_its_items_even_with_prune(nobody_tree, lister, monkeypatch,
                                                           catalogue_location):
    from drivers import local

    monkeypatch.setattr(local, "_gnu_find_cache", [lister == "find"])
    storage = nobody_tree / "store"
    for key in ["a.txt", "b/one.txt", "b/deep/two.txt", "c/three.txt"]:
        put_file(storage, key, key)
    # SQLite: a file nobody can write beside the tree; PostgreSQL: the test's database.
    config = local_config(nobody_tree, storage,
                          catalogue=catalogue_location if is_url(catalogue_location) else None)
    give_to_nobody(nobody_tree)

    def first_sync():
        with App.from_file(config) as app:
            app.sync("photos")
            set_user_metadata(app.catalogue, app.dataset("photos"), [("/b/one.txt", {"keep": 1})])

    as_nobody(first_sync)
    os.chmod(storage / "b", 0)

    def second_sync():
        with App.from_file(config) as app:
            result = app.sync("photos", prune=True)
            items = {i["filename"]: (i["state"], i["metadata"]["user"])
                     for i in app.catalogue.iter_items(app.dataset("photos"))}
            errors = [(e["path"], e["reason"]) for e in app.catalogue.listing_errors(app.dataset("photos"))]
            return result.deleted, result.errors, items, errors

    deleted, errors, items, recorded = as_nobody(second_sync)
    assert deleted == 0
    assert errors == 1
    assert sorted(items) == ["/a.txt", "/b/deep/two.txt", "/b/one.txt", "/c/three.txt"]
    assert {state for state, _ in items.values()} == {"present"}
    assert items["/b/one.txt"][1] == {"keep": 1}
    assert recorded == [("/b", "Permission denied")]


def test_a_listing_error_that_names_no_key_protects_the_whole_scope(app, storage, monkeypatch):
    from drivers.local import LocalDriver

    for key in ["a.txt", "b/one.txt"]:
        put_file(storage, key, key)
    app.sync("photos")
    (storage / "b" / "one.txt").unlink()
    (storage / "a.txt").unlink()
    original = LocalDriver.list_pages

    def garbled(self, prefix="", *, on_error=None):
        yield from original(self, prefix, on_error=on_error)
        on_error("/../../../usr/bin/find: 'store/b", "Permission denied")

    monkeypatch.setattr(LocalDriver, "list_pages", garbled)
    result = app.sync("photos", prune=True)
    assert (result.deleted, result.errors) == (0, 1)
    assert app.catalogue.count_items(app.dataset("photos")) == {"present": 2, "missing": 0}


@pytest.mark.parametrize("hold", [1.2, 2.5], ids=["retried", "rescanned"])
def test_watch_events_that_fail_to_commit_are_not_dropped(tmp_path, storage, monkeypatch, hold,
                                                          catalogue_location, caplog):
    """Another process holds the catalogue's write lock past the busy timeout while files
    arrive, and no periodic rescan is configured: the events are retried, and past the
    retries their folders are rescanned, so every file is catalogued once the lock is free."""
    import logging
    import threading

    from daemon_support import ThreadDaemon, daemon_config, items, synced, wait_for
    from syncd.catalogue import store

    monkeypatch.setattr(store, "BUSY_TIMEOUT", 0.2)
    db = catalogue_location
    cfg = daemon_config(tmp_path, storage, daemon="debounce_seconds = 0.05\nrescan_interval_seconds = 0",
                        catalogue=db)
    caplog.set_level(logging.WARNING, logger="syncd")
    with ThreadDaemon(cfg) as daemon:
        daemon.retry_delays = (0.3, 0.3)
        wait_for(lambda: synced(db), what="startup sync")
        holder = hold_every_write(db)
        released = threading.Event()

        def release() -> None:
            released.wait(hold)
            holder.execute("COMMIT")
            holder.close()

        thread = threading.Thread(target=release)
        thread.start()
        try:
            put_file(storage, "new/late.jpg", "late")
            put_file(storage, "top.jpg", "top")
        finally:
            thread.join()
        wait_for(lambda: {"/new/late.jpg", "/top.jpg"} <= set(items(db)), what="events applied")
    assert "events not applied (retrying)" in caplog.text  # the writes did wait and fail
