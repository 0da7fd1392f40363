"""A local folder as storage.

Keys never leave the root: `..`, absolute keys and symlinks resolving outside the root are
refused. Reads, stats, writes and deletes resolve a key one component at a time from a
descriptor of the root (openat-style, every step with O_NOFOLLOW), following a symlink only
by reading it and resolving its target the same way: so a file swapped for a symlink to
outside the root between a check and an open is never read through (no realpath-then-open
race). Files are written with the process's umask, and an overwritten file keeps its mode.
Listing is drivers.local_listing (GNU find, else an os.scandir walk).

A local object's etag is "<inode>-<mtime in ns>": a rename keeps it, so the indexer sees a
move; a write or a copy changes it. Content MD5s are not computed (they would mean reading
every byte on every sync).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
import stat as stat_module
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar


from .base import (
    HIDDEN_FOLDER,
    MAX_NAME_BYTES,
    AlreadyExists,
    Driver,
    DriverError,
    DriverOptions,
    Features,
    InvalidKey,
    Location,
    NotFound,
    ObjectInfo,
    PermissionDenied,
    as_stream,
    check_key,
    check_length,
)
from .local_listing import TEMP_PREFIX, LocalListing, _info

log = logging.getLogger(__name__)

COPY_CHUNK = 1024 * 1024  # bytes


class LocalOptions(DriverOptions, kw_only=True):
    kind: str = "local"
    root: Path

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("root", Path(self.root).expanduser())

    def location(self) -> Location:
        return Location("local", str(self.root), prefix=self.path, remote=False)


class _Limited(BinaryIO):
    """A file object that reads at most `remaining` bytes."""

    def __init__(self, file: BinaryIO, remaining: int):
        self._file = file
        self._remaining = remaining

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._remaining:
            size = self._remaining
        data = self._file.read(size)
        self._remaining -= len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalDriver(LocalListing, Driver):
    kind = "local"
    # find already lists in a child process; parsing its output is CPU work that a
    # second thread would only contend with for the GIL.
    features = Features(conditional_put=True, content_md5=False, ranged_reads=True,
                        threaded_listing=False)

    def __init__(self, options: LocalOptions):
        super().__init__(options)
        self.root = Path(options.root)
        self.base = self.root / options.path if options.path else self.root
        self._real_root = os.path.realpath(self.root)
        self._find = shutil.which("find") if _gnu_find() else None
        self._stale: list[str] = []  # leftovers of killed writes seen by the last listing

    def describe(self) -> str:
        return f"local:{self.base}"

    # -- keys and paths -------------------------------------------------------------------

    def _check_base(self) -> None:
        if not self.base.is_dir():
            if self.base.exists():
                raise NotFound(f"{self.base} is a file, not a folder; syncd syncs folders:"
                               " set path to the folder that holds it", code="NotAFolder")
            raise NotFound(f"folder {self.base} does not exist", code="NoSuchFolder")

    # -- listing --------------------------------------------------------------------------

    # -- race-free resolution ---------------------------------------------------------------

    def _root_key(self, key: str) -> str:
        check_key(key)
        for part in key.split("/"):
            check_length(part, MAX_NAME_BYTES)
        return f"{self.options.path}/{key}" if self.options.path else key

    def _walk(self, key: str, final: Callable[[int, str], _T], *, make_dirs: bool = False) -> _T:
        """Resolve `key` from the root without ever following a symlink blindly, and return
        final(dir_fd, name) for its last component. `final` raises OSError(ELOOP) when that
        component is a symlink; its target is then resolved the same way, inside the root."""
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"folder {self.root} does not exist", code="NoSuchFolder") from None
        stack = [root_fd]
        parts = deque(self._root_key(key).split("/"))
        hops = 0
        try:
            while parts:
                name = parts.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    if len(stack) == 1:
                        raise InvalidKey(f"key {key!r} resolves outside the driver's root")
                    os.close(stack.pop())
                    continue
                directory = stack[-1]
                try:
                    if not parts:
                        return final(directory, name)
                    try:
                        stack.append(os.open(name, _DIR_FLAGS, dir_fd=directory))
                    except FileNotFoundError:
                        if not make_dirs:
                            raise
                        try:
                            os.mkdir(name, 0o777, dir_fd=directory)
                        except FileExistsError:
                            pass
                        stack.append(os.open(name, _DIR_FLAGS, dir_fd=directory))
                    continue
                except OSError as error:
                    if error.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise
                    try:
                        target = os.readlink(name, dir_fd=directory)
                    except OSError:
                        raise error from None  # not a symlink: a file where a folder should be
                hops += 1
                if hops > _MAX_LINKS:
                    raise InvalidKey(f"key {key!r}: too many levels of symbolic links")
                if target.startswith("/"):
                    relative = os.path.relpath(os.path.normpath(target), self._real_root)
                    if relative == ".." or relative.startswith("../"):
                        raise InvalidKey(f"key {key!r} resolves outside the driver's root")
                    for fd in stack[1:]:
                        os.close(fd)
                    del stack[1:]
                    target = relative
                parts.extendleft(reversed(target.split("/")))
            raise InvalidKey(f"key {key!r} names the root folder, not an object")
        finally:
            for fd in stack:
                os.close(fd)

    # -- objects --------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        def final(directory: int, name: str) -> os.stat_result:
            st = os.stat(name, dir_fd=directory, follow_symlinks=False)
            if stat_module.S_ISLNK(st.st_mode):
                raise OSError(errno.ELOOP, "symlink")
            return st

        st = self._object_call(key, final)
        if not stat_module.S_ISREG(st.st_mode):
            raise NotFound(f"{key}: not a file")
        return _info(key, st)

    def open(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        def final(directory: int, name: str) -> int:
            # O_NONBLOCK: opening a FIFO must not hang; regular files ignore it.
            return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                           dir_fd=directory)

        fd = self._object_call(key, final)
        try:
            if not stat_module.S_ISREG(os.fstat(fd).st_mode):
                raise NotFound(f"{key}: not a file")
            os.set_blocking(fd, True)
            file = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        if offset:
            file.seek(offset)
        return file if length is None else _Limited(file, length)

    def _object_call(self, key: str, final: Callable[[int, str], _T], *, make_dirs: bool = False) -> _T:
        """_walk with the OS's errors turned into the driver's."""
        try:
            return self._walk(key, final, make_dirs=make_dirs)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{key}: no such object") from None
        except IsADirectoryError:
            raise NotFound(f"{key}: not a file") from None
        except PermissionError as error:
            raise PermissionDenied(f"{key}: {error.strerror}") from error
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotFound(f"{key}: no such object") from None
            if error.errno == errno.EISDIR:
                raise NotFound(f"{key}: not a file") from None
            raise

    def put(self, key, data, *, content_type=None, overwrite=True) -> ObjectInfo:
        if key == HIDDEN_FOLDER:
            raise InvalidKey(f"{key!r} is the artifacts folder")
        stream = as_stream(data)

        def final(directory: int, name: str) -> None:
            _write_beside(directory, name, stream, key, overwrite=overwrite)

        try:
            self._walk(key, final, make_dirs=True)
        except DriverError:
            raise
        except FileNotFoundError:  # a folder on the way removed while this put ran
            raise NotFound(f"{key}: a folder of this key was removed during the write") from None
        except OSError as error:  # no space, a file where a folder should be, ...
            raise _os_error(key, error) from error
        return self.stat(key)

    def delete(self, key: str) -> None:
        def final(directory: int, name: str) -> None:
            st = os.stat(name, dir_fd=directory, follow_symlinks=False)
            if stat_module.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a folder")
            os.unlink(name, dir_fd=directory)  # a symlink itself, never what it points to

        self._object_call(key, final)
        path = os.path.join(self.base, key)
        self._remove_empty_parents(os.path.dirname(path))

    def _remove_empty_parents(self, directory: str) -> None:
        base = os.path.normpath(self.base)
        while os.path.normpath(directory).startswith(base + os.sep):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)


_T = TypeVar("_T")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40  # symlinks followed while resolving one key, as Linux allows


def _write_beside(directory: int, name: str, stream: BinaryIO, key: str, *, overwrite: bool) -> None:
    """Write `stream` to a temporary file in `directory` and rename it to `name` (a reader never
    sees half a file). The new file gets the umask's mode; an overwritten file keeps its own."""
    temporary = f"{TEMP_PREFIX}{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o666, dir_fd=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out, COPY_CHUNK)
            try:
                old = os.stat(name, dir_fd=directory, follow_symlinks=False)
            except FileNotFoundError:
                old = None
            if old is not None and stat_module.S_ISREG(old.st_mode):
                os.fchmod(out.fileno(), stat_module.S_IMODE(old.st_mode))
        if overwrite:
            os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
        else:
            try:  # fails atomically if the key exists
                os.link(temporary, name, src_dir_fd=directory, dst_dir_fd=directory,
                        follow_symlinks=False)
            except FileExistsError:
                raise AlreadyExists(f"{key}: already exists") from None
            os.unlink(temporary, dir_fd=directory)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=directory)
        except FileNotFoundError:
            pass
        raise


