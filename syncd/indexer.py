"""Upstream sync: diff a storage listing against the catalogue and apply the difference.

The listing streams page by page into a temporary table (on disk, so memory stays flat
whatever the bucket's size); the diff is a handful of set-based SQL statements:

- created: listed paths with no item;
- updated: listed paths whose (size, mtime, etag, md5) differ from the item's, or whose
  item was missing and is back;
- deleted: present items that were not listed; marked missing (a "ghost", as the
  reference platform keeps them) or, with prune, removed;
- moved: a deleted item and a created path with the same content (same MD5, or same size
  and etag where there is no MD5) are one item that moved: it keeps its id and metadata.

Created and content-changed items get a preprocessing job in the same transaction as the
item itself, so a crash can never lose a trigger; deleted items with artifacts in storage get
a cleanup job the same way. Nothing is deleted when the listing
failed part-way, and items under a folder that could not be read are left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from drivers import Driver, DriverError, NotFound, PermissionDenied, Unreachable

from .catalogue import Catalogue, Dataset, now_iso
from .errors import SyncError
from .jobs import enqueue_cleanup

log = logging.getLogger(__name__)

# What identifies content across a rename: the MD5, else the size and etag together.
CONTENT_KEY = """(CASE WHEN md5 IS NOT NULL AND md5 != '' THEN 'md5:' || md5
                      WHEN etag IS NOT NULL AND size IS NOT NULL THEN 'etag:' || size || ':' || etag
                 END)"""
INSERT_CHUNK = 50_000  # created items written per transaction
SAMPLE = 20  # changed paths remembered per kind of change, for --dry-run and logs


@dataclass
class SyncResult:
    dataset: str
    listed: int = 0
    created: int = 0
    updated: int = 0
    moved: int = 0
    deleted: int = 0
    unchanged: int = 0
    errors: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    pruned: bool = False
    deletes_skipped: str | None = None  # why deletions were not applied, if they were not
    samples: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        if not data["deletes_skipped"]:
            del data["deletes_skipped"]
        return data


Progress = Callable[[int], None]  # called with the number of objects just listed


def sync_dataset(
    catalogue: Catalogue,
    dataset: Dataset,
    driver: Driver,
    *,
    prefix: str = "",
    dry_run: bool = False,
    prune: bool = False,
    max_delete_percent: float = 100.0,
    progress: Progress | None = None,
) -> SyncResult:
    """List `driver` (under `prefix`) and bring `dataset`'s items in line with it."""
    started = time.monotonic()
    result = SyncResult(dataset.name, dry_run=dry_run, pruned=prune)
    conn = catalogue.conn
    run_id = None if dry_run else _start_run(catalogue, dataset)
    scope = "/" + prefix
    try:
        _create_temp_tables(conn)
        errors: list[tuple[str, str]] = []
        _load_listing(conn, driver, prefix, errors, result, progress)
        result.errors = len(errors)
        for path, reason in errors:
            log.warning("%s: cannot list %s: %s", dataset.name, path or "/", reason)
        conn.executemany("INSERT INTO temp.unlisted VALUES ('/' || ?)", [(p,) for p, _ in errors])
        conn.execute("CREATE INDEX temp.listing_path ON listing(path)")
        _classify(conn, dataset, scope)
        counts = _counts(conn)
        result.created = counts["fresh"] - counts["moves"]
        result.moved = counts["moves"]
        result.updated = counts["changed"]
        result.deleted = counts["gone_present"] - counts["moves_from_present"]
        if prune:
            result.deleted += counts["gone_missing"] - counts["moves_from_missing"]
        result.unchanged = result.listed - result.created - result.moved - result.updated
        result.samples = _samples(conn)
        present = catalogue.count_items(dataset)["present"]
        if result.deleted and present and 100.0 * result.deleted / present > max_delete_percent:
            result.deletes_skipped = (
                f"{result.deleted} of {present} items would be deleted, more than"
                f" sync.max_delete_percent = {max_delete_percent}%"
            )
            result.deleted = 0
        if not dry_run:
            _apply(catalogue, dataset, prune=prune, deletes=result.deletes_skipped is None)
            _record_errors(catalogue, dataset, run_id, errors)
    except DriverError as error:
        if run_id is not None:
            _finish_run(catalogue, run_id, result, "failed", str(error))
        raise SyncError(_describe_failure(driver, error)) from error
    except BaseException as error:
        if run_id is not None:
            _finish_run(catalogue, run_id, result, "failed", f"{type(error).__name__}: {error}")
        raise
    finally:
        _drop_temp_tables(conn)
    result.seconds = time.monotonic() - started
    if run_id is not None:
        _finish_run(catalogue, run_id, result, "ok", result.deletes_skipped)
    return result


