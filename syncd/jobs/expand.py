"""The `expand` job: a tar archive that arrived in a dataset with `expand_archives = true`
(dropped into a watched folder, synced, uploaded) is expanded into items.

syncd.sync.rules queues the job with the archive's created or changed item; the runner
dispatches it here, on a thread of its own with its own App (catalogue connection), so
claiming and the worker pool go on meanwhile: the archive is read from storage as
one stream, front to back, and its members go through the same pipeline as `syncd import
tar` (path rules, the dataset's filters and upload controls, a bounded pool of puts, each
member recorded with the jobs its own rule calls for). Members land in a folder named after
the archive, beside it (`/drops/shoot.tar` -> `/drops/shoot/...`), and carry
`metadata.system.expandedFrom` (the archive item's id); an archive inside an archive is not
expanded again. A bad member fails alone: the job ends `failed` naming each bad member and
its reason, the good members being imported; running it again (`syncd jobs retry`) rewrites
nothing that is already there.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Callable
from pathlib import PurePosixPath

from drivers import DriverError, NotFound, PermissionDenied

from ..app import App
from ..catalogue import items
from ..catalogue.jobs import Job
from ..errors import InputError
from ..imports.archive import archive_name, expand_stream
from ..imports.batch import ImportResult, Outcome
from .worker import TaskResult

log = logging.getLogger(__name__)

MAX_REPORTED = 20  # bad members named in the job's error; the rest are counted


def expand_job(app: App, job: Job, *, renew: Callable[[], None] = lambda: None,
               renew_every: float = 10.0) -> TaskResult:
    """Expand the archive item of `job`; the result to record. `renew` is called at least
    every `renew_every` seconds while members are written (the job's lease)."""
    catalogue = app.catalogue
    row = items.by_pk(catalogue, job.item_pk)
    if row is None:
        return TaskResult(job.id, "cancelled", errors=["the item no longer exists"])
    if row["state"] != "present":
        return TaskResult(job.id, "cancelled", errors=["the item is gone from storage"])
    dataset = items.dataset_by_id(catalogue, row["dataset_id"])
    driver = app.dataset_driver(dataset.name)
    key = row["filename"].lstrip("/")
    folder, _, name = row["filename"].rpartition("/")
    target = posixpath.join(folder or "/", archive_name(PurePosixPath(name)))
    result = ImportResult(dataset.name, row["filename"], target)
    failed: list[str] = []
    last_renewal = time.monotonic()

    def progress(_count: int) -> None:
        nonlocal last_renewal
        if time.monotonic() - last_renewal >= renew_every:
            renew()
            last_renewal = time.monotonic()

    def on_failure(outcome: Outcome) -> None:
        failed.append(outcome.error or outcome.ref)

    try:
        with driver.open(key) as stream:
            expand_stream(app, dataset, result, stream, name, target, progress=progress,
                          on_failure=on_failure,
                          system={"expandedFrom": catalogue.item_id(row["pk"])})
    except NotFound as error:
        return TaskResult(job.id, "failed", errors=[f"not found in storage: {error}"], not_found=True)
    except PermissionDenied as error:
        return TaskResult(job.id, "failed", errors=[f"permission denied: {error}"])
    except DriverError as error:
        return TaskResult(job.id, "retry", errors=[f"storage error: {type(error).__name__}: {error}"])
    except InputError as error:  # not a tar archive, or one that breaks off
        return TaskResult(job.id, "failed", errors=[*failed[:MAX_REPORTED], str(error)])
    summary = (f"expanded into {target}: {result.created} created, {result.updated} updated, "
               f"{result.unchanged} unchanged, {result.excluded} excluded, {result.failed} failed")
    log.info("%s: %s", row["filename"], summary)
    if not failed and not result.refused:
        return TaskResult(job.id, "done")
    errors = failed[:MAX_REPORTED]
    if len(failed) > MAX_REPORTED:
        errors.append(f"... and {len(failed) - MAX_REPORTED} more bad members")
    return TaskResult(job.id, "failed", errors=[summary, *errors])
