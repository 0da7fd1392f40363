"""Counts of items and jobs read from a catalogue file without opening it for writing
(the daemon's /metrics: a scrape never waits on, or takes, the write lock)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from . import arrivals, outbox


@dataclass
class Counts:
    items: dict[tuple[str, str], int]  # (dataset, state) -> items
    jobs: dict[str, int]  # state -> jobs
    webhooks: list[dict] = field(default_factory=list)  # per webhook and state: see outbox.counts
    refused: dict[tuple[str, str], int] = field(default_factory=dict)  # (dataset, reason) -> paths


def read_counts(path: str | Path) -> Counts | None:
    """The counts, or None when the catalogue cannot be read (not created yet, locked)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        items = {(name, state): count for name, state, count in conn.execute(
            "SELECT d.name, i.state, count(*) FROM items i JOIN datasets d ON d.id = i.dataset_id "
            "GROUP BY d.name, i.state ORDER BY 1, 2")}
        jobs = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"))
        return Counts(items, jobs, outbox.counts(conn), arrivals.counts(conn))
    except sqlite3.Error:
        return None
    finally:
        conn.close()
