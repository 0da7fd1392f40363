"""Azure Blob Storage through azure-storage-blob.

Credentials, the first that is set: `connection_string`; `account_url` with `sas_token` or
`account_key`; else `account_url` with DefaultAzureCredential (environment, managed identity,
Azure CLI login...) when the azure-identity package is installed. Retries of throttling and
5xx answers are azure-core's ExponentialRetry (`max_attempts`, `retry_backoff_seconds`).

Listings carry the Content-MD5 that Azure keeps for blobs uploaded in one request; blobs
uploaded in blocks (over 8 MiB here) have none unless the uploader set one.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit
from collections.abc import Iterator
from typing import Annotated

import azure.core.exceptions as aexc
from azure.storage.blob import (ContainerClient, ContentSettings, ExponentialRetry,
                                StandardBlobTier)

from .options import Meta, Secret
from .base import (
    Location,
    AlreadyExists,
    CredentialsRefused,
    DriverError,
    Features,
    InvalidKey,
    NotFound,
    ObjectInfo,
    PermissionDenied,
    Unreachable,
    retriable_status,
)
from .azure_listing import segments
from .cloud import (
    CHUNK_SIZE,
    CloudDriver,
    CloudOptions,
    StreamReader,
    buffered,
    empty_stream,
    one_line,
    payload,
    secret,
)

# Azure Storage error codes (x-ms-error-code) -> our errors; then by exception class.
ERRORS: dict[str, type[DriverError]] = {
    "BlobNotFound": NotFound,
    "ContainerNotFound": NotFound,
    "ResourceNotFound": NotFound,
    "AuthorizationPermissionMismatch": PermissionDenied,
    "AuthorizationFailure": PermissionDenied,
    "AuthorizationResourceTypeMismatch": PermissionDenied,
    "AuthorizationServiceMismatch": PermissionDenied,
    "AuthorizationSourceIPMismatch": PermissionDenied,
    "AuthorizationProtocolMismatch": PermissionDenied,
    "InsufficientAccountPermissions": PermissionDenied,
    "AuthenticationFailed": CredentialsRefused,
    "InvalidAuthenticationInfo": CredentialsRefused,
    "NoAuthenticationInformation": CredentialsRefused,
    "AccountIsDisabled": CredentialsRefused,
    "BlobAlreadyExists": AlreadyExists,
    "ConditionNotMet": AlreadyExists,
    "InvalidResourceName": InvalidKey,
    "InvalidUri": InvalidKey,
}
CLASSES: list[tuple[type[Exception], type[DriverError]]] = [
    (aexc.ResourceNotFoundError, NotFound),
    (aexc.ResourceExistsError, AlreadyExists),
    (aexc.ResourceModifiedError, AlreadyExists),
    (aexc.ClientAuthenticationError, CredentialsRefused),
    (aexc.ServiceRequestError, Unreachable),  # no connection
    (aexc.ServiceResponseError, Unreachable),
    (aexc.AzureError, DriverError),
]
_HINTS = {"ContainerNotFound": "no such container",
          "AuthenticationFailed": "credentials refused: wrong account key or SAS token"}


class AzureOptions(CloudOptions, kw_only=True):
    kind: str = "azure"
    container: Annotated[str, Meta(min_length=1)]
    connection_string: Secret | None = None
    account_url: str | None = None  # https://ACCOUNT.blob.core.windows.net
    sas_token: Secret | None = None
    account_key: Secret | None = None
    max_attempts: Annotated[int, Meta(ge=1)] = 5  # tries of a throttled or 5xx request
    retry_backoff_seconds: Annotated[float, Meta(ge=0)] = 2.0  # first wait; then x3 each time

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.connection_string is not None:
            self._check_connection_string(self.connection_string.get_secret_value())
        if self.storage_class is not None:
            self._set("storage_class", self._tier(self.storage_class))
        if self.connection_string is None and not self.account_url:
            raise ValueError("set connection_string, or account_url (with sas_token, "
                             "account_key, or azure-identity installed)")
        if self.endpoint_url:
            raise ValueError("endpoint_url: Azure uses account_url (or the connection string)")

    @staticmethod
    def _check_connection_string(value: str) -> None:
        """A malformed connection string is a config error, not a crash at the first call.
        The SDK's own parser decides (nothing is sent); its message holds no secret."""
        try:
            ContainerClient.from_connection_string(value, "check").close()
        except ValueError as error:
            raise ValueError(f"connection_string: malformed ({one_line(str(error)).rstrip('.')});"
                             " expected 'AccountName=...;AccountKey=...;...' as the Azure portal"
                             " shows it") from None

    @staticmethod
    def _tier(value: str) -> str:
        """Azure's access tiers (Hot, Cool, Cold, Archive), in the SDK's spelling."""
        for tier in StandardBlobTier:
            if value.lower() == tier.value.lower():
                return tier.value
        raise ValueError(f"storage_class: {value!r} is not an Azure access tier (one of: "
                         f"{', '.join(t.value for t in StandardBlobTier)})")

    def location(self) -> Location:
        return Location("azure", self.container, account=self.account_name(), prefix=self.path)

    def account_name(self) -> str | None:
        """The storage account, from the connection string or the account URL."""
        if self.connection_string is not None:
            for part in self.connection_string.get_secret_value().split(";"):
                name, _, value = part.partition("=")
                if name.strip().lower() == "accountname" and value:
                    return value.strip()
        if self.account_url:
            host = urlsplit(self.account_url).hostname or ""
            if host.endswith(".core.windows.net"):
                return host.split(".")[0]
        return None

