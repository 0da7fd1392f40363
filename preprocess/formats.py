"""Image format names: which mimetype each format Pillow opens is given, from its bytes.

Pillow knows many formats but names only some (`Image.MIME`); the others get the name
exiftool or file(1) gives them here. Where one Pillow format covers several kinds of file,
the bytes decide: PNM by its magic number (P1/P4 bitmap, P2/P5 graymap, P3/P6 pixmap, Pf/PF
float map), JPEG 2000 by its container brand (`jp2 ` -> image/jp2, `jpx ` -> image/jpx) or as
a raw codestream (image/j2k), PNG with an animation control chunk as image/apng.
"""

from __future__ import annotations

import functools
import io
import warnings

from PIL import Image

# Pillow format -> mimetype, for the formats Pillow gives none (or one to be corrected).
# Stub plugins that need an outside handler to decode (BUFR, GRIB, HDF5, WMF off Windows)
# are left out: their files are data, not images we can show.
PILLOW_MIMETYPES: dict[str, str] = {
    "BLP": "image/x-blp",
    "CUR": "image/x-cursor",
    "DCX": "image/dcx",
    "DDS": "image/vnd-ms.dds",
    "FITS": "image/fits",
    "FLI": "video/fli",
    "FTEX": "image/x-ftex",
    "GBR": "image/x-gimp-gbr",
    "IM": "image/x-im",
    "IMT": "image/x-imt",
    "MCIDAS": "image/x-mcidas",
    "MSP": "image/x-msp",
    "PCD": "image/x-photo-cd",
    "PIXAR": "image/x-pixar",
    "QOI": "image/qoi",
    "SPIDER": "image/x-spider",
    "SUN": "image/x-sun-raster",
    "XBM": "image/x-xbitmap",
    "XPM": "image/x-xpixmap",
    "XVTHUMB": "image/x-xv-thumbnail",
}
_PNM = {b"P1": "image/x-portable-bitmap", b"P4": "image/x-portable-bitmap",
        b"P2": "image/x-portable-graymap", b"P5": "image/x-portable-graymap",
        b"P3": "image/x-portable-pixmap", b"P6": "image/x-portable-pixmap",
        b"Pf": "image/x-pfm", b"PF": "image/x-pfm"}
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_J2K_CODESTREAM = b"\xff\x4f\xff\x51"
_JP2_BRANDS = {b"jp2 ": "image/jp2", b"jpx ": "image/jpx", b"jpm ": "image/jpm"}


def mimetype_of(format: str, head: bytes, pillow_mimetype: str | None = None) -> str | None:  # noqa: A002
    """The mimetype of an image in Pillow's `format` whose file starts with `head`."""
    if format == "PPM" and head[:2] in _PNM:
        return _PNM[head[:2]]
    if format == "JPEG2000":
        return jpeg2000_mimetype(head) or "image/jp2"
    if format == "PNG" and is_apng(head):
        return "image/apng"
    return PILLOW_MIMETYPES.get(format) or pillow_mimetype


# Magic bytes of formats whose damaged files Pillow cannot open: they are still named (and
# then reported damaged, not "not an image").
_MAGIC = (
    (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"),
    (b"II+\x00", "image/tiff"), (b"MM\x00+", "image/tiff"),  # BigTIFF
    (b"SIMPLE  =", "image/fits"),
    (b"\xd7\xcd\xc6\x9a", "image/wmf"),
    (b"%!PS-Adobe", "application/postscript"), (b"\xc5\xd0\xd3\xc6", "application/postscript"),
    (b"8BPS", "image/vnd.adobe.photoshop"),
    (b"qoif", "image/qoi"),
    (b"DDS ", "image/vnd-ms.dds"),
)


def by_magic(head: bytes) -> str | None:
    """The mimetype that a file's first bytes alone give, for formats Pillow may fail on."""
    found = jpeg2000_mimetype(head)
    if found:
        return found
    for magic, mimetype in _MAGIC:
        if head.startswith(magic):
            return mimetype
    return None


def jpeg2000_mimetype(head: bytes) -> str | None:
    if head.startswith(_J2K_CODESTREAM):
        return "image/j2k"
    if head.startswith(_JP2_SIGNATURE) and head[16:20] == b"ftyp":
        return _JP2_BRANDS.get(head[20:24], "image/jp2")
    return None


def is_apng(head: bytes) -> bool:
    """A PNG with an acTL chunk before its first IDAT: an animated PNG."""
    actl, idat = head.find(b"acTL"), head.find(b"IDAT")
    return actl != -1 and (idat == -1 or actl < idat)


def refine(mimetype: str, head: bytes) -> str:
    """A mimetype from magic bytes (the `filetype` package), made more exact by the bytes."""
    if mimetype in ("image/jpx", "image/jp2"):
        return jpeg2000_mimetype(head) or mimetype
    if mimetype == "image/png" and is_apng(head):
        return "image/apng"
    return mimetype


def text_image_mimetype(head: bytes) -> str | None:
    """The mimetype a plain-text image's magic gives (PBM/PGM/PPM P1-P3, XPM, XBM)."""
    start = head.lstrip()
    if start[:2] in (b"P1", b"P2", b"P3") and start[2:3].isspace():
        return _PNM[start[:2]]
    if start.startswith((b"/* XPM */", b"! XPM2")):
        return "image/x-xpixmap"
    if start.startswith(b"#define") and b"_width" in start[:200]:
        return "image/x-xbitmap"
    return None


def identify(head: bytes) -> str | None:
    """The mimetype of an image Pillow recognises from the first bytes, if any."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(head)) as image:
                return mimetype_of(image.format or "", head, image.get_format_mimetype())
        except Exception:  # noqa: BLE001 - any failure means "not an image Pillow knows"
            return None


HEIF_TYPES = ("image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence")


def ensure_plugin(mimetype: str) -> None:
    """Register the Pillow plugin this type needs, the first time it is met (so a process that
    sees no HEIC never imports libheif): HEIC/HEIF through pillow-heif. Pillow reads AVIF."""
    if mimetype in HEIF_TYPES:
        _register_heif()


@functools.cache
def _register_heif() -> bool:
    try:
        import pillow_heif
    except ImportError:  # a dependency; without it HEIC is "unsupported"
        return False
    pillow_heif.register_heif_opener()
    return True


def pillow_can_open(mimetype: str) -> bool:
    """Whether the installed Pillow (with its plugins) decodes this type."""
    ensure_plugin(mimetype)
    Image.init()
    if mimetype in _PNM.values() or mimetype in ("image/j2k", "image/jpx", "image/jpm", "image/apng"):
        return True
    if mimetype in ("image/heic", "image/heif"):
        return "HEIF" in Image.OPEN
    return any(fmt in Image.OPEN for fmt, mime in (*Image.MIME.items(), *PILLOW_MIMETYPES.items())
               if mime == mimetype)
