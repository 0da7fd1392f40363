"""A first sync from a synthetic S3 Inventory (Parquet) into SQLite: time, objects/s, peak RSS.

Writes an S3 Inventory of N objects (manifest.json + Parquet files of 1,000,000 rows in row
groups of 100,000, as S3 writes them) into a temporary folder, then times, in a fresh
`python -m syncd sync --from-inventory ... --no-preprocess` process, the sync of a dataset
into an empty catalogue, beside the floor measured in the same run: pyarrow alone reading
the same files into Python rows (no catalogue), in a process of its own.

    python bench/inventory_bench.py                  # 10,000,000 objects
    python bench/inventory_bench.py -n 1000000

Target: peak RSS of the sync process under 300 MB at 10,000,000 objects.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROWS_PER_FILE = 1_000_000
ROW_GROUP = 100_000

FLOOR = """
import sys, pyarrow.parquet as pq
rows = 0
for path in sys.argv[1:]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
        columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        rows += sum(1 for _ in zip(*columns))
print(rows)
"""


def write_inventory(root: Path, count: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.monotonic()
    base = root / "inventory" / "photos-bucket" / "config1"
    (base / "data").mkdir(parents=True)
    files = []
    for start in range(0, count, ROWS_PER_FILE):
        path = base / "data" / f"part-{start // ROWS_PER_FILE:04d}.parquet"
        schema = pa.schema([("bucket", pa.string()), ("key", pa.string()), ("size", pa.int64()),
                            ("last_modified_date", pa.timestamp("ms", "UTC")),
                            ("e_tag", pa.string()), ("storage_class", pa.string())])
        with pq.ParquetWriter(path, schema) as writer:
            for low in range(start, min(start + ROWS_PER_FILE, count), ROW_GROUP):
                high = min(low + ROW_GROUP, start + ROWS_PER_FILE, count)
                n = high - low
                writer.write_table(pa.table({
                    "bucket": pa.array(["photos-bucket"] * n),
                    "key": pa.array([f"d{i // 1000:05d}/img_{i:08d}.jpg" for i in range(low, high)]),
                    "size": pa.array([40_000 + i % 997 for i in range(low, high)], pa.int64()),
                    "last_modified_date": pa.array([1_700_000_000_000 + i for i in range(low, high)],
                                                   pa.timestamp("ms", "UTC")),
                    "e_tag": pa.array([hashlib.md5(str(i).encode()).hexdigest() for i in range(low, high)]),
                    "storage_class": pa.array(["STANDARD"] * n),
                }, schema=schema))
        data = path.read_bytes()
        files.append({"key": str(path.relative_to(root)), "size": len(data),
                      "MD5checksum": hashlib.md5(data).hexdigest()})
        del data
    manifest = base / "2026-11-29T00-00Z" / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({
        "sourceBucket": "photos-bucket", "destinationBucket": "arn:aws:s3:::inventories",
        "version": "2016-11-30", "creationTimestamp": "1764374400000", "fileFormat": "Parquet",
        "fileSchema": "message s3.inventory { ... }", "files": files}))
    print(f"wrote {count:,} rows in {len(files)} files in {time.monotonic() - started:.0f} s",
          file=sys.stderr)
    return manifest


def timed(command: list[str], **kwargs) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (MB) and stdout of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, check=True, text=True, **kwargs)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("note: peak RSS not above an earlier child's; figure is an upper bound", file=sys.stderr)
    return seconds, peak // 1024, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000_000, help="objects in the inventory")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="syncd-inventory-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        manifest = write_inventory(work / "inv", args.n)
        parts = sorted(str(p) for p in (work / "inv").rglob("*.parquet"))
        # The sync first (its peak RSS is then its own), then the floor.
        (work / "bucket").mkdir()
        config = work / "syncd.toml"
        config.write_text(f'[catalogue]\npath = "{work / "catalogue.db"}"\n'
                          f'[[drivers]]\nname = "bucket"\nkind = "local"\nroot = "{work / "bucket"}"\n'
                          '[[datasets]]\nname = "photos"\ndriver = "bucket"\n')
        seconds, rss, out = timed([sys.executable, "-m", "syncd", "--config", str(config), "sync",
                                   "--from-inventory", str(manifest), "--no-preprocess", "--json"],
                                  cwd=REPO)
        result = json.loads(out)
        assert result["created"] == args.n, result
        floor, floor_rss, rows = timed([sys.executable, "-c", FLOOR, *parts])
        assert int(rows) == args.n
        print(f"| objects | phase | seconds | objects/s | x floor | peak RSS |")
        print(f"|---|---|---|---|---|---|")
        print(f"| {args.n:,} | floor: pyarrow reads the Parquet files into rows | {floor:.1f} |"
              f" {args.n / floor:,.0f} | 1.00 | {floor_rss} MB |")
        print(f"| {args.n:,} | `syncd sync --from-inventory` (initial, SQLite) | {seconds:.1f} |"
              f" {args.n / seconds:,.0f} | {seconds / floor:.2f} | {rss} MB |")
        print(f"catalogue: {os.path.getsize(work / 'catalogue.db') / 1e9:.2f} GB", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
