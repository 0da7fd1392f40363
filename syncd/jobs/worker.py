"""What runs inside a worker process: one job's task, from the item's bytes to its artifacts.

A `Task` carries everything the work needs (driver options, the item's key and metadata, the
preprocessing options, the dataset's custom functions) and nothing that needs the
catalogue, so it runs in any `concurrent.futures` executor: this machine's process pool or a
Dask cluster's. Each task returns a small `TaskResult`; artifacts go straight to storage from
the worker, so image bytes never cross a process boundary.

Reading an item's bytes is one small function per item type, looked up in BYTE_SOURCES by
import path (so a worker imports only what its items need). A new item type plugs in by
adding a line there: its function takes (task, driver) and returns a `preprocess.ByteSource`.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import traceback
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import drivers
import preprocess
from drivers import Driver, DriverError, DriverOptions, InvalidKey, NotFound, PermissionDenied

from ..imports.fetch import FetchError
from .process import busy
from ..catalogue.jobs import CLEANUP, PREPROCESS, preview_key, thumbnail_key

# item type -> "module:function" returning a preprocess.ByteSource for (task, driver)
BYTE_SOURCES: dict[str, str] = {
    "file": "syncd.jobs.worker:driver_source",
    "link": "syncd.jobs.worker:link_source",
}
ENTRY_POINT_GROUP = "syncd.preprocessors"


@dataclass(frozen=True)
class Preprocessor:
    """A custom function: `function(data: bytes, item: dict) -> dict`, or with
    input="source" `function(source: preprocess.ByteSource, item: dict) -> dict` (ranged reads:
    `source.open(offset, length)`, for files too large to hold, such as videos)."""

    target: str  # "module:function", or "entry point NAME"
    mimetypes: tuple[str, ...] = ("*",)
    key: str = "user"
    entry_point: str | None = None
    input: str = "bytes"  # bytes | source

    def matches(self, mimetype: str) -> bool:
        return any(fnmatch.fnmatchcase(mimetype, pattern) for pattern in self.mimetypes)


@dataclass(frozen=True)
class Task:
    job_id: int
    kind: str  # preprocess | cleanup
    driver: DriverOptions
    item_id: str | None = None
    item_type: str = "file"
    key: str | None = None  # the item's key in the driver
    size: int | None = None
    item: dict[str, Any] = field(default_factory=dict)  # the item's JSON (see DESIGN.md)
    options: preprocess.Options = preprocess.Options()
    preprocessors: tuple[Preprocessor, ...] = ()
    keys: tuple[str, ...] = ()  # cleanup: artifact keys to delete
    fetch: Any = None  # the [fetch] section (syncd.config.FetchConfig), for linked items
    # An id link's bytes: (the target item's driver options, key, size) (syncd.imports.idlinks)
    source: tuple[DriverOptions, str, int | None] | None = None


@dataclass
class TaskResult:
    job_id: int
    state: str  # done | failed | cancelled | retry (a storage error worth another try)
    system: dict[str, Any] = field(default_factory=dict)  # metadata.system fields
    user: dict[str, Any] = field(default_factory=dict)  # key ("user" = top level) -> dict
    errors: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # cleanup: keys now gone from storage
    retry_delay: float | None = None  # retry: seconds to wait (None: the configured backoff)
    not_found: bool = False  # the item's file was not at the key the task was given

    @property
    def error(self) -> str | None:
        return "; ".join(self.errors) or None


def run_task(task: Task) -> TaskResult:
    """Run one task. Never raises for a problem with the item or storage: the result says."""
    with busy():
        return _run(task)


def _run(task: Task) -> TaskResult:
    try:
        driver = _driver(task.driver)
        if task.kind == CLEANUP:
            return _cleanup(task, driver)
        if task.kind == PREPROCESS:
            return _preprocess(task, driver)
        return TaskResult(task.job_id, "failed", errors=[f"unknown job kind {task.kind!r}"])
    except DriverError as error:  # the driver decided whether another try may help
        return TaskResult(task.job_id, "retry" if error.retriable else "failed",
                          errors=[storage_error(error)], not_found=isinstance(error, NotFound))
    except (ConnectionError, TimeoutError) as error:
        return TaskResult(task.job_id, "retry", errors=[f"storage error: {type(error).__name__}: {error}"])
    except FetchError as error:  # a linked item's URL
        state = "retry" if getattr(error, "retriable", False) else "failed"
        return TaskResult(task.job_id, state, errors=[f"cannot fetch the linked file: {error}"])
    except Exception as error:  # noqa: BLE001 - a bug or an unforeseen input: record it, go on
        where = traceback.extract_tb(error.__traceback__)[-1]
        return TaskResult(task.job_id, "failed", errors=[
            f"internal error: {type(error).__name__}: {error} (at {where.filename}:{where.lineno})"
        ])


def storage_error(error: DriverError) -> str:
    """A driver error as a job's reason."""
    if isinstance(error, NotFound):
        return f"not found in storage: {error}"
    if isinstance(error, PermissionDenied):
        return f"permission denied: {error}"
    return f"storage error: {type(error).__name__}: {error}"


# -- preprocess -----------------------------------------------------------------------------

