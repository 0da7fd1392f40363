"""Sync speed and memory against `find`, measured in the same run.

Builds a tree of N files, then times, each in a fresh `python -m syncd` process:
  1. the initial sync into an empty catalogue,
  2. a no-op re-sync,
  3. a re-sync after 1% of the files changed (a third modified, a third deleted, a third
     renamed),
beside `find ROOT -type f -printf '%s %T@ %p\\n'` on the same tree (the floor), and prints
each as items/s and as a ratio to the floor, with the process's peak RSS.

    python bench/sync_bench.py              # 200,000 files
    python bench/sync_bench.py --million    # 1,000,000 files
    python bench/sync_bench.py -n 50000 --keep /tmp/tree
    python bench/sync_bench.py --million --backends sqlite,postgresql   # side by side
    python bench/sync_bench.py --scaling --keep /tmp/trees   # 200k and 1M: time per item

Targets on a 2-core machine: initial sync within 3x the floor, no-op re-sync within 2x,
peak RSS under 150 MB and not growing between 200k and 1M items.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILES_PER_FOLDER = 200


def build_tree(root: Path, count: int) -> None:
    started = time.monotonic()
    payload = b"x" * 64
    for index in range(count):
        folder = root / f"d{index // FILES_PER_FOLDER:05d}"
        if index % FILES_PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / f"img_{index:07d}.jpg").write_bytes(payload)
    print(f"built {count:,} files in {time.monotonic() - started:.1f} s", file=sys.stderr)


def floor_seconds(root: Path, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(["find", str(root), "-type", "f", "-printf", r"%s %T@ %p\n"],
                       stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def plain_import_seconds(root: Path, db_path: Path) -> float:
    """The straightforward way: walk with os.scandir + stat, insert with sqlite-utils into a
    WAL table with a unique path index, a transaction per 5,000 rows (PEERS.md's floor for
    a catalogue write). No diff, no jobs, nothing but the rows."""
    import sqlite_utils

    def walk(folder: str):
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                yield from walk(entry.path)
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                yield {"path": entry.path, "size": st.st_size, "mtime": st.st_mtime}

    started = time.perf_counter()
    db = sqlite_utils.Database(db_path)
    db.execute("PRAGMA journal_mode = WAL")
    table = db.table("files")
    table.create({"path": str, "size": int, "mtime": float})
    table.create_index(["path"], unique=True)
    batch: list[dict] = []
    for row in walk(str(root)):
        batch.append(row)
        if len(batch) == 5000:
            with db.conn:
                table.insert_all(batch, batch_size=5000)
            batch = []
    with db.conn:
        table.insert_all(batch, batch_size=5000)
    db.close()
    return time.perf_counter() - started


def run_sync(config: Path, *extra: str) -> tuple[dict, float, float]:
    """One `syncd sync` in a fresh process: (its JSON line, wall seconds, peak RSS in MB)."""
    command = [sys.executable, "-m", "syncd", "--config", str(config), "sync", "--json",
               "--no-preprocess", *extra]  # the sync alone: preprocess_bench.py times the jobs
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"sync failed with status {status}: {output!r}")
    result = json.loads(output.splitlines()[0])
    return result, wall, usage.ru_maxrss / 1024


def churn(root: Path) -> dict[str, int]:
    """Change 1% of the files: a third modified, a third deleted, a third renamed.

    Folder by folder, so this process stays small: on Linux a child's peak RSS
    (ru_maxrss) starts from its parent's at fork, which would inflate syncd's figure."""
    expected = {"updated": 0, "deleted": 0, "moved": 0}
    seen = 0
    for folder in sorted(root.glob("d*")):
        for path in sorted(folder.glob("img_*.jpg")):
            seen += 1
            if seen % 100:
                continue
            action = ("updated", "deleted", "moved")[sum(expected.values()) % 3]
            if action == "updated":
                with path.open("ab") as file:
                    file.write(b"more")
            elif action == "deleted":
                path.unlink()
            else:
                path.rename(path.with_name("renamed_" + path.name))
            expected[action] += 1
    return expected


def catalogue_section(backend: str, work: Path, postgres: str | None) -> str:
    if backend == "postgresql":
        return f'[catalogue]\nurl = "{postgres}"\n'
    return f'[catalogue]\npath = "{work / "catalogue.db"}"\n'


def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the server at `server_url`; its URL."""
    import psycopg

    name = f"syncd_bench_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


