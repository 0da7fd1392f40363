"""API page speed at a million items, and export memory, measured in the same run.

Builds a catalogue of N items (1,000,000 by default) through syncd's own catalogue API
(catalogue.items.insert, 10,000 a transaction): 5,000 folders of 200 items; every item with
preprocessing facts (mimetype: 80% JPEG, 10% PNG, 10% video; width, height, thumbnailId),
one in ten with user metadata (camera cam_00..cam_09), 1% missing. Then serves it on
127.0.0.1 (uvicorn, as `syncd serve`) and times pages of 100 items through HTTP, each
filter at the start and deep in the catalogue (keyset cursor), beside the floor: the same
page's bare SQL (`SELECT ... LIMIT 101`, rows fetched, nothing decoded) on its own
connection. Then `syncd items export` in each format, in a fresh process, with its peak RSS.

    python bench/api_bench.py                 # 1,000,000 items
    python bench/api_bench.py -n 200000 --keep /tmp/api-bench.db
    python bench/api_bench.py --no-export

Target: every page under 100 ms of server time (p95 over the requests of each case, from the
API's Server-Timing header; the client's time is printed beside it);
export memory flat (the same peak RSS at 200,000 and 1,000,000 items).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOKEN = "bench-token"
PER_FOLDER = 200
REQUESTS = 15  # timed requests per case (after one warm-up)


def build(db_path: Path, count: int) -> None:
    from syncd.catalogue import Catalogue, items

    started = time.monotonic()
    with Catalogue(db_path) as catalogue:
        dataset = catalogue.ensure_dataset("big", "disk")
        for first in range(0, count, 10_000):
            with catalogue.transaction(immediate=True):
                for index in range(first, min(first + 10_000, count)):
                    _add(catalogue, items, dataset, index)
    print(f"built {count:,} items in {time.monotonic() - started:.1f} s", file=sys.stderr)


def _add(catalogue, items, dataset, index: int) -> None:
    folder, kind = index // PER_FOLDER, index % 10
    mimetype, ext = (("image/png", "png") if kind == 8 else
                     ("video/mp4", "mp4") if kind == 9 else ("image/jpeg", "jpg"))
    system = {"mimetype": mimetype, "width": 640 + index % 1000, "height": 480,
              "thumbnailId": f".dataloop/thumbnails/{index:024x}.jpg", "etl": {"status": "done"}}
    user = {"camera": f"cam_{(index // 10) % 10:02d}"} if index % 10 == 3 else None
    pk = items.insert(catalogue, dataset, f"/f{folder:05d}/img_{index:07d}.{ext}",
                      size=1000 + index, mtime=1.7e9, etag=f"e{index}", md5=None,
                      system=system, user=user)
    if index % 100 == 57:
        items.mark_missing(catalogue, pk)


def write_config(folder: Path, db_path: Path) -> Path:
    (folder / "store").mkdir(exist_ok=True)
    path = folder / "bench.toml"
    path.write_text(textwrap.dedent(f"""
        [catalogue]
        path = "{db_path}"

        [[drivers]]
        name = "disk"
        kind = "local"
        root = "{folder / 'store'}"

        [[datasets]]
        name = "big"
        driver = "disk"

        [web]
        token = "{TOKEN}"
        """))
    return path


CASES = [  # (name, where, folder)
    ("no filter", "", ""),
    ("folder (index range)", "", "/f{deep_folder}"),
    ("state = missing (1%)", "state = missing", ""),
    ("mimetype = image/png (10%)", "mimetype = image/png", ""),
    ("user.camera = cam_07 (1%)", "user.camera = cam_07", ""),
    ("width >= 1500 and mimetype in (...)", "width >= 1500 and mimetype in (image/png, video/mp4)", ""),
    ("filename glob", 'filename glob "/f0*/img_*5.jpg"', ""),
]


def get(url: str) -> tuple[float, float, float, dict]:
    """(wall seconds seen by the client, server wall ms, server CPU ms, the page)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        timing = dict(part.strip().split(";dur=") for part in response.headers["Server-Timing"].split(","))
    return time.perf_counter() - started, float(timing["app"]), float(timing["cpu"]), json.loads(body)


