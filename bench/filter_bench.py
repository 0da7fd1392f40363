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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
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
        micro = _in_process(root, args.passes)
        base = statistics.median(noop["no filter"])
        print(f"\nfilter benchmark: {args.files:,} files (+{args.files // 1000} rsync temp files),"
              f" no-op re-sync, median of {args.passes} passes taking turns\n")
        print(f"{'mode':<20}{'initial s':>10}{'no-op s':>10}{'x no filter':>13}  passes")
        for mode in MODES:
            seconds = statistics.median(noop[mode])
            print(f"{mode:<20}{initial[mode][0]:>10.3f}{seconds:>10.3f}{seconds / base:>13.2f}  "
                  + " ".join(f"{s:.3f}" for s in noop[mode]))
        print(f"\nin one process, the same tree: listing (the local driver) "
              f"{micro.pop('listing'):.3f} s; filtering its pages (median of {args.passes}):")
        for mode, seconds in micro.items():
            print(f"  {mode:<20}{seconds:>8.3f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _in_process(root: Path, passes: int) -> dict[str, float]:
    """The listing's own time beside the time the filters add to it: less noisy than
    whole processes on a shared machine."""
    import time

    import drivers
    from drivers.local import LocalOptions
    from syncd.config import FilterRules
    from syncd.sync.filters import Excluded, PathFilter, filter_pages

    driver = drivers.open_driver(LocalOptions(name="bench", kind="local", root=root))
    started = time.perf_counter()
    pages = list(driver.list_pages())
    seconds = {"listing": time.perf_counter() - started}
    for mode, rules in MODES.items():
        table = {}
        for line in rules.splitlines():
            key, _, value = line.partition(" = ")
            table[key] = eval(value) if key != "default_excludes" else None  # noqa: S307 - our literals
        defaults = "default_excludes" not in table
        table.pop("default_excludes", None)
        path_filter = PathFilter.build(defaults=defaults, tables=[("driver bench", FilterRules(**table).table())])
        times = []
        for _ in range(passes):
            started = time.perf_counter()
            for _page in filter_pages(iter(pages), path_filter, Excluded()):
                pass
            times.append(time.perf_counter() - started)
        seconds[mode] = statistics.median(times)
    return seconds


if __name__ == "__main__":
    main()
