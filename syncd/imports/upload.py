"""Link files and local folders into a dataset, through the import pipeline
(syncd.imports.batch)."""

from __future__ import annotations

import logging
import mimetypes
import os
import posixpath
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from drivers import HIDDEN_FOLDER, DriverError
from drivers.base import check_key

from ..app import App
from ..errors import InputError
from .batch import (
    DEFAULT_BATCH,
    SKIPPED_SHOWN,
    FailuresFile,
    ImportResult,
    Outcome,
    Progress,
    Task,
    default_failures_path,
    local_content,
    retry_column,
    run_import,
    target_folder,
)
from .idlinks import link_target
from .links import (
    ID_LINK,
    LINK_SUFFIX,
    LinkError,
    link_bytes,
    link_filename,
    link_system,
    parse_link,
    url_link_name,
)
from .writes import Content, ItemFacts

log = logging.getLogger(__name__)


# -- link files -----------------------------------------------------------------------------

def import_link_files(app: App, dataset: str, files: Iterable[str | os.PathLike[str]], *,
                      folder: str = "/", batch_size: int = DEFAULT_BATCH,
                      progress: Progress | None = None) -> tuple[ImportResult, list[Outcome]]:
    """Import link JSON files as linked items. Every file is checked first: one malformed file
    raises InputError naming it and the key, and nothing is written."""
    started = time.monotonic()
    base = target_folder(folder)
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
    base = target_folder(folder)
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


