"""What the three cloud drivers share: options, the mapping between keys and object names,
listing around the hidden folder, ranged reading, and error messages without secrets.

A cloud driver's folder is a name prefix inside its bucket (`path`, "" = the whole bucket).
Keys are object names with that prefix removed. Object names ending in "/" are folder markers
(the AWS console makes them) and are never listed, nor is anything under `<path>/.dataloop/`.

Each driver module keeps one table from its SDK's error codes to `drivers.base` errors and
one `translate()` function that applies it; `CloudDriver._mapped` runs every SDK call through
it, so the SDK's error is always the `__cause__` and its code is the DriverError's `.code`.
"""

from __future__ import annotations

import bisect
import io
import math
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, BinaryIO, ClassVar, NamedTuple

from .options import Meta, Secret

from .base import (
    HIDDEN_FOLDER,
    Driver,
    DriverError,
    DriverOptions,
    NotFound,
    ObjectInfo,
    OnError,
    check_key,
    is_hidden,
    check_length,
)

CHUNK_SIZE = 8 * 1024 * 1024  # bytes: multipart threshold and part size; a read's request size
PERMISSION_TEST_KEY = f"{HIDDEN_FOLDER}/permission-test.txt"
_NESTED_HIDDEN = f"/{HIDDEN_FOLDER}"  # a cheap test before is_hidden, for nested datasets' folders

# SAS signatures and similar secrets that SDKs and urllib3 put into URLs of error messages.
_SECRET_QUERY = re.compile(r"(?i)\b(sig|signature|x-amz-signature|x-amz-security-token|"
                           r"x-amz-credential|access_token|token)=[^&\s'\"<>]+")


class CloudOptions(DriverOptions, kw_only=True):
    """Keys every cloud driver has, beside `name`, `kind`, `path` and the permissions."""

    # Listing requests in flight at once, one sub-folder each (1: one listing, in name order).
    list_concurrency: Annotated[int, Meta(ge=1, le=64)] = 8

    endpoint_url: str | None = None  # S3-compatible services, emulators
    storage_class: str | None = None  # puts use it; None = the bucket's default
    timeout_seconds: Annotated[float, Meta(gt=0)] = 60.0  # connect and read timeout of a request

    def __post_init__(self) -> None:
        super().__post_init__()
        url = self.endpoint_url
        if url is not None:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError("endpoint_url: must be an http:// or https:// URL")
            self._set("endpoint_url", url.rstrip("/"))


def secret(value: Secret | None) -> str | None:
    return value.get_secret_value() if value is not None else None


# user:password@ in a URL (an endpoint_url, say): the SDKs print the URL in their errors.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"<>]*@")


