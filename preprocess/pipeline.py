"""One item's preprocessing: read what is needed from a byte source, return metadata and artifacts.

Reads, in order, only as far as the item needs:

1. the head (a ranged read of `head_bytes`, 64 KiB by default): magic bytes, encoding,
   and for most images the whole header with its EXIF;
2. for text without magic, the rest as a stream, chunk by chunk, to finish the encoding
   scan (a binary file is settled by its first bytes);
3. for an image: with thumbnails on, the rest in one read (the header was checked first, so
   a decompression bomb is refused before its bytes are fetched); with thumbnails off, more
   header only when the probe asks for it, growing four-fold each time.

Nothing here knows about storage or the catalogue: a `ByteSource` is anything with a name,
a size (None when unknown) and `open(offset, length)` returning a binary stream.
"""

from __future__ import annotations

import io
import posixpath
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from . import fileinfo
from .errors import EmptyFile, NotAnImage, PreprocessError
from .image import DEFAULT_MAX_PIXELS, ImageFacts, NeedMoreBytes, check_pixels, probe
from .thumbnail import FORMATS, Thumbnail, make_thumbnail

HEAD_BYTES = 64 * 1024  # Pillow reads a JPEG header with its EXIF from a 64 KiB prefix
CHUNK_BYTES = 1024 * 1024  # text is scanned this much at a time


class ByteSource(Protocol):
    name: str  # the file name, for hints the content cannot give (text formats)
    size: int | None  # bytes, None when unknown until read

    def open(self, offset: int = 0, length: int | None = None) -> BinaryIO:
        """A stream of at most `length` bytes from `offset` (to the end when None)."""


@dataclass
class BytesSource:
    """A ByteSource over bytes in memory."""

    data: bytes
    name: str = ""
    size: int | None = None

    def __post_init__(self) -> None:
        self.size = len(self.data)

    def open(self, offset: int = 0, length: int | None = None) -> BinaryIO:
        if offset == 0 and length is None:
            return io.BytesIO(self.data)  # shares the bytes, no copy
        end = None if length is None else offset + length
        return io.BytesIO(self.data[offset:end])


@dataclass(frozen=True)
class Options:
    thumbnails: bool = True
    thumbnail_size: int = 256  # pixels, longest side
    thumbnail_format: str = "jpeg"  # jpeg | webp
    thumbnail_quality: int = 85  # 1-100
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused (decompression bombs)
    head_bytes: int = HEAD_BYTES
    keep_bytes: bool = False  # return the whole file's bytes (for custom preprocessors)
    memory_mb: int | None = None  # most a thumbnail's decode may take; None: no bound

    def __post_init__(self) -> None:
        if self.thumbnail_format not in FORMATS:
            raise ValueError(f"thumbnail_format {self.thumbnail_format!r}: one of {', '.join(FORMATS)}")


@dataclass
class Outcome:
    system: dict[str, Any]  # metadata.system fields found, also when an error stopped the rest
    thumbnail: Thumbnail | None = None
    errors: list[str] = field(default_factory=list)
    data: bytes | None = None  # the whole file, when it was read (or asked for)

    @property
    def ok(self) -> bool:
        return not self.errors


def preprocess(source: ByteSource, options: Options = Options()) -> Outcome:
    """Metadata and thumbnail of one file. Preprocessing errors (a truncated image, a bomb,
    ...) are returned in `errors` with whatever was found before them; errors reading the
    source propagate."""
    reader = _Reader(source, options.head_bytes)
    head = reader.head
    scan = fileinfo.ByteScan()
    scan.feed(head)
    if not scan.settled and not reader.complete:
        reader.scan_rest(scan, keep=options.keep_bytes)
    scan.finish()
    mimetype = fileinfo.sniff_mimetype(head, source.name, is_binary=scan.is_binary)
    system: dict[str, Any] = {
        "originalname": posixpath.basename(source.name),
        "size": source.size,
        "encoding": scan.encoding,
        "mimetype": mimetype,
        "isBinary": scan.is_binary,
    }
    outcome = Outcome(system)
    try:
        if mimetype.startswith("image/") or fileinfo.name_says_image(source.name):
            _image(reader, outcome, options)
    except PreprocessError as error:
        outcome.errors.append(str(error))
    if options.keep_bytes and outcome.data is None:
        outcome.data = reader.read_all()
    if reader.size is not None:
        system["size"] = reader.size
    return outcome


def _image(reader: _Reader, outcome: Outcome, options: Options) -> None:
    system = outcome.system
    mimetype = system["mimetype"]
    name = posixpath.basename(reader.source.name)
    if reader.size == 0:
        raise EmptyFile("empty file (0 bytes)")
    if not mimetype.startswith("image/"):
        raise NotAnImage(f"not an image: {name} holds {mimetype} content")
    facts = _probe(reader, mimetype, grow=not options.thumbnails)
    if facts is not None:
        system.update(facts.as_system())
        check_pixels(facts.width, facts.height, options.max_pixels)
    if not options.thumbnails:
        return
    data = reader.read_all()
    outcome.data = data
    if facts is None:
        facts = probe(data, mimetype=mimetype)
        system.update(facts.as_system())
    outcome.thumbnail = make_thumbnail(
        data, size=options.thumbnail_size, format=options.thumbnail_format,
        quality=options.thumbnail_quality, max_pixels=options.max_pixels,
        memory_mb=options.memory_mb,
    )


def _probe(reader: _Reader, mimetype: str, *, grow: bool) -> ImageFacts | None:
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


class _Reader:
    """Reads of one source, each byte fetched once."""

    def __init__(self, source: ByteSource, head_bytes: int):
        self.source = source
        self.size = source.size
        with source.open(0, head_bytes) as stream:
            self.head = stream.read()
        if self.size is None:
            self.size = source.size  # some sources learn it on the first read
        if len(self.head) < head_bytes:
            self.size = len(self.head)
        self._data = self.head  # everything read so far, from offset 0

    @property
    def complete(self) -> bool:
        return self.complete_at(len(self._data))

    def complete_at(self, length: int) -> bool:
        return self.size is not None and length >= self.size

    def prefix(self, length: int) -> bytes:
        """The first `length` bytes (fewer at the end of the file)."""
        if len(self._data) < length and not self.complete:
            with self.source.open(len(self._data), length - len(self._data)) as stream:
                more = stream.read()
            self._data += more
            if len(self._data) < length:
                self.size = len(self._data)
        return self._data[:length]

    def read_all(self) -> bytes:
        if not self.complete:
            # One read of the whole file: re-reading the head costs less than copying
            # megabytes to join it to the rest.
            with self.source.open(0) as stream:
                self._data = stream.read()
            self.size = len(self._data)
        return self._data

    def scan_rest(self, scan: fileinfo.ByteScan, *, keep: bool) -> None:
        """Feed the bytes after the head to `scan` until it settles, in flat memory unless
        `keep` (the bytes are wanted anyway)."""
        offset = len(self._data)
        kept = [self._data]
        with self.source.open(offset) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                scan.feed(chunk)
                offset += len(chunk)
                if keep:
                    kept.append(chunk)
                if scan.settled:
                    break
            else:
                self.size = offset
        self._data = b"".join(kept)
