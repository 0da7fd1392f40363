"""`syncd import links`, `syncd import csv`, `syncd upload`: downstream imports."""

from __future__ import annotations

import click

from ..app import App
from ..imports.batch import DEFAULT_BATCH, ImportResult
from ..imports.csv_import import import_csv
from ..imports.upload import import_link_files, upload_folder
from .group import cli
from .common import EXIT_PARTIAL, emit_json, json_option, pass_app, progress_bar

dataset_option = click.option("--dataset", "-d", required=True, help="The dataset to import into.")
folder_option = click.option("--folder", default="/", show_default=True,
                             help="Folder of the dataset to import into.")
batch_option = click.option("--batch-size", type=click.IntRange(1, 512), default=DEFAULT_BATCH,
                            show_default=True, help="How many are fetched and written at once.")


def streamed_import(source: str, unit: str, failures_name: str):
    """The options csv, jsonl and tar share: where the FILE's own folder goes, its batches,
    its failures file and --overwrite. `unit` is what one failure is (a row, a line...)."""
    options = [
        dataset_option,
        click.option("--folder", default="/", show_default=True,
                     help=f"Folder of the dataset in which the {source}'s own folder is made."),
        batch_option,
        click.option("--failures", type=click.Path(dir_okay=False),
                     help=f"Where to write the {unit}s that failed "
                          f"(default: {failures_name} beside FILE)."),
        click.option("--overwrite", is_flag=True,
                     help="Replace an object already in the import folder with other content "
                          f"(default: that {unit} fails)."),
        json_option,
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


@cli.group("import")
def import_group() -> None:
    """Import linked items, CSV and JSON Lines files into a dataset."""


@import_group.command("links")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@dataset_option
@folder_option
@json_option
@pass_app
def import_links(app: App, files: tuple[str, ...], dataset: str, folder: str, as_json: bool) -> None:
    """Import link JSON files (the reference platform's format) as linked items.

    Each is written into the dataset's storage as <name>_link.json: a file already named that
    way keeps its name, any other is named from its URL as the reference SDK does (an id
    link: from its item id). Every file is checked before anything is written; an id link to
    no item of this catalogue fails alone. --json: one object per file."""
    with progress_bar("links", total=len(files), unit="file") as bar:
        result, outcomes = import_link_files(app, dataset, files, folder=folder, progress=bar.update)
    for outcome in outcomes:
        if as_json:
            emit_json({"file": outcome.ref, "filename": outcome.filename, "id": outcome.item_id,
                       "status": outcome.status, "error": outcome.error})
        elif outcome.status == "failed":
            click.echo(f"{outcome.ref}: failed: {outcome.error}", err=True)
    if not as_json:
        _report(result, "files")
    if result.failed:
        raise SystemExit(EXIT_PARTIAL)


@import_group.command("csv")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@streamed_import("CSV", "row", "<csv name>.failures.csv")
@pass_app
def import_csv_command(app: App, file: str, dataset: str, folder: str, batch_size: int,
                       failures: str | None, overwrite: bool, as_json: bool) -> None:
    """Import a CSV of items: one item per row, in a folder named after the CSV file.

    Columns (any case): ID, URL, image_bytes, name, action (link | upload), mimetype,
    item_metadata, item_description. Rows that fail are written to the failures file, which
    can be imported again as it is to retry just them. --json: one summary object."""
    with progress_bar(f"{dataset}: {file}", unit="row") as bar:
        result = import_csv(app, dataset, file, folder=folder, batch_size=batch_size,
                            failures=failures, progress=bar.update, overwrite=overwrite)
    _finish(result, as_json, "rows")


@import_group.command("jsonl")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@streamed_import("file", "line", "<name>.failures.jsonl")
@pass_app
def import_jsonl_command(app: App, file: str, dataset: str, folder: str, batch_size: int,
                         failures: str | None, overwrite: bool, as_json: bool) -> None:
    """Import a JSON Lines file of items, one object a line, read as a stream.

    Keys: url or path (a local file, relative to FILE's folder), and optionally name,
    metadata (merged into metadata.user), description, mimetype, action (link | upload; a url
    is linked by default). Items go into a folder named after FILE. Failed lines are written
    to the failures file, which imports again as it is. --json: one summary object."""
    from ..imports.jsonl import import_jsonl

    with progress_bar(f"{dataset}: {file}", unit="line") as bar:
        result = import_jsonl(app, dataset, file, folder=folder, batch_size=batch_size,
                              failures=failures, progress=bar.update, overwrite=overwrite)
    _finish(result, as_json, "lines")


@import_group.command("tar")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@streamed_import("archive", "member", "<name>.failures.csv")
@click.option("--retry", type=click.Path(exists=True, dir_okay=False),
              help="Import only the members listed in this failures file.")
@pass_app
def import_tar_command(app: App, file: str, dataset: str, folder: str, batch_size: int,
                       failures: str | None, retry: str | None, overwrite: bool, as_json: bool) -> None:
    """Expand a tar archive (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) into items, streamed.

    Members keep their paths under a folder named after the archive; links, devices and
    paths leaving the folder fail alone. --json: one summary object."""
    from ..imports.archive import import_tar

    with progress_bar(f"{dataset}: {file}", unit="file") as bar:
        result = import_tar(app, dataset, file, folder=folder, batch_size=batch_size,
                            failures=failures, retry=retry, progress=bar.update,
                            overwrite=overwrite)
    _finish(result, as_json, "members")


@cli.command("upload")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@dataset_option
@folder_option
@batch_option
@click.option("--label-folders", is_flag=True,
              help="Record each file's parent folder name as metadata.user.label.")
@click.option("--failures", type=click.Path(dir_okay=False),
              help="Where to write the files that failed (default: <folder name>.failures.csv beside DIRECTORY).")
@click.option("--retry", type=click.Path(exists=True, dir_okay=False),
              help="Upload only the files listed in this failures file.")
@json_option
@pass_app
def upload(app: App, directory: str, dataset: str, folder: str, batch_size: int,
           label_folders: bool, failures: str | None, retry: str | None, as_json: bool) -> None:
    """Upload a local folder's files into the dataset's storage and catalogue.

    Paths under DIRECTORY are kept under --folder; files whose identical content is already
    there are skipped. Symbolic links are not followed: they are named and skipped.
    --json: one summary object."""
    with progress_bar(f"{dataset}: upload", unit="file") as bar:
        def total(count: int) -> None:
            bar.total = count
            bar.refresh()

        result = upload_folder(app, dataset, directory, folder=folder, batch_size=batch_size,
                               label=label_folders, failures=failures, retry=retry,
                               progress=bar.update, total=total)
    _finish(result, as_json, "files")


def _finish(result: ImportResult, as_json: bool, unit: str) -> None:
    if as_json:
        emit_json(result.as_json())
    else:
        _report(result, unit)
    if result.failed or result.refused:
        raise SystemExit(EXIT_PARTIAL)


def _report(result: ImportResult, unit: str) -> None:
    click.echo(
        f"{result.dataset}:{result.folder}: {result.total} {unit}: created {result.created}, "
        f"updated {result.updated}, unchanged {result.unchanged}, failed {result.failed}"
        + (f", excluded by filters {result.excluded}" if result.excluded else "")
        + (f", left out by sampling {result.sampled}" if result.sampled else "")
        + (f", refused by quota {result.refused}" if result.refused else "")
        + f" ({result.seconds:.2f} s)"
    )
    sample = result.controls.get("sample")
    if sample:
        click.echo(f"  sample: {sample['percent']:g}% with seed {sample['seed']} "
                   f"(set [datasets.upload] sample_seed to repeat it)", err=True)
    if result.controls.get("batch"):
        click.echo(f"  batch: {result.controls['batch']}", err=True)
    if result.failures:
        click.echo(f"  failures written to {result.failures} (import it again to retry them)", err=True)
    if result.skipped_links:
        click.echo(f"  {len(result.skipped_links)} symbolic links not followed (not uploaded):"
                   f" {', '.join(result.skipped_links[:5])}"
                   f"{' ...' if len(result.skipped_links) > 5 else ''}", err=True)
