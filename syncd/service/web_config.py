"""Config of the HTTP service (`syncd serve`, `syncd daemon --listen`): the `[web]` table.

```toml
[web]
listen = "127.0.0.1:8788"        # `syncd serve`'s address (the daemon uses [daemon] listen)
token = "${SYNCD_WEB_TOKEN}"     # the page and the API need it; else [daemon] hook_token
read_only = false                # serve no write action (metadata edits, sync, retry)
presign = false                  # media of s3/gcs/azure items: redirect to a pre-signed URL
presign_seconds = 3600           # how long such a URL is valid
```
"""

from __future__ import annotations

from typing import Annotated

from drivers.options import Meta, Options, Secret

from .daemon_config import parse_listen


class WebConfig(Options, kw_only=True):
    listen: str = "127.0.0.1:8788"  # HOST:PORT of `syncd serve`
    token: Secret | None = None  # page and API; else [daemon] hook_token
    read_only: bool = False  # no write actions at all
    presign: bool = False  # media of cloud items: 307 to a pre-signed URL
    presign_seconds: Annotated[int, Meta(ge=1, le=7 * 24 * 3600)] = 3600
    max_connections: Annotated[int, Meta(ge=1)] = 4096  # open connections; past it: 503
    backlog: Annotated[int, Meta(ge=1)] = 4096  # listen queue (the kernel caps it at somaxconn)
    header_timeout_seconds: Annotated[float, Meta(gt=0)] = 10.0  # a request's line and headers
    body_timeout_seconds: Annotated[float, Meta(gt=0)] = 30.0  # a request's body
    max_body_bytes: Annotated[int, Meta(ge=1)] = 1024 * 1024  # hooks and API writes

    def __post_init__(self) -> None:
        parse_listen(self.listen)
