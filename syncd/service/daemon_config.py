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

from drivers.options import Meta, Options, Secret


def parse_listen(value: str, key: str = "listen") -> tuple[str, int]:
    """'127.0.0.1:8787' or '[::1]:8787' -> (host, port)."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{key}: {value!r} must be HOST:PORT, e.g. 127.0.0.1:8787")
    return host, int(port)


class DaemonConfig(Options, kw_only=True):
    listen: str = ""  # HOST:PORT for /healthz, /metrics and the push hooks; "" = none
    # Push hooks need it (?token= or Authorization: Bearer). A "${VAR}" in it is read when
    # the daemon starts, so other commands run without VAR set.
    hook_token: Secret | None = None
    rescan_interval_seconds: Annotated[float, Meta(ge=0)] = 3600.0  # 0 = no periodic rescan
    on_delete: Literal["missing", "remove"] = "missing"  # what a deleted object's item becomes
    debounce_seconds: Annotated[float, Meta(ge=0, le=10)] = 0.1  # local folder events
    move_window_seconds: Annotated[float, Meta(ge=0)] = 30.0  # a delete waits this long for its create
    sns_confirm_hosts: tuple[str, ...] = ()  # extra hosts whose SNS SubscribeURL may be fetched

    def __post_init__(self) -> None:
        if self.listen:
            parse_listen(self.listen, "listen")


class _Source(Options, kw_only=True, tag_field="kind"):
    """A `[[sources]]` table; its `kind` picks the class."""

    @property
    def kind(self) -> str:
        return self.__struct_config__.tag


class WatchSource(_Source, tag="watch"):
    """A local driver's folder, watched with inotify (watchdog)."""

    driver: str


class SqsSource(_Source, tag="sqs"):
    """An SQS queue that receives the buckets' S3 event notifications (raw or through SNS)."""

    queue_url: Annotated[str, Meta(min_length=1)]
    region: str | None = None
    endpoint_url: str | None = None  # SQS-compatible services and emulators
    profile: str | None = None  # else boto3's own chain: environment, config files, roles
    access_key_id: Secret | None = None  # usually unset, as for the S3 driver
    secret_access_key: Secret | None = None
    wait_seconds: Annotated[int, Meta(ge=0, le=20)] = 10  # long polling
    max_messages: Annotated[int, Meta(ge=1, le=10)] = 10
    visibility_timeout: Annotated[int, Meta(ge=1)] = 60  # seconds a received message stays hidden
    receivers: Annotated[int, Meta(ge=1, le=32)] = 4  # long polls at once (throughput)


class PubSubSource(_Source, tag="pubsub"):
    """A Pub/Sub pull subscription receiving GCS bucket notifications."""

    subscription: Annotated[str, Meta(pattern=r"^projects/[^/]+/subscriptions/[^/]+$")]
    emulator_host: str | None = None  # else $PUBSUB_EMULATOR_HOST, else Google's endpoint
    credentials_file: str | None = None  # service-account key; else Application Default Credentials
    max_messages: Annotated[int, Meta(ge=1, le=1000)] = 100


class AzureQueueSource(_Source, tag="azure_queue"):
    """A Storage Queue that an Event Grid subscription delivers blob events to."""

    queue: Annotated[str, Meta(min_length=1)]
    connection_string: Secret | None = None
    account_url: str | None = None  # with sas_token, or DefaultAzureCredential
    sas_token: Secret | None = None
    max_messages: Annotated[int, Meta(ge=1, le=32)] = 32
    visibility_timeout: Annotated[int, Meta(ge=1)] = 60
    poll_seconds: Annotated[float, Meta(gt=0, le=60)] = 1.0  # longest pause between empty polls


SourceConfig = WatchSource | SqsSource | PubSubSource | AzureQueueSource
