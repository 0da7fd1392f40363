"""`kill -9` in the middle of `syncd jobs run`, then `syncd jobs run --wait`: every item is
processed exactly once. On both catalogue engines (on PostgreSQL, claims are
FOR UPDATE SKIP LOCKED and the killed runner's jobs are taken over the same way)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

import images
from catalogue_reads import query, value
from conftest import put_file
from syncd.app import App

pytestmark = pytest.mark.both_backends

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 300
DEADLINE = 120.0  # seconds any one wait below may take before the test gives up


def syncd(config: Path, *args: str, **options) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "syncd", "--config", str(config), *args],
                            cwd=ROOT, env=env, **options)


def wait_for(condition, what: str):
    deadline = time.monotonic() + DEADLINE
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return value


def descendants(pid: int) -> set[int]:
    """Processes below `pid` (the worker pool and its fork server), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_9_when(process: subprocess.Popen, ready, what: str) -> set[int]:
    """SIGKILL `process` once `ready()`; the worker processes below it meanwhile."""
    pool: set[int] = set()
    try:
        wait_for(lambda: (pool.update(descendants(process.pid)), ready())[1], what)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return pool


def assert_orphans_exit(pool: set[int]) -> None:
    """A killed parent's pool notices its parent is gone and exits on its own."""
    try:
        wait_for(lambda: not any(alive(pid) for pid in pool), "the orphaned worker processes to exit")
    finally:
        for pid in pool:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_kill_9_mid_run_then_run_wait_processes_every_item_exactly_once(tmp_path, storage, config_file,
                                                                        catalogue_location):
    variants = [images.noisy_jpeg((1024, 768), seed=i) for i in range(8)]
    for i in range(ITEMS):
        put_file(storage, f"batch/{i:03}.jpg", variants[i % len(variants)])
    config = config_file
    config.write_text(config.read_text() + textwrap.dedent("""
        [preprocess]
        workers = 2
        lease_seconds = 600   # the takeover must not wait for a lease: the runner is known dead
        """))
    with App.from_file(config) as app:
        assert app.sync("photos").created == ITEMS
    db = catalogue_location

    def done() -> int:
        return value(db, "SELECT count(*) FROM jobs WHERE state = 'done'") or 0

    first = syncd(config, "jobs", "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pool = kill_9_when(first, lambda: done() >= ITEMS // 10, "the first run to get going")
    first.stderr.close()
    assert first.returncode == -signal.SIGKILL
    at_kill = dict(query(db, "SELECT state, count(*) FROM jobs GROUP BY state"))
    assert at_kill.get("running", 0) > 0 and at_kill.get("done", 0) < ITEMS, at_kill
    killed_owner = value(db, "SELECT DISTINCT claimed_by FROM jobs WHERE state = 'running'")

    second = syncd(config, "jobs", "run", "--wait", "--json", stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True)
    out, err = second.communicate(timeout=DEADLINE * 3)
    assert second.returncode == 0, err
    assert '"failed": 0' in out

    rows = query(db, "SELECT item_pk, kind, state, attempts, claimed_by FROM jobs")
    assert len(rows) == ITEMS and {(kind, state) for _, kind, state, _, _ in rows} == {("preprocess", "done")}
    assert len({pk for pk, *_ in rows}) == ITEMS  # one job per item, each done once
    attempts = [a for *_, a, _ in rows]
    assert set(attempts) <= {1, 2} and attempts.count(2) == at_kill["running"]
    assert killed_owner not in {owner for *_, a, owner in rows if a == 2}  # held jobs taken over
    with App.from_file(config) as app:
        found = list(app.catalogue.iter_items(app.dataset("photos")))
    assert len(found) == ITEMS
    for item in found:
        system = item["metadata"]["system"]
        assert system["etl"] == {**system["etl"], "status": "done", "errors": []}
        key = system["thumbnailId"]
        assert key == f".dataloop/thumbnails/{item['id']}.jpg"
        assert Image.open(io.BytesIO((storage / key).read_bytes())).size == (256, 192)
    thumbnails = list((storage / ".dataloop/thumbnails").iterdir())
    assert len(thumbnails) == ITEMS and not list(storage.glob(".dataloop/thumbnails/.syncd-*"))

    assert_orphans_exit(pool)


def test_kill_9_of_a_first_sync_then_sync_again_processes_every_item_once(tmp_path, storage, config_file,
                                                                          catalogue_location):
    """A first `syncd sync` forks its worker pool from its only thread while it lists (the
    warm pool); killed mid-preprocessing, its workers exit on their own, and the next sync
    finishes the jobs exactly once."""
    variants = [images.noisy_jpeg((1024, 768), seed=i) for i in range(8)]
    for i in range(ITEMS):
        put_file(storage, f"batch/{i:03}.jpg", variants[i % len(variants)])
    config_file.write_text(config_file.read_text() + "\n[preprocess]\nworkers = 2\nlease_seconds = 600\n")
    first = syncd(config_file, "sync", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = catalogue_location

    def done() -> int:  # 0 too while the schema is not written yet
        return value(db, "SELECT count(*) FROM jobs WHERE state = 'done'") or 0

    pool = kill_9_when(first, lambda: done() >= ITEMS // 10, "the first sync to get to preprocessing")
    assert pool and done() < ITEMS
    second = syncd(config_file, "sync", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = second.communicate(timeout=DEADLINE * 3)
    assert second.returncode == 0, err
    rows = query(db, "SELECT item_pk, state FROM jobs WHERE kind = 'preprocess'")
    assert len(rows) == ITEMS and {state for _, state in rows} == {"done"}
    assert len({pk for pk, _ in rows}) == ITEMS
    assert len(list((storage / ".dataloop/thumbnails").iterdir())) == ITEMS
    assert_orphans_exit(pool)
