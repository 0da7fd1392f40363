"""Expanding a tar archive that arrived in storage (`expand_archives`): time against `tar -x`
of the same archive (the floor, same run), and peak memory for a small and a large archive
(memory must not grow with the archive or a member's size).

    python bench/expand_bench.py                  # 2,000 small members; then one 256 MiB member
    python bench/expand_bench.py -n 500 --big-mib 64

Each expansion runs in a fresh process: `syncd sync --no-preprocess` catalogues the archive
(queueing its expand job), then the expand job alone is run and the process's peak RSS read.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

EXPAND = textwrap.dedent("""
    import resource, sys, time
    from syncd.app import App
    from syncd.jobs.expand import expand_job
    app = App.from_file(sys.argv[1])
    app.sync("photos")
    queue = app.jobs()
    [job] = [j for j in queue.claim(100) if j.kind == "expand"]
    started = time.monotonic()
    result = expand_job(app, job)
    seconds = time.monotonic() - started
    print(result.state, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
""")


def make_archive(path: Path, members: dict[str, int]) -> None:
    with tarfile.open(path, "w") as archive:
        for name, size in members.items():
            info = tarfile.TarInfo(name)
            info.size = size
            archive.addfile(info, io.BytesIO(os.urandom(size)) if size < 1 << 20 else _Random(size))


class _Random(io.RawIOBase):
    """`size` pseudo-random bytes, produced as read (the archive is written as a stream)."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left, 1 << 20)
        buffer[:n] = os.urandom(n)
        self.left -= n
        return n


def run(workdir: Path, members: dict[str, int]) -> tuple[float, float, int]:
    storage = workdir / "storage"
    storage.mkdir(parents=True)
    make_archive(storage / "drop.tar", members)
    floor_dir = workdir / "floor"
    floor_dir.mkdir()
    started = time.monotonic()
    subprocess.run(["tar", "-xf", str(storage / "drop.tar"), "-C", str(floor_dir)], check=True)
    floor = time.monotonic() - started
    config = workdir / "syncd.toml"
    config.write_text(textwrap.dedent(f"""
        [catalogue]
        path = "{workdir / 'catalogue.db'}"
        [[drivers]]
        name = "disk"
        kind = "local"
        root = "{storage}"
        [[datasets]]
        name = "photos"
        driver = "disk"
        expand_archives = true
        """))
    out = subprocess.run([sys.executable, "-c", EXPAND, str(config)], check=True, cwd=REPO,
                         capture_output=True, text=True).stdout.split()
    state, seconds, rss_mib = out[0], float(out[1]), int(out[2])
    assert state == "done", out
    return floor, seconds, rss_mib


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000, help="small members (4 KiB each)")
    parser.add_argument("--big-mib", type=int, default=256, help="the large member's size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = run(Path(tmp) / "small", {f"d{i % 20}/f{i}.bin": 4096 for i in range(args.n)})
        big = run(Path(tmp) / "big", {"big.bin": args.big_mib << 20, "x.bin": 10})
    for label, (floor, seconds, rss) in (("small members", small), ("one big member", big)):
        print(f"{label:15s}: tar -x {floor:.2f} s, expand {seconds:.2f} s "
              f"({seconds / floor:.1f}x tar), peak RSS {rss} MiB")
    print(f"peak RSS, big / small archive: {big[2] / small[2]:.2f}")


if __name__ == "__main__":
    main()
