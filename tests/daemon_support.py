"""Helpers for daemon tests: waiting for convergence, a daemon in a thread or a process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from conftest import local_config
from syncd.app import App
from syncd.catalogue import Catalogue
from syncd.errors import NotFoundError
from syncd.catalogue.jobs import JobQueue
from syncd.service.daemon import Daemon

ROOT = Path(__file__).resolve().parent.parent
CONVERGE = 15.0  # seconds a test waits for the catalogue to converge (a bound, not a sleep)


def wait_for(predicate, timeout: float = CONVERGE, interval: float = 0.02, what: str = ""):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"did not converge within {timeout} s{': ' + what if what else ''}; last: {last!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def items(catalogue_path, dataset="photos", *, present_only=False) -> dict[str, dict]:
    with Catalogue(catalogue_path) as catalogue:
        try:
            ds = catalogue.dataset(dataset)
        except Exception:  # noqa: BLE001 - not synced yet
            return {}
        return {i["filename"]: i for i in catalogue.iter_items(ds, include_missing=not present_only)}


def jobs(catalogue_path) -> list[tuple[int, str]]:
    with Catalogue(catalogue_path) as catalogue:
        return [(catalogue.item_pk(j["item"]), j["state"]) for j in JobQueue(catalogue).rows()]


def daemon_config(tmp_path: Path, storage: Path, *, extra: str = "", daemon: str = "",
                  watch: bool = True, catalogue=None) -> Path:
    body = f"""
        [daemon]
        {daemon}
        """
    if watch:
        body += """
        [[sources]]
        kind = "watch"
        driver = "disk"
        """
    return local_config(tmp_path, storage, name="daemon.toml", catalogue=catalogue,
                        extra=textwrap.dedent(body) + textwrap.dedent(extra))


class ThreadDaemon:
    """A Daemon driven by a thread of the test process (signal handlers not installed).
    workers=N runs the preprocessing workers too (0: in the test process itself)."""

    def __init__(self, config_file: Path, *, workers: int | None = None, **kwargs):
        self.app = App.from_file(config_file)
        if workers is not None:

            kwargs["workers"] = self.app.background_runner(workers=workers)
        self.daemon = Daemon(self.app, **kwargs)
        self._thread = threading.Thread(target=self._loop, name="test-daemon")
        self.error: BaseException | None = None

    def _loop(self) -> None:
        try:
            while not self.daemon._stop.is_set():
                self.daemon.run_once()
        except BaseException as error:  # noqa: BLE001
            self.error = error

    def __enter__(self) -> Daemon:
        self.daemon.start()
        self._thread.start()
        return self.daemon

    def __exit__(self, *exc) -> None:
        self.daemon.request_stop()
        self._thread.join(10)
        self.daemon.shutdown()
        if self.error is not None:
            raise self.error


class DaemonProcess:
    """`python -m syncd daemon` as a child process, logs as JSON lines to a file."""

    def __init__(self, config_file: Path, log_file: Path, *args: str):
        self.config_file = config_file
        self.log_file = log_file
        self.args = args
        self.process: subprocess.Popen | None = None

    def start(self) -> DaemonProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "syncd", "--config", str(self.config_file),
                 "--log-format", "json", "daemon", *self.args],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
            )
        wait_for(lambda: "daemon started" in self.log_text() or self.process.poll() is not None,
                 what="daemon start")
        assert self.process.poll() is None, self.log_text()
        return self

    def log_text(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def log_records(self) -> list[dict]:
        return [json.loads(line) for line in self.log_text().splitlines() if line.startswith("{")]

    def terminate(self, sig=signal.SIGTERM, timeout: float = 15) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()  # SIGKILL, by this process object's pid
        self.process.wait(10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def synced(catalogue_path, dataset="photos") -> bool:
    """True once the dataset has had a full sync (the daemon's startup sync, say)."""
    with Catalogue(catalogue_path) as catalogue:
        try:
            return bool(catalogue.dataset(dataset).synced_at)
        except NotFoundError:
            return False


def jpeg(index: int = 0, size=(64, 48)) -> bytes:
    """A small, real JPEG (distinct for each index)."""
    import io

    from PIL import Image

    image = Image.new("RGB", size, ((index * 37) % 256, (index * 91) % 256, 120))
    out = io.BytesIO()
    image.save(out, "JPEG")
    return out.getvalue()


def thumbnail_of(item: dict | None) -> str | None:
    return (item or {}).get("metadata", {}).get("system", {}).get("thumbnailId")
