"""Outgoing webhooks: the outbox's events POSTed to each `[[webhooks]]` URL, signed, retried.

- A POST carries up to `batch_size` events, oldest first: `{"webhook": NAME, "events":
  [{"id": DELIVERY_ID, "type": "item.created", "created": ISO, "attempt": N, "data": {...}}]}`.
- It is signed as Stripe signs: header `Syncd-Signature: t=<unix seconds>,v1=<hex>` where the
  hex is HMAC-SHA256 with the webhook's `secret` over `"<t>." + body` (see `verify`).
- A 2xx answer delivers the batch. Anything else (an error status, a refused or dropped
  connection, no answer within `timeout_seconds`) is a failed try: the events wait
  `retry_seconds`, doubled each try up to MAX_BACKOFF, and after `max_attempts` tries they
  are dead letters. A destination the SSRF guard refuses (syncd.imports.fetch: loopback,
  private and link-local addresses unless in `[fetch] allow_hosts`) is dead at once.
- At least once: events are marked delivered only after the answer, so a daemon killed
  mid-POST sends them again (same ids) after `lease` seconds or at its restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from ..catalogue import Catalogue
from ..catalogue.outbox import Entry, Outbox
from ..imports.fetch import Fetcher, FetchError, FetchPolicy, FetchRefused

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Syncd-Signature"
MAX_BACKOFF = 3600.0  # seconds between tries at most
TOLERANCE = 300  # seconds a receiver should accept between the signature's time and its own


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None,
           tolerance: float = TOLERANCE) -> bool:
    """The receiver's check: the signature matches the body and is recent."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, value)
               for key, value in (p.split("=", 1) for p in header.split(",")) if key == "v1")


def body_of(webhook: str, entries: Sequence[Entry]) -> bytes:
    events = [{"id": e.delivery_id, "type": e.event, "created": e.created_at,
               "attempt": e.attempts + 1, "data": e.data} for e in entries]
    return json.dumps({"webhook": webhook, "events": events}, ensure_ascii=False,
                      separators=(",", ":")).encode()


class Deliverer:
    """Delivers every webhook's due events; `deliver_due` is one pass, `start` runs passes
    in a thread until `stop`. Owns its catalogue connection."""

    def __init__(self, catalogue_path: Path | str, webhooks: Sequence, fetch_config=None, *,
                 clock: Callable[[], float] = time.time, interval: float = 0.2):
        self.catalogue_path = catalogue_path
        self.webhooks = list(webhooks)
        policy = FetchPolicy.from_config(fetch_config) if fetch_config is not None else FetchPolicy()
        self.fetchers = {hook.name: Fetcher(FetchPolicy(
            allow_hosts=policy.allow_hosts, timeout_seconds=hook.timeout_seconds, attempts=1,
            max_bytes=policy.max_bytes)) for hook in self.webhooks}
        self.clock = clock
        self.interval = interval  # seconds between passes when nothing is due
        self.delivered = 0
        self.dead = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._catalogue: Catalogue | None = None
        self._outbox: Outbox | None = None

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._catalogue = Catalogue(self.catalogue_path)
            self._outbox = Outbox(self._catalogue)
        return self._outbox

    def deliver_due(self) -> int:
        """POST every webhook's due events, a batch at a time; returns the events delivered."""
        done = 0
        for hook in self.webhooks:
            while not self._stop.is_set():
                lease = hook.timeout_seconds * 2 + 5
                entries = self.outbox.claim(hook.name, self.clock(), limit=hook.batch_size,
                                            lease_seconds=lease)
                if not entries:
                    break
                if not self._post(hook, entries):
                    break  # this webhook waits; the others go on
                done += len(entries)
        self.delivered += done
        return done

    def _post(self, hook, entries: list[Entry]) -> bool:
        body = body_of(hook.name, entries)
        headers = {"Content-Type": "application/json", "User-Agent": f"syncd/{__version__}"}
        if hook.secret:
            headers[SIGNATURE_HEADER] = sign(hook.secret.get_secret_value(), int(self.clock()), body)
        ids = [e.id for e in entries]
        try:
            status, reason = self.fetchers[hook.name].post(hook.url, body, headers)
        except FetchRefused as error:
            dead = self.outbox.failed(ids, str(error), retry_at=0, max_attempts=0)
            self.dead += dead
            log.error("webhook %s: %s; %d events are dead letters", hook.name, error, dead)
            return False
        except FetchError as error:
            return self._retry(hook, entries, str(error))
        if 200 <= status < 300:
            self.outbox.delivered(ids)
            log.info("webhook %s: delivered %d events", hook.name, len(ids))
            return True
        return self._retry(hook, entries, f"HTTP {status} {reason}".strip())

    def _retry(self, hook, entries: list[Entry], error: str) -> bool:
        tries = min(e.attempts for e in entries) + 1
        wait = min(MAX_BACKOFF, hook.retry_seconds * 2 ** (tries - 1))
        dead = self.outbox.failed([e.id for e in entries], error, retry_at=self.clock() + wait,
                                  max_attempts=hook.max_attempts)
        self.dead += dead
        if dead:
            log.error("webhook %s: %s; %d events are dead letters after %d tries",
                      hook.name, error, dead, hook.max_attempts)
        else:
            log.warning("webhook %s: %s; %d events tried again in %.1f s", hook.name, error,
                        len(entries), wait)
        return False

    # -- the thread -----------------------------------------------------------------------

    def start(self) -> None:
        if not self.webhooks:
            return
        self._thread = threading.Thread(target=self._run, name="syncd-webhooks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:  # noqa: BLE001 - logged; the next pass tries again
                log.exception("webhooks: delivery pass failed")
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._catalogue is not None:
            self._catalogue.close()
            self._catalogue, self._outbox = None, None
