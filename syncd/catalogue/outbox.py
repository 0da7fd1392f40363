"""The webhook outbox: events written in the same transaction as the change they report, then
delivered (syncd.service.webhooks) at least once.

A row is one event for one webhook. Its delivery id (`<catalogue instance>-<row id>`) never
changes, so a receiver that sees an id twice (a retry after a lost answer, a daemon killed
mid-delivery) knows it is the same event. Rows are `pending` until the receiver answers 2xx
(`delivered`), or until `max_attempts` tries have failed (`dead`: the dead letters, shown by
`syncd status` and /metrics, queued again by `syncd webhooks retry`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .store import Catalogue, now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    webhook TEXT NOT NULL,
    event TEXT NOT NULL,                    -- item.created, sync.finished, ...
    payload TEXT NOT NULL,                  -- JSON: the event's data
    created_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,        -- wall-clock seconds: not tried before then
    last_error TEXT,
    delivered_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(webhook, next_at) WHERE state = 'pending';
"""


@dataclass(frozen=True)
class Subscription:
    """A webhook's name and the event types it wants."""

    name: str
    events: frozenset[str]


@dataclass(frozen=True)
class Entry:
    id: int
    delivery_id: str
    event: str
    created_at: str
    attempts: int
    data: Any


def ensure_schema(conn) -> None:
    """Create the outbox table (idempotent; run once per connection that writes to it)."""
    for statement in SCHEMA.strip().split(";"):
        if statement.strip():
            conn.execute(statement)


def emit(conn, subscriptions: Sequence[Subscription], event: str, data: Any, *,
         now: str | None = None) -> int:
    """Write `event` for every webhook subscribed to it, inside the caller's transaction.
    Returns the rows written."""
    names = [s.name for s in subscriptions if event in s.events]
    if not names:
        return 0
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    now = now or now_iso()
    conn.executemany(
        "INSERT INTO outbox (webhook, event, payload, created_at) VALUES (?, ?, ?, ?)",
        [(name, event, payload, now) for name in names],
    )
    return len(names)


def emit_many(conn, subscriptions: Sequence[Subscription], events: Iterable[tuple[str, Any]], *,
              now: str | None = None) -> int:
    now = now or now_iso()
    return sum(emit(conn, subscriptions, event, data, now=now) for event, data in events)


class Outbox:
    """The delivery side's view of the outbox, on its own catalogue connection."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        with catalogue.transaction(immediate=True) as conn:
            ensure_schema(conn)

    def claim(self, webhook: str, now: float, *, limit: int, lease_seconds: float) -> list[Entry]:
        """The webhook's due pending events, oldest first, held for `lease_seconds` (a
        process killed while it delivers them leaves them due again after that)."""
        with self.catalogue.transaction(immediate=True) as conn:
            rows = conn.execute(
                """SELECT id, event, created_at, attempts, payload FROM outbox
                   WHERE webhook = ? AND state = 'pending' AND next_at <= ?
                   ORDER BY id LIMIT ?""",
                (webhook, now, limit),
            ).fetchall()
            if rows:
                conn.executemany("UPDATE outbox SET next_at = ? WHERE id = ?",
                                 [(now + lease_seconds, row[0]) for row in rows])
        instance = self.catalogue.instance
        return [Entry(row[0], f"{instance}-{row[0]:x}", row[1], row[2], row[3], json.loads(row[4]))
                for row in rows]

    def delivered(self, ids: Sequence[int]) -> None:
        now = now_iso()
        with self.catalogue.transaction(immediate=True) as conn:
            conn.executemany(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?,"
                " last_error = NULL WHERE id = ?", [(now, i) for i in ids])

    def failed(self, ids: Sequence[int], error: str, *, retry_at: float, max_attempts: int) -> int:
        """Count a failed try; rows that reach `max_attempts` become dead. Returns how many did."""
        with self.catalogue.transaction(immediate=True) as conn:
            conn.executemany(
                """UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ?,
                          state = CASE WHEN attempts + 1 >= ? THEN 'dead' ELSE 'pending' END
                   WHERE id = ?""",
                [(error, retry_at, max_attempts, i) for i in ids])
            marks = ",".join("?" * len(ids))
            return conn.execute(
                f"SELECT count(*) FROM outbox WHERE state = 'dead' AND id IN ({marks})", tuple(ids)
            ).fetchone()[0]

    def retry_dead(self, webhook: str | None = None) -> int:
        """Queue dead events again, their attempts reset."""
        where, args = ("AND webhook = ?", (webhook,)) if webhook else ("", ())
        with self.catalogue.transaction(immediate=True) as conn:
            return conn.execute(
                f"UPDATE outbox SET state = 'pending', attempts = 0, next_at = 0"
                f" WHERE state = 'dead' {where}", args).rowcount


def counts(conn) -> list[dict[str, Any]]:
    """Per webhook and state: events, the oldest pending one's time, the last error."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox'").fetchone():
        return []
    rows = conn.execute(
        """SELECT webhook, state, count(*), min(created_at),
                  (SELECT last_error FROM outbox o2 WHERE o2.webhook = o.webhook
                     AND o2.state = o.state AND o2.last_error IS NOT NULL ORDER BY id DESC LIMIT 1)
           FROM outbox o GROUP BY webhook, state ORDER BY webhook, state""").fetchall()
    return [{"webhook": r[0], "state": r[1], "events": r[2], "oldest": r[3], "last_error": r[4]}
            for r in rows]


class ItemEvents:
    """Set-based item events for a sync: `emit(event, select, params)` writes one outbox row
    per row of `select` (columns: pk, filename, old filename or NULL) for each subscribed
    webhook, in the caller's transaction, without reading the rows into Python."""

    def __init__(self, conn, subscriptions: Sequence[Subscription], dataset: str, instance: str,
                 now: str):
        self.conn, self.subscriptions = conn, subscriptions
        self.dataset, self.instance, self.now = dataset, instance, now

    def __call__(self, event: str, select: str, params: tuple = ()) -> None:
        for name in (s.name for s in self.subscriptions if event in s.events):
            self.conn.execute(
                f"""WITH s(pk, f, o) AS ({select})
                    INSERT INTO outbox (webhook, event, payload, created_at)
                    SELECT ?, ?, json_patch('{{}}', json_object(
                               'dataset', ?, 'id', ? || printf('%016x', s.pk), 'filename', s.f,
                               'old_filename', s.o, 'source', 'sync')), ?
                    FROM s ORDER BY s.pk""",
                (*params, name, event, self.dataset, self.instance, self.now),
            )
