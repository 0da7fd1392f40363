"""Event latency of `syncd daemon`: from a write to storage to the item in the catalogue, and
to its thumbnail written (its preprocessing job done).

    python bench/event_latency.py               # 1,000 files, local folder and moto + SQS
    python bench/event_latency.py -n 200 --only local
    python bench/event_latency.py --rate 50     # paced: 50 writes a second, not one burst

1. local: a daemon watching a folder (inotify); N small JPEGs are written into it as fast as
   one thread can (a burst, like a copy of a folder of photos), or `--rate` a second.
2. s3: moto in server mode on 127.0.0.1, the bucket's ObjectCreated notifications going to an
   SQS queue of the same server, a daemon consuming that queue; N objects are put with boto3.

For each file the write's end is taken on this side; the catalogue's own `createdAt` of the
item, and the `updated_at` of its preprocessing job once done, give the two latencies (one
machine, one clock). Prints p50 / p99 / max of each. Targets (local): p50 < 0.5 s, p99 < 2 s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 600.0  # seconds a run may take to converge


def jpeg(index: int, size=(320, 240)) -> bytes:
    from PIL import Image

    image = Image.new("RGB", size, ((index * 37) % 256, (index * 91) % 256, (index * 13) % 256))
    image.putpixel((index % size[0], 0), (255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iso_seconds(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def has_workers() -> bool:
    try:
        import syncd.jobs.runner  # noqa: F401 - the preprocessing worker pool
    except ImportError:
        return False
    return True


class Daemon:
    def __init__(self, config: Path, log: Path):
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "syncd", "--config", str(config), "--log-level", "warning",
                 "daemon"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=out)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait(predicate, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def catalogue_times(db: Path) -> tuple[dict[str, float], dict[str, float]]:
    """filename -> item createdAt, and filename -> when its preprocessing job finished."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        created = {f: iso_seconds(c) for f, c in conn.execute("SELECT filename, created_at FROM items")}
        done = {f: iso_seconds(u) for f, u in conn.execute(
            "SELECT i.filename, max(j.updated_at) FROM items i JOIN jobs j ON j.item_pk = i.pk "
            "WHERE j.state = 'done' GROUP BY i.pk")}
    except sqlite3.OperationalError:
        return {}, {}
    finally:
        conn.close()
    return created, done


def synced(db: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute("SELECT synced_at FROM datasets").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return bool(row and row[0])


def summarize(name: str, written: dict[str, float], db: Path, workers: bool) -> dict:
    wait(lambda: len(catalogue_times(db)[0]) >= len(written), f"{name}: items")
    if workers:
        wait(lambda: len(catalogue_times(db)[1]) >= len(written), f"{name}: thumbnails")
    created, done = catalogue_times(db)
    result = {"store": name, "files": len(written)}
    for label, times in (("item", created), ("thumbnail", done)):
        lags = sorted(max(0.0, times[f] - t) for f, t in written.items() if f in times)
        if len(lags) < len(written):
            result[label] = None
            continue
        q = statistics.quantiles(lags, n=100, method="inclusive")
        result[label] = {"p50": round(statistics.median(lags), 3), "p99": round(q[98], 3),
                         "max": round(lags[-1], 3)}
    return result


def pace(rate: float, index: int, started: float) -> None:
    if rate:
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def bench_local(n: int, workdir: Path, workers: bool, rate: float = 0.0) -> dict:
    storage = workdir / "local"
    (storage / "drop").mkdir(parents=True)
    db = workdir / "local.db"
    config = workdir / "local.toml"
    config.write_text(textwrap.dedent(f"""
        [catalogue]
        path = "{db}"
        [[drivers]]
        name = "disk"
        kind = "local"
        root = "{storage}"
        [[datasets]]
        name = "photos"
        driver = "disk"
        [[sources]]
        kind = "watch"
        driver = "disk"
        """))
    images = [jpeg(i) for i in range(n)]
    daemon = Daemon(config, workdir / "local.log")
    try:
        wait(lambda: synced(db), "local: startup sync", 60)
        written: dict[str, float] = {}
        started = time.monotonic()
        for i, data in enumerate(images):
            pace(rate, i, started)
            path = storage / "drop" / f"img_{i:05d}.jpg"
            with open(path, "wb") as out:
                out.write(data)
            written[f"/drop/img_{i:05d}.jpg"] = time.time()
        return summarize("local folder (inotify)", written, db, workers)
    finally:
        daemon.stop()


def bench_s3(n: int, workdir: Path, workers: bool, rate: float = 0.0) -> dict:
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False

        wait(up, "moto", 30)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        queue_url = sqs.create_queue(QueueName="bench-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(Bucket="bench", NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
        db = workdir / "s3.db"
        config = workdir / "s3.toml"
        config.write_text(textwrap.dedent(f"""
            [catalogue]
            path = "{db}"
            [[drivers]]
            name = "bucket"
            kind = "s3"
            bucket = "bench"
            endpoint_url = "{endpoint}"
            region = "us-east-1"
            [[datasets]]
            name = "photos"
            driver = "bucket"
            [[sources]]
            kind = "sqs"
            queue_url = "{queue_url}"
            endpoint_url = "{endpoint}"
            region = "us-east-1"
            wait_seconds = 1
            """))
        images = [jpeg(i) for i in range(n)]
        daemon = Daemon(config, workdir / "s3.log")
        try:
            wait(lambda: synced(db), "s3: startup sync", 60)
            written: dict[str, float] = {}
            started = time.monotonic()

            def put(i: int) -> None:
                pace(rate, i, started)
                key = f"drop/img_{i:05d}.jpg"
                s3.put_object(Bucket="bench", Key=key, Body=images[i], ContentType="image/jpeg")
                written["/" + key] = time.time()

            with ThreadPoolExecutor(4) as pool:
                list(pool.map(put, range(n)))
            return summarize("moto S3 -> SQS", written, db, workers)
        finally:
            daemon.stop()
    finally:
        moto.terminate()
        moto.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="files per store (default 1000)")
    parser.add_argument("--only", choices=["local", "s3"])
    parser.add_argument("--rate", type=float, default=0.0,
                        help="writes a second (default: one burst, as fast as they go)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per store")
    args = parser.parse_args()
    workers = has_workers()
    results = []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        for name, run in (("local", bench_local), ("s3", bench_s3)):
            if args.only and args.only != name:
                continue
            results.append(run(args.n, Path(tmp), workers, args.rate))
    for result in results:
        if args.json:
            print(json.dumps(result))
            continue
        how = f"{args.rate:g} a second" if args.rate else "one burst"
        print(f"{result['store']}: {result['files']} files, {how}")
        for label in ("item", "thumbnail"):
            value = result[label]
            if value is None:
                print(f"  write -> {label:9}: n/a" + ("" if workers else " (no preprocessing workers)"))
            else:
                print(f"  write -> {label:9}: p50 {value['p50']:.3f} s, p99 {value['p99']:.3f} s, "
                      f"max {value['max']:.3f} s")


if __name__ == "__main__":
    main()
