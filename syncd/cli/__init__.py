"""The `syncd` command: a thin layer over the library, one module a command group."""

from __future__ import annotations

import gc
import signal

# Each command module adds its commands to the group when imported, and the group imports
# only the module of the command being run (see group.py).
from .group import COMMANDS, cli


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


__all__ = ["COMMANDS", "cli", "main"]
