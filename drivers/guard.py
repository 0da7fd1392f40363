"""Permission enforcement: one wrapper around any driver, checked before a request is sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from .base import Driver, ObjectInfo, Permission, PermissionDenied, check_key, is_hidden


class PermissionGuard(Driver):
    """Refuses every call that the driver's configured permissions do not allow.

    `delete` needs the "delete" permission; deleting anything outside the hidden artifacts
    folder (a user's binary) also needs `allow_delete = true`, as in the reference platform.
    """

    def __init__(self, inner: Driver):
        super().__init__(inner.options)
        self.inner = inner
        self.kind = inner.kind
        self.features = inner.features

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise PermissionDenied(
                f"driver {self.name!r} is not configured with the {permission!r} permission"
                f" (permissions = {sorted(self.permissions)})",
                code="NotConfigured",
            )

    def list_pages(self, prefix: str = "", *, on_error=None) -> Iterator[list[ObjectInfo]]:
        self.require("list")
        return self.inner.list_pages(prefix, on_error=on_error)

    def stat(self, key: str) -> ObjectInfo:
        self.require("get")
        return self.inner.stat(key)

    def open(self, key: str, *, offset: int = 0, length: int | None = None) -> BinaryIO:
        self.require("get")
        return self.inner.open(key, offset=offset, length=length)

    def put(self, key, data, *, content_type=None, overwrite=True) -> ObjectInfo:
        self.require("put")
        return self.inner.put(key, data, content_type=content_type, overwrite=overwrite)

    def delete(self, key: str) -> None:
        self.require("delete")
        if not is_hidden(check_key(key)) and not self.options.allow_delete:
            raise PermissionDenied(
                f"driver {self.name!r} may not delete binaries: set allow_delete = true",
                code="NotConfigured",
            )
        self.inner.delete(key)

    def tidy(self) -> None:
        if "put" in self.permissions:  # syncd's own temporary files: no allow_delete needed
            self.inner.tidy()

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()
