"""The webhook outbox: events written in the same transaction as the change they report, then
delivered (syncd.service.webhooks) at least once.

The configured webhooks and their event types are mirrored in the `webhooks` table
(`set_subscriptions`, when the app opens the catalogue), so that every writer, on any
connection, emits with set-based SQL in its own transaction and without being told about
webhooks: item events come with the change rules (syncd.sync.rules -> jobs.apply_consequence),
`sync.finished` with the run's record, `job.done` / `job.failed` with the job's result.

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



def _item_json(dialect, *extra: str) -> str:
    """SQL: an item event's data (`extra`: more key and value SQL pairs, last)."""
    return dialect.json_object(
        "'dataset'", "d.name",
        "'id'", f"(SELECT value FROM settings WHERE key = 'instance') || {dialect.hex16('i.pk')}",
        "'filename'", "i.filename", "'type'", "i.type", *extra)


@dataclass(frozen=True)
class Entry:
    id: int
    delivery_id: str
    event: str
    created_at: str
    attempts: int
    data: Any


def set_subscriptions(catalogue: Catalogue, hooks: Iterable[tuple[str, Iterable[str]]]) -> None:
    """Make the `webhooks` table say what the config says: (name, event types) pairs."""
    rows = [(name, "," + ",".join(sorted(events)) + ",") for name, events in hooks]
    conn = catalogue._conn
    if rows == conn.execute("SELECT name, events FROM webhooks ORDER BY name").fetchall():
        return
    with catalogue.transaction(immediate=True):
        conn.execute("DELETE FROM webhooks")
        conn.executemany("INSERT INTO webhooks VALUES (?, ?)", rows)


def _wanted(conn) -> bool:
    return conn.execute("SELECT 1 FROM webhooks LIMIT 1").fetchone() is not None


def emit_event(conn, event: str, data: Any, *, now: str | None = None) -> None:
    """In the caller's transaction: `event` for every webhook subscribed to it."""
    if not _wanted(conn):
        return
    conn.execute(
        """INSERT INTO outbox (webhook, event, payload, created_at)
           SELECT name, ?, ?, ? FROM webhooks WHERE instr(events, ?) > 0""",
        (event, json.dumps(data, ensure_ascii=False, separators=(",", ":")), now or now_iso(),
         f",{event},"),
    )


def emit_items(conn, event: str, pks_sql: str, args: Sequence[Any] = (), *,
               present_only: bool = False, now: str | None = None) -> None:
    """In the caller's transaction: `event` for each item `pks_sql` selects (with `args`),
    for every webhook subscribed to it; `present_only`: only items still present."""
    if not _wanted(conn):
        return
    # A move: the item's id and new path, and the path it moved from.
    payload = (_item_json(conn.dialect, "'old_filename'", "i.moved_from") if event == "item.moved"
               else _item_json(conn.dialect))
    conn.execute(
        f"""INSERT INTO outbox (webhook, event, payload, created_at)
            SELECT w.name, ?, {payload}, ?
            FROM items i JOIN datasets d ON d.id = i.dataset_id CROSS JOIN webhooks w
            WHERE i.pk IN ({pks_sql}) AND instr(w.events, ?) > 0
                  {"AND i.state = 'present'" if present_only else ""}
            ORDER BY i.pk""",
        (event, now or now_iso(), *args, f",{event},"),
    )


def job_finished(catalogue: Catalogue, state: str, data: dict[str, Any]) -> None:
    """In the caller's transaction: `job.done` or `job.failed` (the runner's result)."""
    emit_event(catalogue._conn, f"job.{state}", data)


class Outbox:
    """The delivery side's view of the outbox, on its own catalogue connection."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.conn = catalogue._conn

    def claim(self, webhook: str, now: float, *, limit: int, lease_seconds: float) -> list[Entry]:
        """The webhook's due pending events, oldest first, held for `lease_seconds` (a
        process killed while it delivers them leaves them due again after that)."""
        with self.catalogue.transaction(immediate=True):
            rows = self.conn.execute(
                """SELECT id, event, created_at, attempts, payload FROM outbox
                   WHERE webhook = ? AND state = 'pending' AND next_at <= ?
                   ORDER BY id LIMIT ?""",
                (webhook, now, limit),
            ).fetchall()
            if rows:
                self.conn.executemany("UPDATE outbox SET next_at = ? WHERE id = ?",
                                      [(now + lease_seconds, row[0]) for row in rows])
        instance = self.catalogue.instance
        return [Entry(row[0], f"{instance}-{row[0]:x}", row[1], row[2], row[3], json.loads(row[4]))
                for row in rows]

    def delivered(self, ids: Sequence[int]) -> None:
        now = now_iso()
        with self.catalogue.transaction(immediate=True):
            self.conn.executemany(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?,"
                " last_error = NULL WHERE id = ?", [(now, i) for i in ids])

    def failed(self, ids: Sequence[int], error: str, *, retry_at: float, max_attempts: int) -> int:
        """Count a failed try; rows that reach `max_attempts` become dead. Returns how many did."""
        with self.catalogue.transaction(immediate=True):
            self.conn.executemany(
                """UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ?,
                          state = CASE WHEN attempts + 1 >= ? THEN 'dead' ELSE 'pending' END
                   WHERE id = ?""",
                [(error, retry_at, max_attempts, i) for i in ids])
            marks = ",".join("?" * len(ids))
            return self.conn.execute(
                f"SELECT count(*) FROM outbox WHERE state = 'dead' AND id IN ({marks})", tuple(ids)
            ).fetchone()[0]

    def retry_dead(self, webhook: str | None = None) -> int:
        """Queue dead events again, their attempts reset."""
        where, args = ("AND webhook = ?", (webhook,)) if webhook else ("", ())
        with self.catalogue.transaction(immediate=True):
            return self.conn.execute(
                f"UPDATE outbox SET state = 'pending', attempts = 0, next_at = 0"
                f" WHERE state = 'dead' {where}", args).rowcount

    def counts(self) -> list[dict[str, Any]]:
        return counts(self.conn)


def counts(conn) -> list[dict[str, Any]]:
    """Per webhook and state: events, the oldest one's time, the last error."""
    rows = conn.execute(
        """SELECT webhook, state, count(*), min(created_at),
                  (SELECT last_error FROM outbox o2 WHERE o2.webhook = o.webhook
                     AND o2.state = o.state AND o2.last_error IS NOT NULL ORDER BY id DESC LIMIT 1)
           FROM outbox o GROUP BY webhook, state ORDER BY webhook, state""").fetchall()
    return [{"webhook": r[0], "state": r[1], "events": r[2], "oldest": r[3], "last_error": r[4]}
            for r in rows]
