"""Images as they come in the wild: real public files (tests/data/corpus, SOURCES.md there)
for every class of problem, and the whole corpus checked against exiftool."""

from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image, ImageChops

from corpus import CORPUS, compare, corpus_files, exiftool
from preprocess import BytesSource, Options, preprocess
from preprocess.fileinfo import sniff_mimetype

PILLOW = CORPUS / "pillow"
SAMPLES = CORPUS / "exif-samples"
# A failed image's reason starts with one of these: each names the cause.
REASONS = ("damaged image", "truncated image", "unsupported image format", "image too large",
           "empty file", "not an image")


def run(path, **options):
    return preprocess(BytesSource(path.read_bytes(), path.name), Options(**options))


def thumbnail(outcome) -> Image.Image:
    assert outcome.thumbnail is not None, outcome.errors
    return Image.open(io.BytesIO(outcome.thumbnail.data)).convert("L")


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two grey pictures (0-255), b resized to a."""
    diff = ImageChops.difference(a, b.resize(a.size))
    return sum(diff.histogram()[i] * i for i in range(256)) / (a.width * a.height)


# -- orientation --------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_once(orientation):
    outcome = run(PILLOW / f"g4_orientation_{orientation}.tif")
    assert outcome.ok, outcome.errors
    system = outcome.system
    assert system["exif"]["Orientation"] == orientation
    # as stored in the file (exiftool says the same), not as Pillow reports it turned
    stored = (88, 590) if orientation >= 5 else (590, 88)
    assert (system["width"], system["height"]) == stored
    upright = thumbnail(run(PILLOW / "g4_orientation_1.tif"))
    assert thumbnail(outcome).size == upright.size
    assert difference(upright, thumbnail(outcome)) < 5


@pytest.mark.parametrize("name", ["hopper_orientation_6.webp", "hopper_orientation_8.webp",
                                  *(f"hopper_orientation_{i}.jpg" for i in range(2, 9))])
def test_jpeg_and_webp_thumbnails_are_upright(name):
    upright = thumbnail(run(PILLOW / "hopper.jpg"))
    assert difference(upright, thumbnail(run(PILLOW / name))) < 8


@pytest.mark.parametrize("name", [f"rot{r}mir{m}.avif" for r in range(4) for m in range(2)])
def test_avif_rotation_and_mirror_give_an_upright_thumbnail(name):
    outcome = run(PILLOW / name)
    assert outcome.ok and outcome.system["mimetype"] == "image/avif"
    upright = thumbnail(run(PILLOW / "rot0mir0.avif"))
    assert difference(upright, thumbnail(outcome)) < 8


def test_xmp_and_png_text_chunk_orientation():
    assert run(PILLOW / "xmp_tags_orientation.png").system["exif"]["Orientation"] == 3
    # ImageMagick's "Raw profile type exif" text chunk
    magick = run(PILLOW / "exif_imagemagick_orientation.png").system
    assert magick["exif"]["Orientation"] == 3


def test_nul_bytes_end_exif_strings():
    outcome = run(SAMPLES / "jpg_WWL_(Polaroid)_ION230.jpg")
    assert outcome.system["exif"]["Model"] == "ION230"


# -- file facts survive every probe error ------------------------------------------------------

@pytest.mark.parametrize(("name", "reason"), [
    ("psd-oob-write-overflow.psd", "damaged image (PSD)"),
    ("truncated_image.png", "truncated image"),
    ("truncated_jpeg.jpg", "truncated image"),
    ("broken_data_stream.png", "damaged image (PNG)"),
])
def test_damaged_files_keep_their_file_facts(name, reason):
    outcome = run(PILLOW / name)
    assert outcome.errors and outcome.errors[0].startswith(reason), outcome.errors
    system = outcome.system
    assert system["isBinary"] is True and system["encoding"] == "binary"
    assert system["mimetype"].startswith("image/") and system["size"] > 0


def test_damaged_bytes_of_a_known_format_say_damaged_not_unsupported():
    data = (PILLOW / "hopper.png").read_bytes()[:40] + b"\xff" * 200  # PNG signature, garbage after
    outcome = preprocess(BytesSource(data, "x.png"))
    assert outcome.errors[0].startswith("damaged image"), outcome.errors


def test_zero_page_tiff_and_frames_counted_from_the_whole_file():
    outcome = run(PILLOW / "total-pages-zero.tif")  # its page count tag says 0
    assert outcome.ok and outcome.system["frames"] == Image.open(PILLOW / "total-pages-zero.tif").n_frames
    gif = PILLOW / "iss634.gif"
    assert gif.stat().st_size > 64 * 1024  # more frames than the first read holds
    expected = Image.open(gif).n_frames
    assert expected > 5
    for options in ({}, {"thumbnails": False}):
        assert run(gif, **options).system["frames"] == expected
    assert run(PILLOW / "multipage.tiff", thumbnails=False).system["frames"] == 3


# -- every format the installed Pillow opens --------------------------------------------------

@pytest.mark.parametrize(("name", "mimetype", "size"), [
    ("hopper_1bit_plain.pbm", "image/x-portable-bitmap", (128, 128)),
    ("hopper_8bit_plain.pgm", "image/x-portable-graymap", (128, 128)),
    ("hopper_8bit_plain.ppm", "image/x-portable-pixmap", (128, 128)),
    ("hopper.xbm", "image/x-xbitmap", (128, 128)),
    ("hopper.xpm", "image/x-xpixmap", (128, 128)),
    ("hopper.fits", "image/fits", (128, 128)),
    ("hopper.dds", "image/vnd-ms.dds", (128, 128)),
    ("hopper.qoi", "image/qoi", (128, 128)),
    ("deerstalker.cur", "image/x-cursor", (32, 32)),
    ("blp2_raw.blp", "image/x-blp", (512, 128)),
    ("blp1_jpeg.blp", "image/x-blp", (256, 256)),
    ("hopper.ras", "image/x-sun-raster", (128, 128)),
    ("hopper.sgi", "image/rgb", (128, 128)),
    ("hopper.msp", "image/x-msp", (128, 128)),
    ("pil184.pcx", "image/x-pcx", (447, 144)),
    ("hopper.psd", "image/vnd.adobe.photoshop", (128, 128)),
    ("hopper.dcx", "image/dcx", (128, 128)),
    ("bw_gradient.imt", "image/x-imt", (256, 10)),
    ("a.fli", "video/fli", (320, 200)),
    ("test-card-lossless.jp2", "image/jp2", (640, 480)),
    ("16bit.cropped.j2k", "image/j2k", (64, 64)),
    ("hopper.avif", "image/avif", (128, 128)),
])
def test_every_pillow_format_gets_dimensions_and_a_thumbnail(name, mimetype, size):
    outcome = run(PILLOW / name)
    assert outcome.ok, outcome.errors
    assert outcome.system["mimetype"] == mimetype
    assert (outcome.system["width"], outcome.system["height"]) == size
    assert max(thumbnail(outcome).size) == min(256, max(size))


def test_plain_text_images_stay_text_in_their_encoding():
    outcome = run(PILLOW / "hopper.xbm")
    assert outcome.system["isBinary"] is False and outcome.system["encoding"] == "7bit"
    assert run(PILLOW / "hopper_8bit_plain.pgm").system["isBinary"] is False


def test_binary_content_never_takes_its_mimetype_from_the_name():
    assert run(PILLOW / "courB08.pil").system["mimetype"] == "application/octet-stream"
    assert sniff_mimetype(b"\x00\x01\x02binary", "report.docx", is_binary=True) == "application/octet-stream"


# -- HEIC / HEIF ------------------------------------------------------------------------------

def test_iphone_heic_dimensions_gps_and_thumbnail():
    outcome = run(SAMPLES / "heic_IMG_5195.HEIC")
    assert outcome.ok, outcome.errors
    system = outcome.system
    assert system["mimetype"] == "image/heic"
    assert (system["width"], system["height"]) == (2566, 3313)
    assert system["exif"]["Make"] == "Apple"
    assert system["location"]["latitude"] == pytest.approx(39.0513444, abs=1e-5)
    assert system["location"]["longitude"] == pytest.approx(-94.2887722, abs=1e-5)
    assert thumbnail(outcome).size == (198, 256)


@pytest.mark.parametrize("name", ["exif-samples/heic_samplefilehub.heif", "pillow/hopper.heif"])
def test_heif_files(name):
    outcome = run(CORPUS / name)
    assert outcome.ok, outcome.errors
    assert outcome.system["mimetype"] == "image/heic" and outcome.system["width"] > 0
    assert outcome.thumbnail is not None


# -- the corpus against exiftool --------------------------------------------------------------

@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed (.ci/run installs it)")
def test_corpus_agrees_with_exiftool():
    files = corpus_files()
    assert len(files) >= 100
    tool = exiftool(files)
    fields = disagreements = 0
    report = []
    for path in files:
        outcome = run(path)
        for reason in outcome.errors:
            assert reason.startswith(REASONS), (path.name, reason)
        for name, theirs, ours in compare(outcome.system, tool.get(str(path), {})):
            fields += 1
            if theirs != ours:
                disagreements += 1
                report.append(f"{path.name} {name}: exiftool {theirs!r}, syncd {ours!r}")
    assert fields >= 300
    assert 1 - disagreements / fields >= 0.995, "\n".join(report)
