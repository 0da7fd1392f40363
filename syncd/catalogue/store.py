"""The catalogue: a SQLite file (WAL), or a PostgreSQL database shared by many hosts, holding
datasets, items and their preprocessing jobs (the engines' differences: backend.py).

The schema is versioned (SQLite: `PRAGMA user_version`; PostgreSQL: table `syncd_schema`); `MIGRATIONS[n]` takes a catalogue from
version n to n+1 and runs inside a transaction, so an interrupted upgrade leaves the old
version intact.

Items have an integer primary key (`pk`), stable across renames, from which the public id
is derived: the catalogue's random 8-hex-digit instance id followed by the pk in 16 hex
digits, 24 characters like the reference platform's ids, unique across catalogues and
costing no extra index.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


from ..errors import CatalogueBusyError, CatalogueError, NotFoundError
from .backend import BUSY_TIMEOUT, is_busy
from .backend import connect, database_errors, is_postgres_url, redact_url
from .errors import describe
from .query import condition_sql
from .schema import MIGRATIONS, statements

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


# "user" quoted: a reserved word (the current role) on PostgreSQL
ITEM_COLUMNS = ('pk, dataset_id, filename, type, size, mtime, etag, md5, state, created_at, '
                'updated_at, system, "user", extra')


class Catalogue:
    """One catalogue connection. Not shared between threads: open one per thread or process."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float | None = None):
        """`path`: a SQLite file (created on first use), or a postgresql:// URL.
        `busy_timeout`: seconds a write waits for another writer before CatalogueBusyError
        (default BUSY_TIMEOUT, read at each open)."""
        self.url = str(path) if is_postgres_url(str(path)) else None
        if self.url:
            self.path = redact_url(self.url)  # what messages name: never the password
        else:
            self.path = Path(path)
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
        if busy_timeout is None:
            busy_timeout = BUSY_TIMEOUT
        self._conn = connect(self.url or str(path), busy_timeout=busy_timeout)
        self.dialect = self._conn.dialect
        self.migrate()
        self.instance = self._instance_id()

    @functools.cached_property
    def db(self):
        """The catalogue as a sqlite-utils Database (imported on first use: it is slow to import)."""
        import sqlite_utils

        return sqlite_utils.Database(self._conn)

    # -- schema ---------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self.dialect.version(self._conn)

    def migrate(self) -> None:
        self.dialect.prepare(self._conn)
        while (version := self.version) < len(MIGRATIONS):
            with self.transaction(immediate=True):
                self.dialect.lock_schema(self._conn)
                if self.version != version:  # another process migrated meanwhile
                    continue
                for statement in statements(MIGRATIONS[version]):
                    self._conn.execute(self.dialect.ddl(statement))
                self.dialect.set_version(self._conn, version + 1)
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
                "INSERT INTO settings VALUES ('instance', ?) ON CONFLICT DO NOTHING",
                (secrets.token_hex(4),))
        return self._conn.execute("SELECT value FROM settings WHERE key = 'instance'").fetchone()[0]

    def transaction(self, *, immediate: bool = False) -> _Transaction:
        """`with catalogue.transaction(immediate=True):` groups the catalogue's writes."""
        return _Transaction(self._conn, immediate, self.path)

    @property
    def in_memory(self) -> bool:
        return str(self.path) == ":memory:"

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def dataset_lock(self, dataset: Dataset):
        """`with catalogue.dataset_lock(dataset):` one sync of the dataset at a time, across
        processes and hosts; a second one waits (and logs that it does)."""
        return self.dialect.dataset_lock(self, dataset.id, dataset.name)

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
                    "INSERT INTO datasets (name, driver, created_at) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
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

    def item_row(self, dataset: Dataset, filename: str) -> Mapping[str, Any] | None:
        return self._conn.mapped(
            f"SELECT {ITEM_COLUMNS} FROM items WHERE dataset_id = ? AND filename = ?",
            (dataset.id, normalize_filename(filename)),
        ).fetchone()

    def item_row_by_pk(self, pk: int) -> Mapping[str, Any] | None:
        return self._conn.mapped(f"SELECT {ITEM_COLUMNS} FROM items WHERE pk = ?", (pk,)).fetchone()

    def get_item(self, dataset: Dataset, filename: str) -> dict[str, Any]:
        row = self.item_row(dataset, filename)
        if row is None:
            raise NotFoundError(f"no item {normalize_filename(filename)!r} in dataset {dataset.name!r}")
        return self.item_json(dataset, row)

    def iter_items(
        self, dataset: Dataset, *, include_missing: bool = True, batch: int = 1000,
        where=None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a dataset in filename order, read in pages (flat memory).

        `where` is an extra SQL condition on the items table and its arguments
        (see syncd.catalogue.query.compile_query)."""
        after = ""
        state_filter = "" if include_missing else "AND state = 'present'"
        extra_sql, extra_args = condition_sql(where, self.dialect)
        while True:
            rows = self._conn.mapped(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE dataset_id = ? AND filename > ? "
                f"{state_filter} {extra_sql} ORDER BY filename LIMIT ?",
                (dataset.id, after, *extra_args, batch),
            ).fetchall()
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

    def item_json(self, dataset: Dataset, row: Mapping[str, Any]) -> dict[str, Any]:
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
    """BEGIN (IMMEDIATE: take the write lock now, on SQLite) ... COMMIT, or ROLLBACK on an
    error. A busy or lost database (locked past the timeout, a deadlock, a dropped
    connection) comes out as CatalogueBusyError, the same on both engines."""

    def __init__(self, conn, immediate: bool, where):
        self._conn = conn
        self.immediate = immediate
        self.where = where  # the catalogue, as messages name it

    def __enter__(self):
        try:
            self._conn.execute(self._conn.dialect.begin(self.immediate))
        except database_errors() as error:
            if is_busy(error):
                raise CatalogueBusyError(describe(self.where, error)) from error
            raise
        return self._conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._conn.execute("COMMIT")
            except database_errors() as error:
                with contextlib.suppress(*database_errors()):
                    self._conn.execute("ROLLBACK")
                if is_busy(error):
                    raise CatalogueBusyError(describe(self.where, error)) from error
                raise
            return
        with contextlib.suppress(*database_errors()):
            self._conn.execute("ROLLBACK")
        if is_busy(exc):
            raise CatalogueBusyError(describe(self.where, exc)) from exc
