"""Push deliveries of bucket events, as ASGI routes of the service's one app.

    POST /hooks/sns         SNS HTTP(S) subscription carrying S3 event notifications
                            (answers SubscriptionConfirmation by fetching its SubscribeURL)
    POST /hooks/pubsub      Pub/Sub push subscription carrying GCS notifications
    POST /hooks/eventgrid   Event Grid webhook (Event Grid schema or CloudEvents), with the
    OPTIONS /hooks/eventgrid  validation handshakes of both

Every /hooks/ request must carry the configured hook token, as `?token=...` in the URL the
cloud is given or as `Authorization: Bearer ...`; without it the answer is 401 and nothing is
read or changed. A delivery is answered 200 only once its events are in the catalogue;
otherwise 503, and the sender delivers it again; 400 when it is not a format syncd knows.
Waiting for the commit costs no thread: a request awaits its delivery on the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import urllib.request
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ...sync.events import Delivery
from ..sources import APPLY_TIMEOUT, Router, Submit
from ..sources.formats import (
    VALIDATION_EVENT, FormatError, event_type, parse_event_grid_body, parse_event_grid_event,
    parse_pubsub_push, parse_s3_message,
)
from .http import BodyError, read_body

log = logging.getLogger(__name__)

SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")


def bearer(request: Request) -> str:
    authorization = request.headers.get("authorization", "")
    return authorization[len("Bearer "):] if authorization.startswith("Bearer ") else ""


def same_secret(given: str, expected: bytes | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected)


class Hooks:
    def __init__(self, *, token: str | None, router: Router, submit: Submit,
                 sns_confirm_hosts: tuple[str, ...] = (), apply_timeout: float = APPLY_TIMEOUT,
                 max_body: int = 1024 * 1024, body_timeout: float = 30.0):
        self.token = token.encode() if token else None
        self.router = router
        self.submit = submit
        self.sns_confirm_hosts = frozenset(sns_confirm_hosts)
        self.apply_timeout = apply_timeout
        self.max_body = max_body
        self.body_timeout = body_timeout

    def routes(self) -> list[Route]:
        return [Route("/hooks/{name}", self.endpoint, methods=["POST", "OPTIONS"])]

    def authorized(self, request: Request) -> bool:
        given = request.query_params.get("token") or bearer(request)
        return same_secret(given, self.token)

    async def endpoint(self, request: Request) -> Response:
        if not self.authorized(request):
            log.warning("http %s %s: missing or wrong token (401)", request.method, request.url.path)
            return PlainTextResponse("missing or wrong token\n", 401,
                                     headers={"WWW-Authenticate": "Bearer"})
        name = request.path_params["name"]
        if request.method == "OPTIONS":
            origin = request.headers.get("webhook-request-origin")
            if name == "eventgrid" and origin:
                # CloudEvents abuse protection, as Event Grid uses it for CloudEvents webhooks.
                return Response(headers={"WebHook-Allowed-Origin": origin,
                                         "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"})
            return Response(headers={"Allow": "POST, OPTIONS"})
        handler = {"sns": self._sns, "pubsub": self._pubsub, "eventgrid": self._eventgrid}.get(name)
        if handler is None:
            return PlainTextResponse(
                "no such hook (hooks: /hooks/sns, /hooks/pubsub, /hooks/eventgrid)\n", 404)
        try:
            body = await read_body(request, max_bytes=self.max_body, timeout=self.body_timeout,
                                   length_required=True)
            return await handler(request, body)
        except BodyError as error:
            return PlainTextResponse(f"{error}\n", error.status, headers={"Connection": "close"})
        except FormatError as error:
            log.warning("http %s: %s", request.url.path, error)
            return PlainTextResponse(f"{error}\n", 400)
        except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as error:
            # Wrong JSON types or nesting too deep: the body's fault, answered in one line.
            log.warning("http %s: malformed body (%s)", request.url.path, type(error).__name__)
            return PlainTextResponse("malformed body\n", 400)

    async def hand_over(self, notices, source: str) -> bool:
        """Submit the notices' events to the daemon and wait (without a thread) for them to
        be committed; False if they failed or took longer than `apply_timeout`."""
        events = self.router.deliveries(notices, source=source)
        if not events:
            return True
        delivery = Delivery(events)
        self.submit(delivery)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.apply_timeout
        delay = 0.002  # seconds; doubles up to 50 ms
        while not delivery.done:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return delivery.wait(0)

    async def _applied(self, notices, source: str) -> Response:
        if await self.hand_over(notices, source):
            return PlainTextResponse("ok\n")
        return PlainTextResponse("not applied; deliver again\n", 503)

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

    async def _sns(self, request: Request, body: bytes) -> Response:
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            raise FormatError("SNS body is not JSON") from None
        if not isinstance(message, dict):
            raise FormatError("SNS body must be a JSON object")
        kind = request.headers.get("x-amz-sns-message-type") or message.get("Type")
        if kind == "SubscriptionConfirmation":
            url = message.get("SubscribeURL")
            if not isinstance(url, str):
                raise FormatError("SubscriptionConfirmation without SubscribeURL")
            code, text = await run_in_threadpool(self.confirm_sns, url)
            return PlainTextResponse(text + "\n", code)
        if kind == "UnsubscribeConfirmation":
            log.info("SNS: unsubscribed from %s", message.get("TopicArn"))
            return PlainTextResponse("ok\n")
        if kind == "Notification":
            return await self._applied(parse_s3_message(message), "sns-push")
        raise FormatError(f"unknown SNS message type {kind!r}")

    async def _pubsub(self, request: Request, body: bytes) -> Response:
        return await self._applied(parse_pubsub_push(body), "pubsub-push")

    async def _eventgrid(self, request: Request, body: bytes) -> Response:
        events = parse_event_grid_body(body)
        for event in events:
            if event_type(event) == VALIDATION_EVENT:
                code = (event.get("data") or {}).get("validationCode")
                if not isinstance(code, str):
                    raise FormatError("validation event without validationCode")
                log.info("Event Grid: subscription validated")
                return JSONResponse({"validationResponse": code})
        notices = [n for event in events for n in parse_event_grid_event(event)]
        return await self._applied(notices, "eventgrid-push")
