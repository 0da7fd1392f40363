"""A local folder as storage.

Keys never leave the root: `..`, absolute keys and symlinks resolving outside the root are
refused. Reads, stats, writes and deletes resolve a key one component at a time from a
descriptor of the root (openat-style, every step with O_NOFOLLOW), following a symlink only
by reading it and resolving its target the same way: so a file swapped for a symlink to
outside the root between a check and an open is never read through (no realpath-then-open
race). Files are written with the process's umask, and an overwritten file keeps its mode. Listing runs GNU find in a child process where there is one (it is the fastest
lister on Linux and works in parallel with the catalogue writes), else an os.scandir walk;
both give identical results.

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
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from pydantic import field_validator

from .base import (
    HIDDEN_FOLDER,
    MAX_NAME_BYTES,
    PAGE_SIZE,
    AlreadyExists,
    Driver,
    DriverError,
    DriverOptions,
    Features,
    InvalidKey,
    Location,
    NotFound,
    ObjectInfo,
    OnError,
    PermissionDenied,
    as_stream,
    check_key,
    check_length,
    is_hidden,
)

log = logging.getLogger(__name__)

COPY_CHUNK = 1024 * 1024  # bytes
FIND_BLOCK = 1024 * 1024  # bytes of find's output parsed at a time


class LocalOptions(DriverOptions):
    kind: str = "local"
    root: Path

    @field_validator("root")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    def location(self) -> Location:
        return Location("local", str(self.root), prefix=self.path, remote=False)


def _raise_on_error(key: str, reason: str) -> None:
    raise OSError(f"{key}: {reason}")


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


class LocalDriver(Driver):
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

    def list_pages(self, prefix: str = "", *, on_error: OnError | None = None) -> Iterator[list[ObjectInfo]]:
        self._check_base()
        on_error = on_error or _raise_on_error
        folder, _, _ = prefix.rpartition("/")
        if folder:
            check_key(folder)
            if is_hidden(folder):
                return
        start = os.path.join(self.base, folder) if folder else str(self.base)
        if not os.path.isdir(start):
            return
        name_prefix = prefix if prefix and not prefix.endswith("/") else ""
        if self._find:
            pages = self._pages_find(start, folder, on_error)
        else:
            pages = _paged(self._walk_scandir(start, folder, on_error))
        for block in pages:
            if name_prefix:
                block = [info for info in block if info.key.startswith(name_prefix)]
            for start in range(0, len(block), PAGE_SIZE):
                yield block[start : start + PAGE_SIZE]

    def _pages_find(self, start: str, folder: str, on_error: OnError) -> Iterator[list[ObjectInfo]]:
        """Run GNU find and parse its output a block at a time.

        Each record is five NUL-terminated fields and one more NUL; no field is ever empty,
        so a double NUL marks the end of a record and a block can be cut there."""
        key_prefix = folder + "/" if folder else ""
        # .dataloop at any depth is pruned (a nested dataset's artifacts are no items either);
        # syncd's own temporary files are printed as kind "t", to be skipped or cleaned up.
        command = [
            self._find, "-P", start, "-mindepth", "1",
            "(", "-name", HIDDEN_FOLDER, "-prune", ")", "-o",
            "(", "-name", TEMP_PREFIX + "*", "-type", "f",
            "-printf", r"t\0%s\0%T@\0%i\0%P\0\0", ")", "-o",
            "(", "-type", "f", "-o", "-type", "l", ")",
            "-printf", r"%y\0%s\0%T@\0%i\0%P\0\0",
        ]
        # argv[0] "find": GNU find prefixes its messages with argv[0], not with "find: ".
        process = subprocess.Popen(
            ["find", *command[1:]], executable=command[0],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"LC_ALL": "C"}
        )
        _widen_pipe(process.stdout.fileno())
        buffer = b""
        try:
            # os.read returns what is there, so find keeps writing while a block is parsed.
            while chunk := os.read(process.stdout.fileno(), FIND_BLOCK):
                buffer += chunk
                end = buffer.rfind(b"\0\0")
                if end > 0:
                    block, buffer = buffer[:end], buffer[end + 2 :]
                    yield self._parse_find_block(block, key_prefix, on_error)
            if buffer.endswith(b"\0\0") and len(buffer) > 2:
                yield self._parse_find_block(buffer[:-2], key_prefix, on_error)
        finally:
            process.stdout.close()
            errors = process.stderr.read().decode(errors="replace")
            process.stderr.close()
            process.kill()
            process.wait()
        for line in errors.splitlines():
            key, reason = self._find_error(line)
            on_error(key, reason)

    def _find_error(self, line: str) -> tuple[str, str]:
        """(key, reason) of one line of find's stderr: "find: '/root/a/b': Permission denied".

        A line whose path cannot be read as a key under the root is reported against the
        root (""), so that nothing is taken as gone because of a message we did not parse."""
        match = _FIND_ERROR.match(line)
        if not match:
            return "", line
        path, reason = match["path"], match["reason"]
        relative = os.path.relpath(path, self.base) if os.path.isabs(path) else ""
        if relative == "." or relative.startswith(".."):
            relative = ""
        return relative, reason

    def _parse_find_block(self, block: bytes, key_prefix: str, on_error: OnError) -> list[ObjectInfo]:
        try:
            fields = (block.decode() + "\0").split("\0")
        except UnicodeDecodeError:
            return self._parse_find_records(block, key_prefix, on_error)
        page = []
        append = page.append
        fields_iter = iter(fields)
        for kind, size, mtime, inode, name, _ in zip(*[fields_iter] * 6, strict=True):
            if "\\" in name:
                on_error(key_prefix + name, _BACKSLASH)
                continue
            if kind == "t":
                self._stale_temporary(key_prefix + name, float(mtime))
                continue
            if kind != "f":
                info = self._resolve_link(key_prefix + name, on_error)
                if info is not None:
                    append(info)
                continue
            seconds, _, fraction = mtime.partition(".")
            mtime_ns = seconds + fraction[:9]  # GNU find prints 10 digits (checked at start)
            append(ObjectInfo(key_prefix + name, int(size), int(mtime_ns) / 1e9,
                              inode + "-" + mtime_ns, None))
        return page

    def _parse_find_records(self, block: bytes, key_prefix: str, on_error: OnError) -> list[ObjectInfo]:
        """The slow path, for a block holding a name that is not UTF-8."""
        page = []
        for record in block.split(b"\0\0"):
            try:
                record.decode()
            except UnicodeDecodeError:
                name = record.split(b"\0", 4)[-1]
                on_error(key_prefix + name.decode(errors="backslashreplace"),
                         "file name is not valid UTF-8")
                continue
            page.extend(self._parse_find_block(record, key_prefix, on_error))
        return page

    def _walk_scandir(self, start: str, folder: str, on_error: OnError) -> Iterator[ObjectInfo]:
        stack = [(start, folder + "/" if folder else "")]
        while stack:
            directory, key_prefix = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except OSError as error:
                on_error(key_prefix.rstrip("/"), error.strerror or str(error))
                continue
            for entry in entries:
                try:
                    key = key_prefix + entry.name
                    key.encode()
                except UnicodeEncodeError:
                    on_error(key_prefix + os.fsencode(entry.name).decode(errors="backslashreplace"),
                             "file name is not valid UTF-8")
                    continue
                if entry.name == HIDDEN_FOLDER:
                    continue  # at any depth, file or folder
                if "\\" in entry.name:
                    on_error(key, _BACKSLASH)
                    continue
                try:
                    if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                        self._stale_temporary(key, entry.stat(follow_symlinks=False).st_mtime)
                        continue
                    if entry.is_symlink():
                        info = self._resolve_link(key, on_error)
                        if info is not None:
                            yield info
                    elif entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, key + "/"))
                    elif entry.is_file(follow_symlinks=False):
                        yield _info(key, entry.stat(follow_symlinks=False))
                except OSError as error:
                    on_error(key, error.strerror or str(error))

    def _stale_temporary(self, key: str, mtime: float) -> None:
        """A temporary file of syncd's is never an object; one left by a killed writer (older
        than STALE_TEMP_SECONDS, so no put is still writing it) is removed by `tidy`."""
        if time.time() - mtime >= STALE_TEMP_SECONDS:
            self._stale.append(key)

    def tidy(self) -> None:
        stale, self._stale = self._stale, []
        for key in stale:
            try:
                self._object_call(key, lambda directory, name: os.unlink(name, dir_fd=directory))
            except (DriverError, OSError) as error:
                log.debug("cannot remove stale temporary file %s: %s", key, error)
            else:
                log.info("removed %s, a temporary file left by an interrupted write", key)

    def _resolve_link(self, key: str, on_error: OnError) -> ObjectInfo | None:
        """A symlink is listed as the file it points to, if that file is inside the root."""
        try:
            return self.stat(key)
        except InvalidKey:
            on_error(key, "symlink points outside the driver's root; skipped")
        except PermissionDenied as error:
            on_error(key, f"symlink not followed: {error}")
        except NotFound as error:
            if "not a file" not in str(error):  # links to folders are not followed: they could loop
                on_error(key, "broken symlink: No such file or directory")
        return None

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
TEMP_PREFIX = ".syncd-"  # syncd's temporary files; never listed as objects
STALE_TEMP_SECONDS = 3600.0  # a temporary file untouched this long was left by a killed writer
_BACKSLASH = "file name contains '\\', which a syncd key cannot hold; skipped"


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


def _widen_pipe(fd: int) -> None:
    """Let a child run up to a megabyte ahead of its reader (Linux; elsewhere a no-op)."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, FIND_BLOCK)
    except (ImportError, AttributeError, OSError):
        pass


def _paged(infos: Iterator[ObjectInfo]) -> Iterator[list[ObjectInfo]]:
    page: list[ObjectInfo] = []
    for info in infos:
        page.append(info)
        if len(page) >= PAGE_SIZE:
            yield page
            page = []
    if page:
        yield page


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


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key, st.st_size, st.st_mtime_ns / 1e9, f"{st.st_ino}-{st.st_mtime_ns}", None)


# find's messages: "<argv0>: '<path>': <reason>" (quotes vary with the locale).
_FIND_ERROR = re.compile(r"^(?:[^:]*find: )?['‘`](?P<path>.*)['’]: (?P<reason>[^:]+)$")

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
