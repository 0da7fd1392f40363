"""Preprocessing: pure functions from bytes or a stream to metadata and artifacts.

No storage, no SQL, no syncd: `syncd` calls in, nothing here calls out.

- `preprocess(source, options)`: one item end to end (see pipeline.py);
- `fileinfo`: mimetype by magic bytes, encoding, isBinary;
- `image.probe`: width, height, channels, EXIF, GPS location from a header prefix;
- `thumbnail.make_thumbnail`: a small upright JPEG or WebP.
"""

from .errors import (
    CorruptImage,
    EmptyFile,
    ImageTooLarge,
    NotAnImage,
    PreprocessError,
    UnsupportedImage,
)
from .image import DEFAULT_MAX_PIXELS, ImageFacts, NeedMoreBytes, probe
from .pipeline import ByteSource, BytesSource, Options, Outcome, preprocess
from .thumbnail import FORMATS, Thumbnail, make_thumbnail

__all__ = [
    "DEFAULT_MAX_PIXELS", "FORMATS", "ByteSource", "BytesSource", "CorruptImage", "EmptyFile",
    "ImageFacts", "ImageTooLarge", "NeedMoreBytes", "NotAnImage", "Options", "Outcome",
    "PreprocessError", "Thumbnail", "UnsupportedImage", "make_thumbnail", "preprocess", "probe",
]
