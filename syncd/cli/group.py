"""The `syncd` command group and its global options; each command module adds to it."""

from __future__ import annotations

import importlib

import click

from .. import __version__
from ..logs import setup_logging


# command name -> the module that defines it (and adds it to `cli` when imported). Only the
# module of the command being run is imported, so `syncd --version` or a sync of a local
# folder never imports the daemon, Pillow, the cloud SDKs or an HTTP stack.
COMMANDS = {
    "daemon": "daemon", "drivers": "drivers", "import": "imports", "items": "items",
    "jobs": "jobs", "put": "downstream", "rm": "downstream", "status": "status",
    "sync": "sync", "upload": "imports", "webhooks": "status",
}


class LazyGroup(click.Group):
    """A group whose commands are imported when first asked for (click's documented
    lazy-loading pattern); `--help` imports them all to list them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            importlib.import_module(f"{__package__}.{COMMANDS[name]}")
        return self.commands.get(name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="SYNCD_CONFIG",
              help="Config file (default: $SYNCD_CONFIG, else ./syncd.toml).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="Least severe log messages shown (stderr).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Log lines as text or as JSON objects.")
@click.version_option(__version__, prog_name="syncd")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """Keep a SQLite catalogue of storage buckets current and preprocess new images."""
    setup_logging(log_level, log_format)
    ctx.obj = {"config_path": config_path, "app": None}
