"""An inventory's manifest and where its data files are: S3 Inventory `manifest.json`, GCS
Storage Insights `..._manifest.json`, Azure Blob Inventory `<rule>-manifest.json` (see the
package's docstring), in a local folder or a bucket."""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from drivers import Driver, NotFound

from ...errors import InputError

class InventoryError(InputError):
    """The inventory is malformed, partial or not for this dataset; the message names where."""


def normalise_column(name: str) -> str:
    """Column names compared loosely: 'LastModifiedDate', 'last_modified_date' and
    'Last-Modified-Date' are one name."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class Columns:
    """Which columns of one cloud's inventory hold what, by normalised name."""

    key: str
    size: str
    mtime: str
    etag: str | None
    md5: str | None  # base64 MD5 column; None: the MD5 is the etag where it is a plain one
    url_encoded_csv_keys: bool = False  # S3 URL-encodes keys in CSV (not in Parquet)
    # rows to leave out: column -> values (normalised text) that mean "not a current object"
    skip_if: dict[str, tuple[str, ...]] = field(default_factory=dict)


COLUMNS = {
    "s3": Columns("key", "size", "lastmodifieddate", "etag", None, url_encoded_csv_keys=True,
                  skip_if={"islatest": ("false",), "isdeletemarker": ("true",)}),
    "gcs": Columns("name", "size", "updated", "etag", "md5hash"),
    "azure": Columns("name", "contentlength", "lastmodified", "etag", "contentmd5",
                     skip_if={"deleted": ("true",), "iscurrentversion": ("false",),
                              "hdiisfolder": ("true",)}),
}


@dataclass
class Manifest:
    kind: str  # s3 | gcs | azure
    where: str  # where the manifest is, for messages
    format: str  # csv | parquet
    files: list[tuple[str, dict]]  # (name as the manifest gives it, its manifest entry)
    snapshot: str | None = None
    source_bucket: str | None = None
    csv_schema: list[str] | None = None  # S3 CSV files have no header row
    expected_rows: int | None = None


# -- where the files are --------------------------------------------------------------------

class InventoryFiles:
    """The folder tree the inventory is in: a local folder, or a bucket through a driver."""

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def describe(self, name: str) -> str:
        return name

    @contextlib.contextmanager
    def seekable(self, name: str) -> Iterator[BinaryIO]:
        with self.open(name) as stream:
            yield stream


class LocalFiles(InventoryFiles):
    def open(self, name: str) -> BinaryIO:
        return open(name, "rb")

    def exists(self, name: str) -> bool:
        return Path(name).is_file()


class BucketFiles(InventoryFiles):
    """A bucket's objects, read through a driver whose folder is the bucket's root."""

    def __init__(self, driver: Driver, scheme: str, bucket: str):
        self.driver, self.scheme, self.bucket = driver, scheme, bucket

    def open(self, name: str) -> BinaryIO:
        return self.driver.open(name)

    def exists(self, name: str) -> bool:
        return self.driver.exists(name)

    def describe(self, name: str) -> str:
        return f"{self.scheme}://{self.bucket}/{name}"

    @contextlib.contextmanager
    def seekable(self, name: str) -> Iterator[BinaryIO]:
        with tempfile.TemporaryFile(prefix="syncd-inventory-") as copy:
            with self.open(name) as stream:
                shutil.copyfileobj(stream, copy, 1024 * 1024)
            copy.seek(0)
            yield copy


SCHEMES = {"s3": "s3", "gs": "gcs", "az": "azure", "azure": "azure"}


