"""`syncd status` and `syncd errors`: what the catalogue says about each dataset."""

from __future__ import annotations

import click

from ..app import App
from ..catalogue import browse
from .group import cli
from .common import emit_json, json_option, pass_app


@cli.command()
@click.argument("datasets", nargs=-1)
@json_option
@pass_app
def status(app: App, datasets: tuple[str, ...], as_json: bool) -> None:
    """Per dataset: items by state and type, jobs by state, the last sync, listing errors."""
    for name in app.dataset_names(datasets):
        info = browse.status(app.catalogue, app.dataset(name))
        if as_json:
            emit_json(info)
            continue
        items, jobs, sync = info["items"], info["jobs"], info["lastSync"]
        click.echo(f"{name} (driver {info['driver']})")
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
