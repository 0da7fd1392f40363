"""Sampling and quotas for files that arrive on their own, measured on a sync of a local
folder: what deciding (and remembering) each new path costs, and that memory does not grow.

    python bench/arrivals_bench.py            # 100,000 files
    python bench/arrivals_bench.py -n 20000

Five whole `syncd sync --no-preprocess` processes (`App.sync`) over the same folder: on fresh
catalogues, no controls (the floor, same run), `sample_percent = 50`, `quota_per_day = N/2`
(refused in filename order); then no-op rescans of the plain catalogue and of the sampled one
(every refused path left alone by the remembered decision). Prints seconds, peak RSS and the
ratio of each to the floor.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SYNC = textwrap.dedent("""
    import json, resource, sys, time
    from syncd.app import App
    started = time.monotonic()
    with App.from_file(sys.argv[1]) as app:
        result = app.sync("photos")
    seconds = time.monotonic() - started
    line = result.as_json()
    print(json.dumps({"seconds": seconds, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                      "created": line["created"], "refused": line["refused"],
                      "still_refused": line["still_refused"]}))
""")


def config(workdir: Path, name: str, upload: str) -> Path:
    path = workdir / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""
        [catalogue]
        path = "{workdir / (name + '.db')}"
        [[drivers]]
        name = "disk"
        kind = "local"
        root = "{workdir / 'storage'}"
        [[datasets]]
        name = "photos"
        driver = "disk"
        [datasets.upload]
        {upload}
        """))
    return path


def sync(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", SYNC, str(path)], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="files in the folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="arrivals-bench-") as tmp:
        workdir = Path(tmp)
        for index in range(args.n):
            folder = workdir / "storage" / f"d{index // 1000:03d}"
            if index % 1000 == 0:
                folder.mkdir(parents=True)
            (folder / f"{index:07d}.bin").write_bytes(b"x")
        runs = [
            ("no controls (floor)", config(workdir, "plain", "")),
            ("sample_percent = 50", config(workdir, "sampled", "sample_percent = 50\nsample_seed = 7")),
            (f"quota_per_day = {args.n // 2}", config(workdir, "quota", f"quota_per_day = {args.n // 2}")),
            ("rescan, plain catalogue", workdir / "plain.toml"),
            ("rescan, sampled catalogue", workdir / "sampled.toml"),
        ]
        floor = None
        print(f"{args.n:,} local files; whole processes; ratios against the first row, same run")
        print(f"{'run':32} {'seconds':>8} {'x floor':>8} {'RSS MiB':>8} {'x floor':>8}  created / refused / still refused")
        for label, path in runs:
            got = sync(path)
            floor = floor or got
            print(f"{label:32} {got['seconds']:8.2f} {got['seconds'] / floor['seconds']:8.2f} "
                  f"{got['rss_mib']:8d} {got['rss_mib'] / floor['rss_mib']:8.2f}  "
                  f"{got['created']} / {sum(got['refused'].values())} / {got['still_refused']}")


if __name__ == "__main__":
    main()
