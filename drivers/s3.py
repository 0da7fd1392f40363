"""Amazon S3 and S3-compatible storage (MinIO, R2, Ceph, moto) through boto3.

Credentials come from boto3's own chain unless the config names them: environment variables,
the shared credentials and config files (with `profile`), SSO, and instance or task roles.
Retries of throttling and 5xx answers are botocore's (`retry_mode`, `max_attempts`).

An S3 ETag is the MD5 of the content only for objects uploaded in one piece without SSE-KMS;
a multipart upload's ETag is "<md5 of the parts' md5s>-<parts>". So `md5` is the ETag when it
is 32 hex digits and None otherwise: a multipart object has an etag but no MD5.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterator
from typing import Annotated, Literal

import boto3
import botocore.exceptions
import botocore.utils
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
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
from .cloud import (
    CHUNK_SIZE,
    CloudDriver,
    CloudOptions,
    StreamReader,
    buffered,
    empty_stream,
    one_line,
    payload,
    redact,
    secret,
)

_MD5 = re.compile(r"^[0-9a-f]{32}$")

# S3 error codes (and bare HTTP statuses of HEAD answers, which have no body) -> our errors.
ERRORS: dict[str, type[DriverError]] = {
    "NoSuchKey": NotFound,
    "NoSuchBucket": NotFound,
    "NotFound": NotFound,
    "404": NotFound,
    "InvalidBucketName": NotFound,
    "AccessDenied": PermissionDenied,
    "AllAccessDisabled": PermissionDenied,
    "AccountProblem": PermissionDenied,
    "403": PermissionDenied,
    "InvalidAccessKeyId": CredentialsRefused,
    "SignatureDoesNotMatch": CredentialsRefused,
    "ExpiredToken": CredentialsRefused,
    "InvalidToken": CredentialsRefused,
    "TokenRefreshRequired": CredentialsRefused,
    "InvalidClientTokenId": CredentialsRefused,
    "AuthorizationHeaderMalformed": DriverError,  # usually the wrong region
    "PermanentRedirect": DriverError,  # the bucket is in another region
    "301": DriverError,
    "400": DriverError,
    "PreconditionFailed": AlreadyExists,
    "ConditionalRequestConflict": AlreadyExists,
    "412": AlreadyExists,
    "KeyTooLongError": InvalidKey,
}
# Answers worth another try whatever their status (the SDK has already retried them).
_TRANSIENT = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
              "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500"}
_NO_CREDENTIALS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.ProfileNotFound,
    botocore.exceptions.CredentialRetrievalError,
    botocore.exceptions.NoRegionError,
)
_NETWORK = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ProxyConnectionError,
    botocore.exceptions.SSLError,
)
_HINTS = {
    "NoSuchBucket": "no such bucket",
    "InvalidAccessKeyId": "credentials refused: unknown access key",
    "SignatureDoesNotMatch": "credentials refused: wrong secret key",
    "ExpiredToken": "credentials expired",
    "PermanentRedirect": "the bucket is in another region: set region",
    "AuthorizationHeaderMalformed": "wrong region: set region",
}


class S3Options(CloudOptions, kw_only=True):
    kind: str = "s3"
    bucket: Annotated[str, Meta(min_length=1)]
    region: str | None = None  # None: from the profile or AWS_REGION, else us-east-1
    profile: str | None = None  # a named profile of the shared config/credentials files
    access_key_id: Secret | None = None  # usually unset: boto3's chain finds credentials
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    max_attempts: Annotated[int, Meta(ge=1)] = 5  # tries of a throttled or 5xx request


    def location(self) -> Location:
        return Location("s3", self.bucket, prefix=self.path)

class S3Driver(CloudDriver):
    kind = "s3"
    features = Features(conditional_put=True, content_md5=True, ranged_reads=True)
    starts_after_names = True

    def __init__(self, options: S3Options):
        super().__init__(options)
        self.options: S3Options = options
        self.bucket = options.bucket

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.base}"
        if self.options.endpoint_url:
            where += f" at {redact(self.options.endpoint_url)}"
        return where

    def secrets(self) -> tuple[str | None, ...]:
        o = self.options
        return (secret(o.secret_access_key), secret(o.session_token), secret(o.access_key_id))

    # -- the client -----------------------------------------------------------------------

    @functools.cached_property
    def client(self):
        return self._new_client()

    @functools.cached_property
    def _conditional_client(self):
        """A second client whose object writes all carry If-None-Match: *, so that the SDK's
        own chunked upload is conditional too (s3transfer does not pass IfNoneMatch on)."""
        client = self._new_client()

        def if_none_match(params, **_):
            params["IfNoneMatch"] = "*"

        for operation in ("PutObject", "CompleteMultipartUpload"):
            client.meta.events.register(f"before-parameter-build.s3.{operation}", if_none_match)
        return client

    @functools.cached_property
    def _session(self) -> boto3.session.Session:
        o = self.options
        with self._mapped(f"connecting to {self.describe()}"):
            session = boto3.session.Session(
                profile_name=o.profile,
                aws_access_key_id=secret(o.access_key_id),
                aws_secret_access_key=secret(o.secret_access_key),
                aws_session_token=secret(o.session_token),
                region_name=o.region,
            )
        # botocore reads every timestamp with dateutil: 85% of the time it takes to read a
        # listing page of 1,000 objects. S3's are ISO 8601, which the standard library
        # reads a hundred times faster; other forms go to botocore's own parser.
        parsers = session._session.get_component("response_parser_factory")
        parsers.set_parser_defaults(timestamp_parser=_timestamp)
        return session

    def _new_client(self):
        o = self.options
        extra = {}
        if o.endpoint_url:
            # Many S3-compatible services reject the CRC checksums that recent boto3 sends
            # by default; AWS itself does not need them.
            extra = {"request_checksum_calculation": "when_required",
                     "response_checksum_validation": "when_required"}
        config = Config(
            retries={"mode": o.retry_mode, "total_max_attempts": o.max_attempts},
            connect_timeout=o.timeout_seconds,
            read_timeout=o.timeout_seconds,
            s3={"addressing_style": o.addressing_style},
            max_pool_connections=16,
            **extra,
        )
        with self._mapped(f"connecting to {self.describe()}"):
            return self._session.client("s3", endpoint_url=o.endpoint_url, config=config)

    def translate(self, error: Exception, what: str) -> DriverError | None:
        return translate(error, what)

    # -- listing --------------------------------------------------------------------------

    def _pages(self, prefix: str, *, after_hidden: str | None = None,
               start_after: str | None = None) -> Iterator[list[ObjectInfo]]:
        paginator = self.client.get_paginator("list_objects_v2")
        arguments = {"Bucket": self.bucket, "PaginationConfig": {"PageSize": self.page_size}}
        if prefix:
            arguments["Prefix"] = prefix
        if start_after:
            arguments["StartAfter"] = start_after
        if after_hidden:
            # Keys are listed in UTF-8 byte order: this is after every key under the folder
            # but a few absurd ones, which the caller filters out anyway.
            arguments["StartAfter"] = after_hidden + "\U0010ffff"
        for response in paginator.paginate(**arguments):
            yield [_info(item["Key"], item["Size"], item["LastModified"], item.get("ETag"))
                   for item in response.get("Contents", ())]

    def _delimited(self, prefix: str, *, after_folder: str | None = None):
        paginator = self.client.get_paginator("list_objects_v2")
        arguments = {"Bucket": self.bucket, "Delimiter": "/",
                     "PaginationConfig": {"PageSize": self.page_size}}
        if prefix:
            arguments["Prefix"] = prefix
        if after_folder:  # as after_hidden in _pages
            arguments["StartAfter"] = after_folder + "\U0010ffff"
        for response in paginator.paginate(**arguments):
            yield ([_info(item["Key"], item["Size"], item["LastModified"], item.get("ETag"))
                    for item in response.get("Contents", ())],
                   [entry["Prefix"] for entry in response.get("CommonPrefixes", ())])

    def _head(self, name: str) -> ObjectInfo:
        response = self.client.head_object(Bucket=self.bucket, Key=name)
        return _info(name, response["ContentLength"], response["LastModified"], response.get("ETag"))

    # -- objects --------------------------------------------------------------------------

    def open(self, key, *, offset=0, length=None):
        name = self._name(key)
        if length == 0:
            self.stat(key)
            return empty_stream()
        arguments = {"Bucket": self.bucket, "Key": name}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            arguments["Range"] = f"bytes={offset}-{end}"
        with self._mapped(key):
            try:
                response = self.client.get_object(**arguments)
            except botocore.exceptions.ClientError as error:
                if _code(error) == "InvalidRange":  # offset at or past the end
                    return empty_stream()
                raise
        return buffered(StreamReader(response["Body"]))

    def presign(self, key, *, seconds):
        with self._mapped(key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._name(key)},
                ExpiresIn=seconds)

    def put(self, key, data, *, content_type=None, overwrite=True):
        name = self._name(key)
        client = self.client if overwrite else self._conditional_client
        extra = {}
        if content_type:
            extra["ContentType"] = content_type
        if self.options.storage_class:
            extra["StorageClass"] = self.options.storage_class
        body, size = payload(data)
        with self._mapped(key):
            if isinstance(body, bytes) or (size is not None and size <= CHUNK_SIZE):
                client.put_object(Bucket=self.bucket, Key=name, Body=body, **extra)
            else:
                # Streams are uploaded in CHUNK_SIZE parts by the SDK, never read whole.
                client.upload_fileobj(body, self.bucket, name, ExtraArgs=extra,
                                      Config=_TRANSFER)
        return self.stat(key)

    def delete(self, key):
        name = self._name(key)
        with self._mapped(key):
            # DeleteObject succeeds on a missing key; the contract says NotFound.
            self.client.head_object(Bucket=self.bucket, Key=name)
            self.client.delete_object(Bucket=self.bucket, Key=name)

    def close(self) -> None:
        for attribute in ("client", "_conditional_client"):
            client = self.__dict__.pop(attribute, None)
            if client is not None:
                client.close()


_TRANSFER = TransferConfig(multipart_threshold=CHUNK_SIZE, multipart_chunksize=CHUNK_SIZE,
                           max_concurrency=4, use_threads=True)


def _timestamp(value: str) -> datetime.datetime:
    """A timestamp of a response, as botocore's parser reads it."""
    if value[10:11] == "T" and value[4:5] == "-":  # ISO 8601, as S3's XML has them
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)
    return botocore.utils.parse_timestamp(value)


