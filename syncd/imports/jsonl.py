"""`syncd import jsonl`: one JSON object a line, like a Roboflow references file; streamed.

Each line names one item: `url` (a linked item, or with `"action": "upload"` the fetched
binary) or `path` (a local file, relative to the JSONL file's folder, uploaded), and
optionally `name` (its path in the folder, default: from the URL or the file's name),
`metadata` (the item's metadata, by the one rule of syncd.imports.writes.item_metadata:
`{"user": {...}}` for user metadata, other keys as `metadata.<key>`), `description`, `mimetype`. Items land in a folder
named after the file, as the CSV import's do (same path rules).

A bad line fails alone, named by file, line and key; failed lines are written to
`<name>.failures.jsonl` as they were, with an `error` key added (ignored when the file is
imported again), so that file can be fed back unchanged.
"""

from __future__ import annotations

import json
import mimetypes
import os
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from drivers import DriverError
from drivers.base import check_key

from ..app import App
from ..errors import InputError
from .batch import (
    DEFAULT_BATCH,
    ImportResult,
    Outcome,
    Progress,
    ReplacedFile,
    Task,
    local_content,
    run_import,
    target_folder,
)
from .fetch import Fetcher, FetchPolicy
from .links import (
    LinkError,
    check_url,
    link_bytes,
    link_filename,
    link_system,
    url_link_info,
    url_link_name,
)
from .writes import Content, ItemFacts, item_metadata

KEYS = ("url", "path", "name", "metadata", "description", "mimetype", "action")
ERROR_KEY = "error"  # added to a failed line in the failures file; ignored on import
FAILURES_SUFFIX = ".failures"


@dataclass
class Line:
    number: int
    text: str  # the line as read, newline stripped

    def where(self, source: Path) -> str:
        return f"{source.name} line {self.number}"


