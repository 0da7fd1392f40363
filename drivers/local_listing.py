"""The listing half of the local driver: GNU find in a child process where there is one (the
fastest lister on Linux, running in parallel with the catalogue writes), else an os.scandir
walk; both give identical results. `.dataloop` is skipped at any depth, syncd's own temporary
files are never objects (stale ones are removed by `tidy`), and a symlink is listed as the file
it points to when that file is inside the root.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator

from .base import (
    HIDDEN_FOLDER,
    PAGE_SIZE,
    DriverError,
    InvalidKey,
    NotFound,
    ObjectInfo,
    OnError,
    PermissionDenied,
    check_key,
    is_hidden,
)

log = logging.getLogger(__name__)

FIND_BLOCK = 1024 * 1024  # bytes of find's output parsed at a time
TEMP_PREFIX = ".syncd-"  # syncd's temporary files; never listed as objects
STALE_TEMP_SECONDS = 3600.0  # a temporary file untouched this long was left by a killed writer
_BACKSLASH = "file name contains '\\', which a syncd key cannot hold; skipped"


class LocalListing:
    """Mixed into LocalDriver: list_pages and what it needs (the driver gives `base`, `_find`,
    `_stale`, `stat` and `_object_call`)."""

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

    def _parse_find_block(self, block: bytes, key_prefix: str, on_error: OnError) -> list[ObjectInfo] | FindPage:
        try:
            text = block.decode() + "\0"
        except UnicodeDecodeError:
            return self._parse_find_records(block, key_prefix, on_error)
        fields = text.split("\0")
        if not key_prefix and "\\" not in text and set(fields[0::6]) == {"f"}:
            return FindPage(fields)  # the usual block: plain files, nothing to check
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
            append(_find_info(key_prefix + name, size, mtime, inode))
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


def _widen_pipe(fd: int) -> None:
    """Let a child run up to a megabyte ahead of its reader (Linux; elsewhere a no-op)."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, FIND_BLOCK)
    except (ImportError, AttributeError, OSError):
        pass


def _find_info(key: str, size: str, mtime: str, inode: str) -> ObjectInfo:
    """A plain file's ObjectInfo from find's fields; as _info makes it from a stat."""
    # GNU find prints 10 fractional digits (checked at start) after the floor of the seconds:
    # -1.5 s is "-2.5000000000"
    mtime_ns = int(mtime[:-11]) * 1_000_000_000 + int(mtime[-10:-1])
    return ObjectInfo(key, int(size), mtime_ns / 1e9, f"{inode}-{mtime_ns}", None)


class FindPage:
    """A page of find's records for plain files, not parsed yet: `fields` holds six per
    record, (kind "f", size, mtime as seconds with 10 fractional digits, inode, key, "").

    To whoever iterates or indexes it, it is a page of ObjectInfo (parsed on first use). The
    SQLite catalogue stages its `records()` as they are, doing _find_info's conversion in
    SQL (catalogue/backend.py: FIND_RECORDS), which costs a third of parsing them here: at a
    million files, the difference between syncing within 3x `find` and not."""

    __slots__ = ("fields", "_parsed")

    def __init__(self, fields: list[str]):
        self.fields = fields
        self._parsed: list[ObjectInfo] | None = None

    def records(self) -> Iterator[tuple[str, ...]]:
        it = iter(self.fields)
        return zip(it, it, it, it, it, it, strict=True)

    def keys(self) -> list[str]:
        return self.fields[4::6]

    @property
    def parsed(self) -> list[ObjectInfo]:
        if self._parsed is None:
            self._parsed = [_find_info(key, size, mtime, inode)
                            for _kind, size, mtime, inode, key, _ in self.records()]
        return self._parsed

    def __len__(self) -> int:
        return len(self.fields) // 6

    def __iter__(self) -> Iterator[ObjectInfo]:
        return iter(self.parsed)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return FindPage(self.fields[start * 6 : stop * 6])
        return self.parsed[index]

    def __repr__(self) -> str:
        return f"FindPage({self.parsed!r})"


def _paged(infos: Iterator[ObjectInfo]) -> Iterator[list[ObjectInfo]]:
    page: list[ObjectInfo] = []
    for info in infos:
        page.append(info)
        if len(page) >= PAGE_SIZE:
            yield page
            page = []
    if page:
        yield page


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key, st.st_size, st.st_mtime_ns / 1e9, f"{st.st_ino}-{st.st_mtime_ns}", None)


def _raise_on_error(key: str, reason: str) -> None:
    raise OSError(f"{key}: {reason}")


# find's messages: "<argv0>: '<path>': <reason>" (quotes vary with the locale).
_FIND_ERROR = re.compile(r"^(?:[^:]*find: )?['‘`](?P<path>.*)['’]: (?P<reason>[^:]+)$")
