"""The sync rules (syncd.sync.rules): one table of consequences, every writer going through
it, and the identity rules that keep one file's labels off another file."""

from __future__ import annotations

import base64
import os
import shutil
import time

import pytest

import syncd.catalogue.jobs as catalogue_jobs
from conftest import put_file
from emulators import driver_toml, new_store
from daemon_support import ThreadDaemon, daemon_config, jpeg, wait_for
from syncd.app import App
from syncd import usermeta
from syncd.catalogue import items
from syncd.imports import downstream
from syncd.sync.applier import Applier
from syncd.sync.events import ObjectCreated, ObjectDeleted
from syncd.sync.rules import RULES, Change

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


# -- the table ------------------------------------------------------------------------------


def job_list(app):
    """(kind, state, error) of the jobs in order; "job N" in an error is the Nth of them
    (ids are not reused after set_history's delete on PostgreSQL, as they are on SQLite)."""
    rows = list(app.jobs().rows())
    positions = {row["id"]: n for n, row in enumerate(rows, 1)}
    def error(text):
        if text and text.startswith("superseded by job "):
            return f"superseded by job {positions[int(text.rsplit(' ', 1)[1])]}"
        return text
    return [(j["kind"], j["state"], error(j["error"])) for j in rows]


def set_history(app, history):
    """Replace the item's jobs by `history`: [(kind, state)], oldest first."""
    conn = app.catalogue._conn  # test set-up of job states no writer would produce at once
    conn.execute("DELETE FROM jobs")
    for kind, state in history:
        conn.execute("INSERT INTO jobs (item_pk, kind, state, dataset_id, payload, created_at, updated_at)"
                     " VALUES (1, ?, ?, 1, '{\"driver\": \"disk\", \"keys\": []}', 'x', 'x')", (kind, state))


P, C = "preprocess", "cleanup"

TABLE = [
    # change, job history before, thumbnail recorded, jobs after (kind, state, reason)
    (Change.CREATED, [], False, [(P, "pending", None)]),
    (Change.CONTENT_CHANGED, [(P, "pending")], False,
     [(P, "cancelled", "superseded by job 2"), (P, "pending", None)]),
    (Change.CONTENT_CHANGED, [(P, "running")], False, [(P, "running", None), (P, "pending", None)]),
    (Change.MOVED, [(P, "done")], True, [(P, "done", None)]),
    (Change.MOVED, [(P, "done"), (C, "done")], False, [(P, "done", None), (C, "done", None),
                                                       (P, "pending", None)]),
    (Change.REVIVED, [(P, "done"), (C, "pending")], True,
     [(P, "done", None), (C, "cancelled", "the item came back")]),
    (Change.REVIVED, [(P, "cancelled")], False, [(P, "cancelled", None), (P, "pending", None)]),
    (Change.REVIVED, [(P, "failed")], False, [(P, "failed", None)]),
    (Change.MISSING, [(P, "pending")], False, [(P, "cancelled", "item deleted from storage")]),
    (Change.MISSING, [(P, "done")], True, [(P, "done", None)]),
    (Change.GONE, [(P, "done")], True, [(P, "done", None), (C, "pending", None)]),
    (Change.GONE, [(P, "pending")], False, [(P, "cancelled", "item deleted")]),
    (Change.GONE, [(P, "done"), (C, "pending")], True, [(P, "done", None), (C, "pending", None)]),
    (Change.MERGED, [(P, "pending")], False,
     [(P, "cancelled", "merged into the item it was copied from")]),
]


@pytest.mark.parametrize(("change", "history", "thumbnail", "expected"), TABLE,
                         ids=[f"{c.value}-{i}" for i, (c, *_) in enumerate(TABLE)])
def test_rules_table(app, storage, change, history, thumbnail, expected):
    put_file(storage, "a.jpg", "A")
    app.sync("photos")
    set_history(app, history)
    if thumbnail:
        with app.catalogue.transaction(immediate=True):
            items.set_metadata(app.catalogue, 1, system={"thumbnailId": ".dataloop/thumbnails/x.jpg"})
    with app.catalogue.transaction(immediate=True):
        items.apply_rule(app.catalogue, RULES[change], [1])
    assert job_list(app) == expected


