"""A raw TCP server on 127.0.0.1 that answers HTTP by hand: for faults http.server cannot
make (a body cut short, bytes trickled one at a time). Bounded: every handler stops by
itself within `LIMIT` seconds, and all of them when the server is closed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

LIMIT = 30.0  # seconds a handler may run at most


class RawServer:
    def __init__(self, handler: Callable[[socket.socket, RawServer], None]):
        self.handler = handler
        self.closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str = "/file.bin") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(LIMIT)
            try:
                _read_request(conn)
                self.handler(conn, self)
            except OSError:
                pass

    def trickle(self, conn: socket.socket, data: bytes, every: float) -> None:
        """Send `data` a byte at a time, one every `every` seconds, until done, the client
        goes or the server closes (or LIMIT passes)."""
        end = time.monotonic() + LIMIT
        for byte in data:
            if self.closed.wait(every) or time.monotonic() > end:
                return
            conn.sendall(bytes([byte]))

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        self._thread.join(5)


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
