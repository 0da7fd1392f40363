"""Google Cloud Storage through google-cloud-storage.

Credentials: a service-account (or any google-auth) key file in `credentials_file`, else
Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, the
metadata server), or `anonymous = true` for public buckets and emulators. Retries of
throttling and 5xx answers are google-api-core's, bounded in time by `retry_seconds` (Google's
retry is a deadline, not a count of attempts).

Listings carry GCS's own MD5 (md5Hash); composite objects have none.
"""

from __future__ import annotations

import base64
import datetime
import io
import functools
from collections.abc import Iterator
from typing import Annotated

import google.api_core.exceptions as gexc
import google.auth.exceptions
import requests.exceptions
from google.auth.credentials import AnonymousCredentials
from google.oauth2 import service_account
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from .base import (
    AlreadyExists,
    CredentialsRefused,
    DriverError,
    Features,
    InvalidKey,
    Location,
    NotFound,
    ObjectInfo,
    PermissionDenied,
    Unreachable,
    retriable_status,
)
from .options import Meta
from .cloud import CHUNK_SIZE, CloudDriver, CloudOptions, RangeReader, buffered, empty_stream, one_line, payload, redact

LIST_FIELDS = "items(name,size,updated,etag,md5Hash),nextPageToken"
DELIMITED_FIELDS = "items(name,size,updated,etag,md5Hash),prefixes,nextPageToken"

# google-api-core's exception classes -> our errors (subclasses before their bases).
ERRORS: list[tuple[type[Exception], type[DriverError]]] = [
    (gexc.NotFound, NotFound),
    (gexc.Forbidden, PermissionDenied),
    (gexc.Unauthorized, CredentialsRefused),
    (gexc.PreconditionFailed, AlreadyExists),
    (gexc.BadRequest, InvalidKey),
    (google.auth.exceptions.DefaultCredentialsError, CredentialsRefused),
    (google.auth.exceptions.RefreshError, CredentialsRefused),  # the token endpoint said no
    (google.auth.exceptions.TransportError, Unreachable),
    (requests.exceptions.ConnectionError, Unreachable),
    (requests.exceptions.Timeout, Unreachable),
    (gexc.RetryError, Unreachable),  # retries ran out of time
    (gexc.GoogleAPIError, DriverError),
]


class GCSOptions(CloudOptions, kw_only=True):
    kind: str = "gcs"
    bucket: Annotated[str, Meta(min_length=1)]
    project: str | None = None  # None: from the credentials
    credentials_file: str | None = None  # service-account key file; None: ADC
    anonymous: bool = False  # no credentials at all: public buckets, emulators

    def location(self) -> Location:
        return Location("gcs", self.bucket, prefix=self.path)
    retry_seconds: Annotated[float, Meta(gt=0)] = 120.0  # retry throttling and 5xx this long
    retry_backoff_seconds: Annotated[float, Meta(gt=0)] = 1.0  # first wait; doubles each time


