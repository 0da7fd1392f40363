"""`syncd items export`: a dataset's items as JSON Lines, CSV or Parquet, streamed.

Memory stays flat at any item count: items are read from the catalogue in pages and written
as they come. CSV and Parquet have one column per field, named by its path in the item JSON
(`metadata.user.camera`, `metadata.system.exif.Make`); a first pass over the items finds the
columns (and, for Parquet, each column's type: int64, double, bool or string; lists, objects
and columns of mixed types are JSON text), the second writes the rows.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

FORMATS = ("jsonl", "csv", "parquet")
BASE_COLUMNS = ("id", "dataset", "filename", "name", "dir", "type", "state", "createdAt",
                "updatedAt", "description")
PARQUET_ROWS = 2_000  # rows per Parquet row group (and per batch held in memory)

Items = Callable[[], Iterable[dict[str, Any]]]  # a fresh pass over the items each call


def flatten(item: dict[str, Any]) -> dict[str, Any]:
    """{'metadata.user.camera': 'cam_01', ...}: nested objects become dotted columns; lists
    stay values (written as JSON)."""
    row = {key: item.get(key) for key in BASE_COLUMNS if key in item}
    for part in ("system", "user"):
        _flatten_into(row, f"metadata.{part}", item.get("metadata", {}).get(part) or {})
    return row


def _flatten_into(row: dict[str, Any], prefix: str, value: dict[str, Any]) -> None:
    for key, inner in value.items():
        name = f"{prefix}.{key}"
        if isinstance(inner, dict) and inner:
            _flatten_into(row, name, inner)
        else:
            row[name] = inner


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value


class Columns:
    """The columns seen in a pass over the items, in first-seen order, with their types."""

    def __init__(self):
        self.types: dict[str, set[str]] = {key: set() for key in BASE_COLUMNS}

    def add(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            kinds = self.types.setdefault(key, set())
            if value is None:
                continue
            kinds.add("bool" if isinstance(value, bool) else "int" if isinstance(value, int)
                      else "float" if isinstance(value, float) else "str" if isinstance(value, str)
                      else "json")

    def arrow_type(self, key: str):
        import pyarrow as pa

        kinds = self.types[key]
        if kinds == {"bool"}:
            return pa.bool_()
        if kinds == {"int"}:
            return pa.int64()
        if kinds and kinds <= {"int", "float"}:
            return pa.float64()
        return pa.string()


def _scan(items: Items, progress) -> Columns:
    columns = Columns()
    for item in items():
        columns.add(flatten(item))
    return columns


def export(items: Items, fmt: str, output: Path | None, *, stdout: TextIO,
           progress: Callable[[int], None] = lambda n: None) -> int:
    """Write every item in `fmt` to `output` (written beside it, then renamed into place) or
    to `stdout`. Returns the number of items written."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    if output is None:
        if fmt == "parquet":
            raise ValueError("--format parquet needs --output FILE")
        return _write(items, fmt, stdout, progress)
    partial = output.with_name(output.name + ".partial")
    try:
        if fmt == "parquet":
            count = _parquet(items, partial, progress)
        else:
            with open(partial, "w", encoding="utf-8", newline="") as stream:
                count = _write(items, fmt, stream, progress)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


def _write(items: Items, fmt: str, stream: TextIO, progress) -> int:
    count = 0
    if fmt == "jsonl":
        for item in items():
            stream.write(json.dumps(item, ensure_ascii=False) + "\n")
            count += 1
            progress(1)
        return count
    columns = list(_scan(items, progress).types)
    writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for item in items():
        writer.writerow({k: _cell(v) for k, v in flatten(item).items()})
        count += 1
        progress(1)
    return count


def _parquet(items: Items, path: Path, progress) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = _scan(items, progress)
    schema = pa.schema([(key, columns.arrow_type(key)) for key in columns.types])
    count = 0
    with pq.ParquetWriter(str(path), schema, compression="zstd") as writer:
        for batch in _batches(items(), PARQUET_ROWS):
            data: dict[str, list] = {key: [] for key in columns.types}
            for item in batch:
                row = flatten(item)
                for key, values in data.items():
                    value = row.get(key)
                    if schema.field(key).type == pa.string() and value is not None and not isinstance(value, str):
                        value = json.dumps(value, ensure_ascii=False)
                    elif schema.field(key).type == pa.float64() and value is not None:
                        value = float(value)
                    values.append(value)
            writer.write_table(pa.table(data, schema=schema))
            count += len(batch)
            progress(len(batch))
    return count


def _batches(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
