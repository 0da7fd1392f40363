"""Small HTTP helpers shared by the hooks and the API: bounded body reads."""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request


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
