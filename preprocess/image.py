"""Image facts from the header alone: size, channels, bit depth, frames, EXIF and GPS.

`probe(head, complete=False)` works on a prefix of the file: Pillow opens images lazily,
reading only the header (and, for JPEG, the EXIF segment before the pixels), about 70 us an
image. When the prefix ends too soon it raises `NeedMoreBytes` and the caller reads more,
so a ranged get of the first KBs is usually the only read.

Width, height and channels are as stored, before any EXIF rotation, as the reference platform
reports them; `exif["Orientation"]` says how to show the image. Channels count what a
decoder hands out: a palette image is 3 (RGB), or 4 with a transparent colour.
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from PIL import ExifTags, Image, UnidentifiedImageError

from . import formats
from .errors import CorruptImage, EmptyFile, ImageTooLarge, PreprocessError, UnsupportedImage

from .limits import DEFAULT_MAX_PIXELS  # noqa: E402  (Pillow's own decompression-bomb limit)

# The usual camera fields: (IFD, tag) -> name in metadata.system.exif.
_IFD0, _EXIF, _GPS = None, ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo
EXIF_FIELDS: dict[tuple[int | None, int], str] = {
    (_IFD0, ExifTags.Base.Orientation): "Orientation",
    (_IFD0, ExifTags.Base.Make): "Make",
    (_IFD0, ExifTags.Base.Model): "Model",
    (_IFD0, ExifTags.Base.Software): "Software",
    (_IFD0, ExifTags.Base.DateTime): "DateTime",
    (_EXIF, ExifTags.Base.DateTimeOriginal): "DateTimeOriginal",
    (_EXIF, ExifTags.Base.DateTimeDigitized): "DateTimeDigitized",
    (_EXIF, ExifTags.Base.OffsetTimeOriginal): "OffsetTimeOriginal",
    (_EXIF, ExifTags.Base.ExposureTime): "ExposureTime",
    (_EXIF, ExifTags.Base.FNumber): "FNumber",
    (_EXIF, ExifTags.Base.ISOSpeedRatings): "ISOSpeedRatings",
    (_EXIF, ExifTags.Base.FocalLength): "FocalLength",
    (_EXIF, ExifTags.Base.FocalLengthIn35mmFilm): "FocalLengthIn35mmFilm",
    (_EXIF, ExifTags.Base.Flash): "Flash",
    (_EXIF, ExifTags.Base.LensMake): "LensMake",
    (_EXIF, ExifTags.Base.LensModel): "LensModel",
}


class NeedMoreBytes(Exception):
    """The prefix ends before the header does: read at least `want` bytes and probe again."""

    def __init__(self, want: int):
        super().__init__(f"need at least {want} bytes")
        self.want = want


@dataclass(frozen=True)
class ImageFacts:
    format: str  # Pillow's name: JPEG, PNG, GIF, WEBP, TIFF, ...
    mimetype: str
    width: int
    height: int
    channels: int
    mode: str  # Pillow's mode as decoded: RGB, L, P, CMYK, I;16, ...
    bit_depth: int  # bits per sample as stored
    frames: int | None  # None: not counted yet (the probe saw only a prefix)
    exif: dict[str, Any] = field(default_factory=dict)
    location: dict[str, float] | None = None
    damage: str | None = None  # what is wrong with a file whose header was read

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def orientation(self) -> int:
        value = self.exif.get("Orientation", 1)
        return value if isinstance(value, int) and 1 <= value <= 8 else 1

    def as_system(self) -> dict[str, Any]:
        """The fields this adds to `metadata.system`."""
        system: dict[str, Any] = {
            "width": self.width, "height": self.height, "channels": self.channels,
            "bitDepth": self.bit_depth, "colorMode": self.mode,
            "exif": {"Orientation": self.orientation, **self.exif},
        }
        if self.frames is not None:
            system["frames"] = self.frames
        if self.location:
            system["location"] = self.location
        return system


@contextmanager
def open_image(data: bytes, *, complete: bool = True, mimetype: str | None = None) -> Iterator[Image.Image]:
    """Pillow's lazy open of `data`, its errors turned into preprocess errors (or NeedMoreBytes
    when `data` is only a prefix). Nothing is decoded yet, and the size is not checked:
    callers apply their own pixel limit (`check_pixels`), not Pillow's global one."""
    if not data:
        raise EmptyFile("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bomb warnings (our own limit applies), damaged tags skipped
        try:
            try:
                image = Image.open(io.BytesIO(data))
            except Image.DecompressionBombError:
                # Pillow's own limit; the caller applies its max_pixels to the real size.
                image = _open_without_pillow_limit(data)
        except UnidentifiedImageError:
            if not complete:
                raise NeedMoreBytes(len(data) * 4) from None
            if mimetype and formats.pillow_can_open(mimetype):
                raise CorruptImage(f"damaged image ({mimetype}): no decoder accepts these bytes") from None
            raise UnsupportedImage(f"unsupported image format{f' ({mimetype})' if mimetype else ''}:"
                                   " no decoder for these bytes") from None
        except Exception as error:  # noqa: BLE001 - a plugin's parser on bad bytes raises anything
            if not complete:
                raise NeedMoreBytes(len(data) * 4) from None
            reason = describe(error)
            kind = f" ({mimetype})" if mimetype else ""
            if reason.lower().startswith("unsupported"):  # a variant Pillow does not decode
                raise UnsupportedImage(f"unsupported image format{kind}: {reason}") from None
            raise CorruptImage(f"damaged image header{kind}: {reason}") from None
    with image:
        yield image


_pillow_limit = threading.Lock()


def _open_without_pillow_limit(data: bytes) -> Image.Image:
    with _pillow_limit:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def probe(data: bytes, *, complete: bool = True, mimetype: str | None = None) -> ImageFacts:
    """Facts about the image starting with `data`. With complete=False, `data` is a prefix
    and NeedMoreBytes says how much to read before trying again; `frames` is then None for
    formats that may hold more than one frame (counting needs the whole file)."""
    with open_image(data, complete=complete, mimetype=mimetype) as image, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns of damaged EXIF it skips: not our reader's concern
        try:
            exif, location = _exif(image)
            width, height = stored_size(image)
            frames, damage = None, None
            if complete or not _may_have_frames(image):
                try:
                    frames = count_frames(image)
                except CorruptImage as error:
                    damage = str(error)
            return ImageFacts(
                format=image.format or "",
                mimetype=formats.mimetype_of(image.format or "", data, image.get_format_mimetype())
                or mimetype or "",
                width=width,
                height=height,
                channels=channels(image),
                mode=image.mode,
                bit_depth=_bit_depth(image, data),
                frames=frames,
                exif=exif,
                location=location,
                damage=damage,
            )
        except PreprocessError:
            raise
        except Exception as error:  # noqa: BLE001 - damaged metadata raises anything
            if not complete:
                raise NeedMoreBytes(len(data) * 4) from None
            raise CorruptImage(f"damaged image header ({image.format}): {describe(error)}") from None


def describe(error: BaseException) -> str:
    """An exception as a reason: its message, or its type when it has none."""
    return str(error) or type(error).__name__


def stored_size(image: Image.Image) -> tuple[int, int]:
    """Width and height as stored. Pillow reports a TIFF with orientation 5-8 already turned
    (and turns its pixels on load), as libheif does a HEIF; the file stores them the other
    way round."""
    if pillow_turns_on_load(image) and orientation_of(image) in (5, 6, 7, 8):
        return image.height, image.width
    return image.width, image.height


def pillow_turns_on_load(image: Image.Image) -> bool:
    """The decoder shows the pixels upright itself: Pillow applies a TIFF's orientation when
    it loads the pixels, libheif a HEIF's rotation and mirroring (pillow-heif then keeps
    the EXIF orientation as `original_orientation`)."""
    return image.format == "TIFF" or "original_orientation" in image.info


def _may_have_frames(image: Image.Image) -> bool:
    return hasattr(type(image), "n_frames") or hasattr(image, "n_frames")


def count_frames(image: Image.Image) -> int:
    """Frames or pages, from the whole file."""
    try:
        return int(getattr(image, "n_frames", 1))
    except Exception as error:  # noqa: BLE001 - a damaged frame table
        raise CorruptImage(f"damaged image ({image.format}): cannot count its frames:"
                           f" {describe(error)}") from None


def channels(image: Image.Image) -> int:
    if image.mode in ("P", "PA"):
        return 4 if image.has_transparency_data else 3
    return len(image.getbands())


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image too large: {width} x {height} = {width * height} pixels, more than"
            f" max_pixels = {max_pixels} (possible decompression bomb)"
        )


