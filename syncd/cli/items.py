"""`syncd items`: read the catalogue."""

from __future__ import annotations

import json

import click

from ..app import App
from . import cli
from .common import emit_json, json_option, pass_app


@cli.group()
def items() -> None:
    """List and inspect catalogued items."""


@items.command("list")
@click.argument("dataset")
@click.option("--present-only", is_flag=True, help="Leave out items gone from storage.")
@json_option
@pass_app
def list_items(app: App, dataset: str, present_only: bool, as_json: bool) -> None:
    """List a dataset's items in filename order."""
    ds = app.dataset(dataset)
    for item in app.catalogue.iter_items(ds, include_missing=not present_only):
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