class AzureDriver(CloudDriver):
    kind = "azure"
    features = Features(conditional_put=True, content_md5=True, ranged_reads=True)
    page_size = 5000  # Azure's maximum, and its default

    def __init__(self, options: AzureOptions):
        super().__init__(options)
        self.options: AzureOptions = options

    def describe(self) -> str:
        return f"azure://{self.options.container}/{self.base}"

    def secrets(self) -> tuple[str | None, ...]:
        o = self.options
        return (secret(o.connection_string), secret(o.sas_token), secret(o.account_key))

    @functools.cached_property
    def container(self) -> ContainerClient:
        o = self.options
        settings = dict(
            retry_policy=ExponentialRetry(initial_backoff=o.retry_backoff_seconds,
                                          increment_base=3, retry_total=o.max_attempts - 1,
                                          random_jitter_range=1),
            connection_timeout=o.timeout_seconds,
            read_timeout=o.timeout_seconds,
            max_single_put_size=CHUNK_SIZE,  # larger uploads go in blocks, streamed
            max_block_size=4 * 1024 * 1024,
            max_single_get_size=4 * 1024 * 1024,  # the first request of a download
            max_chunk_get_size=4 * 1024 * 1024,
        )
        with self._mapped(f"connecting to {self.describe()}"):
            if o.connection_string is not None:
                return ContainerClient.from_connection_string(
                    secret(o.connection_string), o.container, **settings)
            if o.sas_token is not None:
                credential = secret(o.sas_token).lstrip("?")
            elif o.account_key is not None:
                credential = secret(o.account_key)  # the SDK takes the account from the URL
            else:
                credential = _default_credential()
            return ContainerClient(o.account_url, o.container, credential=credential, **settings)

    def translate(self, error: Exception, what: str) -> DriverError | None:
        return translate(error, what)

    # -- listing --------------------------------------------------------------------------

    # Azure cannot start a listing after a name: what comes before it is listed and left out.

    def _pages(self, prefix: str, *, after_hidden: str | None = None,
               start_after: str | None = None) -> Iterator[list[ObjectInfo]]:
        for infos, _ in segments(self.container, prefix, page_size=self.page_size):
            if start_after and infos and infos[0].key <= start_after:
                infos = [info for info in infos if info.key > start_after]
            yield infos

    def _delimited(self, prefix: str, *, after_folder: str | None = None):
        def after(name: str) -> bool:
            return name > after_folder and not name.startswith(after_folder)

        for objects, prefixes in segments(self.container, prefix, delimiter="/",
                                          page_size=self.page_size):
            if after_folder:
                objects = [info for info in objects if after(info.key)]
                prefixes = [name for name in prefixes if after(name)]
            yield objects, prefixes

    def _head(self, name: str) -> ObjectInfo:
        return _info(self.container.get_blob_client(name).get_blob_properties())

    # -- objects --------------------------------------------------------------------------

    def open(self, key, *, offset=0, length=None):
        blob = self.container.get_blob_client(self._name(key))
        if length == 0:
            self.stat(key)
            return empty_stream()
        with self._mapped(key):
            try:
                download = blob.download_blob(offset=offset if offset or length else None, length=length,
                                              max_concurrency=1)
            except aexc.HttpResponseError as error:
                if error.error_code == "InvalidRange":  # offset at or past the end
                    return empty_stream()
                raise
        return buffered(StreamReader(download))

    def presign(self, key, *, seconds):
        """A read-only SAS URL signed with the account key; None with other credentials (a
        configured SAS token is the user's secret and is never handed out)."""
        import datetime

        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        credential = getattr(self.container, "credential", None)
        account_key = getattr(credential, "account_key", None)
        account_name = getattr(credential, "account_name", None)
        if not account_key or not account_name:
            return None
        name = self._name(key)
        sas = generate_blob_sas(account_name, self.options.container, name, account_key=account_key,
                                permission=BlobSasPermissions(read=True),
                                expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds))
        return self.container.get_blob_client(name).url + "?" + sas

    def put(self, key, data, *, content_type=None, overwrite=True):
        name = self._name(key)
        body, size = payload(data)
        arguments = {}
        if content_type:
            arguments["content_settings"] = ContentSettings(content_type=content_type)
        if self.options.storage_class:
            # The SDK takes the enum (a plain string crashes it: "'str' object has no
            # attribute 'value'"); the options hold a valid tier's name.
            arguments["standard_blob_tier"] = StandardBlobTier(self.options.storage_class)
        with self._mapped(key):
            # Over CHUNK_SIZE the SDK stages the stream in blocks; it is never read whole.
            self.container.upload_blob(name, body, length=size, overwrite=overwrite,
                                       max_concurrency=2, **arguments)
        return self.stat(key)

    def delete(self, key):
        with self._mapped(key):
            self.container.delete_blob(self._name(key), delete_snapshots="include")

    def close(self) -> None:
        container = self.__dict__.pop("container", None)
        if container is not None:
            container.close()