def test_every_change_has_a_rule():
    assert set(RULES) == set(Change)


# -- every writer goes through the rules ----------------------------------------------------

@pytest.fixture
def applied(monkeypatch):
    """The names of the rules applied, in order, whoever applies them."""
    names = {id(consequence): change.value for change, consequence in RULES.items()}
    seen: list[str] = []
    real = catalogue_jobs.apply_consequence

    def spy(conn, consequence, *args, **kwargs):
        seen.append(names.get(id(consequence), "?"))
        return real(conn, consequence, *args, **kwargs)

    monkeypatch.setattr(catalogue_jobs, "apply_consequence", spy)
    return seen


def test_sync_goes_through_the_rules(app, storage, applied):
    put_file(storage, "a.jpg", "A")
    put_file(storage, "b.jpg", "B")
    put_file(storage, "c.jpg", "C")
    app.sync("photos")
    assert applied == ["created"]
    applied.clear()
    os.rename(storage / "a.jpg", storage / "moved.jpg")
    (storage / "b.jpg").write_text("B changed")
    (storage / "c.jpg").unlink()
    app.sync("photos")
    assert set(applied) >= {"moved", "content-changed", "gone"}


def test_event_applier_goes_through_the_rules(app, storage, applied):
    applier = Applier(app.catalogue, lambda name: (app.dataset(name), app.dataset_driver(name)))
    put_file(storage, "a.jpg", "A")
    applier.apply([ObjectCreated(dataset="photos", key="a.jpg", source="t", received=time.time())])
    os.rename(storage / "a.jpg", storage.parent / "kept")
    applier.apply([ObjectDeleted(dataset="photos", key="a.jpg", source="t", received=time.time())])
    os.rename(storage.parent / "kept", storage / "b.jpg")  # the same file (inode, mtime)
    applier.apply([ObjectCreated(dataset="photos", key="b.jpg", source="t", received=time.time())])
    applier.close()
    assert applied == ["created", "missing", "moved"]


def test_put_rm_and_upload_go_through_the_rules(app, storage, tmp_path, applied):
    local = put_file(tmp_path / "up", "x.jpg", "X")
    downstream.put(app, "photos", local, "/x.jpg")
    downstream.remove(app, "photos", "/x.jpg")
    assert applied == ["created", "gone"]
    applied.clear()
    from syncd.imports.upload import upload_folder

    upload_folder(app, "photos", tmp_path / "up")
    assert applied == ["created"]
    applied.clear()
    from syncd.imports.csv_import import import_csv

    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("name,image_bytes\nrow.jpg," + base64.b64encode(b"row bytes").decode() + "\n")
    import_csv(app, "photos", csv_file)
    assert applied == ["created"]


def test_reaper_goes_through_the_rules(tmp_path, storage, applied):
    cfg = daemon_config(tmp_path, storage, daemon="move_window_seconds = 0.2\ndebounce_seconds = 0.05")
    with ThreadDaemon(cfg, workers=0):
        put_file(storage, "a.jpg", jpeg())
        wait_for(lambda: list(storage.glob(".dataloop/thumbnails/*")), what="thumbnail")
        (storage / "a.jpg").unlink()
        wait_for(lambda: "gone" in applied, what="reaped")
    assert "missing" in applied and applied.index("missing") < applied.index("gone"), applied


# -- identity -------------------------------------------------------------------------------

def s3_app(tmp_path, endpoint_for, tmp_path_factory):
    """An App on a moto S3 bucket, and a driver of the test's own on that bucket."""
    store = new_store("s3", endpoint_for, tmp_path_factory)
    config = tmp_path / "s3.toml"
    config.write_text(f"""
[catalogue]
path = "{tmp_path / 'catalogue.db'}"

{driver_toml(store.options(name="store", permissions=["list", "get", "put", "delete"]))}

[[datasets]]
name = "photos"
driver = "store"
""")
    return App.from_file(config), store.make(name="backdoor")


