"""`syncd put` and `syncd rm`: downstream changes, through the driver's permissions."""

from __future__ import annotations

import click

from ..imports import downstream
from ..app import App
from .group import cli
from .common import emit_json, json_option, pass_app


@cli.command("put")
@click.argument("dataset")
@click.argument("local", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--as", "remote", metavar="REMOTE",
              help="Path in the dataset (/cats/a.jpg, or a folder ending in /); default: /NAME.")
@click.option("--no-preprocess", is_flag=True,
              help="Only queue the preprocessing job (for the daemon or `syncd jobs run`).")
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE",
              help="User metadata for the item (as `items set-meta`); repeat for more.")
@json_option
@pass_app
def put(app: App, dataset: str, local: str, remote: str | None, no_preprocess: bool,
        meta: tuple[str, ...], as_json: bool) -> None:
    """Write LOCAL to the dataset's storage and catalogue it, then preprocess it (as `syncd
    sync` does: the dataset's open jobs run, in this process)."""
    from ..usermeta import parse_assignments

    user = parse_assignments(meta)  # a bad pair fails before anything is written
    item, change = downstream.put(app, dataset, local, remote, user=user)
    if app.config.preprocess.enabled and not no_preprocess:
        app.run_jobs([dataset], workers=0)
        item = app.catalogue.get_item(app.dataset(dataset), item["filename"])
    if as_json:
        emit_json(item)
    else:
        click.echo(f"{change.action if change.action != 'unchanged' else 'put'} "
                   f"{item['filename']} (item {item['id']})")


@cli.command("rm")
@click.argument("dataset")
@click.argument("remote")
@json_option
@pass_app
def rm(app: App, dataset: str, remote: str, as_json: bool) -> None:
    """Remove the item REMOTE; delete its binary only if the driver has allow_delete = true."""
    removed = downstream.remove(app, dataset, remote)
    if as_json:
        emit_json(removed.as_json())
        return
    click.echo(f"removed {removed.filename} (item {removed.id})")
    if not removed.binary_deleted:
        driver = app.config.dataset(dataset).driver
        click.echo(f"  the binary stays in storage (driver {driver!r} has allow_delete = false);"
                   " the next sync lists it again", err=True)