def _default_credential():
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise CredentialsRefused(
            "no Azure credentials: set connection_string, sas_token or account_key, "
            "or install azure-identity for DefaultAzureCredential", code="NoCredentials",
        ) from None
    return DefaultAzureCredential()


def _info(blob) -> ObjectInfo:
    md5 = blob.content_settings.content_md5 if blob.content_settings else None
    etag = blob.etag.strip('"') if blob.etag else None
    modified = blob.last_modified.timestamp() if blob.last_modified else 0.0
    return ObjectInfo(blob.name, blob.size or 0, modified, etag, bytes(md5).hex() if md5 else None)


def translate(error: Exception, what: str) -> DriverError | None:
    """One azure-core error as a DriverError naming `what`; None if it is not one."""
    code = getattr(error, "error_code", None)
    code = str(code.value if hasattr(code, "value") else code) if code else None
    kind = ERRORS.get(code) if code else None
    if kind is None:
        kind = next((k for sdk_class, k in CLASSES if isinstance(error, sdk_class)), None)
        if kind is None:
            return None
    status = getattr(error, "status_code", None)
    code = code or (str(status) if status else type(error).__name__)
    message = one_line(getattr(error, "message", None) or getattr(error, "reason", None) or str(error))
    if message.startswith("Operation returned an invalid status"):  # answers without a body
        message = one_line(getattr(error, "reason", None) or message)
    if isinstance(error, (aexc.ServiceRequestError, aexc.ServiceResponseError)):
        message = one_line(str(error))
    hint = _HINTS.get(code)
    # Errors without a class of their own: retriable if throttled, 5xx, or no answer.
    retriable = retriable_status(status) if kind is DriverError else None
    return kind(f"{what}: {code}: {message}" + (f" ({hint})" if hint else ""), code=code,
                retriable=retriable)
