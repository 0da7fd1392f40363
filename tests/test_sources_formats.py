"""Parsing the storages' notification formats, and matching them to datasets."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

from drivers import options_model

import pytest

from syncd.sync.events import FolderChanged, ObjectCreated, ObjectDeleted, ObjectMoved, ObjectUpdated
from syncd.service.sources import Router
from syncd.service.sources.formats import (
    FormatError, parse_event_grid_body, parse_event_grid_event, parse_pubsub_push,
    parse_queue_message, parse_s3_message,
)


def s3_record(name, key, bucket="photos-bucket", **obj):
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": name,
            "eventTime": "2024-05-01T12:00:00.000Z",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, **obj}}}


def test_s3_records_raw_and_sns_wrapped():
    body = json.dumps({"Records": [
        s3_record("ObjectCreated:Put", "cats/black+cat%231.jpg", size=5, eTag="abc", sequencer="0A"),
        s3_record("ObjectRemoved:Delete", "a%2Fb.txt"),
        s3_record("ObjectRestore:Completed", "c.jpg"),
    ]})
    notices = parse_s3_message(body)
    assert [(n.action, n.key) for n in notices] == [
        ("created", "cats/black cat#1.jpg"), ("deleted", "a/b.txt"), ("updated", "c.jpg")]
    assert notices[0].size == 5 and notices[0].etag == "abc" and notices[0].sequence == "0A"
    assert notices[0].occurred == 1714564800.0
    wrapped = json.dumps({"Type": "Notification", "MessageId": "m", "Message": body})
    assert parse_s3_message(wrapped) == notices


def test_s3_test_event_and_garbage():
    assert parse_s3_message('{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}') == []
    with pytest.raises(FormatError):
        parse_s3_message("not json")
    with pytest.raises(FormatError):
        parse_s3_message('{"hello": 1}')


def pubsub_body(event_type, bucket, name, **resource):
    data = base64.b64encode(json.dumps({"bucket": bucket, "name": name, **resource}).encode()).decode()
    return json.dumps({"message": {"attributes": {
        "eventType": event_type, "bucketId": bucket, "objectId": name, "objectGeneration": "7",
        "payloadFormat": "JSON_API_V1", "eventTime": "2024-05-01T12:00:00.5Z"},
        "data": data, "messageId": "1"}, "subscription": "projects/p/subscriptions/s"})


def test_pubsub_push_gcs_notifications():
    [notice] = parse_pubsub_push(pubsub_body("OBJECT_FINALIZE", "gb", "dir/x y.png", size="12", etag="E"))
    assert (notice.action, notice.storage, notice.bucket, notice.key) == ("created", "gcs", "gb", "dir/x y.png")
    assert notice.size == 12 and notice.sequence == "7"
    assert parse_pubsub_push(pubsub_body("OBJECT_DELETE", "gb", "x"))[0].action == "deleted"
    assert parse_pubsub_push(pubsub_body("OBJECT_METADATA_UPDATE", "gb", "x"))[0].action == "updated"
    with pytest.raises(FormatError):
        parse_pubsub_push('{"nomessage": 1}')


def grid_event(event_type, blob, container="photos", schema="eventgrid", **data):
    subject = f"/blobServices/default/containers/{container}/blobs/{blob}"
    topic = "/subscriptions/x/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/acct"
    if schema == "cloudevents":
        return {"specversion": "1.0", "type": event_type, "source": topic, "subject": subject,
                "id": "1", "time": "2024-05-01T12:00:00.1234567Z", "data": data}
    return {"topic": topic, "subject": subject, "eventType": event_type, "id": "1",
            "eventTime": "2024-05-01T12:00:00.1234567Z", "dataVersion": "", "data": data}


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_event_grid_blob_events(schema):
    created = grid_event("Microsoft.Storage.BlobCreated", "cats/a b.jpg", schema=schema,
                         api="PutBlob", contentLength=3, eTag="0x1",
                         url="https://acct.blob.core.windows.net/photos/cats/a%20b.jpg")
    [notice] = parse_event_grid_event(created)
    assert (notice.action, notice.bucket, notice.key, notice.account) == ("created", "photos", "cats/a b.jpg", "acct")
    assert notice.size == 3
    renamed = grid_event("Microsoft.Storage.BlobRenamed", "new/b.jpg", schema=schema,
                         sourceUrl="https://acct.dfs.core.windows.net/photos/old/a%20b.jpg",
                         destinationUrl="https://acct.dfs.core.windows.net/photos/new/b.jpg")
    [moved] = parse_event_grid_event(renamed)
    assert (moved.action, moved.old_key, moved.key) == ("moved", "old/a b.jpg", "new/b.jpg")
    assert parse_event_grid_event(grid_event("Microsoft.Storage.BlobInventoryPolicyCompleted", "x")) == []


def test_queue_messages_are_base64_event_grid_json():
    event = grid_event("Microsoft.Storage.BlobDeleted", "x.jpg", url="http://127.0.0.1:1/devstoreaccount1/photos/x.jpg")
    encoded = base64.b64encode(json.dumps(event).encode()).decode()
    assert parse_queue_message(encoded)[0].action == "deleted"
    assert parse_queue_message(json.dumps(event))[0].key == "x.jpg"
    with pytest.raises(FormatError):
        parse_queue_message("%%% not base64 %%%")
    assert len(parse_event_grid_body(json.dumps([event, event]))) == 2


def router():
    drivers = [
        options_model("s3")(name="s3a", bucket="photos-bucket", path="datasets/photos"),
        options_model("s3")(name="s3b", bucket="photos-bucket", path=""),
        options_model("gcs")(name="gcs", bucket="gb", path=""),
        options_model("local")(name="disk", root=Path("/tmp"), path=""),
    ]
    datasets = [SimpleNamespace(name="inner", driver="s3a"), SimpleNamespace(name="whole", driver="s3b"),
                SimpleNamespace(name="g", driver="gcs"), SimpleNamespace(name="local", driver="disk")]
    return Router(SimpleNamespace(drivers=drivers, datasets=datasets))


def test_router_matches_bucket_and_folder_and_skips_the_rest():
    r = router()
    notices = parse_s3_message(json.dumps({"Records": [
        s3_record("ObjectCreated:Put", "datasets/photos/cats/a.jpg"),
        s3_record("ObjectCreated:Put", "datasets/photos/.dataloop/thumbnails/x.jpg"),
        s3_record("ObjectCreated:Put", "elsewhere.jpg"),
        s3_record("ObjectCreated:Put", "a.jpg", bucket="other-bucket"),
        s3_record("ObjectRemoved:Delete", "datasets/photos/b.jpg"),
    ]}))
    events = r.deliveries(notices, source="sqs")
    got = [(type(e).__name__, e.dataset, e.key) for e in events]
    assert got == [
        ("ObjectCreated", "inner", "cats/a.jpg"), ("ObjectCreated", "whole", "datasets/photos/cats/a.jpg"),
        # The inner dataset's artifacts are hidden from the outer one too (issue 11).
        ("ObjectCreated", "whole", "elsewhere.jpg"),
        ("ObjectDeleted", "inner", "b.jpg"), ("ObjectDeleted", "whole", "datasets/photos/b.jpg"),
    ]
    assert all(e.source == "sqs" for e in events)


def test_router_moves_and_folders():
    from syncd.service.sources.formats import Notice

    r = router()
    inner = [e for e in r.events(Notice("moved", "s3", "photos-bucket", "datasets/photos/n.jpg",
                                        old_key="outside/o.jpg"), source="t") if e.dataset == "inner"]
    assert [type(e) for e in inner] == [ObjectCreated]
    both = r.events(Notice("moved", "gcs", "gb", "n.jpg", old_key="o.jpg"), source="t")
    assert isinstance(both[0], ObjectMoved) and both[0].old_key == "o.jpg"
    folder = r.events(Notice("folder", "s3", "photos-bucket", "datasets/photos/cats"), source="t")
    assert [(e.dataset, e.key) for e in folder] == [("inner", "cats"), ("whole", "datasets/photos/cats")]
    above = r.events(Notice("folder", "s3", "photos-bucket", "datasets"), source="t")
    assert [(e.dataset, e.key) for e in above] == [("inner", ""), ("whole", "datasets")]
    assert all(isinstance(e, FolderChanged) for e in folder + above)
    assert isinstance(r.events(Notice("updated", "gcs", "gb", "x"), source="t")[0], ObjectUpdated)
    assert isinstance(r.events(Notice("deleted", "gcs", "gb", "x"), source="t")[0], ObjectDeleted)


def test_router_matches_the_azure_account_where_both_say():
    from drivers.options import Secret

    from syncd.service.sources.formats import Notice

    drivers = [options_model("azure")(
        name="az", container="photos", path="",
        connection_string=Secret("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=k"))]
    r = Router(SimpleNamespace(drivers=drivers, datasets=[SimpleNamespace(name="p", driver="az")]))
    assert r.events(Notice("created", "azure", "photos", "a.jpg", account="acct"), source="t")
    assert r.events(Notice("created", "azure", "photos", "a.jpg"), source="t")  # the event does not say
    assert r.events(Notice("created", "azure", "photos", "a.jpg", account="other"), source="t") == []