def test_a_ghost_never_lends_its_id_to_the_same_bytes_elsewhere_s3(tmp_path, endpoint_for,
                                                                    tmp_path_factory):
    """Resurrection: a file deleted in one sync and the same bytes uploaded elsewhere later
    are two items; the new file does not inherit the old one's labels."""
    app, backdoor = s3_app(tmp_path, endpoint_for, tmp_path_factory)
    with app:
        backdoor.put("g/a.jpg", b"same bytes")
        app.sync("photos")
        ds = app.dataset("photos")
        usermeta.set_user_metadata(app.catalogue, ds, [("/g/a.jpg", {"label": "cat"})])
        old = app.catalogue.get_item(ds, "/g/a.jpg")
        backdoor.delete("g/a.jpg")
        app.sync("photos")
        backdoor.put("other/b.jpg", b"same bytes")
        result = app.sync("photos")
        new = app.catalogue.get_item(ds, "/other/b.jpg")
        assert (result.created, result.moved) == (1, 0)
        assert new["id"] != old["id"] and new["metadata"]["user"] == {}
        assert app.catalogue.get_item(ds, "/g/a.jpg")["metadata"]["user"] == {"label": "cat"}


def test_a_ghost_never_lends_its_id_to_the_same_file_elsewhere_local(app, storage, run):
    """The same with a local folder: the very same file (inode and mtime kept) comes back
    under another name a sync later."""
    put_file(storage, "g/a.jpg", "same bytes")
    run("sync", "--no-preprocess")
    run("items", "set-meta", "photos", "/g/a.jpg", "label=cat")
    old = app.catalogue.get_item(app.dataset("photos"), "/g/a.jpg")
    os.rename(storage / "g/a.jpg", storage.parent / "kept")
    run("sync", "--no-preprocess")
    os.makedirs(storage / "other")
    os.rename(storage.parent / "kept", storage / "other/b.jpg")
    run("sync", "--no-preprocess")
    new = app.catalogue.get_item(app.dataset("photos"), "/other/b.jpg")
    assert new["id"] != old["id"]
    assert new["metadata"]["user"] == {}
    ghost = app.catalogue.get_item(app.dataset("photos"), "/g/a.jpg")
    assert ghost["state"] == "missing" and ghost["metadata"]["user"] == {"label": "cat"}


def test_a_ghost_still_revives_at_its_own_path(app, storage, run):
    put_file(storage, "g/a.jpg", "same bytes")
    run("sync", "--no-preprocess")
    old = app.catalogue.get_item(app.dataset("photos"), "/g/a.jpg")
    (storage / "g/a.jpg").unlink()
    run("sync", "--no-preprocess")
    put_file(storage, "g/a.jpg", "same bytes")
    run("sync", "--no-preprocess")
    back = app.catalogue.get_item(app.dataset("photos"), "/g/a.jpg")
    assert back["id"] == old["id"] and back["state"] == "present"


@pytest.mark.parametrize(("seconds", "action"), [(10, "moved"), (31, "created")])
def test_the_daemon_pairs_a_delete_and_a_create_only_within_the_move_window(app, storage, seconds, action):
    """The same file (same inode and mtime: the same content key) reappears elsewhere
    `seconds` after it was deleted; the move window is 30 s."""
    wall = [1_000_000.0]
    applier = Applier(app.catalogue, lambda name: (app.dataset(name), app.dataset_driver(name)),
                      move_window=30, wall_clock=lambda: wall[0])
    event = dict(dataset="photos", source="t", received=time.time())
    put_file(storage, "g/a.jpg", "same bytes")
    applier.apply([ObjectCreated(key="g/a.jpg", **event)])
    old = app.catalogue.get_item(app.dataset("photos"), "/g/a.jpg")
    os.rename(storage / "g/a.jpg", storage.parent / "kept")
    applier.apply([ObjectDeleted(key="g/a.jpg", **event)])
    wall[0] += seconds
    os.makedirs(storage / "other")
    os.rename(storage.parent / "kept", storage / "other/b.jpg")
    changes = applier.apply([ObjectCreated(key="other/b.jpg", **event)])
    applier.close()
    assert [c.action for c in changes] == [action]
    new = app.catalogue.get_item(app.dataset("photos"), "/other/b.jpg")
    assert (new["id"] == old["id"]) == (action == "moved")


