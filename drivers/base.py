"""The storage driver contract: a small mandatory interface, typed errors, options.

Keys are POSIX-style paths relative to the driver's folder (its `root` for local storage,
its `path` prefix inside a bucket), never with a leading slash. Every driver:

- lists with pagination hidden behind `list_pages`, which yields lists of `ObjectInfo`
  page by page so that a caller never holds the whole bucket in memory;
- never lists a hidden `.dataloop/` folder (at any depth), nor empty folders;
- raises the errors below, keeping the SDK's own error as `__cause__`. Each error says
  whether trying again may help (`retriable`), decided once where the SDK's errors are
  mapped: a missing object, a refusal, a bad key or a conditional put that found an object
  are permanent; throttling, 5xx answers and lost connections are worth another try.

Permissions are not the driver's business: `drivers.guard.PermissionGuard` wraps any driver
and refuses a call outside the configured permissions before the driver sees it.
"""

from __future__ import annotations

import io
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from collections.abc import Callable
from typing import Annotated, BinaryIO, ClassVar, Literal, NamedTuple

from .options import Meta, Options

HIDDEN_FOLDER = ".dataloop"
PAGE_SIZE = 1000  # objects a page; the size S3 and GCS use

Permission = Literal["list", "get", "put", "delete"]
ALL_PERMISSIONS: tuple[Permission, ...] = ("list", "get", "put", "delete")
OnError = Callable[[str, str], None]  # (key, reason) of an entry a listing had to skip


class DriverError(Exception):
    """A storage operation failed."""

    code: str = "Error"  # the storage's own error code where it has one
    retriable: bool = True  # may the same call succeed later? (unknown failures: yes)

    def __init__(self, message: str, *, code: str | None = None, retriable: bool | None = None):
        super().__init__(message)
        if code:
            self.code = code
        if retriable is not None:
            self.retriable = retriable


class NotFound(DriverError, FileNotFoundError):
    """The object, bucket or folder does not exist."""

    code = "NotFound"
    retriable = False


class PermissionDenied(DriverError, PermissionError):
    """The configured permissions or the storage's credentials do not allow the call."""

    code = "AccessDenied"
    retriable = False


class CredentialsRefused(PermissionDenied):
    """The storage refused the credentials (unknown key, bad signature, expired token) or
    none were found: nothing is allowed until the configuration changes."""

    code = "CredentialsRefused"


class AlreadyExists(DriverError, FileExistsError):
    """A conditional put found an object already there."""

    code = "PreconditionFailed"
    retriable = False


class InvalidKey(DriverError, ValueError):
    """The key is not a valid relative path inside the driver's folder, or is too long."""

    code = "InvalidKey"
    retriable = False


class Unreachable(DriverError, ConnectionError):
    """The storage could not be reached, timed out, or is throttling or failing (5xx)."""

    code = "Unreachable"


def retriable_status(status: int | None) -> bool:
    """Is an HTTP answer with this status worth another try? Timeouts, throttling, 5xx and
    no answer at all are; any other client error (4xx) is not."""
    return status is None or status in (408, 425, 429) or status >= 500


class ObjectInfo(NamedTuple):
    """One object as listed. A tuple so that a page of them goes straight into SQLite."""

    key: str
    size: int
    mtime: float  # seconds since the epoch
    etag: str | None  # changes whenever the content changes; survives renames where it can
    md5: str | None  # hex MD5 of the content, only where the storage really has one


@dataclass(frozen=True)
class Features:
    """Optional capabilities, discovered by the driver; callers fall back when one is off."""

    conditional_put: bool = False  # put(..., overwrite=False) is atomic on the storage
    content_md5: bool = False  # listings carry a real MD5 of the content
    ranged_reads: bool = True
    # Listing mostly waits (on the network), so reading pages ahead in a thread overlaps
    # that wait with the catalogue's writes. Off where listing is CPU work in this process.
    threaded_listing: bool = True


@dataclass(frozen=True)
class Location:
    """Where a driver points, for routing bucket events and for messages."""

    storage: str  # local | s3 | gcs | azure
    bucket: str | None = None  # bucket, container, or the local root folder
    account: str | None = None  # Azure storage account, where known
    prefix: str = ""  # folder inside the bucket ("" = all of it)
    remote: bool = True  # reached over the network (stat concurrently, read ahead)


