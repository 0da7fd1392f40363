"""What every command shares: the App from the group's options, JSON output, progress bars,
and the translation of library errors into one-line messages with an exit code."""

from __future__ import annotations

import errno
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from drivers import DriverError, InvalidKey

from ..app import App
from ..catalogue.backend import database_errors
from ..catalogue.errors import describe as describe_catalogue_error
from ..errors import SyncdError

EXIT_BAD_INPUT = 2  # bad config, command line or input file
EXIT_STORAGE = 4  # storage failed: unreachable, not found, refused
EXIT_PARTIAL = 5  # finished, but some entries could not be read or processed
EXIT_DELETES_REFUSED = 6  # a sync would delete more than sync.max_delete_percent: not applied
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM cut the work short (128 + SIGINT)


class CommandError(click.ClickException):
    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"syncd: error: {self.format_message()}", err=True)


def pass_app(command: Callable) -> Callable:
    """Give the command the App built from the group's --config, turning errors into exits."""

    @functools.wraps(command)
    @click.pass_context
    def wrapper(ctx: click.Context, *args, **kwargs):
        state = ctx.find_root().obj
        try:
            if state.get("app") is None:
                state["app"] = App.from_file(state["config_path"])
                ctx.call_on_close(state["app"].close)
            return command(state["app"], *args, **kwargs)
        except SyncdError as error:
            raise CommandError(str(error), error.exit_code) from error
        except InvalidKey as error:  # a name given on the command line or in an input file
            raise CommandError(f"{type(error).__name__}: {error}", EXIT_BAD_INPUT) from error
        except DriverError as error:
            raise CommandError(f"{type(error).__name__}: {error}", EXIT_STORAGE) from error
        except database_errors() as error:  # the catalogue failed mid-command: full disk, ...
            path = state["app"].catalogue_location if state.get("app") else "?"
            raise CommandError(describe_catalogue_error(path, error)) from error
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" ({error.filename})" if error.filename else ""
            raise CommandError(f"no space left on the device{where}: free some space and "
                               "run again") from error

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON Lines on stdout (one object a line), nothing else.")


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")


class _NoBar:
    """What a progress bar does when stderr is not a terminal: nothing (and tqdm, slow to
    import, is not imported)."""

    total: int | None = None

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *_exc) -> None:
        return None

    def update(self, _n: int = 1) -> None:
        return None

    def refresh(self) -> None:
        return None


def progress_bar(description: str, *, total: int | None = None, unit: str = "obj"):
    """A progress bar (tqdm) on stderr, shown only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(desc=description, total=total, unit=unit, unit_scale=True, file=sys.stderr,
                leave=False, dynamic_ncols=True)
