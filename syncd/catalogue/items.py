"""Item writes one at a time (the event applier, put/rm, imports, the reaper, the runner),
inside the caller's transaction (`with catalogue.transaction(immediate=True):`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from . import jobs
from .jobs import Consequence
from .listing import CONTENT_KEY
from .store import Catalogue, Dataset, now_iso

ROW_FIELDS = ('pk, dataset_id, filename, type, size, mtime, etag, md5, state, system, "user", extra, '
              'missing_since')


def _rows(catalogue: Catalogue, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    cursor = catalogue._conn.execute(sql, args)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def find(catalogue: Catalogue, dataset: Dataset, filename: str) -> dict[str, Any] | None:
    rows = _rows(catalogue, f"SELECT {ROW_FIELDS} FROM items WHERE dataset_id = ? AND filename = ?",
                 (dataset.id, filename))
    return rows[0] if rows else None


def by_pk(catalogue: Catalogue, pk: int) -> dict[str, Any] | None:
    rows = _rows(catalogue, f"SELECT {ROW_FIELDS} FROM items WHERE pk = ?", (pk,))
    return rows[0] if rows else None


def content_key(catalogue: Catalogue, *, size: int | None, etag: str | None, md5: str | None) -> str | None:
    """What identifies content across a rename (CONTENT_KEY), for one object's facts."""
    return catalogue._conn.execute(
        f"SELECT {CONTENT_KEY} FROM (SELECT CAST(? AS TEXT) AS md5, CAST(? AS BIGINT) AS size, "
        "CAST(? AS TEXT) AS etag) AS facts", (md5, size, etag)
    ).fetchone()[0]


def insert(catalogue: Catalogue, dataset: Dataset, filename: str, *, size, mtime, etag, md5,
           type: str = "file", system: dict | None = None, user: dict | None = None,
           extra: dict | None = None) -> int:
    now = now_iso()
    return catalogue._conn.execute(
        """INSERT INTO items (dataset_id, filename, type, size, mtime, etag, md5, created_at,
                              updated_at, system, "user", extra)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk""",
        (dataset.id, filename, type, size, mtime, etag, md5, now, now, _dumps(system), _dumps(user),
         _dumps(extra)),
    ).fetchone()[0]


def set_facts(catalogue: Catalogue, pk: int, filename: str, *, size, mtime, etag, md5) -> None:
    """The item is present at `filename` with these storage facts (a new path: it moved from
    its old one, kept in `moved_from`)."""
    catalogue._conn.execute(
        """UPDATE items SET moved_from = CASE WHEN filename <> ? THEN filename ELSE moved_from END,
                  filename = ?, size = ?, mtime = ?, etag = ?, md5 = ?, state = 'present',
                  missing_since = NULL, updated_at = ? WHERE pk = ?""",
        (filename, filename, size, mtime, etag, md5, now_iso(), pk),
    )


def set_metadata(catalogue: Catalogue, pk: int, *, type: str | None = None,
                 system: dict | None = None, user: dict | None = None,
                 extra: dict | None = None) -> None:
    """Replace the item's type, system, user and/or other (`extra`) metadata (those given)."""
    sets, args = [], []
    for column, value in (("type", type), ("system", system), ("user", user), ("extra", extra)):
        if value is not None:
            sets.append(f'"{column}" = ?')
            args.append(value if column == "type" else _dumps(value))
    if sets:
        catalogue._conn.execute(f"UPDATE items SET {', '.join(sets)}, updated_at = ? WHERE pk = ?",
                                (*args, now_iso(), pk))


def mark_missing(catalogue: Catalogue, pk: int, *, at: float | None = None) -> None:
    """The item is gone from storage since `at` (seconds since the epoch; default now)."""
    catalogue._conn.execute(
        "UPDATE items SET state = 'missing', missing_since = ?, updated_at = ? WHERE pk = ?",
        (time.time() if at is None else at, now_iso(), pk))


def delete(catalogue: Catalogue, pks: Sequence[int]) -> None:
    dialect = catalogue.dialect
    catalogue._conn.execute(f"DELETE FROM items WHERE pk IN ({dialect.id_list()})",
                            (dialect.ids(pks),))


def apply_rule(catalogue: Catalogue, consequence: Consequence, pks: Sequence[int]) -> None:
    """A change's consequence (syncd.sync.rules) for these items."""
    if pks:
        jobs.apply_consequence(catalogue._conn, consequence, catalogue.dialect.id_list(),
                               (catalogue.dialect.ids(pks),))


def move_source(catalogue: Catalogue, dataset: Dataset, filename: str, *, content: str,
                missing_after: float) -> dict[str, Any] | None:
    """The item that a new object at `filename` with `content` is, moved: one that went
    missing after `missing_after` (seconds since the epoch) with the same content, the same
    name preferred, then the same folder, then the most recently missing."""
    directory, _, name = filename.rpartition("/")
    rows = _rows(
        catalogue,
        f"""SELECT {ROW_FIELDS} FROM items
            WHERE dataset_id = ? AND state = 'missing' AND missing_since >= ?
              AND {CONTENT_KEY} = ?
            ORDER BY filename LIKE ? ESCAPE '\\' DESC,
                     substr(filename, 1, ?) = ? AND instr(substr(filename, ?), '/') = 0 DESC,
                     missing_since DESC, pk DESC
            LIMIT 1""",
        (dataset.id, missing_after, content,
         "%/" + _like(name), len(directory) + 1, directory + "/", len(directory) + 2),
    )
    return rows[0] if rows else None


def reapable(catalogue: Catalogue, dataset: Dataset, *, missing_before: float,
             remove: bool) -> tuple[list[int], bool]:
    """Missing items whose move window has passed (went missing before `missing_before`) and
    that still have artifacts to clean up (or, with `remove`, are still to be removed); and
    whether others still wait for their window to pass."""
    keeps_artifacts = "" if remove else f"""
        AND {catalogue.dialect.json_text('system', 'thumbnailId')} IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.item_pk = items.pk AND j.kind = 'cleanup'
                        AND j.state IN ('pending', 'running'))"""
    rows = catalogue._conn.execute(
        f"""SELECT pk, coalesce(missing_since, 0) < ? FROM items
            WHERE dataset_id = ? AND state = 'missing' {keeps_artifacts}""",
        (missing_before, dataset.id)).fetchall()
    due = [pk for pk, old in rows if old]
    return due, len(due) < len(rows)


def apply_rule_to_present(catalogue: Catalogue, consequence: Consequence, dataset: Dataset) -> None:
    """A consequence for every present item of the dataset (a full rescan's safety net)."""
    jobs.apply_consequence(catalogue._conn, consequence,
                      "SELECT pk FROM items WHERE dataset_id = ? AND state = 'present'", (dataset.id,),
                      notify=False)  # nothing changed: no webhook event


def dataset_by_id(catalogue: Catalogue, dataset_id: int) -> Dataset:
    row = catalogue._conn.execute(
        "SELECT id, name, driver, synced_at FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
    return Dataset(*row)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _dumps(value: dict | None) -> str | None:
    return json.dumps(value, ensure_ascii=False) if value else None
