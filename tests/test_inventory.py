"""`syncd sync --from-inventory`: S3 Inventory, GCS Storage Insights and Azure Blob Inventory
read instead of a listing, against the real emulators; malformed inventories refused.
On both catalogue engines."""

from __future__ import annotations

import gzip
import json

import pytest

from catalogue_reads import value
from conftest import Runner, catalogue_section
from emulators import azure_service, gcs_client, new_store, s3_client
from inventories import (folder_put, write_azure_inventory, write_gcs_inventory,
                         write_s3_inventory)

pytestmark = pytest.mark.both_backends
NAMES = ["a.jpg", "cats/b c.jpg", "cats/ünï+code & 100%.jpg", "dogs/a%2Fb.jpg", "d/e/f.txt"]


def fill(store) -> None:
    driver = store.make()
    for name in NAMES:
        driver.put(name, f"content of {name}".encode())
    driver.put(".dataloop/thumbnails/x.jpg", b"a thumbnail, never an item")
    driver.put("cats/.dataloop/thumbnails/y.jpg", b"a nested dataset's thumbnail, neither")
    store.write_raw(f"{store.path}/folder-marker/", b"")
    store.write_raw("outside/the/folder.jpg", b"not in this dataset")


def runner(tmp_path, store, catalogue: str) -> Runner:
    tmp_path.mkdir(exist_ok=True)
    config = tmp_path / "syncd.toml"
    config.write_text(f'{catalogue_section(catalogue)}\n\n'
                      f'{store.toml(name="store")}\n'
                      '[[datasets]]\nname = "photos"\ndriver = "store"\n'
                      '[preprocess]\nenabled = false\n')
    return Runner(config)


def counts(result: dict) -> dict:
    keys = ("listed", "created", "updated", "moved", "deleted", "unchanged")
    return {key: result[key] for key in keys}


def items(run: Runner) -> dict[str, dict]:
    return {i["filename"]: i for i in run.json_lines("items", "list", "photos")}


def check_same_as_listing(run: Runner, first: dict) -> None:
    """The inventory gave every item exactly what a listing gives: a listing sync after it
    finds nothing changed (same sizes, etags, MD5s and times), so nothing is preprocessed twice."""
    assert counts(first) == dict(listed=len(NAMES), created=len(NAMES), updated=0, moved=0,
                                 deleted=0, unchanged=0), first
    assert set(items(run)) == {"/" + n for n in NAMES}
    [second] = run.json_lines("sync")
    assert counts(second) == dict(listed=len(NAMES), created=0, updated=0, moved=0, deleted=0,
                                  unchanged=len(NAMES)), second


def bucket_objects(store) -> list[dict]:
    pages = s3_client(store.endpoint).get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
    return [o for page in pages for o in page.get("Contents", ())]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_s3_inventory_in_the_destination_bucket(fmt, s3_endpoint, tmp_path_factory, tmp_path,
                                                catalogue_location):
    store = new_store("s3", lambda kind: s3_endpoint, tmp_path_factory)
    fill(store)
    destination = s3_endpoint.new_bucket()
    client = s3_client(s3_endpoint)

    def put(name, data):
        client.put_object(Bucket=destination, Key=name, Body=data)

    manifest = write_s3_inventory(put, bucket_objects(store), bucket=store.bucket, fmt=fmt)
    run = runner(tmp_path, store, catalogue_location)
    [first] = run.json_lines("sync", "--from-inventory", f"s3://{destination}/{manifest}")
    assert first["inventory"]["kind"] == "s3"
    assert first["inventory"]["files"] == 2
    check_same_as_listing(run, first)
    assert items(run)["/cats/ünï+code & 100%.jpg"]["metadata"]["system"]["md5"]


