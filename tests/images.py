"""Real image files for tests, made with Pillow (and by hand where Pillow cannot write them)."""

from __future__ import annotations

import io
import struct
import zlib
from PIL.TiffImagePlugin import IFDRational as Fraction  # what Pillow writes

from PIL import ExifTags, Image, ImageDraw

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)
QUADRANTS = {"top-left": RED, "top-right": GREEN, "bottom-left": BLUE, "bottom-right": WHITE}

# How a camera stores an upright picture for each EXIF orientation, from the tag's definition
# (EXIF 2.32, 0x0112: where the stored 0th row and 0th column are in the picture as seen):
# the inverse of the transform a viewer applies.
STORED_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,  # 0th row top, 0th column right: mirrored
    3: Image.Transpose.ROTATE_180,  # bottom, right
    4: Image.Transpose.FLIP_TOP_BOTTOM,  # bottom, left
    5: Image.Transpose.TRANSPOSE,  # left, top
    6: Image.Transpose.ROTATE_90,  # right, top: stored turned 90 degrees counter-clockwise
    7: Image.Transpose.TRANSVERSE,  # right, bottom
    8: Image.Transpose.ROTATE_270,  # left, bottom: stored turned 90 degrees clockwise
}


def quadrants(width: int = 160, height: int = 80) -> Image.Image:
    """An upright picture with a different colour in each quadrant."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    w, h = width // 2, height // 2
    draw.rectangle([0, 0, w - 1, h - 1], fill=RED)
    draw.rectangle([w, 0, width - 1, h - 1], fill=GREEN)
    draw.rectangle([0, h, w - 1, height - 1], fill=BLUE)
    draw.rectangle([w, h, width - 1, height - 1], fill=WHITE)
    return image


def save(image: Image.Image, format: str = "JPEG", **options) -> bytes:  # noqa: A002
    out = io.BytesIO()
    image.save(out, format, **options)
    return out.getvalue()


def oriented_jpeg(orientation: int, width: int = 160, height: int = 80) -> bytes:
    """A JPEG that shows `quadrants()` upright when its EXIF orientation is applied."""
    upright = quadrants(width, height)
    stored = upright if STORED_AS[orientation] is None else upright.transpose(STORED_AS[orientation])
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return save(stored, "JPEG", quality=95, exif=exif)


def camera_jpeg(size=(120, 90), *, gps: bool = True) -> bytes:
    """A JPEG with the usual camera EXIF fields and a GPS position (south-west, below sea level)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "Canon EOS R5"
    exif[ExifTags.Base.DateTime] = "2024:05:06 07:08:09"
    exif[ExifTags.Base.Orientation] = 1
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[ExifTags.Base.DateTimeOriginal] = "2024:05:06 07:08:09"
    sub[ExifTags.Base.ExposureTime] = Fraction(1, 250)
    sub[ExifTags.Base.FNumber] = Fraction(28, 10)
    sub[ExifTags.Base.ISOSpeedRatings] = 400
    sub[ExifTags.Base.FocalLength] = Fraction(50, 1)
    sub[ExifTags.Base.LensModel] = "RF24-105mm F4 L IS USM"
    if gps:
        g = exif.get_ifd(ExifTags.IFD.GPSInfo)
        g[ExifTags.GPS.GPSLatitudeRef] = "S"
        g[ExifTags.GPS.GPSLatitude] = (Fraction(33), Fraction(51), Fraction(3540, 100))  # 33.859833
        g[ExifTags.GPS.GPSLongitudeRef] = "W"
        g[ExifTags.GPS.GPSLongitude] = (Fraction(70), Fraction(30), Fraction(0))  # 70.5
        g[ExifTags.GPS.GPSAltitudeRef] = b"\x01"
        g[ExifTags.GPS.GPSAltitude] = Fraction(125, 10)
    return save(Image.new("RGB", size, (90, 120, 150)), "JPEG", exif=exif)


def noisy_jpeg(size=(640, 480), seed: int = 0, quality: int = 90) -> bytes:
    """A JPEG that does not compress to nothing (Pillow's Gaussian noise over a gradient)."""
    noise = Image.effect_noise(size, 40 + seed % 20).convert("RGB")
    gradient = Image.linear_gradient("L").resize(size).convert("RGB")
    return save(Image.blend(noise, gradient, 0.5), "JPEG", quality=quality)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: list[bytes]) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour, nor a lying header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw))
            + png_chunk(b"IEND", b""))


def rgb16_png(width: int = 40, height: int = 20, color=(65535, 32768, 0)) -> bytes:
    row = struct.pack(">" + "H" * 3 * width, *(color * width))
    return raw_png(width, height, 16, 2, [row] * height)


def grey16_png(width: int = 64, height: int = 32, value: int = 32896) -> bytes:
    row = struct.pack(">" + "H" * width, *([value] * width))
    return raw_png(width, height, 16, 0, [row] * height)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims an enormous picture."""
    return raw_png(width, height, 8, 2, [])


def palette_png_with_transparency() -> bytes:
    """A palette image: left half opaque red, right half transparent (palette entry 0)."""
    image = Image.new("P", (40, 20), 0)
    image.putpalette([0, 255, 0] + [255, 0, 0] * 255)  # entry 0 green but transparent, 1 red
    ImageDraw.Draw(image).rectangle([0, 0, 19, 19], fill=1)
    return save(image, "PNG", transparency=0)


def frames(colors=(RED, GREEN, BLUE), size=(30, 20)) -> list[Image.Image]:
    return [Image.new("RGB", size, color) for color in colors]


def animated_gif() -> bytes:
    first, *rest = frames()
    return save(first, "GIF", save_all=True, append_images=rest, duration=100, loop=0)


def animated_webp() -> bytes:
    first, *rest = frames()
    return save(first, "WEBP", save_all=True, append_images=rest, duration=100, lossless=True)


def multipage_tiff() -> bytes:
    first, *rest = frames()
    return save(first, "TIFF", save_all=True, append_images=rest)


def cmyk_jpeg(color=(0, 255, 255, 0), size=(64, 48)) -> bytes:
    """A CMYK JPEG; the default colour is pure red (no cyan, full magenta and yellow)."""
    return save(Image.new("CMYK", size, color), "JPEG", quality=95)


def truncated_jpeg() -> bytes:
    data = noisy_jpeg((320, 240))
    return data[: len(data) // 2]


def fake_heic() -> bytes:
    """An ISO-BMFF 'heic' file header: an image format nothing here decodes."""
    return struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic" + b"\x00" * 200


def jpeg_with_big_header(header_bytes: int = 200_000, size=(1600, 1200)) -> bytes:
    """A JPEG whose header (an ICC profile in APP2 segments) is larger than one 64 KiB read."""
    return save(Image.open(io.BytesIO(noisy_jpeg(size))), "JPEG", icc_profile=b"\x00" * header_bytes)


def color_at(image: Image.Image, x: float, y: float) -> tuple[int, ...]:
    """The colour at a fraction (x, y) of the image's width and height."""
    return image.convert("RGB").getpixel((int(x * (image.width - 1)), int(y * (image.height - 1))))


def near(actual, expected, tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))
