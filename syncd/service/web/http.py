"""Small HTTP helpers shared by the hooks and the API: bounded body reads, JSON bodies,
page cursors, and the API's errors as JSON answers."""

from __future__ import annotations

import asyncio

import json

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from drivers import DriverError, NotFound, PermissionDenied

from ...errors import ConfigError, InputError, NotFoundError, SyncdError


class BodyError(Exception):
    """A request body that cannot be taken; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_body(request: Request, *, max_bytes: int, timeout: float,
                    length_required: bool = False) -> bytes:
    """The whole body, refused past `max_bytes` (413) or when it takes longer than `timeout`
    seconds to arrive (408); 411 without a Content-Length when `length_required`."""
    length = request.headers.get("content-length")
    if length is None and length_required:
        raise BodyError(411, "Content-Length required")
    if length is not None and (not length.isdigit() or int(length) > max_bytes):
        raise BodyError(413 if length.isdigit() else 400,
                        "body too large" if length.isdigit() else "bad Content-Length")

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise BodyError(413, "body too large")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise BodyError(408, f"body not received within {timeout:g} s") from None
    except ClientDisconnect:
        raise BodyError(400, "client disconnected") from None


async def read_json(request: Request) -> dict:
    try:
        body = await read_body(request, max_bytes=1024 * 1024, timeout=30)
    except BodyError as error:
        raise InputError(f"body: {error}") from None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise InputError("body: not valid JSON") from None
    if not isinstance(value, dict):
        raise InputError("body: expected a JSON object")
    return value


def encode_cursor(filename: str) -> str:
    import base64

    return base64.urlsafe_b64encode(filename.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    import base64

    if not cursor:
        return ""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"cursor {cursor!r}: not a cursor this API gave") from None


def error_response(request: Request, error: Exception) -> Response:
    """The API's known errors as JSON answers."""
    if isinstance(error, NotFoundError) or isinstance(error, NotFound):
        status = 404
    elif isinstance(error, InputError | ConfigError):
        status = 400
    elif isinstance(error, PermissionDenied):
        status = 403
    elif isinstance(error, DriverError):
        status = 502
    elif isinstance(error, SyncdError):
        status = 500
    else:
        raise error
    message = f"{type(error).__name__}: {error}" if isinstance(error, DriverError) else str(error)
    return JSONResponse({"error": message}, status)