def _describe_failure(driver: Driver, error: DriverError) -> str:
    what = "storage error"
    for kind, label in ((NotFound, "not found"), (PermissionDenied, "permission denied"),
                        (Unreachable, "unreachable")):
        if isinstance(error, kind):
            what = label
            break
    return f"driver {driver.name!r} ({driver.describe()}): {what}: {error}"


# -- the listing --------------------------------------------------------------------------

def _create_temp_tables(conn) -> None:
    _drop_temp_tables(conn)
    conn.execute(
        "CREATE TEMP TABLE listing (path TEXT NOT NULL, size INTEGER, mtime REAL, etag TEXT, md5 TEXT)"
    )
    conn.execute("CREATE TEMP TABLE unlisted (path TEXT NOT NULL)")


def _drop_temp_tables(conn) -> None:
    for table in ("listing", "unlisted", "fresh", "gone", "moves", "changed"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")


def _load_listing(conn, driver, prefix, errors, result, progress) -> None:
    def on_error(key: str, reason: str) -> None:
        errors.append((key, reason))

    insert = "INSERT INTO temp.listing VALUES ('/' || ?, ?, ?, ?, ?)"
    conn.execute("BEGIN")
    try:
        for page in driver.list_pages(prefix, on_error=on_error):
            conn.executemany(insert, page)
            result.listed += len(page)
            if progress:
                progress(len(page))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# -- the diff -----------------------------------------------------------------------------

def _classify(conn, dataset: Dataset, scope: str) -> None:
    ds = dataset.id
    # Listed paths with no item at all.
    conn.execute(
        """CREATE TEMP TABLE fresh AS
           SELECT l.rowid AS n, l.* FROM temp.listing l
           WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.dataset_id = ? AND i.filename = l.path)""",
        (ds,),
    )
    # Listed paths whose item differs, or is a ghost that came back.
    conn.execute(
        """CREATE TEMP TABLE changed AS
           SELECT i.pk, l.size, l.mtime, l.etag, l.md5,
                  (i.state != 'present' OR i.size IS NOT l.size OR i.etag IS NOT l.etag
                   OR i.md5 IS NOT l.md5) AS content_changed
           FROM temp.listing l JOIN items i ON i.dataset_id = ? AND i.filename = l.path
           WHERE i.state != 'present' OR i.size IS NOT l.size OR i.mtime IS NOT l.mtime
                 OR i.etag IS NOT l.etag OR i.md5 IS NOT l.md5""",
        (ds,),
    )
    # Items in scope that were not listed, except under a path that could not be read.
    conn.execute(
        """CREATE TEMP TABLE gone AS
           SELECT i.pk, i.state, i.size, i.etag, i.md5 FROM items i
           WHERE i.dataset_id = ? AND substr(i.filename, 1, length(?)) = ?
             AND NOT EXISTS (SELECT 1 FROM temp.listing l WHERE l.path = i.filename)
             AND NOT EXISTS (SELECT 1 FROM temp.unlisted u
                             WHERE u.path = '/' OR i.filename = u.path
                                OR substr(i.filename, 1, length(u.path) + 1) = u.path || '/')""",
        (ds, scope, scope),
    )
    # Pair gone items with fresh paths of the same content, one to one; present items first.
    conn.execute("CREATE TEMP TABLE moves (pk INTEGER, state TEXT, n INTEGER)")
    if conn.execute("SELECT 1 FROM temp.gone LIMIT 1").fetchone():
        conn.execute(
            f"""INSERT INTO temp.moves
               WITH g AS (
                   SELECT pk, state, {CONTENT_KEY} AS k,
                          row_number() OVER (PARTITION BY {CONTENT_KEY}
                                             ORDER BY state = 'present' DESC, pk) AS r
                   FROM temp.gone WHERE {CONTENT_KEY} IS NOT NULL),
               f AS (
                   SELECT n, {CONTENT_KEY} AS k,
                          row_number() OVER (PARTITION BY {CONTENT_KEY} ORDER BY n) AS r
                   FROM temp.fresh WHERE {CONTENT_KEY} IS NOT NULL)
               SELECT g.pk, g.state, f.n FROM g JOIN f ON g.k = f.k AND g.r = f.r"""
        )


def _counts(conn) -> dict[str, int]:
    row = conn.execute(
        """SELECT (SELECT count(*) FROM temp.fresh),
                  (SELECT count(*) FROM temp.moves),
                  (SELECT count(*) FROM temp.moves WHERE state = 'present'),
                  (SELECT count(*) FROM temp.moves WHERE state != 'present'),
                  (SELECT count(*) FROM temp.changed),
                  (SELECT count(*) FROM temp.gone WHERE state = 'present'),
                  (SELECT count(*) FROM temp.gone WHERE state != 'present')"""
    ).fetchone()
    keys = ("fresh", "moves", "moves_from_present", "moves_from_missing", "changed",
            "gone_present", "gone_missing")
    return dict(zip(keys, row, strict=True))


def _samples(conn) -> dict[str, list[str]]:
    queries = {
        "created": "SELECT path FROM temp.fresh WHERE n NOT IN (SELECT n FROM temp.moves)",
        "updated": "SELECT i.filename FROM temp.changed c JOIN items i ON i.pk = c.pk",
        "moved": "SELECT i.filename || ' -> ' || f.path FROM temp.moves m "
                 "JOIN items i ON i.pk = m.pk JOIN temp.fresh f ON f.n = m.n",
        "deleted": "SELECT i.filename FROM temp.gone g JOIN items i ON i.pk = g.pk "
                   "WHERE g.state = 'present' AND g.pk NOT IN (SELECT pk FROM temp.moves)",
    }
    samples = {}
    for kind, sql in queries.items():
        rows = [row[0] for row in conn.execute(f"{sql} LIMIT {SAMPLE}")]
        if rows:
            samples[kind] = rows
    return samples


# -- applying it --------------------------------------------------------------------------

def _apply(catalogue: Catalogue, dataset: Dataset, *, prune: bool, deletes: bool) -> None:
    conn = catalogue.conn
    now = now_iso()
    with catalogue.transaction(immediate=True):
        # Moves: the item takes its new path (and the new listing facts); no new job, the
        # content is the same.
        conn.execute(
            """UPDATE items SET filename = f.path, size = f.size, mtime = f.mtime, etag = f.etag,
                      md5 = f.md5, state = 'present', updated_at = ?
               FROM temp.moves m JOIN temp.fresh f ON f.n = m.n WHERE items.pk = m.pk""",
            (now,),
        )
        # Updates: a content change gets a new job; an older pending job for it is superseded.
        conn.execute(
            """UPDATE jobs SET state = 'cancelled', updated_at = ?
               WHERE state = 'pending' AND kind = 'preprocess'
                 AND item_pk IN (SELECT pk FROM temp.changed WHERE content_changed)""",
            (now,),
        )
        conn.execute(
            """INSERT INTO jobs (item_pk, kind, state, created_at, updated_at)
               SELECT pk, 'preprocess', 'pending', ?, ? FROM temp.changed WHERE content_changed""",
            (now, now),
        )
        conn.execute(
            """UPDATE items SET size = c.size, mtime = c.mtime, etag = c.etag, md5 = c.md5,
                      state = 'present', updated_at = ?
               FROM temp.changed c WHERE items.pk = c.pk""",
            (now,),
        )
        if deletes:
            _apply_deletes(conn, now, prune=prune)
        conn.execute("UPDATE datasets SET synced_at = ? WHERE id = ?", (now, dataset.id))
    # Created items, in chunks so that a very large first sync does not hold the write
    # lock for long; each chunk writes its items and their jobs together.
    last = conn.execute("SELECT coalesce(max(n), 0) FROM temp.fresh").fetchone()[0]
    for low in range(1, last + 1, INSERT_CHUNK):
        with catalogue.transaction(immediate=True):
            before = conn.execute("SELECT coalesce(max(pk), 0) FROM items").fetchone()[0]
            conn.execute(
                """INSERT INTO items (dataset_id, filename, size, mtime, etag, md5,
                                      created_at, updated_at)
                   SELECT ?, path, size, mtime, etag, md5, ?, ? FROM temp.fresh
                   WHERE n BETWEEN ? AND ? AND n NOT IN (SELECT n FROM temp.moves)
                   ORDER BY n""",
                (dataset.id, now, now, low, low + INSERT_CHUNK - 1),
            )
            conn.execute(
                """INSERT INTO jobs (item_pk, kind, state, created_at, updated_at)
                   SELECT pk, 'preprocess', 'pending', ?, ? FROM items WHERE pk > ?""",
                (now, now, before),
            )


def _apply_deletes(conn, now: str, *, prune: bool) -> None:
    gone = "SELECT pk FROM temp.gone WHERE pk NOT IN (SELECT pk FROM temp.moves)"
    conn.execute(
        f"""UPDATE jobs SET state = 'cancelled', updated_at = ?
            WHERE state = 'pending' AND item_pk IN ({gone})""",
        (now,),
    )
    enqueue_cleanup(conn, gone, now)  # their thumbnails, durably, before a prune drops the rows
    if prune:
        conn.execute(f"DELETE FROM items WHERE pk IN ({gone})")
    else:
        conn.execute(
            f"UPDATE items SET state = 'missing', updated_at = ? WHERE pk IN ({gone}) AND state = 'present'",
            (now,),
        )


# -- bookkeeping --------------------------------------------------------------------------

def _start_run(catalogue: Catalogue, dataset: Dataset) -> int:
    with catalogue.transaction(immediate=True) as conn:
        cursor = conn.execute(
            "INSERT INTO sync_runs (dataset_id, started_at, status) VALUES (?, ?, 'running')",
            (dataset.id, now_iso()),
        )
        return cursor.lastrowid


def _finish_run(catalogue: Catalogue, run_id: int, result: SyncResult, status: str,
                message: str | None) -> None:
    with catalogue.transaction(immediate=True) as conn:
        conn.execute(
            """UPDATE sync_runs SET finished_at = ?, status = ?, listed = ?, created = ?,
                      updated = ?, moved = ?, deleted = ?, unchanged = ?, errors = ?, message = ?
               WHERE id = ?""",
            (now_iso(), status, result.listed, result.created, result.updated, result.moved,
             result.deleted, result.unchanged, result.errors, message, run_id),
        )


def _record_errors(catalogue: Catalogue, dataset: Dataset, run_id, errors) -> None:
    if not errors:
        return
    now = now_iso()
    with catalogue.transaction(immediate=True) as conn:
        conn.executemany(
            "INSERT INTO listing_errors (dataset_id, run_id, path, reason, at) VALUES (?, ?, ?, ?, ?)",
            [(dataset.id, run_id, "/" + path, reason, now) for path, reason in errors],
        )
