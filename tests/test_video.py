"""Videos: facts checked against ffprobe, upright representative-frame thumbnails checked
against ffmpeg's own frame, bad files, ranged reads, and the whole path through sync."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from preprocess import BytesSource, Options, preprocess
from local_http import http_server  # noqa: F401 - the fixture
from test_jobs import bucket, items, make_app  # noqa: F401 - the fixtures
from videos import BLUE, GREEN, RED, WHITE, encode, ffmpeg_frame, ffprobe

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None,
                                reason="ffprobe/ffmpeg not installed (.ci/run installs them)")
MEDIA = Path(__file__).parent / "data" / "media"
BUNNY = MEDIA / "big_buck_bunny_6s.mp4"
QUIET = {"x265-params": "log-level=error"}

# name, video codec, audio codec, ffprobe's names for them
KINDS = [
    ("h264.mp4", "libx264", "aac", "h264", "aac"),
    ("hevc.mkv", "libx265", "libopus", "hevc", "opus"),
    ("vp9.webm", "libvpx-vp9", "libopus", "vp9", "opus"),
    ("mpeg4.avi", "mpeg4", "libmp3lame", "mpeg4", "mp3"),
    ("h264.mov", "libx264", None, "h264", None),
    ("av1.mp4", "libsvtav1", None, "av1", None),
]


def run(path: Path, **options):
    return preprocess(BytesSource(path.read_bytes(), path.name), Options(**options))


def picture(outcome) -> Image.Image:
    assert outcome.thumbnail is not None, outcome.errors
    return Image.open(io.BytesIO(outcome.thumbnail.data)).convert("RGB")


def near(a, b, tolerance=60) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=False))


def at(image: Image.Image, x: float, y: float):
    return image.getpixel((int(x * (image.width - 1)), int(y * (image.height - 1))))


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("L"), b.convert("L").resize(a.size))
    return ImageStat.Stat(diff).mean[0]


@pytest.mark.parametrize(("name", "codec", "audio", "video_name", "audio_name"), KINDS)
def test_video_facts_agree_with_ffprobe(tmp_path, name, codec, audio, video_name, audio_name):
    path = encode(tmp_path / name, codec=codec, audio=audio, options=QUIET if codec == "libx265" else None)
    outcome = run(path)
    assert outcome.ok, outcome.errors
    system = outcome.system
    probe = ffprobe(path, count_frames=True)
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert system["isBinary"] and system["encoding"] == "binary"
    assert system["mimetype"].startswith("video/")
    assert system["codec"] == video["codec_name"] == video_name
    assert (system["width"], system["height"]) == (video["width"], video["height"]) == (320, 240)
    assert system["fps"] == pytest.approx(float(Fraction(video["avg_frame_rate"])), rel=1e-3)
    duration = float(video.get("duration") or probe["format"]["duration"])
    assert system["duration"] == pytest.approx(duration, abs=0.06)
    if "nb_frames" in video:  # the container keeps a count
        assert system["frames"] == int(video["nb_frames"])
    else:  # Matroska / WebM: duration x fps, against the frames ffprobe decodes
        assert abs(system["frames"] - int(video["nb_read_frames"])) <= 2
    assert system["bitRate"] == pytest.approx(int(probe["format"]["bit_rate"]), rel=0.03)
    assert system["rotation"] == 0
    sound = [s for s in probe["streams"] if s["codec_type"] == "audio"]
    if audio is None:
        assert system["audio"] is None and not sound
    else:
        assert system["audio"] == {"codec": sound[0]["codec_name"], "channels": sound[0]["channels"],
                                   "sampleRate": int(sound[0]["sample_rate"])}
        assert system["audio"]["codec"] == audio_name
    assert picture(outcome).size == (256, 192)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_video_thumbnail_is_upright_as_ffmpeg_shows_it(tmp_path, rotation):
    path = encode(tmp_path / f"r{rotation}.mp4", rotation=rotation, audio=None)
    outcome = run(path)
    assert outcome.ok, outcome.errors
    system = outcome.system
    assert (system["width"], system["height"]) == (320, 240)  # as stored
    side = ffprobe(path)["streams"][0].get("side_data_list", [{}])[0]
    assert system["rotation"] % 360 == side["rotation"] % 360
    ours = picture(outcome)
    theirs = ffmpeg_frame(path, 0.4 * system["duration"])  # a frame of the pattern, upright
    assert ours.size == ((192, 256) if rotation in (90, 270) else (256, 192))
    assert theirs.size[0] < theirs.size[1] if rotation in (90, 270) else theirs.size[0] > theirs.size[1]
    assert mean_difference(ours, theirs) < 20


def test_thumbnail_is_a_representative_frame_not_the_black_opening(tmp_path):
    path = encode(tmp_path / "fade.mp4", seconds=6, black_seconds=1.0)
    thumb = picture(run(path))
    for color, (x, y) in zip((RED, GREEN, BLUE, WHITE), [(0.2, 0.2), (0.8, 0.2), (0.2, 0.8), (0.8, 0.8)],
                             strict=True):
        assert near(at(thumb, x, y), color), color
    # a real film opening on black (Big Buck Bunny): its first frame is black, ours is not
    first = ffmpeg_frame(BUNNY, 0)
    assert ImageStat.Stat(first.convert("L")).mean[0] < 10
    outcome = run(BUNNY)
    assert outcome.ok, outcome.errors
    assert ImageStat.Stat(picture(outcome).convert("L")).mean[0] > 60


def test_real_sample_facts_agree_with_ffprobe():
    outcome = run(BUNNY)
    system = outcome.system
    probe = ffprobe(BUNNY)
    video, audio = probe["streams"][0], probe["streams"][1]
    assert system["mimetype"] == "video/mp4" and system["codec"] == "h264"
    assert (system["width"], system["height"]) == (video["width"], video["height"]) == (854, 480)
    assert system["frames"] == int(video["nb_frames"]) and system["fps"] == 24
    assert system["duration"] == pytest.approx(float(video["duration"]), abs=0.05)
    assert system["audio"] == {"codec": "aac", "channels": audio["channels"],
                               "sampleRate": int(audio["sample_rate"])}


# -- bad videos: a failed job with the reason, the file facts recorded ------------------------

def _faststart(tmp_path: Path) -> bytes:
    path = encode(tmp_path / "v.mp4", seconds=4)
    fast = tmp_path / "fast.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-c", "copy", "-movflags", "+faststart",
                    str(fast)], check=True)
    return fast.read_bytes()


def _unknown_codec(tmp_path: Path) -> bytes:
    data = encode(tmp_path / "v.avi", codec="mpeg4", audio=None).read_bytes()
    for fourcc in (b"FMP4", b"fmp4"):
        data = data.replace(fourcc, b"ZZZZ")  # a codec tag no decoder knows
    return data


@pytest.mark.parametrize(("name", "make", "reason"), [
    ("cut_index_first.mp4", lambda t: (d := _faststart(t))[: len(d) // 2], "truncated video"),
    ("cut_index_last.mp4", lambda t: encode(t / "v.mp4").read_bytes()[:4000], "damaged video (video/mp4)"),
    ("sound.mp4", lambda t: encode(t / "a.mp4", codec="libx264", seconds=2).read_bytes(), None),
    ("unknown.avi", _unknown_codec, "unsupported video codec"),
    ("empty.mp4", lambda t: b"", "empty file (0 bytes)"),
    ("notes.mp4", lambda t: b"just some words\n", "not a video: notes.mp4 holds text/plain content"),
])
def test_bad_videos_fail_with_the_reason_and_keep_file_facts(tmp_path, name, make, reason):
    data = make(tmp_path)
    if name == "sound.mp4":  # the audio track alone, no video stream
        src = tmp_path / "a.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-vn", "-c", "copy",
                        str(tmp_path / name)], check=True)
        data, reason = (tmp_path / name).read_bytes(), "no video stream in this"
    outcome = preprocess(BytesSource(data, name))
    assert outcome.errors and outcome.errors[0].startswith(reason), outcome.errors
    assert outcome.thumbnail is None
    system = outcome.system
    assert system["size"] == len(data) and "mimetype" in system and "isBinary" in system
    if data and name != "notes.mp4":
        assert system["isBinary"] is True and system["mimetype"].startswith("video/")


# -- ranged reads -----------------------------------------------------------------------------

class CountingSource(BytesSource):
    def __post_init__(self):
        super().__post_init__()
        self.reads: list[int] = []

    def open(self, offset=0, length=None):
        stream = super().open(offset, length)
        self.reads.append(len(stream.getbuffer()))
        return stream


def test_video_is_read_with_ranged_reads_not_whole(tmp_path):
    path = encode(tmp_path / "long.mp4", seconds=20, size=(320, 240), black_seconds=0, noise=True,
                  options={"g": "25", "preset": "ultrafast", "crf": "30"}, audio=None)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-c", "copy", "-movflags", "+faststart",
                    str(tmp_path / "fast.mp4")], check=True)
    data = (tmp_path / "fast.mp4").read_bytes()
    assert len(data) > 8_000_000
    source = CountingSource(data, "long.mp4")
    outcome = preprocess(source)
    assert outcome.ok, outcome.errors
    assert outcome.data is None  # never the whole file in memory
    assert max(source.reads) <= 1024 * 1024  # one window at a time
    assert sum(source.reads) < len(data) / 2  # only the index and the packets looked at


# -- end to end: sync, jobs, thumbnail in storage --------------------------------------------

def test_synced_videos_get_facts_and_a_thumbnail_in_storage(make_app, bucket, tmp_path):
    bucket.put("clips/a.mp4", encode(tmp_path / "a.mp4", rotation=90).read_bytes())
    bucket.put("clips/b.webm", encode(tmp_path / "b.webm", codec="libvpx-vp9", audio="libopus").read_bytes())
    bucket.put("clips/empty.mp4", b"")
    app = make_app("workers = 2", dataset='preprocessors = [{function = "custom_preprocessors:ranged_head",'
                   ' mimetypes = ["video/*"], input = "source", key = "head"}]')
    app.sync("photos")
    result = app.run_jobs()
    assert (result.done, result.failed) == (2, 1)
    found = items(app)
    for name in ("a.mp4", "b.webm"):
        item = found[f"/clips/{name}"]
        system = item["metadata"]["system"]
        assert system["codec"] in ("h264", "vp9") and system["duration"] == pytest.approx(4, abs=0.1)
        key = system["thumbnailId"]
        assert key == f".dataloop/thumbnails/{item['id']}.jpg"
        thumb = Image.open(io.BytesIO(bucket.get(key)))
        assert thumb.size == ((192, 256) if name == "a.mp4" else (256, 192))
        head = item["metadata"]["user"]["head"]  # the custom function got the ranged source
        assert head["has_open"] and not head["is_bytes"]
        assert head["bytes_4_12"] == bucket.get(f"clips/{name}")[4:12].hex()
    empty = found["/clips/empty.mp4"]["metadata"]["system"]
    assert empty["etl"]["status"] == "failed" and empty["etl"]["errors"] == ["empty file (0 bytes)"]


def test_linked_video_is_preprocessed_from_its_url(app, tmp_path, http_server):
    from syncd.imports.upload import import_link_files
    from syncd.imports.fetch import Fetcher, FetchPolicy
    from syncd.imports.links import LinkedSource, link_bytes, url_link_info

    url = http_server.route("/clips/bunny.mp4", BUNNY.read_bytes())
    link = tmp_path / "bunny_link.json"
    link.write_bytes(link_bytes(url_link_info(url)))
    import_link_files(app, "photos", [link])
    item = next(i for i in app.catalogue.iter_items(app.dataset("photos")))
    with LinkedSource(item, Fetcher(FetchPolicy(allow_hosts=("127.0.0.1",), timeout_seconds=5))) as source:
        outcome = preprocess(source)
    assert outcome.ok, outcome.errors
    assert (outcome.system["codec"], outcome.system["width"]) == ("h264", 854)
    assert outcome.system["size"] == BUNNY.stat().st_size and outcome.thumbnail is not None
    assert http_server.hits == ["/clips/bunny.mp4"]  # fetched once, read in ranges


READ_IN_A_WORKER = """
import io, json, sys
from preprocess import preprocess
def peak_rss_kib():  # this process's own high-water mark (ru_maxrss also counts the parent
    with open("/proc/self/status") as status:  # that forked it, from before the exec)
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
class FileSource:  # ranged reads of a local file, as a driver does
    def __init__(self, path):
        self.name, self.file = path, open(path, "rb")
        self.file.seek(0, 2)
        self.size = self.file.tell()
    def open(self, offset=0, length=None):
        self.file.seek(offset)
        return io.BytesIO(self.file.read(-1 if length is None else length))
