"""The storages' own notification formats, parsed into `Notice`s (pure functions, no I/O).

- S3 event notifications (`{"Records": [...]}`), raw or wrapped in an SNS envelope, as SQS
  queues and SNS HTTP subscriptions deliver them. Keys arrive URL-encoded (`+` for spaces).
- GCS Pub/Sub notifications: attributes `eventType`, `bucketId`, `objectId`, ... and the
  object resource as JSON data; pulled, or pushed wrapped in `{"message": ...}`.
- Azure Event Grid blob events, in the Event Grid schema or as CloudEvents 1.0; delivered to a
  webhook (arrays) or to a Storage Queue (one event a message, usually base64-encoded).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote, unquote_plus, urlsplit

Action = Literal["created", "updated", "deleted", "moved", "folder"]


class FormatError(ValueError):
    """A message is not in any notification format syncd knows; it can never be applied."""


@dataclass(frozen=True)
class Notice:
    """One change as the storage reported it, before it is matched to datasets."""

    action: Action
    storage: Literal["s3", "gcs", "azure"]
    bucket: str  # S3 or GCS bucket, Azure container
    key: str  # the full key inside the bucket
    old_key: str | None = None  # "moved": where it was
    etag: str | None = None
    size: int | None = None
    occurred: float | None = None  # seconds since the epoch
    sequence: str | None = None
    account: str | None = None  # Azure storage account, where the event says


def parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _json(text: str | bytes) -> Any:
    if not isinstance(text, (str, bytes, bytearray)):
        raise FormatError(f"expected JSON text, not {type(text).__name__}")
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise FormatError(f"not JSON: {error}") from None
    except RecursionError:
        raise FormatError("not JSON syncd reads: nested too deeply") from None


def parse_json(text: str | bytes) -> Any:
    """JSON text as a notification may carry it; FormatError for anything else (including
    nesting too deep for the parser)."""
    return _json(text)


def _text(value: Any, what: str) -> str:
    """A field that must be a non-empty string."""
    if not isinstance(value, str) or not value:
        raise FormatError(f"{what} must be a non-empty string, not {type(value).__name__}")
    return value


def _maybe_text(value: Any) -> str | None:
    """An optional string field: anything else is ignored."""
    return value if isinstance(value, str) and value else None


# -- S3 -----------------------------------------------------------------------------------

def parse_s3_message(body: str | bytes | dict) -> list[Notice]:
    """An SQS message body or SNS notification carrying S3 event records."""
    message = body if isinstance(body, dict) else _json(body)
    if not isinstance(message, dict):
        raise FormatError("an S3 notification must be a JSON object")
    if message.get("Type") == "Notification" and "Message" in message:
        return parse_s3_message(message["Message"])  # wrapped by SNS
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        raise FormatError("no S3 event Records in the message")
    return [notice for record in records if (notice := _s3_record(record)) is not None]


def _s3_record(record: Any) -> Notice | None:
    if not isinstance(record, dict) or record.get("eventSource") not in ("aws:s3", None):
        return None
    try:
        name = _text(record["eventName"], "S3 record eventName")
        bucket = _text(record["s3"]["bucket"]["name"], "S3 record s3.bucket.name")
        obj = record["s3"]["object"]
        key = unquote_plus(_text(obj["key"], "S3 record s3.object.key"))
    except (KeyError, TypeError) as error:
        raise FormatError(f"S3 record without {error}") from None
    name = name.removeprefix("s3:")
    if name.startswith("ObjectCreated"):
        action: Action = "created"
    elif name.startswith(("ObjectRemoved", "LifecycleExpiration")):
        action = "deleted"
    else:  # restores, tagging, ACLs, replication, transitions: check the object again
        action = "updated"
    size = obj.get("size")
    return Notice(action, "s3", bucket, key, etag=_maybe_text(obj.get("eTag")),
                  size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                  occurred=parse_time(record.get("eventTime")),
                  sequence=_maybe_text(obj.get("sequencer")))


# -- GCS through Pub/Sub ------------------------------------------------------------------

_GCS_ACTIONS: dict[str, Action] = {
    "OBJECT_FINALIZE": "created",
    "OBJECT_DELETE": "deleted",
    "OBJECT_ARCHIVE": "deleted",  # a live object may still be there: the applier checks
    "OBJECT_METADATA_UPDATE": "updated",
}


def parse_gcs_notification(attributes: dict[str, str], data: bytes | None) -> list[Notice]:
    if not isinstance(attributes, dict):
        raise FormatError("Pub/Sub message attributes must be an object")
    event_type = attributes.get("eventType")
    if event_type is None:
        raise FormatError("a GCS notification needs the eventType attribute")
    action = _GCS_ACTIONS.get(event_type)
    if action is None:
        return []
    bucket, key = attributes.get("bucketId"), attributes.get("objectId")
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        raise FormatError("a GCS notification needs the bucketId and objectId attributes as strings")
    resource: dict = {}
    if data and attributes.get("payloadFormat", "JSON_API_V1") == "JSON_API_V1":
        parsed = _json(data)
        resource = parsed if isinstance(parsed, dict) else {}
    size = resource.get("size")
    return [Notice(action, "gcs", bucket, key, etag=_maybe_text(resource.get("etag")),
                   size=int(size) if isinstance(size, (int, str)) and str(size).isdigit() else None,
                   occurred=parse_time(attributes.get("eventTime") or resource.get("updated")),
                   sequence=_maybe_text(attributes.get("objectGeneration")))]


def parse_pubsub_push(body: bytes | str) -> list[Notice]:
    """A Pub/Sub push request: {"message": {"attributes": ..., "data": base64}, ...}."""
    envelope = _json(body)
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise FormatError("a Pub/Sub push body needs a message object")
    attributes = message.get("attributes") or {}
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise FormatError("Pub/Sub message data is not base64") from None
    return parse_gcs_notification(attributes, data)


# -- Azure Event Grid ---------------------------------------------------------------------

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
_BLOB_ACTIONS: dict[str, Action] = {
    "Microsoft.Storage.BlobCreated": "created",
    "Microsoft.Storage.BlobDeleted": "deleted",
    "Microsoft.Storage.BlobRenamed": "moved",
    "Microsoft.Storage.BlobTierChanged": "updated",
    "Microsoft.Storage.BlobPropertiesUpdated": "updated",
    "Microsoft.Storage.BlobMetadataUpdated": "updated",
    "Microsoft.Storage.DirectoryCreated": "folder",
    "Microsoft.Storage.DirectoryDeleted": "folder",
    "Microsoft.Storage.DirectoryRenamed": "folder",
}


def event_type(event: dict) -> str | None:
    """The type of an Event Grid-schema event or a CloudEvent (None if it has no string type)."""
    kind = event.get("eventType") or event.get("type")
    return kind if isinstance(kind, str) else None


def parse_event_grid_event(event: Any) -> list[Notice]:
    if not isinstance(event, dict):
        raise FormatError("an Event Grid event must be a JSON object")
    kind = event_type(event)
    action = _BLOB_ACTIONS.get(kind) if isinstance(kind, str) else None
    if action is None:
        return []
    subject = _text(event.get("subject"), "an Event Grid event's subject")
    container, key = _blob_subject(subject)
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    topic = _maybe_text(event.get("topic")) or _maybe_text(event.get("source")) or ""
    account = topic.rpartition("/storageAccounts/")[2].split("/")[0] or None
    occurred = parse_time(event.get("eventTime") or event.get("time"))
    size = data.get("contentLength")
    common = dict(etag=_maybe_text(data.get("eTag")),
                  size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                  occurred=occurred, sequence=_maybe_text(data.get("sequencer")), account=account)
    if action == "moved":
        old = _blob_url(data.get("sourceUrl"), container)
        new = _blob_url(data.get("destinationUrl"), container) or key
        if old is None:
            return [Notice("created", "azure", container, new, **common)]
        return [Notice("moved", "azure", container, new, old_key=old, **common)]
    if action == "folder" and event_type(event) == "Microsoft.Storage.DirectoryRenamed":
        old = _blob_url(data.get("sourceUrl"), container)
        notices = [Notice("folder", "azure", container, key, **common)]
        if old is not None:
            notices.append(Notice("folder", "azure", container, old, **common))
        return notices
    return [Notice(action, "azure", container, key, **common)]


def _blob_subject(subject: str) -> tuple[str, str]:
    """'/blobServices/default/containers/C/blobs/a/b.jpg' -> ('C', 'a/b.jpg')."""
    head, sep, key = subject.partition("/blobs/")
    container = head.rpartition("/containers/")[2]
    if not sep or not container or not key:
        raise FormatError(f"not a blob subject: {subject!r}")
    return container, key


def _blob_url(url: Any, container: str) -> str | None:
    """The blob name in a blob URL (Azure's host-per-account form or an emulator's
    /account/container/... form), URL-decoded."""
    if not isinstance(url, str) or not url:
        return None
    path = urlsplit(url).path
    marker = f"/{container}/"
    index = path.find(marker)
    if index < 0:
        return None
    return unquote(path[index + len(marker):]) or None


def parse_event_grid_body(body: bytes | str) -> list[dict]:
    """A webhook body: an array of events (either schema), or one CloudEvent."""
    parsed = _json(body)
    events = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(e, dict) for e in events):
        raise FormatError("Event Grid events must be JSON objects")
    return events


def parse_queue_message(content: str | bytes) -> list[Notice]:
    """One Storage Queue message from an Event Grid subscription: a JSON event, base64-encoded
    as Event Grid writes it (or plain JSON)."""
    text = content.decode() if isinstance(content, bytes) else content
    text = text.strip()
    if not text.startswith(("{", "[")):
        try:
            text = base64.b64decode(text, validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise FormatError("queue message is neither JSON nor base64 JSON") from None
    notices: list[Notice] = []
    for event in parse_event_grid_body(text):
        notices.extend(parse_event_grid_event(event))
    return notices
