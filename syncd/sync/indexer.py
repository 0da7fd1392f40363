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

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import filelock

from drivers import Driver, DriverError, NotFound, PermissionDenied, Unreachable

from ..imports import links
from ..catalogue import Catalogue, Dataset, now_iso
from ..errors import SyncError
from ..jobs.queue import enqueue_cleanup

log = logging.getLogger(__name__)

# What identifies content across a rename: the MD5, else the size and etag together.
CONTENT_KEY = """(CASE WHEN md5 IS NOT NULL AND md5 != '' THEN 'md5:' || md5
                      WHEN etag IS NOT NULL AND size IS NOT NULL THEN 'etag:' || size || ':' || etag
                 END)"""
INSERT_CHUNK = 50_000  # created items written per transaction
SAMPLE = 20  # changed paths remembered per kind of change, for --dry-run and logs
PREFETCH_PAGES = 16  # listing pages read ahead of the catalogue writes


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
# Another source of the listing than the driver (a bucket inventory): (prefix, on_error) ->
# pages of (key, size, mtime, etag, md5), as Driver.list_pages yields them.
Listing = Callable[[str, Callable[[str, str], None]], Iterator[list]]


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
    listing: Listing | None = None,
) -> SyncResult:
    """List `driver` (under `prefix`) and bring `dataset`'s items in line with it.

    With `listing` (an inventory: a snapshot, maybe older than the catalogue), the listing
    comes from it instead and nothing is deleted: a later listing sync finds what is gone."""
    with _dataset_lock(catalogue, dataset):
        return _sync_locked(catalogue, dataset, driver, prefix=prefix, dry_run=dry_run,
                            prune=prune, max_delete_percent=max_delete_percent, progress=progress,
                            listing=listing)


