"""Permission validation against the real storage, the way the reference platform does it.

`check_driver` lists the driver's folder (one page), writes a small permission test file under
the folder's hidden `.dataloop/` (never indexed as an item; deleting it needs no allow_delete),
reads it back, and deletes it when "delete" is among the configured permissions (otherwise
the file is left, and the report says where). Each of list/get/put/delete is reported as

    ok             the storage allowed it
    missing        the storage refused it (PermissionDenied, with the storage's own code)
    error          it failed for another reason (no such bucket, unreachable, ...)
    untested       it could not be tried (e.g. get, when put failed and nothing was listed)
    not requested  it is not in the driver's `permissions`, so it was not tried

list, get and put are mandatory (as in the reference platform): a report with one of them
missing or in error is not `ok`.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field

from drivers import Driver, DriverError, PermissionDenied
from drivers.base import ALL_PERMISSIONS, HIDDEN_FOLDER

TEST_KEY = f"{HIDDEN_FOLDER}/permission-test.txt"
MANDATORY = ("list", "get", "put")
_WITHOUT = {"list": "sync this storage", "get": "preprocess its images",
            "put": "write thumbnails or uploads to it"}


@dataclass
class PermissionResult:
    permission: str
    status: str  # ok | missing | error | untested | not requested
    code: str | None = None  # the storage's own error code
    message: str | None = None
    mandatory: bool = False


@dataclass
class CheckReport:
    driver: str
    where: str  # the driver's describe(): never includes credentials
    results: list[PermissionResult] = field(default_factory=list)
    test_file: str | None = None  # where the test file was left, if it was
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(r.mandatory and r.status in ("missing", "error") for r in self.results)

    def result(self, permission: str) -> PermissionResult:
        return next(r for r in self.results if r.permission == permission)

    def json_lines(self) -> list[dict]:
        """One object per permission, each naming the driver."""
        lines = []
        for result in self.results:
            line = {"driver": self.driver, "where": self.where, **asdict(result)}
            if result.permission == "delete" and self.test_file:
                line["test_file_left"] = self.test_file
            lines.append(line)
        return lines


def check_driver(driver: Driver, *, key: str = TEST_KEY) -> CheckReport:
    """Try each configured permission on the real storage; see the module docs."""
    configured = set(driver.options.permissions)
    report = CheckReport(driver.name, driver.describe())
    results = {p: PermissionResult(p, "not requested", mandatory=p in MANDATORY)
               for p in ALL_PERMISSIONS}
    report.results = [results[p] for p in ALL_PERMISSIONS]
    nonce = f"syncd permission test {secrets.token_hex(8)}\n".encode()

    first_key = None
    if "list" in configured:
        first_key = _try(results["list"], lambda: _first_key(driver))

    written = False
    if "put" in configured:
        written = _try(results["put"], lambda: driver.put(key, nonce)) is not None

    if "get" in configured:
        if written:
            data = _try(results["get"], lambda: driver.read(key))
            if results["get"].status == "ok" and data != nonce:
                results["get"].status = "error"
                results["get"].message = "the test file read back differs from what was written"
        elif first_key is not None:
            _try(results["get"], lambda: driver.read(first_key, length=1))
        else:
            results["get"].status = "untested"
            results["get"].message = "nothing to read: the test file was not written and no object was listed"

    if "delete" in configured:
        if written:
            _try(results["delete"], lambda: driver.delete(key))
            if results["delete"].status != "ok":
                report.test_file = _location(driver, key)
        else:
            results["delete"].status = "untested"
            results["delete"].message = "nothing to delete: the test file was not written"
    elif written:
        report.test_file = _location(driver, key)
        results["delete"].message = f"test file left at {report.test_file}"
    for permission in MANDATORY:
        if permission not in configured:
            report.notes.append(f"{permission!r} is not in permissions: syncd will not "
                                f"{_WITHOUT[permission]}")
    return report


def _first_key(driver: Driver) -> str | None:
    for page in driver.list_pages():
        if page:
            return page[0].key
    return None


def _try(result: PermissionResult, call):
    """Run one probe, recording ok, missing (refused) or error in `result`."""
    try:
        value = call()
    except DriverError as error:
        result.status = "missing" if isinstance(error, PermissionDenied) else "error"
        result.code, result.message = error.code, str(error)
        return None
    result.status = "ok"
    return value


def _location(driver: Driver, key: str) -> str:
    where = driver.describe().split(" at ", 1)[0]
    return where.rstrip("/") + "/" + key