def redact(text: str, secrets: tuple[str | None, ...] = ()) -> str:
    """`text` with URL credentials and signatures and the given secret values replaced by '***'."""
    text = _USERINFO.sub(lambda m: f"{m.group(1)}***@", text)
    text = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", text)
    for value in secrets:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def one_line(text: str, limit: int = 300) -> str:
    """The first line of an SDK's message, shortened: error lines must stay one line."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


class CloudDriver(Driver):
    """Listing, keys and error mapping for drivers whose storage is a flat namespace of names.

    Subclasses implement the SDK hooks `_pages`, `_head` and the object methods, and give
    `translate(error, what)`, which turns an SDK error into a DriverError (or None: not ours).
    """

    # Can the service start a listing after a given name (S3 StartAfter, GCS startOffset)?
    # Elsewhere (Azure) `_pages` and `_delimited` leave out what comes before it themselves.
    starts_after_names: ClassVar[bool] = False
    page_size: int = 1000  # objects a listing request asks for (S3's and GCS's maximum)

    def __init__(self, options: CloudOptions):
        super().__init__(options)
        self.base = options.path + "/" if options.path else ""
        self._hidden = self.base + HIDDEN_FOLDER + "/"

    # -- hooks for subclasses -------------------------------------------------------------

    def _pages(self, prefix: str, *, after_hidden: str | None = None,
               start_after: str | None = None) -> Iterator[list[ObjectInfo]]:
        """Yield pages of objects whose *name* starts with `prefix`, in name order, as the
        service returns them. With `after_hidden` (drivers whose `starts_after_names`), start
        after every name under that folder; with `start_after`, after that name."""
        raise NotImplementedError

    def _head(self, name: str) -> ObjectInfo:
        """The object named `name` (full name, in `key`); raise NotFound if there is none."""
        raise NotImplementedError

    def translate(self, error: Exception, what: str) -> DriverError | None:
        raise NotImplementedError

    def secrets(self) -> tuple[str | None, ...]:
        """Secret values that must never appear in a message."""
        return ()

    # -- keys -----------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        name = self.base + check_key(key)
        check_length(name)  # refused here, not as an SDK error that varies by storage
        return name

    @contextmanager
    def _mapped(self, what: str):
        """Run SDK calls, turning their errors into DriverErrors that name `what`."""
        try:
            yield
        except DriverError:
            raise
        except Exception as error:  # noqa: BLE001 - translate decides what is ours
            mapped = self.translate(error, what)
            if mapped is None:
                raise
            mapped.args = (redact(str(mapped.args[0]), self.secrets()),)
            raise mapped from error

    # -- listing --------------------------------------------------------------------------

    def _delimited(self, prefix: str, *, after_folder: str | None = None
                   ) -> Iterator[tuple[list[ObjectInfo], list[str]]]:
        """Yield pages of (objects, sub-folder prefixes) directly under `prefix` (a listing
        with delimiter "/"), with `after_folder` starting after every name under that folder.
        Drivers without it: no parallel listing."""
        raise NotImplementedError

    def list_pages(self, prefix: str = "", *, on_error: OnError | None = None) -> Iterator[list[ObjectInfo]]:
        full = self.base + prefix
        if full.startswith(self._hidden):
            return
        listed = False
        parallel = (self.list_concurrency > 1 and (full == "" or full.endswith("/"))
                    and type(self)._delimited is not CloudDriver._delimited)
        with self._mapped(f"listing {self.describe()}"):
            pages = self._parallel_pages(full) if parallel else self._sequential_pages(full)
            for page in pages:
                listed = listed or bool(page)
                if keys := self._keys(page):
                    yield keys
        if not listed and not prefix and self.base:
            self._refuse_file_path()

    def _sequential_pages(self, full: str, start_after: str | None = None) -> Iterator[list[ObjectInfo]]:
        pages = self._pages(full, start_after=start_after) if start_after else self._pages(full)
        if self.starts_after_names and self._hidden.startswith(full):
            # A page that ends inside the hidden folder: list on from past its end, so
            # that thumbnails (one per image) are not sent over the wire page after page.
            for page in pages:
                yield page
                if page and page[-1].key.startswith(self._hidden):
                    pages = self._pages(full, after_hidden=self._hidden)
                    break
            else:
                return
        yield from pages

    def _parallel_pages(self, full: str) -> Iterator[list[ObjectInfo]]:
        """List by sub-folder (or group of them: _grouped), `list_concurrency` listings at a
        time; the hidden folder's prefix is never listed.

        It begins as the plain listing does; only when its first page is full and ends
        inside a folder are the folders after that one discovered (a delimiter listing
        starting past it, which also yields the objects beside them) and listed in parallel
        with the rest of that folder. So a flat bucket, or a small one, costs exactly the
        plain listing. Where that folder is the last at its level, the same is done inside it."""
        pages = self._sequential_pages(full)
        first = next(pages, None)
        if first is None:
            return
        yield first
        if len(first) < self.page_size or "/" not in first[-1].key[len(full):]:
            yield from pages  # the last page, or still in the flat part: one plain listing
            return
        pages.close()
        last, level = first[-1].key, full
        while "/" in last[len(level):]:
            folder = level + last[len(level):].split("/", 1)[0] + "/"
            found: dict[str, None] = {}  # some services repeat a prefix on later pages
            for objects, prefixes in self._delimited(level, after_folder=folder):
                yield objects
                found.update((p, None) for p in prefixes if p != self._hidden and p > folder)
            if found:
                tasks = [] if folder == self._hidden else [_Task(folder, last)]  # its rest
                tasks += self._grouped(level, list(found), _folders_in(first, level))
                yield from fan_out(tasks, self._task_pages, self.list_concurrency)
                return
            if folder == self._hidden:
                return
            level = folder
        yield from self._sequential_pages(level, last)

    def _grouped(self, parent: str, folders: list[str], first: dict[str, int]) -> list[_Task]:
        """Listing tasks for sibling `folders` under `parent` (in name order), after the
        first page, which held `first` (objects a folder under `parent`): folders whose names
        share their first characters are listed as one prefix. A request costs about as
        much for a few objects as for a page (the emulators scan the whole bucket for each,
        and services bill per request), so the split is the one whose pages finish soonest
        on `list_concurrency` listings at a time, then the one with fewest requests: 100
        folders of 300 objects are ~10 listings of 3 pages, not 100 of one short page.
        Folders hold as many objects as those the first page shows whole; where a listing
        cannot start after a name (Azure), a prefix's pages count the first page's folders
        it covers too, since they are listed again and dropped."""
        whole = [count for name, count in list(first.items())[:-1]  # the last may go on
                 if parent + name + "/" != self._hidden]  # thumbnails: not a folder's size
        per_folder = sum(whole) / len(whole) if whole else self.page_size  # unknown: a page at least
        again = [] if self.starts_after_names else sorted(parent + name + "/" for name in first)

        def pages_of(start: int, stop: int, prefix: str) -> int:
            """A group's pages: its folders, and those of the first page `prefix` lists again."""
            listed_again = bisect.bisect_left(again, prefix + "\U0010ffff") - bisect.bisect_left(again, prefix)
            return math.ceil((stop - start + listed_again) * per_folder / self.page_size)

        names = [folder[len(parent):] for folder in folders]
        best: tuple[tuple[int, int], list[tuple[int, int, str]]] | None = None
        for width in range(1, max(map(len, names)) + 1):
            groups = [(start, stop, os.path.commonprefix(folders[start:stop]))
                      for start, stop in _runs([name[:width] for name in names])]
            pages = [pages_of(*group) for group in groups]
            cost = (max(max(pages), math.ceil(sum(pages) / self.list_concurrency)), sum(pages))
            if best is None or cost <= best[0]:  # a tie: the finer split, as per_folder
                best = (cost, groups)                 # may be short (a page size: unknown)
            if len(groups) == len(names):
                break
        tasks: list[_Task] = []
        for start, stop, prefix in best[1]:
            if stop - start == 1 or self._hidden.startswith(prefix):
                tasks += [_Task(folder) for folder in folders[start:stop]]
            else:  # from the group's first folder on: the prefix may cover folders before it
                tasks.append(_Task(prefix, folders[start], parent))
        return tasks

    def _task_pages(self, task: _Task) -> Iterator[list[ObjectInfo]]:
        pages = self._pages(task.prefix, start_after=task.after) if task.after else self._pages(task.prefix)
        if task.group_of is None:
            yield from pages
            return
        cut = len(task.group_of)  # a group: not the objects directly under its parent, which
        for page in pages:        # the delimiter listing gave
            yield [info for info in page if "/" in info.key[cut:]]

    @property
    def list_concurrency(self) -> int:
        return getattr(self.options, "list_concurrency", 1)

    def _keys(self, page: list[ObjectInfo]) -> list[ObjectInfo]:
        """Object names to keys, leaving out folder markers and the hidden folder."""
        cut = len(self.base)
        hidden = self._hidden
        return [
            info._replace(key=info.key[cut:])
            for info in page
            if not info.key.endswith("/") and not info.key.startswith(hidden)
            and not (_NESTED_HIDDEN in info.key and is_hidden(info.key[cut:]))
        ]

    def _refuse_file_path(self) -> None:
        """An empty listing of `path`: say so clearly if `path` names a single file."""
        name = self.base.rstrip("/")
        try:
            with self._mapped(f"checking path {name!r}"):
                self._head(name)
        except NotFound:
            return
        raise NotFound(
            f"{self.describe()}: path {name!r} is a file, not a folder; syncd syncs folders:"
            " set path to the folder that holds it",
            code="NotAFolder",
        )

    # -- objects --------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        name = self._name(key)
        with self._mapped(f"{key}"):
            info = self._head(name)
        return info._replace(key=key)


