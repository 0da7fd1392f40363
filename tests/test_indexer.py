"""Upstream sync against real files in temp folders."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import put_file
from drivers.local_listing import FindPage
from syncd.catalogue import runs

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


def items_by_path(app, dataset="photos"):
    return {i["filename"]: i for i in app.catalogue.iter_items(app.dataset(dataset))}


def item_rows_checksum(app):
    return app.catalogue._conn.execute(
        "SELECT pk, updated_at FROM items ORDER BY pk").fetchall()


def test_initial_sync_creates_every_file(app, storage):
    for key in ["a.jpg", "cats/b.jpg", "cats/deep/c.png"]:
        put_file(storage, key, key)
    result = app.sync("photos")
    assert (result.listed, result.created, result.unchanged) == (3, 3, 0)
    items = items_by_path(app)
    assert sorted(items) == ["/a.jpg", "/cats/b.jpg", "/cats/deep/c.png"]
    item = items["/cats/deep/c.png"]
    assert item["name"] == "c.png" and item["dir"] == "/cats/deep" and item["type"] == "file"
    assert item["metadata"]["system"]["size"] == len("cats/deep/c.png")
    assert len(item["id"]) == 24


def _row_writes(app):
    """SQLite: rows written by this connection; PostgreSQL: each item row's version (xmin)."""
    conn = app.catalogue._conn
    if conn.dialect.name == "sqlite":
        return conn.total_changes
    return conn.execute("SELECT pk, CAST(xmin AS TEXT) FROM items ORDER BY pk").fetchall()


def test_unchanged_resync_writes_no_item(app, storage):
    for i in range(50):
        put_file(storage, f"f{i}.bin", str(i))
    app.sync("photos")
    before = item_rows_checksum(app)
    jobs_before = sum(app.jobs().counts().values())
    changes = _row_writes(app)
    result = app.sync("photos")
    assert (result.created, result.updated, result.moved, result.deleted, result.unchanged) == (0, 0, 0, 0, 50)
    assert item_rows_checksum(app) == before
    assert sum(app.jobs().counts().values()) == jobs_before
    # Only the sync_runs bookkeeping row was written (insert + update), plus temp tables.
    item_writes = app.catalogue._conn.execute(
        "SELECT count(*) FROM items WHERE updated_at > created_at").fetchone()[0]
    assert item_writes == 0
    if app.catalogue.dialect.name == "sqlite":
        assert _row_writes(app) - changes < 60  # temp-table rows are not counted per item
    else:
        assert _row_writes(app) == changes  # no item row rewritten


def test_listed_facts_are_those_a_stat_gives(app, storage):
    """The local driver's find pages are staged without being parsed in Python (SQLite) or
    parsed (PostgreSQL): either way each item holds exactly the size, mtime and etag that a
    stat of its file gives (the daemon's path), whatever the mtime's digits."""
    mtimes_ns = [1_700_000_000_123_456_789, 1_700_000_000_000_000_001, 999_999_999_999_999_999,
                 5_000_000_001, 0, -1_500_000_000, 4_102_444_800_987_654_321]
    for i, ns in enumerate(mtimes_ns):
        os.utime(put_file(storage, f"d{i % 2}/f{i}.bin", "x" * i), ns=(ns, ns))
    for i in range(2000):  # blocks of plain files only: the unparsed path
        put_file(storage, f"bulk/{i}.jpg", str(i))
    result = app.sync("photos")
    assert result.created == len(mtimes_ns) + 2000
    driver = app.driver("disk")
    assert all(isinstance(page, FindPage) for page in driver.list_pages())
    rows = app.catalogue._conn.execute("SELECT filename, size, mtime, etag FROM items").fetchall()
    for filename, size, mtime, etag in rows:
        facts = driver.stat(filename[1:])
        assert (size, mtime, etag) == (facts.size, facts.mtime, facts.etag), filename
    assert app.sync("photos").unchanged == len(rows)


