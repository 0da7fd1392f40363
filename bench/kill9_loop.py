"""Kill -9 loop: every writer of syncd killed at random moments, then the catalogue checked.

Each round changes the storage a little (files added, deleted, renamed), starts one of
`syncd sync`, `syncd jobs run`, `syncd daemon` (inotify + workers), `syncd upload` or
`syncd import csv` against a local folder or an S3 bucket in moto, and SIGKILLs its whole
process group after a random 0.05-1.5 s. After every kill, no item may have two open jobs of
one kind. After the last round, one clean `syncd sync` and `syncd jobs run --wait` recover,
and then:

- catalogue == storage: the present items are exactly the files (local) or objects (S3),
  artifacts and syncd's temporary files aside; one item per file;
- no job is left open (pending or running), and none is duplicated. Present items whose
  latest preprocessing job did not finish are listed (`unfinished_preprocessing`), not
  counted as violations.

    python bench/kill9_loop.py                     # 40 rounds, local + S3 (moto started here)
    python bench/kill9_loop.py --rounds 200 --seed 7 --json
    python bench/kill9_loop.py --no-s3

Exit status 0 when every check holds, 1 otherwise (the violations are printed).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 2  # jobs held by a killed runner are taken over this soon
OPERATIONS = ("sync", "jobs", "daemon", "upload", "csv")


def jpeg(index: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (48, 32), ((index * 37) % 256, (index * 91) % 256, 120)).save(out, "JPEG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Moto:
    """moto's S3 server on a loopback port, stopped by its own pid."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit("moto_server did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Loop:
    def __init__(self, work: Path, *, s3_url: str | None, seed: int):
        self.work = work
        self.random = random.Random(seed)
        self.local = work / "storage"
        self.local.mkdir()
        self.catalogue = work / "catalogue.db"
        self.counter = 0
        self.s3 = None
        self.bucket = f"kill9-{seed}-{os.getpid()}"
        datasets = ["local"]
        s3_tables = ""
        if s3_url:
            import boto3

            self.s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
            self.s3.create_bucket(Bucket=self.bucket)
            datasets.append("cloud")
            s3_tables = f"""
[[drivers]]
name = "bucket"
kind = "s3"
bucket = "{self.bucket}"
endpoint_url = "{s3_url}"
region = "us-east-1"
access_key_id = "testing"
secret_access_key = "testing"
allow_delete = true

[[datasets]]
name = "cloud"
driver = "bucket"
"""
        self.datasets = datasets
        self.config = work / "syncd.toml"
        self.config.write_text(f"""
[catalogue]
path = "{self.catalogue}"

[[drivers]]
name = "disk"
kind = "local"
root = "{self.local}"
allow_delete = true

[[datasets]]
name = "local"
driver = "disk"
{s3_tables}
[preprocess]
workers = 1
lease_seconds = {LEASE_SECONDS}
retry_delay_seconds = 0

[daemon]
rescan_interval_seconds = 2
debounce_seconds = 0.05
move_window_seconds = 1

[[sources]]
kind = "watch"
driver = "disk"
""")
        for _ in range(20):
            self.add("local")
            if self.s3:
                self.add("cloud")
        self.stats = {"rounds": 0, "killed_mid_run": 0, "finished_before_kill": 0,
                      "by_operation": {op: 0 for op in OPERATIONS}}
        self.violations: list[str] = []
        self.failed_jobs: list[tuple] = []

    # -- storage changes ------------------------------------------------------------------

    def add(self, dataset: str) -> None:
        self.counter += 1
        key = f"f{self.counter % 7}/img{self.counter}.jpg"
        if dataset == "local":
            path = self.local / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg(self.counter))
        else:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=jpeg(self.counter))

    def files(self, dataset: str) -> set[str]:
        if dataset == "local":
            found = set()
            for root, dirs, names in os.walk(self.local):
                dirs[:] = [d for d in dirs if d != ".dataloop"]
                for name in names:
                    if not name.startswith(".syncd-"):
                        found.add("/" + os.path.relpath(os.path.join(root, name), self.local))
            return found
        keys = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys.update("/" + o["Key"] for o in page.get("Contents", [])
                        if not o["Key"].startswith(".dataloop/"))
        return keys

    def change(self) -> None:
        dataset = self.random.choice(self.datasets)
        for _ in range(self.random.randint(1, 3)):
            self.add(dataset)
        present = sorted(self.files(dataset))
        if len(present) > 5:
            victim = self.random.choice(present)[1:]
            if dataset == "local":
                if self.random.random() < 0.5:
                    (self.local / victim).unlink(missing_ok=True)
                else:
                    target = self.local / f"moved/{self.counter}-{Path(victim).name}"
                    target.parent.mkdir(exist_ok=True)
                    try:
                        os.rename(self.local / victim, target)
                    except FileNotFoundError:
                        pass
            else:
                self.s3.delete_object(Bucket=self.bucket, Key=victim)

    # -- operations -----------------------------------------------------------------------

    def command(self, operation: str) -> list[str]:
        dataset = self.random.choice(self.datasets)
        if operation == "sync":
            return ["sync"]
        if operation == "jobs":
            return ["jobs", "run", "--workers", "1"]
        if operation == "daemon":
            return ["daemon"]
        self.counter += 1
        if operation == "upload":
            folder = self.work / f"upload{self.counter}"
            for index in range(8):
                path = folder / f"sub{index % 2}" / f"u{self.counter}-{index}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(jpeg(self.counter * 10 + index))
            return ["upload", str(folder), "--dataset", dataset, "--folder", f"/up{self.counter}"]
        source = self.work / f"rows{self.counter}.csv"
        rows = ["name,image_bytes"] + [
            f"c{self.counter}-{i}.jpg,{base64.b64encode(jpeg(self.counter * 10 + i)).decode()}"
            for i in range(8)]
        source.write_text("\n".join(rows) + "\n")
        return ["import", "csv", str(source), "--dataset", dataset]

    def syncd(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "syncd", "--config", str(self.config), *args],
                              cwd=REPO, env=self.env(), capture_output=True, text=True,
                              timeout=timeout)

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO)}

    def round(self) -> None:
        self.change()
        operation = self.random.choice(OPERATIONS)
        args = self.command(operation)
        process = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(self.config), *args],
            cwd=REPO, env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # its own group: the kill reaches its workers too
        time.sleep(self.random.uniform(0.05, 1.5))
        if process.poll() is None:
            self.stats["killed_mid_run"] += 1
        else:
            self.stats["finished_before_kill"] += 1
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(30)
        self.stats["rounds"] += 1
        self.stats["by_operation"][operation] += 1
        self.check_no_duplicate_open_jobs(f"after round {self.stats['rounds']} ({operation})")

    # -- checks ---------------------------------------------------------------------------

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        if not self.catalogue.exists():
            return []
        with sqlite3.connect(self.catalogue, timeout=30) as conn:
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as error:
                if "no such table" in str(error):
                    return []
                raise

    def check_no_duplicate_open_jobs(self, when: str) -> None:
        for item_pk, kind, count in self.query(
                "SELECT item_pk, kind, count(*) FROM jobs WHERE state IN ('pending', 'running') "
                "GROUP BY item_pk, kind HAVING count(*) > 1"):
            self.violations.append(f"{when}: item {item_pk} has {count} open {kind} jobs")

    def recover_and_check(self) -> dict:
        for args in (["sync"], ["jobs", "run", "--workers", "1", "--wait"], ["sync"],
                     ["jobs", "run", "--workers", "1", "--wait"]):
            result = self.syncd(*args, timeout=600)
            if result.returncode not in (0, 5):  # 5: some jobs failed (they are reported below)
                self.violations.append(f"recovery `syncd {' '.join(args)}` exited "
                                       f"{result.returncode}: {result.stderr[-500:]}")
        checked = {}
        for dataset in self.datasets:
            files = self.files(dataset)
            rows = self.query(
                "SELECT i.filename, i.state FROM items i JOIN datasets d ON d.id = i.dataset_id "
                "WHERE d.name = ?", (dataset,))
            present = [f for f, state in rows if state == "present"]
            if len(present) != len(set(present)):
                self.violations.append(f"{dataset}: duplicate items")
            if set(present) != files:
                self.violations.append(
                    f"{dataset}: catalogue != storage: not catalogued {sorted(files - set(present))[:5]},"
                    f" catalogued but gone {sorted(set(present) - files)[:5]}")
            checked[dataset] = len(files)
        self.check_no_duplicate_open_jobs("after recovery")
        open_jobs = self.query("SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')")
        if open_jobs and open_jobs[0][0]:
            self.violations.append(f"after recovery: {open_jobs[0][0]} jobs still open")
        # Not a violation of the loop's contract, but reported: present items whose latest
        # preprocessing job did not finish (e.g. it ran while its file was being moved).
        self.failed_jobs = self.query(
            """SELECT i.filename, j.state, j.error FROM items i JOIN jobs j ON j.id = (
                   SELECT max(id) FROM jobs WHERE item_pk = i.pk AND kind = 'preprocess'
                   AND state != 'cancelled')
               WHERE i.state = 'present' AND j.state != 'done'""")
        return checked


