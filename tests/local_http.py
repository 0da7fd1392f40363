"""A local HTTP server for tests that fetch: 127.0.0.1 only, routes set by each test.

Use the `http_server` fixture (import it into the test module). Each route answers with a
list of responses in turn (the last one repeats), so a test can make a URL fail twice and
then succeed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True  # False: no Content-Length, the body ends when the connection does
    barrier: threading.Barrier | None = None  # answer only once this many requests wait together


class LocalServer:
    def __init__(self) -> None:
        self.routes: dict[str, list[Response]] = {}
        self.hits: list[str] = []  # paths asked for, in order
        self.hosts: list[str] = []  # the Host header of each request
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with server._lock:
                    server.hits.append(self.path)
                    server.hosts.append(self.headers.get("Host", ""))
                    queue = server.routes.get(self.path.split("?")[0])
                    response = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else Response(404)
                status = response.status
                if response.barrier is not None:
                    try:
                        response.barrier.wait(timeout=10)
                    except threading.BrokenBarrierError:
                        status = 504
                self.send_response(status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                if response.content_length:
                    self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, *responses: Response | bytes) -> str:
        """Answer GET `path` with `responses` in turn; returns the path's URL."""
        self.routes[path] = [r if isinstance(r, Response) else Response(body=r) for r in responses]
        return self.url(path)

    def redirect(self, path: str, to: str, status: int = 302) -> str:
        return self.route(path, Response(status, headers={"Location": to}))

    def start(self) -> LocalServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def http_server():
    server = LocalServer().start()
    yield server
    server.stop()
