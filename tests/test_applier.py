"""The event applier against a real local folder: events are reconciled with storage."""

from __future__ import annotations

import os
import time

import pytest

from conftest import put_file
from syncd.sync.applier import Applier
from syncd.sync.events import ObjectCreated, ObjectDeleted, ObjectMoved, ObjectUpdated

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def applier(app, clock):
    def resolve(name):
        return app.dataset(name), app.dataset_driver(name)

    applier = Applier(app.catalogue, resolve, move_window=30, clock=clock)
    yield applier
    applier.close()


def ev(kind, key, **extra):
    return kind(dataset="photos", key=key, source="test", received=time.time(), **extra)


def items(app):
    return {i["filename"]: i for i in app.catalogue.iter_items(app.dataset("photos"))}


def jobs(app, item_id=None):
    return [j["state"] for j in app.jobs().rows() if item_id is None or j["item"] == item_id]


def actions(changes):
    return [c.action for c in changes]


def test_created_event_makes_item_and_job_once(app, applier, storage):
    put_file(storage, "cats/a.jpg", "A")
    assert actions(applier.apply([ev(ObjectCreated, "cats/a.jpg")])) == ["created"]
    # The same event again, and a late "updated" for it: nothing new.
    assert actions(applier.apply([ev(ObjectCreated, "cats/a.jpg"),
                                  ev(ObjectUpdated, "cats/a.jpg")])) == ["unchanged", "unchanged"]
    item = items(app)["/cats/a.jpg"]
    assert item["metadata"]["system"]["size"] == 1 and item["state"] == "present"
    assert jobs(app) == ["pending"]


def test_overwrite_requeues_preprocessing(app, applier, storage):
    path = put_file(storage, "a.jpg", "one")
    applier.apply([ev(ObjectCreated, "a.jpg")])
    first = items(app)["/a.jpg"]["id"]
    path.write_text("two two")
    assert actions(applier.apply([ev(ObjectUpdated, "a.jpg")])) == ["updated"]
    item = items(app)["/a.jpg"]
    assert item["id"] == first and item["metadata"]["system"]["size"] == 7
    assert jobs(app) == ["cancelled", "pending"]


def test_delete_marks_missing_and_cancels_pending_job(app, applier, storage):
    path = put_file(storage, "a.jpg", "one")
    applier.apply([ev(ObjectCreated, "a.jpg")])
    path.unlink()
    assert actions(applier.apply([ev(ObjectDeleted, "a.jpg")])) == ["deleted"]
    assert items(app)["/a.jpg"]["state"] == "missing"
    assert jobs(app) == ["cancelled"]
    assert actions(applier.apply([ev(ObjectDeleted, "a.jpg")])) == ["unchanged"]


def test_events_are_checked_against_storage(app, applier, storage):
    # A "created" whose object is gone again, and a "deleted" whose object exists (a late,
    # out-of-order delivery): storage wins both times.
    assert actions(applier.apply([ev(ObjectCreated, "gone.jpg")])) == ["unchanged"]
    put_file(storage, "here.jpg", "h")
    assert actions(applier.apply([ev(ObjectDeleted, "here.jpg")])) == ["created"]
    assert list(items(app)) == ["/here.jpg"]


def test_delete_then_create_of_same_content_is_a_move(app, applier, storage):
    put_file(storage, "cats/a.jpg", "image")
    applier.apply([ev(ObjectCreated, "cats/a.jpg")])
    original = items(app)["/cats/a.jpg"]
    (storage / "dogs").mkdir()
    os.rename(storage / "cats/a.jpg", storage / "dogs/b.jpg")  # keeps inode and mtime: same etag
    changes = applier.apply([ev(ObjectDeleted, "cats/a.jpg"), ev(ObjectCreated, "dogs/b.jpg")])
    assert actions(changes) == ["deleted", "moved"]
    assert changes[1].old_filename == "/cats/a.jpg"
    assert list(items(app)) == ["/dogs/b.jpg"]
    assert items(app)["/dogs/b.jpg"]["id"] == original["id"]
    # The job cancelled by the delete is queued again: the item was never preprocessed.
    assert jobs(app) == ["cancelled", "pending"]


def test_create_then_delete_of_same_content_is_one_moved_item(app, applier, storage, clock):
    put_file(storage, "a.jpg", "image")
    applier.apply([ev(ObjectCreated, "a.jpg")])
    original = items(app)["/a.jpg"]
    app.catalogue._conn.execute("UPDATE jobs SET state = 'done'")
    app.catalogue._conn.execute("UPDATE items SET system = '{\"width\": 3}'")
    os.link(storage / "a.jpg", storage / "b.jpg")  # a copy with the same etag (inode, mtime)
    assert actions(applier.apply([ev(ObjectCreated, "b.jpg")])) == ["created"]
    os.unlink(storage / "a.jpg")
    clock.now += 5
    changes = applier.apply([ev(ObjectDeleted, "a.jpg")])
    assert actions(changes) == ["moved"]
    assert list(items(app)) == ["/b.jpg"]
    moved = items(app)["/b.jpg"]
    assert moved["id"] == original["id"]
    assert moved["metadata"]["system"]["width"] == 3
    # The copy's own job was cancelled and no new one was needed: preprocessing stands.
    assert jobs(app) == ["done", "cancelled"]


