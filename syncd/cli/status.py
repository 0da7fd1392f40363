"""`syncd status` and `syncd webhooks retry`: what the catalogue holds and what is owed."""

from __future__ import annotations

import click

from ..app import App
from ..catalogue.counts import read_counts
from ..catalogue.outbox import Outbox
from .common import emit_json, json_option, pass_app
from .group import cli


@cli.command("status")
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """Items per dataset and state, jobs per state, and webhook events per webhook and state
    (pending, delivered, dead: the dead letters). --json: one object per line, each with
    `dataset`, `jobs` or `webhook`."""
    synced = {name: app.dataset(name).synced_at for name in (d.name for d in app.config.datasets)}
    counts = read_counts(app.config.catalogue.path)
    lines: list[dict] = []
    for name, synced_at in synced.items():
        states = {state: n for (dataset, state), n in (counts.items.items() if counts else []) if dataset == name}
        lines.append({"dataset": name, "present": states.get("present", 0),
                      "missing": states.get("missing", 0), "synced_at": synced_at})
    lines.append({"jobs": counts.jobs if counts else {}})
    lines += counts.webhooks if counts else []
    if as_json:
        for line in lines:
            emit_json(line)
        return
    for line in lines:
        if "dataset" in line:
            click.echo(f"dataset {line['dataset']}: present {line['present']}, missing {line['missing']}"
                       f" (synced {line['synced_at'] or 'never'})")
        elif "jobs" in line:
            click.echo("jobs: " + (", ".join(f"{k} {v}" for k, v in sorted(line["jobs"].items())) or "none"))
        else:
            error = (f" (last error: {line['last_error']})"
                     if line["last_error"] and line["state"] != "delivered" else "")
            click.echo(f"webhook {line['webhook']}: {line['state']} {line['events']}{error}")


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
