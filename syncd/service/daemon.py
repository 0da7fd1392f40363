"""`syncd daemon`: event sources, periodic rescans and the preprocessing workers, one loop.

Every source hands `Delivery` batches to one inbox; the loop applies them with the one
`Applier` (in this thread, with its own catalogue connection), then does what is due:

- rescans (syncd.service.rescans): of a whole dataset at start where needed and every
  `rescan_interval_seconds`, of one folder when a source could not report its changes
  object by object. They run in threads of their own, so a long listing never delays events.
- the reaper (syncd.service.reaper): missing items older than `move_window_seconds` (time
  for a matching create to turn the delete into a move) get a cleanup job for their
  `.dataloop/` artifacts, and are removed with `on_delete = "remove"`;
- the preprocessing workers (`syncd.jobs.runner.BackgroundRunner`) run beside the loop, in a pool
  of processes that stays up, and pick up the jobs the applier queues.

Signal handlers only set a flag; the loop notices it within `TICK` seconds and stops:
sources first (nothing new comes in), then what is already received is applied, the workers
finish or release their jobs, and the catalogue is closed. Acknowledged means applied: a
kill -9 at any moment loses nothing a queue or hook was told was done.
"""

from __future__ import annotations

import logging
import posixpath
import queue
import signal
import threading
import time
from collections.abc import Callable

from drivers import Driver

from ..sync.applier import Applied, Applier, ApplyError
from ..app import App
from ..errors import CatalogueBusyError
from ..catalogue import Dataset
from ..sync.events import Delivery, FolderChanged, ObjectMoved
from .metrics import Metrics
from .reaper import Reaper
from .rescans import Rescans, Stopping
from .webhooks import Deliverer
from .sources import Router, Source, build_sources, datasets_without_events

log = logging.getLogger(__name__)

TICK = 0.2  # seconds the loop waits for events before doing its scheduled work
MAX_BATCH = 1000  # events applied in one transaction
STALLED = 60.0  # seconds without a loop turn after which /healthz says 503
RETRY_DELAYS = (0.5, 2.0, 5.0)  # seconds before each retry of a delivery that failed to apply
WORKERS_STOP = 10.0  # seconds the workers get to finish their jobs in flight at a stop