def test_copy_then_delete_outside_the_window_is_a_delete(app, applier, storage, clock):
    put_file(storage, "a.jpg", "image")
    applier.apply([ev(ObjectCreated, "a.jpg")])
    os.link(storage / "a.jpg", storage / "b.jpg")
    applier.apply([ev(ObjectCreated, "b.jpg")])
    os.unlink(storage / "a.jpg")
    clock.now += 31
    assert actions(applier.apply([ev(ObjectDeleted, "a.jpg")])) == ["deleted"]
    assert {k: v["state"] for k, v in items(app).items()} == {"/a.jpg": "missing", "/b.jpg": "present"}


def test_rename_event_moves_the_item_and_keeps_its_job(app, applier, storage):
    put_file(storage, "a.jpg", "image")
    applier.apply([ev(ObjectCreated, "a.jpg")])
    original = items(app)["/a.jpg"]
    os.rename(storage / "a.jpg", storage / "renamed.jpg")
    changes = applier.apply([ev(ObjectMoved, "renamed.jpg", old_key="a.jpg")])
    assert actions(changes) == ["moved"]
    assert items(app)["/renamed.jpg"]["id"] == original["id"]
    assert jobs(app) == ["pending"]


def test_rename_over_an_existing_file(app, applier, storage):
    put_file(storage, "a.jpg", "new content")
    put_file(storage, "b.jpg", "old")
    applier.apply([ev(ObjectCreated, "a.jpg"), ev(ObjectCreated, "b.jpg")])
    b_id = items(app)["/b.jpg"]["id"]
    os.replace(storage / "a.jpg", storage / "b.jpg")
    changes = applier.apply([ev(ObjectMoved, "b.jpg", old_key="a.jpg")])
    assert actions(changes) == ["deleted", "updated"]
    assert items(app)["/b.jpg"]["id"] == b_id
    assert items(app)["/b.jpg"]["metadata"]["system"]["size"] == len("new content")


def test_bad_and_hidden_keys_are_ignored_without_dropping_the_batch(app, applier, storage):
    put_file(storage, "ok.jpg", "ok")
    put_file(storage, ".dataloop/thumbnails/x.jpg", "t")
    changes = applier.apply([ev(ObjectCreated, "../outside.jpg"),
                             ev(ObjectCreated, ".dataloop/thumbnails/x.jpg"),
                             ev(ObjectCreated, "ok.jpg")])
    assert actions(changes) == ["ignored", "ignored", "created"]
    assert list(items(app)) == ["/ok.jpg"]


@pytest.mark.sqlite_only
def test_ghost_lookup_uses_the_partial_index(app, applier):
    plan = app.catalogue._conn.execute(
        "EXPLAIN QUERY PLAN SELECT pk FROM items WHERE dataset_id = 1 AND state = 'missing' "
        "AND md5 IS NULL AND size = 3 AND etag = 'x'").fetchall()
    assert "items_missing_content" in str(plan)


def test_rescan_racing_the_applier_keeps_one_item(app, applier, storage, monkeypatch):
    """A file catalogued by an event between a rescan's diff and its writes stays one item."""
    from syncd.catalogue.listing import StagedListing

    put_file(storage, "new.jpg", "n")
    real_plan = StagedListing.plan

    def plan_then_event(self, *args):
        plan = real_plan(self, *args)
        applier.apply([ev(ObjectCreated, "new.jpg")])
        return plan

    monkeypatch.setattr(StagedListing, "plan", plan_then_event)
    result = app.sync("photos")
    assert result.created == 1
    assert list(items(app)) == ["/new.jpg"]
    assert jobs(app) == ["pending"]


def test_a_permanent_storage_error_drops_the_event_instead_of_redelivering_it(tmp_path, storage):
    """A driver without the get permission can never stat: the event is ignored (with a
    warning), not raised for redelivery for ever; a retriable error still is."""
    from conftest import local_config
    from syncd.app import App
    from syncd.sync.applier import ApplyError

    config = local_config(tmp_path, storage, driver='permissions = ["list"]')
    put_file(storage, "a.jpg", "A")
    with App.from_file(config) as app:
        applier = Applier(app.catalogue, lambda name: (app.dataset(name), app.dataset_driver(name)))
        try:
            assert actions(applier.apply([ev(ObjectCreated, "a.jpg")])) == ["ignored"]
            driver = app.dataset_driver("photos")

            def unreachable(key):
                from drivers import Unreachable
                raise Unreachable("connection reset")

            driver.stat = unreachable
            with pytest.raises(ApplyError):
                applier.apply([ev(ObjectCreated, "a.jpg")])
        finally:
            applier.close()
