"""Other platforms' CSV columns, read by `syncd import csv` beside the reference's own.

The header says which it is: a file with an `input` column is a Clarifai inputs CSV, one with
a `local_path` column holds the reference SDK's upload columns, anything else the reference
platform's link CSV (syncd.imports.batch.CSV_COLUMNS). Each row of another dialect is turned
into the reference's columns plus what they cannot say: a local file to upload (`path`),
user metadata to merge (`user`) and a folder of its own (`folder`).

- Clarifai (`Inputs.get_inputs_from_csv`): `inputid` (the item's name), `input` (an http(s)
  URL, linked like the reference's URL column, or a local file, uploaded), `concepts`
  (comma-separated, to `metadata.user.concepts`), `metadata` (JSON, single quotes allowed as
  Clarifai allows them, merged into `metadata.user`), `geopoints` (`longitude,latitude`, to
  `metadata.user.geopoints`).
- Reference SDK uploads (`dataset.items.upload(local_path=DataFrame)`): `local_path` (the
  file), `remote_path` (the folder in the dataset, under `--folder`), `remote_name`,
  `item_metadata`, `item_description`.

Local paths are relative to the CSV file's folder.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import InputError

REFERENCE = "reference"
CLARIFAI = "clarifai"
SDK_UPLOAD = "sdk-upload"
COLUMNS = {
    CLARIFAI: ("inputid", "input", "concepts", "metadata", "geopoints"),
    SDK_UPLOAD: ("local_path", "remote_path", "remote_name", "item_metadata", "item_description"),
}
REQUIRED = {CLARIFAI: "input", SDK_UPLOAD: "local_path"}


def detect(header: list[str]) -> str:
    names = {cell.strip().lower() for cell in header}
    if "input" in names:
        return CLARIFAI
    if "local_path" in names:
        return SDK_UPLOAD
    return REFERENCE


def to_reference(values: dict[str, str], dialect: str, *, where: str, base: Path) -> dict[str, Any]:
    """A row of `dialect` (canonical column -> field) as the reference's columns, plus
    `path` (a local file to upload), `user` (a dict to merge into metadata.user) and
    `folder` (the row's folder in the dataset, else the CSV's own)."""

    def fail(column: str, what: str) -> InputError:
        return InputError(f"{where}: {column}: {what}")

    if dialect == CLARIFAI:
        return _clarifai(values, base, fail)
    if dialect == SDK_UPLOAD:
        return _sdk_upload(values, base, fail)
    return values


def _clarifai(values: dict[str, str], base: Path, fail) -> dict[str, Any]:
    source = values.get("input", "").strip()
    name = values.get("inputid", "").strip()
    row: dict[str, Any] = {"user": {}}
    if not source:
        raise fail("input", "empty: a URL or a local file path")
    if urlsplit(source).scheme.lower() in ("http", "https"):
        row |= {"URL": source, "ID": name}
    else:
        path = _local(source, base, fail, "input")
        if name and not posixpath.splitext(name)[1]:
            name += path.suffix
        row |= {"path": path, "name": name or path.name, "action": "upload"}
    concepts = [c.strip() for c in values.get("concepts", "").split(",") if c.strip()]
    if concepts:
        row["user"]["concepts"] = concepts
    text = values.get("metadata", "").strip()
    if text:
        try:
            metadata = json.loads(text.replace("'", '"'))  # Clarifai's own reading
        except json.JSONDecodeError as error:
            raise fail("metadata", f"not valid JSON: {error.msg} (column {error.colno})") from None
        if not isinstance(metadata, dict):
            raise fail("metadata", "expected a JSON object")
        row["user"].update(metadata)
    text = values.get("geopoints", "").strip()
    if text:
        parts = text.split(",")
        try:
            longitude, latitude = (float(p) for p in parts)
        except ValueError:
            raise fail("geopoints", f"expected 'longitude,latitude', got {text!r}") from None
        if not (-180 <= longitude <= 180 and -90 <= latitude <= 90):
            raise fail("geopoints", f"out of range: longitude {longitude}, latitude {latitude}")
        row["user"]["geopoints"] = {"longitude": longitude, "latitude": latitude}
    return row


def _sdk_upload(values: dict[str, str], base: Path, fail) -> dict[str, Any]:
    source = values.get("local_path", "").strip()
    if not source:
        raise fail("local_path", "empty: the file to upload")
    path = _local(source, base, fail, "local_path")
    folder = "/" + values.get("remote_path", "").strip().strip("/")
    return {"path": path, "name": values.get("remote_name", "").strip() or path.name,
            "action": "upload", "folder": folder, "user": {},
            "item_metadata": values.get("item_metadata", ""),
            "item_description": values.get("item_description", "")}


def _local(text: str, base: Path, fail, column: str) -> Path:
    path = base / text
    if not path.is_file():
        raise fail(column, f"no such file: {path}")
    return path
