"""Initial sync of N objects from moto (S3) against a bare boto3 ListObjectsV2 loop.

Starts moto_server on a free loopback port, fills a bucket with N small objects, then times:
  floor  a bare boto3 ListObjectsV2 paginator loop over the bucket, in this process (the
         least any tool listing through that endpoint can take);
  syncd  `python -m syncd sync --json` into an empty catalogue, in a fresh process: the
         `seconds` it reports (listing + diff + writing items and jobs), and its wall time
         with Python start-up and imports;
each the median of --repeats runs, and prints syncd / floor. Target: within 1.5x.

    python bench/s3_sync_bench.py              # 20,000 objects
    python bench/s3_sync_bench.py -n 5000 --repeats 1

moto answers a 1,000-key page in ~240 ms whatever the client does (it sorts the whole
bucket on every request), so both sides are server-bound; the ratio is what syncd adds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3

REPO = Path(__file__).resolve().parent.parent
BUCKET = "bench"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
        "region_name": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    process.kill()
    raise SystemExit("moto_server did not start")


def fill(client, count: int) -> None:
    started = time.monotonic()
    client.create_bucket(Bucket=BUCKET)

    def put(index: int) -> None:
        client.put_object(Bucket=BUCKET, Key=f"d{index // 200:04d}/img_{index:06d}.jpg",
                          Body=b"x" * 64)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(count)))
    print(f"put {count:,} objects in {time.monotonic() - started:.1f} s", file=sys.stderr)


def floor_once(client) -> tuple[float, int]:
    started = time.perf_counter()
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", ()):
            count += 1
    return time.perf_counter() - started, count


def syncd_once(work: Path, endpoint: str) -> tuple[dict, float]:
    catalogue = work / "catalogue.db"
    for leftover in work.glob("catalogue.db*"):
        leftover.unlink()
    config = work / "syncd.toml"
    config.write_text(
        f'[catalogue]\npath = "{catalogue}"\n\n'
        f'[[drivers]]\nname = "moto"\nkind = "s3"\nbucket = "{BUCKET}"\n'
        f'endpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
        f'access_key_id = "testing"\nsecret_access_key = "testing"\n\n'
        f'[[datasets]]\nname = "bench"\ndriver = "moto"\n'
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "syncd", "--config", str(config), "sync",
                             "--json"], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"sync failed ({result.returncode}): {result.stderr}")
    return json.loads(result.stdout.splitlines()[0]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--objects", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = start_moto(port)
    work = Path(tempfile.mkdtemp(prefix="syncd-s3-bench-"))
    try:
        client = boto3.client("s3", endpoint_url=endpoint, **KEYS)
        fill(client, args.objects)
        floors, syncs, walls = [], [], []
        for _ in range(args.repeats):  # interleaved, so that drift hits both sides alike
            seconds, count = floor_once(client)
            assert count == args.objects, count
            floors.append(seconds)
            result, wall = syncd_once(work, endpoint)
            assert result["created"] == args.objects, result
            syncs.append(result["seconds"])
            walls.append(wall)
        floor, sync, wall = (statistics.median(x) for x in (floors, syncs, walls))
        print(f"\nS3 initial-sync benchmark: {args.objects:,} objects in moto_server, "
              f"{os.cpu_count()} cores, median of {args.repeats}\n")
        print(f"{'':<36}{'seconds':>9}{'objects/s':>11}{'x floor':>9}")
        for name, seconds in (("floor: boto3 ListObjectsV2 loop", floor),
                              ("syncd sync (reported)", sync),
                              ("syncd sync (wall, with start-up)", wall)):
            print(f"{name:<36}{seconds:>9.2f}{args.objects / seconds:>11,.0f}"
                  f"{seconds / floor:>9.2f}")
        print(f"\nratio syncd / floor = {sync / floor:.2f} (target <= 1.5)")
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
