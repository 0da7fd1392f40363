"""Reading a test's catalogue from outside, as another process would, on either engine.

Tests that kill syncd mid-work watch and check its catalogue through a plain database
connection of their own (not syncd's code, which is what they test). `location` is what
the `catalogue_location` fixture gives: a SQLite file or a postgresql:// URL. SQL is
written once for both engines (`?` parameters; no group_concat, no json_extract).

    query(location, sql, args)   all rows, or None while there is nothing to read yet
                                 (no file, no schema, the file locked)
    value(location, sql, args)   the first column of the first row (None as above)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def is_url(location: str | Path) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def query(location: str | Path, sql: str, args: tuple = ()) -> list[tuple] | None:
    if is_url(location):
        import psycopg

        try:
            with psycopg.connect(str(location), autocommit=True) as conn:
                return conn.execute(sql.replace("?", "%s"), args).fetchall()
        except psycopg.errors.UndefinedTable:  # the first sync has not made the schema yet
            return None
    path = Path(location)
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # no schema yet, or the writer holds the file
        return None


def value(location: str | Path, sql: str, args: tuple = ()) -> Any:
    rows = query(location, sql, args)
    return rows[0][0] if rows else None
