"""Paths that arrived in a dataset on their own (bucket events, a watched folder, a sync or
rescan) and that its upload controls refused an item (sampled out, or past a quota).

Each refusal is one row of `refused` (dataset, filename): the reason and the content (size,
etag, md5) it was decided for, and when. The sync diff and the event applier consult it, so a
refused path is decided once: it is left alone while its content stays the same, decided
again when its content changes, forgotten when it leaves storage or gets an item, and
admitted by `syncd items admit`. Nothing here touches storage.

Plain portable SQL (no JSON functions, no `INSERT OR ...`; upserts by `ON CONFLICT`; temp
tables unqualified), the same on SQLite and PostgreSQL (backend.py). The sync's side works
on the staged listing's temporary tables (syncd.catalogue.listing): `held` holds the listing rows that get no
item, and `StagedListing.fresh_rows` leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .store import Catalogue, Dataset

SAMPLED_OUT = "sampled-out"
QUOTA_REASONS = {"quota_per_minute": "quota-minute", "quota_per_hour": "quota-hour",
                 "quota_per_day": "quota-day"}
REASONS = (SAMPLED_OUT, *QUOTA_REASONS.values())
FIELDS = ("filename", "reason", "size", "etag", "md5", "decided_at")
PAGE = 1000  # rows read at a time by `refusals` and the sync's sampling pass


def _same(a: str, b: str) -> str:
    return f"({a} = {b} OR ({a} IS NULL AND {b} IS NULL))"


# A refusal decided again replaces the earlier one: its reason, content and time.
UPSERT = """ON CONFLICT (dataset_id, filename) DO UPDATE SET reason = excluded.reason,
                size = excluded.size, etag = excluded.etag, md5 = excluded.md5,
                decided_at = excluded.decided_at"""
# A refusal (r) was decided for this listing row's (f) content.
SAME_CONTENT = " AND ".join(_same(f"r.{c}", f"f.{c}") for c in ("size", "etag", "md5"))


# -- quotas ---------------------------------------------------------------------------------

def created_since(catalogue: Catalogue, dataset: Dataset, since: Sequence[str]) -> list[int]:
    """For each ISO time in `since`, the dataset's items created at or after it, whichever
    way (uploads, imports, arrivals): what the quotas count."""
    if not since:
        return []
    sums = ", ".join("sum(CASE WHEN created_at >= ? THEN 1 ELSE 0 END)" for _ in since)
    row = catalogue._conn.execute(
        f"SELECT {sums} FROM items WHERE dataset_id = ? AND created_at >= ?",
        (*since, dataset.id, min(since)),
    ).fetchone()
    return [int(value or 0) for value in row]


# -- one path (the event applier, `items admit`) ----------------------------------------------

def find(catalogue: Catalogue, dataset: Dataset, filename: str) -> dict[str, Any] | None:
    row = catalogue._conn.execute(
        f"SELECT {', '.join(FIELDS)} FROM refused WHERE dataset_id = ? AND filename = ?",
        (dataset.id, filename)).fetchone()
    return None if row is None else dict(zip(FIELDS, row, strict=True))


def refuse(catalogue: Catalogue, dataset: Dataset, filename: str, reason: str, *,
           size: int | None, etag: str | None, md5: str | None, at: str) -> None:
    """Remember that `filename`, with this content, gets no item (the caller's transaction)."""
    catalogue._conn.execute(
        f"""INSERT INTO refused (dataset_id, filename, reason, size, etag, md5, decided_at)
            VALUES (?, ?, ?, ?, ?, ?, ?) {UPSERT}""",
        (dataset.id, filename, reason, size, etag, md5, at))


def forget(catalogue: Catalogue, dataset: Dataset, filenames: Iterable[str]) -> int:
    """Drop the refusals of these paths (admitted, or gone from storage)."""
    cursor = catalogue._conn.executemany(
        "DELETE FROM refused WHERE dataset_id = ? AND filename = ?",
        [(dataset.id, name) for name in filenames])
    return max(cursor.rowcount, 0)


# -- listing and counting -------------------------------------------------------------------

def refusals(catalogue: Catalogue, dataset: Dataset, *, reasons: Sequence[str] = (),
             filenames: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """The dataset's refusals in filename order, read a page at a time (only those with one of
    `reasons`, or at one of `filenames`, when given)."""
    if filenames:
        for name in sorted(set(filenames)):
            row = find(catalogue, dataset, name)
            if row is not None and (not reasons or row["reason"] in reasons):
                yield row
        return
    only = f" AND reason IN ({', '.join('?' for _ in reasons)})" if reasons else ""
    after = ""
    while True:
        rows = catalogue._conn.execute(
            f"SELECT {', '.join(FIELDS)} FROM refused WHERE dataset_id = ? AND filename > ?{only} "
            f"ORDER BY filename LIMIT {PAGE}", (dataset.id, after, *reasons)).fetchall()
        for row in rows:
            yield dict(zip(FIELDS, row, strict=True))
        if len(rows) < PAGE:
            return
        after = rows[-1][0]


def dataset_counts(catalogue: Catalogue, dataset: Dataset) -> dict[str, int]:
    """reason -> refused paths of the dataset."""
    return dict(catalogue._conn.execute(
        "SELECT reason, count(*) FROM refused WHERE dataset_id = ? GROUP BY reason ORDER BY reason",
        (dataset.id,)).fetchall())


def counts(conn) -> dict[tuple[str, str], int]:
    """(dataset, reason) -> refused paths, on any connection (the daemon's /metrics reads a
    read-only one)."""
    return {(name, reason): count for name, reason, count in conn.execute(
        "SELECT d.name, r.reason, count(*) FROM refused r JOIN datasets d ON d.id = r.dataset_id "
        "GROUP BY d.name, r.reason ORDER BY 1, 2")}


# -- a sync's listing (temp tables of syncd.catalogue.listing) --------------------------------

def any_in_scope(catalogue: Catalogue, dataset: Dataset, low: str, high: str) -> bool:
    return catalogue._conn.execute(
        "SELECT 1 FROM refused WHERE dataset_id = ? AND filename >= ? AND filename < ? LIMIT 1",
        (dataset.id, low, high)).fetchone() is not None


def start_holding(catalogue: Catalogue) -> None:
    """Create `held`: (listing row n, reason, new: refused now rather than before)."""
    catalogue._conn.execute(catalogue.dialect.ddl(
        "CREATE TEMP TABLE held (n INTEGER PRIMARY KEY, reason TEXT NOT NULL, new INTEGER NOT NULL)"))


def hold_known(catalogue: Catalogue, dataset: Dataset, fresh: str) -> int:
    """Hold the fresh listing rows (SQL `fresh`: rows of listing) already refused with
    the same content; returns how many."""
    return catalogue._conn.execute(
        f"""INSERT INTO held (n, reason, new)
            SELECT f.n, r.reason, 0 FROM ({fresh}) f
            JOIN refused r ON r.dataset_id = ? AND r.filename = f.path
            WHERE {SAME_CONTENT}""",
        (dataset.id,)).rowcount


def candidates(catalogue: Catalogue, fresh: str, *, after: int) -> list[tuple[int, str]]:
    """The next page of (n, path) of the fresh rows not held, after listing row `after`."""
    return catalogue._conn.execute(
        f"""SELECT f.n, f.path FROM ({fresh}) f
            WHERE f.n > ? AND f.n NOT IN (SELECT n FROM held) ORDER BY f.n LIMIT {PAGE}""",
        (after,)).fetchall()


def hold(catalogue: Catalogue, rows: Iterable[tuple[int, str]]) -> None:
    """Hold listing rows (n, reason): newly refused."""
    catalogue._conn.executemany("INSERT INTO held (n, reason, new) VALUES (?, ?, 1)", rows)


def hold_beyond(catalogue: Catalogue, fresh: str, room: int, reason: str) -> int:
    """Hold the fresh rows not held past the first `room` in filename order (so every host
    admits the same ones), for `reason`."""
    return catalogue._conn.execute(
        f"""INSERT INTO held (n, reason, new)
            SELECT n, ?, 1 FROM (
                SELECT f.n, row_number() OVER (ORDER BY f.path) AS r FROM ({fresh}) f
                WHERE f.n NOT IN (SELECT n FROM held)) ranked
            WHERE r > ?""",
        (reason, room)).rowcount


def held_counts(catalogue: Catalogue) -> tuple[int, dict[str, int]]:
    """(rows held by an earlier decision, reason -> rows newly refused)."""
    kept, new = 0, {}
    for reason, is_new, count in catalogue._conn.execute(
            "SELECT reason, new, count(*) FROM held GROUP BY reason, new ORDER BY reason"):
        if is_new:
            new[reason] = count
        else:
            kept += count
    return kept, new


def held_paths(catalogue: Catalogue, limit: int) -> list[str]:
    return [row[0] for row in catalogue._conn.execute(
        f"SELECT l.path FROM held h JOIN listing l ON l.n = h.n WHERE h.new = 1 "
        f"ORDER BY h.n LIMIT {int(limit)}")]


def record(catalogue: Catalogue, dataset: Dataset, *, admitted: str | None, low: str, high: str,
           at: str, unlisted: bool) -> None:
    """In one transaction: remember the listing's new refusals; with `admitted` (SQL: the
    listed paths that get items), forget their refusals and those of paths in scope that have
    an item, and with `unlisted` those of paths in scope no longer listed (outside folders that
    could not be read)."""
    conn = catalogue._conn
    with catalogue.transaction(immediate=True):
        conn.execute(
            f"""INSERT INTO refused (dataset_id, filename, reason, size, etag, md5, decided_at)
                SELECT ?, l.path, h.reason, l.size, l.etag, l.md5, ?
                FROM held h JOIN listing l ON l.n = h.n WHERE h.new = 1 {UPSERT}""",
            (dataset.id, at))
        if admitted is None:
            return
        conn.execute(f"DELETE FROM refused WHERE dataset_id = ? AND filename IN "
                     f"(SELECT a.path FROM ({admitted}) a)", (dataset.id,))
        conn.execute(  # paths that got an item another way (an upload, an event)
            """DELETE FROM refused WHERE dataset_id = ? AND filename >= ? AND filename < ?
                 AND EXISTS (SELECT 1 FROM items i WHERE i.dataset_id = refused.dataset_id
                                                     AND i.filename = refused.filename)""",
            (dataset.id, low, high))
        if not unlisted:
            return
        conn.execute("CREATE INDEX IF NOT EXISTS listing_path ON listing(path)")
        conn.execute(
            """DELETE FROM refused
               WHERE dataset_id = ? AND filename >= ? AND filename < ?
                 AND NOT EXISTS (SELECT 1 FROM listing l WHERE l.path = refused.filename)
                 AND NOT EXISTS (SELECT 1 FROM unlisted u
                                 WHERE u.path = '/' OR refused.filename = u.path
                                    OR substr(refused.filename, 1, length(u.path) + 1) = u.path || '/')""",
            (dataset.id, low, high))
