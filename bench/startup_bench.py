"""CLI start-up: `syncd --version` and a no-op sync of a 10-file local folder, beside the
floor `python -c pass`, measured in the same run (commands take turns; median of N).

    python bench/startup_bench.py          # 20 rounds
    python bench/startup_bench.py --baseline /tmp/old   # also an older tree (git archive)

Target: each at most 80 ms more than the floor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="rounds")
    parser.add_argument("--baseline", type=Path,
                        help="an older source tree to time beside this one (run with PYTHONPATH)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncd-startup-"))
    try:
        root = work / "photos"
        root.mkdir()
        for i in range(10):
            (root / f"img_{i}.jpg").write_bytes(b"x" * 100)
        config = work / "syncd.toml"
        config.write_text(f'[catalogue]\npath = "{work / "c.db"}"\n[[drivers]]\nname = "disk"\n'
                          f'kind = "local"\nroot = "{root}"\n[[datasets]]\nname = "photos"\n'
                          'driver = "disk"\n[preprocess]\nthumbnails = false\n')
        syncd = [sys.executable, "-m", "syncd"]
        subprocess.run(syncd + ["--config", str(config), "sync"], check=True,
                       capture_output=True)  # the first sync (and its jobs): later ones are no-ops
        commands = {
            "floor: python -c pass": [sys.executable, "-c", "pass"],
            "syncd --version": syncd + ["--version"],
            "syncd sync (no-op, 10 local files)": syncd + ["--config", str(config), "sync"],
        }
        # As installed: with bytecode caches (pip compiles them at install; an editable
        # install writes them on first import), which PYTHONDONTWRITEBYTECODE would forbid.
        plain = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run(commands["syncd sync (no-op, 10 local files)"], check=True, env=plain,
                       capture_output=True)  # writes the caches
        envs = {name: plain for name in commands}
        if args.baseline:
            old = {**plain, "PYTHONPATH": str(args.baseline.resolve())}
            for name in list(commands)[1:]:
                commands[f"{name} (baseline)"] = commands[name]
                envs[f"{name} (baseline)"] = old
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.n):
            for name, command in commands.items():
                started = time.perf_counter()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=envs[name],
                               cwd=args.baseline if "(baseline)" in name else REPO)
                times[name].append(time.perf_counter() - started)
        floor = statistics.median(times["floor: python -c pass"])
        print("| command | median ms | ms over the floor | target |")
        print("|---|---|---|---|")
        for name, values in times.items():
            median = statistics.median(values)
            target = "" if name.startswith("floor") else "≤ 80"
            print(f"| {name} | {median * 1000:.0f} | {(median - floor) * 1000:.0f} | {target} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