def floor(db_path: Path, where_sql: tuple[str, tuple] | None, after: str,
          bounds: tuple[str, str | None] | None) -> float:
    """The bare page query: the same SQL, rows fetched, nothing decoded or serialized."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    extra, args = (f"AND ({where_sql[0]})", where_sql[1]) if where_sql else ("", ())
    low, high = bounds or ("", None)
    end, end_args = ("AND filename < ?", (high,)) if high else ("", ())
    started = time.perf_counter()
    conn.execute(f"SELECT * FROM items WHERE dataset_id = 1 AND filename > ? {end} {extra} "
                 "ORDER BY filename LIMIT 101", (max(after, low), *end_args, *args)).fetchall()
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def bench_pages(config: Path, db_path: Path, count: int) -> list[dict]:
    from syncd.app import App
    from syncd.catalogue.query import compile_query, filename_bounds, folder_bounds
    from syncd.service.metrics import Metrics
    from syncd.service.web.app import build_app
    from syncd.service.web.server import WebServer
    from syncd.service.web.site import Site

    app = App.from_file(config)
    site = Site(app.config)
    server = WebServer(build_app(health=lambda: (True, {}), metrics=Metrics(), web=site),
                       "127.0.0.1:0", settings=app.config.web)
    server.start()
    deep_folder = f"{(count // PER_FOLDER) * 9 // 10:05d}"
    deep_after = f"/f{deep_folder}/"
    results = []
    try:
        for name, where, folder in CASES:
            folder = folder.format(deep_folder=deep_folder)
            for start, after in [("start", ""), ("deep", deep_after)]:
                if folder and start == "deep":
                    continue
                query = {"limit": "100"}
                if where:
                    query["where"] = where
                if folder:
                    query["folder"] = folder
                if after:
                    query["cursor"] = base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")
                url = f"{server.url}/api/v1/datasets/big/items?{urllib.parse.urlencode(query)}"
                get(url)  # warm-up
                times, on_server, cpu, items = [], [], [], 0
                for _ in range(REQUESTS):
                    seconds, server_ms, cpu_ms, page = get(url)
                    times.append(seconds * 1000)
                    on_server.append(server_ms)
                    cpu.append(cpu_ms)
                    items = len(page["items"])
                condition = compile_query(where) if where else None
                bounds = filename_bounds(where) if where else None
                if folder:
                    bounds = folder_bounds(folder)
                floors = sorted(floor(db_path, condition, after, bounds) for _ in range(5))
                results.append({"case": name, "at": start, "items": items,
                                "p50_ms": round(statistics.median(times), 1),
                                "p95_ms": round(sorted(times)[int(len(times) * 0.95) - 1], 1),
                                "server_p50_ms": round(statistics.median(on_server), 1),
                                "server_p95_ms": round(sorted(on_server)[int(len(on_server) * 0.95) - 1], 1),
                                "cpu_p50_ms": round(statistics.median(cpu), 1),
                                "floor_ms": round(floors[2] * 1000, 2),
                                "x_floor": round(statistics.median(on_server) / (floors[2] * 1000), 1)})
                print(json.dumps(results[-1]), file=sys.stderr)
    finally:
        server.stop()
        site.close()
        app.close()
    return results


def bench_export(config: Path, fmt: str, out: Path) -> dict:
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent("""
            import resource, sys
            from syncd.cli import main
            try:
                main()
            except SystemExit as exit:
                code = exit.code
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
            sys.exit(code)
            """), "--config", str(config), "items", "export", "big", "--format", fmt,
         "--output", str(out)], capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(child.stderr)
    rss_kib = int(child.stderr.strip().splitlines()[-1])
    return {"format": fmt, "seconds": round(seconds, 1), "peak_rss_mb": round(rss_kib / 1024),
            "file_mb": round(out.stat().st_size / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="items (default 1,000,000)")
    parser.add_argument("--keep", type=Path, help="catalogue file to reuse or keep")
    parser.add_argument("--no-export", action="store_true", help="time the pages only")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="api-bench-") as folder:
        folder = Path(folder)
        db_path = options.keep or folder / "catalogue.db"
        if not db_path.exists():
            build(db_path, options.n)
        config = write_config(folder, db_path)
        pages = bench_pages(config, db_path, options.n)
        print(f"\n{options.n:,} items, page of 100, {REQUESTS} requests each (ms):")
        print(f"{'case':40} {'at':6} {'items':>5} {'client p50':>10} {'p95':>7} {'server p50':>10} "
              f"{'cpu p50':>8} {'floor':>7} {'x floor':>8}")
        for r in pages:
            print(f"{r['case']:40} {r['at']:6} {r['items']:5} {r['p50_ms']:10} {r['p95_ms']:7} "
                  f"{r['server_p50_ms']:10} {r['server_p95_ms']:7} {r['cpu_p50_ms']:8} {r['floor_ms']:7} {r['x_floor']:8}")
        worst = max(r["server_p95_ms"] for r in pages)
        print(f"slowest server p95: {worst} ms (target: under 100 ms) -> {'met' if worst < 100 else 'NOT met'}"
              f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        if not options.no_export:
            print("\nexport (fresh process each):")
            for fmt in ("jsonl", "csv", "parquet"):
                r = bench_export(config, fmt, folder / f"out.{fmt}")
                print(f"  {fmt:8} {r['seconds']:7} s  peak RSS {r['peak_rss_mb']} MB  file {r['file_mb']} MB")
                (folder / f"out.{fmt}").unlink()
        print(f"bench process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB",
              file=sys.stderr)


if __name__ == "__main__":
    main()
