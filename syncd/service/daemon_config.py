"""Config of `syncd daemon`: the `[daemon]` table and the `[[sources]]` of bucket events.

```toml
[daemon]
listen = "127.0.0.1:8787"        # /healthz, /metrics and the push hooks; "" = no HTTP endpoint
hook_token = "${SYNCD_HOOK_TOKEN}"
rescan_interval_seconds = 3600   # full rescan of each dataset; 0 = never

[[sources]]
kind = "sqs"                     # watch | sqs | pubsub | azure_queue
queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/photos-events"
```
A source is not tied to one dataset: each event names its bucket (or folder, for `watch`),
and is handed to every dataset whose driver points there; other events are ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:8787' or '[::1]:8787' -> (host, port)."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen {value!r} must be HOST:PORT, e.g. 127.0.0.1:8787")
    return host, int(port)


class DaemonConfig(_Section):
    listen: str = ""  # HOST:PORT for /healthz, /metrics and the push hooks; "" = none
    # Push hooks need it (?token= or Authorization: Bearer). A "${VAR}" in it is read when
    # the daemon starts, so other commands run without VAR set.
    hook_token: SecretStr | None = None
    rescan_interval_seconds: float = Field(default=3600.0, ge=0)  # 0 = no periodic rescan
    on_delete: Literal["missing", "remove"] = "missing"  # what a deleted object's item becomes
    debounce_seconds: float = Field(default=0.1, ge=0, le=10)  # local folder events
    move_window_seconds: float = Field(default=30.0, ge=0)  # a delete waits this long for its create
    sns_confirm_hosts: tuple[str, ...] = ()  # extra hosts whose SNS SubscribeURL may be fetched

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value


class WatchSource(_Section):
    """A local driver's folder, watched with inotify (watchdog)."""

    kind: Literal["watch"]
    driver: str


class SqsSource(_Section):
    """An SQS queue that receives the buckets' S3 event notifications (raw or through SNS)."""

    kind: Literal["sqs"]
    queue_url: str = Field(min_length=1)
    region: str | None = None
    endpoint_url: str | None = None  # SQS-compatible services and emulators
    profile: str | None = None  # else boto3's own chain: environment, config files, roles
    access_key_id: SecretStr | None = None  # usually unset, as for the S3 driver
    secret_access_key: SecretStr | None = None
    wait_seconds: int = Field(default=10, ge=0, le=20)  # long polling
    max_messages: int = Field(default=10, ge=1, le=10)
    visibility_timeout: int = Field(default=60, ge=1)  # seconds a received message stays hidden
    receivers: int = Field(default=4, ge=1, le=32)  # long polls at once (throughput)


class PubSubSource(_Section):
    """A Pub/Sub pull subscription receiving GCS bucket notifications."""

    kind: Literal["pubsub"]
    subscription: str = Field(pattern=r"^projects/[^/]+/subscriptions/[^/]+$")
    emulator_host: str | None = None  # else $PUBSUB_EMULATOR_HOST, else Google's endpoint
    credentials_file: str | None = None  # service-account key; else Application Default Credentials
    max_messages: int = Field(default=100, ge=1, le=1000)


class AzureQueueSource(_Section):
    """A Storage Queue that an Event Grid subscription delivers blob events to."""

    kind: Literal["azure_queue"]
    queue: str = Field(min_length=1)
    connection_string: SecretStr | None = None
    account_url: str | None = None  # with sas_token, or DefaultAzureCredential
    sas_token: SecretStr | None = None
    max_messages: int = Field(default=32, ge=1, le=32)
    visibility_timeout: int = Field(default=60, ge=1)
    poll_seconds: float = Field(default=1.0, gt=0, le=60)  # longest pause between empty polls


SourceConfig = Annotated[
    WatchSource | SqsSource | PubSubSource | AzureQueueSource, Field(discriminator="kind")
]
