"""The one applier: brings the catalogue in line with storage for the keys events name.

For every key an event names, the applier stats the object through the driver (outside any
transaction, several at a time for remote storage) and then, in one transaction for the
whole batch, reconciles the item with what storage really holds:

- in storage, no item at the path: a missing item with the same content (the indexer's
  CONTENT_KEY rule) moves here and keeps its id; otherwise a new item and its preprocessing
  job, written together;
- in storage, item differs: facts refreshed; a content change cancels the item's pending job
  and queues a new one;
- not in storage, item present: marked missing and its pending jobs cancelled. If an object
  with the same content was created by an event shortly before (a copy then a delete, as an
  S3 "move" is), the old item moves to the new path instead and the new one is dropped;
- anything else (duplicates, late or out-of-order deliveries): nothing is written.

Missing items wait `move_window` seconds for a matching create before the daemon's reaper
queues the cleanup of their artifacts (and removes them, with `on_delete = "remove"`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from drivers import Driver, InvalidKey, NotFound, ObjectInfo
from drivers.base import is_hidden

from ..catalogue import Catalogue, Dataset, now_iso
from .events import Event, FolderChanged, ObjectMoved
from ..catalogue.outbox import Subscription, emit_many
from .filters import NO_FILTER, PathFilter
from .indexer import CONTENT_KEY
from ..jobs.queue import enqueue_cleanup

log = logging.getLogger(__name__)

STAT_THREADS = 8  # concurrent stats against remote storage
RECENT_LIMIT = 100_000  # recently created items remembered for copy-then-delete moves
ITEM_FIELDS = "pk, filename, size, mtime, etag, md5, state, system"

Resolve = Callable[[str], tuple[Dataset, Driver]]  # dataset name -> its row and its driver


@dataclass(frozen=True)
class Change:
    """What applying one event did to the catalogue."""

    event: Event
    action: str  # created | updated | moved | deleted | unchanged | ignored | rescan
    filename: str | None = None
    item_id: str | None = None
    old_filename: str | None = None

    @property
    def changed(self) -> bool:
        return self.action in ("created", "updated", "moved", "deleted")


class ApplyError(Exception):
    """Storage could not be asked about a key: the batch was not applied; retry it."""


class Applier:
    """Applies batches of events to one catalogue. Used from one thread at a time."""

    def __init__(self, catalogue: Catalogue, resolve: Resolve, *, move_window: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 path_filter: Callable[[str], PathFilter] = lambda _name: NO_FILTER,
                 subscriptions: tuple[Subscription, ...] = ()):
        self.catalogue = catalogue
        self.resolve = resolve
        # dataset name -> its filter. An excluded key is as good as absent from storage: no
        # item is made for it, an item already there goes, and a rename from an excluded
        # name (rsync's .NAME.XXXXXX -> NAME) is a create of the new name.
        self.path_filter = path_filter
        self.subscriptions = subscriptions  # webhooks: item events go to the outbox in the same transaction
        self.move_window = move_window  # seconds
        self.clock = clock
        # (dataset id, content key) -> [(pk, created at)], for copy-then-delete moves
        self._recent: dict[tuple[int, str], deque[tuple[int, float]]] = defaultdict(deque)
        self._recent_order: deque[tuple[float, tuple[int, str]]] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- the batch ------------------------------------------------------------------------

    def apply(self, events: Sequence[Event]) -> list[Change]:
        """Apply `events` in order. Raises ApplyError (nothing written) if storage failed."""
        targets: dict[tuple[str, str], None] = {}
        for event in events:
            if isinstance(event, FolderChanged):
                continue
            for key in _keys(event):
                targets[(event.dataset, key)] = None
        facts = self._stat_all(list(targets))
        changes: list[Change] = []
        now = now_iso()
        with self.catalogue.transaction(immediate=True):
            for event in events:
                if isinstance(event, FolderChanged):
                    changes.append(Change(event, "rescan"))
                    continue
                dataset, _ = self.resolve(event.dataset)
                if any(facts.get((event.dataset, key), _BAD) is _BAD for key in _keys(event)):
                    changes.append(Change(event, "ignored"))
                    continue
                if isinstance(event, ObjectMoved):
                    changes.extend(self._move(event, dataset, facts, now))
                else:
                    info = facts[(event.dataset, event.key)]
                    changes.append(self._reconcile(event, dataset, event.key, info, now))
            self._emit(changes, now)
        for change in changes:
            _log(change)
        return changes

    def reconcile(self, event: Event, info: ObjectInfo | None) -> Change:
        """Apply one event whose storage facts the caller already has (a downstream put)."""
        dataset, _ = self.resolve(event.dataset)
        with self.catalogue.transaction(immediate=True):
            now = now_iso()
            change = self._reconcile(event, dataset, event.key, info, now)
            self._emit([change], now)
        _log(change)
        return change

    def _emit(self, changes: list[Change], now: str) -> None:
        if self.subscriptions:
            emit_many(self.catalogue.conn, self.subscriptions, (
                (f"item.{c.action}", {"dataset": c.event.dataset, "id": c.item_id, "filename": c.filename,
                                      **({"old_filename": c.old_filename} if c.old_filename else {}),
                                      "source": c.event.source})
                for c in changes if c.changed), now=now)

    def _stat_all(self, targets: list[tuple[str, str]]) -> dict[tuple[str, str], object]:
        remote = [t for t in targets if self.resolve(t[0])[1].kind != "local"]
        facts = {t: self._stat(t) for t in targets if self.resolve(t[0])[1].kind == "local"}
        if len(remote) == 1:
            facts[remote[0]] = self._stat(remote[0])
        elif remote:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(STAT_THREADS, thread_name_prefix="syncd-stat")
            facts.update(zip(remote, self._pool.map(self._stat, remote), strict=True))
        return facts

    def _stat(self, target: tuple[str, str]) -> object:
        name, key = target
        driver = self.resolve(name)[1]
        if is_hidden(key):
            return _BAD  # syncd's own artifacts are never items
        if self.path_filter(name).excluded(key):
            return None
        try:
            return driver.stat(key)
        except NotFound:
            return None
        except InvalidKey as error:
            log.warning("%s: ignoring event for %r: %s", name, key, error, extra={"dataset": name})
            return _BAD
        except Exception as error:
            raise ApplyError(f"{name}: cannot stat {key!r} in {driver.describe()}: {error}") from error

    # -- one key --------------------------------------------------------------------------

    def _reconcile(self, event: Event, dataset: Dataset, key: str, info: ObjectInfo | None,
                   now: str) -> Change:
        conn = self.catalogue.conn
        filename = "/" + key
        row = self._row(dataset, filename)
        if info is None:
            if row is None:
                return Change(event, "unchanged", filename, None)
            if row["state"] != "present":
                # Already marked missing (by a rescan racing this event): a copy made just
                # before is still this item, moved.
                merged = self._merge_recent(dataset, row, now)
                if merged is not None:
                    return Change(event, "moved", merged, self._id(row), old_filename=filename)
                return Change(event, "unchanged", filename, self._id(row))
            self._cancel_pending(row["pk"], now)
            conn.execute("UPDATE items SET state = 'missing', updated_at = ? WHERE pk = ?",
                         (now, row["pk"]))
            merged = self._merge_recent(dataset, row, now)
            if merged is not None:
                return Change(event, "moved", merged, self._id(row), old_filename=filename)
            return Change(event, "deleted", filename, self._id(row))
        if row is not None:
            same_content = (row["size"], row["etag"], row["md5"]) == (info.size, info.etag, info.md5)
            if same_content and row["mtime"] == info.mtime and row["state"] == "present":
                return Change(event, "unchanged", filename, self._id(row))
            self._set_facts(row["pk"], filename, info, now)
            if not same_content:
                self._cancel_pending(row["pk"], now)
                self._add_job(row["pk"], now)
            elif row["state"] != "present":
                self._ensure_job(row["pk"], now)
            return Change(event, "updated", filename, self._id(row))
        content = self._content_key(info)
        ghost = self._ghost(dataset, content, info) if content else None
        if ghost is not None:
            self._set_facts(ghost["pk"], filename, info, now)
            self._ensure_job(ghost["pk"], now)
            return Change(event, "moved", filename, self._id(ghost), old_filename=ghost["filename"])
        cursor = conn.execute(
            """INSERT INTO items (dataset_id, filename, size, mtime, etag, md5, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (dataset.id, filename, info.size, info.mtime, info.etag, info.md5, now, now),
        )
        pk = cursor.lastrowid
        self._add_job(pk, now)
        if content:
            self._remember(dataset.id, content, pk)
        return Change(event, "created", filename, self.catalogue.item_id(pk))

    def _move(self, event: ObjectMoved, dataset: Dataset, facts, now: str) -> list[Change]:
        old_info = facts[(event.dataset, event.old_key)]
        info = facts[(event.dataset, event.key)]
        source = self._row(dataset, "/" + event.old_key)
        # The source saw the rename itself, so the item moves even if an earlier event of
        # this burst already marked it missing, or a write just before changed its content.
        if (info is not None and old_info is None and source is not None
                and self._row(dataset, "/" + event.key) is None):
            filename = "/" + event.key
            same_content = (source["size"], source["etag"], source["md5"]) == (info.size, info.etag, info.md5)
            self._set_facts(source["pk"], filename, info, now)
            if not same_content:
                self._cancel_pending(source["pk"], now)
                self._add_job(source["pk"], now)
            elif source["state"] != "present":
                self._ensure_job(source["pk"], now)
            return [Change(event, "moved", filename, self._id(source), old_filename=source["filename"])]
        return [
            self._reconcile(event, dataset, event.old_key, old_info, now),
            self._reconcile(event, dataset, event.key, info, now),
        ]

    # -- moves ----------------------------------------------------------------------------

    def _content_key(self, info: ObjectInfo) -> str | None:
        return self.catalogue.conn.execute(
            f"SELECT {CONTENT_KEY} FROM (SELECT ? AS md5, ? AS size, ? AS etag)",
            (info.md5, info.size, info.etag),
        ).fetchone()[0]

    def _ghost(self, dataset: Dataset, content: str, info: ObjectInfo):
        """The most recently missing item with this content (through items_missing_content)."""
        if content.startswith("md5:"):
            where, args = "md5 = ?", (info.md5,)
        else:
            where, args = "md5 IS NULL AND size = ? AND etag = ?", (info.size, info.etag)
        cursor = self.catalogue.conn.execute(
            f"""SELECT {ITEM_FIELDS} FROM items
                WHERE dataset_id = ? AND state = 'missing' AND {where} AND {CONTENT_KEY} = ?
                UNION ALL
                SELECT {ITEM_FIELDS} FROM items
                WHERE dataset_id = ? AND state = 'missing' AND md5 = '' AND size = ? AND etag = ?
                  AND {CONTENT_KEY} = ?
                ORDER BY pk DESC LIMIT 1""",
            (dataset.id, *args, content, dataset.id, info.size, info.etag, content),
        )
        cursor.row_factory = _row_factory
        return cursor.fetchone()

    def _remember(self, dataset_id: int, content: str, pk: int) -> None:
        now = self.clock()
        self._recent[(dataset_id, content)].append((pk, now))
        self._recent_order.append((now, (dataset_id, content)))
        self._forget(now)

    def _forget(self, now: float) -> None:
        while self._recent_order and (now - self._recent_order[0][0] > self.move_window
                                      or len(self._recent_order) > RECENT_LIMIT):
            _, slot = self._recent_order.popleft()
            entries = self._recent.get(slot)
            if entries:
                entries.popleft()
                if not entries:
                    del self._recent[slot]

    def _merge_recent(self, dataset: Dataset, row, now: str) -> str | None:
        """A copy of `row`'s content made just before it was deleted is `row`, moved: the
        item keeps its id at the new path and the copy's own item is dropped."""
        self._forget(self.clock())
        content = self.catalogue.conn.execute(
            f"SELECT {CONTENT_KEY} FROM items WHERE pk = ?", (row["pk"],)).fetchone()[0]
        entries = self._recent.get((dataset.id, content)) if content else None
        while entries:
            pk, _ = entries.pop()
            copy = self.catalogue.conn.execute(
                f"SELECT {ITEM_FIELDS}, {CONTENT_KEY} AS k FROM items WHERE pk = ?", (pk,)
            ).fetchone()
            if copy is None or copy[6] != "present" or copy[8] != content or pk == row["pk"]:
                continue
            conn = self.catalogue.conn
            self._cancel_pending(pk, now)
            enqueue_cleanup(conn, str(pk), now)  # the copy's own thumbnail, if it got one
            conn.execute("DELETE FROM items WHERE pk = ?", (pk,))
            conn.execute(
                """UPDATE items SET filename = ?, size = ?, mtime = ?, etag = ?, md5 = ?,
                          state = 'present', updated_at = ? WHERE pk = ?""",
                (copy[1], copy[2], copy[3], copy[4], copy[5], now, row["pk"]),
            )
            self._ensure_job(row["pk"], now)
            return copy[1]
        return None

    # -- rows and jobs --------------------------------------------------------------------

    def _row(self, dataset: Dataset, filename: str):
        cursor = self.catalogue.conn.execute(
            f"SELECT {ITEM_FIELDS} FROM items WHERE dataset_id = ? AND filename = ?",
            (dataset.id, filename),
        )
        cursor.row_factory = _row_factory
        return cursor.fetchone()

    def _id(self, row) -> str | None:
        return None if row is None else self.catalogue.item_id(row["pk"])

    def _set_facts(self, pk: int, filename: str, info: ObjectInfo, now: str) -> None:
        self.catalogue.conn.execute(
            """UPDATE items SET filename = ?, size = ?, mtime = ?, etag = ?, md5 = ?,
                      state = 'present', updated_at = ? WHERE pk = ?""",
            (filename, info.size, info.mtime, info.etag, info.md5, now, pk),
        )

    def _cancel_pending(self, pk: int, now: str) -> None:
        self.catalogue.conn.execute(
            """UPDATE jobs SET state = 'cancelled', updated_at = ?
               WHERE item_pk = ? AND state = 'pending' AND kind = 'preprocess'""",
            (now, pk),
        )

    def _add_job(self, pk: int, now: str) -> None:
        self.catalogue.conn.execute(
            "INSERT INTO jobs (item_pk, kind, state, created_at, updated_at)"
            " VALUES (?, 'preprocess', 'pending', ?, ?)",
            (pk, now, now),
        )

    def _ensure_job(self, pk: int, now: str) -> None:
        """For an item that came back: a cleanup of its artifacts not yet started is called
        off; then it gets a preprocessing job unless its latest job (cancelled ones aside) is
        already one, i.e. unless its preprocessing is queued, running or stands."""
        conn = self.catalogue.conn
        conn.execute(
            """UPDATE jobs SET state = 'cancelled', updated_at = ?
               WHERE item_pk = ? AND kind = 'cleanup' AND state = 'pending'""",
            (now, pk),
        )
        conn.execute(
            """INSERT INTO jobs (item_pk, kind, state, created_at, updated_at)
               SELECT ?, 'preprocess', 'pending', ?, ?
               WHERE coalesce((SELECT kind FROM jobs WHERE item_pk = ? AND state != 'cancelled'
                               ORDER BY id DESC LIMIT 1), '') != 'preprocess'""",
            (pk, now, now, pk),
        )


_BAD = object()  # a key that cannot be asked about (invalid): its event is ignored


def _keys(event: Event) -> tuple[str, ...]:
    if isinstance(event, ObjectMoved):
        return (event.old_key, event.key)
    return (event.key,)


def _row_factory(cursor, row):
    return dict(zip((d[0] for d in cursor.description), row, strict=True))


def _log(change: Change) -> None:
    if change.action in ("unchanged", "rescan"):
        return
    event = change.event
    extra = {"dataset": event.dataset, "event": type(event).__name__, "item": change.item_id}
    if change.action == "ignored":
        log.debug("%s: ignored %s for %s", event.dataset, type(event).__name__, event.key, extra=extra)
    elif change.action == "moved":
        log.info("%s: moved %s -> %s (item %s, from %s)", event.dataset, change.old_filename,
                 change.filename, change.item_id, event.source, extra=extra)
    else:
        log.info("%s: %s %s (item %s, from %s)", event.dataset, change.action, change.filename,
                 change.item_id, event.source, extra=extra)
