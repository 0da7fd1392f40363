"""The pure preprocessing functions, on real files made in the tests."""

from __future__ import annotations

import io

import pytest
from PIL import Image, JpegImagePlugin

import images
from preprocess import (
    BytesSource,
    Options,
    make_thumbnail,
    preprocess,
    probe,
)
from preprocess.fileinfo import scan, sniff_mimetype


def run(data: bytes, name: str = "a.jpg", **options):
    return preprocess(BytesSource(data, name), Options(**options))


def thumbnail_image(outcome) -> Image.Image:
    assert outcome.thumbnail is not None, outcome.errors
    return Image.open(io.BytesIO(outcome.thumbnail.data))


# -- file facts -------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "encoding", "binary"), [
    (b"plain ascii\r\nlines\n", "7bit", False),
    ("caf\u00e9 cr\u00e8me\n".encode(), "8bit", False),
    (b"latin-1 caf\xe9\n", "8bit", False),
    (b"x" * 998 + b"\r\n" + b"y" * 10, "7bit", False),
    (b"x" * 999 + b"\n", "binary", False),  # a line longer than RFC 2045 allows
    (b"x" * 999, "binary", False),
    (b"\x00\x01\x02binary", "binary", True),
    (b"", "7bit", False),
])
def test_encoding_is_a_classification_of_the_bytes(data, encoding, binary):
    result = scan(data)
    assert (result.encoding, result.is_binary) == (encoding, binary)


def test_encoding_scan_across_chunks_matches_one_pass():
    from preprocess.fileinfo import ByteScan
    data = (b"a" * 700 + b"\r\n") * 3 + b"b" * 500
    for cut in (1, 350, 701, 702, 703, 1500):
        chunked = ByteScan()
        chunked.feed(data[:cut])
        chunked.feed(data[cut:])
        assert chunked.finish().encoding == scan(data).encoding == "7bit"
    long = b"c" * 600 + b"d" * 600 + b"\n"
    chunked = ByteScan()
    chunked.feed(long[:600])
    chunked.feed(long[600:])
    assert chunked.finish().encoding == "binary"


def test_mimetype_comes_from_the_content_not_the_name():
    png = images.save(Image.new("RGB", (4, 4)), "PNG")
    assert run(png, "photo.jpg").system["mimetype"] == "image/png"
    assert run(images.animated_gif(), "x.bin").system["mimetype"] == "image/gif"
    assert run(b'{"a": 1}', "data.json").system["mimetype"] == "application/json"
    assert run(b"just words", "notes").system["mimetype"] == "text/plain"
    assert run(b"\x00\x01\x02\x03", "blob.dat").system["mimetype"] == "application/octet-stream"
    assert sniff_mimetype(b"\x00\x01junk", "fake.png", is_binary=True) == "application/octet-stream"


def test_non_image_gets_file_facts_and_no_thumbnail():
    outcome = run("h\u00e9llo\n".encode(), "notes.txt")
    assert outcome.ok and outcome.thumbnail is None
    assert outcome.system == {"originalname": "notes.txt", "size": 7, "encoding": "8bit",
                              "mimetype": "text/plain", "isBinary": False}


# -- image facts ------------------------------------------------------------------------------

def test_jpeg_facts_exif_and_gps_location():
    outcome = run(images.camera_jpeg((120, 90)))
    system = outcome.system
    assert outcome.ok
    assert (system["width"], system["height"], system["channels"]) == (120, 90, 3)
    assert system["mimetype"] == "image/jpeg" and system["isBinary"] and system["encoding"] == "binary"
    exif = system["exif"]
    assert exif["Orientation"] == 1
    assert exif["Make"] == "Canon" and exif["Model"] == "Canon EOS R5"
    assert exif["DateTimeOriginal"] == "2024:05:06 07:08:09"
    assert exif["ExposureTime"] == pytest.approx(1 / 250)
    assert exif["FNumber"] == pytest.approx(2.8)
    assert exif["ISOSpeedRatings"] == 400
    assert exif["FocalLength"] == pytest.approx(50)
    assert exif["LensModel"] == "RF24-105mm F4 L IS USM"
    assert system["location"] == {"latitude": pytest.approx(-33.859833, abs=1e-6),
                                  "longitude": pytest.approx(-70.5), "altitude": pytest.approx(-12.5)}


