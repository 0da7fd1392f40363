"""Custom preprocessing functions for the tests, imported by worker processes by name."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def measure(data: bytes, item: dict) -> dict:
    system = item["metadata"]["system"]
    return {"bytes": len(data), "seen_mimetype": system["mimetype"], "seen_width": system.get("width"),
            "name": item["name"]}


def faces(data: bytes, item: dict) -> dict:
    return {"count": 0, "model": "none"}


def broken(data: bytes, item: dict) -> dict:
    raise ValueError("no faces here")


def not_a_dict(data: bytes, item: dict):
    return ["a", "list"]


def kill_worker(data: bytes, item: dict) -> dict:
    """Kills its own process (as a segfault or the OOM killer would) for files named poison*;
    for crash-once* files, only the first time (the file's text names a marker to leave)."""
    if item["name"].startswith("poison"):
        os.kill(os.getpid(), signal.SIGKILL)
    if item["name"].startswith("crash-once"):
        marker = Path(data.decode().strip())
        if not marker.exists():
            marker.write_text("crashed once")
            os.kill(os.getpid(), signal.SIGKILL)
    return {"survived": True}


def ranged_head(source, item: dict) -> dict:
    """input = "source": a ranged read of 8 bytes at offset 4, not the whole file."""
    with source.open(4, 8) as stream:
        head = stream.read()
    return {"bytes_4_12": head.hex(), "has_open": callable(getattr(source, "open", None)),
            "is_bytes": isinstance(source, bytes)}


def count_lines(reader, outcome, options) -> None:
    """A media handler (preprocess.register): counts a CSV's lines through ranged reads."""
    lines = 0
    with reader.file() as file:
        while chunk := file.read(4096):
            lines += chunk.count(b"\n")
    outcome.system["lines"] = lines


def slow(data: bytes, item: dict) -> dict:
    """Takes a tenth of a second: keeps jobs in flight long enough to signal a run."""
    import time

    time.sleep(0.1)
    return {"slow": True}
