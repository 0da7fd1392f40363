"""`syncd import tar`: a tar archive (`.tar`, `.tar.gz`, `.tgz`, `.tar.bz2`, `.tar.xz`)
expanded into items, read as a stream.

The archive is read once, front to back (tarfile's stream mode: no seeking, so a pipe works
too); each member's bytes go to a spooled temporary file (in memory up to SPOOL_BYTES, on
disk past that) while their MD5 is computed, and are put from there by the import pool, so
memory stays bounded whatever the archive's size. Items land in a folder named after the
archive, with the CSV import's path rules: member paths are kept below it, and a member that
is not a regular file, or whose path is absolute, climbs out with `..`, or is not a valid key,
fails alone, named. Failed members are written to `<name>.failures.csv` (`member, error`);
`--retry` with that file imports just those members again.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import posixpath
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from drivers import DriverError
from drivers.base import check_key

from ..app import App
from ..catalogue import Dataset
from ..catalogue.archives import SUFFIXES
from ..errors import InputError
from .batch import (
    DEFAULT_BATCH,
    FailuresFile,
    ImportResult,
    Outcome,
    Progress,
    Task,
    retry_column,
    run_import,
    target_folder,
)
from .writes import Content, ItemFacts

SPOOL_BYTES = 1024 * 1024  # a member's bytes kept in memory up to this, then on disk
CHUNK = 1024 * 1024


def archive_name(source: Path) -> str:
    name = source.name
    if name.lower().endswith(".failures.csv"):
        name = name[: -len(".failures.csv")]
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def import_tar(app: App, dataset: str, source: str | os.PathLike[str], *, folder: str = "/",
               batch_size: int = DEFAULT_BATCH, failures: str | os.PathLike[str] | None = None,
               retry: str | os.PathLike[str] | None = None,
               progress: Progress | None = None, overwrite: bool = False) -> ImportResult:
    """Expand a tar archive into the folder named after it. With `retry` (a failures file
    of an earlier run), only the members it lists are imported."""
    source = Path(source)
    started = time.monotonic()
    target = posixpath.join(target_folder(folder), archive_name(source))
    check_key(target.lstrip("/"))
    wanted = set(retry_column(Path(retry), "member", "syncd import tar")) if retry else None
    ds = app.dataset(dataset)
    result = ImportResult(ds.name, str(source), target)
    try:
        stream = open(source, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise InputError(f"{source}: not a readable tar archive: {error.strerror or error}") from None
    failures_file = FailuresFile(Path(failures) if failures else
                                 source.with_name(f"{archive_name(source)}.failures.csv"), ["member"])
    with stream:
        expand_stream(app, ds, result, stream, source.name, target, wanted=wanted,
                      batch_size=batch_size, progress=progress, failures=failures_file,
                      on_failure=lambda outcome: failures_file.add([outcome.ref], outcome.error),
                      overwrite=overwrite)
    result.seconds = time.monotonic() - started
    return result


def expand_stream(app: App, ds: Dataset, result: ImportResult, stream: BinaryIO, source_name: str,
                  target: str, *, wanted: set[str] | None = None, batch_size: int = DEFAULT_BATCH,
                  progress: Progress | None = None, failures=None,
                  on_failure: Callable[[Outcome], None] | None = None,
                  system: dict[str, Any] | None = None, overwrite: bool = False) -> ImportResult:
    """Expand the tar archive read from `stream` (front to back, never seeked: a local file or
    a storage object's body) into `target`; each member's outcome is counted in `result`, a
    failed one's error naming `source_name` and the member. `system` is recorded in each
    member item's metadata.system. Without `overwrite`, a member whose path holds other
    content fails instead of replacing it."""
    try:
        archive = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as error:
        raise InputError(f"{source_name}: not a readable tar archive: {error}") from None
    seen: set[str] = set()

    def tasks() -> Iterator[tuple[str, Task | Exception]]:
        try:
            for member in archive:
                if member.isdir() or (wanted is not None and member.name not in wanted):
                    continue
                try:
                    yield member.name, _member_task(archive, member, target, seen, source_name, system)
                except (InputError, DriverError) as error:
                    yield member.name, error
        except (tarfile.TarError, EOFError, OSError) as error:
            raise InputError(f"{source_name}: the archive breaks off: {error} (members after it were not read)") from None

    def failed(outcome: Outcome) -> None:
        if not outcome.error.startswith(f"{source_name}: "):
            outcome.error = f"{source_name}: {outcome.ref}: {outcome.error}"
        if on_failure is not None:
            on_failure(outcome)

    with archive:
        run_import(app, ds, result, tasks(), batch_size=batch_size, progress=progress,
                   failures=failures, on_failure=failed, overwrite=overwrite)
    return result


def _member_task(archive: tarfile.TarFile, member: tarfile.TarInfo, target: str, seen: set[str],
                 source_name: str, system: dict[str, Any] | None = None) -> Task:
    where = f"{source_name}: {member.name}"
    if not member.isfile():
        kind = "a symbolic link" if member.issym() else "a hard link" if member.islnk() else "not a regular file"
        raise InputError(f"{where}: {kind}; only files are imported")
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    if name.startswith("/") or ".." in name.split("/"):
        raise InputError(f"{where}: the path leaves the archive's folder")
    filename = posixpath.join(target, name)
    try:
        check_key(filename.lstrip("/"))
    except DriverError as error:
        raise InputError(f"{where}: {error}") from None
    if filename in seen:
        raise InputError(f"{where}: {filename} is already written by an earlier member")
    seen.add(filename)
    stream = archive.extractfile(member)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by the runner
    digest, size = hashlib.md5(), 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        spool.write(chunk)
        size += len(chunk)
    content = Content(spool, digest.hexdigest(), size)
    return Task(filename, lambda: content, ItemFacts("file", dict(system or {})),
                mimetypes.guess_type(name)[0])

