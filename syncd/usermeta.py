"""User metadata: the context people attach to items (camera number, area, LOT number), kept
in `metadata.user`, set from `key=value` pairs or a JSON file, and filtered on.

Values keep their JSON types: `count=3` is a number, `ok=true` a boolean, `tags=["a","b"]` a
list, `camera=cam_01` (not JSON) a string; `name="3"` is the string "3". A dotted key sets a
nested value: `site.area=north` -> {"site": {"area": "north"}}. Setting merges into what is
there; objects merge key by key. Filtering is the query language of syncd.catalogue.query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .catalogue import Catalogue, Dataset, items, normalize_filename
from .errors import InputError, NotFoundError
from .imports.writes import deep_merge


def parse_value(text: str) -> Any:
    """A JSON value if `text` is one, else the text itself."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError:
        return text


def _not_json(name: str):
    raise ValueError(name)


def _path(key: str, where: str) -> list[str]:
    parts = key.split(".")
    if not key or any(not part.strip() for part in parts):
        raise InputError(f"{where}: {key!r} is not a key (use name or dotted.name)")
    return parts


def parse_assignments(pairs: Iterable[str]) -> dict[str, Any]:
    """{'camera': 'cam_01', 'site': {'area': 'north'}} from ['camera=cam_01', 'site.area=north']."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise InputError(f"{pair!r}: expected key=value")
        values = deep_merge(values, _nest(_path(key.strip(), repr(pair)), parse_value(text)))
    return values


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    for part in reversed(parts):
        value = {part: value}
    return value


def set_user_metadata(catalogue: Catalogue, dataset: Dataset,
                      updates: Iterable[tuple[str, dict[str, Any]]], *, replace: bool = False) -> list[str]:
    """Merge (or, with `replace`, set) each item's user metadata, all in one transaction:
    an unknown item raises NotFoundError and nothing is written. Returns the item ids."""
    with catalogue.transaction(immediate=True):
        return [merge_user_metadata(catalogue, dataset, filename, values, replace=replace)
                for filename, values in updates]


def merge_user_metadata(catalogue: Catalogue, dataset: Dataset, filename: str,
                        values: dict[str, Any], *, replace: bool = False) -> str:
    """In the caller's transaction: merge (or set) one item's user metadata; its id."""
    row = items.find(catalogue, dataset, normalize_filename(filename))
    if row is None:
        raise NotFoundError(f"no item {normalize_filename(filename)!r} in dataset {dataset.name!r}")
    user = {} if replace or not row["user"] else json.loads(row["user"])
    items.set_metadata(catalogue, row["pk"], user=deep_merge(user, values))
    return catalogue.item_id(row["pk"])


def load_metadata_file(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(filename, values) pairs from a JSON file, in one of these shapes:

    - an object of filename -> values: {"/cats/a.jpg": {"camera": "cam_01"}};
    - an array (or JSON Lines) of items as `syncd items list --json` prints them, or of
      {"filename": ..., "user": {...}} objects.
    Errors name the file and the entry."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read: {getattr(error, 'strerror', None) or error}") from None
    try:
        document = json.loads(text)
        entries = document if isinstance(document, list) else None
    except json.JSONDecodeError as error:
        entries = _json_lines(path, text, error)
        document = None
    if isinstance(document, dict):
        pairs = []
        for filename, values in document.items():
            if not isinstance(values, dict):
                raise InputError(f"{path}: {filename!r}: expected an object of metadata")
            pairs.append((filename, values))
        return pairs
    if entries is None:
        raise InputError(f"{path}: expected an object of filename -> metadata, or an array of items")
    pairs = []
    for index, entry in enumerate(entries):
        where = f"{path}: [{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise InputError(f"{where}: expected an object with a \"filename\"")
        values = entry.get("user", entry.get("metadata", {}).get("user") if isinstance(entry.get("metadata"), dict) else None)
        if not isinstance(values, dict):
            raise InputError(f"{where} ({entry['filename']}): expected \"user\" or \"metadata.user\" to be an object")
        pairs.append((entry["filename"], values))
    return pairs


def _json_lines(path: Path, text: str, first_error: json.JSONDecodeError) -> list[Any]:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise InputError(f"{path}: not valid JSON: {first_error.msg} (line {first_error.lineno}, "
                         f"column {first_error.colno})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise InputError(f"{path} line {number}: not valid JSON: {error.msg} (column {error.colno})") from None
    return entries
