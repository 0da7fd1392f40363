"""The drivers read listings faster than their SDKs do (S3 and GCS: timestamps without dateutil
or strptime; Azure: the List Blobs XML without the SDK's deserializer). What they read must be
exactly what the SDK's own listing reads, on the emulators, for names and facts that are easy
to get wrong."""

from __future__ import annotations

import base64
import hashlib

import pytest

from drivers import NotFound
from emulators import azure_service, gcs_client, s3_client

NAMES = ["plain.jpg", "with space.jpg", "amp&lt<gt>.jpg", "quote\"'.jpg", "percent%20.jpg",
         "plus+sign.jpg", "ünïcødé/文件.jpg", "emoji-😀.jpg", "tab\there.jpg", "a/b/c/deep.jpg",
         "trailing.", "x" * 200 + ".jpg"]


def driver_listing(driver, prefix: str = "") -> dict[str, tuple]:
    return {info.key: (info.size, info.mtime, info.etag, info.md5)
            for page in driver.list_pages(prefix) for info in page}


def test_azure_listing_reads_what_the_sdk_reads(endpoint_for):
    endpoint = endpoint_for("azure")
    container_name = endpoint.new_bucket()
    container = azure_service(endpoint).get_container_client(container_name)
    for index, name in enumerate(NAMES):
        container.upload_blob(name, b"x" * index)
    blocks = container.get_blob_client("block/in-blocks.bin")  # committed blocks: no MD5
    blocks.stage_block("YmxvY2sx", b"y" * 10)
    blocks.commit_block_list(["YmxvY2sx"])
    driver = endpoint.driver(container_name, list_concurrency=1)
    driver.inner.page_size = 5  # several pages, each after a continuation marker

    expected = {}
    for blob in container.list_blobs():
        md5 = blob.content_settings.content_md5
        expected[blob.name] = (blob.size, blob.last_modified.timestamp(), blob.etag.strip('"'),
                               bytes(md5).hex() if md5 else None)
    assert driver_listing(driver) == expected
    assert expected["emoji-😀.jpg"][3] == hashlib.md5(b"x" * 7).hexdigest()
    assert expected["block/in-blocks.bin"][3] is None

    walked = container.walk_blobs(delimiter="/")
    sdk = sorted(entry.name for entry in walked)
    objects, prefixes = [], []
    for page_objects, page_prefixes in driver.inner._delimited(""):
        objects += [info.key for info in page_objects]
        prefixes += page_prefixes
    assert sorted(objects + prefixes) == sdk
    assert set(prefixes) == {"a/", "block/", "ünïcødé/"}


def test_azure_listing_of_a_missing_container_is_not_found(endpoint_for):
    driver = endpoint_for("azure").driver("no-such-container-x")
    with pytest.raises(NotFound) as raised:
        driver_listing(driver)
    assert raised.value.code == "ContainerNotFound"


def test_s3_listing_reads_the_timestamps_botocore_reads(endpoint_for):
    endpoint = endpoint_for("s3")
    bucket = endpoint.new_bucket()
    client = s3_client(endpoint)  # botocore's own timestamp parser
    for index, name in enumerate(NAMES):
        client.put_object(Bucket=bucket, Key=name, Body=b"x" * index)
    driver = endpoint.driver(bucket, list_concurrency=1)
    driver.inner.page_size = 5

    expected = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page["Contents"]:
            etag = item["ETag"].strip('"')
            expected[item["Key"]] = (item["Size"], item["LastModified"].timestamp(), etag, etag)
    assert driver_listing(driver) == expected
    head = client.head_object(Bucket=bucket, Key="plain.jpg")  # an HTTP-date header
    assert driver.stat("plain.jpg").mtime == head["LastModified"].timestamp()
    assert expected["plain.jpg"][3] == hashlib.md5(b"").hexdigest()


def test_gcs_listing_reads_the_times_the_sdk_reads(endpoint_for):
    endpoint = endpoint_for("gcs")
    bucket_name = endpoint.new_bucket()
    bucket = gcs_client(endpoint).bucket(bucket_name)
    for index, name in enumerate(NAMES):
        bucket.blob(name).upload_from_string(b"x" * index)
    driver = endpoint.driver(bucket_name, list_concurrency=1)
    driver.inner.page_size = 5

    expected = {blob.name: (blob.size, blob.updated.timestamp(), blob.etag,
                            base64.b64decode(blob.md5_hash).hex())
                for blob in gcs_client(endpoint).list_blobs(bucket_name)}
    assert driver_listing(driver) == expected
    assert any(value[1] % 1 for value in expected.values())  # times with fractions of seconds
