"""Videos made in the tests with PyAV's encoders, and ffprobe/ffmpeg as the reference."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

RED, GREEN, BLUE, WHITE = (220, 30, 30), (30, 200, 30), (30, 30, 220), (240, 240, 240)


def pattern(width: int, height: int, shift: int = 0) -> Image.Image:
    """Four coloured quadrants (red, green / blue, white) with a moving bar: easy to check
    which way up a picture is."""
    image = Image.new("RGB", (width, height))
    for color, box in ((RED, (0, 0, width // 2, height // 2)), (GREEN, (width // 2, 0, width, height // 2)),
                       (BLUE, (0, height // 2, width // 2, height)), (WHITE, (width // 2, height // 2, width, height))):
        image.paste(color, box)
    x = (shift * 4) % width
    image.paste((128, 128, 0), (x, height // 2 - 4, min(width, x + 8), height // 2 + 4))
    return image


def encode(path: Path, *, codec: str = "libx264", audio: str | None = "aac", size=(320, 240),
           fps: int = 25, seconds: float = 4.0, black_seconds: float = 1.0, rotation: int = 0,
           options: dict | None = None, noise: bool = False) -> Path:
    """A video of `seconds`, black for the first `black_seconds` (a fade-in), then the
    quadrant pattern; `rotation` is written as the display matrix (counter-clockwise);
    `noise`: random pixels instead, which do not compress (a large file from few seconds)."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = container.add_stream(audio, rate=48000 if audio in ("libopus", "opus") else 44100)
        black = Image.new("RGB", size)
        count = int(seconds * fps)
        for i in range(count):
            if noise:
                picture = Image.frombytes("RGB", size, os.urandom(width * height * 3))
            else:
                picture = black if i < black_seconds * fps else pattern(width, height, i)
            frame = av.VideoFrame.from_image(picture)
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _silence(container, sound, seconds)
    return path


def _silence(container, stream, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    samples = stream.codec_context.frame_size or 1024
    layout = "stereo"
    fmt = stream.codec_context.format.name
    pts = 0
    while pts < seconds * rate:
        frame = av.AudioFrame(format=fmt, layout=layout, samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = rate
        frame.pts = pts
        pts += samples
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def ffprobe(path: Path, *, count_frames: bool = False) -> dict:
    tool = shutil.which("ffprobe")
    if tool is None:
        raise RuntimeError("ffprobe is not installed (apt-get install ffmpeg)")
    args = [tool, "-v", "error", "-show_format", "-show_streams", "-of", "json"]
    if count_frames:
        args.append("-count_frames")
    return json.loads(subprocess.run([*args, str(path)], capture_output=True, check=True).stdout)


def ffmpeg_frame(path: Path, seconds: float) -> Image.Image:
    """The frame ffmpeg shows at `seconds` (turned upright by its autorotate), as RGB."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{seconds:.3f}", "-i", str(path),
                          "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"],
                         capture_output=True, check=True).stdout
    return Image.open(io.BytesIO(out)).convert("RGB")
