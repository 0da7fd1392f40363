"""`syncd sync`: manual upstream sync."""

from __future__ import annotations

import gc
import os

import click

from ..app import App
from ..sync.indexer import SyncResult
from .group import cli
from .common import (
    EXIT_DELETES_REFUSED, EXIT_INTERRUPTED, EXIT_PARTIAL, CommandError, emit_json, json_option,
    pass_app, progress_bar,
)


# `preprocessed` when there was nothing to run: RunResult.as_json()'s keys, all zero.
NO_JOBS = {"done": 0, "failed": 0, "cancelled": 0, "retried": 0, "worker_deaths": 0, "seconds": 0.0}


@cli.command()
@click.argument("datasets", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--prune", is_flag=True,
              help="Remove items whose files are gone from storage (default: mark them missing).")
@click.option("--no-preprocess", is_flag=True,
              help="Leave new items' preprocessing jobs queued (default: run them after syncing).")
@click.option("--from-inventory", "inventory", metavar="URI",
              help="Read the bucket's inventory (S3 Inventory, GCS Storage Insights or Azure Blob"
                   " Inventory manifest: a path, s3://, gs:// or az:// URI) instead of listing;"
                   " one dataset; deletes nothing.")
@json_option
@pass_app
def sync(app: App, datasets: tuple[str, ...], dry_run: bool, prune: bool, no_preprocess: bool,
         inventory: str | None, as_json: bool) -> None:
    """List storage and bring the catalogue in line: created, updated, moved, deleted.

    Syncs every configured dataset, or the DATASETS named, then runs their preprocessing
    jobs (thumbnails, metadata) unless --no-preprocess or [preprocess] enabled = false.
    Exits 6 when sync.max_delete_percent refused a dataset's deletions, 5 when entries
    could not be read, 130 when interrupted before every dataset was synced."""
    preprocess = not (dry_run or no_preprocess) and app.config.preprocess.enabled
    names = app.dataset_names(datasets)
    if inventory and len(names) != 1:
        raise CommandError("--from-inventory reads one bucket's inventory: name one dataset"
                           f" (datasets: {', '.join(names)})", 2)
    warm = _warm_pool(app, names) if preprocess else None
    try:
        _sync_datasets(app, names, dry_run=dry_run, prune=prune, preprocess=preprocess,
                       inventory=inventory, as_json=as_json, warm=warm)
    finally:
        if warm is not None:
            warm.close()


def _warm_pool(app: App, names: list[str]):
    """A worker pool started now, while the datasets are listed, where jobs are likely: a
    dataset never synced (every file is new) or with jobs already queued."""
    settings = app.config.preprocess
    if settings.executor or settings.workers == 0:
        return None
    if not any(app.dataset(name).synced_at is None for name in names) and not app.jobs().open_count(
            datasets=[app.dataset(name).id for name in names]):
        return None
    from ..jobs.warm import WarmPool

    return WarmPool(settings.workers or os.cpu_count() or 1)


def _sync_datasets(app: App, names: list[str], *, dry_run: bool, prune: bool, preprocess: bool,
                   inventory: str | None, as_json: bool, warm) -> None:
    partial = refused = False
    for name in names:
        app.dataset_driver(name)  # imports its SDK and opens its client
    gc.freeze()  # see main(): what start-up made is long-lived
    for index, name in enumerate(names):
        with progress_bar(f"{name}: listing") as bar:
            result = app.sync(name, dry_run=dry_run, prune=prune, progress=bar.update,
                              inventory=inventory)
        partial |= result.errors > 0
        # An inventory sync never deletes, by design: that is no refusal (see deletes_skipped).
        refused |= result.deletes_skipped is not None and not inventory
        output = result.as_json()
        if inventory:
            source = app.last_inventory
            output["inventory"] = {"kind": source.kind, "manifest": source.where,
                                   "snapshot": source.snapshot, "files": source.files,
                                   "rows": source.rows}
        stopped = False
        jobs = None
        if preprocess:
            # As `jobs run`: a signal stops claiming; jobs in flight finish, the rest stay
            # queued, and this dataset's summary is still printed.
            total = app.jobs().open_count(datasets=[app.dataset(name).id])
            if total:  # else the worker pool (and Pillow) is not even imported
                from .jobs import stop_on_signal

                with stop_on_signal() as stop, \
                        progress_bar(f"{name}: preprocessing", total=total, unit="item") as bar:
                    jobs = app.run_jobs([name], progress=bar.update, stop=stop,
                                        executor=warm.factory if warm else None)
                stopped = stop.is_set()
            # failed jobs: see `syncd jobs list`
            output["preprocessed"] = jobs.as_json() if jobs else dict(NO_JOBS)
        if as_json:
            emit_json(output)
        else:
            _report(result)
            if inventory:
                click.echo(f"  from the {output['inventory']['kind']} inventory of"
                           f" {output['inventory']['snapshot'] or 'unknown date'}: list or watch"
                           " the bucket for what changed since")
            if preprocess and jobs:
                from .jobs import describe

                click.echo(f"  {describe(jobs)}")
        if result.deletes_skipped and not inventory:
            click.echo(f"syncd: warning: {name}: deletions not applied (exit code "
                       f"{EXIT_DELETES_REFUSED}): {result.deletes_skipped}", err=True)
        if stopped:
            left = names[index + 1:]
            if left:  # the sync itself was cut short: these datasets were not synced
                raise CommandError(f"interrupted: not synced: {', '.join(left)}",
                                   EXIT_INTERRUPTED)
            break
    if refused:
        raise SystemExit(EXIT_DELETES_REFUSED)
    if partial:
        raise SystemExit(EXIT_PARTIAL)


def _report(result: SyncResult) -> None:
    prefix = "(dry run) " if result.dry_run else ""
    deleted_word = "removed" if result.pruned else "marked missing"
    click.echo(
        f"{prefix}{result.dataset}: listed {result.listed}, created {result.created}, "
        f"updated {result.updated}, moved {result.moved}, {deleted_word} {result.deleted}, "
        f"unchanged {result.unchanged}, errors {result.errors}"
        + (f", excluded {result.excluded.total}" if result.excluded.total else "")
        + "".join(f", refused {count} ({reason})" for reason, count in result.refused.items())
        + (f", still refused {result.still_refused}" if result.still_refused else "")
        + f" ({result.seconds:.2f} s)"
    )
    if result.dry_run:
        for kind, paths in result.samples.items():
            for path in paths:
                click.echo(f"  would be {kind}: {path}")
        for rule, count in result.excluded.counts.items():
            click.echo(f"  excluded by {rule}: {count}")
            for key in result.excluded.samples.get(rule, []):
                click.echo(f"    /{key}")