outcome = preprocess(FileSource(sys.argv[1]))
print(json.dumps({"errors": outcome.errors, "codec": outcome.system.get("codec"),
                  "size": outcome.system["size"], "thumbnail": outcome.thumbnail is not None,
                  "rss_kib": peak_rss_kib()}))
"""


def test_a_2_gb_video_is_preprocessed_in_flat_memory(tmp_path):
    """The sample with a 2 GiB box after its index (a sparse file: no disk, no time to make),
    preprocessed in a process of its own, as a worker would: peak RSS well under 300 MB."""
    big = tmp_path / "big.mp4"
    data = BUNNY.read_bytes()
    padding = 2 * 1024**3
    with big.open("wb") as file:
        file.write(data)
        file.write(struct.pack(">I4sQ", 1, b"free", padding))  # a 64-bit size box
    size = len(data) + 16 + padding
    os.truncate(big, size)  # the hole reads as zeros
    out = subprocess.run([sys.executable, "-c", READ_IN_A_WORKER, str(big)], capture_output=True,
                         check=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    result = json.loads(out.stdout)
    assert result["errors"] == [] and result["codec"] == "h264" and result["thumbnail"]
    assert result["size"] == size > 2 * 10**9
    assert result["rss_kib"] < 300 * 1024


def test_video_preview_is_written_playable_and_cleaned_up_with_the_item(make_app, bucket, tmp_path):
    bucket.put("clips/turned.mp4", encode(tmp_path / "t.mp4", size=(640, 480), rotation=90).read_bytes())
    bucket.put("clips/bunny.mp4", BUNNY.read_bytes())
    app = make_app("workers = 2\nvideo_preview = true")
    app.sync("photos")
    assert app.run_jobs().done == 2
    found = items(app)
    for name, size in (("turned.mp4", (480, 360)), ("bunny.mp4", (640, 360))):
        item = found[f"/clips/{name}"]
        key = item["metadata"]["system"]["previewId"]
        assert key == f".dataloop/previews/{item['id']}.mp4"
        preview = tmp_path / f"preview-{name}"
        preview.write_bytes(bucket.get(key))
        assert preview.read_bytes()[4:8] == b"ftyp" and preview.read_bytes().find(b"moov") < \
            preview.read_bytes().find(b"mdat")  # the index first: it plays while it downloads
        probe = ffprobe(preview)
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
        assert (video["width"], video["height"]) == size
        assert float(probe["format"]["duration"]) == pytest.approx(item["metadata"]["system"]["duration"], abs=0.1)
        if name == "turned.mp4":  # the rotation stays in the matrix, as in the source
            assert video["side_data_list"][0]["rotation"] == ffprobe(tmp_path / "t.mp4")["streams"][0][
                "side_data_list"][0]["rotation"]
        else:
            assert [s["codec_name"] for s in probe["streams"] if s["codec_type"] == "audio"] == ["aac"]
    bunny = found["/clips/bunny.mp4"]["metadata"]["system"]
    bucket.delete("clips/bunny.mp4")
    app.sync("photos", prune=True)
    assert app.run_jobs().done == 1
    assert not bucket.exists(bunny["previewId"]) and not bucket.exists(bunny["thumbnailId"])
    # the video's content replaced by a still picture: its preview goes, its thumbnail stays
    turned = found["/clips/turned.mp4"]["metadata"]["system"]
    bucket.put("clips/turned.mp4", (MEDIA.parent / "corpus" / "pillow" / "hopper.jpg").read_bytes())
    app.sync("photos")
    app.run_jobs()
    system = items(app)["/clips/turned.mp4"]["metadata"]["system"]
    assert system["mimetype"] == "image/jpeg" and "previewId" not in system and "duration" not in system
    assert not bucket.exists(turned["previewId"]) and bucket.exists(system["thumbnailId"])
