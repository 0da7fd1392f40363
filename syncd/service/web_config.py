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

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .daemon_config import parse_listen


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = "127.0.0.1:8788"  # HOST:PORT of `syncd serve`
    token: SecretStr | None = None  # page and API; else [daemon] hook_token
    read_only: bool = False  # no write actions at all
    presign: bool = False  # media of cloud items: 307 to a pre-signed URL
    presign_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    max_connections: int = Field(default=4096, ge=1)  # open connections; past it: 503
    backlog: int = Field(default=4096, ge=1)  # listen queue (the kernel caps it at somaxconn)
    header_timeout_seconds: float = Field(default=10.0, gt=0)  # a request's line and headers
    body_timeout_seconds: float = Field(default=30.0, gt=0)  # a request's body
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)  # hooks and API writes

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value
