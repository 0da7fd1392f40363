"""One item's preprocessing: file facts for every file, then the handler for its media type.

1. the head (a ranged read of `head_bytes`, 64 KiB by default): magic bytes, encoding;
2. for text without magic, the rest as a stream, chunk by chunk, to finish the encoding
   scan (a binary file is settled by its first bytes);
3. the handler registered for the mimetype (`handlers`: image, video, ...), reading only
   what it needs through the same reader.

The file facts (originalname, size, encoding, mimetype, isBinary) are recorded whatever a
handler then does: its errors, expected or not, become reasons in `errors`.

Nothing here knows about storage or the catalogue: a `ByteSource` is anything with a name,
a size (None when unknown) and `open(offset, length)` returning a binary stream.
"""

from __future__ import annotations

import posixpath
from typing import Any

from . import fileinfo, handlers
from .errors import PreprocessError
from .image import describe
from .options import Options, Outcome
from .source import CHUNK_BYTES, HEAD_BYTES, ByteSource, BytesSource, Reader

__all__ = ["CHUNK_BYTES", "HEAD_BYTES", "ByteSource", "BytesSource", "Options", "Outcome",
           "Reader", "preprocess"]


def preprocess(source: ByteSource, options: Options = Options()) -> Outcome:
    """Metadata and artifacts of one file. Preprocessing errors (a truncated image, a bomb,
    ...) are returned in `errors` with whatever was found before them; errors reading the
    source propagate."""
    reader = Reader(source, options.head_bytes)
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
    handler = handlers.handler_for(mimetype, source.name)
    if handler is not None:
        try:
            handler.load()(reader, outcome, options)
        except PreprocessError as error:
            outcome.errors.append(str(error))
        except (OSError, ConnectionError, TimeoutError):
            raise  # reading the source: the caller decides whether to retry
        except Exception as error:  # noqa: BLE001 - a decoder on bytes it did not expect
            outcome.errors.append(f"cannot read this {mimetype} file ({handler.name} handler):"
                                  f" {type(error).__name__}: {describe(error)}")
    if options.keep_bytes and outcome.data is None:
        outcome.data = reader.read_all()
    if reader.size is not None:
        system["size"] = reader.size
    return outcome
