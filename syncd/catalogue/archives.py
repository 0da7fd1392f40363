"""Archive expansion, as the catalogue sees it: which datasets expand tar archives (the
config's `expand_archives`, mirrored in `datasets.expand_archives` so that every writer, on
any connection, queues `expand` jobs set-based in its own transaction, as the outbox does),
and the SQL that queues them (called by jobs.apply_consequence for the changes whose rule
says `expand`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .store import Catalogue

EXPAND = "expand"  # the job kind
SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar")
# An archive's own name says it is one; members written by an expansion are never expanded
# again (an archive in an archive stays a file: no unbounded nesting).
_IS_ARCHIVE = ("(" + " OR ".join(f"lower(i.filename) LIKE '%{s}'" for s in SUFFIXES) + ")"
               " AND {expanded_from} IS NULL")


def set_expanding(catalogue: Catalogue, dataset_ids: Sequence[int]) -> None:
    """Make `datasets.expand_archives` say what the config says: on for these datasets."""
    conn, dialect = catalogue._conn, catalogue.dialect
    wanted = dialect.ids(sorted(dataset_ids))
    flag = f"(CASE WHEN id IN ({dialect.id_list()}) THEN 1 ELSE 0 END)"
    differs = conn.execute(
        f"SELECT 1 FROM datasets WHERE expand_archives <> {flag} LIMIT 1", (wanted,)).fetchone()
    if differs is None:
        return
    with catalogue.transaction(immediate=True):
        conn.execute(f"UPDATE datasets SET expand_archives = {flag}", (wanted,))


def enqueue_expand(conn, pks_sql: str, args: Sequence[Any], now: str) -> None:
    """In the caller's transaction: an `expand` job for each archive item `pks_sql` selects
    in a dataset that expands archives."""
    if conn.execute("SELECT 1 FROM datasets WHERE expand_archives <> 0 LIMIT 1").fetchone() is None:
        return  # no dataset expands archives: no scan of the items
    conn.execute(
        f"""INSERT INTO jobs (item_pk, kind, state, dataset_id, created_at, updated_at)
            SELECT i.pk, '{EXPAND}', 'pending', i.dataset_id, ?, ? FROM items i
            JOIN datasets d ON d.id = i.dataset_id AND d.expand_archives <> 0
            WHERE i.pk IN ({pks_sql}) AND i.state = 'present'
              AND {_IS_ARCHIVE.format(expanded_from=conn.dialect.json_text('i.system', 'expandedFrom'))}""",
        (now, now, *args),
    )
