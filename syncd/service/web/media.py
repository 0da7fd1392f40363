"""An object's bytes over HTTP, streamed from its driver: single byte ranges (so videos seek),
ETags and conditional requests, or a redirect to a pre-signed URL where the storage makes one."""

from __future__ import annotations

import re
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from drivers import Driver

CHUNK = 256 * 1024  # bytes read from the driver at a time
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def _etag(value: str | None) -> str | None:
    if not value:
        return None
    return value if value.startswith(('"', 'W/"')) else f'"{value}"'


def _matches(header: str | None, etag: str | None) -> bool:
    if not header or not etag:
        return False
    given = [part.strip() for part in header.split(",")]
    return "*" in given or etag in given or etag.removeprefix("W/") in [g.removeprefix("W/") for g in given]


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(first, last) byte of a single range, None for the whole object, "unsatisfiable"."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None  # several ranges or another unit: answer with the whole object (RFC 9110)
    first, last = match.group(1), match.group(2)
    if not first:  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end


def _chunks(driver: Driver, key: str, offset: int, length: int) -> Iterator[bytes]:
    with driver.open(key, offset=offset, length=length) as stream:
        left = length
        while left > 0:
            data = stream.read(min(CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data


def serve_object(request: Request, driver: Driver, key: str, *, content_type: str,
                 cache_control: str, presign_seconds: int | None = None) -> Response:
    """The object `key` of `driver` as an HTTP response to `request` (GET or HEAD)."""
    if presign_seconds:
        url = driver.presign(key, seconds=presign_seconds)
        if url:
            return RedirectResponse(url, 307, headers={
                "Cache-Control": f"private, max-age={max(0, presign_seconds // 2)}"})
    info = driver.stat(key)
    etag = _etag(info.etag)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": cache_control,
               "Content-Type": content_type}
    if etag:
        headers["ETag"] = etag
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
    wanted = parse_range(request.headers.get("range"), info.size)
    if wanted is not None and request.headers.get("if-range") and request.headers["if-range"] != etag:
        wanted = None  # the client's copy is another version: send it all
    if wanted == "unsatisfiable":
        return Response(status_code=416, headers={"Content-Range": f"bytes */{info.size}",
                                                  "Accept-Ranges": "bytes"})
    status, first, last = 200, 0, info.size - 1
    if wanted is not None:
        status, (first, last) = 206, wanted
        headers["Content-Range"] = f"bytes {first}-{last}/{info.size}"
    length = max(0, last - first + 1)
    headers["Content-Length"] = str(length)
    if request.method == "HEAD" or length == 0:
        return Response(status_code=status, headers=headers)
    return StreamingResponse(_chunks(driver, key, first, length), status_code=status,
                             headers=headers, media_type=content_type)
