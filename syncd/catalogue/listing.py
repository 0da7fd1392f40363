"""A storage listing staged in the catalogue and diffed against the items, set-based.

The listing streams page by page into a temporary table (on disk, so memory stays flat
whatever the bucket's size; executemany on SQLite, COPY on PostgreSQL: backend.py, postgres.py); the
diff is a handful of SQL statements, the same on both engines:

- created: listed paths with no item;
- changed: listed paths whose (size, mtime, etag, md5) differ from the item's; revived:
  a missing item whose path is listed again with the same content;
- gone: present items that were not listed, except under a path that could not be read;
- moved: a present item gone in this listing and a created path with the same content
  (`CONTENT_KEY`) are one item that moved. Ghosts (items already missing) are never the
  source of a move. Among several candidates, the same name is preferred, then the same
  folder (see syncd.sync.rules).

What each kind of change does to jobs is decided by the `rules` the caller passes in (the
policy in syncd.sync.rules), applied here in the same transaction as the items.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import jobs
from .jobs import Consequence
from .store import Catalogue, Dataset, now_iso

# What identifies content across a rename: the MD5, else the size and etag together.
CONTENT_KEY = """(CASE WHEN md5 IS NOT NULL AND md5 != '' THEN 'md5:' || md5
                      WHEN etag IS NOT NULL AND size IS NOT NULL THEN 'etag:' || size || ':' || etag
                 END)"""
INSERT_CHUNK = 50_000  # created items written per transaction
ANALYZE_AFTER = 10_000  # created items past which the engine's statistics are refreshed
TEMP_TABLES = ("listing", "unlisted", "diff", "gone", "moves", "link_info", "held",
               "created_pks")
# Move pairing passes, most specific first: same name, same folder, any path.
_NAME = "substr({p}, length(rtrim({p}, replace({p}, '/', ''))) + 1)"
_DIR = "rtrim({p}, replace({p}, '/', ''))"
PAIRING = (
    (_NAME.format(p="i.filename"), _NAME.format(p="l.path")),
    (_DIR.format(p="i.filename"), _DIR.format(p="l.path")),
    ("''", "''"),
)


class Scope:
    """The filenames under a listing prefix, as an index range: filename >= low AND < high."""

    def __init__(self, prefix: str):
        self.low = "/" + prefix
        self.high = self.low[:-1] + chr(ord(self.low[-1]) + 1)


@dataclass
class Plan:
    initial: bool = False  # no item in scope before: every listed path is created
    fresh: int = 0  # listed paths with no item
    changed: int = 0  # listed paths whose item differs (content, facts, or it was missing)
    gone_present: int = 0
    gone_missing: int = 0
    moves: int = 0


class StagedListing:
    """One listing, staged in temporary tables of the catalogue's connection."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.conn = catalogue._conn
        self.dialect = catalogue.dialect
        self.drop()
        self._create("""CREATE TEMP TABLE listing (n INTEGER PRIMARY KEY, path TEXT NOT NULL,
                                                   size INTEGER, mtime REAL, etag TEXT, md5 TEXT)""")
        self._create("CREATE TEMP TABLE unlisted (path TEXT NOT NULL)")
        self.listed = 0
        self._link_rows = 0  # link files read (set_link_info): none, nothing to apply
        self.holding = False  # temp table held: listing rows refused an item (catalogue/arrivals.py)

    def _create(self, ddl: str) -> None:
        self.conn.execute(self.dialect.ddl(ddl))

    def drop(self) -> None:
        for table in TEMP_TABLES:
            self.dialect.drop_temp(self.conn, table)

    def __enter__(self) -> StagedListing:
        return self

    def __exit__(self, *exc) -> None:
        self.drop()

    # -- loading --------------------------------------------------------------------------

    def load(self, pages: Iterable[list], progress=None) -> None:
        """Stage every page of ObjectInfo (keys relative to the dataset's folder)."""
        self.conn.execute("BEGIN")
        try:
            self.listed += self.dialect.stage_listing(self.conn, pages, progress)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        self.dialect.analyze_temp(self.conn, "listing")

    def unreadable(self, keys: Iterable[str]) -> None:
        """Paths that could not be listed: nothing under them is gone."""
        self.conn.executemany("INSERT INTO unlisted VALUES (?)", [("/" + k,) for k in keys])

    # -- the diff -------------------------------------------------------------------------

    def plan(self, dataset: Dataset, scope: Scope) -> Plan:
        conn, ds, plan = self.conn, dataset.id, Plan()
        existing = conn.execute(
            "SELECT count(*) FROM items WHERE dataset_id = ? AND filename >= ? AND filename < ?",
            (ds, scope.low, scope.high),
        ).fetchone()[0]
        if existing == 0:
            plan.initial, plan.fresh = True, self.listed
            return plan
        # One pass over the listing: the paths with no item (pk NULL) and those whose item
        # differs or is a ghost that came back.
        self._create("CREATE TEMP TABLE diff (n INTEGER PRIMARY KEY, pk INTEGER, "
                     "content_changed BOOLEAN, revived BOOLEAN)")
        conn.execute(
            """INSERT INTO diff
               SELECT l.n, i.pk,
                      (i.size IS DISTINCT FROM l.size OR i.etag IS DISTINCT FROM l.etag
                       OR i.md5 IS DISTINCT FROM l.md5),
                      (i.state != 'present')
               FROM listing l LEFT JOIN items i ON i.dataset_id = ? AND i.filename = l.path
               WHERE i.pk IS NULL OR i.state != 'present' OR i.size IS DISTINCT FROM l.size
                     OR i.mtime IS DISTINCT FROM l.mtime OR i.etag IS DISTINCT FROM l.etag
                     OR i.md5 IS DISTINCT FROM l.md5""",
            (ds,),
        )
        plan.fresh, plan.changed = conn.execute(
            "SELECT count(*) - count(pk), count(pk) FROM diff").fetchone()
        self._create("CREATE TEMP TABLE moves (pk INTEGER PRIMARY KEY, n INTEGER UNIQUE)")
        self._create("CREATE TEMP TABLE gone (pk INTEGER PRIMARY KEY, state TEXT, size INTEGER, "
                     "etag TEXT, md5 TEXT, filename TEXT)")
        if existing == self.listed - plan.fresh:
            return plan  # every item in scope was listed: nothing is gone
        # Items in scope that were not listed, except under a path that could not be read.
        conn.execute("CREATE INDEX listing_path ON listing(path)")
        conn.execute(
            """INSERT INTO gone
               SELECT i.pk, i.state, i.size, i.etag, i.md5, i.filename FROM items i
               WHERE i.dataset_id = ? AND i.filename >= ? AND i.filename < ?
                 AND NOT EXISTS (SELECT 1 FROM listing l WHERE l.path = i.filename)
                 AND NOT EXISTS (SELECT 1 FROM unlisted u
                                 WHERE u.path = '/' OR i.filename = u.path
                                    OR substr(i.filename, 1, length(u.path) + 1) = u.path || '/')""",
            (ds, scope.low, scope.high),
        )
        self.dialect.analyze_temp(conn, "gone")
        present, missing = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'present'), "
            "count(*) FILTER (WHERE state != 'present') FROM gone").fetchone()
        plan.gone_present, plan.gone_missing = int(present), int(missing)
        if plan.fresh and plan.gone_present:
            for gone_key, fresh_key in PAIRING:
                self._pair(gone_key, fresh_key)
            plan.moves = conn.execute("SELECT count(*) FROM moves").fetchone()[0]
        return plan

    def _pair(self, gone_key: str, fresh_key: str) -> None:
        """Pair still-unpaired present gone items with still-unpaired fresh paths of the same
        content and the same `*_key` (name, folder, or nothing), one to one, oldest item first."""
        self.conn.execute(
            f"""INSERT INTO moves
               WITH g AS (
                   SELECT i.pk, {CONTENT_KEY} AS k, {gone_key} AS x,
                          row_number() OVER (PARTITION BY {CONTENT_KEY}, {gone_key} ORDER BY i.pk) AS r
                   FROM gone i
                   WHERE i.state = 'present' AND {CONTENT_KEY} IS NOT NULL
                     AND i.pk NOT IN (SELECT pk FROM moves)),
               f AS (
                   SELECT l.n, {CONTENT_KEY} AS k, {fresh_key} AS x,
                          row_number() OVER (PARTITION BY {CONTENT_KEY}, {fresh_key} ORDER BY l.n) AS r
                   FROM diff d JOIN listing l ON l.n = d.n
                   WHERE d.pk IS NULL AND {CONTENT_KEY} IS NOT NULL
                     AND l.n NOT IN (SELECT n FROM moves))
               SELECT g.pk, f.n FROM g JOIN f ON g.k = f.k AND g.x = f.x AND g.r = f.r"""
        )

    def fresh_rows(self, plan: Plan, *, held: bool = True) -> str:
        """SQL selecting the listing rows that become new items (not moves; with `held`, not
        those the upload controls refused: syncd.catalogue.arrivals)."""
        unheld = " AND l.n NOT IN (SELECT n FROM held)" if held and self.holding else ""
        if plan.initial:
            return "SELECT l.* FROM listing l WHERE 1 = 1" + unheld
        return ("SELECT l.* FROM diff d JOIN listing l ON l.n = d.n "
                "WHERE d.pk IS NULL AND d.n NOT IN (SELECT n FROM moves)" + unheld)

    def admitted_paths(self, plan: Plan) -> str:
        """SQL selecting the paths this sync gives an item: created (not held) or moved onto."""
        admitted = f"SELECT path FROM ({self.fresh_rows(plan)}) x"
        if not plan.initial:
            admitted += " UNION ALL SELECT l.path FROM moves m JOIN listing l ON l.n = m.n"
        return admitted

    def samples(self, plan: Plan, limit: int) -> dict[str, list[str]]:
        queries = {"created": f"SELECT path FROM ({self.fresh_rows(plan)}) AS fresh"}
        if not plan.initial:
            queries |= {
                "updated": "SELECT i.filename FROM diff d JOIN items i ON i.pk = d.pk",
                "moved": "SELECT i.filename || ' -> ' || l.path FROM moves m "
                         "JOIN items i ON i.pk = m.pk JOIN listing l ON l.n = m.n",
                "deleted": "SELECT i.filename FROM gone g JOIN items i ON i.pk = g.pk "
                           "WHERE g.state = 'present' AND g.pk NOT IN (SELECT pk FROM moves)",
            }
        samples = {}
        for kind, sql in queries.items():
            rows = [row[0] for row in self.conn.execute(f"{sql} LIMIT {limit}")]
            if rows:
                samples[kind] = rows
        return samples

    # -- link files -----------------------------------------------------------------------

    def link_candidates(self, plan: Plan, max_bytes: int) -> list[tuple[str, str | None]]:
        """(path, its item's type or None) of the small .json files among created and
        content-changed paths, and of link items whose content changed."""
        self._create("CREATE TEMP TABLE link_info (path TEXT PRIMARY KEY, type TEXT NOT NULL, "
                     "patch TEXT NOT NULL)")
        if not (plan.fresh or plan.changed):
            return []
        sql = (f"SELECT path, CAST(NULL AS TEXT) FROM ({self.fresh_rows(plan)}) AS fresh "
               "WHERE path LIKE '%.json' AND size <= ?")
        args = [max_bytes]
        if not plan.initial:
            sql += """ UNION ALL
                SELECT i.filename, i.type FROM diff d JOIN items i ON i.pk = d.pk
                JOIN listing l ON l.n = d.n
                WHERE d.content_changed AND ((i.filename LIKE '%.json' AND l.size <= ?) OR i.type = 'link')"""
            args.append(max_bytes)
        return [tuple(row) for row in self.conn.execute(sql, args).fetchall()]

    def set_link_info(self, rows: list[tuple[str, str, dict]]) -> None:
        """(path, item type, system metadata patch) for the link files read."""
        self.conn.executemany(
            "INSERT INTO link_info VALUES (?, ?, ?) "
            "ON CONFLICT (path) DO UPDATE SET type = excluded.type, patch = excluded.patch",
            [(path, kind, json.dumps(patch)) for path, kind, patch in rows])
        self._link_rows += len(rows)

    def _apply_link_info(self, dataset_id: int, pks: tuple[str, tuple] | None = None) -> None:
        """The link files' type and metadata onto their items (those `pks` selects: SQL and
        its arguments; None: any)."""
        if not self._link_rows:
            return
        scope, args = (f"AND items.pk IN ({pks[0]})", pks[1]) if pks else ("", ())
        where = f"items.dataset_id = ? AND items.filename = li.path {scope}"
        self.conn.execute(f"UPDATE items SET type = li.type FROM link_info li WHERE {where}",
                          (dataset_id, *args))
        self.dialect.merge_json(
            self.conn, f"SELECT items.pk AS pk, li.patch AS patch FROM link_info li "
                       f"JOIN items ON {where}", (dataset_id, *args), first='{"shebang": null}')

    # -- applying it ----------------------------------------------------------------------

    def apply(self, dataset: Dataset, plan: Plan, rules: Mapping[str, Consequence], *,
              prune: bool, deletes: bool, user: dict | None = None) -> None:
        """Write the plan, with the jobs `rules` (change name -> Consequence) call for;
        created items get `user` as their user metadata."""
        conn, catalogue = self.conn, self.catalogue
        now = now_iso()
        with catalogue.transaction(immediate=True):
            if plan.changed or plan.moves:
                self._apply_changes(rules, now)
                self._apply_link_info(dataset.id)
            if deletes and (plan.gone_present or (prune and plan.gone_missing)):
                self._apply_deletes(rules, now, prune=prune)
            conn.execute("UPDATE datasets SET synced_at = ? WHERE id = ?", (now, dataset.id))
        if plan.fresh == plan.moves:
            return
        # Created items, in chunks so that a very large first sync does not hold the write
        # lock for long; each chunk writes its items and their jobs together. A path another
        # writer (the daemon's event applier, another host) catalogued since the listing
        # keeps that item (insert_items skips it).
        last = conn.execute("SELECT coalesce(max(n), 0) FROM listing").fetchone()[0]
        fresh = self.fresh_rows(plan)
        created = plan.fresh - plan.moves
        # More than one transaction's worth: checkpoint in a thread (backend.py)
        aside = (self.dialect.checkpoints_aside(conn) if created > INSERT_CHUNK
                 else contextlib.nullcontext(lambda: None))
        with aside as between:
            self._insert_created(dataset, rules, fresh, last, now, user, between)
        if created >= ANALYZE_AFTER:
            self.dialect.analyze_loaded(conn, ("items", "jobs"))

    def _insert_created(self, dataset, rules, fresh, last, now, user, between) -> None:
        conn, catalogue = self.conn, self.catalogue
        for low in range(1, last + 1, INSERT_CHUNK):
            between()
            with catalogue.transaction(immediate=True):
                created = self.dialect.insert_items(
                    conn,
                    f"""INSERT INTO items (dataset_id, filename, size, mtime, etag, md5,
                                           created_at, updated_at, "user")
                        SELECT ?, path, size, mtime, etag, md5, ?, ?, ? FROM ({fresh}) AS fresh
                        WHERE n BETWEEN ? AND ? ORDER BY n""",
                    (dataset.id, now, now, json.dumps(user, ensure_ascii=False) if user else None,
                     low, low + INSERT_CHUNK - 1),
                )
                jobs.apply_consequence(conn, rules["created"], *created, now=now)
                self._apply_link_info(dataset.id, created)

    def _apply_changes(self, rules, now: str) -> None:
        conn = self.conn
        # Moves: the item takes its new path and the new listing facts, unless another
        # writer (the daemon's event applier) catalogued that path since the listing: then
        # that item keeps it (as for created items: ON CONFLICT DO NOTHING).
        conn.execute(
            """UPDATE items SET moved_from = items.filename, filename = l.path, size = l.size,
                      mtime = l.mtime, etag = l.etag, md5 = l.md5, state = 'present',
                      missing_since = NULL, updated_at = ?
               FROM moves m JOIN listing l ON l.n = m.n
               WHERE items.pk = m.pk AND NOT EXISTS (
                   SELECT 1 FROM items taken WHERE taken.dataset_id = items.dataset_id
                   AND taken.filename = l.path)""",
            (now,),
        )
        jobs.apply_consequence(conn, rules["moved"], "SELECT pk FROM moves", now=now)
        jobs.apply_consequence(conn, rules["content-changed"],
                          "SELECT pk FROM diff WHERE pk IS NOT NULL AND content_changed", now=now)
        jobs.apply_consequence(conn, rules["revived"],
                          "SELECT pk FROM diff WHERE pk IS NOT NULL AND revived "
                          "AND NOT content_changed", now=now)
        conn.execute(
            """UPDATE items SET size = l.size, mtime = l.mtime, etag = l.etag, md5 = l.md5,
                      state = 'present', missing_since = NULL, updated_at = ?
               FROM diff d JOIN listing l ON l.n = d.n
               WHERE d.pk IS NOT NULL AND items.pk = d.pk""",
            (now,),
        )

    def _apply_deletes(self, rules, now: str, *, prune: bool) -> None:
        gone = ("SELECT pk FROM gone WHERE pk NOT IN (SELECT pk FROM moves)"
                + ("" if prune else " AND state = 'present'"))
        # Their artifacts' cleanup, durably, before a prune drops the rows.
        jobs.apply_consequence(self.conn, rules["gone"], gone, now=now)
        if prune:
            self.conn.execute(f"DELETE FROM items WHERE pk IN ({gone})")
        else:
            self.conn.execute(
                f"UPDATE items SET state = 'missing', missing_since = ?, updated_at = ? "
                f"WHERE pk IN ({gone})",
                (time.time(), now),
            )
