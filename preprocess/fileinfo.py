"""File facts from the bytes themselves: mimetype by magic bytes, transfer encoding, isBinary.

- `mimetype`: the content's magic bytes decide (the `filetype` package, then Pillow's own
  identification for image formats it knows, named as in `formats`); the file name is only
  used for text without magic, and never for binary content.
- `encoding`: the RFC 2045 classification of the bytes: "7bit" (ASCII text, lines of at most
  998 bytes), "8bit" (also bytes above 127), "binary" (anything else: control bytes such as
  NUL, or longer lines).
- `isBinary`: the content is not text: it holds bytes that no text encoding uses (NUL and the
  other C0 controls except BEL, BS, TAB, LF, VT, FF, CR and ESC; DEL), as `file(1)` decides.

`ByteScan` reads chunk by chunk and settles as soon as a binary byte is seen, so a binary
file is classified from its first bytes and a text file is streamed once, in flat memory.
"""

from __future__ import annotations

import mimetypes

import filetype

from . import formats

MAX_LINE = 998  # bytes a line may hold in 7bit and 8bit data (RFC 2045 2.7), CRLF excluded
_TEXT_BYTES = bytes([7, 8, 9, 10, 11, 12, 13, 27]) + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_ASCII = bytes(range(0x80))
# Types the name may give to text content: everything else named by an extension needs magic.
_TEXTUAL = ("text/", "application/json", "application/xml", "application/javascript",
            "application/x-sh", "application/x-python", "application/toml", "application/yaml",
            "application/x-yaml", "application/sql", "image/svg+xml", "application/x-ndjson")
OCTET_STREAM = "application/octet-stream"
EMPTY = "application/x-empty"  # as file(1) calls a file without bytes


class ByteScan:
    """The encoding and binary-ness of a byte stream, fed chunk by chunk."""

    def __init__(self) -> None:
        self.is_binary = False
        self.eight_bit = False
        self.long_lines = False
        self._line = 0  # bytes in the line still open at the end of the last chunk
        self._cr = False  # that open line ends with CR

    @property
    def settled(self) -> bool:
        """True when no further byte can change the answer."""
        return self.is_binary

    @property
    def encoding(self) -> str:
        if self.is_binary or self.long_lines:
            return "binary"
        return "8bit" if self.eight_bit else "7bit"

    def feed(self, chunk: bytes) -> None:
        if self.settled or not chunk:
            return
        if chunk.translate(None, _TEXT_BYTES):
            self.is_binary = True
            return
        if not self.eight_bit and chunk.translate(None, _ASCII):
            self.eight_bit = True
        if not self.long_lines:
            self._measure_lines(chunk)

    def _measure_lines(self, chunk: bytes) -> None:
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            self._line += len(chunk)
            self._cr = chunk.endswith(b"\r")
            return
        closed = [len(line) for line in lines[:-1]]
        closed[0] += self._line
        if max(closed) > MAX_LINE:
            # A line's length leaves out the CR of its CRLF.
            for i, (length, line) in enumerate(zip(closed, lines, strict=False)):
                crlf = line.endswith(b"\r") if line else (i == 0 and self._cr)
                if length - crlf > MAX_LINE:
                    self.long_lines = True
                    return
        self._line = len(lines[-1])
        self._cr = lines[-1].endswith(b"\r")

    def finish(self) -> ByteScan:
        """Account for a last line without a line feed; call once, after the last chunk."""
        if self._line > MAX_LINE:
            self.long_lines = True
        return self


def scan(data: bytes) -> ByteScan:
    result = ByteScan()
    result.feed(data)
    return result.finish()


def sniff_mimetype(head: bytes, name: str, *, is_binary: bool) -> str:
    """The mimetype of content starting with `head` (8 KiB suffice, more does no harm).
    Binary content is named by its bytes alone (octet-stream when they say nothing)."""
    if not head:
        return EMPTY
    kind = filetype.guess(head)
    if kind is not None:
        return formats.refine(kind.mime, head)
    if not is_binary:
        image = formats.text_image_mimetype(head)
        if image:
            return image
        by_name = mimetypes.guess_type(name, strict=False)[0]
        if by_name and by_name.startswith(_TEXTUAL) or (by_name or "").endswith(("+xml", "+json")):
            return by_name
        return "text/plain"
    return formats.identify(head) or formats.by_magic(head) or OCTET_STREAM


def name_says_image(name: str) -> bool:
    by_name = mimetypes.guess_type(name, strict=False)[0]
    return bool(by_name and by_name.startswith("image/") and by_name != "image/svg+xml")
