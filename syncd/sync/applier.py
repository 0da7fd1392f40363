"""The one applier: brings the catalogue in line with storage for the keys events name.

For every key an event names, the applier stats the object through the driver (outside any
transaction, several at a time for remote storage) and then, in one transaction for the
whole batch, reconciles the item with what storage really holds, through syncd.sync.rules:

- in storage, no item at the path: an item that went missing within `move_window` seconds
  with the same content moves here and keeps its id (moved); otherwise a new item (created);
- in storage, item differs: facts refreshed (content-changed, or revived when a missing
  item is back with its content);
- not in storage, item present: marked missing. If an object with the same content was
  created by an event shortly before (a copy then a delete, as an S3 "move" is), the old
  item moves to the new path instead and the copy's item is merged into it;
- anything else (duplicates, late or out-of-order deliveries): nothing is written.

Missing items wait `move_window` seconds for a matching create before the daemon's reaper
applies the gone rule (and removes them, with `on_delete = "remove"`). An item missing for
longer is never the source of a move: it can only come back at its own path.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from drivers import Driver, DriverError, NotFound, ObjectInfo
from drivers.base import is_hidden

from ..catalogue import Catalogue, Dataset, items
from .admission import Admission, forget_refusal, refused_arrival
from .filters import NO_FILTER, PathFilter
from .events import Event, FolderChanged, ObjectMoved
from .rules import RULES, Change, same_content

log = logging.getLogger(__name__)

STAT_THREADS = 8  # concurrent stats against remote storage
RECENT_LIMIT = 100_000  # recently created items remembered for copy-then-delete moves

Resolve = Callable[[str], tuple[Dataset, Driver]]  # dataset name -> its row and its driver


@dataclass(frozen=True)
class Applied:
    """What applying one event did to the catalogue."""

    event: Event
    action: str  # created | updated | moved | deleted | unchanged | ignored | rescan | refused
    filename: str | None = None
    item_id: str | None = None
    old_filename: str | None = None
    reason: str | None = None  # refused: why the new file got no item (syncd.sync.admission)

    @property
    def changed(self) -> bool:
        return self.action in ("created", "updated", "moved", "deleted")


class ApplyError(Exception):
    """Storage could not be asked about a key: the batch was not applied; retry it."""


class Applier:
    """Applies batches of events to one catalogue. Used from one thread at a time."""

    def __init__(self, catalogue: Catalogue, resolve: Resolve, *, move_window: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 path_filter: Callable[[str], PathFilter] = lambda _name: NO_FILTER,
                 arrival_user: Callable[[str], dict] = lambda _name: {},
                 admission: Callable[[str], Admission | None] = lambda _name: None):
        self.catalogue = catalogue
        # dataset name -> the user metadata a file that arrives gets (tags, batch)
        self.arrival_user = arrival_user
        # dataset name -> which new files an event names get an item (sampling, quotas), and
        # the refusals remembered in the catalogue (syncd.sync.admission). Events only: a
        # downstream write (`reconcile`) is syncd's own and was admitted by its writer.
        self.admission = admission
        self.resolve = resolve
        # dataset name -> its filter. An excluded key is as good as absent from storage: no
        # item is made for it, an item already there goes, and a rename from an excluded
        # name (rsync's .NAME.XXXXXX -> NAME) is a create of the new name.
        self.path_filter = path_filter
        self.move_window = move_window  # seconds
        self.clock = clock
        self.wall_clock = wall_clock  # when an item went missing, kept in the catalogue
        # (dataset id, content key) -> [(pk, created at)], for copy-then-delete moves
        self._recent: dict[tuple[int, str], deque[tuple[int, float]]] = defaultdict(deque)
        self._recent_order: deque[tuple[float, tuple[int, str]]] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- the batch ------------------------------------------------------------------------

    def apply(self, events: Sequence[Event], *, arrival: bool = True) -> list[Applied]:
        """Apply `events` in order. Raises ApplyError (nothing written) if storage failed.
        `arrival=False`: syncd was asked to catalogue these files (`syncd items admit`), so
        the dataset's admission does not decide (see __init__)."""
        targets: dict[tuple[str, str], None] = {}
        for event in events:
            if isinstance(event, FolderChanged):
                continue
            for key in _keys(event):
                targets[(event.dataset, key)] = None
        facts = self._stat_all(list(targets))
        changes: list[Applied] = []
        with self.catalogue.transaction(immediate=True):
            for event in events:
                if isinstance(event, FolderChanged):
                    changes.append(Applied(event, "rescan"))
                    continue
                dataset, _ = self.resolve(event.dataset)
                if any(facts.get((event.dataset, key), _BAD) is _BAD for key in _keys(event)):
                    changes.append(Applied(event, "ignored"))
                    continue
                if isinstance(event, ObjectMoved):
                    changes.extend(self._move(event, dataset, facts, arrival=arrival))
                else:
                    info = facts[(event.dataset, event.key)]
                    changes.append(self._reconcile(event, dataset, event.key, info, arrival=arrival))
        for change in changes:
            _log(change)
        return changes

    def reconcile(self, event: Event, info: ObjectInfo | None, *,
                  then: Callable[[Applied], None] | None = None) -> Applied:
        """Apply one event whose storage facts the caller already has (a downstream put);
        `then` writes more about the item in the same transaction (put --meta)."""
        dataset, _ = self.resolve(event.dataset)
        with self.catalogue.transaction(immediate=True):
            change = self._reconcile(event, dataset, event.key, info)
            if then is not None:
                then(change)
        _log(change)
        return change

    def _stat_all(self, targets: list[tuple[str, str]]) -> dict[tuple[str, str], object]:
        remote = [t for t in targets if self.resolve(t[0])[1].location.remote]
        facts = {t: self._stat(t) for t in targets if not self.resolve(t[0])[1].location.remote}
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
            return None  # as good as absent: see __init__
        try:
            return driver.stat(key)
        except NotFound:
            return None
        except DriverError as error:
            if error.retriable:
                raise ApplyError(f"{name}: cannot stat {key!r} in {driver.describe()}: {error}") from error
            # Asking again cannot help (an invalid key, permission or credentials refused):
            # the event is dropped, said once; storage and catalogue meet again at a rescan.
            log.warning("%s: ignoring event for %r: %s", name, key, error, extra={"dataset": name})
            return _BAD
        except Exception as error:
            raise ApplyError(f"{name}: cannot stat {key!r} in {driver.describe()}: {error}") from error

    # -- one key --------------------------------------------------------------------------

    def _reconcile(self, event: Event, dataset: Dataset, key: str, info: ObjectInfo | None, *,
                   arrival: bool = False) -> Applied:
        """`arrival`: the file arrived on its own (an event), so the dataset's admission
        decides whether a new path gets an item."""
        catalogue = self.catalogue
        filename = "/" + key
        row = items.find(catalogue, dataset, filename)
        if info is None:
            if row is None:
                forget_refusal(catalogue, dataset, filename)  # a refused path left storage
                return Applied(event, "unchanged", filename, None)
            if row["state"] != "present":
                # Already marked missing (by a rescan racing this event): a copy made just
                # before is still this item, moved.
                merged = self._merge_recent(dataset, row)
                if merged is not None:
                    return Applied(event, "moved", merged, self._id(row), old_filename=filename)
                return Applied(event, "unchanged", filename, self._id(row))
            items.mark_missing(catalogue, row["pk"], at=self.wall_clock())
            items.apply_rule(catalogue, RULES[Change.MISSING], [row["pk"]])
            merged = self._merge_recent(dataset, row)
            if merged is not None:
                return Applied(event, "moved", merged, self._id(row), old_filename=filename)
            return Applied(event, "deleted", filename, self._id(row))
        if row is not None:
            same_bytes = same_content(row, info)
            if same_bytes and row["mtime"] == info.mtime and row["state"] == "present":
                return Applied(event, "unchanged", filename, self._id(row))
            self._set_facts(row["pk"], filename, info)
            if not same_bytes:
                items.apply_rule(catalogue, RULES[Change.CONTENT_CHANGED], [row["pk"]])
            elif row["state"] != "present":
                items.apply_rule(catalogue, RULES[Change.REVIVED], [row["pk"]])
            return Applied(event, "updated", filename, self._id(row))
        content = items.content_key(catalogue, size=info.size, etag=info.etag, md5=info.md5)
        ghost = None
        if content:
            ghost = items.move_source(catalogue, dataset, filename, content=content,
                                      missing_after=self.wall_clock() - self.move_window)
        if ghost is not None:
            self._set_facts(ghost["pk"], filename, info)
            items.apply_rule(catalogue, RULES[Change.MOVED], [ghost["pk"]])
            return Applied(event, "moved", filename, self._id(ghost), old_filename=ghost["filename"])
        if arrival:
            reason = refused_arrival(catalogue, dataset, filename, info, self.admission(dataset.name))
            if reason is not None:
                return Applied(event, "refused", filename, None, reason=reason)
        else:
            forget_refusal(catalogue, dataset, filename)  # written by syncd: it gets an item
        pk = items.insert(catalogue, dataset, filename, size=info.size, mtime=info.mtime,
                          etag=info.etag, md5=info.md5, user=self.arrival_user(dataset.name) or None)
        items.apply_rule(catalogue, RULES[Change.CREATED], [pk])
        if content:
            self._remember(dataset.id, content, pk)
        return Applied(event, "created", filename, catalogue.item_id(pk))

    def _move(self, event: ObjectMoved, dataset: Dataset, facts, *, arrival: bool) -> list[Applied]:
        old_info = facts[(event.dataset, event.old_key)]
        info = facts[(event.dataset, event.key)]
        source = items.find(self.catalogue, dataset, "/" + event.old_key)
        # The source saw the rename itself, so the item moves even if an earlier event of
        # this burst already marked it missing, or a write just before changed its content.
        if (info is not None and old_info is None and source is not None
                and items.find(self.catalogue, dataset, "/" + event.key) is None):
            filename = "/" + event.key
            self._set_facts(source["pk"], filename, info)
            change = Change.MOVED if same_content(source, info) else Change.CONTENT_CHANGED
            items.apply_rule(self.catalogue, RULES[change], [source["pk"]])
            return [Applied(event, "moved", filename, self._id(source), old_filename=source["filename"])]
        return [
            self._reconcile(event, dataset, event.old_key, old_info, arrival=arrival),
            self._reconcile(event, dataset, event.key, info, arrival=arrival),
        ]

    # -- copy-then-delete moves -------------------------------------------------------------

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

    def _merge_recent(self, dataset: Dataset, row) -> str | None:
        """A copy of `row`'s content made just before it was deleted is `row`, moved: the
        item keeps its id at the new path and the copy's own item is merged into it."""
        self._forget(self.clock())
        catalogue = self.catalogue
        content = items.content_key(catalogue, size=row["size"], etag=row["etag"], md5=row["md5"])
        entries = self._recent.get((dataset.id, content)) if content else None
        while entries:
            pk, _ = entries.pop()
            copy = items.by_pk(catalogue, pk)
            if (copy is None or copy["state"] != "present" or pk == row["pk"]
                    or items.content_key(catalogue, size=copy["size"], etag=copy["etag"],
                                         md5=copy["md5"]) != content):
                continue
            items.apply_rule(catalogue, RULES[Change.MERGED], [pk])
            items.delete(catalogue, [pk])
            items.set_facts(catalogue, row["pk"], copy["filename"], size=copy["size"],
                            mtime=copy["mtime"], etag=copy["etag"], md5=copy["md5"])
            items.apply_rule(catalogue, RULES[Change.MOVED], [row["pk"]])
            return copy["filename"]
        return None

    # -- rows -----------------------------------------------------------------------------

    def _id(self, row) -> str | None:
        return None if row is None else self.catalogue.item_id(row["pk"])

    def _set_facts(self, pk: int, filename: str, info: ObjectInfo) -> None:
        items.set_facts(self.catalogue, pk, filename, size=info.size, mtime=info.mtime,
                        etag=info.etag, md5=info.md5)


_BAD = object()  # a key that cannot be asked about (invalid): its event is ignored


def _keys(event: Event) -> tuple[str, ...]:
    if isinstance(event, ObjectMoved):
        return (event.old_key, event.key)
    return (event.key,)


def _log(change: Applied) -> None:
    if change.action in ("unchanged", "rescan"):
        return
    event = change.event
    extra = {"dataset": event.dataset, "event": type(event).__name__, "item": change.item_id}
    if change.action == "refused":
        log.info("%s: refused %s: %s (from %s)", event.dataset, change.filename, change.reason,
                 event.source, extra=extra)
    elif change.action == "ignored":
        log.debug("%s: ignored %s for %s", event.dataset, type(event).__name__, event.key, extra=extra)
    elif change.action == "moved":
        log.info("%s: moved %s -> %s (item %s, from %s)", event.dataset, change.old_filename,
                 change.filename, change.item_id, event.source, extra=extra)
    else:
        log.info("%s: %s %s (item %s, from %s)", event.dataset, change.action, change.filename,
                 change.item_id, event.source, extra=extra)
