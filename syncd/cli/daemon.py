"""`syncd daemon`: the long-running service."""

from __future__ import annotations

import signal

import click

from ..app import App
from ..service.daemon import Daemon
from ..service.daemon_config import parse_listen
from .group import cli
from .common import pass_app


def _listen(ctx, param, value: str | None) -> str | None:
    if value:
        try:
            parse_listen(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
    return value


@cli.command()
@click.option("--listen", metavar="HOST:PORT", callback=_listen,
              help="Serve /healthz, /metrics and the push hooks here (overrides [daemon] listen).")
@click.option("--no-preprocess", is_flag=True,
              help="Run no preprocessing workers (jobs stay queued for `syncd jobs run`).")
@pass_app
def daemon(app: App, listen: str | None, no_preprocess: bool) -> None:
    """Run until SIGTERM/SIGINT: apply bucket events, rescan on schedule, preprocess.

    Event sources come from [[sources]] in the config (watch, sqs, pubsub, azure_queue) and
    from push hooks on the listen address; see the README's "Running as a service"."""
    workers = None
    if app.config.preprocess.enabled and not no_preprocess:
        workers = app.background_runner()
    runner = Daemon(app, listen=listen, workers=workers)
    previous = runner.install_signal_handlers()
    try:
        runner.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
