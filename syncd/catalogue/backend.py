"""The catalogue's two SQL engines, SQLite (the embedded default) and PostgreSQL (a catalogue
shared by many hosts), and every difference between them, decided here and nowhere else.

The catalogue's modules write one SQL text for both engines: `?` parameters, standard
`ON CONFLICT`, `IS DISTINCT FROM`, `count(*) FILTER (WHERE ...)`, `RETURNING`, unqualified
temporary tables. What cannot be written the same way is a method of the connection's
`dialect` (`conn.dialect`): JSON access, the id lists passed as one parameter, the schema's
column types, the schema version's storage, temporary tables, bulk loading (executemany on
SQLite, COPY on PostgreSQL), claiming rows past other writers' locks, and one sync per
dataset across processes (a lock file beside the SQLite file; a session advisory lock on
PostgreSQL, released by the server when its holder's connection dies).

A SQLite connection is a `sqlite3.Connection` subclass (no wrapper on the hot path); the
PostgreSQL dialect and connection are in postgres.py, imported only for a postgresql:// URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .postgres import PostgresConnection

BUSY_TIMEOUT = 30.0  # seconds a writer waits for another writer before failing
CHECKPOINT_EVERY = 0.05  # seconds between the checkpoints of checkpoints_aside
WAL_BOUND = 512 * 1024 * 1024  # bytes of WAL past which checkpoints_aside empties it
CACHE_KIB = 16 * 1024  # SQLite page cache per connection and database


def is_postgres_url(target: Any) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def _without_password(text: str, url: str) -> str:
    password = urlsplit(url).password
    text = " ".join(text.split())  # one line
    if password:
        for secret in {password, unquote(password)}:
            text = text.replace(secret, "***")
    return text


def redact_url(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def database_errors() -> tuple[type[BaseException], ...]:
    """The database drivers' error root classes that can reach a caller (those loaded)."""
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        errors += (psycopg.Error,)
    return errors


def is_busy(error: BaseException) -> bool:
    """Whether a database error says "try again later": locked or busy past the timeout, a
    deadlock or serialization failure, a lost connection (not a full disk, not corruption)."""
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        return "locked" in text or "busy" in text
    psycopg = sys.modules.get("psycopg")
    if psycopg is None or not isinstance(error, psycopg.Error):
        return False
    if isinstance(error, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected
                  | psycopg.errors.LockNotAvailable):
        return True
    state = getattr(error, "sqlstate", None) or ""
    # No SQLSTATE: the client lost the server; 08: connection exceptions; 57P: shutdowns.
    return isinstance(error, psycopg.OperationalError) and (
        not state or state.startswith(("08", "57P")))


# -- SQLite ---------------------------------------------------------------------------------

# Stages a drivers.local_listing.FindPage record (kind, size, mtime "S.FFFFFFFFFF", inode, key,
# "") as the ObjectInfo its _find_info would make, exactly: mtime_ns from the seconds and the
# first nine fractional digits, mtime = mtime_ns / 1e9, etag = "inode-mtime_ns"; the size
# becomes an integer by the column's affinity, and md5 NULL from the empty sixth field.
# tests/test_indexer.py checks that both give what a stat gives.
_NS = "(CAST(substr(?3, 1, length(?3) - 11) AS INTEGER) * 1000000000 + CAST(substr(?3, -10, 9) AS INTEGER))"
FIND_RECORDS = (f"INSERT INTO listing (path, size, mtime, etag, md5) VALUES "
                f"('/' || ?5, ?2, {_NS} / 1e9, "
                f"?4 || '-' || {_NS}, nullif(?6, ''))")


def _sqlite_typed(value_sql: str, type_sql: str, value: Any) -> tuple[str, list]:
    """A json_each row's value equal to `value`, with its JSON type."""
    if value is None:
        return f"{type_sql} = 'null'", []
    if isinstance(value, bool):
        return f"{type_sql} = ?", ["true" if value else "false"]
    if isinstance(value, int | float):
        return f"{type_sql} IN ('integer', 'real') AND {value_sql} = ?", [value]
    if isinstance(value, str):
        return f"{type_sql} = 'text' AND {value_sql} = ?", [value]
    return f"{type_sql} IN ('array', 'object') AND {value_sql} = json(?)", [json.dumps(value)]


