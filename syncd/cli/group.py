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


GLOBAL_OPTIONS = ("--config", "--log-level", "--log-format")  # each takes one value


def hoist_global_options(args: list[str]) -> list[str]:
    """Move the global options given after the command name (`syncd sync --config x.toml`)
    to the front, where the group parses them. Nothing after `--` is touched."""
    front, rest = [], []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            if "=" in arg:
                front.append(arg)
            else:
                front.extend(args[index:index + 2])
                index += 1
        else:
            rest.append(arg)
        index += 1
    return front + rest


class SyncdGroup(click.Group):
    """The root group: global options anywhere on the line; an interrupt exits 130."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        # Commands are imported when first asked for (click's lazy-loading pattern);
        # `--help` imports them all to list them.
        if name not in self.commands and name in COMMANDS:
            importlib.import_module(f"{__package__}.{COMMANDS[name]}")
        return self.commands.get(name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(list(args)))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            from .common import EXIT_INTERRUPTED, CommandError

            raise CommandError("interrupted", EXIT_INTERRUPTED) from None


@click.group(cls=SyncdGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
