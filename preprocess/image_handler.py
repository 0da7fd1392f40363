"""The image handler: facts from the header, frame counts and thumbnail from the whole file.

Reads, only as far as the image needs:

1. the head the pipeline already read (64 KiB by default): for most images the whole header
   with its EXIF;
2. with thumbnails on, the rest in one read (the header was checked first, so a
   decompression bomb is refused before its bytes are fetched); with thumbnails off, more
   header only when the probe asks for it, growing four-fold each time;
3. the whole file also when the format may hold several frames (GIF, TIFF, WebP, APNG, ...):
   a count from a prefix would be wrong.
"""

from __future__ import annotations

import posixpath

from . import formats, handlers
from .errors import CorruptImage, EmptyFile, NotAnImage
from .image import ImageFacts, NeedMoreBytes, check_pixels, probe
from .options import Options, Outcome
from .source import Reader
from .thumbnail import make_thumbnail


def handle(reader: Reader, outcome: Outcome, options: Options) -> None:
    system = outcome.system
    mimetype = system["mimetype"]
    name = posixpath.basename(reader.source.name)
    if reader.size == 0:
        raise EmptyFile("empty file (0 bytes)")
    if not handlers.IMAGE.matches(mimetype):
        raise NotAnImage(f"not an image: {name} holds {mimetype} content")
    formats.ensure_plugin(mimetype)
    facts = _probe(reader, mimetype, grow=not options.thumbnails)
    if facts is not None:
        system.update(facts.as_system())
        check_pixels(facts.width, facts.height, options.max_pixels)
    if facts is None or facts.frames is None:
        outcome.data = reader.read_all()
        facts = probe(outcome.data, mimetype=mimetype)  # from the whole file, frames counted
        system.update(facts.as_system())
        check_pixels(facts.width, facts.height, options.max_pixels)
    if facts.damage:
        raise CorruptImage(facts.damage)
    if not options.thumbnails:
        return
    outcome.data = reader.read_all()
    outcome.thumbnail = make_thumbnail(
        outcome.data, size=options.thumbnail_size, format=options.thumbnail_format,
        quality=options.thumbnail_quality, max_pixels=options.max_pixels,
        memory_mb=options.memory_mb,
    )


def _probe(reader: Reader, mimetype: str, *, grow: bool) -> ImageFacts | None:
    """The image's facts from as little of it as possible; None if more than the head is
    needed and `grow` is off (the caller reads everything anyway)."""
    data = reader.head
    while True:
        try:
            return probe(data, complete=reader.complete_at(len(data)), mimetype=mimetype)
        except NeedMoreBytes as need:
            if not grow:
                return None
            data = reader.prefix(need.want)
