"""Workers on many hosts sharing one PostgreSQL catalogue: 4 `syncd jobs run --wait`
processes on 5,000 jobs, two of them killed with SIGKILL midway. Each job is done exactly
once, each item has one thumbnail object, and the killed workers' jobs are taken over by the
others once their leases pass.

Each worker runs in its own UTS namespace with its own host name (`unshare --uts`, as root),
so no worker can tell that another died by looking up its process on "this host": as on
separate machines, only the lease frees a dead worker's jobs.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from conftest import local_config
from test_jobs_kill import assert_orphans_exit, descendants
from syncd.app import App

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 5000
WORKERS = 4
KILLED = 2
LEASE = 4.0  # seconds; renewed every third of it while a worker holds a job
DEADLINE = 600.0  # seconds the whole run may take before the test gives up


def tiny_jpegs(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        image = Image.new("RGB", (40, 30), ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        out.append(buffer.getvalue())
    return out


def can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode == 0


def worker(config: Path, host: str) -> subprocess.Popen:
    """`syncd jobs run --wait` as if on machine `host` (its own host name)."""
    command = [sys.executable, "-m", "syncd", "--config", str(config), "jobs", "run", "--wait",
               "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = f"hostname {host} && exec \"$@\""
    return subprocess.Popen(["unshare", "--uts", "sh", "-c", script, "sh", *command], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_four_workers_two_killed_every_job_done_once(tmp_path, storage, postgres_url):
    if not can_unshare():
        if os.environ.get("CI"):
            pytest.fail("this test needs root and unshare (util-linux) to give workers host names")
        pytest.skip("needs root and unshare --uts to give each worker its own host name")
    import psycopg

    variants = tiny_jpegs(50)
    folder = storage / "tiny"
    folder.mkdir()
    for i in range(ITEMS):
        (folder / f"{i:05}.jpg").write_bytes(variants[i % len(variants)])
    config = local_config(tmp_path, storage, catalogue=postgres_url, extra=textwrap.dedent(f"""
        [preprocess]
        workers = 1
        lease_seconds = {LEASE}
        """))
    with App.from_file(config) as app:
        assert app.sync("photos").created == ITEMS
    db = psycopg.connect(postgres_url, autocommit=True)

    def count(state: str) -> int:
        return db.execute("SELECT count(*) FROM jobs WHERE state = %s", (state,)).fetchone()[0]

    hosts = [f"worker{n}" for n in range(WORKERS)]
    processes = [worker(config, host) for host in hosts]
    pools: set[int] = set()
    try:
        deadline = time.monotonic() + DEADLINE
        while count("done") < ITEMS * 2 // 5:  # midway
            assert time.monotonic() < deadline, "the workers did not get going"
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            for process in processes[:KILLED]:
                pools |= descendants(process.pid)
            time.sleep(0.05)
        for process in processes[:KILLED]:
            os.kill(process.pid, signal.SIGKILL)
        for process in processes[:KILLED]:
            process.wait(timeout=60)
        # What the dead held, and until when: nobody may take it before its lease passes.
        held = {job: lease for job, lease in db.execute(
            "SELECT id, lease_until FROM jobs WHERE state = 'running' AND "
            "(claimed_by LIKE 'worker0:%%' OR claimed_by LIKE 'worker1:%%')").fetchall()}
        done_at_kill = count("done")
        results = []
        for process in processes[KILLED:]:
            out, err = process.communicate(timeout=DEADLINE)
            assert process.returncode == 0, err
            results.append(out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert all(p.returncode == -signal.SIGKILL for p in processes[:KILLED])
    assert done_at_kill < ITEMS and held, (done_at_kill, held)
    print(f"killed 2 of {WORKERS} workers at {done_at_kill} of {ITEMS} jobs done, holding "
          f"{len(held)} jobs")

    rows = db.execute("SELECT id, item_pk, kind, state, attempts, claimed_by, claimed_at "
                      "FROM jobs").fetchall()
    assert len(rows) == ITEMS
    assert {(kind, state) for _, _, kind, state, *_ in rows} == {("preprocess", "done")}
    assert len({pk for _, pk, *_ in rows}) == ITEMS  # one done job per item
    by_id = {row[0]: row for row in rows}
    for job, lease_until in held.items():
        _, _, _, _, attempts, owner, claimed_at = by_id[job]
        assert attempts == 2 and owner.split(":")[0] in hosts[KILLED:]
        taken_at = datetime.fromisoformat(claimed_at.replace("Z", "+00:00")).timestamp()
        assert taken_at >= lease_until  # taken over only once the dead worker's lease passed
    # Jobs the survivors finished themselves were claimed once.
    assert all(attempts == 1 for job, _, _, _, attempts, *_ in rows if job not in held)
    # The work was shared: every worker, the killed ones too, finished jobs.
    finishers = {owner.split(":")[0] for *_, owner, _ in rows}
    assert finishers == set(hosts), finishers

    thumbnails = sorted(p.name for p in (storage / ".dataloop/thumbnails").iterdir())
    with App.from_file(config) as app:
        found = list(app.catalogue.iter_items(app.dataset("photos")))
    assert len(found) == ITEMS
    assert thumbnails == sorted(f"{item['id']}.jpg" for item in found)  # one object per item
    assert all(item["metadata"]["system"]["thumbnailId"] == f".dataloop/thumbnails/{item['id']}.jpg"
               for item in found)
    assert_orphans_exit(pools)  # the killed workers' pools exit on their own
    db.close()