def test_gcs_inventory_csv_and_parquet(gcs_endpoint, tmp_path_factory, tmp_path, catalogue_location,
                                       request):
    store = new_store("gcs", lambda kind: gcs_endpoint, tmp_path_factory)
    fill(store)
    blobs = list(gcs_client(gcs_endpoint).list_blobs(store.bucket))
    for fmt in ("csv", "parquet"):
        folder = tmp_path / fmt
        manifest = write_gcs_inventory(folder_put(folder), blobs, fmt=fmt)
        # A catalogue each: the test's, then a second SQLite file or PostgreSQL database.
        catalogue = catalogue_location if fmt == "csv" else (
            request.getfixturevalue("postgres_server").create_database()
            if catalogue_location.startswith("postgresql://") else str(folder / "c.db"))
        run = runner(tmp_path / fmt, store, catalogue)
        [first] = run.json_lines("sync", "--from-inventory", str(folder / manifest))
        assert first["inventory"]["kind"] == "gcs" and first["inventory"]["snapshot"]
        check_same_as_listing(run, first)


def test_azure_inventory_from_its_container(azure_endpoint, tmp_path_factory, tmp_path,
                                            catalogue_location):
    store = new_store("azure", lambda kind: azure_endpoint, tmp_path_factory)
    fill(store)
    service = azure_service(azure_endpoint)
    blobs = list(service.get_container_client(store.bucket).list_blobs())
    destination = azure_endpoint.new_bucket()
    container = service.get_container_client(destination)
    manifest = write_azure_inventory(lambda n, d: container.upload_blob(n, d), blobs,
                                     container=store.bucket)
    run = runner(tmp_path, store, catalogue_location)
    [first] = run.json_lines("sync", "--from-inventory", f"az://{destination}/{manifest}")
    assert first["inventory"]["kind"] == "azure"
    check_same_as_listing(run, first)


# -- an inventory sync deletes nothing; malformed inventories are refused ------------------------

OBJECTS = [{"Key": f"data/{n}", "Size": 10 + i, "ETag": f'"{i:032x}"',
            "LastModified": __import__("datetime").datetime(2023, 11, 1, 12, 0, i,
                                                            tzinfo=__import__("datetime").timezone.utc)}
           for i, n in enumerate(NAMES)]


@pytest.fixture
def local_run(tmp_path, storage, catalogue_location):
    """A dataset on a local folder (a stand-in for the bucket the inventory describes)."""
    config = tmp_path / "syncd.toml"
    config.write_text(f'{catalogue_section(catalogue_location)}\n\n'
                      f'[[drivers]]\nname = "disk"\nkind = "local"\nroot = "{storage}"\n'
                      'path = "data"\n'
                      '[[datasets]]\nname = "photos"\ndriver = "disk"\n'
                      '[preprocess]\nenabled = false\n')
    (storage / "data").mkdir()
    run = Runner(config)
    run.catalogue = catalogue_location
    return run


def catalogue_rows(run: Runner) -> int | None:
    """Items in the run's catalogue (None: it has no schema yet)."""
    return value(run.catalogue, "SELECT count(*) FROM items")


def test_inventory_sync_marks_nothing_missing(local_run, tmp_path):
    inv = tmp_path / "inv"
    manifest = write_s3_inventory(folder_put(inv), OBJECTS, bucket="b", files=1)
    [dry] = local_run.json_lines("sync", "--dry-run", "--from-inventory", str(inv / manifest))
    assert dry["created"] == len(NAMES) and catalogue_rows(local_run) == 0
    [first] = local_run.json_lines("sync", "--from-inventory", str(inv / manifest))
    assert first["created"] == len(NAMES)
    md5s = {i["filename"]: i["metadata"]["system"]["md5"] for i in items(local_run).values()}
    assert md5s["/a.jpg"] == f"{0:032x}"
    smaller = write_s3_inventory(folder_put(tmp_path / "inv2"), OBJECTS[:2], bucket="b", files=1)
    [second] = local_run.json_lines("sync", "--from-inventory", str(tmp_path / "inv2" / smaller))
    assert second["deleted"] == 0 and "deletes nothing" in second["deletes_skipped"]
    assert {i["state"] for i in items(local_run).values()} == {"present"}


def test_from_inventory_takes_one_dataset(local_run, tmp_path):
    config = local_run.config_file
    config.write_text(config.read_text() + '[[datasets]]\nname = "more"\ndriver = "disk"\n')
    result = local_run("sync", "--from-inventory", str(tmp_path / "m.json"), expect=2)
    assert "name one dataset" in result.stderr