def run(*, rounds: int, seed: int, s3_url: str | None, work: Path | None = None) -> dict:
    """Run the loop; returns the figures and the violations (empty when all checks hold)."""
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="syncd-kill9-")) if own else work
    started = time.monotonic()
    try:
        loop = Loop(work, s3_url=s3_url, seed=seed)
        for _ in range(rounds):
            loop.round()
        checked = loop.recover_and_check()
        return {**loop.stats, "kills_survived": loop.stats["rounds"], "items_checked": checked,
                "seconds": round(time.monotonic() - started, 1), "violations": loop.violations,
                "unfinished_preprocessing": [list(row) for row in loop.failed_jobs]}
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-s3", action="store_true", help="local folder only (no moto)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    moto = None if args.no_s3 else Moto()
    try:
        figures = run(rounds=args.rounds, seed=args.seed, s3_url=moto.url if moto else None)
    finally:
        if moto:
            moto.stop()
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{figures['kills_survived']} kills ({figures['killed_mid_run']} mid-run) in"
              f" {figures['seconds']} s; by operation {figures['by_operation']};"
              f" items checked {figures['items_checked']}")
        for filename, state, error in figures["unfinished_preprocessing"]:
            print(f"unfinished preprocessing: {filename}: {state}: {error}")
        for violation in figures["violations"]:
            print("VIOLATION:", violation)
    sys.exit(1 if figures["violations"] else 0)


if __name__ == "__main__":
    main()
