"""Downstream: changes made through syncd, written to storage and to the catalogue.

`put` writes through the driver (so its permissions apply), then records the ObjectInfo the
driver returned through the same applier the daemon uses: the daemon's own event for the
write (inotify, a bucket notification) then finds the item already matching storage and
changes nothing, and a later rescan sees no difference either. `remove` deletes the item
and, only when the driver has `allow_delete = true`, the binary in storage ("by default,
we will NOT delete your binaries"); its artifacts get a cleanup job.
"""

from __future__ import annotations

import itertools
import mimetypes
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drivers import InvalidKey, NotFound
from drivers.base import check_key, is_hidden

from ..app import App
from ..catalogue import arrivals, items, normalize_filename
from ..errors import InputError, NotFoundError
from ..sync.applier import Applied, Applier
from ..sync.events import ObjectCreated
from ..sync.rules import RULES, Change


def remote_key(local: Path, remote: str | None) -> str:
    """The key a local file is put at: `remote` ('/cats/a.jpg', or a folder ending in '/'),
    else the file's own name at the top of the dataset."""
    if not remote:
        key = local.name
    elif remote.endswith("/"):
        key = remote.strip("/") + "/" + local.name if remote.strip("/") else local.name
    else:
        key = remote.lstrip("/")
    check_key(key)
    if is_hidden(key):
        raise InvalidKey(f"{key!r} is inside syncd's artifacts folder")
    return key


def _applier(app: App) -> Applier:
    return Applier(app.catalogue, lambda name: (app.dataset(name), app.dataset_driver(name)),
                   path_filter=app.path_filter)


def put(app: App, dataset: str, local: str | os.PathLike[str], remote: str | None = None,
        *, user: dict[str, Any] | None = None) -> tuple[dict[str, Any], Applied]:
    """Write `local` to the dataset's storage and catalogue it (with a preprocessing job);
    `user` is merged into its metadata.user."""
    path = Path(local)
    key = remote_key(path, remote)
    rule = app.path_filter(dataset).excluded_by(key)
    if rule is not None:
        raise InputError(f"{path}: /{key} is excluded by the dataset's filters ({rule}); "
                         "nothing was written")
    driver = app.dataset_driver(dataset)
    app.dataset(dataset)
    content_type = mimetypes.guess_type(path.name)[0]
    with open(path, "rb") as stream:
        info = driver.put(key, stream, content_type=content_type)
    applier = _applier(app)

    def set_meta(change: Applied) -> None:
        # In the item's own transaction: no reader (nor webhook receiver fetching the item)
        # sees it without the metadata it was put with.
        from ..usermeta import merge_user_metadata

        merge_user_metadata(app.catalogue, app.dataset(dataset), "/" + key, user)

    try:
        change = applier.reconcile(
            ObjectCreated(dataset=dataset, key=key, source="downstream", received=time.time(),
                          etag=info.etag, size=info.size), info, then=set_meta if user else None)
    finally:
        applier.close()
    return app.catalogue.get_item(app.dataset(dataset), "/" + key), change


@dataclass(frozen=True)
class Removed:
    filename: str
    id: str
    binary_deleted: bool  # False: allow_delete is off (or it was already gone)

    def as_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "id": self.id, "binary_deleted": self.binary_deleted}


def remove(app: App, dataset: str, remote: str) -> Removed:
    """Remove an item; delete its binary too when the driver has allow_delete = true."""
    ds = app.dataset(dataset)
    driver = app.dataset_driver(dataset)
    filename = normalize_filename(remote)
    row = app.catalogue.item_row(ds, filename)
    if row is None:
        raise NotFoundError(f"no item {filename!r} in dataset {dataset!r}")
    deleted = False
    if driver.options.allow_delete:
        try:
            driver.delete(filename.lstrip("/"))  # PermissionDenied: nothing changes
            deleted = True
        except NotFound:
            pass
    with app.catalogue.transaction(immediate=True):
        # Its thumbnail: a cleanup job, run by the workers, queued before the row goes.
        items.apply_rule(app.catalogue, RULES[Change.GONE], [row["pk"]])
        items.delete(app.catalogue, [row["pk"]])
    return Removed(filename, app.catalogue.item_id(row["pk"]), deleted)


ADMIT_BATCH = 500  # refused paths stated and catalogued per transaction


@dataclass
class Admitted:
    """What `syncd items admit` did."""

    dataset: str
    admitted: int = 0  # new items (with their preprocessing jobs)
    gone: int = 0  # no longer in storage: their refusal forgotten
    skipped: int = 0  # already an item (written by syncd meanwhile): its refusal forgotten
    dry_run: bool = False
    paths: list[str] = field(default_factory=list)  # the first ones admitted (or to admit)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def admit(app: App, dataset: str, filenames: Sequence[str] = (), *, reasons: Sequence[str] = (),
          dry_run: bool = False, progress: Callable[[int], None] | None = None,
          sample: int = 20) -> Admitted:
    """Give items to refused arrivals (syncd.sync.admission): those at `filenames`, else
    every one (with one of `reasons`, when given), whatever the sampling and quotas say.
    Each is stated in storage first: one gone meanwhile loses its refusal instead. Their items
    get the arrival's tags and batch and their preprocessing jobs, as any new file."""
    ds = app.dataset(dataset)
    result = Admitted(dataset, dry_run=dry_run)
    filenames = [normalize_filename(f) for f in filenames]
    unknown = [f for f in filenames if arrivals.find(app.catalogue, ds, f) is None]
    if unknown:
        raise NotFoundError(f"{unknown[0]!r} is not a refused file of dataset {dataset!r}"
                            f" (see syncd items refused {dataset}); nothing was admitted")
    chosen = arrivals.refusals(app.catalogue, ds, reasons=reasons, filenames=filenames)
    if dry_run:
        for row in chosen:
            result.admitted += 1
            if len(result.paths) < sample:
                result.paths.append(row["filename"])
        return result
    applier = Applier(app.catalogue, lambda name: (app.dataset(name), app.dataset_driver(name)),
                      path_filter=app.path_filter, arrival_user=app.arrival_user)
    try:
        # A page at a time, each read anew: admitting removes rows from what is iterated.
        while batch := list(itertools.islice(chosen, ADMIT_BATCH)):
            events = [ObjectCreated(dataset=dataset, key=row["filename"].lstrip("/"),
                                    source="admit", received=time.time()) for row in batch]
            for change in applier.apply(events, arrival=False):
                if change.action == "created":
                    result.admitted += 1
                    if len(result.paths) < sample:
                        result.paths.append(change.filename)
                elif change.item_id is None and change.action == "unchanged":
                    result.gone += 1
                else:
                    result.skipped += 1
            with app.catalogue.transaction(immediate=True):  # those that had an item already
                arrivals.forget(app.catalogue, ds, [row["filename"] for row in batch])
            if progress:
                progress(len(batch))
    finally:
        applier.close()
    return result