def test_modified_file_is_updated_and_gets_a_new_job(app, storage):
    path = put_file(storage, "a.txt", "one")
    app.sync("photos")
    first = items_by_path(app)["/a.txt"]
    path.write_text("two, longer")
    result = app.sync("photos")
    assert (result.updated, result.created) == (1, 0)
    item = items_by_path(app)["/a.txt"]
    assert item["id"] == first["id"]
    assert item["metadata"]["system"]["size"] == len("two, longer")
    jobs = [(j["state"],) for j in app.jobs().rows()]
    assert [j[0] for j in jobs] == ["cancelled", "pending"]  # the stale job is superseded


def test_touched_file_is_updated_without_new_job(app, storage):
    path = put_file(storage, "a.txt", "one")
    app.sync("photos")
    os.utime(path, (1_000_000, 1_000_000))
    result = app.sync("photos")
    assert result.updated == 1
    # Local etags include the mtime, so a touch is a content change to a local folder.
    assert items_by_path(app)["/a.txt"]["metadata"]["system"]["modified"].startswith("1970-01-12")


def test_deleted_file_becomes_missing_then_pruned(app, storage):
    put_file(storage, "keep.txt", "k")
    gone = put_file(storage, "gone.txt", "g")
    app.sync("photos")
    gone.unlink()
    result = app.sync("photos")
    assert result.deleted == 1
    assert items_by_path(app)["/gone.txt"]["state"] == "missing"
    # A ghost stays a ghost without writes on the next sync.
    assert app.sync("photos").deleted == 0
    result = app.sync("photos", prune=True)
    assert result.deleted == 1
    assert "/gone.txt" not in items_by_path(app)
    assert "/keep.txt" in items_by_path(app)


def test_deleted_file_pending_job_is_cancelled(app, storage):
    gone = put_file(storage, "gone.txt", "g")
    app.sync("photos")
    gone.unlink()
    app.sync("photos")
    states = [(j["state"],) for j in app.jobs().rows()]
    assert states == [("cancelled",)]


def test_rename_keeps_id_and_metadata(app, storage):
    put_file(storage, "cats/a.jpg", "image bytes")
    app.sync("photos")
    original = items_by_path(app)["/cats/a.jpg"]
    app.catalogue._conn.execute("""UPDATE items SET "user" = '{"camera": "cam_01"}'""")
    (storage / "dogs").mkdir()
    os.rename(storage / "cats/a.jpg", storage / "dogs/renamed b.jpg")
    result = app.sync("photos")
    assert (result.moved, result.created, result.deleted) == (1, 0, 0)
    items = items_by_path(app)
    assert list(items) == ["/dogs/renamed b.jpg"]
    moved = items["/dogs/renamed b.jpg"]
    assert moved["id"] == original["id"]
    assert moved["metadata"]["user"] == {"camera": "cam_01"}
    # No new preprocessing: the content did not change.
    assert sum(app.jobs().counts().values()) == 1


def test_copy_is_a_new_item_not_a_move(app, storage):
    put_file(storage, "a.jpg", "same bytes")
    app.sync("photos")
    put_file(storage, "b.jpg", "same bytes")
    result = app.sync("photos")
    assert (result.created, result.moved) == (1, 0)


def test_swapped_names_are_two_updates(app, storage):
    put_file(storage, "a", "AAAA")
    put_file(storage, "b", "BB")
    app.sync("photos")
    ids = {k: v["id"] for k, v in items_by_path(app).items()}
    os.rename(storage / "a", storage / "tmp")
    os.rename(storage / "b", storage / "a")
    os.rename(storage / "tmp", storage / "b")
    result = app.sync("photos")
    assert result.updated == 2 and result.created == 0 and result.deleted == 0
    assert {k: v["id"] for k, v in items_by_path(app).items()} == ids


def test_dry_run_writes_nothing(app, storage):
    put_file(storage, "a.txt", "a")
    result = app.sync("photos", dry_run=True)
    assert result.created == 1 and result.samples["created"] == ["/a.txt"]
    assert len(list(app.catalogue.iter_items(app.dataset("photos")))) == 0
    assert runs.runs(app.catalogue, app.dataset("photos")) == []