def orientation_of(image: Image.Image) -> int:
    if "original_orientation" in image.info:  # pillow-heif: the EXIF value before it turned
        value = image.info["original_orientation"]
    elif image.format == "TIFF":
        value = image.tag_v2.get(ExifTags.Base.Orientation, 1)
    else:
        value = _exif_of(image).get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# -- EXIF -----------------------------------------------------------------------------------

def _exif_of(image: Image.Image) -> Image.Exif:
    # PNG keeps EXIF in an eXIf chunk, or ImageMagick's "Raw profile type exif" text chunk;
    # PngImageFile.getexif decodes the whole image to look for one after the pixels, so only
    # what the header holds counts (the base method reads those chunks and XMP orientation).
    if image.format == "PNG" and "exif" not in image.info:
        return Image.Image.getexif(image)
    return image.getexif()


def _exif(image: Image.Image) -> tuple[dict[str, Any], dict[str, float] | None]:
    exif = _exif_of(image)
    if not exif:
        return {}, None
    ifds = {_IFD0: exif, _EXIF: exif.get_ifd(_EXIF), _GPS: exif.get_ifd(_GPS)}
    fields: dict[str, Any] = {}
    for (ifd, tag), name in EXIF_FIELDS.items():
        value = _json_value(ifds[ifd].get(tag))
        if value is not None:
            fields[name] = value
    if "original_orientation" in image.info:
        fields["Orientation"] = orientation_of(image)
    return fields, _location(ifds[_GPS])


