"""The daemon against real endpoints on 127.0.0.1: moto's S3 -> SQS (and SNS), Azurite's
queue fed with Event Grid messages, fake-gcs-server with Pub/Sub (pull where the emulator is
installed, push everywhere), and the push hooks for each cloud. On both catalogue engines."""

from __future__ import annotations

import base64
import json
import os
import signal
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from conftest import catalogue_section
from daemon_support import DaemonProcess, ThreadDaemon, free_port, items, jobs, synced, wait_for
from emulators import (
    AZURITE_ACCOUNT, AZURITE_KEY, AWS_TEST_KEYS, Server, azure_service, azurite_binary,
    fake_gcs_binary, gcs_client, s3_client, unique_name,
)
from syncd.catalogue import Catalogue
from syncd.catalogue.jobs import JobQueue

pytestmark = pytest.mark.both_backends

TOKEN = "cloud-hook-token"
PUBSUB_EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")


def cloud_config(tmp_path: Path, driver_toml: str, *, sources: str = "", daemon: str = "",
                 catalogue: str | Path | None = None) -> Path:
    """The daemon's config; `catalogue`: a SQLite file or a postgresql:// URL (default:
    catalogue.db in tmp_path)."""
    path = tmp_path / "daemon.toml"
    path.write_text(f"""
{catalogue_section(catalogue or tmp_path / 'catalogue.db')}

{driver_toml}
[[datasets]]
name = "photos"
driver = "bucket"

[daemon]
{daemon}

{sources}
""")
    return path


def present(db) -> dict[str, dict]:
    return {k: v for k, v in items(db).items() if v["state"] == "present"}


def post(url: str, body, headers=None) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


# -- S3 -----------------------------------------------------------------------------------

