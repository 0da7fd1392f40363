"""`syncd status`, `syncd errors` and `syncd webhooks retry`: what the catalogue holds and
what is owed."""

from __future__ import annotations

import click

from ..app import App
from ..catalogue import browse
from ..catalogue.counts import read_counts
from ..catalogue.outbox import Outbox
from .common import emit_json, json_option, pass_app
from .group import cli


@cli.command("status")
@click.argument("datasets", nargs=-1)
@json_option
@pass_app
def status(app: App, datasets: tuple[str, ...], as_json: bool) -> None:
    """Per dataset: items by state and type, jobs by state, the last sync, listing errors;
    then jobs of all datasets by state, and webhook events per webhook and state (pending,
    delivered, dead: the dead letters). --json: one object per line, each with `dataset`,
    `jobs` or `webhook`."""
    counts = read_counts(app.config.catalogue.location)
    for name in app.dataset_names(datasets):
        dataset = app.dataset(name)
        info = browse.status(app.catalogue, dataset)
        if as_json:
            emit_json({**info, "present": info["items"]["present"], "missing": info["items"]["missing"],
                       "synced_at": dataset.synced_at})
        else:
            _print_dataset(name, info)
    jobs = counts.jobs if counts else {}
    webhooks = counts.webhooks if counts else []
    if as_json:
        emit_json({"jobs": jobs})
        for line in webhooks:
            emit_json(line)
        return
    click.echo("jobs: " + (", ".join(f"{k} {v}" for k, v in sorted(jobs.items())) or "none"))
    for line in webhooks:
        error = (f" (last error: {line['last_error']})"
                 if line["last_error"] and line["state"] != "delivered" else "")
        click.echo(f"webhook {line['webhook']}: {line['state']} {line['events']}{error}")


def _print_dataset(name: str, info: dict) -> None:
    items, jobs, sync = info["items"], info["jobs"], info["lastSync"]
    click.echo(f"dataset {name} (driver {info['driver']})")
    click.echo(f"  items    {items['present']} present, {items['missing']} missing")
    types = ", ".join(f"{m} {n}" for m, n in info["mimetypes"].items()) or "none"
    click.echo(f"  types    {types}")
    click.echo(f"  jobs     {jobs['pending']} pending, {jobs['running']} running, "
               f"{jobs['failed']} failed, {jobs['done']} done, {jobs['cancelled']} cancelled")
    if sync is None:
        click.echo("  sync     never")
    else:
        click.echo(f"  sync     {sync['status']} at {sync['finishedAt'] or sync['startedAt']}: "
                   f"listed {sync['listed']}, created {sync['created']}, updated {sync['updated']}, "
                   f"moved {sync['moved']}, deleted {sync['deleted']}, unchanged {sync['unchanged']}")
    if info["refused"]:
        click.echo("  refused  " + ", ".join(f"{n} {r}" for r, n in info["refused"].items())
                   + f" (syncd items refused {name})")
    hint = f" (syncd errors {name})" if info["listingErrors"] else ""
    click.echo(f"  errors   {info['listingErrors']} listing errors{hint}")


@cli.command()
@click.argument("dataset")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the newest N.")
@json_option
@pass_app
def errors(app: App, dataset: str, limit: int | None, as_json: bool) -> None:
    """List a dataset's listing errors (entries a sync could not read), newest first."""
    for error in browse.listing_errors(app.catalogue, app.dataset(dataset), limit=limit):
        if as_json:
            emit_json(error)
        else:
            click.echo(f"{error['at']}\t{error['path']}\t{error['reason']}")


@cli.group("webhooks")
def webhooks_group() -> None:
    """Outgoing webhooks' dead letters."""


@webhooks_group.command("retry")
@click.option("--webhook", help="Only this webhook's dead events (default: every webhook's).")
@pass_app
def retry(app: App, webhook: str | None) -> None:
    """Queue dead events (dead letters) again for delivery by the daemon, attempts reset."""
    queued = Outbox(app.catalogue).retry_dead(webhook)
    click.echo(f"{queued} dead events queued again")
