"""Storage drivers. `open_driver(options)` returns a driver wrapped in its permission guard.

Each kind registers its options model and driver class in KINDS; the options model is what
a `[[drivers]]` table in the config is validated against.
"""

from __future__ import annotations

import importlib

from .base import (
    ALL_PERMISSIONS,
    HIDDEN_FOLDER,
    AlreadyExists,
    CredentialsRefused,
    Driver,
    DriverError,
    DriverOptions,
    Features,
    InvalidKey,
    Location,
    NotFound,
    ObjectInfo,
    PermissionDenied,
    Unreachable,
)
from .guard import PermissionGuard

# kind -> "module:OptionsClass:DriverClass"; modules are imported only when used, so that a
# local-only setup never imports a cloud SDK.
KINDS: dict[str, str] = {
    "local": "drivers.local:LocalOptions:LocalDriver",
    "s3": "drivers.s3:S3Options:S3Driver",
    "gcs": "drivers.gcs:GCSOptions:GCSDriver",
    "azure": "drivers.azure:AzureOptions:AzureDriver",
}


def _load(kind: str) -> tuple[type[DriverOptions], type[Driver]]:
    try:
        module_name, options_name, driver_name = KINDS[kind].split(":")
    except KeyError:
        raise ValueError(f"unknown driver kind {kind!r}; known kinds: {', '.join(KINDS)}") from None
    module = importlib.import_module(module_name)
    return getattr(module, options_name), getattr(module, driver_name)


def options_model(kind: str) -> type[DriverOptions]:
    return _load(kind)[0]


def open_driver(options: DriverOptions) -> PermissionGuard:
    _, driver_class = _load(options.kind)
    return PermissionGuard(driver_class(options))


__all__ = [
    "ALL_PERMISSIONS", "HIDDEN_FOLDER", "KINDS", "AlreadyExists", "CredentialsRefused", "Driver",
    "DriverError",
    "DriverOptions", "Features", "InvalidKey", "Location", "NotFound", "ObjectInfo", "PermissionDenied",
    "PermissionGuard", "Unreachable", "open_driver", "options_model",
]