@pytest.fixture
def s3_setup(tmp_path, s3_endpoint):
    import boto3

    s3 = s3_client(s3_endpoint)
    sqs = boto3.client("sqs", endpoint_url=s3_endpoint.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket, other = s3_endpoint.new_bucket(), s3_endpoint.new_bucket()
    queue_url = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for name in (bucket, other):
        s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
    source = f"""
[[sources]]
kind = "sqs"
queue_url = "{queue_url}"
endpoint_url = "{s3_endpoint.url}"
region = "us-east-1"
access_key_id = "testing"
secret_access_key = "testing"
wait_seconds = 1
visibility_timeout = 2
"""
    return dict(s3=s3, sqs=sqs, bucket=bucket, other=other, queue_url=queue_url, queue_arn=arn,
                source=source, driver=s3_endpoint.toml(bucket, name="bucket"))


def queue_drained(sqs, queue_url) -> bool:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return attributes["ApproximateNumberOfMessages"] == "0" and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_s3_notifications_through_sqs(tmp_path, s3_setup, catalogue_location):
    s = s3_setup
    s3, bucket = s["s3"], s["bucket"]
    db = catalogue_location
    with ThreadDaemon(cloud_config(tmp_path, s["driver"], sources=s["source"], catalogue=db)):
        wait_for(lambda: synced(db), what="startup sync")
        s3.put_object(Bucket=s["other"], Key="not-ours.jpg", Body=b"x")
        s3.put_object(Bucket=bucket, Key=".dataloop/thumbnails/t.jpg", Body=b"t")
        s3.put_object(Bucket=bucket, Key="cats/black cat #1+2.jpg", Body=b"meow")
        item = wait_for(lambda: items(db).get("/cats/black cat #1+2.jpg"), what="created")
        s3.put_object(Bucket=bucket, Key="cats/black cat #1+2.jpg", Body=b"meow meow")
        wait_for(lambda: items(db)["/cats/black cat #1+2.jpg"]["metadata"]["system"]["size"] == 9,
                 what="overwritten")
        # An S3 "move": a copy, then a delete of the original.
        s3.copy_object(Bucket=bucket, Key="dogs/moved.jpg",
                       CopySource={"Bucket": bucket, "Key": "cats/black cat #1+2.jpg"})
        s3.delete_object(Bucket=bucket, Key="cats/black cat #1+2.jpg")
        wait_for(lambda: set(items(db)) == {"/dogs/moved.jpg"}, what="moved")
        assert items(db)["/dogs/moved.jpg"]["id"] == item["id"]
        s3.delete_object(Bucket=bucket, Key="dogs/moved.jpg")
        wait_for(lambda: items(db)["/dogs/moved.jpg"]["state"] == "missing", what="deleted")
        wait_for(lambda: queue_drained(s["sqs"], s["queue_url"]), what="every message deleted")
    assert list(items(db)) == ["/dogs/moved.jpg"]
    states = [state for _, state in jobs(db)]
    assert states.count("pending") == 0 and states.count("cancelled") == len(states)


def test_duplicate_and_out_of_order_sqs_deliveries_are_safe(tmp_path, s3_setup,
        catalogue_location):
    s = s3_setup
    s["s3"].put_bucket_notification_configuration(Bucket=s["bucket"], NotificationConfiguration={})
    db = catalogue_location

    def send(event_name, key):
        s["sqs"].send_message(QueueUrl=s["queue_url"], MessageBody=json.dumps({"Records": [{
            "eventSource": "aws:s3", "eventName": event_name,
            "s3": {"bucket": {"name": s["bucket"]}, "object": {"key": key}}}]}))

    with ThreadDaemon(cloud_config(tmp_path, s["driver"], sources=s["source"], catalogue=db)):
        wait_for(lambda: synced(db))
        s["s3"].put_object(Bucket=s["bucket"], Key="a.jpg", Body=b"a")
        send("ObjectRemoved:Delete", "a.jpg")  # late delete of an earlier version: object is there
        send("ObjectCreated:Put", "a.jpg")
        send("ObjectCreated:Put", "a.jpg")  # duplicate delivery
        wait_for(lambda: queue_drained(s["sqs"], s["queue_url"]), what="all applied")
        assert [v["state"] for v in items(db).values()] == ["present"]
        assert [state for _, state in jobs(db)] == ["pending"]
        s["s3"].delete_object(Bucket=s["bucket"], Key="a.jpg")
        send("ObjectRemoved:Delete", "a.jpg")
        send("ObjectCreated:Put", "a.jpg")  # the create arrives after the delete
        wait_for(lambda: queue_drained(s["sqs"], s["queue_url"]), what="all applied")
        assert items(db)["/a.jpg"]["state"] == "missing"
    assert len(items(db)) == 1


def test_sns_wrapped_s3_notifications_through_sqs(tmp_path, s3_setup, s3_endpoint,
        catalogue_location):
    import boto3

    s = s3_setup
    sns = boto3.client("sns", endpoint_url=s3_endpoint.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    topic = sns.create_topic(Name=unique_name("t"))["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=s["queue_arn"])
    s["s3"].put_bucket_notification_configuration(Bucket=s["bucket"], NotificationConfiguration={})
    s["s3"].put_object(Bucket=s["bucket"], Key="via sns.jpg", Body=b"sns")
    record = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
              "eventTime": "2024-05-01T12:00:00.000Z",
              "s3": {"bucket": {"name": s["bucket"]}, "object": {"key": "via+sns.jpg", "size": 3}}}
    db = catalogue_location
    with ThreadDaemon(cloud_config(tmp_path, s["driver"], sources=s["source"], catalogue=db)):
        wait_for(lambda: synced(db))
        s["s3"].put_object(Bucket=s["bucket"], Key="via sns 2.jpg", Body=b"sns2")
        sns.publish(TopicArn=topic, Message=json.dumps({"Records": [
            record, {**record, "s3": {"bucket": {"name": s["bucket"]}, "object": {"key": "via+sns+2.jpg"}}}]}))
        wait_for(lambda: "/via sns 2.jpg" in items(db), what="SNS-wrapped event applied")
        wait_for(lambda: queue_drained(s["sqs"], s["queue_url"]))


def test_sns_http_push(tmp_path, s3_setup, catalogue_location):
    s = s3_setup
    port = free_port()
    db = catalogue_location
    cfg = cloud_config(tmp_path, s["driver"], catalogue=db,
                       daemon=f'listen = "127.0.0.1:{port}"\nhook_token = "{TOKEN}"')
    with ThreadDaemon(cfg):
        wait_for(lambda: synced(db))
        s["s3"].put_object(Bucket=s["bucket"], Key="pushed.jpg", Body=b"p")
        message = {"Type": "Notification", "MessageId": "1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                   "Message": json.dumps({"Records": [{
                       "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                       "s3": {"bucket": {"name": s["bucket"]}, "object": {"key": "pushed.jpg"}}}]})}
        url = f"http://127.0.0.1:{port}/hooks/sns"
        assert post(url, message, {"x-amz-sns-message-type": "Notification"}) == 401
        assert items(db) == {}
        assert post(url + "?token=" + TOKEN, message, {"x-amz-sns-message-type": "Notification"}) == 200
        assert "/pushed.jpg" in items(db)  # applied before the 200


def test_kill_9_with_messages_in_flight_loses_none(tmp_path, s3_setup, catalogue_location):
    """Messages received but not yet deleted when the daemon dies come back after the
    visibility timeout; every object ends up as exactly one item with one job."""
    s = s3_setup
    db = catalogue_location
    cfg = cloud_config(tmp_path, s["driver"], sources=s["source"], catalogue=db)
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log").start()
    keys = [f"batch/{i:03d}.jpg" for i in range(60)]
    try:
        wait_for(lambda: synced(db), what="startup sync")
        for key in keys[:30]:
            s["s3"].put_object(Bucket=s["bucket"], Key=key, Body=key.encode())
        wait_for(lambda: len(items(db)) >= 5, what="some applied")
        daemon.kill()
        for key in keys[30:]:
            s["s3"].put_object(Bucket=s["bucket"], Key=key, Body=key.encode())
        daemon = DaemonProcess(cfg, tmp_path / "daemon.log").start()
        wait_for(lambda: set(present(db)) == {"/" + k for k in keys}, what="all objects catalogued")
        wait_for(lambda: queue_drained(s["sqs"], s["queue_url"]), what="queue drained")
        assert daemon.terminate(signal.SIGTERM) == 0
    finally:
        daemon.close()
    with Catalogue(db) as catalogue:
        live = Counter(j["item"] for j in JobQueue(catalogue).rows() if j["state"] != "cancelled")
    assert len(live) == len(keys) and all(count == 1 for count in live.values())


# -- Azure ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def azure_queue_url():
    blob = azurite_binary()
    if blob is None:
        pytest.skip("Azurite not found and npm is not installed")
    binary = Path(blob).parent / "azurite-queue"
    port = free_port()
    workspace = tempfile.mkdtemp(prefix="azurite-queue-")
    server = Server("azurite-queue", [str(binary), "--queueHost", "127.0.0.1", "--queuePort", str(port),
                                      "--inMemoryPersistence", "--silent", "--disableTelemetry",
                                      "--skipApiVersionCheck"], port, cwd=workspace)
    yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    server.stop()


def grid_event(event_type, container, blob, **data):
    return {"topic": f"/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/{AZURITE_ACCOUNT}",
            "subject": f"/blobServices/default/containers/{container}/blobs/{blob}",
            "eventType": event_type, "id": unique_name("e"), "eventTime": "2024-05-01T12:00:00.0000000Z",
            "dataVersion": "", "metadataVersion": "1", "data": {"api": "PutBlob", **data}}


def test_event_grid_messages_through_an_azurite_queue(tmp_path, azure_endpoint, azure_queue_url,
        catalogue_location):
    from azure.storage.queue import QueueClient

    container = azure_endpoint.new_bucket()
    blobs = azure_service(azure_endpoint).get_container_client(container)
    queue_name = unique_name("q")
    connection = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                  f"AccountKey={AZURITE_KEY};QueueEndpoint={azure_queue_url};")
    queue = QueueClient.from_connection_string(connection, queue_name)
    queue.create_queue()

    def send(event) -> None:  # as Event Grid writes to a Storage Queue: base64 JSON
        queue.send_message(base64.b64encode(json.dumps(event).encode()).decode())

    source = f"""
[[sources]]
kind = "azure_queue"
queue = "{queue_name}"
connection_string = "{connection}"
poll_seconds = 0.2
"""
    db = catalogue_location
    with ThreadDaemon(cloud_config(tmp_path, azure_endpoint.toml(container, name="bucket"),
                                   sources=source, catalogue=db)):
        wait_for(lambda: synced(db))
        blobs.upload_blob("cats/a b.jpg", b"azure bytes")
        send("not an event at all")
        send(grid_event("Microsoft.Storage.BlobCreated", "another-container", "x.jpg"))
        send(grid_event("Microsoft.Storage.BlobCreated", container, "cats/a b.jpg", contentLength=11))
        send(grid_event("Microsoft.Storage.BlobCreated", container, ".dataloop/thumbnails/x.jpg"))
        wait_for(lambda: "/cats/a b.jpg" in present(db), what="BlobCreated applied")
        blobs.delete_blob("cats/a b.jpg")
        send(grid_event("Microsoft.Storage.BlobDeleted", container, "cats/a b.jpg"))
        wait_for(lambda: items(db)["/cats/a b.jpg"]["state"] == "missing", what="BlobDeleted applied")
        wait_for(lambda: queue.get_queue_properties().approximate_message_count == 0, what="queue drained")
    assert list(items(db)) == ["/cats/a b.jpg"]


def test_event_grid_webhook_push(tmp_path, azure_endpoint, catalogue_location):
    container = azure_endpoint.new_bucket()
    blobs = azure_service(azure_endpoint).get_container_client(container)
    port = free_port()
    db = catalogue_location
    cfg = cloud_config(tmp_path, azure_endpoint.toml(container, name="bucket"),
                       daemon=f'listen = "127.0.0.1:{port}"\nhook_token = "{TOKEN}"', catalogue=db)
    with ThreadDaemon(cfg):
        wait_for(lambda: synced(db))
        blobs.upload_blob("pushed.jpg", b"eg")
        url = f"http://127.0.0.1:{port}/hooks/eventgrid?token={TOKEN}"
        events = [grid_event("Microsoft.Storage.BlobCreated", container, "pushed.jpg"),
                  grid_event("Microsoft.Storage.BlobCreated", "elsewhere", "pushed.jpg")]
        assert post(url, events, {"aeg-event-type": "Notification"}) == 200
        assert list(items(db)) == ["/pushed.jpg"]


# -- GCS ------------------------------------------------------------------------------------

def pubsub_push(bucket, name, event_type="OBJECT_FINALIZE"):
    data = base64.b64encode(json.dumps({"bucket": bucket, "name": name}).encode()).decode()
    return {"message": {"attributes": {"eventType": event_type, "bucketId": bucket, "objectId": name,
                                       "payloadFormat": "JSON_API_V1"}, "data": data,
                        "messageId": unique_name("m")}, "subscription": "projects/p/subscriptions/s"}


def test_pubsub_push_of_gcs_notifications(tmp_path, gcs_endpoint, catalogue_location):
    bucket = gcs_endpoint.new_bucket()
    client_bucket = gcs_client(gcs_endpoint).bucket(bucket)
    port = free_port()
    db = catalogue_location
    cfg = cloud_config(tmp_path, gcs_endpoint.toml(bucket, name="bucket"),
                       daemon=f'listen = "127.0.0.1:{port}"\nhook_token = "{TOKEN}"', catalogue=db)
    with ThreadDaemon(cfg):
        wait_for(lambda: synced(db))
        client_bucket.blob("dir/x y.png").upload_from_string(b"png bytes")
        url = f"http://127.0.0.1:{port}/hooks/pubsub?token={TOKEN}"
        assert post(url, pubsub_push(bucket, "dir/x y.png")) == 200
        assert "/dir/x y.png" in present(db)
        client_bucket.blob("dir/x y.png").delete()
        assert post(url, pubsub_push(bucket, "dir/x y.png", "OBJECT_DELETE")) == 200
        assert items(db)["/dir/x y.png"]["state"] == "missing"
        # A duplicate, late OBJECT_FINALIZE: storage says the object is gone, so it stays missing.
        assert post(url, pubsub_push(bucket, "dir/x y.png")) == 200
        assert items(db)["/dir/x y.png"]["state"] == "missing"


@pytest.fixture(scope="session")
def pubsub_emulator():
    if not PUBSUB_EMULATOR.exists():
        pytest.skip(f"no Pub/Sub emulator on this machine ({PUBSUB_EMULATOR} is gcloud's "
                    "pubsub-emulator component); the push format is tested instead")
    port = free_port()
    workspace = tempfile.mkdtemp(prefix="pubsub-")
    server = Server("pubsub-emulator", [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}",
                                        f"--dir={workspace}"], port)
    yield f"127.0.0.1:{port}"
    server.stop()


def pubsub_clients(host):
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return (pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host))),
            pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host))))


