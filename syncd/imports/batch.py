"""Imports into a dataset (downstream): link files, CSV files, local folders.

Each thing imported is a Task: the dataset path it goes to, how to get its bytes, and the item
facts to record. Tasks run on a pool of `batch_size` threads (fetching, hashing and putting
through the driver); the catalogue is written on the calling thread as each one finishes (see
syncd.imports.writes). A task that fails is reported with its reason and never stops the others; the
failed CSV rows or folder files go to a failures CSV that can be fed back as it is.

Re-running an import does not duplicate: an item is keyed on its path, and content already
there (same MD5) is not written again.
"""

from __future__ import annotations

import base64
import binascii
import csv
import errno
import hashlib
import json
import logging
import mimetypes
import os
import posixpath
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from drivers import HIDDEN_FOLDER, AlreadyExists, Driver, DriverError
from drivers.base import check_key

from ..app import App
from ..catalogue import Catalogue, Dataset
from ..errors import InputError, SyncdError
from ..sync.filters import NO_FILTER, PathFilter
from .controls import Controls
from . import dialects
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
from .writes import Content, ItemFacts, Stored, existing, record, store

log = logging.getLogger(__name__)

CSV_COLUMNS = ("ID", "URL", "image_bytes", "name", "action", "mimetype", "item_metadata",
               "item_description")
ERROR_COLUMN = "error"  # added by a failures file; ignored when one is imported again
FAILURES_SUFFIX = ".failures"  # '<name>.failures.csv' beside the input
DEFAULT_BATCH = 32
SKIPPED_SHOWN = 20  # skipped symlinks named one by one in the log
HASH_CHUNK = 1024 * 1024  # bytes

Progress = Callable[[int], None]


@dataclass
class ImportResult:
    dataset: str
    source: str
    folder: str
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    excluded: int = 0  # turned away by the dataset's filters (reported, not failures)
    sampled: int = 0  # left out by [datasets.upload] sample_percent
    refused: int = 0  # past an upload quota: in the failures file, to import again later
    failed: int = 0
    failures: str | None = None  # the failures file, if anything failed
    seconds: float = 0.0
    controls: dict[str, Any] = field(default_factory=dict)  # sample seed, quota use, batch
    skipped_links: list[str] = field(default_factory=list)  # upload: symlinks not followed

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["skipped_links"] = len(self.skipped_links)
        return data


@dataclass
class Task:
    """One object to import: its dataset path, a loader for its bytes (run on a worker
    thread), and what to record about it."""

    filename: str
    load: Callable[[], Content]
    facts: ItemFacts = field(default_factory=ItemFacts)
    content_type: str | None = None


@dataclass
class Outcome:
    ref: Any  # the caller's handle on the task: a CSV row, a file path
    filename: str | None
    status: str  # created | updated | unchanged | excluded | sampled | refused | failed
    item_id: str | None = None
    error: str | None = None


# -- the pipeline ---------------------------------------------------------------------------

def run_tasks(catalogue: Catalogue, dataset: Dataset, driver: Driver,
              tasks: Iterable[tuple[Any, Task | Exception]], *, batch_size: int = DEFAULT_BATCH,
              on_outcome: Callable[[Outcome], None],
              path_filter: PathFilter = NO_FILTER, controls: Controls | None = None,
              overwrite: bool = True) -> None:
    """Run `tasks` (pairs of a ref and a Task, or of a ref and the error that made it fail
    before it could start) `batch_size` at a time; report each Outcome on this thread. A task
    whose path `path_filter` excludes is reported as excluded and nothing is written;
    `controls` (the dataset's upload controls) may leave a task out, refuse it, or change it.
    Without `overwrite`, a task whose path holds other content already fails."""
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")

    def finish(future: Future, ref: Any, task: Task) -> None:
        try:
            stored: Stored = future.result()
            status, item_id = record(catalogue, dataset, stored, task.facts)
        except Exception as error:  # noqa: BLE001 - one task's failure never stops the others
            on_outcome(Outcome(ref, task.filename, "failed", error=describe(error)))
            return
        on_outcome(Outcome(ref, task.filename, status, item_id))

    pending: dict[Future, tuple[Any, Task]] = {}

    def drain(until: int) -> None:
        while len(pending) > until:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                finish(future, *pending.pop(future))

    with ThreadPoolExecutor(max_workers=batch_size, thread_name_prefix="syncd-import") as pool:
        try:
            for ref, task in tasks:
                if isinstance(task, Exception):
                    on_outcome(Outcome(ref, None, "failed", error=describe(task)))
                    continue
                rule = path_filter.excluded_by(task.filename.lstrip("/"))
                if rule is not None:
                    on_outcome(Outcome(ref, task.filename, "excluded",
                                       error=f"{task.filename}: excluded by {rule}"))
                    continue
                if controls is not None:
                    decision = controls.admit()
                    if decision is not None:
                        status, reason = decision
                        on_outcome(Outcome(ref, task.filename, status, error=f"{task.filename}: {reason}"))
                        continue
                    task = controls.apply(task)
                try:
                    known = existing(catalogue, dataset, task.filename)
                except Exception as error:  # noqa: BLE001
                    on_outcome(Outcome(ref, task.filename, "failed", error=describe(error)))
                    continue
                pending[pool.submit(_stage, driver, task, known, overwrite)] = (ref, task)
                drain(2 * batch_size - 1)  # a bounded window: flat memory for any input size
            drain(0)
        except Exception:
            drain(0)  # the input broke off: what is under way is still recorded
            raise
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def upload_controls(app: App, dataset: Dataset) -> Controls | None:
    """The dataset's [datasets.upload] controls for one run, or None when none is set."""
    controls = Controls.start(app.catalogue, dataset, app.config.dataset(dataset.name).upload)
    return controls if controls.active else None