def test_moves_prefer_the_same_name_then_the_same_folder(tmp_path, endpoint_for, tmp_path_factory):
    """Three files with the same bytes (the same MD5 in S3) move at once: each id follows its
    own name, else its own folder."""
    app, backdoor = s3_app(tmp_path, endpoint_for, tmp_path_factory)
    for key in ("x/a.jpg", "y/b.jpg", "z/c.jpg"):
        backdoor.put(key, b"same bytes")
    with app:
        app.sync("photos")
        ids = {i["filename"]: i["id"] for i in app.catalogue.iter_items(app.dataset("photos"))}
        for old, new in (("x/a.jpg", "new/b.jpg"), ("y/b.jpg", "new/a.jpg"), ("z/c.jpg", "z/d.jpg")):
            backdoor.delete(old)
            backdoor.put(new, b"same bytes")
        result = app.sync("photos")
        after = {i["filename"]: i["id"] for i in app.catalogue.iter_items(app.dataset("photos"))}
    assert result.moved == 3 and result.created == 0
    assert after["/new/a.jpg"] == ids["/x/a.jpg"]
    assert after["/new/b.jpg"] == ids["/y/b.jpg"]
    assert after["/z/d.jpg"] == ids["/z/c.jpg"]  # the same folder


# -- artifacts ------------------------------------------------------------------------------

def assert_thumbnails_stand(app, storage):
    """No present item is done with a thumbnail that does not exist, or without one."""
    for item in app.catalogue.iter_items(app.dataset("photos"), include_missing=False):
        system = item["metadata"]["system"]
        assert system.get("etl", {}).get("status") == "done", (item["filename"], system.get("etl"))
        assert system.get("thumbnailId"), item["filename"]
        assert (storage / system["thumbnailId"]).is_file(), item["filename"]


def test_an_item_revived_after_its_cleanup_gets_its_thumbnail_again(app, storage, run):
    put_file(storage, "a.jpg", jpeg())
    run("sync")
    assert_thumbnails_stand(app, storage)
    kept = storage.parent / "kept.jpg"
    shutil.move(storage / "a.jpg", kept)
    run("sync")  # gone: the cleanup removes the thumbnail
    assert not list(storage.glob(".dataloop/thumbnails/*"))
    shutil.move(kept, storage / "a.jpg")
    run("sync")
    assert_thumbnails_stand(app, storage)


def test_cancelled_jobs_say_why(app, storage, run):
    put_file(storage, "a.jpg", "one")
    put_file(storage, "b.jpg", "two")
    run("sync", "--no-preprocess")
    (storage / "a.jpg").write_text("one, changed")
    (storage / "b.jpg").unlink()
    run("sync", "--no-preprocess")
    cancelled = {j["filename"]: j["error"] for j in app.jobs().rows(states=["cancelled"])}
    assert cancelled["/a.jpg"].startswith("superseded by job ")
    assert cancelled["/b.jpg"] == "item deleted"


def test_rename_just_after_creation_in_a_watched_folder(tmp_path, storage):
    """cp then mv, 20 times: every final file processed, no job failed."""
    cfg = daemon_config(tmp_path, storage)
    source = jpeg()
    with ThreadDaemon(cfg, workers=1) as daemon:
        for i in range(20):
            put_file(storage, f"a{i}.jpg", source + bytes([i]))
            time.sleep(0.3)
            os.rename(storage / f"a{i}.jpg", storage / f"b{i}.jpg")
        app = daemon.app

        def settled():
            with App(app.config) as fresh:
                present = list(fresh.catalogue.iter_items(fresh.dataset("photos"), include_missing=False))
                states = [j["state"] for j in fresh.jobs().rows()]
                done = all(i["metadata"]["system"].get("etl", {}).get("status") == "done" for i in present)
                return (len(present) == 20 and done and not {"pending", "running"} & set(states)
                        and (present, states))
        present, states = wait_for(settled, timeout=60, what="all renamed files processed")
    assert sorted(i["filename"] for i in present) == sorted(f"/b{i}.jpg" for i in range(20))
    assert "failed" not in states
    with App(app.config) as fresh:
        for job in fresh.jobs().rows(states=["cancelled"]):
            assert job["error"], job
