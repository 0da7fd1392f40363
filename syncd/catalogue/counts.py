"""Counts of items and jobs read from a catalogue without opening it for writing
(the daemon's /metrics: a scrape never waits on, or takes, the write lock)."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from . import arrivals, outbox
from .backend import database_errors, is_postgres_url


@dataclass
class Counts:
    items: dict[tuple[str, str], int]  # (dataset, state) -> items
    jobs: dict[str, int]  # state -> jobs
    webhooks: list[dict] = field(default_factory=list)  # per webhook and state: see outbox.counts
    refused: dict[tuple[str, str], int] = field(default_factory=dict)  # (dataset, reason) -> paths


def read_counts(path: str | Path) -> Counts | None:
    """The counts, or None when the catalogue cannot be read (not created yet, locked,
    the server unreachable). `path`: a SQLite file or a postgresql:// URL."""
    try:
        if is_postgres_url(str(path)):
            from .postgres import connect_postgres

            conn = connect_postgres(str(path), read_only=True)
        else:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except database_errors():
        return None
    try:
        items = {(name, state): count for name, state, count in conn.execute(
            "SELECT d.name, i.state, count(*) FROM items i JOIN datasets d ON d.id = i.dataset_id "
            "GROUP BY d.name, i.state ORDER BY 1, 2")}
        jobs = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        webhooks: list[dict] = []
        with contextlib.suppress(*database_errors()):  # a catalogue older than the outbox
            webhooks = outbox.counts(conn)
        refused: dict = {}
        with contextlib.suppress(*database_errors()):  # older than the arrival controls
            refused = arrivals.counts(conn)
        return Counts(items, jobs, webhooks, refused)
    except database_errors():
        return None
    finally:
        conn.close()
