"""The daemon's rescans: which dataset or folder is listed again when, each in a thread.

A dataset is rescanned whole at start when it was never synced or is a watched local folder
(its events while the daemon was down are gone), then every `rescan_interval_seconds`; a
folder is rescanned when a source says something happened there that it could not report
object by object, or when events for it failed to apply too often. One rescan a dataset
runs at a time; what is asked for meanwhile is merged (their common folder) and runs next.
Keys that events touch while a rescan runs are checked again once it ends, so a stale
listing never has the last word.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from drivers import Driver

from ..app import App
from ..catalogue import Catalogue, Dataset, items
from ..errors import CatalogueBusyError
from ..sync.events import Delivery, ObjectUpdated
from ..sync.indexer import SyncResult, sync_dataset
from ..sync.rules import RULES, Change
from .metrics import Metrics
from .reaper import Reaper

log = logging.getLogger(__name__)

RESCAN_RETRY = 5.0  # seconds before a failed folder rescan is tried again
FAILED_FULL_RETRY = 60.0  # at most this many seconds before a failed full rescan runs again
TOUCHED_LIMIT = 50_000  # keys remembered during a rescan; past that, rescan again


class Stopping(Exception):
    """The daemon is stopping: a rescan in progress gives up (its transaction rolls back)."""


@dataclass
class Rescan:
    dataset: str
    prefix: str  # "" = the whole dataset
    thread: threading.Thread | None = None
    result: SyncResult | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Rescans:
    """Called from the daemon's loop thread only; the listings run in their own threads."""

    def __init__(self, app: App, resolve: Callable[[str], tuple[Dataset, Driver]],
                 metrics: Metrics, reaper: Reaper, recheck: Callable[[list[Delivery]], None],
                 stopping: threading.Event):
        self.app, self.config = app, app.config
        self.resolve, self.metrics, self.reaper = resolve, metrics, reaper
        self.recheck = recheck  # applies events that ask storage again about keys
        self.stopping = stopping
        self.next_full: dict[str, float] = {}  # dataset -> when its next full rescan is due
        self.running: dict[str, Rescan] = {}
        self._wanted: dict[str, set[str]] = {}  # dataset -> folder prefixes to rescan
        self._later: list[tuple[float, str, str]] = []  # failed folder rescans: (due, dataset, prefix)
        self._touched: dict[str, set[str] | None] = {}  # None: too many, rescan again

    def interval(self, name: str) -> float:
        own = self.config.dataset(name).rescan_interval_seconds
        return self.config.daemon.rescan_interval_seconds if own is None else own

    def schedule(self, names: list[str], watched: set[str], now: float) -> None:
        """At start: at once where needed, else when the interval since the last sync ends."""
        wall = time.time()
        for name in names:
            dataset, _ = self.resolve(name)
            interval = self.interval(name)
            if dataset.synced_at is None or name in watched:
                self.next_full[name] = now
            elif interval:
                age = wall - datetime.fromisoformat(dataset.synced_at.replace("Z", "+00:00")).timestamp()
                self.next_full[name] = now + max(0.0, interval - age)

    def want(self, name: str, prefix: str) -> None:
        """Ask for a rescan of one folder ('a/b/') of a dataset, or '' for all of it."""
        self._wanted.setdefault(name, set()).add(prefix)

    def touched(self, name: str, keys: list[str]) -> None:
        """Events changed these keys: if a rescan of the dataset runs, check them after it."""
        touched = self._touched.get(name)
        if touched is None:
            return
        touched.update(keys)
        if len(touched) > TOUCHED_LIMIT:
            self._touched[name] = None
            self.want(name, "")

    def start_due(self, now: float) -> None:
        for name, due in self.next_full.items():
            if due <= now:
                self.want(name, "")
        for entry in [e for e in self._later if e[0] <= now]:
            self._later.remove(entry)
            self.want(entry[1], entry[2])
        for name in list(self._wanted):
            if name in self.running or self.stopping.is_set():
                continue
            prefixes = self._wanted.pop(name)
            prefix = "" if "" in prefixes else common_prefix(prefixes)
            if prefix == "":
                self.next_full.pop(name, None)
            self._launch(name, prefix)

    def wait(self, seconds: float) -> None:
        """At a stop: give the rescans in flight (told to stop) a moment to roll back."""
        deadline = time.monotonic() + seconds
        for rescan in self.running.values():
            rescan.done.wait(max(0.1, deadline - time.monotonic()))

    def _launch(self, name: str, prefix: str) -> None:
        rescan = Rescan(name, prefix)
        self._touched[name] = set()
        dataset, driver = self.resolve(name)
        path = self.config.catalogue.location
        max_delete = self.config.sync.max_delete_percent
        path_filter = self.app.path_filter(name)

        def progress(_count: int) -> None:
            if self.stopping.is_set():
                raise Stopping("the daemon is stopping")

        def run() -> None:
            try:
                with Catalogue(path) as catalogue:
                    rescan.result = sync_dataset(catalogue, dataset, driver, prefix=prefix,
                                                 max_delete_percent=max_delete, progress=progress,
                                                 path_filter=path_filter,
                                                 arrival_user=self.app.arrival_user(name),
                                                 admission=self.app.admission(name))
            except BaseException as error:  # noqa: BLE001 - reported by the loop
                rescan.error = error
            finally:
                rescan.done.set()

        rescan.thread = threading.Thread(target=run, name=f"syncd-rescan-{name}", daemon=True)
        self.running[name] = rescan
        log.info("%s: rescanning %s", name, "/" + prefix, extra={"dataset": name})
        rescan.thread.start()

    def finish(self, now: float) -> None:
        """Record the rescans that ended, and schedule what follows each."""
        for name, rescan in list(self.running.items()):
            if not rescan.done.is_set():
                continue
            del self.running[name]
            touched = self._touched.pop(name, None)
            scope = "full" if rescan.prefix == "" else "folder"
            if rescan.error is not None:
                if not isinstance(rescan.error, Stopping):
                    self._failed(name, rescan, scope, now)
                continue
            self._succeeded(name, rescan.result, rescan.prefix, scope, now)
            if touched:
                # The listing may predate these events: ask storage again.
                wall = time.time()
                self.recheck([Delivery(tuple(
                    ObjectUpdated(dataset=name, key=key, source="recheck", received=wall)
                    for key in sorted(touched)))])

    def _failed(self, name: str, rescan: Rescan, scope: str, now: float) -> None:
        self.metrics.rescans.labels(name, scope, "failed").inc()
        log.warning("%s: rescan of /%s failed: %s", name, rescan.prefix, rescan.error,
                    extra={"dataset": name})
        if scope == "full" and self.interval(name):
            self.next_full[name] = now + min(FAILED_FULL_RETRY, self.interval(name))
        else:  # nothing else would ever ask for it again
            self._later.append((now + RESCAN_RETRY, name, rescan.prefix))

    def _succeeded(self, name: str, result: SyncResult, prefix: str, scope: str,
                   now: float) -> None:
        self.metrics.rescans.labels(name, scope, "ok").inc()
        level = logging.INFO if (result.created or result.updated or result.moved
                                 or result.deleted or result.errors) else logging.DEBUG
        log.log(level, "%s: rescanned /%s: listed %d, created %d, updated %d, moved %d, "
                "deleted %d, errors %d (%.2f s)", name, prefix, result.listed, result.created,
                result.updated, result.moved, result.deleted, result.errors, result.seconds,
                extra={"dataset": name})
        if result.deletes_skipped:
            log.warning("%s: %s", name, result.deletes_skipped, extra={"dataset": name})
        if result.deleted or result.moved:
            self.reaper.dirty = True
        if scope != "full":
            return
        self.metrics.last_rescan.labels(name).set(time.time())
        if self.interval(name):
            self.next_full[name] = now + self.interval(name)
        try:
            self._requeue_orphans(name)
        except CatalogueBusyError as error:  # the next full rescan does it
            log.warning("%s: orphaned items not requeued: %s", name, error,
                        extra={"dataset": name})

    def _requeue_orphans(self, name: str) -> None:
        """Present items whose preprocessing does not stand get it again (the revived rule):
        a missing item the rescan found again after its artifacts were cleaned up, or whose
        job was cancelled while it was missing."""
        dataset, _ = self.resolve(name)
        with self.app.catalogue.transaction(immediate=True):
            items.apply_rule_to_present(self.app.catalogue, RULES[Change.REVIVED], dataset)


def common_prefix(prefixes: set[str]) -> str:
    """The deepest folder prefix ('a/b/') holding all of `prefixes`; '' = everything."""
    parts = [p.strip("/").split("/") for p in prefixes]
    common: list[str] = []
    for segment in zip(*parts, strict=False):
        if len(set(segment)) != 1:
            break
        common.append(segment[0])
    return "/".join(common) + "/" if common else ""
