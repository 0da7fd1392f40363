"""The library entry point: a loaded config with its catalogue and drivers, opened lazily.

The CLI and the daemon both work through an App; tests can too.
"""

from __future__ import annotations

import drivers
from drivers import PermissionGuard

from .catalogue import Catalogue, Dataset
from .catalogue.archives import set_expanding
from .catalogue.errors import catalogue_errors
from .catalogue.outbox import set_subscriptions
from .config import Config, load_config
from .sync.filters import PathFilter
from .sync.indexer import Progress, SyncResult, sync_dataset
from .catalogue.jobs import JobQueue


class App:
    def __init__(self, config: Config):
        self.config = config
        self._catalogue: Catalogue | None = None
        self._drivers: dict[str, PermissionGuard] = {}
        self._filters: dict[str, PathFilter] = {}

    @classmethod
    def from_file(cls, path=None) -> App:
        return cls(load_config(path))

    @property
    def catalogue(self) -> Catalogue:
        if self._catalogue is None:
            with catalogue_errors(self.catalogue_location):
                self._catalogue = Catalogue(self.config.catalogue.location)
                # What the writers emit into the outbox, on any connection (catalogue/outbox.py).
                set_subscriptions(self._catalogue,
                                  [(w.name, w.events) for w in self.config.webhooks])
                # Which datasets' writers queue expand jobs for archives (catalogue/archives.py).
                set_expanding(self._catalogue, [
                    self._catalogue.ensure_dataset(d.name, d.driver).id
                    for d in self.config.datasets if d.expand_archives])
        return self._catalogue

    @property
    def catalogue_location(self) -> str:
        """The catalogue as messages name it: the SQLite file, or the URL without password."""
        from .catalogue.backend import redact_url

        return redact_url(str(self.config.catalogue.location))

    def driver(self, name: str) -> PermissionGuard:
        if name not in self._drivers:
            self._drivers[name] = drivers.open_driver(self.config.driver(name))
        return self._drivers[name]

    def dataset(self, name: str) -> Dataset:
        """The catalogue's row for a configured dataset (created on first use)."""
        config = self.config.dataset(name)
        return self.catalogue.ensure_dataset(config.name, config.driver)

    def dataset_driver(self, name: str) -> PermissionGuard:
        return self.driver(self.config.dataset(name).driver)

    def path_filter(self, name: str) -> PathFilter:
        """The include/exclude rules every writer applies to the dataset's keys."""
        if name not in self._filters:
            self._filters[name] = self.config.path_filter(name)
        return self._filters[name]

    def dataset_names(self, names: tuple[str, ...] | list[str] = ()) -> list[str]:
        for name in names:
            self.config.dataset(name)  # raises, naming the unknown one
        return list(names) or [d.name for d in self.config.datasets]

    def sync(self, name: str, *, dry_run: bool = False, prune: bool = False, prefix: str = "",
             progress: Progress | None = None, inventory: str | None = None) -> SyncResult:
        """Sync one dataset from a listing of its storage, or from a bucket inventory whose
        manifest is at `inventory` (a local path, s3://, gs:// or az:// URI)."""
        listing = self._inventory_listing(name, inventory) if inventory else None
        return sync_dataset(
            self.catalogue, self.dataset(name), self.dataset_driver(name),
            prefix=prefix, dry_run=dry_run, prune=prune,
            max_delete_percent=self.config.sync.max_delete_percent, progress=progress,
            path_filter=self.path_filter(name), arrival_user=self.arrival_user(name),
            admission=self.admission(name), listing=listing,
        )

    def admission(self, name: str):
        """Which files that arrive in the dataset on their own get an item (sampling and
        quotas of its upload controls): a syncd.sync.admission.Admission, or None."""
        from .sync.admission import Admission

        return Admission.of(self.config.dataset(name).upload)

    def arrival_user(self, name: str) -> dict:
        """The user metadata (upload controls' tags and batch) of a file that arrives in the
        dataset on its own: found by a sync or rescan, or by the daemon's events."""
        from .imports.controls import arrival_metadata

        return arrival_metadata(self.config.dataset(name).upload)

    def _inventory_listing(self, name: str, uri: str):
        from .sync import inventory  # pyarrow and the CSV reader: only for inventories

        options = self.config.driver(self.config.dataset(name).driver)
        kind, bucket, manifest = inventory.split_uri(uri)
        if kind is None:
            files = inventory.LocalFiles()
        else:
            # The inventory's bucket, read with the credentials of a driver of its kind:
            # the dataset's own, else the first configured one.
            like = options if options.kind == kind else next(
                (d for d in self.config.drivers if d.kind == kind), None)
            if like is None:
                raise inventory.InventoryError(
                    f"inventory {uri!r}: no {kind} driver in the config to read it with")
            place = {"container" if kind == "azure" else "bucket": bucket}
            reader = drivers.open_driver(like.replace(**place, path="", permissions=("list", "get")))
            self._drivers[f"inventory {uri}"] = reader  # closed with the others
            files = inventory.BucketFiles(reader, uri.split(":", 1)[0], bucket)
        base = options.path + "/" if options.path else ""
        source = getattr(options, "bucket", None) if options.kind == "s3" else None
        self.last_inventory = inventory.InventoryInfo()

        def listing(prefix: str, on_error):
            return inventory.inventory_pages(files, manifest, base=base, prefix=prefix,
                                             source_bucket=source, info=self.last_inventory)

        return listing

    def jobs(self) -> JobQueue:
        settings = self.config.preprocess
        return JobQueue(self.catalogue, lease_seconds=settings.lease_seconds,
                        max_attempts=settings.max_attempts)

    def run_jobs(self, datasets: list[str] | tuple[str, ...] | None = None, **options):
        """Run open preprocessing and cleanup jobs; see syncd.jobs.runner.run_jobs."""
        from .jobs.runner import run_jobs  # imports Pillow: only when jobs are run

        return run_jobs(self, datasets=datasets, **options)

    def background_runner(self, **options):
        """A job runner in a thread of its own, with its own App on this config (the daemon's
        workers); see syncd.jobs.runner.BackgroundRunner."""
        from .jobs.runner import BackgroundRunner

        return BackgroundRunner(lambda: App(self.config), **options)

    def close(self) -> None:
        for driver in self._drivers.values():
            driver.close()
        self._drivers.clear()
        if self._catalogue is not None:
            self._catalogue.close()
            self._catalogue = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