def test_pubsub_pull_of_real_gcs_notifications(tmp_path, pubsub_emulator, catalogue_location):
    """fake-gcs-server publishes real notifications to the Pub/Sub emulator; the daemon pulls."""
    binary = fake_gcs_binary()
    if binary is None:
        pytest.skip("fake-gcs-server not installed")
    publisher, subscriber = pubsub_clients(pubsub_emulator)
    topic = publisher.create_topic(name=f"projects/test-project/topics/{unique_name('t')}").name
    subscription = subscriber.create_subscription(
        name=f"projects/test-project/subscriptions/{unique_name('s')}", topic=topic,
        ack_deadline_seconds=10).name
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Server("fake-gcs-server (events)", [
        binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
        "-external-url", url, "-log-level", "error", "-event.pubsub-project-id", "test-project",
        "-event.pubsub-topic", topic.rsplit("/", 1)[1], "-event.list", "finalize,delete,metadataUpdate",
    ], port, env={"PUBSUB_EMULATOR_HOST": pubsub_emulator})
    try:
        from emulators import Endpoint

        endpoint = Endpoint("gcs", url, {"anonymous": True}, {"retry_seconds": 5.0})
        bucket = endpoint.new_bucket()
        source = f"""
[[sources]]
kind = "pubsub"
subscription = "{subscription}"
emulator_host = "{pubsub_emulator}"
"""
        db = catalogue_location
        with ThreadDaemon(cloud_config(tmp_path, endpoint.toml(bucket, name="bucket"),
                                       sources=source, catalogue=db)):
            wait_for(lambda: synced(db))
            blob = gcs_client(endpoint).bucket(bucket).blob("cats/pulled.jpg")
            blob.upload_from_string(b"pulled")
            wait_for(lambda: "/cats/pulled.jpg" in present(db), timeout=30, what="OBJECT_FINALIZE")
            blob.delete()
            wait_for(lambda: items(db)["/cats/pulled.jpg"]["state"] == "missing", timeout=30,
                     what="OBJECT_DELETE")
    finally:
        server.stop()