class GCSDriver(CloudDriver):
    kind = "gcs"
    features = Features(conditional_put=True, content_md5=True, ranged_reads=True)
    starts_after_names = True

    def __init__(self, options: GCSOptions):
        super().__init__(options)
        self.options: GCSOptions = options
        self.retry = DEFAULT_RETRY.with_timeout(options.retry_seconds).with_delay(
            initial=options.retry_backoff_seconds)
        self.timeout = options.timeout_seconds

    def describe(self) -> str:
        where = f"gs://{self.options.bucket}/{self.base}"
        if self.options.endpoint_url:
            where += f" at {redact(self.options.endpoint_url)}"
        return where

    @functools.cached_property
    def client(self) -> storage.Client:
        o = self.options
        with self._mapped(f"connecting to {self.describe()}"):
            if o.anonymous:
                credentials, project = AnonymousCredentials(), o.project or "anonymous"
            elif o.credentials_file:
                try:
                    credentials = service_account.Credentials.from_service_account_file(
                        o.credentials_file,
                        scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
                except (OSError, ValueError) as error:
                    raise CredentialsRefused(
                        f"credentials_file {o.credentials_file}: not a usable service-account"
                        f" key file ({type(error).__name__})", code="BadCredentialsFile",
                    ) from error
                project = o.project or credentials.project_id
            else:
                credentials, project = None, o.project  # the client runs google.auth.default()
            options = {"api_endpoint": o.endpoint_url} if o.endpoint_url else None
            client = storage.Client(project=project, credentials=credentials, client_options=options)
        # google-cloud-storage 3.x fetches each bucket's metadata for its tracing spans, in a
        # thread of its own at the first call: a request the driver never made, which needs
        # storage.buckets.get (a key limited to objects gets a 403) and races what the driver
        # sends. Without the cache (older versions have none) no such request is made.
        client._bucket_metadata_cache = None
        return client

    @functools.cached_property
    def bucket(self) -> storage.Bucket:
        return self.client.bucket(self.options.bucket)

    def translate(self, error: Exception, what: str) -> DriverError | None:
        return translate(error, what)

    # -- listing --------------------------------------------------------------------------

    def _pages(self, prefix: str, *, after_hidden: str | None = None,
               start_after: str | None = None) -> Iterator[list[ObjectInfo]]:
        blobs = self.client.list_blobs(
            self.options.bucket, prefix=prefix or None, page_size=self.page_size, fields=LIST_FIELDS,
            # startOffset is inclusive: '0' is the character after '/'.
            start_offset=after_hidden[:-1] + "0" if after_hidden else start_after,
            retry=self.retry, timeout=self.timeout,
        )
        try:
            for page in blobs.pages:
                yield [_info(blob) for blob in page if blob.name != start_after]
        except gexc.NotFound as error:  # a listing finds no bucket, never no objects
            raise NotFound(f"listing {self.describe()}: NoSuchBucket: no such bucket",
                           code="NoSuchBucket") from error

    def _delimited(self, prefix: str, *, after_folder: str | None = None):
        blobs = self.client.list_blobs(
            self.options.bucket, prefix=prefix or None, delimiter="/", page_size=self.page_size,
            fields=DELIMITED_FIELDS, retry=self.retry, timeout=self.timeout,
            start_offset=after_folder[:-1] + "0" if after_folder else None,  # as in _pages
        )
        try:
            for page in blobs.pages:
                objects = [_info(blob) for blob in page]
                yield objects, sorted(page.prefixes)
        except gexc.NotFound as error:
            raise NotFound(f"listing {self.describe()}: NoSuchBucket: no such bucket",
                           code="NoSuchBucket") from error

    def _head(self, name: str) -> ObjectInfo:
        blob = self.bucket.blob(name)
        blob.reload(retry=self.retry, timeout=self.timeout)
        return _info(blob)

    # -- objects --------------------------------------------------------------------------

    def open(self, key, *, offset=0, length=None):
        blob = self.bucket.blob(self._name(key))
        if length == 0:
            self.stat(key)
            return empty_stream()

        def fetch(start: int, end: int) -> bytes:
            with self._mapped(key):
                try:
                    return blob.download_as_bytes(start=start, end=end, raw_download=True,
                                                  checksum=None, retry=self.retry,
                                                  timeout=self.timeout)
                except gexc.RequestRangeNotSatisfiable:
                    return b""

        return buffered(RangeReader(fetch, offset, length))

    def presign(self, key, *, seconds):
        """A V4 signed URL; needs credentials that can sign (a service-account key, or
        impersonation): with others (anonymous, most user logins) there is none."""
        import datetime

        blob = self.bucket.blob(self._name(key))
        try:
            return blob.generate_signed_url(version="v4", method="GET",
                                            expiration=datetime.timedelta(seconds=seconds),
                                            api_access_endpoint=self.options.endpoint_url or None)
        except (AttributeError, TypeError, ValueError, NotImplementedError):
            return None  # these credentials cannot sign

    def put(self, key, data, *, content_type=None, overwrite=True):
        blob = self.bucket.blob(self._name(key), chunk_size=CHUNK_SIZE)
        if self.options.storage_class:
            blob.storage_class = self.options.storage_class
        body, size = payload(data)
        if not isinstance(body, bytes) and size is None:
            body = _Forward(body)  # resumable uploads ask the stream where it is
        condition = {} if overwrite else {"if_generation_match": 0}
        with self._mapped(key):
            if isinstance(body, bytes):
                blob.upload_from_string(body, content_type=content_type, retry=self.retry,
                                        timeout=self.timeout, **condition)
            else:
                # Up to CHUNK_SIZE in one request, else a resumable upload in CHUNK_SIZE parts.
                small = size is not None and size <= CHUNK_SIZE
                if small:
                    blob.chunk_size = None
                blob.upload_from_file(body, size=size if small else None,
                                      content_type=content_type, retry=self.retry,
                                      timeout=self.timeout, **condition)
        return _info(blob)._replace(key=key)

    def delete(self, key):
        with self._mapped(key):
            self.bucket.delete_blob(self._name(key), retry=self.retry, timeout=self.timeout)

    def close(self) -> None:
        client = self.__dict__.pop("client", None)
        self.__dict__.pop("bucket", None)
        if client is not None:
            client.close()


class _Forward(io.RawIOBase):
    """A forward-only stream that can say how much of it was read (tell)."""

    def __init__(self, stream):
        super().__init__()
        self._stream, self._position = stream, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._position += len(data)
        return data

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def tell(self) -> int:
        return self._position


def _info(blob: storage.Blob) -> ObjectInfo:
    md5 = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else None
    return ObjectInfo(blob.name, blob.size or 0, _modified(blob), blob.etag, md5)


def _modified(blob: storage.Blob) -> float:
    """The blob's `updated` in seconds. Read with datetime.fromisoformat: `Blob.updated`
    parses it with strptime each time it is read, a third of a listing's CPU."""
    value = blob._properties.get("updated")
    if not value:
        return 0.0
    try:
        return datetime.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return blob.updated.timestamp()


def translate(error: Exception, what: str) -> DriverError | None:
    """One google-cloud error as a DriverError naming `what`; None if it is not one."""
    for sdk_class, kind in ERRORS:
        if isinstance(error, sdk_class):
            break
    else:
        return None
    if kind is CredentialsRefused and getattr(error, "retryable", False):
        kind = Unreachable  # google-auth says the token endpoint may answer next time
    if isinstance(error, gexc.GoogleAPICallError):
        code = str(error.code or type(error).__name__)
        details = [e for e in error.errors or () if isinstance(e, dict)]
        reason = details[0].get("reason") if details else None
        # The SDK's own message is "VERB URL: <answer body>"; the body's message is the news.
        message = one_line(details[0].get("message") if details else error.message)
        if isinstance(error, gexc.NotFound) and "bucket" in message.lower():
            code = "NoSuchBucket"
        text = f"{what}: {code}{' ' + reason if reason else ''}: {message}"
        if kind is DriverError:  # no class of its own: retriable if throttled or 5xx
            return kind(text, code=code, retriable=retriable_status(error.code))
    else:
        code = type(error).__name__
        text = f"{what}: {code}: {one_line(str(error))}"
        if isinstance(error, google.auth.exceptions.DefaultCredentialsError):
            text = (f"{what}: no Google credentials: set credentials_file, run "
                    "`gcloud auth application-default login`, or anonymous = true")
    return kind(text, code=code)