def split_uri(uri: str) -> tuple[str | None, str, str]:
    """(driver kind or None for a local path, bucket, name) of an inventory URI."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme in SCHEMES:
        name = parsed.path.lstrip("/")
        if not parsed.netloc or not name:
            raise InventoryError(f"inventory {uri!r}: give the manifest as {parsed.scheme}://BUCKET/KEY")
        return SCHEMES[parsed.scheme], parsed.netloc, name
    if parsed.scheme == "file":
        return None, "", urllib.parse.unquote(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:
        raise InventoryError(f"inventory {uri!r}: unknown scheme {parsed.scheme!r}"
                             " (s3://, gs://, az:// or a local path)")
    return None, "", uri


# -- the manifest -----------------------------------------------------------------------------

def read_manifest(files: InventoryFiles, name: str) -> Manifest:
    where = files.describe(name)
    try:
        with files.open(name) as stream:
            data = json.loads(stream.read())
    except NotFound as error:
        raise InventoryError(f"inventory manifest {where}: not found") from error
    except FileNotFoundError as error:
        raise InventoryError(f"inventory manifest {where}: not found") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InventoryError(f"inventory manifest {where}: not JSON: {error}") from error
    if not isinstance(data, dict):
        raise InventoryError(f"inventory manifest {where}: not a JSON object")

    def need(key: str, kind: type, value=None):
        value = data.get(key) if value is None else value
        if not isinstance(value, kind):
            raise InventoryError(f"inventory manifest {where}: {key!r} missing or not a {kind.__name__}")
        return value

    if "report_shards_file_names" in data:
        names = need("report_shards_file_names", list)
        shards = data.get("shard_count")
        if isinstance(shards, int) and shards != len(names):
            raise InventoryError(f"inventory manifest {where}: shard_count is {shards} but"
                                 f" {len(names)} shard files are named (partial report)")
        fmt = "parquet" if names and all(n.endswith(".parquet") for n in names) else "csv"
        rows = data.get("records_processed")
        return Manifest("gcs", where, fmt, [(n, {}) for n in names],
                        snapshot=data.get("snapshot_time"),
                        expected_rows=int(rows) if isinstance(rows, (int, str)) and str(rows).isdigit() else None)
    if "ruleDefinition" in data or "ruleName" in data:
        rule = need("ruleDefinition", dict)
        status = data.get("status")
        if status is not None and status != "Succeeded":
            raise InventoryError(f"inventory manifest {where}: status is {status!r}, not 'Succeeded'"
                                 " (partial inventory)")
        files = need("files", list)
        entries = []
        for index, entry in enumerate(files):
            if not isinstance(entry, dict) or not isinstance(entry.get("blob"), str):
                raise InventoryError(f"inventory manifest {where}: files[{index}] has no 'blob'")
            entries.append((entry["blob"], entry))
        fmt = str(rule.get("format", "csv")).lower()
        summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
        count = summary.get("objectCount")
        return Manifest("azure", where, fmt, entries, snapshot=data.get("inventoryCompletionTime"),
                        expected_rows=count if isinstance(count, int) else None)
    if "fileFormat" in data or "sourceBucket" in data:
        fmt = str(need("fileFormat", str)).lower()
        if fmt not in ("csv", "parquet"):
            raise InventoryError(f"inventory manifest {where}: fileFormat {data['fileFormat']!r}"
                                 " is not supported (CSV or Parquet)")
        entries = []
        for index, entry in enumerate(need("files", list)):
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                raise InventoryError(f"inventory manifest {where}: files[{index}] has no 'key'")
            entries.append((entry["key"], entry))
        schema = None
        if fmt == "csv":
            schema = [c.strip() for c in need("fileSchema", str).split(",")]
        created = data.get("creationTimestamp")
        snapshot = None
        if isinstance(created, (str, int)) and str(created).isdigit():
            snapshot = datetime.fromtimestamp(int(created) / 1000, timezone.utc).isoformat()
        return Manifest("s3", where, fmt, entries, snapshot=snapshot,
                        source_bucket=data.get("sourceBucket"), csv_schema=schema)
    raise InventoryError(f"inventory manifest {where}: not an S3 Inventory, GCS Storage Insights"
                         " or Azure Blob Inventory manifest")


def resolve_file(files: InventoryFiles, manifest_name: str, name: str, manifest: Manifest) -> str:
    """Where the data file is: beside the manifest, or under one of its folder's ancestors."""
    folder = posixpath.dirname(manifest_name) if not isinstance(files, LocalFiles) \
        else str(Path(manifest_name).resolve().parent)
    tried = []
    while True:
        candidate = posixpath.join(folder, name) if folder else name
        tried.append(candidate)
        if files.exists(candidate):
            return candidate
        parent = posixpath.dirname(folder)
        if parent == folder or not folder:
            break
        folder = parent
    raise InventoryError(f"inventory manifest {manifest.where}: data file {name!r} not found"
                         f" (looked beside the manifest and in its parent folders; partial inventory?)")


# -- rows ------------------------------------------------------------------------------------
