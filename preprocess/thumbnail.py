"""Thumbnails: the image's first frame, shrunk to fit a square, shown upright, as an RGB JPEG
(or WebP, RGBA where the image has transparency).

Speed comes from decoding less: a JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT
scaling (Pillow's `draft`), the largest reduction that still leaves at least the thumbnail's
size; the small result is then resampled (bicubic) to the exact size. Everything after the
decode (colour conversion, rotation, alpha) works on the small image.

Inputs that are not plain 8-bit RGB are made into a proper RGB (or grey) picture:
CMYK through its embedded ICC profile where there is one, 16- and 32-bit samples scaled
down rather than clipped, palettes expanded, transparency composited on a background for
JPEG (kept for WebP), animated and multi-page files by their first frame.
"""

from __future__ import annotations

import functools
import io
import warnings

from PIL import Image, ImageCms

from .errors import CorruptImage, OverMemoryBudget
from .image import DEFAULT_MAX_PIXELS, check_pixels, describe, open_image, orientation_of, pillow_turns_on_load

# format -> (file extension, content type)
from .limits import FORMATS  # noqa: E402
from .options import Thumbnail  # noqa: E402  (re-exported: the result type)

# EXIF orientation -> the transpose that shows the image upright (EXIF 2.32, tag 0x0112).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def make_thumbnail(
    data: bytes,
    *,
    size: int = 256,
    format: str = "jpeg",  # noqa: A002 - the natural name
    quality: int = 85,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
    memory_mb: int | None = None,
) -> Thumbnail:
    """A thumbnail of the image in `data`, its longest side `size` pixels (never enlarged).
    With `memory_mb`, an image whose decode (at the reduced scale the format allows) would
    take more than that raises OverMemoryBudget before anything is decoded."""
    if format not in FORMATS:
        raise ValueError(f"thumbnail format {format!r}: one of {', '.join(FORMATS)}")
    with open_image(data) as image, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damaged EXIF Pillow skips while loading
        check_pixels(image.width, image.height, max_pixels)
        orientation = orientation_of(image)
        icc = image.info.get("icc_profile")
        image.draft("RGB", (size, size))  # JPEG only: decode at reduced scale
        if memory_mb is not None:
            _check_memory(image, memory_mb)
        try:
            image.load()
        except OSError as error:
            message = str(error)
            if "truncated" in message:
                raise CorruptImage(f"truncated image: {message}") from None
            raise CorruptImage(f"damaged image ({image.format}): {message}") from None
        except Exception as error:  # noqa: BLE001 - a decoder on bad bytes raises anything
            raise CorruptImage(f"damaged image ({image.format}): {describe(error)}") from None
        frame = _displayable(image)
        frame.thumbnail((size, size), Image.Resampling.BICUBIC)
        frame = _to_rgb(frame, icc, keep_alpha=format == "webp", background=background)
        if orientation in _UPRIGHT and not pillow_turns_on_load(image):
            frame = frame.transpose(_UPRIGHT[orientation])
        return encode(frame, format=format, quality=quality)


def from_frame(image: Image.Image, *, size: int = 256, format: str = "jpeg",  # noqa: A002
               quality: int = 85, rotate: int = 0) -> Thumbnail:
    """A thumbnail of a decoded RGB picture (a video frame), turned `rotate` degrees
    counter-clockwise (a multiple of 90) to show it upright."""
    frame = image.copy() if image.size[0] <= size and image.size[1] <= size else image
    frame.thumbnail((size, size), Image.Resampling.BICUBIC)
    turn = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
            270: Image.Transpose.ROTATE_270}.get(rotate % 360)
    if turn is not None:
        frame = frame.transpose(turn)
    return encode(frame if frame.mode == "RGB" else frame.convert("RGB"), format=format, quality=quality)


def encode(frame: Image.Image, *, format: str, quality: int) -> Thumbnail:  # noqa: A002
    out = io.BytesIO()
    if format == "jpeg":
        frame.save(out, "JPEG", quality=quality)
    else:
        frame.save(out, "WEBP", quality=quality, method=4)
    return Thumbnail(out.getvalue(), format, frame.width, frame.height)


# Peak bytes a pixel costs from decode to thumbnail, by mode as decoded: Pillow keeps RGB and
# two-band modes in 4 bytes a pixel, and palettes and alpha take converted copies (measured
# on 4000x4000 PNGs: RGB 4.3, RGBA and LA 8.3, P 5.3, L 1.2 bytes a pixel at peak RSS).
_PEAK_BYTES = {"1": 1.2, "L": 1.2, "P": 5.3, "I;16": 7.0, "I;16B": 7.0, "I;16L": 7.0, "I": 9.0,
               "F": 9.0, "RGB": 4.3, "YCbCr": 4.3}
_PEAK_DEFAULT = 8.3  # RGBA, LA, PA, CMYK and the rest


def _check_memory(image: Image.Image, memory_mb: int) -> None:
    need = image.width * image.height * _PEAK_BYTES.get(image.mode, _PEAK_DEFAULT) / 2**20
    if need > memory_mb:
        raise OverMemoryBudget(
            f"image too large for the memory budget: a {image.width}x{image.height} {image.mode}"
            f" {image.format or ''} image needs about {need:.0f} MB to decode, more than"
            f" preprocess.memory_mb = {memory_mb} (metadata recorded, no thumbnail)")


def _displayable(image: Image.Image) -> Image.Image:
    """The frame in a mode that resamples well: 8-bit grey or colour, with alpha if any."""
    mode = image.mode
    if mode in ("RGB", "L", "RGBA", "LA", "CMYK"):
        return image
    if mode in ("P", "PA"):
        return image.convert("RGBA" if image.has_transparency_data else "RGB")
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16"):
        # 16-bit samples: 65535 -> 255, scaled, not clipped.
        return image.convert("I").point(lambda v: v * (255 / 65535)).convert("L")
    if mode in ("I", "F"):
        low, high = image.getextrema()
        if high <= low:
            return Image.new("L", image.size, 0)
        scale = 255 / (high - low)
        return image.point(lambda v: (v - low) * scale).convert("L")
    if mode in ("RGBa", "La"):
        return image.convert(mode.upper())
    return image.convert("RGB")  # YCbCr, LAB, HSV, RGBX, ...


def _to_rgb(image: Image.Image, icc: bytes | None, *, keep_alpha: bool,
            background: tuple[int, int, int]) -> Image.Image:
    if image.mode == "CMYK":
        return _from_cmyk(image, icc)
    if image.mode in ("RGBA", "LA"):
        if keep_alpha:
            return image.convert("RGBA")
        flat = Image.new("RGB", image.size, background)
        flat.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        return flat
    return image if image.mode == "RGB" else image.convert("RGB")


def _from_cmyk(image: Image.Image, icc: bytes | None) -> Image.Image:
    if icc:
        try:
            return ImageCms.applyTransform(image, _cmyk_to_srgb(icc))
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: fall back to the plain conversion
    return image.convert("RGB")


@functools.lru_cache(maxsize=8)
def _cmyk_to_srgb(icc: bytes) -> ImageCms.ImageCmsTransform:
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), "CMYK", "RGB")
