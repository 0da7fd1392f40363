"""A local folder as storage.

Keys never leave the root: `..`, absolute keys and symlinks resolving outside the root are
refused. Listing runs GNU find in a child process where there is one (it is the fastest
lister on Linux and works in parallel with the catalogue writes), else an os.scandir walk;
both give identical results.

A local object's etag is "<inode>-<mtime in ns>": a rename keeps it, so the indexer sees a
move; a write or a copy changes it. Content MD5s are not computed (they would mean reading
every byte on every sync).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat as stat_module
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

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

    def describe(self) -> str:
        return f"local:{self.base}"

    # -- keys and paths -------------------------------------------------------------------

    def _path(self, key: str, *, must_exist: bool = True) -> str:
        """The filesystem path of `key`, refusing anything that resolves outside the root."""
        check_key(key)
        for part in key.split("/"):
            check_length(part, MAX_NAME_BYTES)
        path = os.path.join(self.base, key)
        real = os.path.realpath(path if must_exist else os.path.dirname(path))
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise InvalidKey(f"key {key!r} resolves outside the driver's root")
        return path

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
        hidden = re.sub(r"([*?\[\\])", r"\\\1", os.path.join(self.base, HIDDEN_FOLDER))
        command = [
            self._find, "-P", start, "-mindepth", "1",
            "(", "-path", hidden, "-prune", ")", "-o",
            "(", "-type", "f", "-o", "-type", "l", ")",
            "-printf", r"%y\0%s\0%T@\0%i\0%P\0\0",
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"LC_ALL": "C"}
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
            # "find: '/root/a/b': Permission denied"
            path, _, reason = line.removeprefix("find: ").rpartition(": ")
            path = path.strip("'‘’")
            on_error(os.path.relpath(path, self.base) if path else "", reason or line)

    def _parse_find_block(self, block: bytes, key_prefix: str, on_error: OnError) -> list[ObjectInfo]:
        try:
            fields = (block.decode() + "\0").split("\0")
        except UnicodeDecodeError:
            return self._parse_find_records(block, key_prefix, on_error)
        page = []
        append = page.append
        fields_iter = iter(fields)
        for kind, size, mtime, inode, name, _ in zip(*[fields_iter] * 6, strict=True):
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
                try:
                    if entry.is_symlink():
                        info = self._resolve_link(key, on_error)
                        if info is not None:
                            yield info
                    elif entry.is_dir(follow_symlinks=False):
                        if not (key == HIDDEN_FOLDER):
                            stack.append((entry.path, key + "/"))
                    elif entry.is_file(follow_symlinks=False):
                        yield _info(key, entry.stat(follow_symlinks=False))
                except OSError as error:
                    on_error(key, error.strerror or str(error))

    def _resolve_link(self, key: str, on_error: OnError) -> ObjectInfo | None:
        """A symlink is listed as the file it points to, if that file is inside the root."""
        try:
            path = self._path(key)
        except InvalidKey:
            on_error(key, "symlink points outside the driver's root; skipped")
            return None
        try:
            st = os.stat(path)
        except OSError as error:
            on_error(key, f"broken symlink: {error.strerror}")
            return None
        if stat_module.S_ISREG(st.st_mode):
            return _info(key, st)
        return None  # links to folders are not followed: they could loop

    # -- objects --------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFound(f"{key}: no such object") from None
        except PermissionError as error:
            raise PermissionDenied(f"{key}: {error.strerror}") from error
        if not stat_module.S_ISREG(st.st_mode):
            raise NotFound(f"{key}: not a file")
        return _info(key, st)

    def open(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        path = self._path(key)
        try:
            file = open(path, "rb")  # noqa: SIM115 - returned to the caller
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"{key}: no such object") from None
        except PermissionError as error:
            raise PermissionDenied(f"{key}: {error.strerror}") from error
        if offset:
            file.seek(offset)
        return file if length is None else _Limited(file, length)

    def put(self, key, data, *, content_type=None, overwrite=True) -> ObjectInfo:
        if key == HIDDEN_FOLDER:
            raise InvalidKey(f"{key!r} is the artifacts folder")
        path = self._path(key, must_exist=False)
        try:
            return self._put(key, path, data, overwrite)
        except OSError as error:
            if isinstance(error, DriverError):
                raise
            raise _os_error(key, error) from error

    def _put(self, key: str, path: str, data, overwrite: bool) -> ObjectInfo:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._path(key, must_exist=False)  # the folders just made must not lead out either
        stream = as_stream(data)
        # Write beside the target and rename into place, so a reader never sees half a file.
        fd, temporary = tempfile.mkstemp(prefix=".syncd-", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(stream, out, COPY_CHUNK)
            if overwrite:
                os.replace(temporary, path)
            else:
                try:
                    os.link(temporary, path)  # fails atomically if the key exists
                except FileExistsError:
                    raise AlreadyExists(f"{key}: already exists") from None
                os.unlink(temporary)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        return self.stat(key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise NotFound(f"{key}: no such object") from None
        except IsADirectoryError:
            raise NotFound(f"{key}: not a file") from None
        except PermissionError as error:
            raise PermissionDenied(f"{key}: {error.strerror}") from error
        except OSError as error:
            if error.errno == errno.EISDIR:
                raise NotFound(f"{key}: not a file") from None
            raise
        self._remove_empty_parents(os.path.dirname(path))

    def _remove_empty_parents(self, directory: str) -> None:
        base = os.path.normpath(self.base)
        while os.path.normpath(directory).startswith(base + os.sep):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)


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