def _preprocess(task: Task, driver: Driver) -> TaskResult:
    source = byte_source(task, driver)
    try:
        return _preprocess_source(task, driver, source)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _preprocess_source(task: Task, driver: Driver, source: preprocess.ByteSource) -> TaskResult:
    outcome = preprocess.preprocess(source, task.options)
    try:
        return _store(task, driver, source, outcome)
    finally:
        outcome.close()  # a video preview's temporary file


def _store(task: Task, driver: Driver, source: preprocess.ByteSource,
           outcome: preprocess.Outcome) -> TaskResult:
    result = TaskResult(task.job_id, "done", system=dict(outcome.system), errors=list(outcome.errors))
    if outcome.thumbnail is not None:
        key = thumbnail_key(task.item_id, outcome.thumbnail.extension)
        try:
            driver.put(key, outcome.thumbnail.data, content_type=outcome.thumbnail.content_type)
        except (PermissionDenied, InvalidKey) as error:  # e.g. a file named .dataloop
            result.errors.append(f"cannot write the thumbnail: {error}")
        else:
            result.system["thumbnailId"] = key
    if outcome.preview is not None:
        key = preview_key(task.item_id, outcome.preview.extension)
        try:
            with open(outcome.preview.path, "rb") as file:
                driver.put(key, file, content_type=outcome.preview.content_type)
        except PermissionDenied as error:
            result.errors.append(f"cannot write the video preview: {error}")
        else:
            result.system["previewId"] = key
    mimetype = outcome.system.get("mimetype", "")
    custom = [c for c in task.preprocessors if c.matches(mimetype)]
    if custom and not result.errors:
        data = outcome.data
        if data is None and any(c.input == "bytes" for c in custom):
            with source.open(0) as stream:
                data = stream.read()
        for preprocessor in custom:
            _run_custom(preprocessor, source if preprocessor.input == "source" else data, task, result)
    if result.errors:
        result.state = "failed"
    return result


def _run_custom(custom: Preprocessor, data: bytes | preprocess.ByteSource, task: Task,
                result: TaskResult) -> None:
    item = dict(task.item)
    metadata = dict(item.get("metadata") or {})
    metadata["system"] = {**(metadata.get("system") or {}), **result.system}
    item["metadata"] = metadata
    try:
        function = load_preprocessor(custom)
        output = function(data, item)
        if not isinstance(output, dict):
            raise TypeError(f"returned {type(output).__name__}, not a dict")
        output = _json_safe(output)
    except Exception as error:  # noqa: BLE001 - the user's code: record, don't crash
        result.errors.append(f"preprocessor {custom.target}: {type(error).__name__}: {error}")
        return
    result.user.setdefault(custom.key, {}).update(output)


def load_preprocessor(custom: Preprocessor):
    if custom.entry_point is not None:
        from importlib.metadata import entry_points

        found = entry_points(group=ENTRY_POINT_GROUP, name=custom.entry_point)
        if not found:
            raise LookupError(f"no {ENTRY_POINT_GROUP!r} entry point named {custom.entry_point!r}")
        return next(iter(found)).load()
    module_name, _, attribute = custom.target.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{custom.target} is not callable")
    return target


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as error:
        raise TypeError(f"result is not JSON: {error}") from None


# -- cleanup --------------------------------------------------------------------------------

def _cleanup(task: Task, driver: Driver) -> TaskResult:
    result = TaskResult(task.job_id, "done")
    if "delete" not in driver.options.permissions:
        result.state = "cancelled"
        result.errors.append(f"driver {driver.name!r} has no 'delete' permission: artifacts left in storage")
        return result
    for key in task.keys:
        try:
            driver.delete(key)
        except NotFound:
            pass
        result.deleted.append(key)
    return result


# -- byte sources ---------------------------------------------------------------------------

class DriverSource:
    """An object in a driver, read with ranged gets."""

    def __init__(self, driver: Driver, key: str, size: int | None = None):
        self.driver = driver
        self.name = key
        self.size = size

    def open(self, offset: int = 0, length: int | None = None) -> BinaryIO:
        return self.driver.open(self.name, offset=offset, length=length)


def driver_source(task: Task, driver: Driver) -> preprocess.ByteSource:
    """Item type 'file': the object itself."""
    return DriverSource(driver, task.key, task.size)


def link_source(task: Task, driver: Driver) -> preprocess.ByteSource:
    """Item type 'link': the binary its URL points at, fetched under the [fetch] policy
    (never written to storage; its thumbnail is, under the link item's id); for an id link,
    the target item's object, read through its own dataset's driver."""
    if task.source is not None:
        options, key, size = task.source
        return DriverSource(_driver(options), key, size)
    from ..imports.fetch import Fetcher, FetchPolicy
    from ..imports.links import LinkedSource

    policy = FetchPolicy.from_config(task.fetch) if task.fetch is not None else FetchPolicy()
    return LinkedSource(task.item, Fetcher(policy))


def byte_source(task: Task, driver: Driver) -> preprocess.ByteSource:
    try:
        target = BYTE_SOURCES[task.item_type]
    except KeyError:
        raise ValueError(f"items of type {task.item_type!r} cannot be read (no byte source)") from None
    module_name, _, function = target.partition(":")
    return getattr(importlib.import_module(module_name), function)(task, driver)


_drivers: dict[DriverOptions, Driver] = {}  # options are frozen, hashable values


def _driver(options: DriverOptions) -> Driver:
    """One open driver per configuration in each worker process."""
    if options not in _drivers:
        _drivers[options] = drivers.open_driver(options)
    return _drivers[options]