_DONE = object()


class _Task(NamedTuple):
    """One listing of a parallel listing: a prefix, from after the name `after`; for a group
    of folders, the folder `group_of` that holds them."""

    prefix: str
    after: str | None = None
    group_of: str | None = None


def _folders_in(page: list[ObjectInfo], level: str) -> dict[str, int]:
    """The sub-folders of `level` that `page` lists objects of, in order: how many each."""
    counts: dict[str, int] = {}
    for info in page:
        rest = info.key[len(level):]
        if info.key.startswith(level) and "/" in rest:
            folder = rest.split("/", 1)[0]
            counts[folder] = counts.get(folder, 0) + 1
    return counts


def _runs(labels: list[str]) -> Iterator[tuple[int, int]]:
    """(start, stop) of each run of equal neighbours in `labels`."""
    start = 0
    for index in range(1, len(labels) + 1):
        if index == len(labels) or labels[index] != labels[start]:
            yield start, index
            start = index


def fan_out(tasks: list, pages: Callable[[Any], Iterator[list]], workers: int) -> Iterator[list]:
    """Pages of every task's listing, `workers` listed at a time in threads, in the
    order they arrive. A worker's error is raised here; closing the iterator stops them."""
    results: queue.Queue = queue.Queue(maxsize=workers * 4)  # pages in memory: bounded
    stop = threading.Event()
    todo = iter(tasks)
    lock = threading.Lock()

    def put(item) -> None:
        while not stop.is_set():
            try:
                results.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            while not stop.is_set():
                with lock:
                    task = next(todo, None)
                if task is None:
                    break
                for page in pages(task):
                    put(page)
                    if stop.is_set():
                        break
        except BaseException as error:  # handed to the consumer, raised there
            put(error)
        finally:
            put(_DONE)

    threads = [threading.Thread(target=work, name="syncd-list", daemon=True)
               for _ in range(min(workers, len(tasks)))]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = results.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()


