"""CSV import: the reference platform's link CSV and its dialects (Clarifai, the reference
SDK's upload columns), one item per row, through the import pipeline (syncd.imports.batch)."""

from __future__ import annotations

import base64
import binascii
import csv
import json
import logging
import mimetypes
import os
import posixpath
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from drivers import DriverError
from drivers.base import check_key

from ..app import App
from ..errors import InputError
from . import dialects
from .batch import (
    CSV_COLUMNS,
    DEFAULT_BATCH,
    ERROR_COLUMN,
    FailuresFile,
    ImportResult,
    Outcome,
    Progress,
    Task,
    default_failures_path,
    failure_reason,
    local_content,
    run_import,
    strip_suffixes,
    target_folder,
)
from .fetch import Fetcher, FetchPolicy
from .idlinks import link_target
from .links import (
    ID_LINK,
    LINK_SUFFIX,
    MAX_LINK_BYTES,
    LinkError,
    check_url,
    link_bytes,
    link_filename,
    link_system,
    parse_link,
    url_link_info,
    url_link_name,
)
from .writes import Content, ItemFacts, item_metadata

log = logging.getLogger(__name__)


# -- CSV import -----------------------------------------------------------------------------

@dataclass
class CsvRow:
    number: int  # data rows counted from 1, the header not counted
    line: int  # the file's line where the row ends
    raw: list[str]  # the fields as read, for the failures file
    values: dict[str, str]  # canonical column name -> field

    def where(self, source: Path) -> str:
        return f"{source.name} row {self.number} (line {self.line})"


def import_csv(app: App, dataset: str, source: str | os.PathLike[str], *, folder: str = "/",
               batch_size: int = DEFAULT_BATCH, failures: str | os.PathLike[str] | None = None,
               progress: Progress | None = None, fetcher: Fetcher | None = None,
               overwrite: bool = False) -> ImportResult:
    """Import a CSV file in the reference's columns (or Clarifai's, or the reference SDK's
    upload columns: syncd.imports.dialects) into the folder named after it. Every
    row stays inside that folder; an object already there with other content is replaced
    only with `overwrite` (its row fails otherwise).

    Raises InputError for a file that cannot be read as such a CSV (unknown columns, bad
    encoding); a bad row only fails that row."""
    source = Path(source)
    started = time.monotonic()
    fetcher = fetcher or Fetcher(FetchPolicy.from_config(app.config.fetch))
    base = target_folder(folder)
    target = posixpath.join(base, strip_suffixes(source.name))
    check_key(target.lstrip("/"))
    ds = app.dataset(dataset)
    result = ImportResult(ds.name, str(source), target)
    with _CsvReader(source) as (header, columns, rows):
        failures_file = FailuresFile(Path(failures) if failures else default_failures_path(source), header)
        seen: dict[str, int] = {}
        dialect = dialects.detect(header)

        def check_id(ref: str, where: str) -> None:  # on this thread: the catalogue's
            link_target(app.catalogue, ref, where=where)

        def tasks() -> Iterator[tuple[CsvRow, Task | Exception]]:
            for row in rows:
                try:
                    yield row, _csv_task(row, source, target, seen, fetcher, dialect=dialect, base=base,
                                         check_id=check_id)
                except (InputError, ValueError) as error:
                    yield row, error

        def on_failure(outcome: Outcome) -> None:
            where = outcome.ref.where(source)
            if not outcome.error.startswith(where):
                outcome.error = f"{where}: {outcome.error}"
            failures_file.add(outcome.ref.raw, outcome.error)

        run_import(app, ds, result, tasks(), batch_size=batch_size, progress=progress,
                   failures=failures_file, on_failure=on_failure, overwrite=overwrite)
    result.seconds = time.monotonic() - started
    return result