def import_jsonl(app: App, dataset: str, source: str | os.PathLike[str], *, folder: str = "/",
                 batch_size: int = DEFAULT_BATCH, failures: str | os.PathLike[str] | None = None,
                 progress: Progress | None = None, fetcher: Fetcher | None = None,
                 overwrite: bool = False) -> ImportResult:
    """Import a JSON Lines file into the folder named after it; memory stays flat. An object
    already there with other content is replaced only with `overwrite`."""
    source = Path(source)
    started = time.monotonic()
    fetcher = fetcher or Fetcher(FetchPolicy.from_config(app.config.fetch))
    target = posixpath.join(target_folder(folder), base_name(source))
    check_key(target.lstrip("/"))
    ds = app.dataset(dataset)
    result = ImportResult(ds.name, str(source), target)
    try:
        file = open(source, encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as error:
        raise InputError(f"{source}: cannot read: {error.strerror or error}") from None
    failed = _FailuresFile(Path(failures) if failures else default_failures_path(source))
    seen: dict[str, int] = {}

    def tasks() -> Iterator[tuple[Line, Task | Exception]]:
        number = 0
        while True:
            try:
                text = file.readline()
            except UnicodeDecodeError as error:
                raise InputError(f"{source} line {number + 1}: not UTF-8 text ({error.reason});"
                                 " lines after it were not read") from None
            if not text:
                return
            number += 1
            line = Line(number, text.rstrip("\r\n"))
            if not line.text.strip():
                continue
            try:
                yield line, _task(line, source, target, seen, fetcher)
            except (InputError, ValueError) as error:
                yield line, error

    def on_failure(outcome: Outcome) -> None:
        where = outcome.ref.where(source)
        if not outcome.error.startswith(where):
            outcome.error = f"{where}: {outcome.error}"
        failed.add(outcome.ref.text, outcome.error)

    with file:
        run_import(app, ds, result, tasks(), batch_size=batch_size, progress=progress,
                   failures=failed, on_failure=on_failure, overwrite=overwrite)
    result.seconds = time.monotonic() - started
    return result


def base_name(source: Path) -> str:
    """The folder name of an import: the file's name without `.jsonl` / `.failures`."""
    name = source.name
    for suffix in (".jsonl", ".ndjson", ".json", FAILURES_SUFFIX):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def default_failures_path(source: Path) -> Path:
    source = Path(os.path.abspath(source))
    return source.with_name(f"{base_name(source)}{FAILURES_SUFFIX}.jsonl")


def _task(line: Line, source: Path, target: str, seen: dict[str, int], fetcher: Fetcher) -> Task:
    where = line.where(source)

    def fail(key: str, what: str) -> InputError:
        return InputError(f"{where}: {key}: {what}")

    try:
        entry = json.loads(line.text)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: not valid JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    unknown = [key for key in entry if key not in KEYS and key != ERROR_KEY]
    if unknown:
        raise fail(unknown[0], f"unknown key; the keys are {', '.join(KEYS)}")
    for key in ("url", "path", "name", "description", "mimetype", "action"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise fail(key, f"expected a string, got {type(entry[key]).__name__}")
    url, path = (entry.get("url") or "").strip(), (entry.get("path") or "").strip()
    if bool(url) == bool(path):
        raise fail("url", "give exactly one of url and path")
    given_user, extra = (None, {}) if entry.get("metadata") is None else item_metadata(
        entry["metadata"], fail, "metadata")
    user = given_user or {}
    description = entry.get("description")
    mimetype = (entry.get("mimetype") or "").strip() or None
    name = (entry.get("name") or "").strip().strip("/")
    action = (entry.get("action") or "").strip().lower() or ("link" if url else "upload")
    if action not in ("link", "upload"):
        raise fail("action", f"expected 'link' or 'upload', got {entry['action']!r}")

    if path:
        if action != "upload":
            raise fail("action", "a local path can only be uploaded")
        local = source.parent / path
        if not local.is_file():
            raise fail("path", f"no such file: {local}")
        name = name or local.name
        task = Task(posixpath.join(target, name), lambda: local_content(local),
                    ItemFacts("file", {"mimetype": mimetype} if mimetype else {}, user, description,
                              replace_user=given_user is not None, extra=extra),
                    mimetype or mimetypes.guess_type(name)[0])
    elif action == "link":
        try:
            info = url_link_info(url, mimetype)
        except LinkError as error:
            raise fail("url", str(error).split(": ", 1)[-1]) from None
        name = name or url_link_name(url)
        if not name:
            raise fail("url", f"no name can be taken from {url!r}; give a name")
        content = link_bytes(info)
        task = Task(posixpath.join(target, link_filename(name)), lambda: Content.of_bytes(content),
                    ItemFacts("link", link_system(info), user, description,
                              replace_user=given_user is not None, extra=extra), "application/json")
    else:
        try:
            check_url(url, where="url")
        except LinkError as error:
            raise fail("url", str(error).split(": ", 1)[-1]) from None
        name = name or posixpath.basename(unquote(urlsplit(url).path))
        if not name:
            raise fail("url", f"no name can be taken from {url!r}; give a name")
        mimetype = mimetype or mimetypes.guess_type(name)[0]

        def load(url=url) -> Content:
            fetched = fetcher.fetch(url)
            return Content(fetched.body, fetched.md5, fetched.size, fetched.content_type)

        task = Task(posixpath.join(target, name), load,
                    ItemFacts("file", {"mimetype": mimetype} if mimetype else {}, user, description,
                              replace_user=given_user is not None, extra=extra),
                    mimetype)
    try:
        check_key(task.filename.lstrip("/"))
    except DriverError as error:
        raise fail("name", str(error)) from None
    if task.filename in seen:
        raise fail("name", f"{task.filename} is already written by line {seen[task.filename]}")
    seen[task.filename] = line.number
    return task


class _FailuresFile(ReplacedFile):
    """Failed lines as they were, with an `error` key where the line is a JSON object."""

    def __init__(self, path: Path):
        super().__init__(path, ".jsonl")

    def add(self, text: str, error: str) -> None:
        try:
            entry: Any = json.loads(text)
        except json.JSONDecodeError:
            entry = None
        if isinstance(entry, dict):
            entry[ERROR_KEY] = error
            text = json.dumps(entry, ensure_ascii=False)
        self.file.write(text + "\n")  # not an object: as it was, to be fixed by hand
        self.count += 1
