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

import base64
import binascii
import contextlib
import csv
import email.utils
import gzip
import hashlib
import io
import json
import posixpath
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from drivers import HIDDEN_FOLDER, Driver, NotFound
from drivers.base import is_hidden

from ..errors import InputError

PAGE_ROWS = 2_000  # rows a yielded page holds (the indexer reads 16 pages ahead)
PARQUET_BATCH = 16_384  # rows decoded at a time from a Parquet row group
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")

Row = tuple[str, int, float, "str | None", "str | None"]  # key, size, mtime, etag, md5


class InventoryError(InputError):
    """The inventory is malformed, partial or not for this dataset; the message names where."""


def _norm(name: str) -> str:
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


def _resolve(files: InventoryFiles, manifest_name: str, name: str, manifest: Manifest) -> str:
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

def _seconds(value, where: str) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            raise InventoryError(f"{where}: modified time {text!r} is not a date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _md5_hex(value, where: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        return value.hex()
    try:
        raw = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise InventoryError(f"{where}: MD5 {value!r} is not a base64 MD5")
    return raw.hex()


class RowReader:
    """Turns one cloud's rows (dicts by normalised column name) into listing rows under
    `base` (the driver's folder as a name prefix), leaving out folder markers and the hidden
    folder, as the driver's listing does."""

    def __init__(self, kind: str, base: str, prefix: str = ""):
        self.columns = COLUMNS[kind]
        self.kind = kind
        self.base = base
        self.start = base + prefix  # only names under this are listed
        self.hidden = base + HIDDEN_FOLDER + "/"

    def check_header(self, names: list[str], where: str) -> None:
        c = self.columns
        missing = [n for n in (c.key, c.size, c.mtime) if n not in names]
        if missing:
            raise InventoryError(f"{where}: the inventory has no {', '.join(missing)} column"
                                 f" (columns: {', '.join(names)}); syncd needs the key, size and"
                                 " last-modified fields")

    def row(self, values: dict, where: str, *, csv_file: bool) -> Row | None:
        c = self.columns
        for column, skip in c.skip_if.items():
            value = values.get(column)
            if value is not None and str(value).strip().lower() in skip:
                return None
        key = values.get(c.key)
        if key is None or key == "":
            raise InventoryError(f"{where}: empty key")
        if csv_file and c.url_encoded_csv_keys:
            key = urllib.parse.unquote_plus(key)
        if not key.startswith(self.start) or key.endswith("/") or key.startswith(self.hidden):
            return None
        if "/" + HIDDEN_FOLDER in key and is_hidden(key[len(self.base):]):
            return None  # a nested dataset's artifacts, as the driver's listing leaves out
        size = values.get(c.size)
        try:
            size = int(size)
        except (TypeError, ValueError):
            raise InventoryError(f"{where}: size {size!r} is not a whole number") from None
        if size < 0:
            raise InventoryError(f"{where}: size {size} is negative")
        modified = values.get(c.mtime)
        if modified is None or modified == "":
            raise InventoryError(f"{where}: no modified time")
        mtime = _seconds(modified, where)
        etag = values.get(c.etag) if c.etag else None
        etag = str(etag).strip('"') if etag not in (None, "") else None
        if c.md5 is None:
            md5 = etag if etag and _MD5_HEX.match(etag) else None
        else:
            md5 = _md5_hex(values.get(c.md5), where)
        return (key[len(self.base):], size, mtime, etag, md5)


def _csv_rows(stream: BinaryIO, where: str, reader: RowReader, schema: list[str] | None,
              count: Callable[[], None]) -> Iterator[Row]:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    lines = csv.reader(text)
    number = 0
    try:
        if schema is None:
            header = next(lines, None)
            number = 1
            if header is None:
                return
            names = [_norm(n) for n in header]
        else:
            names = [_norm(n) for n in schema]
        reader.check_header(names, where)
        width = len(names)
        for values in lines:
            number += 1
            if not values:
                continue
            if len(values) != width:
                raise InventoryError(f": {len(values)} fields, the schema has {width}")
            count()
            row = reader.row(dict(zip(names, values)), "", csv_file=True)
            if row is not None:
                yield row
    except InventoryError as error:
        raise _at(error, where, number) from None
    except csv.Error as error:
        raise InventoryError(f"{where}: row {number + 1}: {error}") from None
    except UnicodeDecodeError:
        raise InventoryError(f"{where}: row {number + 1}: not UTF-8 text") from None
    except (EOFError, gzip.BadGzipFile, OSError) as error:
        raise InventoryError(f"{where}: row {number + 1}: unreadable ({type(error).__name__}:"
                             f" {error}): truncated or not gzip?") from None


def _parquet_rows(stream: BinaryIO, where: str, reader: RowReader,
                  count: Callable[[int], None]) -> Iterator[Row]:
    import pyarrow as pa  # only when an inventory is Parquet
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream, pre_buffer=False)  # a column chunk at a time
    except (pa.ArrowException, OSError) as error:
        raise InventoryError(f"{where}: not a readable Parquet file: {error}") from None
    by_norm = {_norm(n): n for n in parquet.schema_arrow.names}
    reader.check_header(list(by_norm), where)
    c = reader.columns
    wanted = [c.key, c.size, c.mtime] + [n for n in (c.etag, c.md5) if n] + list(c.skip_if)
    wanted = [n for n in dict.fromkeys(wanted) if n in by_norm]
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH, columns=[by_norm[n] for n in wanted]):
            columns = {}
            for name in wanted:
                column = batch.column(by_norm[name])
                if name == c.mtime and pa.types.is_timestamp(column.type):
                    unit = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[column.type.unit]
                    column = pc.divide(column.cast(pa.int64()).cast(pa.float64()), unit)
                columns[name] = column.to_pylist()
            count(batch.num_rows)
            for values in zip(*(columns[n] for n in wanted)):
                number += 1
                row = reader.row(dict(zip(wanted, values)), "", csv_file=False)
                if row is not None:
                    yield row
    except InventoryError as error:
        raise _at(error, where, number) from None
    except (pa.ArrowException, OSError) as error:
        raise InventoryError(f"{where}: row {number + 1}: unreadable Parquet: {error}") from None


def _at(error: InventoryError, where: str, number: int) -> InventoryError:
    """A row's error (raised with an empty location, to keep the per-row cost low) named."""
    message = str(error)
    if message.startswith(": "):
        return InventoryError(f"{where}: row {number}{message}")
    return error


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
    located = [(_resolve(files, manifest_name, name, manifest), entry)
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
            yield from _parquet_rows(stream, where, reader, count)
        return
    with files.open(path) as raw:
        checked = _Checked(raw)
        stream = gzip.GzipFile(fileobj=checked) if path.endswith(".gz") else checked
        yield from _csv_rows(stream, where, reader, manifest.csv_schema, count)
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
