"""Upstream sync: list a dataset's storage, stage the listing in the catalogue, diff it
against the items and apply the difference (syncd.catalogue.listing), with the jobs that
syncd.sync.rules calls for, written in the same transactions as the items.

Nothing is deleted when the listing failed part-way, items under a folder that could not be
read are left alone, and `max_delete_percent` refuses a mass delete before anything is written.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field


from drivers import CredentialsRefused, Driver, DriverError, NotFound, PermissionDenied, Unreachable

from ..catalogue import Catalogue, Dataset, runs
from ..catalogue.listing import Scope, StagedListing
from ..errors import SyncError
from ..imports import links
from .filters import NO_FILTER, Excluded, PathFilter, filter_pages
from .admission import Admission, hold_listing, record_listing
from .rules import RULES

log = logging.getLogger(__name__)

SAMPLE = 20  # changed paths remembered per kind of change, for --dry-run and logs
PREFETCH_PAGES = 16  # listing pages read ahead of the catalogue writes


@dataclass
class SyncResult:
    dataset: str
    listed: int = 0
    created: int = 0
    updated: int = 0
    moved: int = 0
    deleted: int = 0
    unchanged: int = 0
    errors: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    pruned: bool = False
    deletes_skipped: str | None = None  # why deletions were not applied, if they were not
    samples: dict[str, list[str]] = field(default_factory=dict)
    excluded: Excluded = field(default_factory=Excluded)  # listed keys the filters turned away
    # New paths the upload controls refused an item now (reason -> paths), and paths refused
    # before with the same content, left alone (syncd.sync.admission)
    refused: dict[str, int] = field(default_factory=dict)
    still_refused: int = 0

    def as_json(self) -> dict:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["excluded"] = dict(self.excluded.counts)  # rule -> keys; the keys: see samples
        if not data["deletes_skipped"]:
            del data["deletes_skipped"]
        return data


Progress = Callable[[int], None]  # called with the number of objects just listed
# Another source of the listing than the driver (a bucket inventory): (prefix, on_error) ->
# pages of (key, size, mtime, etag, md5), as Driver.list_pages yields them.
Listing = Callable[[str, Callable[[str, str], None]], Iterator[list]]


def sync_dataset(
    catalogue: Catalogue,
    dataset: Dataset,
    driver: Driver,
    *,
    prefix: str = "",
    dry_run: bool = False,
    prune: bool = False,
    max_delete_percent: float = 100.0,
    progress: Progress | None = None,
    path_filter: PathFilter = NO_FILTER,
    arrival_user: dict | None = None,
    admission: Admission | None = None,
    listing: Listing | None = None,
) -> SyncResult:
    """List `driver` (under `prefix`) and bring `dataset`'s items in line with it. Keys that
    `path_filter` excludes are left out of the listing (so their items, if any, are gone).

    With `listing` (an inventory: a snapshot, maybe older than the catalogue), the listing
    comes from it instead and nothing is deleted: a later listing sync finds what is gone.
    New items get `arrival_user` as their user metadata (the upload controls' tags and batch);
    `admission` (their sampling and quotas) and the refusals remembered in the catalogue
    decide which new paths get no item (syncd.sync.admission)."""
    with _dataset_lock(catalogue, dataset):
        return _sync_locked(catalogue, dataset, driver, prefix=prefix, dry_run=dry_run,
                            prune=prune, max_delete_percent=max_delete_percent, progress=progress,
                            path_filter=path_filter, arrival_user=arrival_user,
                            admission=admission, listing=listing)


@contextlib.contextmanager
def _dataset_lock(catalogue: Catalogue, dataset: Dataset) -> Iterator[None]:
    """One sync of a dataset at a time, across processes and hosts (the catalogue's lock,
    freed if the holder dies, so a killed sync never blocks the next one)."""
    with catalogue.dataset_lock(dataset):
        runs.mark_interrupted(catalogue, dataset)
        yield


def _sync_locked(catalogue, dataset, driver, *, prefix, dry_run, prune, max_delete_percent,
                 progress, path_filter=NO_FILTER, arrival_user=None, admission=None,
                 listing=None) -> SyncResult:
    started = time.monotonic()
    result = SyncResult(dataset.name, dry_run=dry_run, pruned=prune)
    run_id = None if dry_run else runs.start_run(catalogue, dataset)
    try:
        with StagedListing(catalogue) as staged:
            errors: list[tuple[str, str]] = []
            def on_error(key: str, reason: str) -> None:
                errors.append((key, reason))

            if listing is not None:  # an inventory instead of the driver's listing
                pages = listing(prefix, on_error)
            else:
                pages = driver.list_pages(prefix, on_error=on_error)
            if path_filter:
                pages = filter_pages(pages, path_filter, result.excluded)
            if listing is not None or driver.features.threaded_listing:
                pages = prefetched(pages)
            staged.load(pages, progress)
            result.listed = staged.listed
            result.errors = len(errors)
            for path, reason in errors:
                log.warning("%s: cannot list %s: %s", dataset.name, path or "/", reason)
            staged.unreadable(_unlisted_key(path) for path, _ in errors)
            scope = Scope(prefix)
            plan = staged.plan(dataset, scope)
            held = hold_listing(catalogue, staged, plan, dataset, scope, admission)
            if held is not None:
                result.refused, result.still_refused = held.new, held.kept
            result.created = plan.fresh - plan.moves - (held.total if held else 0)
            result.moved = plan.moves
            result.updated = plan.changed
            result.deleted = plan.gone_present - plan.moves
            if prune:
                result.deleted += plan.gone_missing
            result.unchanged = (result.listed - result.created - result.moved - result.updated
                                - (held.total if held else 0))
            result.samples = staged.samples(plan, SAMPLE)
            if held is not None and held.samples:
                result.samples["refused"] = held.samples
            present = catalogue.count_items(dataset)["present"] if result.deleted else 0
            if listing is not None and result.deleted:
                result.deletes_skipped = (f"{result.deleted} items are not in the inventory: an"
                                          " inventory sync deletes nothing (a listing sync will)")
                result.deleted = 0
            elif present and 100.0 * result.deleted / present > max_delete_percent:
                result.deletes_skipped = (
                    f"{result.deleted} of {present} items would be deleted, more than"
                    f" sync.max_delete_percent = {max_delete_percent}%"
                )
                result.deleted = 0
            if not dry_run:
                _read_link_files(staged, driver, plan)
                if held is not None:
                    record_listing(catalogue, staged, plan, dataset, scope, held,
                                   complete=listing is None)
                staged.apply(dataset, plan, RULES, prune=prune,
                             deletes=result.deletes_skipped is None, user=arrival_user)
                runs.record_errors(catalogue, dataset, run_id, errors)
                driver.tidy()
    except DriverError as error:
        if run_id is not None:
            runs.finish_run(catalogue, run_id, _counts(result), "failed", str(error))
        raise SyncError(_describe_failure(driver, error)) from error
    except BaseException as error:
        if run_id is not None:
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            runs.finish_run(catalogue, run_id, _counts(result), status, f"{type(error).__name__}: {error}")
        raise
    result.seconds = time.monotonic() - started
    if run_id is not None:
        runs.finish_run(catalogue, run_id, _counts(result), "ok", result.deletes_skipped)
    return result


def _unlisted_key(key: str) -> str:
    """The key a listing error protects: itself (a file whose name no key can hold, a
    backslash say, protects only that name), or the whole scope ("") when the driver reported
    something that is no path inside its folder, so no message it wrote lets items be deleted."""
    key = key.strip("/")
    if not key or "\x00" in key or any(part in ("", ".", "..") for part in key.split("/")):
        return ""
    return key


def _counts(result: SyncResult) -> dict:
    return asdict(result) | {"excluded": result.excluded.total}


def _describe_failure(driver: Driver, error: DriverError) -> str:
    what = "storage error"
    for kind, label in ((NotFound, "not found"), (CredentialsRefused, "credentials refused"),
                        (PermissionDenied, "permission denied"), (Unreachable, "unreachable")):
        if isinstance(error, kind):
            what = label
            break
    return f"driver {driver.name!r} ({driver.describe()}): {what}: {error}"


_END = object()


def prefetched(pages: Iterator[list], depth: int = PREFETCH_PAGES) -> Iterator[list]:
    """Iterate `pages` in a thread, `depth` pages ahead, so that listing (a child process,
    network waits, parsing) overlaps the catalogue writes, which release the GIL."""
    slots: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        slots.put(page, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_END)
        except BaseException as error:  # handed to the consumer, raised there
            slots.put(error)
        finally:
            close = getattr(pages, "close", None)
            if close:
                close()

    thread = threading.Thread(target=produce, name="syncd-listing", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


# -- link files ----------------------------------------------------------------------------
# A small `.json` file among the created and content-changed paths is read, and if it is a
# link in the reference's format (syncd.imports.links) its item gets `type = 'link'` and the
# link in its system metadata, in the same transaction as the item row. Other files are never
# read, so a sync of non-JSON files costs what it did.

def _read_link_files(staged: StagedListing, driver: Driver, plan) -> None:
    candidates = staged.link_candidates(plan, links.MAX_LINK_BYTES)
    if not candidates:
        return
    if "get" not in driver.permissions:
        log.warning("driver %r has no 'get' permission: %d JSON files not read as links",
                    driver.name, len(candidates))
        return
    found = links.read_links(driver, [path[1:] for path, _ in candidates])
    rows = []
    for path, old_type in candidates:
        if found.get(path[1:]):
            rows.append((path, "link", links.link_system(found[path[1:]])))
        elif old_type == "link":
            rows.append((path, "file", {"mimetype": None}))  # shebang goes too
    staged.set_link_info(rows)