class TemporaryPostgres:
    """A throwaway PostgreSQL server on 127.0.0.1 (as tests/postgres.py starts one)."""

    def __enter__(self) -> str:
        import glob
        import pwd
        import socket

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise SystemExit("PostgreSQL is not installed: apt-get install postgresql, or pass --postgres URL")
        self.bin = Path(found[-1]).parent
        self.work = Path(tempfile.mkdtemp(prefix="syncd-bench-pg-"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.work, user.pw_uid, user.pw_gid)
            self.prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                           "--clear-groups", "--"]
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        data = self.work / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "syncd", "--auth=trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.work / "log"), "-w",
                  "-o", f"-p {port} -k {self.work} -c listen_addresses=127.0.0.1", "start")
        self.data = data
        return f"postgresql://syncd@127.0.0.1:{port}/postgres"

    def _run(self, *command: str) -> None:
        subprocess.run([*self.prefix, *command], check=True, capture_output=True, cwd=self.work)

    def __exit__(self, *exc) -> None:
        subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                        "-w", "stop"], capture_output=True, cwd=self.work)
        shutil.rmtree(self.work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--files", type=int, default=200_000)
    parser.add_argument("--million", action="store_true", help="1,000,000 files")
    parser.add_argument("--keep", type=Path, help="build the tree here and keep it")
    parser.add_argument("--scaling", action="store_true",
                        help="200,000 then 1,000,000 files in one run, and the time per item "
                             "of each phase at 1M against 200k (target: within 1.2x); with "
                             "--keep DIR, the trees are DIR/200000 and DIR/1000000")
    parser.add_argument("--backends", default="sqlite",
                        help="comma-separated: sqlite, postgresql (side by side, same tree)")
    parser.add_argument("--postgres", metavar="URL",
                        help="a PostgreSQL server (postgresql://user@host/db) to create a fresh "
                             "database on; default: start a throwaway local server")
    args = parser.parse_args()
    counts = [200_000, 1_000_000] if args.scaling else [1_000_000 if args.million else args.files]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    with contextlib.ExitStack() as stack:
        server = None
        if "postgresql" in backends:
            server = args.postgres or stack.enter_context(TemporaryPostgres())
        per_item = {}
        for count in counts:
            keep = args.keep / str(count) if args.scaling and args.keep else args.keep
            per_item[count] = run_backends(count, backends, server, keep)
    if args.scaling:
        small, large = counts
        print(f"\ntime per item at {large:,} against {small:,} files (target: within 1.2x)\n")
        print(f"{'catalogue':<12}{'phase':<20}{'µs/item small':>15}{'µs/item large':>15}{'ratio':>8}")
        for key, micros in per_item[small].items():
            if key in per_item[large]:
                print(f"{key[0]:<12}{key[1]:<20}{micros:>15.2f}{per_item[large][key]:>15.2f}"
                      f"{per_item[large][key] / micros:>8.2f}")


def run_backends(count: int, backends: list[str], server: str | None, keep: Path | None) -> dict:
    """Run and print the benchmark on a tree of `count` files (built in `keep`, and kept, if
    given); returns the microseconds per listed item of each (backend, phase)."""
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-"))
    root = keep or work / "tree"
    try:
        if not (root / "d00000").exists():
            build_tree(root, count)
        else:  # a kept tree, churned by earlier runs
            count = int(subprocess.run(f"find '{root}' -type f | wc -l", shell=True,
                                       capture_output=True, text=True, check=True).stdout)
        configs = {}
        for backend in backends:
            config = work / f"syncd-{backend}.toml"
            postgres = fresh_postgres_database(server) if backend == "postgresql" else None
            config.write_text(
                catalogue_section(backend, work, postgres) + "\n"
                f'[[drivers]]\nname = "bench"\nkind = "local"\nroot = "{root}"\n\n'
                f'[[datasets]]\nname = "bench"\ndriver = "bench"\n'
            )
            configs[backend] = config
        no_jobs = ["--no-preprocess"] if _has_flag("--no-preprocess") else []
        floor = floor_seconds(root)
        rows = []
        for backend, config in configs.items():
            result, wall, rss = run_sync(config, *no_jobs)
            assert result["created"] == count, result
            rows.append((backend, "initial sync", result, wall, rss, floor, 3.0))
            result, wall, rss = run_sync(config, *no_jobs)
            assert result["unchanged"] == count, result
            rows.append((backend, "no-op re-sync", result, wall, rss, floor, 2.0))
        expected = churn(root)
        floor_after = floor_seconds(root)
        for backend, config in configs.items():
            result, wall, rss = run_sync(config, *no_jobs)
            for key, value in expected.items():
                assert result[key] == value, (key, result, expected)
            rows.append((backend, "1% changed re-sync", result, wall, rss, floor_after, None))

        print(f"\nsync benchmark: {count:,} files, {os.cpu_count()} cores; "
              f"floor = find -printf, median of 3: {floor:.3f} s\n")
        print(f"{'catalogue':<12}{'phase':<20}{'sync s':>9}{'items/s':>12}{'x floor':>9}"
              f"{'target':>8}{'wall s':>8}{'peak RSS MB':>13}")
        for backend, name, result, wall, rss, floor_s, target in sorted(
                rows, key=lambda row: (["initial sync", "no-op re-sync", "1% changed re-sync"].index(row[1]),
                                       backends.index(row[0]))):
            seconds = result["seconds"]
            print(f"{backend:<12}{name:<20}{seconds:>9.3f}{result['listed'] / seconds:>12,.0f}"
                  f"{seconds / floor_s:>9.2f}{(f'{target:.1f}x' if target else '-'):>8}"
                  f"{wall:>8.2f}{rss:>13.1f}")
        per_item = {(backend, name): 1e6 * result["seconds"] / result["listed"]
                    for backend, name, result, *_ in rows}
        plain = plain_import_seconds(root, work / "plain.db")  # last: it grows this process
        print(f"\nplain import (os.scandir walk + sqlite-utils insert, 5,000-row transactions):"
              f" {plain:.3f} s = {plain / floor:.2f}x the floor")
        print("'sync s' is the time syncd reports for the sync itself; 'wall s' adds Python"
              " start-up and imports. PostgreSQL: peak RSS is syncd's process only (the"
              " server's memory is its own).")
        return per_item
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work / "catalogue.db", ignore_errors=True)
            for leftover in work.glob("*"):
                if leftover != root:
                    shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()


def _has_flag(flag: str) -> bool:
    help_text = subprocess.run([sys.executable, "-m", "syncd", "sync", "--help"], cwd=REPO,
                               capture_output=True, text=True).stdout
    return flag in help_text


if __name__ == "__main__":
    main()
