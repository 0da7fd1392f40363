"""The database's errors about the catalogue, as one line that names it and the cause.

SQLite says "unable to open database file" for a folder, a missing parent and a denied
open alike, and "file is not a database" for anything that is not one: `describe` looks at
the file to say which, so a user knows what to fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import CatalogueError
from .backend import database_errors


def describe(path: str | os.PathLike[str], error: BaseException) -> str:
    """`error` (an sqlite3.Error or OSError met using the catalogue at `path`) as one line."""
    where = f"catalogue {path}"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    lowered = text.lower()
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}: the disk is full ({error.strerror}); free some space and run again"
    if "disk is full" in lowered:
        return f"{where}: the disk is full ({text}); free some space and run again"
    if "not a database" in lowered or "malformed" in lowered:
        return (f"{where}: the file is corrupt or not a syncd catalogue ({text}); restore it "
                "from a backup, or move it away and sync again to rebuild it")
    if "readonly" in lowered or "read-only" in lowered:
        return (f"{where}: read-only ({text}); syncd writes to it and to its folder (the "
                "-wal and -shm files beside it)")
    if "unable to open" in lowered:
        file = Path(path)
        if file.is_dir():
            return f"{where}: is a folder, not a file; set [catalogue] path to a file name"
        if not file.parent.is_dir():
            return f"{where}: its folder {file.parent} does not exist"
        if not os.access(file.parent, os.W_OK) or (file.exists() and not os.access(file, os.W_OK)):
            return f"{where}: read-only: no permission to write it or its folder ({text})"
        return f"{where}: cannot be opened ({text})"
    if "disk i/o error" in lowered:
        return (f"{where}: disk I/O error ({text}): the disk may be full, failing, or past a "
                "file size limit")
    if "locked" in lowered or "busy" in lowered:
        return f"{where}: locked by another process for too long ({text}); try again"
    if isinstance(error, OSError):
        return f"{where}: {error.strerror or text}"
    return f"{where}: {text}"


@contextlib.contextmanager
def catalogue_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn SQLite's and the filesystem's errors inside the block into a CatalogueError:
    for code whose only file is the catalogue (opening it, migrating it)."""
    try:
        yield
    except CatalogueError:
        raise
    except (*database_errors(), OSError) as error:
        raise CatalogueError(describe(path, error)) from error
