"""The job queue: the catalogue's `jobs` table, claimed with leases.

A job is written in the same transaction as the change that calls for it (the indexer's
created/updated items get a 'preprocess' job, its deleted items a 'cleanup' job), so a crash
never loses one. A runner then:

- claims jobs with one atomic `UPDATE ... RETURNING`: state 'running', attempts + 1, its own
  runner id, and a lease (`lease_until`) it renews while it works (on PostgreSQL the
  candidate rows are locked `FOR UPDATE SKIP LOCKED`, so runners on many hosts never wait
  on, or take, each other's claims);
- records each one 'done', 'failed' (with the reason) or, for a storage hiccup, 'pending'
  again after a delay, only while it still holds the claim (`claimed_by` matches), so a
  runner that lost its lease can never overwrite the result of the runner that took over.

A job whose runner died is claimable again once its lease passes, or at once when the runner
was a process on this host that no longer exists (a restart after `kill -9` resumes its jobs
without waiting). A job that has used up `max_attempts` that way is failed instead.

The jobs of one item run one at a time, oldest first: a claim skips a job while an older job
of the same item is still open, so a cleanup never races the preprocessing that came before
or after it.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from preprocess import FORMATS

from . import archives, outbox
from .store import Catalogue, now_iso

PREPROCESS, CLEANUP = "preprocess", "cleanup"
STATES = ("pending", "running", "done", "failed", "cancelled")
OPEN_STATES = ("pending", "running")
THUMBNAILS = ".dataloop/thumbnails"
PREVIEWS = ".dataloop/previews"  # video previews ([preprocess] video_preview)
DEAD_CHECK_SECONDS = 5.0  # how often a runner looks for dead runners' jobs to take over

Clock = Callable[[], float]  # seconds since the epoch


def thumbnail_key(item_id: str, extension: str) -> str:
    return f"{THUMBNAILS}/{item_id}.{extension}"


def preview_key(item_id: str, extension: str = "mp4") -> str:
    return f"{PREVIEWS}/{item_id}.{extension}"


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    item_pk: int
    attempts: int  # including the current one
    dataset_id: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)


def runner_id() -> str:
    """host:pid:random, unique to this process and recognisable as living on this host."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class JobQueue:
    def __init__(self, catalogue: Catalogue, *, lease_seconds: float = 60.0, max_attempts: int = 3,
                 clock: Clock = time.time, owner: str | None = None):
        self.catalogue = catalogue
        self.conn = catalogue._conn
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.clock = clock
        self.owner = owner or runner_id()
        self._dead: list[str] = []  # runner ids found dead, refreshed every DEAD_CHECK_SECONDS
        self._dead_checked = -float("inf")

    # -- claiming -------------------------------------------------------------------------

    def claim(self, limit: int, *, datasets: Sequence[int] | None = None) -> list[Job]:
        """Up to `limit` jobs for this runner, oldest first."""
        if limit <= 0:
            return []
        now = self.clock()
        if time.monotonic() >= self._dead_checked + DEAD_CHECK_SECONDS:
            self._dead = self._dead_owners()
            self._dead_checked = time.monotonic()
        dead = self._dead
        stale = _stale_condition(len(dead))
        stale_j = _stale_condition(len(dead), table="j.")
        scope, scope_args = _dataset_scope(datasets)
        with self.catalogue.transaction(immediate=True) as conn:
            # Jobs whose runners keep dying with them: give up on them.
            conn.execute(
                f"""UPDATE jobs SET state = 'failed', updated_at = ?, lease_until = NULL,
                           error = 'abandoned: the runner processing it stopped during each of '
                                   || attempts || ' attempts'
                    WHERE state = 'running' AND attempts >= ? AND {stale}""",
                (now_iso(), self.max_attempts, now, *dead),
            )
            rows = conn.execute(
                f"""UPDATE jobs SET state = 'running', attempts = attempts + 1, claimed_by = ?,
                           claimed_at = ?, updated_at = ?, lease_until = ?, run_after = NULL
                    WHERE id IN (
                        SELECT j.id FROM jobs j
                        WHERE ((j.state = 'pending' AND coalesce(j.run_after, 0) <= ?)
                               OR (j.state = 'running' AND {stale_j}))
                          AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.item_pk = j.item_pk
                                          AND o.id < j.id AND o.state IN ('pending', 'running'))
                          {scope}
                        ORDER BY j.id LIMIT ? {conn.dialect.skip_locked})
                    RETURNING id, kind, item_pk, attempts, dataset_id, payload""",
                (self.owner, now_iso(), now_iso(), now + self.lease_seconds, now, now, *dead,
                 *scope_args, limit),
            ).fetchall()
        jobs = [Job(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else {}) for r in rows]
        return sorted(jobs, key=lambda job: job.id)

    def _dead_owners(self) -> list[str]:
        """Runner ids of running jobs whose process on this host no longer exists."""
        host = socket.gethostname()
        dead = []
        for (owner,) in self.conn.execute(
            "SELECT DISTINCT claimed_by FROM jobs WHERE state = 'running' AND claimed_by IS NOT NULL"
        ):
            owner_host, _, rest = owner.partition(":")
            pid = rest.partition(":")[0]
            if owner_host == host and owner != self.owner and pid.isdigit() and not _pid_alive(int(pid)):
                dead.append(owner)
        return dead

    def renew(self, job_ids: Sequence[int]) -> None:
        """Extend the leases of jobs this runner still works on."""
        if not job_ids:
            return
        with self.catalogue.transaction(immediate=True) as conn:
            conn.executemany(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND state = 'running' AND claimed_by = ?",
                [(self.clock() + self.lease_seconds, job_id, self.owner) for job_id in job_ids],
            )

    # -- results (inside the caller's `catalogue.transaction()`) -----------------------------------------

    def finish(self, job: Job, state: str, error: str | None = None) -> bool:
        """Mark a claimed job done / failed / cancelled. False if this runner no longer holds
        it (its lease passed and another runner took it): then nothing is recorded."""
        cursor = self.conn.execute(
            """UPDATE jobs SET state = ?, error = ?, updated_at = ?, lease_until = NULL
               WHERE id = ? AND state = 'running' AND claimed_by = ?""",
            (state, error, now_iso(), job.id, self.owner),
        )
        return cursor.rowcount == 1

    def retry_later(self, job: Job, error: str, delay: float, *, refund: bool = False) -> bool:
        """Put a claimed job back to pending, claimable after `delay` seconds (`refund`: the
        attempt is not counted). False if this runner no longer holds it."""
        cursor = self.conn.execute(
            """UPDATE jobs SET state = 'pending', error = ?, updated_at = ?, lease_until = NULL,
                      run_after = ?, attempts = attempts - ?
               WHERE id = ? AND state = 'running' AND claimed_by = ?""",
            (error, now_iso(), self.clock() + delay, int(refund), job.id, self.owner),
        )
        return cursor.rowcount == 1

    def add(self, kind: str, item_pk: int, *, dataset_id: int | None = None,
            payload: dict[str, Any] | None = None) -> int:
        now = now_iso()
        return self.conn.execute(
            """INSERT INTO jobs (item_pk, kind, state, dataset_id, payload, created_at, updated_at)
               VALUES (?, ?, 'pending', ?, ?, ?, ?) RETURNING id""",
            (item_pk, kind, dataset_id, json.dumps(payload) if payload else None, now, now),
        ).fetchone()[0]

    # -- reading --------------------------------------------------------------------------

    def counts(self, *, datasets: Sequence[int] | None = None) -> dict[str, int]:
        scope, args = _dataset_scope(datasets)
        rows = self.conn.execute(
            f"SELECT j.state, count(*) FROM jobs j WHERE true {scope} GROUP BY j.state", args
        ).fetchall()
        return {state: dict(rows).get(state, 0) for state in STATES}

    def open_count(self, *, datasets: Sequence[int] | None = None) -> int:
        scope, args = _dataset_scope(datasets)
        return self.conn.execute(
            f"SELECT count(*) FROM jobs j WHERE j.state IN ('pending', 'running') {scope}", args
        ).fetchone()[0]

    def rows(self, *, states: Sequence[str] = (), datasets: Sequence[int] | None = None,
             batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Jobs in id order, with their item's dataset and filename, read in pages."""
        scope, scope_args = _dataset_scope(datasets)
        state_filter = f"AND j.state IN ({', '.join('?' * len(states))})" if states else ""
        after = 0
        while True:
            cursor = self.conn.execute(
                f"""SELECT j.id, j.kind, j.state, j.attempts, j.error, j.created_at, j.updated_at,
                           j.claimed_by, j.item_pk, d.name, i.filename
                    FROM jobs j
                    LEFT JOIN items i ON i.pk = j.item_pk
                    LEFT JOIN datasets d ON d.id = coalesce(i.dataset_id, j.dataset_id)
                    WHERE j.id > ? {state_filter} {scope}
                    ORDER BY j.id LIMIT ?""",
                (after, *states, *scope_args, batch),
            )
            rows = cursor.fetchall()
            for row in rows:
                yield {
                    "id": row[0], "kind": row[1], "state": row[2], "attempts": row[3],
                    "error": row[4], "createdAt": row[5], "updatedAt": row[6],
                    "claimedBy": row[7], "item": self.catalogue.item_id(row[8]),
                    "dataset": row[9], "filename": row[10],
                }
            if len(rows) < batch:
                return
            after = rows[-1][0]

    # -- retrying -------------------------------------------------------------------------

    def requeue(self, *, states: Sequence[str] = ("failed",), ids: Sequence[int] = (),
                datasets: Sequence[int] | None = None) -> int:
        """Put finished jobs back to pending with fresh attempts; returns how many."""
        scope, scope_args = _dataset_scope(datasets)
        where = [f"j.state IN ({', '.join('?' * len(states))})"] if states else []
        args: list[Any] = list(states)
        if ids:
            where.append(f"j.id IN ({', '.join('?' * len(ids))})")
            args += ids
        if not where:
            return 0
        with self.catalogue.transaction(immediate=True) as conn:
            return conn.execute(
                f"""UPDATE jobs SET state = 'pending', attempts = 0, error = NULL, run_after = NULL,
                           updated_at = ?, claimed_by = NULL, claimed_at = NULL, lease_until = NULL
                    WHERE id IN (SELECT j.id FROM jobs j WHERE j.state NOT IN ('pending', 'running')
                                 AND {' AND '.join(where)} {scope})""",
                (now_iso(), *args, *scope_args),
            ).rowcount


# -- consequences of a change (the policy is syncd.sync.rules; this is how it is written) --

ALWAYS, UNLESS_CURRENT, NEVER = "always", "unless-current", "never"
SUPERSEDED = "superseded"  # a cancel reason completed with the id of the job that replaces it


@dataclass(frozen=True)
class Consequence:
    """What a change to a set of items does to their jobs, as data (see syncd.sync.rules).

    cancel: kinds of pending job that are cancelled, each recording `reason` (SUPERSEDED
        becomes "superseded by job N", N being the preprocess job queued here).
    preprocess: ALWAYS queue a preprocess job; UNLESS_CURRENT queue one unless the item's
        latest job (cancelled cleanups aside) is a preprocess job that is pending, running,
        done or failed, i.e. unless its preprocessing (and artifacts) stand; NEVER.
    cleanup: queue a cleanup of the artifacts the items may have in storage.
    expand: queue an expand job for the items that are tar archives, in datasets with
        `expand_archives` (syncd.catalogue.archives).
    event: the webhook event it is (syncd.catalogue.outbox), if any; `event_present_only`:
        only for items still present (a ghost already reported is not reported again).
    """

    cancel: tuple[str, ...] = ()
    reason: str | None = None
    preprocess: str = NEVER
    cleanup: bool = False
    event: str | None = None
    event_present_only: bool = False
    expand: bool = False  # queue an expand job for archives in datasets that expand them


def apply_consequence(conn, consequence: Consequence, pks_sql: str, args: Sequence[Any] = (),
                      *, now: str | None = None, notify: bool = True) -> None:
    """In the caller's transaction: apply `consequence` to the items `pks_sql` selects (a
    SELECT of item pks, with `args`), set-based whatever the number of items; with
    `notify`, its webhook event too."""
    now = now or now_iso()
    c = consequence
    if c.event and notify:
        outbox.emit_items(conn, c.event, pks_sql, args, present_only=c.event_present_only, now=now)
    reason = c.reason or "cancelled"
    if c.cancel and c.reason != SUPERSEDED:
        _cancel(conn, c.cancel, pks_sql, args, f"'{_sql_text(reason)}'", now)
    if c.cleanup:
        enqueue_cleanup(conn, pks_sql, now, args)
    if c.expand:
        archives.enqueue_expand(conn, pks_sql, args, now)
    if c.preprocess == ALWAYS:
        conn.execute(
            f"""INSERT INTO jobs (item_pk, kind, state, created_at, updated_at)
                SELECT pk, 'preprocess', 'pending', ?, ? FROM items WHERE pk IN ({pks_sql})""",
            (now, now, *args),
        )
    elif c.preprocess == UNLESS_CURRENT:
        # The item's latest job: `id + 0`, so that the planner reads the item's few jobs by
        # jobs_item and sorts them, never walks the primary key backwards hoping to meet the
        # item soon (PostgreSQL did, per item: a 1% changed re-sync of 200k items took 14 s).
        conn.execute(
            f"""INSERT INTO jobs (item_pk, kind, state, created_at, updated_at)
                SELECT i.pk, 'preprocess', 'pending', ?, ? FROM items i
                WHERE i.pk IN ({pks_sql}) AND NOT coalesce((
                    SELECT j.kind = 'preprocess' AND j.state IN ('pending', 'running', 'done', 'failed')
                    FROM jobs j WHERE j.item_pk = i.pk
                      AND NOT (j.kind = 'cleanup' AND j.state = 'cancelled')
                    ORDER BY j.id + 0 DESC LIMIT 1), false)""",
            (now, now, *args),
        )
    if c.cancel and c.reason == SUPERSEDED:
        latest = ("(SELECT max(n.id + 0) FROM jobs n WHERE n.item_pk = jobs.item_pk "
                  "AND n.kind = 'preprocess')")
        _cancel(conn, c.cancel, pks_sql, args, f"'superseded by job ' || {latest}", now,
                extra=f"AND id < {latest}")


def _cancel(conn, kinds, pks_sql, args, reason_sql, now, extra="") -> None:
    marks = ", ".join("?" * len(kinds))
    conn.execute(
        f"""UPDATE jobs SET state = 'cancelled', error = {reason_sql}, updated_at = ?
            WHERE state = 'pending' AND kind IN ({marks}) AND item_pk IN ({pks_sql}) {extra}""",
        (now, *kinds, *args),
    )


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def enqueue_cleanup(conn, pks_sql: str, now: str, args: Sequence[Any] = ()) -> None:
    """In the caller's transaction: a cleanup job for each item selected by `pks_sql` that may
    have artifacts in storage (a recorded thumbnail, or a preprocess job running now). The job
    carries its driver and keys, so it still runs after the item row is pruned."""
    dialect = conn.dialect
    item_id = f"s.value || {dialect.hex16('i.pk')}"
    thumbnail, preview = (dialect.json_text("i.system", key) for key in ("thumbnailId", "previewId"))
    keys = dialect.json_array(
        thumbnail, preview,
        *[f"'{THUMBNAILS}/' || {item_id} || '.{extension}'" for extension, _ in FORMATS.values()],
        f"'{PREVIEWS}/' || {item_id} || '.mp4'")
    conn.execute(
        f"""INSERT INTO jobs (item_pk, kind, state, dataset_id, payload, created_at, updated_at)
            SELECT i.pk, 'cleanup', 'pending', i.dataset_id,
                   {dialect.json_object("'driver'", "d.driver", "'keys'", keys)}, ?, ?
            FROM items i JOIN datasets d ON d.id = i.dataset_id
                 JOIN settings s ON s.key = 'instance'
            WHERE i.pk IN ({pks_sql})
              AND ({thumbnail} IS NOT NULL
                   OR EXISTS (SELECT 1 FROM jobs r WHERE r.item_pk = i.pk
                              AND r.kind = 'preprocess' AND r.state = 'running'))
              AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.item_pk = i.pk
                              AND c.kind = 'cleanup' AND c.state = 'pending')""",
        (now, now, *args),
    )


def _stale_condition(dead: int, table: str = "") -> str:
    """SQL true for a running job whose claimant is gone: lease passed, or a dead process.
    Parameters: now, then the `dead` runner ids."""
    condition = f"coalesce({table}lease_until, 0) < ?"
    if dead:
        condition = f"({condition} OR {table}claimed_by IN ({', '.join('?' * dead)}))"
    return condition


def _dataset_scope(datasets: Sequence[int] | None) -> tuple[str, list[int]]:
    if datasets is None:
        return "", []
    marks = ", ".join("?" * len(datasets)) or "NULL"
    return (
        f"AND coalesce(j.dataset_id, (SELECT dataset_id FROM items WHERE pk = j.item_pk)) IN ({marks})",
        list(datasets),
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
