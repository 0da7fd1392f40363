"""syncd's own errors. The CLI turns each into a one-line message and a non-zero exit."""

from __future__ import annotations


class SyncdError(Exception):
    """Root of syncd's errors."""

    exit_code = 1


class ConfigError(SyncdError):
    """The config file is missing, malformed, or has a bad key or value."""

    exit_code = 2


class NotFoundError(SyncdError):
    """A dataset, driver or item that was asked for does not exist."""

    exit_code = 3


class NotConfiguredError(NotFoundError, ConfigError):
    """A dataset or driver that was asked for is not in the config (exit 3, as for any name
    that does not exist; still a ConfigError for code that handles config problems)."""

    exit_code = 3


class SyncError(SyncdError):
    """A sync could not complete (storage unreachable, permission denied, ...)."""

    exit_code = 4


class CatalogueError(SyncdError):
    """The catalogue file cannot be used: corrupt, read-only, a folder, the disk is full, or
    written by a newer syncd. The message names the file and the cause."""

    exit_code = 1


class CatalogueBusyError(CatalogueError):
    """The catalogue's database was busy past its timeout, found a deadlock, or its
    connection was lost: the work was rolled back and can be tried again."""

    exit_code = 1


class InputError(SyncdError):
    """A file given as input (link JSON, CSV, metadata JSON) is malformed; the message names it."""

    exit_code = 2