class SQLiteDialect:
    name = "sqlite"
    skip_locked = ""  # one writer at a time: nothing to skip
    json_object_fn = "json_object"
    json_array_fn = "json_array"

    def begin(self, immediate: bool) -> str:
        """IMMEDIATE takes the write lock at once: two writers never deadlock upgrading."""
        return "BEGIN IMMEDIATE" if immediate else "BEGIN"

    # -- SQL fragments ---------------------------------------------------------------------

    def json_text(self, column: str, key: str) -> str:
        """A top-level key's value of a JSON text column (NULL if absent)."""
        return f"json_extract({column}, '$.{key}')"

    def json_object(self, *pairs: str) -> str:
        return f"json_object({', '.join(pairs)})"

    def json_array(self, *values: str) -> str:
        return f"json_array({', '.join(values)})"

    def hex16(self, expr: str) -> str:
        """An integer as 16 lowercase hex digits (the pk part of public ids)."""
        return f"printf('%016x', {expr})"

    def id_list(self) -> str:
        """SQL selecting the ids given as one parameter (see `ids`)."""
        return "SELECT value FROM json_each(?)"

    def ids(self, values: Iterable[int]) -> Any:
        return json.dumps(list(values))

    # -- the query language (syncd.catalogue.query) ----------------------------------------

    strict_types = False  # a comparison of a text column with a number is allowed

    def no_index(self, column: str) -> str:
        """The column, in a form the planner does not take as an index range."""
        return f"+{column}"

    def glob(self, sql: str) -> str:
        return f"{sql} GLOB ?"

    def glob_pattern(self, pattern: str) -> str:
        return pattern

    def like(self, sql: str) -> str:
        return f"{sql} LIKE ?"  # case-insensitive for ASCII

    def json_condition(self, column: str, path: list[str], op: str, value: Any) -> tuple[str, list]:
        """SQL true where the JSON `column` at `path` compares to `value` with `op` (query.py
        says what each means); a number never equals a text."""
        path = "$" + "".join("." + json.dumps(part) for part in path)
        kind = f"json_type({column}, ?)"
        extract = f"json_extract({column}, ?)"
        if op == "exists":
            return f"{kind} IS NOT NULL", [path]
        if op in ("glob", "like"):
            return f"{kind} = 'text' AND {extract} {op.upper()} ?", [path, path, value]
        if op == "contains":
            element, args = _sqlite_typed("value", "type", value)
            return (f"({kind} = 'array' AND EXISTS (SELECT 1 FROM json_each({column}, ?) WHERE {element}))"
                    f" OR ({kind} = 'text' AND instr({extract}, ?) > 0)",
                    [path, path, *args, path, path, json.dumps(value) if not isinstance(value, str) else value])
        if op == "=":
            if value is None:
                return f"{kind} = 'null'", [path]
            if isinstance(value, bool):
                return f"{kind} = ?", [path, "true" if value else "false"]
            if isinstance(value, list | dict):
                return (f"{kind} IN ('array', 'object') AND {extract} = json(?)",
                        [path, path, json.dumps(value)])
        if isinstance(value, bool) or value is None or isinstance(value, list | dict):
            return "false", []  # an order of booleans, nulls or lists: nothing matches
        types = "('integer', 'real')" if isinstance(value, int | float) else "('text')"
        return f"{kind} IN {types} AND {extract} {op} ?", [path, path, value]

    # -- schema ----------------------------------------------------------------------------

    def ddl(self, statement: str) -> str:
        return statement

    def version(self, conn) -> int:
        return conn.execute("PRAGMA user_version").fetchone()[0]

    def set_version(self, conn, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    def lock_schema(self, conn) -> None:
        """Held until the transaction ends; on SQLite BEGIN IMMEDIATE already serializes."""

    def prepare(self, conn) -> None:
        """Anything the schema's SQL needs before the migrations (nothing on SQLite)."""

    # -- temporary tables ------------------------------------------------------------------

    def drop_temp(self, conn, table: str) -> None:
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")

    def stage_listing(self, conn, pages: Iterable[Sequence[tuple]], progress=None) -> int:
        """Fill temp table `listing` (n, path, size, mtime, etag, md5) from pages of
        (key, size, mtime, etag, md5); returns the rows staged. In the caller's transaction."""
        insert = "INSERT INTO listing (path, size, mtime, etag, md5) VALUES ('/' || ?, ?, ?, ?, ?)"
        staged = 0
        for page in pages:
            records = getattr(page, "records", None)  # the local driver's FindPage
            if records is not None:
                conn.executemany(FIND_RECORDS, records())
            else:
                conn.executemany(insert, page)
            staged += len(page)
            if progress:
                progress(len(page))
        return staged

    @contextlib.contextmanager
    def checkpoints_aside(self, conn) -> Iterator[Callable[[], None]]:
        """Around bulk writes: WAL checkpoints (the copy of committed pages into the
        database file, and its fsync) run in a thread, on a connection of their own, while
        the writer goes on, instead of after each of its commits, in its way; SQLite
        releases the GIL meanwhile, so they take the other core. Yields `between`, for the
        writer to call between its transactions: a checkpoint that does not wait for the
        writer cannot start the WAL over, so it is truncated there, past WAL_BOUND bytes."""
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        if not path:  # in memory: no WAL
            yield lambda: None
            return
        stop = threading.Event()
        checkpointing = threading.Lock()  # the thread's checkpoint, or a truncation

        def checkpoint() -> None:
            side = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                while not stop.wait(CHECKPOINT_EVERY):
                    # A checkpoint that fails (another one running, say) is left to the next.
                    with checkpointing, contextlib.suppress(sqlite3.OperationalError):
                        side.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                side.close()

        def truncate() -> None:
            """Copy the rest and empty the WAL, unless a reader still needs it: never wait
            for one (an export can read for minutes), only for the thread's checkpoint."""
            waits = conn.execute("PRAGMA busy_timeout").fetchone()[0]
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                with checkpointing:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.execute(f"PRAGMA busy_timeout = {waits}")

        def between() -> None:
            # Only a truncation shrinks the file, and only this does one: its size is the WAL's.
            if os.path.getsize(path + "-wal") > WAL_BOUND:
                truncate()

        pages = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        thread = threading.Thread(target=checkpoint, name="syncd-checkpoint", daemon=True)
        thread.start()
        try:
            yield between
        finally:
            stop.set()
            thread.join()
            conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
            truncate()

    def analyze_temp(self, conn, table: str) -> None:
        """Let the planner know a freshly loaded temp table's size (SQLite needs no help)."""

    def analyze_loaded(self, conn, tables: Sequence[str]) -> None:
        """Tables that a sync just grew by many rows: refresh the planner's statistics
        (SQLite keeps none unless asked, and its plans do not depend on them)."""

    def merge_json(self, conn, sql: str, args: Sequence[Any], *, first: str = "{}") -> None:
        """Merge into items.system, for the rows `sql` selects as (pk, patch): the JSON
        merge patch `first`, then `patch` (RFC 7396; keys kept in order)."""
        conn.execute(
            f"""UPDATE items SET system = json_patch(json_patch(coalesce(items.system, '{{}}'), ?),
                                                     p.patch)
                FROM ({sql}) AS p WHERE items.pk = p.pk""", (first, *args))

    def insert_items(self, conn, insert_sql: str, args: Sequence[Any]) -> tuple[str, tuple]:
        """Run an INSERT INTO items (with no ON CONFLICT clause: paths already catalogued
        are skipped here); returns SQL (and arguments) selecting the pks it created. Under
        SQLite's write lock nobody else inserts meanwhile: those above the largest pk
        before it."""
        before = conn.execute("SELECT coalesce(max(pk), 0) FROM items").fetchone()[0]
        conn.execute(f"{insert_sql} ON CONFLICT DO NOTHING", args)
        return "SELECT pk FROM items WHERE pk > ?", (before,)

    # -- locks -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def dataset_lock(self, catalogue, dataset_id: int, name: str) -> Iterator[None]:
        """One sync of a dataset at a time, across processes; the OS frees the lock file's
        lock if the holder dies, so a killed sync never blocks the next one."""
        if catalogue.in_memory:
            yield
            return
        # flock: held by the open file, so the kernel releases it when the holder exits or dies.
        lock = os.open(f"{catalogue.path}.sync-{dataset_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("%s: waiting for another sync of this dataset to finish", name)
                fcntl.flock(lock, fcntl.LOCK_EX)
        except BaseException:
            os.close(lock)
            raise
        try:
            yield
        finally:
            os.close(lock)  # releases the lock


class SQLiteConnection(sqlite3.Connection):
    """sqlite3's own connection, knowing its dialect."""

    dialect = SQLiteDialect()

    def mapped(self, sql: str, args: Sequence[Any] = ()):
        """A cursor whose rows are also mappings by column name."""
        cursor = self.execute(sql, args)
        cursor.row_factory = sqlite3.Row
        return cursor


def connect_sqlite(path: str, *, busy_timeout: float = BUSY_TIMEOUT) -> SQLiteConnection:
    # isolation_level=None: transactions are explicit (`with catalogue.transaction()`).
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout,
                           check_same_thread=False, factory=SQLiteConnection)
    _enable_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")  # durable at each WAL checkpoint
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = FILE")  # sync diffs spill to disk, not RAM
    # A bounded page cache, big enough for a large sync's index inserts not to spill.
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    # The temporary database (staged listings, scratch only): larger pages stage a listing
    # and drop it faster (1M files: -0.24 s of 6.3); the catalogue keeps SQLite's default.
    conn.execute("PRAGMA temp.page_size = 16384")
    conn.execute(f"PRAGMA temp.cache_size = -{CACHE_KIB}")
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, waiting for another process that is creating the same catalogue:
    this pragma fails at once with "database is locked" instead of using the busy
    timeout, so two syncd processes starting together would crash."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    delay = 0.005  # seconds
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def connect(target: str, *, busy_timeout: float = BUSY_TIMEOUT) -> SQLiteConnection | PostgresConnection:
    """A connection to the catalogue at `target`: a SQLite file path, or a postgresql:// URL.
    `busy_timeout`: seconds a statement waits for another writer's lock before failing."""
    if is_postgres_url(target):
        from .postgres import connect_postgres

        return connect_postgres(target, busy_timeout=busy_timeout)
    return connect_sqlite(target, busy_timeout=busy_timeout)
