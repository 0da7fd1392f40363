"""Preprocessing: pure functions from bytes or a stream to metadata and artifacts.

No storage, no SQL, no syncd: `syncd` calls in, nothing here calls out.

- `preprocess(source, options)`: one item end to end (see pipeline.py);
- `fileinfo`: mimetype by magic bytes, encoding, isBinary;
- `image.probe`: width, height, channels, EXIF, GPS location from a header prefix;
- `thumbnail.make_thumbnail`: a small upright JPEG or WebP.
"""

import importlib
from typing import TYPE_CHECKING

from .errors import (
    CorruptImage,
    EmptyFile,
    ImageTooLarge,
    NotAnImage,
    PreprocessError,
    UnsupportedImage,
)
from .limits import DEFAULT_MAX_PIXELS, FORMATS

# Imported on first use (PEP 562), so that reading a config or syncing a listing does not
# import Pillow: the CLI starts in a fraction of the time.
_LAZY = {
    "ImageFacts": "image", "NeedMoreBytes": "image", "probe": "image",
    "ByteSource": "pipeline", "BytesSource": "pipeline", "Options": "pipeline",
    "Outcome": "pipeline", "preprocess": "pipeline",
    "Thumbnail": "thumbnail", "make_thumbnail": "thumbnail",
}

if TYPE_CHECKING:
    from .image import ImageFacts, NeedMoreBytes, probe
    from .pipeline import ByteSource, BytesSource, Options, Outcome, preprocess
    from .thumbnail import Thumbnail, make_thumbnail


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_PIXELS", "FORMATS", "ByteSource", "BytesSource", "CorruptImage", "EmptyFile",
    "ImageFacts", "ImageTooLarge", "NeedMoreBytes", "NotAnImage", "Options", "Outcome",
    "PreprocessError", "Thumbnail", "UnsupportedImage", "make_thumbnail", "preprocess", "probe",
]
