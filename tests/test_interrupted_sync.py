"""A sync killed at any point loses nothing: the next sync completes it, exactly once.
On both catalogue engines (on PostgreSQL the sync lock is a session advisory lock that the
server frees when the killed process's connection drops)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalogue_reads import query
from conftest import catalogue_section

pytestmark = pytest.mark.both_backends
REPO = Path(__file__).resolve().parent.parent
FILES = 20_000


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for folder in range(FILES // 500):
        (root / f"d{folder:03d}").mkdir()
        for index in range(500):
            (root / f"d{folder:03d}" / f"{index}.jpg").write_bytes(b"%d" % index)
    return root


def start_sync(config: Path) -> subprocess.Popen:
    # --no-preprocess: these tests are about the catalogue; jobs are tested in test_jobs*.py
    return subprocess.Popen([sys.executable, "-m", "syncd", "--config", str(config), "sync",
                             "--no-preprocess"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def write_config(config: Path, db: str, tree: Path) -> None:
    config.write_text(f'{catalogue_section(db)}\n[[drivers]]\nname = "d"\nkind = "local"\n'
                      f'root = "{tree}"\n[[datasets]]\nname = "photos"\ndriver = "d"\n')


@pytest.mark.parametrize("moment, sig", [
    ("listing", signal.SIGKILL),
    ("writing", signal.SIGKILL),
    ("listing", signal.SIGTERM),
])
def test_killed_sync_is_completed_exactly_once_by_the_next(tmp_path, tree, moment, sig,
                                                            catalogue_location):
    db = catalogue_location
    config = tmp_path / "syncd.toml"
    write_config(config, db, tree)
    process = start_sync(config)
    if moment == "listing":
        wait_for(lambda: query(db, "SELECT 1 FROM sync_runs WHERE status = 'running'"))
    else:
        wait_for(lambda: (query(db, "SELECT count(*) FROM items") or [(0,)])[0][0] > 0
                 or process.poll() is not None)
    process.send_signal(sig)
    process.wait(timeout=30)
    if sig == signal.SIGTERM and process.returncode != 0:
        status = query(db, "SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1")
        assert status == [("interrupted",)]
        # Cut short while listing: exit 130 and one line, no traceback.
        stderr = process.stderr.read().decode()
        assert process.returncode == 130, stderr
        assert stderr.strip().splitlines() == ["syncd: error: interrupted"], stderr

    finished = subprocess.run([sys.executable, "-m", "syncd", "--config", str(config), "sync",
                               "--no-preprocess"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert query(db, "SELECT count(*), count(DISTINCT filename) FROM items") == [(FILES, FILES)]
    assert query(db, "SELECT count(*), count(DISTINCT item_pk) FROM jobs") == [(FILES, FILES)]
    assert query(db, "SELECT count(*) FROM items i LEFT JOIN jobs j ON j.item_pk = i.pk "
                     "WHERE j.id IS NULL") == [(0,)]
    statuses = [s for (s,) in query(db, "SELECT status FROM sync_runs ORDER BY id")]
    assert statuses[-1] == "ok" and "running" not in statuses


def test_concurrent_syncs_of_one_dataset_take_turns(tmp_path, tree, catalogue_location):
    db = catalogue_location
    config = tmp_path / "syncd.toml"
    write_config(config, db, tree)
    first, second = start_sync(config), start_sync(config)
    assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0
    assert query(db, "SELECT count(*) FROM items") == [(FILES,)]
    assert query(db, "SELECT count(*) FROM jobs") == [(FILES,)]
    assert [s for (s,) in query(db, "SELECT status FROM sync_runs")] == ["ok", "ok"]
