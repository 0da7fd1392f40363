"""`syncd drivers`: check a storage driver's real permissions."""

from __future__ import annotations

import click

from ..app import App
from ..checks import check_driver
from .group import cli
from .common import CommandError, emit_json, json_option, pass_app

EXIT_MISSING = 4  # as for any storage failure: a mandatory permission is missing


@cli.group("drivers")
def drivers_group() -> None:
    """Inspect configured storage drivers."""


@drivers_group.command("check")
@click.argument("name")
@json_option
@pass_app
def check(app: App, name: str, as_json: bool) -> None:
    """Validate NAME's real access: list the folder, write a small test file under its
    .dataloop/, read it back and delete it (when delete is allowed). Reports each of
    list/get/put/delete as ok, missing, error, untested or not requested, with the storage's
    own error code. Exits with 4 when list, get or put is missing."""
    report = check_driver(app.driver(name))
    if as_json:
        for line in report.json_lines():
            emit_json(line)
    else:
        click.echo(f"driver {report.driver!r} ({report.where}):")
        for result in report.results:
            detail = f"  {result.code}: {result.message}" if result.code else (
                f"  {result.message}" if result.message else "")
            click.echo(f"  {result.permission:<7}{result.status}{detail}")
        for note in report.notes:
            click.echo(f"  note: {note}")
    if not report.ok:
        missing = [r.permission for r in report.results
                   if r.mandatory and r.status in ("missing", "error")]
        raise CommandError(f"driver {name!r}: mandatory permission(s) not working: "
                           f"{', '.join(missing)}", EXIT_MISSING)