def test_hidden_folder_and_empty_folders_are_not_items(app, storage):
    put_file(storage, ".dataloop/thumbnails/x.jpg", "t")
    put_file(storage, "sub/.dataloop/thumbnails/y.jpg", "a nested dataset's artifacts")
    put_file(storage, "sub/kept.txt", "kept")
    (storage / "empty" / "deeper").mkdir(parents=True)
    app.sync("photos")
    assert list(items_by_path(app)) == ["/sub/kept.txt"]


def test_odd_names(app, storage):
    names = ["with space.jpg", "ünïcødé/猫.png", "hash#1.jpg", "q?.jpg", "pct%20.jpg",
             "plus+sign.jpg", "a..b.jpg", "'quote\".jpg", "new\nline.jpg"]
    for name in names:
        put_file(storage, name, name)
    result = app.sync("photos")
    assert result.created == len(names) and result.errors == 0
    assert sorted(items_by_path(app)) == sorted("/" + n for n in names)


def test_unreadable_entry_is_recorded_and_run_goes_on(app, storage):
    if os.geteuid() == 0:
        bad_name = b"bad-\xff.jpg"  # root reads every folder; an undecodable name still fails
        (storage / "ok.jpg").write_bytes(b"x")
        with open(os.path.join(os.fsencode(storage), bad_name), "wb") as f:
            f.write(b"y")
    else:
        put_file(storage, "ok.jpg")
        put_file(storage, "locked/x.jpg")
        os.chmod(storage / "locked", 0)
    result = app.sync("photos")
    assert result.created == 1 and result.errors == 1
    errors = app.catalogue.listing_errors(app.dataset("photos"))
    assert len(errors) == 1 and errors[0]["reason"]


def test_items_under_unreadable_folder_are_not_deleted(app, storage, monkeypatch):
    put_file(storage, "ok/a.jpg")
    put_file(storage, "flaky/b.jpg")
    app.sync("photos")
    driver = app.dataset_driver("photos").inner
    real = driver.list_pages

    def failing(prefix="", *, on_error=None):
        for page in real(prefix, on_error=on_error):
            yield [info for info in page if not info.key.startswith("flaky/")]
        on_error("flaky", "Input/output error")

    monkeypatch.setattr(driver, "list_pages", failing)
    result = app.sync("photos")
    assert result.deleted == 0 and result.errors == 1
    assert items_by_path(app)["/flaky/b.jpg"]["state"] == "present"


def test_listing_failure_midway_changes_nothing(app, storage, monkeypatch):
    for i in range(5):
        put_file(storage, f"{i}.jpg", str(i))
    app.sync("photos")
    driver = app.dataset_driver("photos").inner

    def broken(prefix="", *, on_error=None):
        yield []
        raise OSError("connection reset")

    monkeypatch.setattr(driver, "list_pages", broken)
    with pytest.raises(OSError):
        app.sync("photos")
    assert all(i["state"] == "present" for i in items_by_path(app).values())
    runs_ = [(r["status"],) for r in runs.runs(app.catalogue, app.dataset("photos"))]
    assert runs_[-1] == ("failed",)


def test_mass_delete_is_refused_before_deleting_anything(config_file, storage, tmp_path):
    from syncd.app import App
    from syncd.config import load_config
    text = config_file.read_text() + "\n[sync]\nmax_delete_percent = 50\n"
    config_file.write_text(text)
    with App(load_config(config_file)) as app:
        for i in range(10):
            put_file(storage, f"{i}.jpg", str(i))
        app.sync("photos")
        for i in range(8):
            (storage / f"{i}.jpg").unlink()
        result = app.sync("photos")
        assert result.deleted == 0 and "max_delete_percent" in result.deletes_skipped
        assert all(i["state"] == "present" for i in items_by_path(app).values())


