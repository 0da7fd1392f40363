"""Handlers by media type: which code preprocesses a file of a given mimetype.

The pipeline records the file facts of every file (mimetype, encoding, isBinary), then hands
the file to the first handler whose patterns match its mimetype (or, for a file whose bytes
match no handler, the mimetype its name suggests: so `a.jpg` holding text is told "not an
image"). A handler reads through the `Reader` (ranged reads of the source; `reader.file()` is
a seekable file for libraries that want one) and writes into the `Outcome`; it owns the
`metadata.system` keys it lists, which a re-run replaces as a whole.

A handler's function is named "module:function" and imported when a file first needs it, so a
worker that sees no video never imports PyAV. `register()` adds one (first match wins).
"""

from __future__ import annotations

import fnmatch
import importlib
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass

# metadata.system keys the pipeline itself writes for every file (the runner adds `etl`).
FILE_KEYS = frozenset({"mimetype", "encoding", "isBinary", "thumbnailId"})


@dataclass(frozen=True)
class Handler:
    name: str
    mimetypes: tuple[str, ...]  # fnmatch patterns: "image/*"
    keys: frozenset[str]  # the metadata.system keys it writes
    target: str  # "module:function" taking (reader, outcome, options)

    def matches(self, mimetype: str) -> bool:
        return any(fnmatch.fnmatchcase(mimetype, pattern) for pattern in self.mimetypes)

    def load(self) -> Callable:
        module_name, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module_name), function)


IMAGE = Handler(
    "image", ("image/*", "video/fli"),  # FLI/FLC animations: Pillow reads them
    frozenset({"width", "height", "channels", "bitDepth", "colorMode", "frames", "exif", "location"}),
    "preprocess.image_handler:handle",
)
VIDEO = Handler(
    "video", ("video/*", "application/x-matroska", "application/mp4"),
    frozenset({"width", "height", "frames", "duration", "fps", "codec", "rotation", "bitRate",
               "audio", "container", "previewId"}),
    "preprocess.video:handle",
)
HANDLERS: list[Handler] = [IMAGE, VIDEO]


def register(handler: Handler) -> None:
    """Add a handler ahead of the built-in ones (a custom image handler replaces IMAGE)."""
    HANDLERS.insert(0, handler)


def handler_for(mimetype: str, name: str = "") -> Handler | None:
    for handler in HANDLERS:
        if handler.matches(mimetype):
            return handler
    by_name = mimetypes.guess_type(name, strict=False)[0] or ""
    if by_name and by_name != "image/svg+xml":
        for handler in HANDLERS:
            if handler.matches(by_name):
                return handler
    return None


def system_keys() -> frozenset[str]:
    """Every metadata.system key preprocessing owns: the file facts and each handler's."""
    keys = set(FILE_KEYS)
    for handler in HANDLERS:
        keys |= handler.keys
    return frozenset(keys)