def test_image_without_exif_has_orientation_1_and_no_location():
    outcome = run(images.camera_jpeg(gps=False))
    assert "location" not in outcome.system
    assert run(images.save(Image.new("L", (5, 7)), "PNG"), "g.png").system["exif"] == {"Orientation": 1}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_dimensions_are_as_stored_before_rotation(orientation):
    facts = probe(images.oriented_jpeg(orientation))
    assert facts.orientation == orientation
    stored_portrait = orientation >= 5
    assert (facts.width, facts.height) == ((80, 160) if stored_portrait else (160, 80))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_thumbnail_shows_every_exif_orientation_upright(orientation):
    outcome = run(images.oriented_jpeg(orientation, 320, 160), thumbnail_size=64)
    thumb = thumbnail_image(outcome)
    assert thumb.size == (64, 32)  # landscape again, whatever way it was stored
    for (name, color), (x, y) in zip(images.QUADRANTS.items(),
                                     [(0.2, 0.2), (0.8, 0.2), (0.2, 0.8), (0.8, 0.8)], strict=True):
        assert images.near(images.color_at(thumb, x, y), color), (orientation, name)


def test_thumbnail_size_format_and_quality_follow_the_options():
    data = images.noisy_jpeg((1000, 500))
    jpeg = run(data, thumbnail_size=100, thumbnail_quality=50)
    assert jpeg.thumbnail.format == "jpeg" and jpeg.thumbnail.extension == "jpg"
    assert thumbnail_image(jpeg).size == (100, 50) and thumbnail_image(jpeg).format == "JPEG"
    better = run(data, thumbnail_size=100, thumbnail_quality=95)
    assert len(better.thumbnail.data) > len(jpeg.thumbnail.data)
    webp = run(data, thumbnail_format="webp")
    assert thumbnail_image(webp).format == "WEBP" and thumbnail_image(webp).size == (256, 128)
    assert webp.thumbnail.content_type == "image/webp"
    small = run(images.save(Image.new("RGB", (40, 30)), "PNG"), "s.png")
    assert thumbnail_image(small).size == (40, 30)  # never enlarged


def test_thumbnail_decodes_jpeg_at_reduced_scale(monkeypatch):
    scales = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = draft(self, mode, size)
        scales.append(result[1] if result else None)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    make_thumbnail(images.noisy_jpeg((2400, 1800)), size=256)
    # The decode is scaled, by at least 1/4 on each side of a 2400x1800 picture.
    assert scales and scales[0][2] - scales[0][0] <= 600


def test_same_input_gives_the_same_thumbnail():
    data = images.oriented_jpeg(6)
    assert make_thumbnail(data).data == make_thumbnail(data).data


# -- header-only reads ------------------------------------------------------------------------

class CountingSource(BytesSource):
    def __post_init__(self):
        super().__post_init__()
        self.read = 0

    def open(self, offset=0, length=None):
        stream = super().open(offset, length)
        self.read += len(stream.getbuffer())
        return stream


def test_without_thumbnails_only_the_header_is_read():
    data = images.noisy_jpeg((1600, 1200))
    assert len(data) > 300_000
    source = CountingSource(data, "big.jpg")
    outcome = preprocess(source, Options(thumbnails=False))
    assert outcome.ok and outcome.system["width"] == 1600
    assert source.read <= 64 * 1024


def test_header_read_grows_when_the_header_is_larger():
    data = images.jpeg_with_big_header(200_000)
    source = CountingSource(data, "icc.jpg")
    outcome = preprocess(source, Options(thumbnails=False, head_bytes=16 * 1024))
    assert outcome.ok and (outcome.system["width"], outcome.system["height"]) == (1600, 1200)
    assert 200_000 < source.read < len(data) - 100_000


def test_with_thumbnails_a_bomb_is_refused_before_the_rest_is_read():
    data = images.bomb_png() + b"\x00" * 500_000
    source = CountingSource(data, "bomb.png")
    outcome = preprocess(source, Options())
    assert outcome.errors and "max_pixels" in outcome.errors[0]
    assert source.read <= 64 * 1024


# -- bad images: each a clear reason ----------------------------------------------------------

