"""`syncd items`: read the catalogue."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import usermeta
from ..app import App
from ..catalogue import arrivals
from ..catalogue.query import compile_query
from .group import cli
from .common import CommandError, emit_json, json_option, pass_app, progress_bar


@cli.group()
def items() -> None:
    """List and inspect catalogued items."""


@items.command("list")
@click.argument("dataset")
@click.option("--present-only", is_flag=True, help="Leave out items gone from storage.")
@click.option("--where", "where", multiple=True, metavar="QUERY",
              help="Only items matching the query, e.g. 'user.camera = cam_01 and width >= 1000' "
                   "(repeat: all hold; see the README's Queries).")
@json_option
@pass_app
def list_items(app: App, dataset: str, present_only: bool, where: tuple[str, ...], as_json: bool) -> None:
    """List a dataset's items in filename order."""
    ds = app.dataset(dataset)
    condition = compile_query(where)
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


@items.command("export")
@click.argument("dataset")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl",
              show_default=True, help="JSON Lines (the item JSON), CSV or Parquet (flat, typed columns).")
@click.option("--where", "where", multiple=True, metavar="QUERY",
              help="Only items matching the query (repeat: all hold; see the README's Queries).")
@click.option("--present-only", is_flag=True, help="Leave out items gone from storage.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (atomically: FILE.partial, then renamed); default stdout.")
@pass_app
def export_items(app: App, dataset: str, fmt: str, where: tuple[str, ...], present_only: bool,
                 output: Path | None) -> None:
    """Export a dataset's items, streamed in filename order (flat memory at any size).

    CSV and Parquet columns are the item JSON's paths (metadata.user.camera, ...)."""
    from ..export import export

    ds = app.dataset(dataset)
    condition = compile_query(where)

    def items():
        return app.catalogue.iter_items(ds, include_missing=not present_only, where=condition)

    with progress_bar(f"export {dataset}", unit="item") as bar:
        try:
            count = export(items, fmt, output, stdout=sys.stdout, progress=bar.update)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        except OSError as error:
            raise CommandError(f"{output}: {error.strerror or error}", 1) from None
    if output is not None:
        click.echo(f"exported {count} items of {dataset} to {output}", err=True)


REASONS = click.Choice(arrivals.REASONS)


@items.command("refused")
@click.argument("dataset")
@click.option("--reason", "reasons", multiple=True, type=REASONS,
              help="Only paths refused for this reason (repeat for several).")
@json_option
@pass_app
def refused(app: App, dataset: str, reasons: tuple[str, ...], as_json: bool) -> None:
    """List the files that arrived on their own and got no item (sampled out, or past a
    quota: see the README's Upload controls), in filename order: path, reason, when decided."""
    for row in arrivals.refusals(app.catalogue, app.dataset(dataset), reasons=reasons):
        if as_json:
            emit_json({"dataset": dataset, **row})
        else:
            click.echo(f"{row['filename']}\t{row['reason']}\t{row['decided_at']}")


@items.command("admit")
@click.argument("dataset")
@click.argument("paths", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every refused path (of --reason, if given).")
@click.option("--reason", "reasons", multiple=True, type=REASONS,
              help="With --all: only paths refused for this reason (repeat for several).")
@click.option("--dry-run", is_flag=True, help="Say what would be admitted; change nothing.")
@json_option
@pass_app
def admit(app: App, dataset: str, paths: tuple[str, ...], everything: bool,
          reasons: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Give items to refused files (PATH..., or --all), whatever the sampling and quotas
    say; a file gone from storage meanwhile loses its refusal instead. The new items are
    preprocessed by the daemon or `syncd jobs run`."""
    from ..imports.downstream import admit as admit_paths

    if bool(paths) == everything:
        raise click.UsageError("give the PATHs to admit, or --all")
    with progress_bar(f"admit {dataset}", unit="file") as bar:
        result = admit_paths(app, dataset, paths, reasons=reasons, dry_run=dry_run,
                             progress=bar.update)
    if as_json:
        emit_json(result.as_json())
        return
    verb = "would admit" if dry_run else "admitted"
    for path in result.paths:
        click.echo(f"{verb} {path}")
    click.echo(f"{dataset}: {verb} {result.admitted}" + ("" if dry_run else
               f", gone from storage {result.gone}, skipped {result.skipped}"))
