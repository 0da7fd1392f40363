"""Change events: what every event source (inotify, SQS, Pub/Sub, Azure queues, HTTP hooks)
produces, and the `Delivery` that carries a batch of them to the one applier.

Events are facts about a key as a source saw them; the applier never trusts them alone: it
stats the key in storage and reconciles the catalogue with what is really there, so that
duplicate, late and out-of-order deliveries are all safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something happened to `key` in `dataset`'s storage folder."""

    dataset: str
    key: str  # driver key: relative to the dataset's folder, no leading slash
    source: str  # "watch", "sqs", "pubsub", "azure-queue", "sns-push", "pubsub-push", ...
    received: float  # wall-clock seconds when syncd received it
    occurred: float | None = None  # wall-clock seconds when the storage says it happened
    etag: str | None = None
    size: int | None = None
    sequence: str | None = None  # the storage's ordering hint (S3 sequencer, GCS generation)


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectCreated(Event):
    """An object was written at a key that (as far as the source knows) had none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectUpdated(Event):
    """An object was overwritten, or its metadata changed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectDeleted(Event):
    """An object was deleted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectMoved(Event):
    """An object was renamed from `old_key` to `key` (local folders, Azure HNS renames)."""

    old_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FolderChanged(Event):
    """Something happened under the folder `key` ("" = everywhere) that the source could not
    report object by object (a folder created, moved or deleted; a lost event): rescan it."""


@dataclass(eq=False)
class Delivery:
    """A batch of events handed to the daemon. A source that must acknowledge its messages
    only once they are applied (SQS, Pub/Sub, Azure queues, HTTP hooks) waits on it."""

    events: tuple[Event, ...]
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    error: BaseException | None = None

    def finish(self, error: BaseException | None = None) -> None:
        self.error = error
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the events were applied; False if they failed or `timeout` passed."""
        return self._done.wait(timeout) and self.error is None

    @property
    def done(self) -> bool:
        return self._done.is_set()
