"""What filters cost a sync: the same tree synced with no filter, with the default excludes,
and with the defaults plus include/exclude rules, each in a fresh `python -m syncd` process,
methods taking turns pass by pass (the machine is shared); prints medians and the ratio of
each to the no-filter sync measured in the same run.

    python bench/filter_bench.py            # 200,000 files, 5 passes
    python bench/filter_bench.py -n 50000 --passes 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_bench import build_tree, run_sync  # noqa: E402

MODES = {
    "no filter": "default_excludes = false\n",
    "default excludes": "",
    "defaults + rules": 'exclude = ["*.raw", "/tmp/**"]\ninclude = ["*.jpg", "*.png"]\n',
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--files", type=int, default=200_000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncd-filter-bench-"))
    try:
        root = work / "tree"
        build_tree(root, args.files)
        for index in range(0, args.files, 1000):  # a few files the defaults exclude
            (root / f"d{index // 200:05d}" / f".img_{index:07d}.jpg.Ab12Cd").write_bytes(b"x")
        configs = {}
        for number, (mode, rules) in enumerate(MODES.items()):
            config = work / f"mode{number}.toml"
            config.write_text(
                f'[catalogue]\npath = "{work / f"mode{number}.db"}"\n\n'
                f'[[drivers]]\nname = "bench"\nkind = "local"\nroot = "{root}"\n\n'
                f'[[datasets]]\nname = "bench"\ndriver = "bench"\n{rules}')
            configs[mode] = config
        initial, noop = {m: [] for m in MODES}, {m: [] for m in MODES}
        for mode, config in configs.items():
            result, _, _ = run_sync(config)
            initial[mode].append(result["seconds"])
        for _ in range(args.passes):
            for mode, config in configs.items():
                result, _, _ = run_sync(config)
                assert result["created"] == 0, result
                noop[mode].append(result["seconds"])
        base = statistics.median(noop["no filter"])
        print(f"\nfilter benchmark: {args.files:,} files (+{args.files // 1000} rsync temp files),"
              f" no-op re-sync, median of {args.passes} passes taking turns\n")
        print(f"{'mode':<20}{'initial s':>10}{'no-op s':>10}{'x no filter':>13}  passes")
        for mode in MODES:
            seconds = statistics.median(noop[mode])
            print(f"{mode:<20}{initial[mode][0]:>10.3f}{seconds:>10.3f}{seconds / base:>13.2f}  "
                  + " ".join(f"{s:.3f}" for s in noop[mode]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
