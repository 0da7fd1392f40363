"""Preprocessing: pure functions from bytes or a stream to metadata and artifacts.

No storage, no SQL, no syncd: `syncd` calls in, nothing here calls out.

- `preprocess(source, options)`: one item end to end (see pipeline.py), file facts then the
  handler registered for its media type (handlers.py: image, video);
- `fileinfo`: mimetype by magic bytes, encoding, isBinary;
- `image.probe`: width, height, channels, EXIF, GPS location from a header prefix;
- `thumbnail.make_thumbnail`: a small upright JPEG or WebP.
"""

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
from .image import DEFAULT_MAX_PIXELS, ImageFacts, NeedMoreBytes, probe
from .handlers import Handler, handler_for, register, system_keys
from .options import Options, Outcome
from .pipeline import preprocess
from .source import ByteSource, BytesSource, RangedFile, Reader
from .thumbnail import FORMATS, Thumbnail, make_thumbnail

__all__ = [
    "DEFAULT_MAX_PIXELS", "FORMATS", "ByteSource", "BytesSource", "CorruptImage", "CorruptVideo",
    "EmptyFile", "NoVideoStream", "NotAVideo", "UnsupportedVideo",
    "Handler", "ImageFacts", "ImageTooLarge", "NeedMoreBytes", "NotAnImage", "Options", "Outcome",
    "PreprocessError", "RangedFile", "Reader", "Thumbnail", "UnsupportedImage", "handler_for",
    "make_thumbnail", "preprocess", "probe", "register", "system_keys",
]