def _json_value(value: Any) -> Any:
    """An EXIF value as JSON: rationals as numbers, text stripped, blobs and NaN left out."""
    if value is None:
        return None
    if isinstance(value, tuple):
        items = [_json_value(v) for v in value]
        if any(v is None for v in items):
            return None
        return items[0] if len(items) == 1 else items
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str):
        value = value.split("\x00", 1)[0].strip()  # C strings: the text ends at the first NUL
        return value or None
    if isinstance(value, int):
        return value
    try:
        number = float(value)  # IFDRational and friends
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(number):
        return None
    return round(number, 10)


def _location(gps: dict[int, Any]) -> dict[str, float] | None:
    """GPS latitude, longitude (degrees, south and west negative) and altitude (metres)."""
    if not gps:
        return None
    location: dict[str, float] = {}
    for name, value_tag, ref_tag, negative in (
        ("latitude", ExifTags.GPS.GPSLatitude, ExifTags.GPS.GPSLatitudeRef, "S"),
        ("longitude", ExifTags.GPS.GPSLongitude, ExifTags.GPS.GPSLongitudeRef, "W"),
    ):
        degrees = _degrees(gps.get(value_tag))
        if degrees is None:
            continue
        ref = gps.get(ref_tag)
        if isinstance(ref, bytes):
            ref = ref.decode("ascii", "replace")
        if isinstance(ref, str) and ref.strip("\x00 ").upper() == negative:
            degrees = -degrees
        location[name] = round(degrees, 7)
    altitude = _json_value(gps.get(ExifTags.GPS.GPSAltitude))
    if isinstance(altitude, (int, float)):
        ref = gps.get(ExifTags.GPS.GPSAltitudeRef)
        below = ref in (1, b"\x01") or (isinstance(ref, bytes) and ref[:1] == b"\x01")
        location["altitude"] = round(-altitude if below else float(altitude), 3)
    if "latitude" not in location or "longitude" not in location:
        return None
    return location


def _degrees(value: Any) -> float | None:
    parts = _json_value(value)
    if isinstance(parts, (int, float)):
        parts = [parts]
    if not isinstance(parts, list) or not 1 <= len(parts) <= 3:
        return None
    degrees = sum(float(p) / 60**i for i, p in enumerate(parts))
    return degrees if math.isfinite(degrees) else None


def _bit_depth(image: Image.Image, data: bytes) -> int:
    if image.format == "PNG" and len(data) > 24:
        return data[24]  # IHDR bit depth: 1, 2, 4, 8 or 16
    if image.format == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258)  # BitsPerSample
        if isinstance(bits, tuple) and bits:
            return int(max(bits))
        if isinstance(bits, int):
            return bits
    if image.mode == "1":
        return 1
    if image.mode.startswith("I;16"):
        return 16
    if image.mode in ("I", "F"):
        return 32
    return 8