@pytest.mark.parametrize(("name", "data", "reason"), [
    ("empty.jpg", b"", "empty file (0 bytes)"),
    ("half.jpg", images.truncated_jpeg(), "truncated image"),
    ("bomb.png", images.bomb_png(), "image too large: 100000 x 100000"),
    ("photo.heic", images.fake_heic(), "damaged image (image/heic)"),  # a HEIC header, no image
    ("a.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "unsupported image format (image/svg+xml)"),
    ("notes.jpg", b"not a picture at all\n", "not an image: notes.jpg holds text/plain content"),
])
def test_bad_images_fail_with_a_clear_reason(name, data, reason):
    outcome = run(data, name)
    assert not outcome.ok and outcome.thumbnail is None
    assert len(outcome.errors) == 1 and reason in outcome.errors[0], outcome.errors
    assert outcome.system["size"] == len(data)  # the file facts are still there


def test_pixel_limit_is_configurable():
    data = images.save(Image.new("RGB", (1200, 1000)), "PNG")
    assert run(data, "a.png").ok
    outcome = run(data, "a.png", max_pixels=1_000_000)
    assert outcome.errors == ["image too large: 1200 x 1000 = 1200000 pixels, more than max_pixels"
                              " = 1000000 (possible decompression bomb)"]
    assert outcome.system["width"] == 1200


# -- unusual but valid images: handled properly -----------------------------------------------

def test_cmyk_jpeg_gives_an_rgb_thumbnail():
    outcome = run(images.cmyk_jpeg())
    assert outcome.ok
    assert (outcome.system["channels"], outcome.system["colorMode"]) == (4, "CMYK")
    thumb = thumbnail_image(outcome)
    assert thumb.mode == "RGB" and images.near(images.color_at(thumb, 0.5, 0.5), images.RED, 60)


def test_16_bit_grey_png_is_scaled_not_clipped():
    outcome = run(images.grey16_png(value=32896), "g.png")
    assert outcome.ok
    assert (outcome.system["channels"], outcome.system["bitDepth"]) == (1, 16)
    thumb = thumbnail_image(outcome)
    assert thumb.mode == "RGB" and images.near(thumb.getpixel((5, 5)), (128, 128, 128), 3)


def test_16_bit_rgb_png():
    outcome = run(images.rgb16_png(color=(65535, 32768, 0)), "c.png")
    assert outcome.ok
    assert (outcome.system["channels"], outcome.system["bitDepth"]) == (3, 16)
    assert images.near(images.color_at(thumbnail_image(outcome), 0.5, 0.5), (255, 128, 0), 10)


def test_palette_with_transparency():
    data = images.palette_png_with_transparency()
    outcome = run(data, "p.png")
    assert outcome.ok and outcome.system["channels"] == 4 and outcome.system["colorMode"] == "P"
    jpeg = thumbnail_image(outcome)
    assert jpeg.mode == "RGB"
    assert images.near(images.color_at(jpeg, 0.1, 0.5), images.RED)
    assert images.near(images.color_at(jpeg, 0.9, 0.5), images.WHITE)  # transparent -> background
    webp = thumbnail_image(run(data, "p.png", thumbnail_format="webp"))
    assert webp.mode == "RGBA" and webp.getpixel((webp.width - 2, 5))[3] == 0


@pytest.mark.parametrize(("name", "make", "mimetype"), [
    ("a.gif", images.animated_gif, "image/gif"),
    ("a.webp", images.animated_webp, "image/webp"),
    ("a.tiff", images.multipage_tiff, "image/tiff"),
])
def test_animations_and_pages_use_the_first_frame(name, make, mimetype):
    outcome = run(make(), name)
    assert outcome.ok, outcome.errors
    assert outcome.system["mimetype"] == mimetype
    assert outcome.system["frames"] == 3
    assert (outcome.system["width"], outcome.system["height"]) == (30, 20)
    assert images.near(images.color_at(thumbnail_image(outcome), 0.5, 0.5), images.RED)


# -- handlers by media type -------------------------------------------------------------------

def test_a_registered_handler_gets_its_mimetype_and_owns_its_keys():
    from preprocess import Handler, handlers, register, system_keys

    csv = Handler("csv", ("text/csv",), frozenset({"lines"}), "custom_preprocessors:count_lines")
    register(csv)
    try:
        assert "lines" in system_keys() and "duration" in system_keys() and "exif" in system_keys()
        outcome = run(b"a,b\n" * 5000, "table.csv")
        assert outcome.ok and outcome.system["mimetype"] == "text/csv"
        assert outcome.system["lines"] == 5000 and outcome.thumbnail is None
        assert run(b"plain\n", "notes.txt").system.get("lines") is None  # other types: not called
    finally:
        handlers.HANDLERS.remove(csv)
    assert "lines" not in system_keys()