class DriverOptions(Options, kw_only=True):
    """Keys every `[[drivers]]` table has; each kind adds its own in a subclass."""

    name: Annotated[str, Meta(min_length=1)]
    kind: str
    path: str = ""  # folder inside the storage to sync; "" = all of it
    permissions: tuple[Permission, ...] = ALL_PERMISSIONS
    allow_delete: bool = False  # may syncd delete binaries (not only its own artifacts)?

    def __post_init__(self) -> None:
        path = self.path.strip("/")
        if path and any(part in ("", ".", "..") for part in path.split("/")):
            raise ValueError(f"path: {path!r} must be a plain folder path")
        self._set("path", path)
        self._set("permissions", tuple(dict.fromkeys(self.permissions)))

    def location(self) -> Location:
        """Where these options point; each kind says more."""
        return Location(self.kind, prefix=self.path)


MAX_KEY_BYTES = 1024  # the longest object name S3, GCS and Azure take (UTF-8 bytes)
MAX_NAME_BYTES = 255  # the longest file or folder name local filesystems take


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative key, else raise InvalidKey."""
    if not key or key.startswith("/") or "\x00" in key or "\\" in key:
        raise InvalidKey(f"invalid key {key!r}: keys are relative POSIX paths")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidKey(f"invalid key {key!r}: empty, '.' or '..' path segment")
    return key


def check_length(name: str, limit: int = MAX_KEY_BYTES) -> None:
    """Raise InvalidKey if `name` is longer than `limit` bytes in UTF-8."""
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > limit:
        raise InvalidKey(f"name too long: {shorten(name)} is {size} bytes in UTF-8, more than"
                         f" the {limit} bytes the storage takes", code="KeyTooLong")


def shorten(text: str, limit: int = 60) -> str:
    """`text` quoted, its middle cut out when it is long (a message must stay one line)."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[: limit // 2] + "…" + text[-limit // 2:])


def is_hidden(key: str) -> bool:
    """True for keys inside a hidden artifacts folder, at any depth: a dataset nested in a
    folder of another has its own `.dataloop/`, which is no more an item than the outer one."""
    return (key == HIDDEN_FOLDER or key.startswith(HIDDEN_FOLDER + "/")
            or f"/{HIDDEN_FOLDER}/" in key or key.endswith("/" + HIDDEN_FOLDER))


def join_prefix(prefix: str, key: str) -> str:
    return posixpath.join(prefix, key) if prefix else key


class Driver(ABC):
    """A storage folder. Subclasses implement the abstract methods; see the module docs."""

    kind: ClassVar[str]
    features: Features = Features()

    def __init__(self, options: DriverOptions):
        self.options = options
        self.name = options.name

    @abstractmethod
    def list_pages(self, prefix: str = "", *, on_error: OnError | None = None) -> Iterator[list[ObjectInfo]]:
        """Yield pages of objects whose key starts with `prefix`, hidden folder excluded.

        An entry that cannot be read is reported as on_error(key, reason) and skipped (a key
        naming a folder means nothing under it was listed); without on_error it raises.
        Raises NotFound if the driver's folder or bucket does not exist."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Return one object's info; raise NotFound if it does not exist."""

    @abstractmethod
    def open(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        """Open a stream of the object's bytes from `offset`, at most `length` of them."""

    @abstractmethod
    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        overwrite: bool = True,
    ) -> ObjectInfo:
        """Write an object from bytes or a stream. With overwrite=False, raise AlreadyExists
        when the key exists (atomically where `features.conditional_put`)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete an object; raise NotFound if it does not exist."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for page in self.list_pages(prefix):
            yield from page

    def read(self, key: str, *, offset: int = 0, length: int | None = None) -> bytes:
        with self.open(key, offset=offset, length=length) as stream:
            return stream.read()

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    @property
    def location(self) -> Location:
        return self.options.location()

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset(self.options.permissions)

    def describe(self) -> str:
        """Where this driver points, for messages (never includes credentials)."""
        return f"{self.kind}:{self.options.path or '/'}"

    def presign(self, key: str, *, seconds: int) -> str | None:
        """A URL that reads the object without credentials for `seconds`, or None where the
        storage (or the credentials at hand) cannot make one; callers then stream it."""
        return None

    def tidy(self) -> None:
        """Remove leftovers of syncd's own interrupted writes that the last listing found
        (called after a sync that writes; never by a dry run). Nothing by default."""

    def close(self) -> None:
        """Release connections."""


def as_stream(data: bytes | BinaryIO) -> BinaryIO:
    return io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
