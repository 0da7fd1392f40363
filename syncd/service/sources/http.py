"""The daemon's HTTP endpoint: health, metrics, and push deliveries of bucket events.

    GET  /healthz           200 while the daemon's loop is alive, else 503
    GET  /metrics           Prometheus text format
    POST /hooks/sns         SNS HTTP(S) subscription carrying S3 event notifications
                            (answers SubscriptionConfirmation by fetching its SubscribeURL)
    POST /hooks/pubsub      Pub/Sub push subscription carrying GCS notifications
    POST /hooks/eventgrid   Event Grid webhook (Event Grid schema or CloudEvents), with the
    OPTIONS /hooks/eventgrid  validation handshakes of both

Every /hooks/ request must carry the configured token, as `?token=...` in the URL the cloud
is given or as `Authorization: Bearer ...`; without it the answer is 401 and nothing is read
or changed. A delivery is answered 200 only once its events are in the catalogue; otherwise
5xx, and the sender delivers it again. Tokens never reach the logs (request lines are logged
without their query string).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ...sync.events import Delivery
from . import APPLY_TIMEOUT, Router, Submit
from .formats import (
    VALIDATION_EVENT, FormatError, event_type, parse_event_grid_body, parse_event_grid_event,
    parse_pubsub_push, parse_s3_message,
)

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # bytes a push delivery may have
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
Health = Callable[[], tuple[bool, dict]]


class HookServer:
    def __init__(self, host: str, port: int, *, token: str | None, router: Router,
                 submit: Submit, metrics, health: Health,
                 sns_confirm_hosts: tuple[str, ...] = (), apply_timeout: float = APPLY_TIMEOUT):
        self.token = token.encode() if token else None
        self.router = router
        self.submit = submit
        self.metrics = metrics
        self.health = health
        self.sns_confirm_hosts = frozenset(sns_confirm_hosts)
        self.apply_timeout = apply_timeout
        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        self.server.hooks = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="syncd-http", daemon=True)
        self._thread.start()
        log.info("listening on http://%s:%d (/healthz, /metrics, /hooks/)", *self.address)

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(5)
        self.server.server_close()

    # -- deliveries -----------------------------------------------------------------------

    def authorized(self, query: str, authorization: str | None) -> bool:
        if self.token is None:
            return False
        given = parse_qs(query).get("token", [""])[0]
        if not given and authorization and authorization.startswith("Bearer "):
            given = authorization[len("Bearer "):]
        return hmac.compare_digest(given.encode(), self.token)

    def hand_over(self, notices, source: str) -> bool:
        events = self.router.deliveries(notices, source=source)
        if not events:
            return True
        delivery = Delivery(events)
        self.submit(delivery)
        return delivery.wait(self.apply_timeout)

    def confirm_sns(self, url: str) -> tuple[int, str]:
        parts = urlsplit(url)
        allowed = (parts.scheme == "https" and SNS_HOST.match(parts.hostname or "")) or (
            parts.netloc in self.sns_confirm_hosts or (parts.hostname or "") in self.sns_confirm_hosts)
        if not allowed:
            log.warning("SNS SubscribeURL host %r is not an SNS endpoint (nor in "
                        "[daemon] sns_confirm_hosts): not confirmed", parts.netloc)
            return 403, "SubscribeURL is not an SNS endpoint"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - checked above
                response.read()
        except OSError as error:
            log.warning("SNS subscription confirmation failed: %s", error)
            return 502, "confirmation failed"
        log.info("SNS subscription confirmed")
        return 200, "confirmed"


class _Handler(BaseHTTPRequestHandler):
    server_version = "syncd"
    protocol_version = "HTTP/1.1"

    @property
    def hooks(self) -> HookServer:
        return self.server.hooks  # type: ignore[attr-defined]

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        pass  # the default logs the request line, query string (token) included

    def log_request(self, code="-", size="-") -> None:
        log.debug("http %s %s -> %s", self.command, urlsplit(self.path).path, code)

    def _send(self, code: int, body: bytes | str = b"", content_type: str = "text/plain; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if code >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, code: int, data) -> None:
        self._send(code, json.dumps(data), "application/json")

    # -- GET ------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = urlsplit(self.path).path
        if path == "/healthz":
            ok, detail = self.hooks.health()
            self._json(200 if ok else 503, detail)
        elif path == "/metrics":
            from ..metrics import CONTENT_TYPE_LATEST

            self._send(200, self.hooks.metrics.exposition(), CONTENT_TYPE_LATEST)
        else:
            self._send(404, "not found\n")

    # -- hooks ----------------------------------------------------------------------------

    def _authorized(self) -> bool:
        parts = urlsplit(self.path)
        if not parts.path.startswith("/hooks/"):
            self._send(404, "not found\n")
            return False
        if not self.hooks.authorized(parts.query, self.headers.get("Authorization")):
            log.warning("http %s %s: missing or wrong token (401)", self.command, parts.path)
            self._send(401, "missing or wrong token\n", headers={"WWW-Authenticate": "Bearer"})
            return False
        return True

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._send(411, "Content-Length required\n")
            return None
        if int(length) > MAX_BODY:
            self._send(413, "body too large\n")
            return None
        return self.rfile.read(int(length))

    def do_OPTIONS(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        origin = self.headers.get("WebHook-Request-Origin")
        if urlsplit(self.path).path == "/hooks/eventgrid" and origin:
            # CloudEvents abuse protection, as Event Grid uses it for CloudEvents webhooks.
            self._send(200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*",
                                     "Allow": "POST, OPTIONS"})
        else:
            self._send(200, headers={"Allow": "POST, OPTIONS"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        body = self._body()
        if body is None:
            return
        path = urlsplit(self.path).path
        handler = {"/hooks/sns": self._sns, "/hooks/pubsub": self._pubsub,
                   "/hooks/eventgrid": self._eventgrid}.get(path)
        if handler is None:
            self._send(404, "no such hook (hooks: /hooks/sns, /hooks/pubsub, /hooks/eventgrid)\n")
            return
        try:
            handler(body)
        except FormatError as error:
            log.warning("http %s: %s", path, error)
            self._send(400, f"{error}\n")
        except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as error:
            # Wrong JSON types or nesting too deep: the body's fault, answered in one line.
            log.warning("http %s: malformed body (%s)", path, type(error).__name__)
            self._send(400, "malformed body\n")

    def _applied(self, notices, source: str) -> None:
        if self.hooks.hand_over(notices, source):
            self._send(200, "ok\n")
        else:
            self._send(503, "not applied; deliver again\n")

    def _sns(self, body: bytes) -> None:
        try:
            message = json.loads(body)
        except ValueError:
            raise FormatError("SNS body is not JSON") from None
        if not isinstance(message, dict):
            raise FormatError("SNS body must be a JSON object")
        kind = self.headers.get("x-amz-sns-message-type") or message.get("Type")
        if kind == "SubscriptionConfirmation":
            url = message.get("SubscribeURL")
            if not isinstance(url, str):
                raise FormatError("SubscriptionConfirmation without SubscribeURL")
            code, text = self.hooks.confirm_sns(url)
            self._send(code, text + "\n")
        elif kind == "UnsubscribeConfirmation":
            log.info("SNS: unsubscribed from %s", message.get("TopicArn"))
            self._send(200, "ok\n")
        elif kind == "Notification":
            self._applied(parse_s3_message(message), "sns-push")
        else:
            raise FormatError(f"unknown SNS message type {kind!r}")

    def _pubsub(self, body: bytes) -> None:
        self._applied(parse_pubsub_push(body), "pubsub-push")

    def _eventgrid(self, body: bytes) -> None:
        events = parse_event_grid_body(body)
        for event in events:
            if event_type(event) == VALIDATION_EVENT:
                code = (event.get("data") or {}).get("validationCode")
                if not isinstance(code, str):
                    raise FormatError("validation event without validationCode")
                log.info("Event Grid: subscription validated")
                self._json(200, {"validationResponse": code})
                return
        notices = [n for event in events for n in parse_event_grid_event(event)]
        self._applied(notices, "eventgrid-push")