def run_import(app: App, dataset: Dataset, result: ImportResult,
               tasks: Iterable[tuple[Any, Task | Exception]], *, batch_size: int,
               progress: Progress | None, failures: FailuresFile | Any | None = None,
               on_failure: Callable[[Outcome], None] | None = None,
               on_outcome: Callable[[Outcome], None] | None = None,
               overwrite: bool = True) -> ImportResult:
    """What every import shares: the dataset's filters and upload controls, the pool, the
    tally, and the failures file (`on_failure` writes a failed or refused task to it; it is
    finished at the end, or aborted if the input breaks off)."""
    tally = _Tally(result, progress)

    def counted(outcome: Outcome) -> None:
        if on_failure is not None and outcome.status in ("failed", "refused"):
            on_failure(outcome)
        tally.count(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    controls = upload_controls(app, dataset)
    try:
        run_tasks(app.catalogue, dataset, app.dataset_driver(dataset.name), tasks,
                  batch_size=batch_size, on_outcome=counted,
                  path_filter=app.path_filter(dataset.name), controls=controls,
                  overwrite=overwrite)
    except BaseException:
        if failures is not None:
            failures.abort()
        raise
    result.controls = controls.report() if controls else {}
    if failures is not None:
        result.failures = failures.finish()
    return result


def retry_column(failures: Path, column: str, command: str) -> list[str]:
    """The `column` of a failures file written by `command`, to import those again."""
    try:
        with open(failures, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = [h.strip().lower() for h in next(reader, [])]
            if column not in header:
                raise InputError(f"{failures}: no {column!r} column (expected a failures file of "
                                 f"`{command}`)")
            index = header.index(column)
            return [row[index] for row in reader if len(row) > index and row[index].strip()]
    except OSError as error:
        raise InputError(f"{failures}: cannot read: {error.strerror or error}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise InputError(f"{failures}: {_reason(error)}") from None


def _stage(driver: Driver, task: Task, known, overwrite: bool = True) -> Stored:
    content = task.load()
    try:
        return store(driver, task.filename, content, known,
                     content_type=task.content_type or content.content_type, overwrite=overwrite)
    except AlreadyExists:
        raise InputError(f"{task.filename} already exists with other content; not replaced"
                         " (--overwrite replaces it)") from None
    finally:
        content.stream.close()


def describe(error: BaseException) -> str:
    if isinstance(error, SyncdError):
        return str(error)
    return f"{type(error).__name__}: {error}"


class _Tally:
    def __init__(self, result: ImportResult, progress: Progress | None):
        self.result, self.progress = result, progress

    def count(self, outcome: Outcome) -> None:
        result = self.result
        result.total += 1
        setattr(result, outcome.status, getattr(result, outcome.status) + 1)
        if outcome.status in ("failed", "refused"):
            log.warning("%s", outcome.error)
        elif outcome.status in ("excluded", "sampled"):
            log.info("%s", outcome.error)
        if self.progress:
            self.progress(1)


# -- failures files -------------------------------------------------------------------------

def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class ReplacedFile:
    """A file written beside its final path and moved there at the end if anything was
    written (`count`); with nothing written, a stale one there is removed."""

    def __init__(self, path: Path, suffix: str):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.temporary = tempfile.mkstemp(prefix=".syncd-failures-", suffix=suffix, dir=path.parent)
        self.file = os.fdopen(fd, "w", newline="", encoding="utf-8")
        self.count = 0

    def finish(self) -> str | None:
        self.file.close()
        if self.count:
            os.chmod(self.temporary, 0o666 & ~_umask())  # mkstemp makes 0600; the user's umask rules
            os.replace(self.temporary, self.path)
            return str(self.path)
        os.unlink(self.temporary)
        if self.path.exists():
            self.path.unlink()  # an earlier run's failures, all imported now
        return None

    def abort(self) -> None:
        self.file.close()
        if os.path.exists(self.temporary):
            os.unlink(self.temporary)


class FailuresFile(ReplacedFile):
    """A CSV of what failed: the input's own columns plus `error`."""

    def __init__(self, path: Path, header: list[str]):
        super().__init__(path, ".csv")
        lowered = [h.strip().lower() for h in header]
        self.error_index = lowered.index(ERROR_COLUMN) if ERROR_COLUMN in lowered else None
        self.header = list(header) + ([] if self.error_index is not None else [ERROR_COLUMN])
        self.width = len(header)
        self.writer = csv.writer(self.file)
        self.writer.writerow(self.header)

    def add(self, row: list[str], error: str) -> None:
        row = (list(row) + [""] * self.width)[: self.width]
        if self.error_index is not None:
            row[self.error_index] = error
        else:
            row.append(error)
        self.writer.writerow(row)
        self.count += 1


def default_failures_path(source: Path) -> Path:
    """'<name>.failures.csv' beside `source` (a CSV file or a folder); a failures file is its
    own default, so retrying one updates it in place."""
    source = Path(os.path.abspath(source))
    base = _strip_suffixes(source.name)
    return source.with_name(f"{base}{FAILURES_SUFFIX}.csv")


def _strip_suffixes(name: str) -> str:
    if name.lower().endswith(".csv"):
        name = name[:-4]
    if name.lower().endswith(FAILURES_SUFFIX):
        name = name[: -len(FAILURES_SUFFIX)]
    return name


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
    base = _folder(folder)
    target = posixpath.join(base, _strip_suffixes(source.name))
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
            raise InputError(f"{source} line 1: {_reason(error)}") from None
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
                raise InputError(f"{self.source} line {self.reader.line_num + 1}: {_reason(error)}"
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


def _reason(error: BaseException) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text ({error.reason})"
    return str(error)


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
    """The reference SDK's `item_metadata` (the item's whole `metadata`): (its `user`, to
    replace metadata.user, or None when not given; its other top-level keys, each to replace
    metadata.<key>). `system` is refused: syncd writes it."""
    if not text.strip():
        return None, {}
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except (json.JSONDecodeError, ValueError) as error:
        reason = f"{error.msg} (column {error.colno})" if isinstance(error, json.JSONDecodeError) else str(error)
        raise fail("item_metadata", f"not valid JSON: {reason}") from None
    if not isinstance(value, dict):
        raise fail("item_metadata", "expected a JSON object")
    if "system" in value:
        raise fail("item_metadata", "system: metadata.system is written by syncd, not by imports;"
                   " put the keys under \"user\"")
    user = value.pop("user", None)
    if user is not None and not isinstance(user, dict):
        raise fail("item_metadata", f"user: expected a JSON object, got {type(user).__name__}")
    return user, value


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


# -- link files -----------------------------------------------------------------------------

def import_link_files(app: App, dataset: str, files: Iterable[str | os.PathLike[str]], *,
                      folder: str = "/", batch_size: int = DEFAULT_BATCH,
                      progress: Progress | None = None) -> tuple[ImportResult, list[Outcome]]:
    """Import link JSON files as linked items. Every file is checked first: one malformed file
    raises InputError naming it and the key, and nothing is written."""
    started = time.monotonic()
    base = _folder(folder)
    tasks: list[tuple[str, Task | Exception]] = []
    seen: dict[str, str] = {}
    for file in map(Path, files):
        try:
            data = file.read_bytes()
        except OSError as error:
            raise InputError(f"{file}: cannot read: {error.strerror or error}") from None
        info = parse_link(data, source=str(file))
        if info["type"] == ID_LINK:
            try:  # well formed, but its item may not be here: this file fails alone
                link_target(app.catalogue, info["ref"], where=str(file))
            except LinkError as error:
                tasks.append((str(file), error))
                continue
        name = file.name if file.name.endswith(LINK_SUFFIX) else link_filename(_link_name(info))
        if name == LINK_SUFFIX:
            raise InputError(f"{file}: metadata.linkInfo.ref: no name can be taken from "
                             f"{info['ref']!r}; name the file <name>{LINK_SUFFIX}")
        filename = posixpath.join(base, name)
        if filename in seen:
            raise InputError(f"{file}: would be written to {filename}, as {seen[filename]} is")
        seen[filename] = str(file)
        content = link_bytes(info)
        tasks.append((str(file), Task(filename, lambda c=content: Content.of_bytes(c),
                                      ItemFacts("link", link_system(info)), "application/json")))
    ds = app.dataset(dataset)
    result = ImportResult(ds.name, ", ".join(str(f) for f, _ in tasks), base)
    outcomes: list[Outcome] = []
    run_import(app, ds, result, tasks, batch_size=batch_size, progress=progress,
               on_outcome=outcomes.append)
    result.seconds = time.monotonic() - started
    return result, outcomes


def _link_name(info: dict[str, Any]) -> str:
    """A link's name when its file does not give one: from its URL as the reference SDK
    names URL links, or an id link's item id."""
    return info["ref"] if info["type"] == ID_LINK else url_link_name(info["ref"])


# -- folder upload --------------------------------------------------------------------------

def upload_folder(app: App, dataset: str, directory: str | os.PathLike[str], *, folder: str = "/",
                  batch_size: int = DEFAULT_BATCH, label: bool = False,
                  failures: str | os.PathLike[str] | None = None,
                  retry: str | os.PathLike[str] | None = None,
                  progress: Progress | None = None, total: Callable[[int], None] | None = None,
                  ) -> ImportResult:
    """Upload the files under `directory` into `folder` of the dataset (paths kept), skipping
    files whose identical content is already there. With `label`, each item's
    `metadata.user.label` is the name of the folder holding the file. With `retry`, only the
    files listed in that failures CSV are uploaded."""
    started = time.monotonic()
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a folder")
    base = _folder(folder)
    skipped: list[str] = []
    paths = retry_column(Path(retry), "path", "syncd upload") if retry else list(_walk(directory, skipped))
    for link in skipped[:SKIPPED_SHOWN]:
        log.warning("%s: a symbolic link, not followed (not uploaded)", link)
    if len(skipped) > SKIPPED_SHOWN:
        log.warning("... and %d more symbolic links not followed", len(skipped) - SKIPPED_SHOWN)
    if total:
        total(len(paths))
    ds = app.dataset(dataset)
    result = ImportResult(ds.name, str(directory), base, skipped_links=skipped)
    failures_file = FailuresFile(Path(failures) if failures else default_failures_path(directory),
                                 ["path"])
    top_name = directory.resolve().name

    def tasks() -> Iterator[tuple[str, Task | Exception]]:
        for relative in paths:
            try:
                yield relative, _file_task(directory, relative, base, label, top_name)
            except (InputError, DriverError, ValueError) as error:
                yield relative, error

    run_import(app, ds, result, tasks(), batch_size=batch_size, progress=progress,
               failures=failures_file,
               on_failure=lambda outcome: failures_file.add([outcome.ref], outcome.error))
    result.seconds = time.monotonic() - started
    return result


def _walk(directory: Path, skipped: list[str]) -> Iterator[str]:
    """Relative POSIX paths of the files under `directory`, sorted; hidden artifacts folders
    are left out. Symbolic links (to files or folders) are never followed: a planted link
    would upload whatever it points to; their paths are added to `skipped`."""
    for root, dirs, files in os.walk(directory):
        relative_root = os.path.relpath(root, directory)
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        dirs[:] = sorted(d for d in dirs if d != HIDDEN_FOLDER and d not in links)
        for name in sorted(files + links):
            relative = Path(os.path.normpath(os.path.join(relative_root, name))).as_posix()
            if os.path.islink(os.path.join(root, name)):
                skipped.append(relative)
            else:
                yield relative


def local_content(path: Path, *, follow_symlinks: bool = True) -> Content:
    """A local file's Content: hashed in chunks from one open file, which is then put (the
    bytes hashed are the bytes stored; flat memory). Without `follow_symlinks`, a path that
    is a symbolic link (swapped in since it was listed, say) is refused."""
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP and not follow_symlinks:
            raise InputError(f"{path}: a symbolic link, not followed") from None
        raise
    file = os.fdopen(fd, "rb")  # noqa: SIM115 - closed by _stage
    try:
        digest, size = hashlib.md5(), 0
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return Content(file, digest.hexdigest(), size)


def _file_task(directory: Path, relative: str, base: str, label: bool, top_name: str) -> Task:
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts:
        raise InputError(f"{relative}: not a path inside {directory}")
    path = directory / relative
    if path.is_symlink():
        raise InputError(f"{relative}: a symbolic link, not followed")
    if not path.is_file():
        raise InputError(f"{relative}: no such file in {directory}")
    filename = posixpath.join(base, relative)
    check_key(filename.lstrip("/"))
    user = {"label": path.parent.name if len(parts) > 1 else top_name} if label else {}
    content_type = mimetypes.guess_type(path.name)[0]

    return Task(filename, lambda: local_content(path, follow_symlinks=False),
                ItemFacts("file", {}, user), content_type)


def _folder(folder: str) -> str:
    folder = "/" + folder.strip().strip("/")
    if folder != "/":
        check_key(folder[1:])
    return folder
