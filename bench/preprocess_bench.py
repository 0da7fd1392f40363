"""Thumbnails per second on 12-megapixel JPEGs: syncd against plain Pillow and pyvips, in one run.

Generates N photo-like 4000x3000 JPEGs (gradients, shapes, blur and sensor-like noise, so they
compress like camera files, ~3 MB each), then times, with the same number of processes:

  syncd      preprocess.preprocess(): file facts, header, EXIF and the 256 px thumbnail
             (JPEG decoded at reduced scale with Pillow's draft, turned upright)
  plain      Pillow open() + thumbnail((256, 256), reducing_gap=None) + save: a true full
             decode, "Pillow without draft" (PEERS.md: since Pillow 7 thumbnail() drafts by
             itself unless reducing_gap=None)
  pillow     Pillow open() + thumbnail((256, 256)) with its default reducing_gap=2.0
             (for reference: 1/4-scale draft)
  pyvips     pyvips.Image.thumbnail(path, 256) + jpegsave_buffer (libvips shrink-on-load)

Every method reads the file and produces JPEG bytes. For each process count, every method
has its pool of warm workers (imports done, one image made) before the clock starts; the
methods then take turns, one pass over the images each, in a shuffled order, `--rounds`
times, and the median pass is reported (the machine is shared: taking turns lets its other
work slow every method alike).

    python bench/preprocess_bench.py                 # 12 images, 1 and 2 processes, 5 rounds
    python bench/preprocess_bench.py -n 24 --processes 1,2,4

Targets: syncd at least 3x plain, and no slower than pyvips at the same process count.
pyvips comes from the `bench` extra (`pip install -e '.[bench]'`); without it, the pyvips
rows are skipped and the output says so. In several processes pyvips runs with
VIPS_CONCURRENCY=1 (one thread per process, as the others); alone it keeps its own threads.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WIDTH, HEIGHT = 4000, 3000
SIZE = 256
QUALITY = 85
METHODS = ("syncd", "plain", "pillow", "pyvips")


# -- test images -------------------------------------------------------------------------------

def make_photo(path: Path, seed: int) -> None:
    """A photo-like 12 MP JPEG: smooth light, objects with edges, a little blur, grain."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(seed)
    small = (WIDTH // 8, HEIGHT // 8)
    channels = [Image.linear_gradient("L").rotate(rng.uniform(0, 360)).resize(small),
                Image.radial_gradient("L").resize(small),
                Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(small)]
    rng.shuffle(channels)
    image = Image.merge("RGB", channels).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(150):
        x, y = rng.randrange(WIDTH), rng.randrange(HEIGHT)
        w, h = rng.randrange(20, 700), rng.randrange(20, 700)
        color = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.choice((draw.ellipse, draw.rectangle))
        shape([x, y, x + w, y + h], fill=color, outline=tuple(c // 2 for c in color), width=3)
    for _ in range(300):
        x, y = rng.randrange(WIDTH), rng.randrange(HEIGHT)
        draw.line([x, y, x + rng.randrange(-400, 400), y + rng.randrange(-400, 400)],
                  fill=tuple(rng.randrange(256) for _ in range(3)), width=rng.randrange(1, 6))
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    grain = Image.merge("RGB", [Image.effect_noise((WIDTH, HEIGHT), 48) for _ in range(3)])
    image = Image.blend(image, grain, 0.12)
    image.save(path, "JPEG", quality=92)


def make_photos(folder: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        path = folder / f"photo_{index:03d}.jpg"
        if not path.exists():
            make_photo(path, index)
        paths.append(path)
    return paths


# -- the methods (run in worker processes) -----------------------------------------------------

def thumb_syncd(path: str) -> int:
    from preprocess import BytesSource, preprocess

    with open(path, "rb") as file:
        outcome = preprocess(BytesSource(file.read(), os.path.basename(path)))
    assert outcome.ok, outcome.errors
    return len(outcome.thumbnail.data)


def _pillow(path: str, reducing_gap: float | None) -> int:
    from PIL import Image

    with Image.open(path) as image:
        image.thumbnail((SIZE, SIZE), reducing_gap=reducing_gap)
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=QUALITY)
    return len(out.getvalue())


def thumb_plain(path: str) -> int:
    return _pillow(path, None)


def thumb_pillow(path: str) -> int:
    return _pillow(path, 2.0)


def thumb_pyvips(path: str) -> int:
    import pyvips

    return len(pyvips.Image.thumbnail(path, SIZE).jpegsave_buffer(Q=QUALITY))


FUNCTIONS = {"syncd": thumb_syncd, "plain": thumb_plain, "pillow": thumb_pillow, "pyvips": thumb_pyvips}


def _warm(method: str, path: str, barrier) -> None:
    FUNCTIONS[method](path)
    barrier.wait()


def start_pool(method: str, processes: int, sample: Path):
    """A pool of `processes` warm workers for `method`: imports done, one thumbnail made."""
    env = {"VIPS_CONCURRENCY": "1"} if method == "pyvips" and processes > 1 else {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # inherited by the workers as they start
    try:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(processes + 1)
        pool = context.Pool(processes, initializer=_warm, initargs=(method, str(sample), barrier))
        barrier.wait()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return pool


def measure(pool, method: str, paths: list[Path]) -> float:
    """Images per second for one pass over `paths`."""
    started = time.perf_counter()
    sizes = pool.map(FUNCTIONS[method], [str(p) for p in paths], chunksize=1)
    seconds = time.perf_counter() - started
    assert all(sizes)
    return len(paths) / seconds


def have_pyvips() -> str | None:
    try:
        import pyvips
    except (ImportError, OSError) as error:
        return f"pyvips not available ({type(error).__name__}: {error}); install the bench extra"
    return None if pyvips else "pyvips not available"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--images", type=int, default=12, help="images per timing")
    parser.add_argument("--processes", default=f"1,{os.cpu_count() or 1}",
                        help="comma-separated process counts (default: 1 and the CPU count)")
    parser.add_argument("--rounds", type=int, default=5, help="timings per pair; the median is kept")
    parser.add_argument("--keep", type=Path, help="folder for the images (kept, reused)")
    args = parser.parse_args()
    counts = sorted({int(p) for p in args.processes.split(",")})
    missing_vips = have_pyvips()
    methods = [m for m in METHODS if m != "pyvips" or not missing_vips]
    if missing_vips:
        print(f"note: {missing_vips}: the pyvips comparison is skipped", file=sys.stderr)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="syncd-preprocess-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    paths = make_photos(folder, args.images)
    mean_mb = statistics.mean(p.stat().st_size for p in paths) / 1e6
    print(f"{len(paths)} JPEGs {WIDTH}x{HEIGHT} (mean {mean_mb:.1f} MB) in {folder}"
          f" ({time.monotonic() - started:.0f} s to make)", file=sys.stderr)

    results: dict[tuple[str, int], list[float]] = {}
    shuffle = random.Random(0)
    for processes in counts:
        # All methods' pools stay up and take turns, pass by pass, in a shuffled order, so
        # that the machine's other work slows them alike.
        pools = {method: start_pool(method, processes, paths[0]) for method in methods}
        try:
            for round_ in range(args.rounds):
                for method in shuffle.sample(methods, len(methods)):
                    rate = measure(pools[method], method, paths)
                    results.setdefault((method, processes), []).append(rate)
                    print(f"x{processes} round {round_ + 1}: {method:7s} {rate:6.1f}/s", file=sys.stderr)
        finally:
            for pool in pools.values():
                pool.terminate()
                pool.join()

    median = {key: statistics.median(rates) for key, rates in results.items()}
    print(f"\nthumbnails/s, {SIZE} px, 12 MP JPEG ({mean_mb:.1f} MB mean), median of {args.rounds}"
          f" rounds, {os.cpu_count()} CPUs")
    header = f"{'processes':>9} " + "".join(f"{m:>9}" for m in methods)
    header += f"{'syncd/plain':>13}" + (f"{'syncd/pyvips':>14}" if not missing_vips else "")
    print(header)
    ok = True
    for processes in counts:
        row = f"{processes:>9} " + "".join(f"{median[(m, processes)]:>9.1f}" for m in methods)
        versus_plain = median[("syncd", processes)] / median[("plain", processes)]
        row += f"{versus_plain:>12.2f}x"
        ok &= versus_plain >= 3
        if not missing_vips:
            versus_vips = median[("syncd", processes)] / median[("pyvips", processes)]
            row += f"{versus_vips:>13.2f}x"
            ok &= versus_vips >= 1
        print(row)
    print(f"\ntargets (>= 3x plain Pillow, >= 1x pyvips): {'met' if ok else 'NOT met'}"
          + (" (pyvips not measured)" if missing_vips else ""))
    if not args.keep:
        for path in paths:
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
