"""Reading the catalogue for people: keyset pages of items, folders, a dataset's status, an
item's jobs. Every read here is bounded (a page, a limit) or one aggregate, so it stays fast
and flat in memory at millions of items."""

from __future__ import annotations

from typing import Any

from . import arrivals
from .query import condition_sql
from .store import ITEM_COLUMNS, Catalogue, Dataset

MAX_PAGE = 1000  # items one page may hold
MAX_FOLDERS = 1000  # subfolders one listing may hold


def dataset_id(catalogue: Catalogue, dataset: Dataset) -> str:
    """A dataset's public id: the catalogue's instance id and its row number, like item ids."""
    return f"{catalogue.instance}{dataset.id:016x}"


def dataset_name(catalogue: Catalogue, dataset_row_id: int) -> str:
    """The name of the dataset with this row id (an item's `dataset_id`)."""
    return catalogue._conn.execute("SELECT name FROM datasets WHERE id = ?",
                                   (dataset_row_id,)).fetchone()[0]


def page(catalogue: Catalogue, dataset: Dataset, *, where=None,
         after: str = "", limit: int = 100, present_only: bool = False,
         bounds: tuple[str, str | None] | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` items in filename order after the filename `after`, and the filename to
    continue after (None at the end). Keyset pagination on the (dataset, filename) index: a
    page costs the same at the start and at the millionth item. `bounds` (low, high) limit
    the filenames further (a folder: see query.filename_bounds), in the same index range."""
    limit = max(1, min(limit, MAX_PAGE))
    extra_sql, extra_args = condition_sql(where, catalogue.dialect)
    state = "AND state = 'present'" if present_only else ""
    low, high = bounds or ("", None)
    end_sql, end_args = ("AND filename < ?", (high,)) if high is not None else ("", ())
    rows = catalogue._conn.mapped(
        f"SELECT {ITEM_COLUMNS} FROM items WHERE dataset_id = ? AND filename > ? {end_sql} "
        f"{state} {extra_sql} ORDER BY filename LIMIT ?",
        (dataset.id, max(after, low), *end_args, *extra_args, limit + 1),
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [catalogue.item_json(dataset, row) for row in rows]
    return items, (rows[-1]["filename"] if more else None)


def folders(catalogue: Catalogue, dataset: Dataset, parent: str = "/",
            limit: int = MAX_FOLDERS) -> list[str]:
    """The subfolders directly under `parent` ('/a/b'), found by skipping through the filename
    index one subfolder at a time (not by reading every item under them)."""
    prefix = "/" + parent.strip("/") + "/" if parent.strip("/") else "/"
    end = prefix[:-1] + "0"  # '0' follows '/': the end of everything under prefix
    found: list[str] = []
    after = prefix
    while len(found) < limit:
        row = catalogue._conn.execute(
            "SELECT filename FROM items WHERE dataset_id = ? AND filename > ? AND filename < ? "
            "AND instr(substr(filename, ?), '/') > 0 ORDER BY filename LIMIT 1",
            (dataset.id, after, end, len(prefix) + 1),
        ).fetchone()
        if row is None:
            break
        name = row[0][len(prefix):].split("/", 1)[0]
        found.append(prefix + name)
        after = prefix + name + "0"  # past every filename under this subfolder
    return found


def item_jobs(catalogue: Catalogue, pk: int, limit: int = 100) -> list[dict[str, Any]]:
    """The item's jobs, newest first."""
    rows = catalogue._conn.execute(
        "SELECT id, kind, state, attempts, error, created_at, updated_at FROM jobs "
        "WHERE item_pk = ? ORDER BY id DESC LIMIT ?", (pk, limit)).fetchall()
    return [{"id": r[0], "kind": r[1], "state": r[2], "attempts": r[3], "error": r[4],
             "createdAt": r[5], "updatedAt": r[6]} for r in rows]


def status(catalogue: Catalogue, dataset: Dataset, *, mimetypes: bool = True) -> dict[str, Any]:
    """A dataset's items by state (and by mimetype), jobs by state, its last sync, the
    number of listing errors and the refused arrivals by reason."""
    conn = catalogue._conn
    states = dict(conn.execute(
        "SELECT state, count(*) FROM items WHERE dataset_id = ? GROUP BY state",
        (dataset.id,)).fetchall())
    jobs = dict(conn.execute(
        """SELECT j.state, count(*) FROM jobs j LEFT JOIN items i ON i.pk = j.item_pk
           WHERE coalesce(i.dataset_id, j.dataset_id) = ? GROUP BY j.state""",
        (dataset.id,)).fetchall())
    run = conn.execute(
        """SELECT started_at, finished_at, status, listed, created, updated, moved, deleted,
                  unchanged, errors, message FROM sync_runs WHERE dataset_id = ?
           ORDER BY id DESC LIMIT 1""", (dataset.id,)).fetchone()
    errors = conn.execute("SELECT count(*) FROM listing_errors WHERE dataset_id = ?",
                          (dataset.id,)).fetchone()[0]
    result: dict[str, Any] = {
        "dataset": dataset.name,
        "datasetId": dataset_id(catalogue, dataset),
        "driver": dataset.driver,
        "items": {"present": states.get("present", 0), "missing": states.get("missing", 0)},
        "jobs": {s: jobs.get(s, 0) for s in ("pending", "running", "done", "failed", "cancelled")},
        "lastSync": None,
        "listingErrors": errors,
        "refused": arrivals.dataset_counts(catalogue, dataset),  # arrivals without an item
    }
    if run is not None:
        keys = ("startedAt", "finishedAt", "status", "listed", "created", "updated", "moved",
                "deleted", "unchanged", "errors", "message")
        result["lastSync"] = dict(zip(keys, run))
    if mimetypes:
        result["mimetypes"] = dict(conn.execute(
            f"""SELECT coalesce({catalogue.dialect.json_text('system', 'mimetype')}, '(unknown)')
                       AS m, count(*)
               FROM items WHERE dataset_id = ? AND state = 'present' GROUP BY m
               ORDER BY count(*) DESC, m""", (dataset.id,)).fetchall())
    return result


def listing_errors(catalogue: Catalogue, dataset: Dataset, *, limit: int | None = None
                   ) -> list[dict[str, Any]]:
    """The dataset's listing errors, newest first, with the sync run that met each."""
    sql = ("SELECT path, reason, at, run_id FROM listing_errors WHERE dataset_id = ? "
           "ORDER BY id DESC")
    args: tuple = (dataset.id,)
    if limit is not None:
        sql += " LIMIT ?"
        args += (limit,)
    return [{"path": p, "reason": r, "at": a, "run": run}
            for p, r, a, run in catalogue._conn.execute(sql, args)]
