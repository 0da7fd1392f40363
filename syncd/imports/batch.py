"""The import pipeline every importer shares (CSV: csv_import, link files and folders: upload,
JSONL: jsonl, tar archives: archive), and the failures files they write.

Each thing imported is a Task: the dataset path it goes to, how to get its bytes, and the item
facts to record. Tasks run on a pool of `batch_size` threads (fetching, hashing and putting
through the driver); the catalogue is written on the calling thread as each one finishes (see
syncd.imports.writes). A task that fails is reported with its reason and never stops the others; the
failed CSV rows or folder files go to a failures CSV that can be fed back as it is.

Re-running an import does not duplicate: an item is keyed on its path, and content already
there (same MD5) is not written again.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drivers import AlreadyExists, Driver
from drivers.base import check_key

from ..app import App
from ..catalogue import Catalogue, Dataset
from ..errors import InputError, SyncdError
from ..sync.filters import NO_FILTER, PathFilter
from .controls import Controls
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
        raise InputError(f"{failures}: {failure_reason(error)}") from None


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
    base = strip_suffixes(source.name)
    return source.with_name(f"{base}{FAILURES_SUFFIX}.csv")


def strip_suffixes(name: str) -> str:
    if name.lower().endswith(".csv"):
        name = name[:-4]
    if name.lower().endswith(FAILURES_SUFFIX):
        name = name[: -len(FAILURES_SUFFIX)]
    return name


# -- shared by the importers ------------------------------------------------------------------

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


def target_folder(folder: str) -> str:
    folder = "/" + folder.strip().strip("/")
    if folder != "/":
        check_key(folder[1:])
    return folder


def failure_reason(error: BaseException) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 text ({error.reason})"
    return str(error)
