"""Helpers for the web tests: a served catalogue of real media on 127.0.0.1, and an HTTP
client that keeps cookies apart from the Bearer token."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from conftest import local_config, put_file
from images import camera_jpeg, noisy_jpeg, save, quadrants
from syncd.app import App
from syncd.service.metrics import Metrics
from syncd.service.web.app import build_app
from syncd.service.web.server import WebServer
from syncd.service.web.site import Site

TOKEN = "web-token-abcdef-123456"


def make_video(path: Path, seconds: int = 3) -> bool:
    """A small VP8 WebM (test pattern) made by ffmpeg; False where there is no ffmpeg."""
    if shutil.which("ffmpeg") is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=duration={seconds}:size=160x120:rate=10", "-c:v", "libvpx",
                    "-b:v", "200k", str(path)], check=True, timeout=120)
    return True


def fill_storage(storage: Path) -> dict[str, bytes]:
    files = {
        "cats/a.jpg": camera_jpeg((120, 90)),
        "cats/b.jpg": noisy_jpeg((200, 150), seed=1),
        "cats/deep/c.png": save(quadrants(64, 32), "PNG"),
        "dogs/d.jpg": noisy_jpeg((300, 200), seed=2),
        "notes.txt": b"just some text\n" * 20,
    }
    for key, data in files.items():
        put_file(storage, key, data)
    if make_video(storage / "clips" / "test.webm"):
        files["clips/test.webm"] = (storage / "clips" / "test.webm").read_bytes()
    return files


def web_config(tmp_path: Path, storage: Path, web: str = "", preprocess: str = "") -> Path:
    return local_config(tmp_path, storage, extra=f"""
        [preprocess]
        workers = 0
        {preprocess}

        [web]
        token = "{TOKEN}"
        {web}
        """)


@contextlib.contextmanager
def served_catalogue(tmp_path: Path, *, broken: bool = False, preview: bool = False):
    """fill_storage's files synced and preprocessed (`broken`: plus a truncated JPEG whose job
    fails; `preview`: videos get their MP4 preview), served; the Served has `files` and
    `storage`."""
    storage = tmp_path / "storage"
    storage.mkdir()
    files = fill_storage(storage)
    if broken:
        put_file(storage, "cats/broken.jpg", files["cats/b.jpg"][:300])
    config = web_config(tmp_path, storage, preprocess="video_preview = true" if preview else "")
    with App.from_file(config) as app:
        app.sync("photos")
        result = app.run_jobs(["photos"], workers=0)
        assert result.failed == (1 if broken else 0), result
    with Served(config) as server:
        server.files, server.storage = files, storage
        yield server


class Served:
    """A Site on a real uvicorn server in a thread of the test process."""

    def __init__(self, config_file: Path, *, read_only: bool | None = None):
        self.app = App.from_file(config_file)
        self.site = Site(self.app.config, read_only=read_only)
        asgi = build_app(health=lambda: (True, {"status": "ok"}),
                         metrics=Metrics(self.app.config.catalogue.path), web=self.site)
        self.server = WebServer(asgi, "127.0.0.1:0", settings=self.app.config.web)
        self.url = self.server.url

    def __enter__(self) -> Served:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        self.site.close()
        self.app.close()


@dataclass
class Answer:
    status: int
    headers: object
    body: bytes

    def json(self):
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Client:
    """urllib with a cookie jar; redirects are returned, not followed."""

    def __init__(self, base: str, *, token: str | None = None):
        self.base = base
        self.token = token
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies),
                                                  _NoRedirect())

    def __call__(self, path: str, *, method: str = "GET", body=None, headers=None) -> Answer:
        headers = dict(headers or {})
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        data = body
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=30) as response:
                return Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.headers, error.read())
