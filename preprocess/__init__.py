"""Preprocessing: pure functions from bytes or a stream to metadata and artifacts.

No storage, no SQL, no syncd: `syncd` calls in, nothing here calls out.

- `preprocess(source, options)`: one item end to end (see pipeline.py), file facts then the
  handler registered for its media type (handlers.py: image, video);
- `fileinfo`: mimetype by magic bytes, encoding, isBinary;
- `image.probe`: width, height, channels, EXIF, GPS location from a header prefix;
- `thumbnail.make_thumbnail`: a small upright JPEG or WebP.
"""

import importlib
from typing import TYPE_CHECKING

from .errors import (
    CorruptImage,
    CorruptVideo,
    EmptyFile,
    ImageTooLarge,
    NoVideoStream,
    NotAnImage,
    NotAVideo,
    PreprocessError,
    UnsupportedImage,
    UnsupportedVideo,
)
from .limits import DEFAULT_MAX_PIXELS, FORMATS

# Imported on first use (PEP 562), so that reading a config or syncing a listing does not
# import Pillow: the CLI starts in a fraction of the time.
_LAZY = {
    "ImageFacts": "image", "NeedMoreBytes": "image", "probe": "image",
    "Handler": "handlers", "handler_for": "handlers", "register": "handlers",
    "system_keys": "handlers", "Options": "options", "Outcome": "options",
    "preprocess": "pipeline", "ByteSource": "source", "BytesSource": "source",
    "RangedFile": "source", "Reader": "source",
    "Thumbnail": "options", "make_thumbnail": "thumbnail",
}

if TYPE_CHECKING:
    from .handlers import Handler, handler_for, register, system_keys
    from .image import ImageFacts, NeedMoreBytes, probe
    from .options import Options, Outcome
    from .pipeline import preprocess
    from .source import ByteSource, BytesSource, RangedFile, Reader
    from .options import Thumbnail
    from .thumbnail import make_thumbnail


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_PIXELS", "FORMATS", "ByteSource", "BytesSource", "CorruptImage", "CorruptVideo",
    "EmptyFile", "NoVideoStream", "NotAVideo", "UnsupportedVideo",
    "Handler", "ImageFacts", "ImageTooLarge", "NeedMoreBytes", "NotAnImage", "Options", "Outcome",
    "PreprocessError", "RangedFile", "Reader", "Thumbnail", "UnsupportedImage", "handler_for",
    "make_thumbnail", "preprocess", "probe", "register", "system_keys",
]
