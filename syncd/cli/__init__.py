"""The `syncd` command: a thin layer over the library, one module a command group."""

from __future__ import annotations

import gc
import importlib
import signal

import click

from .. import __version__
from ..logs import setup_logging


# command name -> the module that defines it (and registers it on `cli` when imported).
# Only the module of the command being run is imported, so `syncd --version` or a sync of
# a local folder never imports the daemon, Pillow, the cloud SDKs or an HTTP stack.
COMMANDS = {
    "daemon": "daemon", "drivers": "drivers", "import": "imports", "items": "items",
    "jobs": "jobs", "put": "downstream", "rm": "downstream", "sync": "sync", "upload": "imports",
}


class LazyGroup(click.Group):
    """A group whose commands are imported when first asked for (click's documented
    lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            importlib.import_module(f"{__name__}.{COMMANDS[name]}")
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




def _terminate(signum, frame) -> None:
    # SIGTERM unwinds like Ctrl-C: open transactions roll back, sync runs are closed.
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    # The objects made by imports live as long as the process: keep the garbage
    # collector from scanning them again and again while a listing makes millions of
    # short-lived ones (a third of a large sync's time otherwise).
    gc.freeze()
    cli(prog_name="syncd")


__all__ = ["COMMANDS", "LazyGroup", "cli", "main"]
