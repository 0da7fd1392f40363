"""Byte sources: what preprocessing reads from, with ranged reads, each byte fetched once.

A `ByteSource` is anything with a name, a size (None when unknown) and `open(offset, length)`
returning a binary stream: an object in a driver read with ranged gets, a linked URL, bytes in
memory. `Reader` keeps the head read once for every handler; `RangedFile` is a seekable
read-only file over a source for libraries that want a file object (FFmpeg through PyAV),
fetching a window at a time so memory stays flat whatever the file's size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from . import fileinfo

HEAD_BYTES = 64 * 1024  # Pillow reads a JPEG header with its EXIF from a 64 KiB prefix
CHUNK_BYTES = 1024 * 1024  # text is scanned this much at a time
WINDOW_BYTES = 1024 * 1024  # RangedFile: bytes fetched per ranged read


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


class Reader:
    """Reads of one source, each byte fetched once."""

    def __init__(self, source: ByteSource, head_bytes: int = HEAD_BYTES):
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

    def file(self) -> RangedFile:
        """A seekable file over the whole source, read a window at a time."""
        return RangedFile(self.source, self.size, head=self.head)

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


class RangedFile(io.RawIOBase):
    """A read-only, seekable file over a ByteSource: each read past the window in hand is one
    ranged read of `window` bytes (or of what is asked, if more). Memory: one window."""

    def __init__(self, source: ByteSource, size: int | None, *, head: bytes = b"",
                 window: int = WINDOW_BYTES):
        super().__init__()
        self.source = source
        self.size = size
        self.window = window
        self.position = 0
        self._start, self._buffer = 0, head  # the window in hand: bytes from _start
        self.reads = 0  # ranged reads made (for tests and benchmarks)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self.position + offset
        elif whence == io.SEEK_END:
            if self.size is None:
                raise OSError("cannot seek from the end: the size is unknown")
            position = self.size + offset
        else:
            raise ValueError(f"whence {whence}")
        if position < 0:
            raise OSError("negative seek position")
        self.position = position
        return position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        wanted = len(view)
        if wanted == 0 or (self.size is not None and self.position >= self.size):
            return 0
        end = self._start + len(self._buffer)
        if not self._start <= self.position < end:
            self._fetch(max(wanted, self.window))
            end = self._start + len(self._buffer)
            if self.position >= end:
                return 0
        begin = self.position - self._start
        count = min(wanted, end - self.position)
        view[:count] = self._buffer[begin:begin + count]
        self.position += count
        return count

    def _fetch(self, length: int) -> None:
        if self.size is not None:
            length = min(length, self.size - self.position)
        with self.source.open(self.position, length) as stream:
            data = stream.read(length)
        self.reads += 1
        self._start, self._buffer = self.position, data
        if self.size is None and len(data) < length:
            self.size = self.position + len(data)