def _os_error(key: str, error: OSError) -> DriverError:
    """A filesystem error of a write as the driver error it means."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return DriverError(f"{key}: no space left on the device ({reason})", code="NoSpace")
    if error.errno == errno.EFBIG:
        return DriverError(f"{key}: file too large for the filesystem or the file size limit"
                           f" ({reason})", code="FileTooLarge", retriable=False)
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"{key}: {reason}", code=errno.errorcode[error.errno])
    if error.errno == errno.ENAMETOOLONG:
        return InvalidKey(f"{key}: name too long ({reason})", code="KeyTooLong")
    if error.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return InvalidKey(f"{key}: a file and a folder would have the same name ({reason})",
                          code=errno.errorcode[error.errno])
    return DriverError(f"{key}: {reason}", code=errno.errorcode.get(error.errno or 0, "OSError"))



_gnu_find_cache: list[bool] = []


def _gnu_find() -> bool:
    """GNU find has -printf; BSD find (macOS) does not."""
    if not _gnu_find_cache:
        path = shutil.which("find")
        ok = False
        if path and os.environ.get("SYNCD_LOCAL_LISTER", "find") == "find":
            try:
                # -printf exists, and %T@ has the 10 fractional digits the parser expects.
                output = subprocess.run(
                    [path, "/", "-maxdepth", "0", "-printf", "%y %T@"],
                    capture_output=True, timeout=5,
                ).stdout
                ok = re.fullmatch(rb"d \d+\.\d{10}", output) is not None
            except (OSError, subprocess.SubprocessError):
                ok = False
        _gnu_find_cache.append(ok)
    return _gnu_find_cache[0]