class _CsvReader:
    """Open a CSV, check its header: (header, columns, iterator of CsvRow)."""

    def __init__(self, source: Path):
        self.source = source

    def __enter__(self):
        source = self.source
        try:
            self.file = open(source, newline="", encoding="utf-8-sig")  # noqa: SIM115
        except OSError as error:
            raise InputError(f"{source}: cannot read: {error.strerror or error}") from None
        csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # base64 image_bytes fields
        self.reader = csv.reader(self.file)
        try:
            header = next(self.reader)
        except StopIteration:
            self.file.close()
            raise InputError(f"{source}: empty: expected a header row with the columns "
                             f"{', '.join(CSV_COLUMNS)}") from None
        except (csv.Error, UnicodeDecodeError) as error:
            self.file.close()
            raise InputError(f"{source} line 1: {failure_reason(error)}") from None
        try:
            columns = _csv_columns(source, header)
        except InputError:
            self.file.close()
            raise
        return header, columns, self._rows(columns, len(header))

    def _rows(self, columns: list[str | None], width: int) -> Iterator[CsvRow]:
        number = 0
        while True:
            try:
                raw = next(self.reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as error:
                raise InputError(f"{self.source} line {self.reader.line_num + 1}: {failure_reason(error)}"
                                 " (rows after it were not read)") from None
            if not raw or all(not field.strip() for field in raw):
                continue
            number += 1
            row = CsvRow(number, self.reader.line_num, raw, {})
            if len(raw) > width:
                row.values = {"__error__": f"{len(raw)} fields, but the header has {width}"}
            else:
                padded = raw + [""] * (width - len(raw))
                row.values = {c: v for c, v in zip(columns, padded, strict=True) if c}
            yield row

    def __exit__(self, *exc) -> None:
        self.file.close()


def _csv_columns(source: Path, header: list[str]) -> list[str | None]:
    """Each header cell's canonical column (None for `error`, which is ignored)."""
    dialect = dialects.detect(header)
    names = dialects.COLUMNS.get(dialect, CSV_COLUMNS)
    known = {name.lower(): name for name in names}
    columns: list[str | None] = []
    unknown, first = [], {}
    for index, cell in enumerate(header):
        name = cell.strip()
        if name.lower() == ERROR_COLUMN:
            columns.append(None)
            continue
        canonical = known.get(name.lower())
        if canonical is None:
            unknown.append(f"{cell!r} (column {index + 1})")
        elif canonical in first:
            raise InputError(f"{source}: column {canonical!r} appears twice (columns "
                             f"{first[canonical] + 1} and {index + 1}; names ignore case)")
        else:
            first[canonical] = index
        columns.append(canonical)
    if unknown:
        raise InputError(f"{source}: unknown column{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}; the columns are {', '.join(names)}"
                         " (any case)" + ("" if dialect == dialects.REFERENCE else f", as a {dialect} CSV"))
    if dialect != dialects.REFERENCE:
        return columns
    if "URL" not in first and "image_bytes" not in first:
        raise InputError(f"{source}: needs a URL or an image_bytes column")
    return columns


def _csv_task(row: CsvRow, source: Path, target: str, seen: dict[str, int],
              fetcher: Fetcher, *, dialect: str = dialects.REFERENCE, base: str = "/",
              check_id: Callable[[str, str], None] | None = None) -> Task:
    where = row.where(source)
    values = row.values
    if "__error__" in values:
        raise InputError(f"{where}: {values['__error__']}")
    values = dialects.to_reference(values, dialect, where=where, base=source.parent)
    if "folder" in values:
        target = posixpath.join(base, values["folder"].lstrip("/")).rstrip("/") or "/"

    def fail(column: str, what: str) -> InputError:
        return InputError(f"{where}: {column}: {what}")

    url = values.get("URL", "").strip()
    data = values.get("image_bytes", "").strip()
    name = values.get("name", "").strip() or values.get("ID", "").strip()
    mimetype = values.get("mimetype", "").strip() or None
    action = values.get("action", "").strip().lower() or ("link" if url else "upload")
    if action not in ("link", "upload"):
        raise fail("action", f"expected 'link' or 'upload', got {values['action']!r}")
    local = values.get("path")
    if not url and not data and local is None:
        raise fail("URL", "empty, and so is image_bytes: a row needs one of them")
    given_user, extra = _item_metadata(values.get("item_metadata", ""), fail)
    user = {**values.get("user", {}), **(given_user or {})}
    description = values.get("item_description") or None

    def facts(type: str, system: dict[str, Any]) -> ItemFacts:
        return ItemFacts(type, system, user, description, replace_user=given_user is not None,
                         extra=extra)

    if action == "link":
        if not url:
            raise fail("URL", "empty: action 'link' needs a URL (image_bytes can only be uploaded)")
        if data:
            raise fail("image_bytes", "given with action 'link': a link keeps only the URL")
        try:
            info = url_link_info(url, mimetype)
        except LinkError as error:
            raise fail("URL", str(error).split(": ", 1)[-1]) from None
        name = name or url_link_name(url)
        if not name:
            raise fail("URL", f"no name can be taken from {url!r}; fill name or ID")
        filename = _inside(target, link_filename(name), fail)
        content = link_bytes(info)
        task = Task(filename, lambda: Content.of_bytes(content),
                    facts("link", link_system(info)), "application/json")
    elif local is not None and local.name.endswith(LINK_SUFFIX):
        # A link file to upload (the reference SDK uploads links this way): a linked item.
        info = _local_link(local, f"{where}: local_path {local.name}", check_id)
        filename = _inside(target, name if name.endswith(LINK_SUFFIX) else link_filename(name), fail)
        content = link_bytes(info)
        task = Task(filename, lambda: Content.of_bytes(content), facts("link", link_system(info)),
                    "application/json")
    else:
        if local is not None:
            def load(local=local) -> Content:
                return local_content(local)
        elif data:
            if not name:
                raise fail("name", "empty, and so is ID: image_bytes need a name")
            limit = fetcher.policy.max_bytes

            def load(data=data, where=where) -> Content:
                return Content.of_bytes(_decode_base64(data, where, limit))
        else:
            try:
                check_url(url, where="URL")
            except LinkError as error:
                raise fail("URL", str(error).split(": ", 1)[-1]) from None
            name = name or posixpath.basename(unquote(urlsplit(url).path))
            if not name:
                raise fail("URL", f"no name can be taken from {url!r}; fill name or ID")

            def load(url=url) -> Content:
                fetched = fetcher.fetch(url)
                return Content(fetched.body, fetched.md5, fetched.size, fetched.content_type)
        filename = _inside(target, name, fail)
        mimetype = mimetype or mimetypes.guess_type(name)[0]
        system = {"mimetype": mimetype} if mimetype else {}
        task = Task(filename, load, facts("file", system), mimetype)
    try:
        check_key(task.filename.lstrip("/"))
    except DriverError as error:
        raise fail("name", str(error)) from None
    if task.filename in seen:
        raise fail("name", f"{task.filename} is already written by row {seen[task.filename]}")
    seen[task.filename] = row.number
    return task


def _inside(target: str, name: str, fail) -> str:
    """`name` as a path inside the import folder `target`: an absolute name or one with '..'
    would put the row's object anywhere in the dataset, so it is refused."""
    if name.startswith("/") or "\\" in name or ".." in name.split("/"):
        raise fail("name", f"{name!r} is not a relative path inside the import folder {target}")
    return posixpath.join(target, name)


def _local_link(path: Path, where: str, check_id: Callable[[str, str], None] | None) -> dict[str, Any]:
    """The linkInfo of a local link file; an id link must name an item of this catalogue."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_LINK_BYTES + 1)
    except OSError as error:
        raise InputError(f"{where}: cannot read: {error.strerror or error}") from None
    if len(data) > MAX_LINK_BYTES:
        raise InputError(f"{where}: larger than a link file ({MAX_LINK_BYTES} bytes at most)")
    info = parse_link(data, source=where)
    if info["type"] == ID_LINK:
        if check_id is None:
            raise LinkError(f"{where}: id links are only accepted where the catalogue is known")
        check_id(info["ref"], where)
    return info


def _item_metadata(text: str, fail) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The `item_metadata` column: JSON text, read by the imports' one metadata rule
    (syncd.imports.writes.item_metadata)."""
    if not text.strip():
        return None, {}
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except (json.JSONDecodeError, ValueError) as error:
        reason = f"{error.msg} (column {error.colno})" if isinstance(error, json.JSONDecodeError) else str(error)
        raise fail("item_metadata", f"not valid JSON: {reason}") from None
    return item_metadata(value, fail, "item_metadata")


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def _decode_base64(data: str, where: str, limit: int) -> bytes:
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]  # a data: URI
    if len(data) * 3 // 4 > limit + 3:
        raise InputError(f"{where}: image_bytes: more than [fetch] max_bytes = {limit} bytes")
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise InputError(f"{where}: image_bytes: not valid base64: {error}") from None