@contextlib.contextmanager
def _dataset_lock(catalogue: Catalogue, dataset: Dataset) -> Iterator[None]:
    """One sync of a dataset at a time, across processes; the OS frees the lock if the
    holder dies, so a killed sync never blocks the next one."""
    if str(catalogue.path) == ":memory:":
        yield
        return
    lock = filelock.FileLock(f"{catalogue.path}.sync-{dataset.id}.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        log.info("%s: waiting for another sync of this dataset to finish", dataset.name)
        lock.acquire()
    try:
        # Runs still marked running were left by a process that died mid-sync.
        with catalogue.transaction(immediate=True) as conn:
            conn.execute(
                "UPDATE sync_runs SET status = 'interrupted', finished_at = ? "
                "WHERE dataset_id = ? AND status = 'running'",
                (now_iso(), dataset.id),
            )
        yield
    finally:
        lock.release()


def _sync_locked(catalogue, dataset, driver, *, prefix, dry_run, prune, max_delete_percent,
                 progress, listing=None) -> SyncResult:
    started = time.monotonic()
    result = SyncResult(dataset.name, dry_run=dry_run, pruned=prune)
    conn = catalogue.conn
    run_id = None if dry_run else _start_run(catalogue, dataset)
    try:
        _create_temp_tables(conn)
        errors: list[tuple[str, str]] = []
        _load_listing(conn, driver, prefix, errors, result, progress, listing)
        result.errors = len(errors)
        for path, reason in errors:
            log.warning("%s: cannot list %s: %s", dataset.name, path or "/", reason)
        conn.executemany("INSERT INTO temp.unlisted VALUES ('/' || ?)", [(p,) for p, _ in errors])
        plan = _plan(conn, dataset, Scope(prefix), result.listed)
        result.created = plan.fresh - plan.moves
        result.moved = plan.moves
        result.updated = plan.changed
        result.deleted = plan.gone_present - plan.moves_from_present
        if prune:
            result.deleted += plan.gone_missing - plan.moves_from_missing
        result.unchanged = result.listed - result.created - result.moved - result.updated
        result.samples = _samples(conn, plan)
        present = catalogue.count_items(dataset)["present"] if result.deleted else 0
        if listing is not None and result.deleted:
            result.deletes_skipped = (f"{result.deleted} items are not in the inventory: an"
                                      " inventory sync deletes nothing (a listing sync will)")
            result.deleted = 0
        elif present and 100.0 * result.deleted / present > max_delete_percent:
            result.deletes_skipped = (
                f"{result.deleted} of {present} items would be deleted, more than"
                f" sync.max_delete_percent = {max_delete_percent}%"
            )
            result.deleted = 0
        if not dry_run:
            _read_link_files(conn, driver, plan)
            _apply(catalogue, dataset, plan, prune=prune, deletes=result.deletes_skipped is None)
            _record_errors(catalogue, dataset, run_id, errors)
    except DriverError as error:
        if run_id is not None:
            _finish_run(catalogue, run_id, result, "failed", str(error))
        raise SyncError(_describe_failure(driver, error)) from error
    except BaseException as error:
        if run_id is not None:
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            _finish_run(catalogue, run_id, result, status, f"{type(error).__name__}: {error}")
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


class Scope:
    """The filenames under a listing prefix, as an index range: filename >= low AND < high."""

    def __init__(self, prefix: str):
        self.low = "/" + prefix
        self.high = self.low[:-1] + chr(ord(self.low[-1]) + 1)


# -- the listing --------------------------------------------------------------------------

TEMP_TABLES = ("listing", "unlisted", "diff", "gone", "moves", "link_info")


def _create_temp_tables(conn) -> None:
    _drop_temp_tables(conn)
    conn.execute(
        """CREATE TEMP TABLE listing (n INTEGER PRIMARY KEY, path TEXT NOT NULL, size INTEGER,
                                      mtime REAL, etag TEXT, md5 TEXT)"""
    )
    conn.execute("CREATE TEMP TABLE unlisted (path TEXT NOT NULL)")


def _drop_temp_tables(conn) -> None:
    for table in TEMP_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")


def _load_listing(conn, driver, prefix, errors, result, progress, listing=None) -> None:
    def on_error(key: str, reason: str) -> None:
        errors.append((key, reason))

    insert = "INSERT INTO temp.listing (path, size, mtime, etag, md5) VALUES ('/' || ?, ?, ?, ?, ?)"
    conn.execute("BEGIN")
    try:
        if listing is not None:
            pages = listing(prefix, on_error)
        else:
            pages = driver.list_pages(prefix, on_error=on_error)
        if listing is not None or driver.features.threaded_listing:
            pages = prefetched(pages)
        for page in pages:
            conn.executemany(insert, page)
            result.listed += len(page)
            if progress:
                progress(len(page))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_END = object()


def prefetched(pages: Iterator[list], depth: int = PREFETCH_PAGES) -> Iterator[list]:
    """Iterate `pages` in a thread, `depth` pages ahead, so that listing (a child process,
    network waits, parsing) overlaps the catalogue writes, which release the GIL."""
    slots: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        slots.put(page, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_END)
        except BaseException as error:  # handed to the consumer, raised there
            slots.put(error)
        finally:
            close = getattr(pages, "close", None)
            if close:
                close()

    thread = threading.Thread(target=produce, name="syncd-listing", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


# -- the diff -----------------------------------------------------------------------------

@dataclass
class Plan:
    initial: bool = False  # no item in scope before: every listed path is created
    fresh: int = 0  # listed paths with no item
    changed: int = 0
    gone_present: int = 0
    gone_missing: int = 0
    moves: int = 0
    moves_from_present: int = 0
    moves_from_missing: int = 0


def _plan(conn, dataset: Dataset, scope: Scope, listed: int) -> Plan:
    ds = dataset.id
    plan = Plan()
    existing = conn.execute(
        "SELECT count(*) FROM items WHERE dataset_id = ? AND filename >= ? AND filename < ?",
        (ds, scope.low, scope.high),
    ).fetchone()[0]
    if existing == 0:
        plan.initial = True
        plan.fresh = listed
        return plan
    # One pass over the listing: the paths with no item (pk NULL) and those whose item
    # differs or is a ghost that came back.
    conn.execute("CREATE TEMP TABLE diff (n INTEGER PRIMARY KEY, pk INTEGER, content_changed INTEGER)")
    conn.execute(
        """INSERT INTO temp.diff
           SELECT l.n, i.pk, (i.state != 'present' OR i.size IS NOT l.size
                              OR i.etag IS NOT l.etag OR i.md5 IS NOT l.md5)
           FROM temp.listing l LEFT JOIN items i ON i.dataset_id = ? AND i.filename = l.path
           WHERE i.pk IS NULL OR i.state != 'present' OR i.size IS NOT l.size
                 OR i.mtime IS NOT l.mtime OR i.etag IS NOT l.etag OR i.md5 IS NOT l.md5""",
        (ds,),
    )
    plan.fresh, plan.changed = conn.execute(
        "SELECT count(*) - count(pk), count(pk) FROM temp.diff"
    ).fetchone()
    conn.execute("CREATE TEMP TABLE moves (pk INTEGER, state TEXT, n INTEGER)")
    conn.execute("CREATE TEMP TABLE gone (pk INTEGER PRIMARY KEY, state TEXT, size INTEGER, etag TEXT, md5 TEXT)")
    if existing == listed - plan.fresh:
        return plan  # every item in scope was listed: nothing is gone
    # Items in scope that were not listed, except under a path that could not be read.
    conn.execute("CREATE INDEX temp.listing_path ON listing(path)")
    conn.execute(
        """INSERT INTO temp.gone
           SELECT i.pk, i.state, i.size, i.etag, i.md5 FROM items i
           WHERE i.dataset_id = ? AND i.filename >= ? AND i.filename < ?
             AND NOT EXISTS (SELECT 1 FROM temp.listing l WHERE l.path = i.filename)
             AND NOT EXISTS (SELECT 1 FROM temp.unlisted u
                             WHERE u.path = '/' OR i.filename = u.path
                                OR substr(i.filename, 1, length(u.path) + 1) = u.path || '/')""",
        (ds, scope.low, scope.high),
    )
    plan.gone_present, plan.gone_missing = conn.execute(
        "SELECT total(state = 'present'), total(state != 'present') FROM temp.gone"
    ).fetchone()
    plan.gone_present, plan.gone_missing = int(plan.gone_present), int(plan.gone_missing)
    if plan.fresh and (plan.gone_present or plan.gone_missing):
        # Pair gone items with fresh paths of the same content, one to one, present first.
        conn.execute(
            f"""INSERT INTO temp.moves
               WITH g AS (
                   SELECT pk, state, {CONTENT_KEY} AS k,
                          row_number() OVER (PARTITION BY {CONTENT_KEY}
                                             ORDER BY state = 'present' DESC, pk) AS r
                   FROM temp.gone WHERE {CONTENT_KEY} IS NOT NULL),
               f AS (
                   SELECT l.n, {CONTENT_KEY} AS k,
                          row_number() OVER (PARTITION BY {CONTENT_KEY} ORDER BY l.n) AS r
                   FROM temp.diff d JOIN temp.listing l ON l.n = d.n
                   WHERE d.pk IS NULL AND {CONTENT_KEY} IS NOT NULL)
               SELECT g.pk, g.state, f.n FROM g JOIN f ON g.k = f.k AND g.r = f.r"""
        )
        plan.moves, plan.moves_from_present = conn.execute(
            "SELECT count(*), total(state = 'present') FROM temp.moves"
        ).fetchone()
        plan.moves_from_present = int(plan.moves_from_present)
        plan.moves_from_missing = plan.moves - plan.moves_from_present
    return plan


def _fresh_rows(plan: Plan) -> str:
    """SQL selecting the listing rows that become new items (not moves)."""
    if plan.initial:
        return "SELECT l.* FROM temp.listing l"
    return ("SELECT l.* FROM temp.diff d JOIN temp.listing l ON l.n = d.n "
            "WHERE d.pk IS NULL AND d.n NOT IN (SELECT n FROM temp.moves)")


def _samples(conn, plan: Plan) -> dict[str, list[str]]:
    queries = {"created": f"SELECT path FROM ({_fresh_rows(plan)})"}
    if not plan.initial:
        queries |= {
            "updated": "SELECT i.filename FROM temp.diff d JOIN items i ON i.pk = d.pk",
            "moved": "SELECT i.filename || ' -> ' || l.path FROM temp.moves m "
                     "JOIN items i ON i.pk = m.pk JOIN temp.listing l ON l.n = m.n",
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

def _apply(catalogue: Catalogue, dataset: Dataset, plan: Plan, *, prune: bool, deletes: bool) -> None:
    conn = catalogue.conn
    now = now_iso()
    with catalogue.transaction(immediate=True):
        if plan.changed or plan.moves:
            _apply_changes(conn, now)
            _apply_link_files(conn, dataset.id)
        if deletes and (plan.gone_present or plan.gone_missing):
            _apply_deletes(conn, now, prune=prune)
        conn.execute("UPDATE datasets SET synced_at = ? WHERE id = ?", (now, dataset.id))
    if plan.fresh == plan.moves:
        return
    # Created items, in chunks so that a very large first sync does not hold the write
    # lock for long; each chunk writes its items and their jobs together.
    last = conn.execute("SELECT coalesce(max(n), 0) FROM temp.listing").fetchone()[0]
    fresh = _fresh_rows(plan)
    for low in range(1, last + 1, INSERT_CHUNK):
        with catalogue.transaction(immediate=True):
            before = conn.execute("SELECT coalesce(max(pk), 0) FROM items").fetchone()[0]
            conn.execute(
                f"""INSERT OR IGNORE INTO items (dataset_id, filename, size, mtime, etag, md5,
                                                 created_at, updated_at)
                    SELECT ?, path, size, mtime, etag, md5, ?, ? FROM ({fresh})
                    WHERE n BETWEEN ? AND ? ORDER BY n""",
                (dataset.id, now, now, low, low + INSERT_CHUNK - 1),
            )
            conn.execute(
                """INSERT INTO jobs (item_pk, kind, state, created_at, updated_at)
                   SELECT pk, 'preprocess', 'pending', ?, ? FROM items WHERE pk > ?""",
                (now, now, before),
            )
            _apply_link_files(conn, dataset.id, after_pk=before)


# -- link files ----------------------------------------------------------------------------
# A small `.json` file among the created and content-changed paths is read, and if it is a
# link in the reference's format (syncd.imports.links) its item gets `type = 'link'` and the link in
# its system metadata, in the same transaction as the item row. Other files are never read,
# so a sync of non-JSON files costs what it did.

def _read_link_files(conn, driver: Driver, plan: Plan) -> None:
    """Read the small .json files among created and content-changed paths into temp.link_info:
    the links, and the link items whose file is no longer a link."""
    conn.execute("CREATE TEMP TABLE link_info (path TEXT PRIMARY KEY, type TEXT NOT NULL, patch TEXT NOT NULL)")
    sql = f"SELECT path, NULL FROM ({_fresh_rows(plan)}) WHERE path LIKE '%.json' AND size <= :max"
    if not plan.initial:
        sql += """ UNION ALL
            SELECT i.filename, i.type FROM temp.diff d JOIN items i ON i.pk = d.pk
            JOIN temp.listing l ON l.n = d.n
            WHERE d.content_changed AND ((i.filename LIKE '%.json' AND l.size <= :max) OR i.type = 'link')"""
    candidates = conn.execute(sql, {"max": links.MAX_LINK_BYTES}).fetchall() if plan.fresh or plan.changed else []
    if not candidates:
        return
    if "get" not in getattr(driver, "permissions", ("get",)):
        log.warning("driver %r has no 'get' permission: %d JSON files not read as links",
                    driver.name, len(candidates))
        return
    found = links.read_links(driver, [path[1:] for path, _ in candidates])
    rows = []
    for path, old_type in candidates:
        if found.get(path[1:]):
            rows.append((path, "link", json.dumps(links.link_system(found[path[1:]]))))
        elif old_type == "link":
            rows.append((path, "file", '{"mimetype": null}'))  # shebang goes too
    conn.executemany("INSERT OR REPLACE INTO temp.link_info VALUES (?, ?, ?)", rows)


def _apply_link_files(conn, dataset_id: int, *, after_pk: int = 0) -> None:
    if not conn.execute("SELECT 1 FROM temp.sqlite_master WHERE name = 'link_info'").fetchone():
        return
    conn.execute(
        """UPDATE items SET type = li.type,
                  system = json_patch(json_patch(coalesce(items.system, '{}'), '{"shebang": null}'), li.patch)
           FROM temp.link_info li
           WHERE items.dataset_id = ? AND items.filename = li.path AND items.pk > ?""",
        (dataset_id, after_pk),
    )


def _apply_changes(conn, now: str) -> None:
    # Moves: the item takes its new path and the new listing facts; no new job, the
    # content is the same. OR IGNORE here and for created items: a path that another
    # writer (the daemon's event applier) catalogued since the listing keeps its item.
    conn.execute(
        """UPDATE OR IGNORE items SET filename = l.path, size = l.size, mtime = l.mtime, etag = l.etag,
                  md5 = l.md5, state = 'present', updated_at = ?
           FROM temp.moves m JOIN temp.listing l ON l.n = m.n WHERE items.pk = m.pk""",
        (now,),
    )
    # Updates: a content change gets a new job; an older pending job for it is superseded.
    changed = "SELECT pk FROM temp.diff WHERE pk IS NOT NULL AND content_changed"
    conn.execute(
        f"""UPDATE jobs SET state = 'cancelled', updated_at = ?
            WHERE state = 'pending' AND kind = 'preprocess' AND item_pk IN ({changed})""",
        (now,),
    )
    conn.execute(
        f"""INSERT INTO jobs (item_pk, kind, state, created_at, updated_at)
            SELECT pk, 'preprocess', 'pending', ?, ? FROM ({changed})""",
        (now, now),
    )
    conn.execute(
        """UPDATE items SET size = l.size, mtime = l.mtime, etag = l.etag, md5 = l.md5,
                  state = 'present', updated_at = ?
           FROM temp.diff d JOIN temp.listing l ON l.n = d.n
           WHERE d.pk IS NOT NULL AND items.pk = d.pk""",
        (now,),
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
