"""An inventory's data files as listing rows: CSV (gzip or plain, a line at a time) and Parquet
(a row group at a time), each value checked and a bad row named by file and number."""

from __future__ import annotations

import base64
import binascii
import csv
import email.utils
import gzip
import io
import re
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import BinaryIO

from drivers import HIDDEN_FOLDER
from drivers.base import is_hidden

from .manifest import COLUMNS, InventoryError, normalise_column

PAGE_ROWS = 2_000  # rows a yielded page holds (the indexer reads 16 pages ahead)
PARQUET_BATCH = 16_384  # rows decoded at a time from a Parquet row group
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")

Row = tuple[str, int, float, "str | None", "str | None"]  # key, size, mtime, etag, md5


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


def csv_rows(stream: BinaryIO, where: str, reader: RowReader, schema: list[str] | None,
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
            names = [normalise_column(n) for n in header]
        else:
            names = [normalise_column(n) for n in schema]
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


def parquet_rows(stream: BinaryIO, where: str, reader: RowReader,
                  count: Callable[[int], None]) -> Iterator[Row]:
    import pyarrow as pa  # only when an inventory is Parquet
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream, pre_buffer=False)  # a column chunk at a time
    except (pa.ArrowException, OSError) as error:
        raise InventoryError(f"{where}: not a readable Parquet file: {error}") from None
    by_norm = {normalise_column(n): n for n in parquet.schema_arrow.names}
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
