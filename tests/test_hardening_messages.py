"""Issue 11 #6: a malformed message is reported and dropped by itself; its batch goes on."""

from __future__ import annotations

import json

import pytest

from daemon_support import ThreadDaemon, free_port, items, synced, wait_for
from syncd.service.sources.formats import (
    FormatError, parse_event_grid_body, parse_event_grid_event, parse_pubsub_push, parse_queue_message,
    parse_s3_message,
)
from test_daemon_cloud import TOKEN, cloud_config, post, queue_drained, s3_setup  # noqa: F401

DEEP = "[" * 100_000 + "]" * 100_000


def s3_body(key, bucket="b", **extra) -> str:
    return json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": bucket}, "object": {"key": key, **extra}}}]})


@pytest.mark.parametrize("body", [
    s3_body(5), s3_body(None), s3_body(["a"]), s3_body("a", bucket=7),
    json.dumps({"Records": [{"eventName": 3, "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]}),
    json.dumps({"Type": "Notification", "Message": 5}),
    DEEP, '{"Records": ' + DEEP + "}",
])
def test_s3_parser_raises_only_format_errors(body):
    with pytest.raises(FormatError):
        parse_s3_message(body)


def test_s3_parser_ignores_wrongly_typed_optional_fields():
    [notice] = parse_s3_message(s3_body("a.jpg", eTag=5, size="12", sequencer=[1]))
    assert (notice.key, notice.etag, notice.size, notice.sequence) == ("a.jpg", None, None, None)


@pytest.mark.parametrize("body", [
    json.dumps({"message": {"attributes": ["x"], "data": ""}}),
    json.dumps({"message": {"attributes": {"eventType": "OBJECT_FINALIZE", "bucketId": 1,
                                           "objectId": "a"}}}),
    json.dumps({"message": {"attributes": {}, "data": 5}}),
    '{"message": ' + DEEP + "}",
])
def test_pubsub_parser_raises_only_format_errors(body):
    with pytest.raises(FormatError):
        parse_pubsub_push(body)


@pytest.mark.parametrize("event", [
    {"eventType": "Microsoft.Storage.BlobCreated", "subject": 5},
    {"eventType": "Microsoft.Storage.BlobCreated", "subject": None},
])
def test_event_grid_parser_raises_only_format_errors(event):
    with pytest.raises(FormatError):
        parse_event_grid_event(event)


def test_event_grid_odd_types_are_ignored_or_refused():
    assert parse_event_grid_event({"eventType": ["x"], "subject": 1}) == []
    [notice] = parse_event_grid_event({
        "eventType": "Microsoft.Storage.BlobCreated", "topic": 5,
        "subject": "/blobServices/default/containers/c/blobs/a.jpg", "data": {"eTag": {}, "contentLength": True}})
    assert (notice.key, notice.etag, notice.size, notice.account) == ("a.jpg", None, None, None)
    with pytest.raises(FormatError):
        parse_event_grid_body(DEEP)
    with pytest.raises(FormatError):
        parse_queue_message(DEEP)


def test_one_bad_sqs_message_does_not_hold_back_its_batch(tmp_path, s3_setup):
    """Good and bad messages received together: the good are applied and deleted, the bad
    one is logged and deleted by itself, and nothing comes back."""
    s = s3_setup
    s["s3"].put_bucket_notification_configuration(Bucket=s["bucket"], NotificationConfiguration={})
    db = tmp_path / "catalogue.db"
    with ThreadDaemon(cloud_config(tmp_path, s["driver"], sources=s["source"])):
        wait_for(lambda: synced(db), what="startup sync")
        for key in ("a.jpg", "b.jpg"):
            s["s3"].put_object(Bucket=s["bucket"], Key=key, Body=key.encode())
        s["sqs"].send_message_batch(QueueUrl=s["queue_url"], Entries=[
            {"Id": "1", "MessageBody": s3_body("a.jpg", bucket=s["bucket"])},
            {"Id": "2", "MessageBody": s3_body(5, bucket=s["bucket"])},
            {"Id": "3", "MessageBody": '{"Records": ' + "[" * 50_000 + "]" * 50_000 + "}"},
            {"Id": "4", "MessageBody": s3_body("b.jpg", bucket=s["bucket"])},
        ])
        wait_for(lambda: {"/a.jpg", "/b.jpg"} <= set(items(db)), what="good neighbours applied")
        wait_for(lambda: queue_drained(s["sqs"], s["queue_url"]), what="every message deleted")


def test_malformed_hook_bodies_get_400_and_one_log_line(tmp_path, s3_setup, caplog):
    s = s3_setup
    port = free_port()
    cfg = cloud_config(tmp_path, s["driver"], daemon=f'listen = "127.0.0.1:{port}"\nhook_token = "{TOKEN}"')
    base = f"http://127.0.0.1:{port}/hooks/"
    with ThreadDaemon(cfg):
        wait_for(lambda: synced(tmp_path / "catalogue.db"))
        sns = {"Type": "Notification", "Message": s3_body(5, bucket=s["bucket"])}
        assert post(base + "sns?token=" + TOKEN, sns) == 400
        assert post(base + "sns?token=" + TOKEN, DEEP.encode()) == 400
        assert post(base + "pubsub?token=" + TOKEN, {"message": {"attributes": [1]}}) == 400
        assert post(base + "eventgrid?token=" + TOKEN, [{"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                                                         "data": [1]}]) == 400
        assert post(base + "eventgrid?token=" + TOKEN, [{"eventType": "Microsoft.Storage.BlobCreated",
                                                         "subject": 5}]) == 400
    assert "Traceback" not in caplog.text