class RangeReader(io.RawIOBase):
    """A read-only stream over `fetch(start, end_inclusive) -> bytes`, one request per
    CHUNK_SIZE bytes at most. The first request is made at once, so that opening a missing
    object fails in `open()`, as it does for a local file."""

    def __init__(self, fetch: Callable[[int, int], bytes], offset: int, length: int | None,
                 chunk: int = CHUNK_SIZE):
        super().__init__()
        self._fetch = fetch
        self._position = offset
        self._end = None if length is None else offset + length  # exclusive
        self._chunk = chunk
        self._buffer = b""
        self._eof = False
        self._fill()

    def _fill(self) -> None:
        if self._eof:
            return
        size = self._chunk if self._end is None else min(self._chunk, self._end - self._position)
        if size <= 0:
            self._eof = True
            return
        data = self._fetch(self._position, self._position + size - 1)
        self._position += len(data)
        self._buffer += data
        if len(data) < size:
            self._eof = True

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        if not self._buffer:
            self._fill()
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count


class StreamReader(io.RawIOBase):
    """A read-only stream over an SDK object with `read(size)` (and maybe `close()`)."""

    def __init__(self, source):
        super().__init__()
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        data = self._source.read(len(target))
        target[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed and hasattr(self._source, "close"):
            self._source.close()
        super().close()


def buffered(raw: io.RawIOBase) -> BinaryIO:
    return io.BufferedReader(raw, buffer_size=64 * 1024)


def empty_stream() -> BinaryIO:
    return io.BytesIO(b"")


def payload(data) -> tuple[BinaryIO | bytes, int | None]:
    """(bytes or stream, its size if known without reading it)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), len(data)
    try:
        if data.seekable():
            here = data.tell()
            size = data.seek(0, io.SEEK_END) - here
            data.seek(here)
            return data, size
    except (AttributeError, OSError):
        pass
    return data, None
