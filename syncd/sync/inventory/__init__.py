"""Bucket inventories as a listing: S3 Inventory, GCS Storage Insights, Azure Blob Inventory.

A cloud writes a daily or weekly snapshot of a bucket's objects as a manifest plus data
files (CSV, gzip CSV or Parquet). `inventory_listing(uri, ...)` reads one and yields pages
of (key, size, mtime, etag, md5) exactly as the driver's own listing would, so that the
indexer stages and diffs them the same way. Nothing is held whole: CSV is parsed a line at
a time from the (gunzipped) stream, Parquet a row group at a time (pyarrow); a remote
Parquet file is copied to a temporary file first, since Parquet needs random access.

Which cloud wrote it is told by the manifest's own fields:

- S3: `manifest.json` with `fileFormat`, `fileSchema` (CSV) and `files[].key` (keys in the
  destination bucket) and their `MD5checksum`, which is checked: a partial file is refused;
- GCS: `..._manifest.json` with `report_shards_file_names`, `shard_count` and
  `records_processed` (the row count, checked at the end); CSV shards have a header row;
- Azure: `<rule>-manifest.json` with `files[].blob`, `ruleDefinition.format` and
  `.schemaFields`, `summary.objectCount` (checked) and `status` (must be `Succeeded`).

A data file is found beside the manifest, or under the manifest's folder's ancestors (the
bucket's root, where S3 and Azure name them from), so a downloaded copy of the inventory
folder reads the same as the bucket. Malformed input raises InventoryError naming the file
and, for a row, its number (1 = the first line of the file).
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .manifest import (BucketFiles, InventoryError, InventoryFiles, LocalFiles, Manifest,
                       read_manifest, resolve_file, split_uri)
from .rows import PAGE_ROWS, Row, RowReader, csv_rows, parquet_rows

__all__ = ["BucketFiles", "InventoryError", "InventoryFiles", "InventoryInfo", "LocalFiles",
           "inventory_pages", "split_uri"]

# -- the listing -------------------------------------------------------------------------------

@dataclass
class InventoryInfo:
    """What the last read told about the inventory, for the sync's report."""

    kind: str = ""
    where: str = ""
    snapshot: str | None = None
    files: int = 0
    rows: int = 0


def inventory_pages(files: InventoryFiles, manifest_name: str, *, base: str, prefix: str = "",
                    source_bucket: str | None = None,
                    info: InventoryInfo | None = None) -> Iterator[list[Row]]:
    """Yield pages of listing rows from the inventory whose manifest is `manifest_name`."""
    manifest = read_manifest(files, manifest_name)
    info = info if info is not None else InventoryInfo()
    info.kind, info.where, info.snapshot = manifest.kind, manifest.where, manifest.snapshot
    if (source_bucket and manifest.source_bucket and manifest.kind == "s3"
            and manifest.source_bucket != source_bucket):
        raise InventoryError(f"inventory manifest {manifest.where}: it is an inventory of bucket"
                             f" {manifest.source_bucket!r}, not of {source_bucket!r}")
    if manifest.format not in ("csv", "parquet"):
        raise InventoryError(f"inventory manifest {manifest.where}: format {manifest.format!r}"
                             " is not supported (CSV or Parquet)")
    reader = RowReader(manifest.kind, base, prefix)
    located = [(resolve_file(files, manifest_name, name, manifest), entry)
               for name, entry in manifest.files]
    page: list[Row] = []
    for path, entry in located:
        where = files.describe(path)
        info.files += 1
        for row in _file_rows(files, path, where, manifest, entry, reader, info):
            page.append(row)
            if len(page) >= PAGE_ROWS:
                yield page
                page = []
    if page:
        yield page
    if manifest.expected_rows is not None and info.rows != manifest.expected_rows:
        raise InventoryError(f"inventory manifest {manifest.where}: it counts"
                             f" {manifest.expected_rows} objects but the files hold {info.rows}"
                             " rows (partial inventory)")


def _file_rows(files, path, where, manifest: Manifest, entry: dict, reader: RowReader,
               info: InventoryInfo) -> Iterator[Row]:
    expected_md5 = entry.get("MD5checksum") if manifest.kind == "s3" else None
    expected_size = entry.get("size")

    def count(n: int = 1) -> None:
        info.rows += n

    if manifest.format == "parquet":
        with files.seekable(path) as stream:
            _check_whole(stream, where, expected_md5, expected_size)
            stream.seek(0)
            yield from parquet_rows(stream, where, reader, count)
        return
    with files.open(path) as raw:
        checked = _Checked(raw)
        stream = gzip.GzipFile(fileobj=checked) if path.endswith(".gz") else checked
        yield from csv_rows(stream, where, reader, manifest.csv_schema, count)
        checked.read_rest()
        checked.verify(where, expected_md5, expected_size)


def _check_whole(stream: BinaryIO, where: str, md5: str | None, size) -> None:
    if not md5 and not isinstance(size, int):
        return
    checked = _Checked(stream)
    checked.read_rest()
    checked.verify(where, md5, size)


class _Checked(io.RawIOBase):
    """A stream that counts and hashes what is read through it."""

    def __init__(self, inner: BinaryIO):
        super().__init__()
        self.inner = inner
        self.hash = hashlib.md5()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.hash.update(data)
        self.size += n
        return n

    def read_rest(self) -> None:
        while self.read(1024 * 1024):
            pass

    def verify(self, where: str, md5: str | None, size) -> None:
        if isinstance(size, int) and size != self.size:
            raise InventoryError(f"{where}: {self.size} bytes, the manifest says {size}"
                                 " (partial or changed file)")
        if md5 and self.hash.hexdigest() != str(md5).lower():
            raise InventoryError(f"{where}: MD5 {self.hash.hexdigest()} does not match the"
                                 f" manifest's {md5} (partial or changed file)")