def test_prefix_sync_only_touches_that_folder(app, storage):
    put_file(storage, "a/1.jpg", "1")
    put_file(storage, "b/2.jpg", "2")
    app.sync("photos")
    (storage / "b/2.jpg").unlink()
    (storage / "a/1.jpg").unlink()
    put_file(storage, "a/3.jpg", "3")
    result = app.sync("photos", prefix="a/")
    assert (result.created, result.deleted) == (1, 1)
    assert items_by_path(app)["/b/2.jpg"]["state"] == "present"


def test_created_items_and_jobs_are_written_together(app, storage):
    for i in range(20):
        put_file(storage, f"{i}.jpg", str(i))
    app.sync("photos")
    conn = app.catalogue._conn
    assert conn.execute(
        "SELECT count(*) FROM items i JOIN jobs j ON j.item_pk = i.pk AND j.state = 'pending'"
    ).fetchone()[0] == 20


@pytest.mark.sqlite_only
def test_schema_is_versioned_and_wal(app):
    conn = app.catalogue._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    from syncd.catalogue.schema import MIGRATIONS
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    plan = " ".join(r[3] for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM items WHERE dataset_id = 1 AND filename = '/a'"))
    assert "USING INDEX items_path" in plan


def test_newer_schema_is_refused(tmp_path):
    from syncd.catalogue import Catalogue
    from syncd.errors import CatalogueError
    path = tmp_path / "c.db"
    Catalogue(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(CatalogueError, match="newer"):
        Catalogue(path)


def test_opening_waits_for_another_process_creating_the_catalogue(tmp_path):
    """Two syncd processes starting together on a new catalogue: the second waits for the
    first's write instead of failing with "database is locked"."""
    import threading

    from syncd.catalogue import Catalogue
    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE being_created (x)")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        catalogue = Catalogue(path)
    finally:
        release.join()
        other.close()
    assert catalogue._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert catalogue.version >= 1
    catalogue.close()


@pytest.mark.sqlite_only
def test_a_large_sync_checkpoints_aside_and_bounds_the_wal(app, storage, monkeypatch):
    """Created items are written while a thread checkpoints the WAL: the WAL starts over
    between transactions once past its bound, ends emptied, and the catalogue is whole. A
    reader that holds the WAL meanwhile stalls nothing: it only keeps the WAL from starting
    over until it is done."""
    import time

    from syncd.catalogue import backend, listing

    monkeypatch.setattr(listing, "INSERT_CHUNK", 200)
    monkeypatch.setattr(backend, "WAL_BOUND", 64 * 1024)
    monkeypatch.setattr(backend, "CHECKPOINT_EVERY", 0.005)
    wal = Path(str(app.catalogue.path) + "-wal")
    sizes = []
    original = backend.SQLiteDialect.checkpoints_aside

    def watched(self, conn):
        with original(self, conn) as between:
            def spy():
                sizes.append(wal.stat().st_size)
                between()
            yield spy

    monkeypatch.setattr(backend.SQLiteDialect, "checkpoints_aside",
                        contextlib.contextmanager(watched))
    for i in range(3000):
        put_file(storage, f"d{i % 30}/{i}.jpg", str(i))
    reader = sqlite3.connect(app.catalogue.path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM datasets").fetchone()  # holds a snapshot
    started = time.monotonic()
    assert app.sync("photos").created == 3000
    assert time.monotonic() - started < 10  # not the busy timeout per transaction
    reader.rollback()
    reader.close()
    for i in range(3000, 6000):
        put_file(storage, f"e{i % 30}/{i}.jpg", str(i))
    sizes.clear()
    assert app.sync("photos").created == 3000
    # 30 chunks of the listing, 200 rows each (half of them created, under 160 KB of WAL):
    # the WAL the reader kept from starting over is emptied at once, and from then on stays
    # within its bound plus one chunk; unbounded, it would pass 3 MB
    assert len(sizes) == 30 and sizes[0] > 1024 * 1024 and sizes[1] == 0, sizes
    assert max(sizes[1:]) < 64 * 1024 + 160 * 1024, sizes
    assert sizes.count(0) >= 5, sizes
    assert wal.stat().st_size < 64 * 1024  # emptied at the end (then the run's own commit)
    conn = app.catalogue._conn
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 6000
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 6000
