"""The HTTP server: uvicorn (h11) serving one ASGI app, in a thread of its own or in front.

Bounds that hold against slow or hostile clients:

- the listen backlog is `[web] backlog` (the kernel caps it at net.core.somaxconn), so a
  burst of connections waits in the queue instead of being reset;
- a connection that has not sent a whole request line and headers within
  `header_timeout_seconds` of connecting (or of starting its next request) is closed;
- a body not received within `body_timeout_seconds` gets 408 (see `read_body`);
- past `max_connections` open connections, new requests get 503 (senders retry);
- idle keep-alive connections close after 5 seconds.

The socket is bound before the server starts, so a taken port is a one-line error.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ...errors import SyncdError
from ..daemon_config import parse_listen

log = logging.getLogger(__name__)

KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open
GRACEFUL = 5.0  # seconds requests in flight get at a stop


def _protocol(header_timeout: float) -> type[H11Protocol]:
    class Protocol(H11Protocol):
        """uvicorn's h11 protocol, closing connections whose request headers are late."""

        _header_timer: asyncio.TimerHandle | None = None

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.access_log = False  # its lines carry query strings: tokens

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._waiting_for_headers():
                self._arm()
            else:
                self._disarm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _waiting_for_headers(self) -> bool:
            return self.conn.their_state is h11.IDLE and (
                self.cycle is None or self.cycle.response_complete)

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self._waiting_for_headers() and self.conn.our_state is h11.IDLE \
                    and not self.transport.is_closing():
                log.debug("http: closing a connection that sent no whole request in %.0f s",
                          header_timeout)
                self.transport.close()

    return Protocol


def bind(listen: str, *, backlog: int) -> socket.socket:
    """A listening socket on HOST:PORT, or a SyncdError naming the address."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise SyncdError(f"cannot listen on {listen}: {error.strerror or error}") from None
    sock.setblocking(False)
    return sock


class WebServer:
    """One ASGI app on one address; `start()` serves from a thread, `run()` in front."""

    def __init__(self, app, listen: str, *, settings):
        self.listen = listen
        self.socket = bind(listen, backlog=settings.backlog)
        self.config = uvicorn.Config(
            app, http=_protocol(settings.header_timeout_seconds), ws="none", lifespan="off",
            log_config=None, access_log=False, server_header=False,
            backlog=settings.backlog, limit_concurrency=settings.max_connections,
            timeout_keep_alive=KEEP_ALIVE, timeout_graceful_shutdown=GRACEFUL,
            h11_max_incomplete_event_size=64 * 1024,
        )
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.socket.getsockname()[:2]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM (uvicorn's own handlers; main thread only)."""
        log.info("listening on %s", self.url)
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                        name="syncd-http", daemon=True)
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            self._thread.join(0.01)
        if not self.server.started:
            raise SyncdError(f"cannot serve on {self.listen}: the HTTP server did not start")
        log.info("listening on %s", self.url)

    def stop(self) -> None:
        if self._thread is not None:
            self.server.should_exit = True
            self._thread.join(GRACEFUL + 2)
            self._thread = None
        self.socket.close()