def _info(name: str, size: int, modified, etag: str | None) -> ObjectInfo:
    etag = etag.strip('"') if etag else None
    md5 = etag if etag and _MD5.match(etag) else None
    return ObjectInfo(name, size, modified.timestamp(), etag, md5)


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code") or
               error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "Error"))


def translate(error: Exception, what: str) -> DriverError | None:
    """One botocore error as a DriverError naming `what`; None if it is not a storage error."""
    if isinstance(error, botocore.exceptions.ClientError):
        code = _code(error)
        message = one_line(error.response.get("Error", {}).get("Message") or str(error))
        kind = ERRORS.get(code, DriverError)
        hint = _HINTS.get(code)
        text = f"{what}: {code}: {message}" + (f" ({hint})" if hint else "")
        retriable = None  # the class decides, but for errors without a class of their own:
        if kind is DriverError:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            retriable = code in _TRANSIENT or retriable_status(status)
        return kind(text, code=code, retriable=retriable)
    if isinstance(error, _NO_CREDENTIALS):
        return CredentialsRefused(f"{what}: no usable AWS credentials: {one_line(str(error))}",
                                  code=type(error).__name__)
    if isinstance(error, _NETWORK):
        return Unreachable(f"{what}: {one_line(str(error))}", code=type(error).__name__)
    if isinstance(error, botocore.exceptions.ParamValidationError):
        return DriverError(f"{what}: {one_line(str(error))}", code=type(error).__name__,
                           retriable=False)  # a bad bucket name or argument
    if isinstance(error, botocore.exceptions.BotoCoreError):
        return DriverError(f"{what}: {one_line(str(error))}", code=type(error).__name__)
    return None