def refused(run: Runner, manifest, *fragments: str) -> None:
    result = run("sync", "--from-inventory", str(manifest), expect=2)
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, line
    for fragment in fragments:
        assert fragment in line, line


def test_a_bad_row_is_named_and_nothing_is_written(local_run, tmp_path):
    inv = tmp_path / "inv"
    manifest = write_s3_inventory(folder_put(inv), OBJECTS, bucket="b", files=1)
    part = inv / "inventory/b/config1/data/part-0.csv.gz"
    lines = gzip.decompress(part.read_bytes()).decode().splitlines()
    lines[2] = lines[2].replace('"12"', '"twelve"')
    part.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    _fix_manifest(inv / manifest, part)
    refused(local_run, inv / manifest, "part-0.csv.gz: row 3: size 'twelve' is not a whole number")
    assert catalogue_rows(local_run) == 0


def _fix_manifest(manifest, part) -> None:
    import hashlib

    data = json.loads(manifest.read_text())
    data["files"][0]["size"] = part.stat().st_size
    data["files"][0]["MD5checksum"] = hashlib.md5(part.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(data))


def test_partial_and_foreign_inventories_are_refused(local_run, tmp_path):
    inv = tmp_path / "inv"
    manifest = inv / write_s3_inventory(folder_put(inv), OBJECTS, bucket="b", files=1)
    part = inv / "inventory/b/config1/data/part-0.csv.gz"
    whole = part.read_bytes()
    part.write_bytes(whole[: len(whole) // 2])  # a partial upload
    refused(local_run, manifest, "part-0.csv.gz: row 1: unreadable", "truncated")
    fewer = gzip.compress(b"\n".join(gzip.decompress(whole).splitlines()[:2]) + b"\n")
    part.write_bytes(fewer)  # a valid file, but not the one the manifest describes
    refused(local_run, manifest, "part-0.csv.gz", "bytes, the manifest says", "partial or changed")
    data = json.loads(manifest.read_text())
    data["files"][0]["size"] = len(fewer)
    manifest.write_text(json.dumps(data))
    refused(local_run, manifest, "part-0.csv.gz", "does not match the manifest's")
    part.unlink()
    refused(local_run, manifest, "manifest.json", "data file", "not found")
    manifest.write_text("{not json")
    refused(local_run, manifest, "manifest.json", "not JSON")
    refused(local_run, tmp_path / "nowhere.json", "nowhere.json", "not found")
    assert catalogue_rows(local_run) == 0


def test_missing_columns_and_miscounted_reports_are_refused(local_run, tmp_path):
    class Blob:  # the fields write_gcs_inventory reads, as google-cloud-storage names them
        def __init__(self, name, size):
            import datetime
            self.bucket = type("B", (), {"name": "b"})
            self.name, self.size, self.etag = f"data/{name}", size, "CJ+5"
            self.updated = datetime.datetime(2023, 11, 1, tzinfo=datetime.timezone.utc)
            self.md5_hash = "1B2M2Y8AsgTpgAmY7PhCfg=="

    inv = tmp_path / "gcs"
    manifest = inv / write_gcs_inventory(folder_put(inv), [Blob("a.jpg", 1), Blob("b.jpg", 2)],
                                         shards=1)
    data = json.loads(manifest.read_text())
    data["records_processed"] = 3
    manifest.write_text(json.dumps(data))
    refused(local_run, manifest, "manifest.json", "counts 3 objects but the files hold 2 rows")
    data["records_processed"], data["shard_count"] = 2, 2
    manifest.write_text(json.dumps(data))
    refused(local_run, manifest, "shard_count is 2 but 1 shard files")
    data["shard_count"] = 1
    manifest.write_text(json.dumps(data))
    shard = inv / "reports" / data["report_shards_file_names"][0]
    shard.write_text(shard.read_text().replace('"updated"', '"created"', 1))
    refused(local_run, manifest, shard.name, "no updated column")
    assert catalogue_rows(local_run) == 0
