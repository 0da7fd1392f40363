"""Local folders: inotify through watchdog, debounced.

Raw filesystem events are coalesced per path: a path is handed over once it has been quiet
for `debounce` seconds, at once when a writer closes it, and at the latest `max_delay`
seconds after its first event. Folder events (a folder created, deleted or moved) become
`FolderChanged`, which the daemon answers with a rescan of that folder: with bursts, events
inside a just-created folder can be lost before its watch is in place.

watchdog is told which events to deliver, so reads (open / close-without-write) by the
preprocessing workers do not reach it at all.
"""

from __future__ import annotations

import logging
import os
import posixpath
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from drivers.base import is_hidden

from ...sync.events import (
    Delivery, Event, FolderChanged, ObjectCreated, ObjectDeleted, ObjectMoved, ObjectUpdated,
)
from . import Source, Submit

log = logging.getLogger(__name__)

MAX_DELAY = 1.0  # seconds: a path written to without pause is still handed over this often
TEMP_PREFIX = ".syncd-"  # the local driver writes beside the target, then renames into place
FOLDER_SETTLE = 1.0  # seconds a folder event waits (for a quiet folder) before its rescan
# watchdog warns when a folder created during a burst is watched twice; it copes with it.
warnings.filterwarnings("ignore", message="Callback with id .* already exists", category=RuntimeWarning)
WATCHED = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent,
           DirCreatedEvent, DirDeletedEvent, DirMovedEvent]


@dataclass
class _Pending:
    kind: str  # changed | deleted | moved | folder
    first: float  # monotonic seconds of the first raw event
    last: float
    received: float  # wall-clock seconds of the first raw event
    old_key: str | None = None
    ready: bool = False  # a writer closed the file: hand it over without waiting
    created: bool = False


class WatchSource(Source, FileSystemEventHandler):
    def __init__(self, name: str, options, datasets: list[str], *, debounce: float = 0.1):
        self.name = name
        self.base = os.path.realpath(
            os.path.join(options.root, options.path) if options.path else options.root)
        self.datasets = datasets
        self.debounce = debounce
        self._pending: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self._lock = threading.Condition()
        self._stopping = False
        self._observer: Observer | None = None
        self._thread: threading.Thread | None = None
        self._submit: Submit | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, submit: Submit) -> None:
        self._submit = submit
        os.makedirs(self.base, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(self, self.base, recursive=True, event_filter=WATCHED)
        self._observer.start()  # raises if inotify cannot watch (limits): no silent fallback
        self._thread = threading.Thread(target=self._flush_loop, name=f"syncd-{self.name}",
                                        daemon=True)
        self._thread.start()
        log.info("%s: watching %s", self.name, self.base)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
        with self._lock:
            self._stopping = True
            self._lock.notify_all()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._observer is not None:
            self._observer.join(timeout)
        if self._thread is not None:
            self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # -- raw events (watchdog's thread) ---------------------------------------------------

    def _key(self, path: str | bytes) -> str | None:
        path = os.fsdecode(path)
        relative = os.path.relpath(path, self.base)
        if relative == "." or relative.startswith(".." + os.sep) or relative == "..":
            return None
        key = relative.replace(os.sep, "/")
        if is_hidden(key) or posixpath.basename(key).startswith(TEMP_PREFIX):
            return None
        return key

    def dispatch(self, event: FileSystemEvent) -> None:
        src = self._key(event.src_path)
        dest = self._key(event.dest_path) if event.dest_path else None
        if event.is_directory:
            if isinstance(event, DirMovedEvent):
                self._note("folder", _common_folder(src, dest))
            elif src is not None and isinstance(event, (DirCreatedEvent, DirDeletedEvent)):
                self._note("folder", src)
            return
        if isinstance(event, FileMovedEvent):
            if src is not None and dest is not None:
                self._note("moved", dest, old_key=src)
            elif dest is not None:
                self._note("changed", dest, created=True)
            elif src is not None:
                self._note("deleted", src)
        elif src is None:
            return
        elif isinstance(event, FileDeletedEvent):
            self._note("deleted", src)
        elif isinstance(event, FileClosedEvent):
            self._note("changed", src, ready=True)
        else:
            self._note("changed", src, created=isinstance(event, FileCreatedEvent))

    def _note(self, kind: str, key: str | None, *, old_key: str | None = None,
              ready: bool = False, created: bool = False) -> None:
        if key is None:
            return
        now, wall = time.monotonic(), time.time()
        with self._lock:
            slot = ("folder" if kind == "folder" else "object", key)
            entry = self._pending.get(slot)
            if kind == "moved":
                moved_from = self._pending.pop(("object", old_key), None)
                if moved_from is not None and moved_from.kind == "moved":
                    old_key = moved_from.old_key  # a chain of renames is one move
                entry = None
            if entry is None:
                entry = _Pending(kind, now, now, wall, old_key=old_key, created=created)
                self._pending[slot] = entry
            else:
                entry.last = now
                if kind == "deleted":
                    entry.kind = "deleted" if entry.kind != "moved" else "moved"
                elif kind == "changed" and entry.kind == "deleted":
                    entry.kind = "changed"
                entry.created |= created
            entry.ready |= ready
            self._lock.notify_all()

    # -- handing over (the source's own thread) -------------------------------------------

    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                due, wait = self._due(time.monotonic())
                if not due:
                    self._lock.wait(wait)
                    continue
            self._hand_over(due)

    def _due(self, now: float) -> tuple[list[tuple[tuple[str, str], _Pending]], float | None]:
        due, wait = [], None
        for slot, entry in list(self._pending.items()):
            if entry.kind == "folder":
                # Late enough that the burst's own object events are applied first: the
                # rescan only picks up what they missed (and cannot split a move in two).
                deadline = entry.last + max(FOLDER_SETTLE, self.debounce)
            else:
                deadline = min(entry.last + self.debounce, entry.first + MAX_DELAY)
            if entry.ready or deadline <= now:
                due.append((slot, self._pending.pop(slot)))
            else:
                wait = deadline - now if wait is None else min(wait, deadline - now)
        return due, wait

    def _hand_over(self, due: list[tuple[tuple[str, str], _Pending]]) -> None:
        for dataset in self.datasets:
            events: list[Event] = []
            for (_, key), entry in due:
                common = dict(dataset=dataset, key=key, source="watch", received=entry.received,
                              occurred=entry.received)
                if entry.kind == "folder":
                    events.append(FolderChanged(**common))
                elif entry.kind == "moved":
                    events.append(ObjectMoved(old_key=entry.old_key, **common))
                elif entry.kind == "deleted":
                    events.append(ObjectDeleted(**common))
                elif entry.created:
                    events.append(ObjectCreated(**common))
                else:
                    events.append(ObjectUpdated(**common))
            self._submit(Delivery(tuple(events)))


def _common_folder(src: str | None, dest: str | None) -> str:
    """The folder to rescan for a folder move: the deepest one holding both ends ("" = all)."""
    if src is None or dest is None:
        return posixpath.dirname(src or dest or "")
    common = posixpath.commonpath([src, dest])
    return common if common not in (src, dest) else posixpath.dirname(common)
