"""`syncd items`: read the catalogue."""

from __future__ import annotations

import json

import click

from .. import usermeta
from ..app import App
from .group import cli
from .common import emit_json, json_option, pass_app


@cli.group()
def items() -> None:
    """List and inspect catalogued items."""


@items.command("list")
@click.argument("dataset")
@click.option("--present-only", is_flag=True, help="Leave out items gone from storage.")
@click.option("--where", "where", multiple=True, metavar="FIELD=VALUE",
              help="Only items whose field has this value, e.g. user.camera=cam_01 (repeat: all hold).")
@json_option
@pass_app
def list_items(app: App, dataset: str, present_only: bool, where: tuple[str, ...], as_json: bool) -> None:
    """List a dataset's items in filename order."""
    ds = app.dataset(dataset)
    condition = usermeta.where_clause(usermeta.parse_where(w) for w in where)
    for item in app.catalogue.iter_items(ds, include_missing=not present_only, where=condition):
        if as_json:
            emit_json(item)
        else:
            system = item["metadata"]["system"]
            size = system.get("size")
            click.echo("\t".join([
                item["filename"], str(size if size is not None else "-"),
                system.get("mimetype") or "-", item["state"],
            ]))


@items.command("get")
@click.argument("dataset")
@click.argument("path")
@json_option
@pass_app
def get_item(app: App, dataset: str, path: str, as_json: bool) -> None:
    """Show one item (PATH relative to the dataset folder, e.g. /cats/a.jpg)."""
    item = app.catalogue.get_item(app.dataset(dataset), path)
    if as_json:
        emit_json(item)
    else:
        click.echo(json.dumps(item, indent=2, ensure_ascii=False))


@items.command("set-meta")
@click.argument("dataset")
@click.argument("path", required=False)
@click.argument("values", nargs=-1, metavar="KEY=VALUE...")
@click.option("--from-json", "from_json", type=click.Path(exists=True, dir_okay=False),
              help="Set many items' metadata from a JSON file: {PATH: {...}, ...}, or items as "
                   "`items list --json` prints them.")
@click.option("--replace", is_flag=True, help="Replace the user metadata instead of merging into it.")
@json_option
@pass_app
def set_meta(app: App, dataset: str, path: str | None, values: tuple[str, ...],
             from_json: str | None, replace: bool, as_json: bool) -> None:
    """Set user metadata (metadata.user) of the item at PATH from KEY=VALUE pairs.

    VALUE is read as JSON when it is JSON (3, true, ["a"], "quoted"), else as a string;
    a dotted KEY nests (site.area=north). All items are updated together or none is."""
    if from_json:
        if path or values:
            raise click.UsageError("give PATH KEY=VALUE... or --from-json FILE, not both")
        updates = usermeta.load_metadata_file(from_json)
    else:
        if not path or not values:
            raise click.UsageError("give PATH and at least one KEY=VALUE (or --from-json FILE)")
        updates = [(path, usermeta.parse_assignments(values))]
    ds = app.dataset(dataset)
    usermeta.set_user_metadata(app.catalogue, ds, updates, replace=replace)
    for filename, _ in updates:
        item = app.catalogue.get_item(ds, filename)
        if as_json:
            emit_json(item)
        else:
            click.echo(f"{item['filename']}\t{json.dumps(item['metadata']['user'], ensure_ascii=False)}")
