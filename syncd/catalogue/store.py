"""The catalogue: a SQLite file (WAL) holding datasets, items and their preprocessing jobs.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[n]` takes a catalogue from
version n to n+1 and runs inside a transaction, so an interrupted upgrade leaves the old
version intact.

Items have an integer primary key (`pk`), stable across renames, from which the public id
is derived: the catalogue's random 8-hex-digit instance id followed by the pk in 16 hex
digits, 24 characters like the reference platform's ids, unique across catalogues and
costing no extra index.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


from ..errors import CatalogueError, NotFoundError
from .schema import MIGRATIONS, statements

BUSY_TIMEOUT = 30.0  # seconds a writer waits for another writer before failing
CACHE_KIB = 16 * 1024  # SQLite page cache per connection and database

def now_iso() -> str:
    """UTC time as the reference platform writes it: 2024-01-31T12:00:00.000Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Dataset:
    id: int
    name: str
    driver: str
    synced_at: str | None


ITEM_COLUMNS = "pk, dataset_id, filename, type, size, mtime, etag, md5, state, created_at, updated_at, system, user, extra"


class Catalogue:
    """One SQLite catalogue. Not shared between threads: open one per thread or process."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (`with catalogue.transaction()`).
        self._conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT,
                                    check_same_thread=False)
        self._enable_wal()
        self._conn.execute("PRAGMA synchronous = NORMAL")  # durable at each WAL checkpoint
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA temp_store = FILE")  # sync diffs spill to disk, not RAM
        # A bounded page cache, big enough for a large sync's index inserts not to spill.
        self._conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._conn.execute(f"PRAGMA temp.cache_size = -{CACHE_KIB}")
        self.migrate()
        self.instance = self._instance_id()

    @functools.cached_property
    def db(self):
        """The catalogue as a sqlite-utils Database (imported on first use: it is slow to import)."""
        import sqlite_utils

        return sqlite_utils.Database(self._conn)

    def _enable_wal(self) -> None:
        """Switch to WAL, waiting for another process that is creating the same catalogue:
        this pragma fails at once with "database is locked" instead of using the busy
        timeout, so two syncd processes starting together would crash."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        delay = 0.005  # seconds
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    # -- schema ---------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        while (version := self.version) < len(MIGRATIONS):
            with self.transaction(immediate=True):
                if self.version != version:  # another process migrated meanwhile
                    continue
                for statement in statements(MIGRATIONS[version]):
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {version + 1}")
        if self.version > len(MIGRATIONS):
            raise CatalogueError(
                f"catalogue {self.path}: written by a newer syncd (schema version "
                f"{self.version}; this syncd knows up to {len(MIGRATIONS)}); upgrade syncd"
            )

    def _instance_id(self) -> str:
        row = self._conn.execute("SELECT value FROM settings WHERE key = 'instance'").fetchone()
        if row:
            return row[0]
        with self.transaction(immediate=True):
            self._conn.execute(
                "INSERT OR IGNORE INTO settings VALUES ('instance', ?)", (secrets.token_hex(4),)
            )
        return self._conn.execute("SELECT value FROM settings WHERE key = 'instance'").fetchone()[0]

    def transaction(self, *, immediate: bool = False) -> _Transaction:
        """`with catalogue.transaction(immediate=True):` groups the catalogue's writes."""
        return _Transaction(self._conn, immediate)

    @property
    def in_memory(self) -> bool:
        return str(self.path) == ":memory:"

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- ids ------------------------------------------------------------------------------

    def item_id(self, pk: int) -> str:
        return f"{self.instance}{pk:016x}"

    def item_pk(self, item_id: str) -> int:
        if len(item_id) != 24 or item_id[:8] != self.instance:
            raise NotFoundError(f"no item with id {item_id!r} in this catalogue")
        try:
            return int(item_id[8:], 16)
        except ValueError:
            raise NotFoundError(f"no item with id {item_id!r}") from None

    # -- datasets -------------------------------------------------------------------------

    def ensure_dataset(self, name: str, driver: str) -> Dataset:
        """The dataset row for a configured dataset, created on first use."""
        row = self._conn.execute(
            "SELECT id, name, driver, synced_at FROM datasets WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            with self.transaction(immediate=True):
                self._conn.execute(
                    "INSERT OR IGNORE INTO datasets (name, driver, created_at) VALUES (?, ?, ?)",
                    (name, driver, now_iso()),
                )
            return self.ensure_dataset(name, driver)
        if row[2] != driver:
            with self.transaction(immediate=True):
                self._conn.execute("UPDATE datasets SET driver = ? WHERE id = ?", (driver, row[0]))
        return Dataset(row[0], row[1], driver, row[3])

    def dataset(self, name: str) -> Dataset:
        row = self._conn.execute(
            "SELECT id, name, driver, synced_at FROM datasets WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"dataset {name!r} has never been synced")
        return Dataset(*row)

    # -- items ----------------------------------------------------------------------------

    def item_row(self, dataset: Dataset, filename: str) -> sqlite3.Row | None:
        cursor = self._conn.execute(
            f"SELECT {ITEM_COLUMNS} FROM items WHERE dataset_id = ? AND filename = ?",
            (dataset.id, normalize_filename(filename)),
        )
        cursor.row_factory = sqlite3.Row
        return cursor.fetchone()

    def item_row_by_pk(self, pk: int) -> sqlite3.Row | None:
        cursor = self._conn.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE pk = ?", (pk,))
        cursor.row_factory = sqlite3.Row
        return cursor.fetchone()

    def get_item(self, dataset: Dataset, filename: str) -> dict[str, Any]:
        row = self.item_row(dataset, filename)
        if row is None:
            raise NotFoundError(f"no item {normalize_filename(filename)!r} in dataset {dataset.name!r}")
        return self.item_json(dataset, row)

    def iter_items(
        self, dataset: Dataset, *, include_missing: bool = True, batch: int = 1000,
        where: tuple[str, tuple] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a dataset in filename order, read in pages (flat memory).

        `where` is an extra SQL condition on the items table and its arguments
        (see syncd.catalogue.query.compile_query)."""
        after = ""
        state_filter = "" if include_missing else "AND state = 'present'"
        extra_sql, extra_args = (f"AND ({where[0]})", tuple(where[1])) if where else ("", ())
        while True:
            cursor = self._conn.execute(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE dataset_id = ? AND filename > ? "
                f"{state_filter} {extra_sql} ORDER BY filename LIMIT ?",
                (dataset.id, after, *extra_args, batch),
            )
            cursor.row_factory = sqlite3.Row
            rows = cursor.fetchall()
            for row in rows:
                yield self.item_json(dataset, row)
            if len(rows) < batch:
                return
            after = rows[-1]["filename"]

    def count_items(self, dataset: Dataset) -> dict[str, int]:
        counts = dict(
            self._conn.execute(
                "SELECT state, count(*) FROM items WHERE dataset_id = ? GROUP BY state", (dataset.id,)
            ).fetchall()
        )
        return {"present": counts.get("present", 0), "missing": counts.get("missing", 0)}

    def item_json(self, dataset: Dataset, row: sqlite3.Row) -> dict[str, Any]:
        """An item in the reference platform's JSON shape (see DESIGN.md)."""
        filename = row["filename"]
        directory, _, name = filename.rpartition("/")
        system: dict[str, Any] = {
            "originalname": name,
            "size": row["size"],
            "etag": row["etag"],
            "md5": row["md5"],
            # False for S3 multipart ETags ("…-N") and every non-S3 etag: not a content MD5.
            "etagIsMd5": row["md5"] is not None and row["etag"] == row["md5"],
            "modified": epoch_iso(row["mtime"]),
        }
        if row["system"]:
            system.update(json.loads(row["system"]))
        description = system.pop("description", None)  # a root property in the reference's shape
        item = {
            "id": self.item_id(row["pk"]),
            "dataset": dataset.name,
            "filename": filename,
            "name": name,
            "dir": directory or "/",
            "type": row["type"],
            "state": row["state"],
            "createdAt": row["created_at"],
            "updatedAt": row["updated_at"],
            "metadata": {
                "system": system,
                "user": json.loads(row["user"]) if row["user"] else {},
                # other top-level keys (the reference SDK's item_metadata); never system or user
                **(json.loads(row["extra"]) if row["extra"] else {}),
            },
        }
        if description is not None:
            item["description"] = description
        return item

    def listing_errors(self, dataset: Dataset, run_id: int | None = None) -> list[dict[str, str]]:
        sql = "SELECT path, reason, at FROM listing_errors WHERE dataset_id = ?"
        args: tuple = (dataset.id,)
        if run_id is not None:
            sql += " AND run_id = ?"
            args += (run_id,)
        return [
            {"path": path, "reason": reason, "at": at}
            for path, reason, at in self._conn.execute(sql + " ORDER BY id", args)
        ]


def normalize_filename(filename: str) -> str:
    """'/cats/a.jpg' from 'cats/a.jpg' or '/cats/a.jpg'."""
    return "/" + filename.lstrip("/")


class _Transaction:
    def __init__(self, conn: sqlite3.Connection, immediate: bool):
        self._conn = conn
        self.immediate = immediate

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE" if self.immediate else "BEGIN")
        return self._conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")
