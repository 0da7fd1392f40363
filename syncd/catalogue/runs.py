"""Sync runs and the listing errors they met."""

from __future__ import annotations

from collections.abc import Iterable

from . import outbox
from .store import Catalogue, Dataset, now_iso


def mark_interrupted(catalogue: Catalogue, dataset: Dataset) -> None:
    """Runs still marked running were left by a process that died mid-sync."""
    with catalogue.transaction(immediate=True):
        catalogue._conn.execute(
            "UPDATE sync_runs SET status = 'interrupted', finished_at = ? "
            "WHERE dataset_id = ? AND status = 'running'",
            (now_iso(), dataset.id),
        )


def start_run(catalogue: Catalogue, dataset: Dataset) -> int:
    with catalogue.transaction(immediate=True):
        return catalogue._conn.execute(
            "INSERT INTO sync_runs (dataset_id, started_at, status) VALUES (?, ?, 'running') "
            "RETURNING id", (dataset.id, now_iso()),
        ).fetchone()[0]


def finish_run(catalogue: Catalogue, run_id: int, counts: dict, status: str,
               message: str | None) -> None:
    with catalogue.transaction(immediate=True):
        outbox.emit_event(catalogue._conn, "sync.finished", {
            "dataset": counts.get("dataset"), "run": run_id, "status": status, "message": message,
            **{key: counts.get(key) for key in ("listed", "created", "updated", "moved", "deleted",
                                                "unchanged", "errors", "excluded")},
            "seconds": round(counts.get("seconds") or 0.0, 3)})
        catalogue._conn.execute(
            """UPDATE sync_runs SET finished_at = ?, status = ?, listed = ?, created = ?,
                      updated = ?, moved = ?, deleted = ?, unchanged = ?, errors = ?, message = ?
               WHERE id = ?""",
            (now_iso(), status, counts["listed"], counts["created"], counts["updated"],
             counts["moved"], counts["deleted"], counts["unchanged"], counts["errors"], message,
             run_id),
        )


def record_errors(catalogue: Catalogue, dataset: Dataset, run_id: int | None,
                  errors: Iterable[tuple[str, str]]) -> None:
    rows = [(dataset.id, run_id, "/" + path, reason, now_iso()) for path, reason in errors]
    if not rows:
        return
    with catalogue.transaction(immediate=True):
        catalogue._conn.executemany(
            "INSERT INTO listing_errors (dataset_id, run_id, path, reason, at) VALUES (?, ?, ?, ?, ?)",
            rows,
        )


def runs(catalogue: Catalogue, dataset: Dataset) -> list[dict]:
    """The dataset's sync runs, oldest first."""
    cursor = catalogue._conn.execute(
        "SELECT id, started_at, finished_at, status, listed, created, updated, moved, deleted, "
        "unchanged, errors, message FROM sync_runs WHERE dataset_id = ? ORDER BY id", (dataset.id,))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]