class Daemon:
    def __init__(self, app: App, *, listen: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sources: list[Source] | None = None, workers=None):
        self.app = app
        self.config = app.config
        self.settings = app.config.daemon
        self.clock = clock
        self.listen = self.settings.listen if listen is None else listen
        self.inbox: queue.Queue[Delivery] = queue.Queue()
        self.metrics = Metrics(self.config.catalogue.location)
        self.sources = build_sources(self.config) if sources is None else sources
        self.workers = workers
        self._workers_started = False
        self.http = None
        self._stop = threading.Event()
        self._stopped = False
        self._resolved: dict[str, tuple[Dataset, Driver]] = {}
        self.applier = Applier(app.catalogue, self.resolve, clock=clock,
                               move_window=self.settings.move_window_seconds,
                               path_filter=app.path_filter, arrival_user=app.arrival_user,
                               admission=app.admission)
        self.webhooks = Deliverer(self.config.catalogue.location, self.config.webhooks,
                                  self.config.fetch)
        self.reaper = Reaper(app, self.resolve, self.metrics)
        self.rescans = Rescans(app, self.resolve, self.metrics, self.reaper, self._apply, self._stop)
        # Events that failed to apply, tried again later: (due, attempts so far, events).
        self.retry_delays = RETRY_DELAYS
        self._retries: list[tuple[float, int, tuple]] = []
        self.heartbeat = clock()

    # -- plumbing -------------------------------------------------------------------------

    def resolve(self, name: str) -> tuple[Dataset, Driver]:
        if name not in self._resolved:
            self._resolved[name] = (self.app.dataset(name), self.app.dataset_driver(name))
        return self._resolved[name]

    def submit(self, delivery: Delivery) -> None:
        """Sources call this from their own threads."""
        if self._stopped:
            delivery.finish(Stopping("the daemon is stopping"))
        else:
            self.inbox.put(delivery)

    def request_stop(self, *_args) -> None:
        """Safe from a signal handler: it only sets a flag."""
        self._stop.set()

    def install_signal_handlers(self) -> dict:
        """Flag-only handlers for SIGTERM and SIGINT; returns the previous ones."""
        return {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def health(self) -> tuple[bool, dict]:
        age = self.clock() - self.heartbeat
        ok = age < STALLED and not self._stop.is_set()
        return ok, {"status": "ok" if ok else ("stopping" if self._stop.is_set() else "stalled"),
                    "loop_age_seconds": round(age, 3), "pending_deliveries": self.inbox.qsize(),
                    "rescans_running": sorted(self.rescans.running)}

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        # "${VAR}" in hook_token is read now, not at config load: first, so a missing VAR
        # stops the daemon before it starts anything.
        token = self.config.hook_token() if self.listen else None
        names = [d.name for d in self.config.datasets]
        watched = {d.name for s in self.config.sources if s.kind == "watch"
                   for d in self.config.datasets if d.driver == s.driver}
        self.rescans.schedule(names, watched, self.clock())
        for name in datasets_without_events(self.config, hooks=bool(self.listen)):
            interval = self.rescans.interval(name)
            log.warning("dataset %r has no event source: its changes are seen only by rescans, "
                        "%s", name, f"every {interval:g} s (rescan_interval_seconds)" if interval
                        else "and rescan_interval_seconds = 0: never", extra={"dataset": name})
        if self.listen:
            self.http = self._web_server(token)
            self.http.start()
        for source in self.sources:
            source.start(self.submit)
        self.webhooks.start()
        if self.workers is not None:
            self.workers.start()
            self._workers_started = True
        log.info("daemon started: %d datasets, %d event sources%s", len(names), len(self.sources),
                 ", workers running" if self.workers is not None else "")

    def _web_server(self, token: str | None):
        """The service's ASGI app (hooks, /healthz, /metrics, API and page) on `listen`;
        `token` is the hook token (read from the environment at start)."""
        from .web.app import build_app
        from .web.hooks import Hooks
        from .web.server import WebServer

        web = self.config.web
        if not token:
            log.warning("[daemon] hook_token is not set: every /hooks/ request gets 401")
        hooks = Hooks(token=token, router=Router(self.config), submit=self.submit,
                      sns_confirm_hosts=self.settings.sns_confirm_hosts,
                      max_body=web.max_body_bytes, body_timeout=web.body_timeout_seconds)
        return WebServer(build_app(health=self.health, metrics=self.metrics, hooks=hooks,
                                   web=self.site()), self.listen, settings=web)

    def site(self):
        """The API and web page beside the hooks, when a token guards them (else None)."""
        from .web.site import Site, web_token

        if not web_token(self.config):
            log.warning("no [web] token nor [daemon] hook_token: the web page and API are not served")
            return None
        self._site = Site(self.config, run_jobs_after_sync=False)  # the daemon's workers run jobs
        return self._site

    def run(self) -> None:
        """Run until asked to stop (a signal, or request_stop)."""
        try:
            self.start()
            while not self._stop.is_set():
                self.run_once()
        finally:
            self.shutdown()

    def run_once(self, now: float | None = None, timeout: float = TICK) -> None:
        """One turn: apply what arrived within `timeout` seconds, then do what is due."""
        deliveries = self._take(timeout)
        if deliveries:
            self._apply(deliveries)
        now = self.clock() if now is None else now
        self._retry_failed(now)
        self.rescans.finish(now)
        self.rescans.start_due(now)
        self.reaper.run_if_due(now)
        self.heartbeat = self.clock()

    def shutdown(self) -> None:
        if self._stopped:
            return
        log.info("daemon stopping")
        started = time.monotonic()
        if self.http is not None:
            self.http.stop()
            if getattr(self, "_site", None) is not None:
                self._site.close()
        for source in self.sources:
            source.stop()
        for source in self.sources:
            source.join(timeout=1.0)
        self._stopped = True
        self._stop.set()
        # Apply what the sources already handed over (a watched folder's events cannot be
        # delivered again); anything later is refused and stays queued where it came from.
        while deliveries := self._take(0):
            self._apply(deliveries)
        if self._workers_started:
            self.workers.stop(WORKERS_STOP)  # finish and record the jobs in flight
        self.webhooks.stop()  # what it did not deliver stays in the outbox for the next start
        self.rescans.wait(max(0.1, 3.0 - (time.monotonic() - started)))
        while deliveries := self._take(0):  # raced the flag: refused, so never acknowledged
            for delivery in deliveries:
                delivery.finish(Stopping("the daemon is stopping"))
        self.applier.close()
        self.app.close()
        log.info("daemon stopped (%.1f s)", time.monotonic() - started)

    # -- events ---------------------------------------------------------------------------

    def _take(self, timeout: float) -> list[Delivery]:
        try:
            first = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return []
        deliveries, count = [first], len(first.events)
        while count < MAX_BATCH:
            try:
                delivery = self.inbox.get_nowait()
            except queue.Empty:
                break
            deliveries.append(delivery)
            count += len(delivery.events)
        return deliveries

    def _apply(self, deliveries: list[Delivery]) -> None:
        events = [event for delivery in deliveries for event in delivery.events]
        try:
            changes = self.applier.apply(events)
        except Exception as error:  # noqa: BLE001 - one bad delivery must not stop the rest
            if len(deliveries) > 1:
                for delivery in deliveries:
                    self._apply([delivery])
                return
            self.metrics.failed_batches.inc()
            log.warning("%d events not applied (retrying): %s", len(events), error,
                        exc_info=not isinstance(error, ApplyError | CatalogueBusyError))
            # Its source is told at once (a queue leaves the message for redelivery), and the
            # events are tried again here too: an inotify event has no one to send it again.
            deliveries[0].finish(error)
            self._schedule_retry(tuple(events), 0)
            return
        for delivery in deliveries:
            delivery.finish()
        self._account(changes)

    def _schedule_retry(self, events: tuple, attempts: int) -> None:
        if attempts < len(self.retry_delays):
            self._retries.append((self.clock() + self.retry_delays[attempts], attempts, events))
            return
        # Repeated failure: the catalogue will hear of these paths from a rescan instead.
        folders: dict[str, set[str]] = {}
        configured = {d.name for d in self.config.datasets}
        for event in events:
            if event.dataset not in configured:
                continue  # not a configured dataset: nothing to rescan
            key = event.key.strip("/")
            if not isinstance(event, FolderChanged):
                key = posixpath.dirname(key)
            folders.setdefault(event.dataset, set()).add(key + "/" if key else "")
            if isinstance(event, ObjectMoved):
                old = posixpath.dirname(event.old_key.strip("/"))
                folders[event.dataset].add(old + "/" if old else "")
        for name, prefixes in folders.items():
            for prefix in prefixes:
                self.rescans.want(name, prefix)
        log.warning("%d events still not applied after %d tries: rescanning %s", len(events),
                    attempts + 1, ", ".join(f"{name}:/{p}" for name, ps in sorted(folders.items())
                                             for p in sorted(ps)) or "nothing")

    def _retry_failed(self, now: float) -> None:
        due = [entry for entry in self._retries if entry[0] <= now]
        if not due:
            return
        self._retries = [entry for entry in self._retries if entry[0] > now]
        for _, attempts, events in due:
            try:
                changes = self.applier.apply(events)
            except Exception as error:  # noqa: BLE001 - tried again, then rescanned
                log.warning("%d events not applied (try %d): %s", len(events), attempts + 2, error)
                self._schedule_retry(events, attempts + 1)
                continue
            self._account(changes)

    def _account(self, changes: list[Applied]) -> None:
        wall = time.time()
        for change in changes:
            event = change.event
            if change.action == "rescan":
                folder = event.key.strip("/")
                self.rescans.want(event.dataset, folder + "/" if folder else "")
                continue
            self.metrics.events.labels(event.dataset, event.source, change.action).inc()
            if change.changed:
                self.metrics.lag.labels(event.source).observe(
                    max(0.0, wall - (event.occurred or event.received)))
            if change.action in ("deleted", "moved"):
                self.reaper.dirty = True
            self.rescans.touched(event.dataset, [event.key] + (
                [event.old_key] if hasattr(event, "old_key") else []))
