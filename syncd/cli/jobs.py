"""`syncd jobs`: the preprocessing and cleanup queue."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

import click

from ..app import App
from ..catalogue.jobs import STATES
from ..jobs.runner import RunResult
from .group import cli
from .common import EXIT_PARTIAL, emit_json, json_option, pass_app, progress_bar

log = logging.getLogger(__name__)

dataset_option = click.option("--dataset", "datasets", multiple=True, metavar="NAME",
                              help="Only this dataset's jobs (repeatable; default: all).")


@cli.group()
def jobs() -> None:
    """Preprocessing and cleanup jobs: list, run, retry."""


@jobs.command("list")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES),
              help="Only jobs in this state (repeatable).")
@dataset_option
@json_option
@pass_app
def list_jobs(app: App, states: tuple[str, ...], datasets: tuple[str, ...], as_json: bool) -> None:
    """List jobs, oldest first: id, kind, state, attempts, dataset, file, error."""
    queue = app.jobs()
    for row in queue.rows(states=states, datasets=_dataset_ids(app, datasets)):
        if as_json:
            emit_json(row)
        else:
            click.echo("\t".join(str(v) if v is not None else "-" for v in (
                row["id"], row["kind"], row["state"], row["attempts"], row["dataset"],
                row["filename"], row["error"],
            )))


@jobs.command("run")
@click.option("--wait", is_flag=True,
              help="Also wait for jobs other runners hold (taking them over if those runners "
                   "die) until no job is pending or running.")
@click.option("--workers", type=click.IntRange(min=0),
              help="Worker processes (default: [preprocess] workers, else the CPU count; "
                   "0 runs jobs in this process).")
@dataset_option
@json_option
@pass_app
def run_jobs(app: App, wait: bool, workers: int | None, datasets: tuple[str, ...], as_json: bool) -> None:
    """Run pending jobs (and jobs whose runner died) until none is left to claim.

    Ctrl-C stops claiming and finishes the jobs in flight; a second Ctrl-C aborts (the jobs
    it held are taken over by the next run)."""
    names = app.dataset_names(datasets) if datasets else None
    total = app.jobs().open_count(datasets=_dataset_ids(app, datasets))
    with stop_on_signal() as stop, progress_bar("jobs", total=total, unit="job") as bar:
        result = app.run_jobs(names, wait=wait, workers=workers, progress=bar.update, stop=stop)
    if as_json:
        emit_json(result.as_json())
    else:
        click.echo(describe(result))
    if result.failed:
        raise SystemExit(EXIT_PARTIAL)


@jobs.command("retry")
@click.argument("job_ids", nargs=-1, type=int)
@click.option("--failed", is_flag=True, help="Every failed job.")
@dataset_option
@pass_app
def retry(app: App, job_ids: tuple[int, ...], failed: bool, datasets: tuple[str, ...]) -> None:
    """Queue finished jobs again: those named by JOB_IDS (any finished state) and/or, with
    --failed, every failed one. Then `syncd jobs run` runs them."""
    if not job_ids and not failed:
        raise click.UsageError("name JOB_IDS, or give --failed")
    states = ("failed",) if failed else ()
    count = app.jobs().requeue(states=states, ids=job_ids, datasets=_dataset_ids(app, datasets))
    click.echo(f"{count} job{'s' if count != 1 else ''} queued again")


def describe(result: RunResult) -> str:
    text = (f"jobs: done {result.done}, failed {result.failed}, cancelled {result.cancelled}"
            f" ({result.seconds:.2f} s)")
    if result.retried:
        text += f"; {result.retried} to retry later"
    if result.worker_deaths:
        text += f"; {result.worker_deaths} worker process deaths"
    return text


def _dataset_ids(app: App, names: tuple[str, ...]) -> list[int] | None:
    return [app.dataset(name).id for name in app.dataset_names(names)] if names else None


@contextlib.contextmanager
def stop_on_signal() -> Iterator[threading.Event]:
    """An event set by the first SIGINT/SIGTERM; a second SIGINT raises KeyboardInterrupt."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    from ..imports.fetch import resume_fetches, stop_fetches

    def handler(signum, frame) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        stop_fetches()  # a fetch in this process (--workers 0) gives up now; workers are told

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        resume_fetches()
        if stop.is_set():
            log.warning("stopped: jobs not yet started stay queued")
