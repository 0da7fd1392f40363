"""Event sources: each turns one kind of change notification into `syncd.sync.events` objects,
handed to the daemon in `Delivery` batches through `submit`.

A source that must acknowledge its messages (a queue, a push hook) waits until the daemon
has applied a delivery, and acknowledges only then: a crash before that loses nothing, the
message comes back. Cloud sources import their SDK only when configured.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from drivers.base import is_hidden

from .formats import FormatError

from ...sync.events import (
    Delivery, Event, FolderChanged, ObjectCreated, ObjectDeleted, ObjectMoved, ObjectUpdated,
)
from .formats import Notice

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger(__name__)

Submit = Callable[[Delivery], None]
_OPEN_LOCK = threading.Lock()
APPLY_TIMEOUT = 120.0  # seconds a source waits for its delivery to be applied

_EVENTS = {"created": ObjectCreated, "updated": ObjectUpdated, "deleted": ObjectDeleted}
# Queue sources and the storage whose notifications they carry. The push hooks ([daemon]
# listen: SNS, Pub/Sub push, Event Grid) carry those of every cloud storage.
QUEUE_STORAGE = {"sqs": "s3", "pubsub": "gcs", "azure_queue": "azure"}


def datasets_without_events(config: Config, *, hooks: bool) -> list[str]:
    """The datasets no configured source can report changes of: no `watch` of their local
    folder, no queue of their cloud's notifications, and (for clouds) no push hooks."""
    watched = {s.driver for s in config.sources if s.kind == "watch"}
    queued = {QUEUE_STORAGE[s.kind] for s in config.sources if s.kind in QUEUE_STORAGE}
    drivers = {d.name: d for d in config.drivers}
    unheard = []
    for dataset in config.datasets:
        where = drivers[dataset.driver].location()
        if dataset.driver in watched or (where.remote and (hooks or where.storage in queued)):
            continue
        unheard.append(dataset.name)
    return unheard


class Router:
    """Matches notices (bucket + full key) to the datasets whose driver points there."""

    def __init__(self, config: Config):
        # (storage, bucket) -> [(dataset, folder prefix, account or None)]
        self.routes: dict[tuple[str, str], list[tuple[str, str, str | None]]] = {}
        drivers = {d.name: d for d in config.drivers}
        for dataset in config.datasets:
            where = drivers[dataset.driver].location()
            if not where.remote or not where.bucket:
                continue
            prefix = where.prefix + "/" if where.prefix else ""
            self.routes.setdefault((where.storage, where.bucket), []).append(
                (dataset.name, prefix, where.account))

    def events(self, notice: Notice, *, source: str, received: float | None = None) -> list[Event]:
        """The events `notice` means for each dataset it concerns (none for other buckets,
        keys outside a dataset's folder, or syncd's own `.dataloop/` artifacts)."""
        received = time.time() if received is None else received
        out: list[Event] = []
        for dataset, prefix, account in self.routes.get((notice.storage, notice.bucket), ()):
            if account and notice.account and account != notice.account:
                continue
            common = dict(dataset=dataset, source=source, received=received,
                          occurred=notice.occurred, etag=notice.etag, size=notice.size,
                          sequence=notice.sequence)
            key = _relative(notice.key, prefix)
            if notice.action == "folder":
                folder = notice.key.strip("/") + "/" if notice.key.strip("/") else ""
                if folder.startswith(prefix):
                    inner = folder[len(prefix):].rstrip("/")
                    if not is_hidden(inner):
                        out.append(FolderChanged(key=inner, **common))
                elif prefix.startswith(folder):  # a folder above the dataset's
                    out.append(FolderChanged(key="", **common))
                continue
            if notice.action == "moved":
                old = _relative(notice.old_key or "", prefix)
                if key and old:
                    out.append(ObjectMoved(key=key, old_key=old, **common))
                elif key:
                    out.append(ObjectCreated(key=key, **common))
                elif old:
                    out.append(ObjectDeleted(key=old, **common))
                continue
            if key:
                out.append(_EVENTS[notice.action](key=key, **common))
        return out

    def deliveries(self, notices: Iterable[Notice], *, source: str) -> tuple[Event, ...]:
        received = time.time()
        return tuple(e for n in notices for e in self.events(n, source=source, received=received))


def _relative(key: str, prefix: str) -> str | None:
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix):]
    if not rest or is_hidden(rest):
        return None
    return rest


