"""What upload quotas count: items that syncd itself wrote into a dataset's storage."""

from __future__ import annotations

from .store import Catalogue, Dataset


def uploaded_since(catalogue: Catalogue, dataset: Dataset, since: list[str]) -> list[int]:
    """For each ISO time in `since`, the dataset's items created at or after it by a
    downstream write (those carry `metadata.system.contentMd5`)."""
    if not since:
        return []
    sums = ", ".join("count(*) FILTER (WHERE created_at >= ?)" for _ in since)
    row = catalogue._conn.execute(
        f"""SELECT {sums} FROM items
            WHERE dataset_id = ? AND created_at >= ?
              AND {catalogue.dialect.json_text('system', 'contentMd5')} IS NOT NULL""",
        (*since, dataset.id, min(since)),
    ).fetchone()
    return [int(value) for value in row]
