"""`syncd status` and `syncd webhooks retry`: what the catalogue holds and what is owed."""

from __future__ import annotations

import click

from ..app import App
from ..catalogue.outbox import Outbox, counts
from . import cli
from .common import emit_json, json_option, pass_app


@cli.command("status")
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """Items per dataset and state, jobs per state, and webhook events per webhook and state
    (pending, delivered, dead: the dead letters). --json: one object per line, each with
    `dataset`, `jobs` or `webhook`."""
    conn = app.catalogue.conn
    lines = []
    for name in (d.name for d in app.config.datasets):
        dataset = app.dataset(name)
        lines.append({"dataset": name, **app.catalogue.count_items(dataset),
                      "synced_at": dataset.synced_at})
    jobs = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    lines.append({"jobs": jobs})
    lines += counts(conn)
    if as_json:
        for line in lines:
            emit_json(line)
        return
    for line in lines:
        if "dataset" in line:
            rest = ", ".join(f"{k} {v}" for k, v in line.items() if k not in ("dataset", "synced_at"))
            click.echo(f"dataset {line['dataset']}: {rest} (synced {line['synced_at'] or 'never'})")
        elif "jobs" in line:
            click.echo("jobs: " + (", ".join(f"{k} {v}" for k, v in sorted(line["jobs"].items())) or "none"))
        else:
            error = f" (last error: {line['last_error']})" if line["last_error"] and line["state"] != "delivered" else ""
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