class Source:
    """A running event source. `start` returns at once; `stop` asks it to end soon."""

    name: str = "source"

    def start(self, submit: Submit) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def join(self, timeout: float | None = None) -> None:
        """Wait up to `timeout` seconds for the source's threads to end."""


class PollingSource(Source):
    """A source with one thread that receives, hands over and acknowledges in a loop."""

    def __init__(self, name: str, *, threads: int = 1):
        self.name = name
        self.threads = threads  # receivers polling at once (each hands over its own batch)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._submit: Submit | None = None
        self._running = 0  # receivers inside _run

    def start(self, submit: Submit) -> None:
        self._submit = submit
        self._threads = [threading.Thread(target=self._run, name=f"syncd-{self.name}-{i}", daemon=True)
                         for i in range(self.threads)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        with _OPEN_LOCK:
            if self._running == 0:
                self.open()  # one client, shared by the receivers (the SDKs' are thread-safe)
            self._running += 1
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    self.poll()
                    failures = 0
                except Exception as error:  # noqa: BLE001 - a source retries, it never dies
                    failures += 1
                    pause = min(30.0, 0.5 * 2 ** min(failures, 6))
                    log.warning("%s: %s (retrying in %.1f s)", self.name, self.describe_error(error), pause)
                    self._stop.wait(pause)
        finally:
            with _OPEN_LOCK:
                self._running -= 1
                if self._running == 0:
                    self.close()

    def hand_over(self, events: tuple[Event, ...]) -> bool:
        """Give events to the daemon and wait until they are applied: True once they are
        (acknowledge the messages then), False if applying failed (leave them queued)."""
        if not events:
            return True
        delivery = Delivery(events)
        self._submit(delivery)
        if not delivery.wait(APPLY_TIMEOUT):
            if delivery.error is not None:
                log.warning("%s: %d events not applied, left for redelivery: %s",
                            self.name, len(events), delivery.error)
            return False
        return True

    def read_messages(self, messages, parse, *, kind: str, source: str,
                      handle: Callable = lambda message: message):
        """Turn received queue messages into events: (events, the handles to acknowledge
        once they are applied, the handles of messages that are not `kind`, acknowledged
        anyway so that they do not come back forever). `parse(message)` gives notices or
        raises FormatError."""
        events, useful, poison = [], [], []
        for message in messages:
            try:
                notices = parse(message)
                found = self.router.deliveries(notices, source=source)
            except FormatError as error:
                log.warning("%s: dropping a message that is not %s (%s)", self.name, kind, error)
                poison.append(handle(message))
                continue
            except Exception as error:  # noqa: BLE001 - one malformed message, not the batch
                log.warning("%s: dropping a malformed message (%s: %s)", self.name,
                            type(error).__name__, _one_line(str(error)))
                poison.append(handle(message))
                continue
            events.extend(found)
            useful.append(handle(message))
        return tuple(events), useful, poison

    def secrets(self) -> tuple[str | None, ...]:
        """The secret values of the source's config, kept out of its log lines."""
        return ()

    def describe_error(self, error: BaseException) -> str:
        """An SDK's error as one log line: the first line of its message (Azure's carry whole
        XML bodies), with URL credentials, signatures and the source's secrets redacted."""
        from drivers.cloud import one_line, redact

        return redact(one_line(f"{type(error).__name__}: {error}"), self.secrets())

    def open(self) -> None:
        """Connect (in the source's thread)."""

    def poll(self) -> None:
        """Receive once (blocking at most a few seconds), hand over, acknowledge."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def build_sources(config: Config, *, debounce: float | None = None) -> list[Source]:
    """The sources configured in `[[sources]]`."""
    sources: list[Source] = []
    for index, spec in enumerate(config.sources):
        if spec.kind == "watch":
            from .local import WatchSource

            options = config.driver(spec.driver)
            datasets = [d.name for d in config.datasets if d.driver == spec.driver]
            sources.append(WatchSource(
                f"watch[{index}]", options, datasets,
                debounce=config.daemon.debounce_seconds if debounce is None else debounce,
            ))
        elif spec.kind == "sqs":
            from .sqs import SqsQueueSource

            sources.append(SqsQueueSource(f"sqs[{index}]", spec, Router(config)))
        elif spec.kind == "pubsub":
            from .pubsub import PubSubPullSource

            sources.append(PubSubPullSource(f"pubsub[{index}]", spec, Router(config)))
        elif spec.kind == "azure_queue":
            from .azure_queue import AzureQueueSource

            sources.append(AzureQueueSource(f"azure_queue[{index}]", spec, Router(config)))
    return sources
