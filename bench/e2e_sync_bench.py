"""End to end: `syncd sync` of N new 12-megapixel JPEGs, the whole process (start-up, listing,
catalogue, worker pool, thumbnails written back), beside a plain pyvips script that makes the
same thumbnails in as many processes (the floor), alternating, in the same run.

    python bench/e2e_sync_bench.py                 # 32 photos, 2 processes, 5 passes each

Target: syncd no slower than the pyvips script. pyvips comes from the `bench` extra.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from preprocess_bench import make_photos  # noqa: E402

PYVIPS_SCRIPT = textwrap.dedent("""
    import os, sys
    from multiprocessing import Pool
    from pathlib import Path

    def thumb(path):
        import pyvips
        out = Path(path).parent / ".thumbs" / (Path(path).stem + ".jpg")
        pyvips.Image.thumbnail(str(path), 256).jpegsave(str(out), Q=85)
        return os.path.getsize(out)

    if __name__ == "__main__":
        root = Path(sys.argv[1])
        (root / ".thumbs").mkdir(exist_ok=True)
        files = sorted(str(p) for p in root.glob("*.jpg"))
        with Pool(int(sys.argv[2])) as pool:
            sizes = pool.map(thumb, files, chunksize=1)
        assert len(sizes) == len(files)
""")


def timed(command: list[str], env: dict | None = None) -> float:
    # As installed: with bytecode caches (written by the first pass), which
    # PYTHONDONTWRITEBYTECODE would forbid.
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**plain, **(env or {})}, cwd=REPO)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--photos", type=int, default=32)
    parser.add_argument("-p", "--processes", type=int, default=2)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncd-e2e-"))
    try:
        photos = work / "photos"
        photos.mkdir()
        make_photos(photos, args.photos)
        script = work / "vips_thumbs.py"
        script.write_text(PYVIPS_SCRIPT)
        config = work / "syncd.toml"
        config.write_text(textwrap.dedent(f"""
            [catalogue]
            path = "{work / 'catalogue.db'}"
            [[drivers]]
            name = "photos"
            kind = "local"
            root = "{photos}"
            [[datasets]]
            name = "photos"
            driver = "photos"
            [preprocess]
            workers = {args.processes}
            """))
        times: dict[str, list[float]] = {"syncd": [], "pyvips": []}
        for _ in range(args.passes):
            for method in ("syncd", "pyvips"):
                for leftover in (work / "catalogue.db", photos / ".dataloop", photos / ".thumbs"):
                    if leftover.is_dir():
                        shutil.rmtree(leftover)
                    else:
                        for suffix in ("", "-wal", "-shm"):
                            Path(str(leftover) + suffix).unlink(missing_ok=True)
                if method == "syncd":
                    times[method].append(timed([sys.executable, "-m", "syncd", "--config", str(config), "sync"]))
                    assert len(list((photos / ".dataloop/thumbnails").iterdir())) == args.photos
                else:
                    times[method].append(timed([sys.executable, str(script), str(photos), str(args.processes)],
                                               env={"VIPS_CONCURRENCY": "1"}))
        for index, (a, b) in enumerate(zip(times["syncd"], times["pyvips"]), 1):
            print(f"  pass {index}: syncd {a:5.2f} s, pyvips {b:5.2f} s")
        syncd, vips = statistics.median(times["syncd"]), statistics.median(times["pyvips"])
        print(f"{args.photos} new 12 MP JPEGs, {args.processes} processes, median of {args.passes}:")
        print(f"  syncd sync (whole process)   {syncd:6.2f} s")
        print(f"  pyvips script (the floor)    {vips:6.2f} s")
        print(f"  syncd / floor                {syncd / vips:6.2f}x   (target <= 1.00x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
