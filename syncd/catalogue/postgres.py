"""The PostgreSQL half of the catalogue's engines (backend.py has the seam and SQLite): its
dialect, and a small wrapper over a psycopg 3 connection in autocommit mode (transactions
are explicit `BEGIN`/`COMMIT`, as on SQLite) that rewrites `?` to `%s` once per SQL text.
Imported only when a catalogue URL is postgresql://.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .backend import BUSY_TIMEOUT, _without_password, database_errors, log, redact_url

SCHEMA_LOCK = 0x73796E63  # PostgreSQL advisory lock key held while migrating ('sync')
SYNC_LOCK_SPACE = 0x73796E64  # first key of the two-key advisory lock of a dataset's sync

# The schema's SQLite column types, as PostgreSQL spells them. Paths sort bytewise (COLLATE
# "C", as SQLite's BINARY) whatever the database's locale, so keyset pages and prefix ranges
# mean the same on both.
_PG_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY( AUTOINCREMENT)?", re.I), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"^(\s*)user TEXT\b", re.M), r'\1"user" TEXT'),
    (re.compile(r"\b(filename|moved_from|path) TEXT\b"), r'\1 TEXT COLLATE "C"'),
)
# Functions the shared SQL uses that PostgreSQL spells otherwise (inlined by its planner).
_PG_FUNCTIONS = """
CREATE OR REPLACE FUNCTION instr(haystack text, needle text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT strpos(haystack, needle)'
"""


class PostgresDialect:
    name = "postgresql"
    skip_locked = "FOR UPDATE OF j SKIP LOCKED"
    json_object_fn = "json_build_object"
    json_array_fn = "json_build_array"

    def begin(self, immediate: bool) -> str:
        """Row locks, taken by each statement, order writers (READ COMMITTED)."""
        return "BEGIN"

    def json_text(self, column: str, key: str) -> str:
        return f"(CAST({column} AS jsonb) ->> '{key}')"

    def json_object(self, *pairs: str) -> str:
        return f"CAST(json_build_object({', '.join(pairs)}) AS text)"

    def json_array(self, *values: str) -> str:
        return f"json_build_array({', '.join(values)})"

    def hex16(self, expr: str) -> str:
        return f"lpad(to_hex({expr}), 16, '0')"

    def id_list(self) -> str:
        return "SELECT unnest(CAST(? AS bigint[]))"

    def ids(self, values: Iterable[int]) -> Any:
        return list(values)

    # -- the query language (see SQLiteDialect) ------------------------------------------------

    strict_types = True  # text = 5 is an error here: query.py converts as SQLite would

    def no_index(self, column: str) -> str:
        return column

    def glob(self, sql: str) -> str:
        return f"{sql} ~ ?"

    def glob_pattern(self, pattern: str) -> str:
        return glob_regex(pattern)

    def like(self, sql: str) -> str:
        return f"{sql} ILIKE ?"

    def json_condition(self, column: str, path: list[str], op: str, value: Any) -> tuple[str, list]:
        v = f"(CAST({column} AS jsonb) #> CAST(? AS text[]))"
        kind = f"jsonb_typeof({v})"
        text = f"({v} #>> '{{}}') COLLATE \"C\""
        if op == "exists":
            return f"{v} IS NOT NULL", [path]
        if op in ("glob", "like"):
            pattern = glob_regex(value) if op == "glob" else value
            return (f"{kind} = 'string' AND {text} {'~' if op == 'glob' else 'ILIKE'} ?",
                    [path, path, pattern])
        if op == "contains":
            return (f"({kind} = 'array' AND EXISTS (SELECT 1 FROM jsonb_array_elements("
                    f"CASE WHEN {kind} = 'array' THEN {v} END) AS e(value) "
                    f"WHERE e.value = CAST(? AS jsonb)))"
                    f" OR ({kind} = 'string' AND strpos({text}, ?) > 0)",
                    [path, path, path, json.dumps(value), path, path,
                     json.dumps(value) if not isinstance(value, str) else value])
        if op == "=":
            return f"{v} = CAST(? AS jsonb)", [path, json.dumps(value)]
        if isinstance(value, bool) or value is None or isinstance(value, list | dict):
            return "false", []
        if isinstance(value, int | float):
            return f"{kind} = 'number' AND {v} {op} CAST(? AS jsonb)", [path, path, json.dumps(value)]
        return f"{kind} = 'string' AND {text} {op} ?", [path, path, value]

    def ddl(self, statement: str) -> str:
        for pattern, replacement in _PG_TYPES:
            statement = pattern.sub(replacement, statement)
        return statement

    def version(self, conn) -> int:
        row = conn.execute("SELECT max(version) FROM syncd_schema").fetchone()
        return row[0] or 0

    def set_version(self, conn, version: int) -> None:
        conn.execute("UPDATE syncd_schema SET version = ?", (version,))

    def lock_schema(self, conn) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))

    def prepare(self, conn) -> None:
        ready = conn.execute("SELECT to_regclass('syncd_schema') IS NOT NULL "
                             "AND to_regprocedure('instr(text, text)') IS NOT NULL").fetchone()[0]
        if ready:  # made by an earlier open: nothing to write (no catalog churn per connection)
            return
        conn.execute("BEGIN")
        try:
            self.lock_schema(conn)
            conn.execute(_PG_FUNCTIONS)
            # The version in a table made before any migration, under the lock: read as
            # data, it is never stale (a catalog lookup can be, after another's commit).
            conn.execute("CREATE TABLE IF NOT EXISTS syncd_schema (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO syncd_schema SELECT 0 WHERE NOT EXISTS "
                         "(SELECT 1 FROM syncd_schema)")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def drop_temp(self, conn, table: str) -> None:
        conn.execute(f"DROP TABLE IF EXISTS pg_temp.{table}")

    def stage_listing(self, conn, pages: Iterable[Sequence[tuple]], progress=None) -> int:
        staged = 0
        conn._ready()
        with conn.raw.cursor().copy(
                "COPY listing (n, path, size, mtime, etag, md5) FROM STDIN") as copy:
            for page in pages:
                for key, size, mtime, etag, md5 in page:
                    staged += 1
                    copy.write_row((staged, "/" + key, size, mtime, etag, md5))
                if progress:
                    progress(len(page))
        return staged

    def checkpoints_aside(self, conn) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext(lambda: None)  # the server checkpoints on its own

    def analyze_temp(self, conn, table: str) -> None:
        conn.execute(f"ANALYZE {table}")

    def analyze_loaded(self, conn, tables: Sequence[str]) -> None:
        # Autovacuum analyzes a grown table later, maybe after the next sync: planned on the
        # stale counts (a few pending jobs where there are now a million), that sync's job
        # updates walked every pending job once per changed item (14 s at 200k items).
        for table in tables:
            conn.execute(f"ANALYZE {table}")

    def merge_json(self, conn, sql: str, args: Sequence[Any], *, first: str = "{}") -> None:
        # jsonb would reorder the keys: merge in Python so the item JSON reads as on SQLite.
        rows = conn.execute(
            f"""SELECT items.pk, items.system, p.patch FROM ({sql}) AS p
                JOIN items ON items.pk = p.pk""", args).fetchall()
        base = json.loads(first)
        if rows:
            conn.executemany("UPDATE items SET system = ? WHERE pk = ?", [
                (_compact(merge_patch(merge_patch(json.loads(system) if system else {}, base),
                                      json.loads(patch))), pk)
                for pk, system, patch in rows])

    def insert_items(self, conn, insert_sql: str, args: Sequence[Any]) -> tuple[str, tuple]:
        # Other hosts insert items meanwhile: keep exactly the pks this INSERT returned (in
        # a temporary table without an index: it is only ever read whole, by hash joins).
        # Optimistic: a plain INSERT first, since ON CONFLICT's speculative insertion costs
        # a fifth of the statement and a first sync meets no conflict; if another writer
        # catalogued one of the paths meanwhile, the chunk again, skipping those.
        import psycopg

        conn.execute("CREATE TEMP TABLE IF NOT EXISTS created_pks (pk BIGINT)")
        conn.execute("TRUNCATE created_pks")
        keep = "INSERT INTO created_pks SELECT pk FROM created"
        conn.execute("SAVEPOINT insert_items")
        try:
            conn.execute(f"WITH created AS ({insert_sql} RETURNING pk) {keep}", args)
        except psycopg.errors.UniqueViolation:
            conn.execute("ROLLBACK TO SAVEPOINT insert_items")
            conn.execute(f"WITH created AS ({insert_sql} ON CONFLICT DO NOTHING RETURNING pk) "
                         f"{keep}", args)
        conn.execute("RELEASE SAVEPOINT insert_items")
        conn.execute("ANALYZE created_pks")  # its size, for the joins that read it
        return "SELECT pk FROM created_pks", ()

    @contextlib.contextmanager
    def dataset_lock(self, catalogue, dataset_id: int, name: str) -> Iterator[None]:
        """A session advisory lock: the server releases it when the holder's connection
        ends, however its process died."""
        conn = catalogue._conn
        key = (SYNC_LOCK_SPACE, dataset_id)
        if not conn.execute("SELECT pg_try_advisory_lock(?, ?)", key).fetchone()[0]:
            log.info("%s: waiting for another sync of this dataset to finish", name)
            conn.execute("SELECT pg_advisory_lock(?, ?)", key)
        try:
            yield
        finally:
            with contextlib.suppress(*database_errors()):
                conn.execute("SELECT pg_advisory_unlock(?, ?)", key)


def glob_regex(pattern: str) -> str:
    """A GLOB pattern (`*`, `?`, `[abc]`, `[^abc]`; case sensitive, whole text) as a POSIX
    regular expression."""
    out, i = ["^"], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1:end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out) + "$"


def _compact(value: Any) -> str:
    """JSON text as SQLite's json functions write it (no spaces)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch (what SQLite's json_patch does), keeping key order."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@functools.lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    """`?` parameters as `%s`, and literal `%` doubled, outside quoted text and names."""
    out, quote = [], None
    for char in sql:
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out)


class PostgresConnection:
    """A psycopg connection that takes the catalogue's SQL (`?` parameters)."""

    dialect = PostgresDialect()

    def __init__(self, raw):
        from psycopg import pq

        self.raw = raw
        self._pq = pq

    def _ready(self) -> None:
        """The session ready for a command. Ctrl-C or SIGTERM (a KeyboardInterrupt) can land
        between psycopg sending a command and reading its result; the command is then still
        in flight and every later one fails ("another command is already in progress"), the
        ROLLBACK and the sync run's closing among them. Cancel it and read its results: the
        session, its locks and temporary tables serve the next command."""
        pgconn = self.raw.pgconn
        if pgconn.transaction_status != self._pq.TransactionStatus.ACTIVE:
            return
        safe = getattr(self.raw, "cancel_safe", None)  # psycopg 3.2+; 3.1 has cancel()
        with contextlib.suppress(Exception):
            safe(timeout=5) if safe else self.raw.cancel()
        status = self._pq.ExecStatus
        while (result := pgconn.get_result()) is not None:  # blocks until each result is in
            if result.status == status.COPY_IN:
                pgconn.put_copy_end(b"interrupted")
                for _ in range(1000):
                    if not pgconn.flush():
                        break
                    time.sleep(0.001)
            elif result.status == status.COPY_OUT:
                while pgconn.get_copy_data(0)[0] >= 0:
                    pass

    def execute(self, sql: str, args: Sequence[Any] | None = None):
        self._ready()
        if not args:  # no parameters: psycopg reads no placeholders either
            return self.raw.execute(sql)
        return self.raw.execute(_pg_sql(sql), args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]):
        self._ready()
        cursor = self.raw.cursor()
        cursor.executemany(_pg_sql(sql), list(rows))
        return cursor

    def mapped(self, sql: str, args: Sequence[Any] = ()):
        from psycopg.rows import dict_row

        self._ready()
        cursor = self.raw.cursor(row_factory=dict_row)
        return cursor.execute(_pg_sql(sql), args) if args else cursor.execute(sql)

    def close(self) -> None:
        self.raw.close()


def connect_postgres(url: str, *, read_only: bool = False,
                     busy_timeout: float = BUSY_TIMEOUT) -> PostgresConnection:
    """A connection in autocommit mode (transactions are explicit, as on SQLite). The
    password comes from the URL (`${VAR}` in the config), else libpq's own environment
    (PGPASSWORD) or ~/.pgpass."""
    import psycopg

    from ..errors import CatalogueError

    options = "-c default_transaction_read_only=on" if read_only else None
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=int(BUSY_TIMEOUT),
                              application_name="syncd", options=options)
    except psycopg.Error as error:
        # Not chained: libpq may quote the connection string, password and all.
        raise CatalogueError(f"catalogue {redact_url(url)}: cannot connect: "
                             f"{_without_password(str(error), url)}") from None
    # A writer waits for a row another writer holds at most this long, as SQLite's busy timeout.
    raw.execute(f"SET lock_timeout = '{int(busy_timeout * 1000)}ms'")
    return PostgresConnection(raw)


