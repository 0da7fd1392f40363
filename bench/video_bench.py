"""Video metadata + thumbnail: syncd beside ffprobe + ffmpeg on the same files, in one run.

Generates 1-minute 1080p test videos (H.264 and H.265, 25 fps, AAC audio, with ffmpeg's
`testsrc2` picture and the encoders' default key-frame interval), then times, as whole
processes, each method taking turns `--rounds` times (the median is kept):

  syncd   `python -c` preprocess.preprocess() on a file read through ranged reads: container
          facts, a representative frame at 10% of the duration (accurate seek), the 256 px
          upright JPEG thumbnail
  floor   `ffprobe -show_format -show_streams F` then
          `ffmpeg -ss T -i F -frames:v 1 -vf scale=256:-2 thumb.jpg` (T = 10% of the duration)

and reports each method's peak RSS (largest resident set of its processes, from wait4: on
Linux that includes the few tens of MB of this small parent process the child was forked
from, for both methods alike), and
syncd's own time inside a warm worker (imports done: what a pool worker spends per video).

    python bench/video_bench.py                  # H.264 and H.265, 5 rounds
    python bench/video_bench.py --seconds 20 --rounds 3 --dir /tmp/videos   # reuse the files

Target: syncd within 1.5x of the floor, peak RSS under ~300 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CODECS = {"h264": ["-c:v", "libx264", "-preset", "veryfast"],
          "h265": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"]}
SYNCD = """
import io, sys
from preprocess import preprocess
class FileSource:
    def __init__(self, path):
        self.name, self.file = path, open(path, "rb")
        self.file.seek(0, 2); self.size = self.file.tell()
    def open(self, offset=0, length=None):
        self.file.seek(offset)
        return io.BytesIO(self.file.read(-1 if length is None else length))
outcome = preprocess(FileSource(sys.argv[1]))
assert outcome.ok and outcome.thumbnail, outcome.errors
open(sys.argv[2], "wb").write(outcome.thumbnail.data)
"""


def make_video(path: Path, codec: str, seconds: int) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=1920x1080:rate=25:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                    *CODECS[codec], "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
                   check=True)


def timed(commands: list[list[str]]) -> tuple[float, int]:
    """Seconds for the commands run one after the other, and their largest peak RSS (KiB)."""
    start = time.perf_counter()
    peak = 0
    for command in commands:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0:
            raise RuntimeError(f"{command[0]} failed: {process.stderr.read().decode()[-500:]}")
        peak = max(peak, usage.ru_maxrss)
    return time.perf_counter() - start, peak


def duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                          "csv=p=0", str(path)], capture_output=True, check=True, text=True).stdout
    return float(out)


def warm_syncd(path: Path, rounds: int) -> float:
    """Median seconds of preprocess() on the video inside this (warm) process."""
    sys.path.insert(0, str(REPO))
    exec(SYNCD.split("outcome =")[0], namespace := {})  # noqa: S102 - the class above
    from preprocess import preprocess
    preprocess(namespace["FileSource"](str(path)))  # imports, caches
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        outcome = preprocess(namespace["FileSource"](str(path)))
        times.append(time.perf_counter() - start)
        assert outcome.ok, outcome.errors
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--codecs", default="h264,h265")
    parser.add_argument("--dir", type=Path, help="keep the videos here and reuse them next time")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    os.environ.update(env)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        videos = args.dir or work
        videos.mkdir(parents=True, exist_ok=True)
        rows = []
        for codec in args.codecs.split(","):
            video = videos / f"{codec}-{args.seconds}s.mp4"
            if not video.exists():
                print(f"making {args.seconds} s of 1080p {codec} ...", file=sys.stderr, flush=True)
                make_video(video, codec, args.seconds)
            seek = 0.1 * duration(video)
            methods = {
                "syncd": [[sys.executable, "-c", SYNCD, str(video), str(work / "s.jpg")]],
                "floor": [["ffprobe", "-v", "error", "-show_format", "-show_streams", str(video)],
                          ["ffmpeg", "-v", "error", "-y", "-ss", f"{seek:.3f}", "-i", str(video),
                           "-frames:v", "1", "-vf", "scale=256:-2", str(work / "f.jpg")]],
            }
            results: dict[str, list[tuple[float, int]]] = {name: [] for name in methods}
            for round_ in range(args.rounds):
                for name, commands in methods.items():
                    seconds, rss = timed(commands)
                    results[name].append((seconds, rss))
                    print(f"  {codec} round {round_ + 1} {name}: {seconds:.3f} s, peak RSS"
                          f" {rss / 1024:.0f} MB", file=sys.stderr, flush=True)
            syncd = statistics.median(s for s, _ in results["syncd"])
            floor = statistics.median(s for s, _ in results["floor"])
            rss = max(r for _, r in results["syncd"]) / 1024
            floor_rss = max(r for _, r in results["floor"]) / 1024
            warm = warm_syncd(video, args.rounds)
            rows.append((codec, video.stat().st_size / 1e6, syncd, floor, syncd / floor, warm, rss, floor_rss))
    print("| video (1080p, 25 fps) | size | syncd (process) | ffprobe + ffmpeg -ss | syncd / floor"
          " | syncd in a warm worker | syncd peak RSS | floor peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for codec, size, syncd, floor, ratio, warm, rss, floor_rss in rows:
        print(f"| {args.seconds} s {codec} | {size:.1f} MB | {syncd:.3f} s | {floor:.3f} s | **{ratio:.2f}x**"
              f" | {warm:.3f} s | {rss:.0f} MB | {floor_rss:.0f} MB |")


if __name__ == "__main__":
    main()
