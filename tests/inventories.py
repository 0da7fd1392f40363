"""Writers of bucket inventories in each cloud's own layout, for tests and benchmarks.

Each takes the objects as the cloud's own SDK lists them (so an inventory says exactly what
a listing would) and writes the manifest and data files into `put(name, bytes)`: a local
folder or a bucket.
"""

from __future__ import annotations

import base64
import csv
import email.utils
import gzip
import hashlib
import io
import json
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

Put = Callable[[str, bytes], None]

S3_CSV_SCHEMA = "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass, IsLatest, IsDeleteMarker"


def folder_put(root: Path) -> Put:
    def put(name: str, data: bytes) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return put


def _csv(rows: Iterable[list], header: list[str] | None = None) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


def s3_rows(objects: list[dict], bucket: str) -> list[list]:
    """ListObjectsV2 'Contents' entries as S3 Inventory CSV rows (keys URL-encoded)."""
    return [[bucket, urllib.parse.quote_plus(o["Key"], safe="/"), str(o["Size"]),
             o["LastModified"].astimezone(timezone.utc).isoformat(timespec="milliseconds")
             .replace("+00:00", "Z"), o["ETag"].strip('"'), "STANDARD", "true", "false"]
            for o in objects]


def write_s3_inventory(put: Put, objects: list[dict], *, bucket: str, fmt: str = "csv",
                       files: int = 2, prefix: str = "inventory", row_group_size: int = 2) -> str:
    """An S3 Inventory of `objects` under `prefix`; returns the manifest's name."""
    base = f"{prefix}/{bucket}/config1"
    entries = []
    chunks = [objects[i::files] for i in range(files)]
    for index, chunk in enumerate(chunks):
        if fmt == "csv":
            key = f"{base}/data/part-{index}.csv.gz"
            data = gzip.compress(_csv(s3_rows(chunk, bucket)))
        else:
            key = f"{base}/data/part-{index}.parquet"
            data = s3_parquet(chunk, bucket, row_group_size=row_group_size)
        put(key, data)
        entries.append({"key": key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()})
    manifest = {
        "sourceBucket": bucket, "destinationBucket": "arn:aws:s3:::inventory-dest",
        "version": "2016-11-30", "creationTimestamp": "1700000000000",
        "fileFormat": "CSV" if fmt == "csv" else "Parquet",
        "fileSchema": S3_CSV_SCHEMA if fmt == "csv" else
        "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); }",
        "files": entries,
    }
    name = f"{base}/2023-11-14T22-13Z/manifest.json"
    put(name, json.dumps(manifest).encode())
    return name


def s3_parquet(objects: list[dict], bucket: str, *, row_group_size: int = 100_000) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "bucket": pa.array([bucket] * len(objects), pa.string()),
        "key": pa.array([o["Key"] for o in objects], pa.string()),  # not URL-encoded in Parquet
        "size": pa.array([o["Size"] for o in objects], pa.int64()),
        "last_modified_date": pa.array([o["LastModified"] for o in objects], pa.timestamp("ms", "UTC")),
        "e_tag": pa.array([o["ETag"].strip('"') for o in objects], pa.string()),
        "is_latest": pa.array([True] * len(objects)),
        "is_delete_marker": pa.array([False] * len(objects)),
    })
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_size)
    return sink.getvalue()


def write_gcs_inventory(put: Put, blobs: list, *, fmt: str = "csv", shards: int = 2,
                        prefix: str = "reports") -> str:
    """A Storage Insights inventory report of google-cloud-storage Blobs."""
    header = ["bucket", "name", "size", "updated", "md5Hash", "etag", "storageClass"]
    rows = [[b.bucket.name, b.name, str(b.size), b.updated.isoformat(), b.md5_hash or "", b.etag,
             "STANDARD"] for b in blobs]
    stem = f"{prefix}/config-uuid_2023-11-14T00:00:00Z"
    names = []
    for index in range(shards):
        part = rows[index::shards]
        if fmt == "csv":
            name = f"{stem}_{index}.csv"
            put(name, _csv(part, header))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            columns = list(zip(*part)) if part else [[] for _ in header]
            table = pa.table({h: pa.array(list(c), pa.string()) for h, c in zip(header, columns)})
            sink = io.BytesIO()
            pq.write_table(table, sink, row_group_size=2)
            name = f"{stem}_{index}.parquet"
            put(name, sink.getvalue())
        names.append(name.rsplit("/", 1)[1])
    manifest = {"report_config": {"name": "config-uuid"}, "records_processed": len(rows),
                "snapshot_time": "2023-11-14T00:00:00Z", "shard_count": shards,
                "report_shards_file_names": names}
    put(f"{stem}_manifest.json", json.dumps(manifest).encode())
    return f"{stem}_manifest.json"


def write_azure_inventory(put: Put, blobs: list, *, container: str) -> str:
    """An Azure Blob Inventory (CSV) of azure-storage-blob BlobProperties."""
    header = ["Name", "Creation-Time", "Last-Modified", "Content-Length", "Content-MD5",
              "BlobType", "Etag", "Deleted"]
    rows = []
    for b in blobs:
        md5 = b.content_settings.content_md5
        rows.append([b.name, email.utils.format_datetime(b.creation_time, usegmt=True),
                     email.utils.format_datetime(b.last_modified, usegmt=True), str(b.size),
                     base64.b64encode(bytes(md5)).decode() if md5 else "", "BlockBlob",
                     b.etag.strip('"'), "false"])
    data_name = "2023/11/14/00-00-00/rule1/rule1_1000000_0.csv"
    data = _csv(rows, header)
    put(data_name, data)
    manifest = {
        "destinationContainer": "inventory", "endpoint": "https://account.blob.core.windows.net",
        "files": [{"blob": data_name, "size": len(data), "chunkCount": 1}],
        "inventoryCompletionTime": "2023-11-14T00:05:00Z", "inventoryStartTime": "2023-11-14T00:00:00Z",
        "ruleDefinition": {"filters": {"blobTypes": ["blockBlob"]}, "format": "csv",
                           "objectType": "blob", "schedule": "daily", "schemaFields": header},
        "ruleName": "rule1", "status": "Succeeded",
        "summary": {"objectCount": len(rows), "totalObjectSize": sum(b.size for b in blobs)},
        "version": "1.0",
    }
    name = "2023/11/14/00-00-00/rule1/rule1-manifest.json"
    put(name, json.dumps(manifest).encode())
    return name


def now() -> datetime:
    return datetime.now(timezone.utc)
