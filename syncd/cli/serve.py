"""`syncd serve`: the web page and the JSON API (without the daemon's event sources)."""

from __future__ import annotations

import click

from ..app import App
from .group import cli
from .common import pass_app
from .daemon import _listen


@cli.command()
@click.option("--listen", metavar="HOST:PORT", callback=_listen,
              help="Address to serve on (default: [web] listen, 127.0.0.1:8788).")
@click.option("--read-only", is_flag=True, help="Serve no write action (metadata edits, sync, retry).")
@pass_app
def serve(app: App, listen: str | None, read_only: bool) -> None:
    """Serve the web page and the JSON API (/api/v1) until Ctrl-C or SIGTERM.

    Everything needs the token ([web] token, else [daemon] hook_token): the page asks for it
    once and keeps a cookie; scripts send `Authorization: Bearer TOKEN`. See the README's
    "Web page and API"."""
    from ..service.metrics import Metrics
    from ..service.web.app import build_app
    from ..service.web.server import WebServer
    from ..service.web.site import Site

    config = app.config
    site = Site(config, read_only=read_only or None)
    asgi = build_app(health=lambda: (True, {"status": "ok"}), metrics=Metrics(config.catalogue.location),
                     web=site)
    server = WebServer(asgi, listen or config.web.listen, settings=config.web)
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # uvicorn stopped on the signal, then passed it on: a clean stop
    finally:
        site.close()
