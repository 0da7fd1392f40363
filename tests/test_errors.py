"""Errors and exit codes a script can rely on: one line on stderr naming the cause, never a
traceback, and the README's exit code. Against real storage (moto with IAM, Azurite), real
filesystems (a read-only file, a full tmpfs) and real signals to a real `syncd` process."""

from __future__ import annotations

import json
import logging
from collections import Counter
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import images
from conftest import Runner, local_config, put_file, write_config
from emulators import AZURITE_ACCOUNT, azure_service, s3_client, unique_name
from syncd.catalogue import Catalogue
from syncd.catalogue.jobs import JobQueue
from syncd.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def one_line(result) -> str:
    """The single stderr line of a failed command (a traceback would be many)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("syncd: error: "), lines[0]
    return lines[0]


# -- names that do not exist: exit 3 ------------------------------------------------------------

def test_unknown_dataset_or_driver_exits_3(run, tmp_path):
    local = put_file(tmp_path / "upload", "a.csv", "ID,URL\n")
    for args in (["sync", "nope"], ["items", "list", "nope"], ["jobs", "run", "--dataset", "nope"],
                 ["drivers", "check", "nope"], ["rm", "nope", "/a.jpg"], ["put", "nope", str(local)],
                 ["upload", str(local.parent), "--dataset", "nope"],
                 ["import", "csv", str(local), "--dataset", "nope"],
                 ["items", "set-meta", "nope", "/a.jpg", "k=v"]):
        line = one_line(run(*args, expect=3))
        assert "named 'nope'" in line, args
    assert "(drivers: disk)" in one_line(run("drivers", "check", "nope", expect=3))
    assert "(datasets: photos)" in one_line(run("sync", "nope", expect=3))


# -- max_delete_percent: exit 6 -----------------------------------------------------------------

def test_a_sync_refused_by_max_delete_percent_exits_6(tmp_path, storage):
    run = Runner(local_config(tmp_path, storage, extra="[sync]\nmax_delete_percent = 20\n"))
    files = [put_file(storage, f"{i}.txt", str(i)) for i in range(10)]
    run("sync", "--no-preprocess")
    for file in files[:5]:
        file.unlink()
    result = run("sync", "--no-preprocess", "--json", expect=6)
    [summary] = [json.loads(line) for line in result.stdout.splitlines()]
    assert summary["deleted"] == 0 and "max_delete_percent" in summary["deletes_skipped"]
    assert "deletions not applied" in result.stderr and "photos" in result.stderr
    states = {i["state"] for i in run.json_lines("items", "list", "photos")}
    assert states == {"present"}  # nothing deleted
    result = run("sync", "--no-preprocess", expect=6)  # the human output too
    assert "photos: listed 5" in result.stdout
    files[0].write_text("0")  # 4 of 10 gone is still more than 20%...
    run("sync", "--no-preprocess", expect=6)
    for file in files[1:5]:
        file.write_text("back")  # ...none gone: exit 0 again
    run("sync", "--no-preprocess")


# -- the catalogue: one line whatever is wrong with it ------------------------------------------

@pytest.fixture
def catalogue_path(tmp_path) -> Path:
    return tmp_path / "catalogue.db"


def test_a_catalogue_written_by_a_newer_syncd(run, catalogue_path):
    run("sync")
    with sqlite3.connect(catalogue_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    for args in (["sync"], ["items", "list", "photos"]):
        line = one_line(run(*args, expect=1))
        assert f"catalogue {catalogue_path}: written by a newer syncd" in line
        assert "upgrade syncd" in line


def test_a_corrupt_catalogue(run, catalogue_path):
    catalogue_path.write_bytes(os.urandom(8192))
    line = one_line(run("sync", expect=1))
    assert f"catalogue {catalogue_path}: the file is corrupt" in line


def test_a_damaged_catalogue(run, catalogue_path, storage):
    for i in range(200):
        put_file(storage, f"{i:03d}.txt", "x" * i)
    run("sync", "--no-preprocess")
    run("items", "list", "photos")  # a reader's checkpoint: everything is in the main file
    for suffix in ("-wal", "-shm"):
        Path(f"{catalogue_path}{suffix}").unlink(missing_ok=True)
    data = catalogue_path.read_bytes()
    catalogue_path.write_bytes(data[:4096] + b"\xff" * (len(data) - 4096))  # all but page 1
    line = one_line(run("items", "list", "photos", expect=1))
    assert f"catalogue {catalogue_path}: the file is corrupt" in line


def test_a_catalogue_path_that_is_a_folder(run, catalogue_path):
    catalogue_path.mkdir()
    line = one_line(run("sync", expect=1))
    assert line.endswith(f"catalogue {catalogue_path}: is a folder, not a file; set [catalogue] "
                         "path to a file name")


def test_a_read_only_catalogue(run, catalogue_path):
    run("sync")
    with read_only(catalogue_path):
        line = one_line(run("sync", expect=1))
        assert f"catalogue {catalogue_path}: read-only" in line
        result = run("items", "list", "photos", expect=None)  # reading may work; never a traceback
        if result.exit_code:
            one_line(result)


class read_only:
    """Make a file read-only even for root: `chattr +i` (root, where the filesystem has it),
    else permission bits (which bind everyone else)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        if os.geteuid() == 0:
            if shutil.which("chattr") is None:
                pytest.skip("cannot make a file read-only as root here: no chattr (e2fsprogs)")
            done = subprocess.run(["chattr", "+i", str(self.path)], capture_output=True)
            if done.returncode:
                pytest.skip(f"cannot make a file read-only as root here: {done.stderr!r}")
        else:
            self.path.chmod(0o444)
        return self.path

    def __exit__(self, *exc):
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(self.path)], check=True)
        else:
            self.path.chmod(0o644)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs, or None where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = None
    if shutil.which("mount") and os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                              capture_output=True)
    if done is None or done.returncode:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path, storage, tiny_disk):
    if tiny_disk is None:
        return full_by_file_size_limit(tmp_path, storage)
    config = write_config(tmp_path / "tiny.toml", local_config(tmp_path, storage).read_text()
                          .replace(str(tmp_path / "catalogue.db"), str(tiny_disk / "c.db")))
    run = Runner(config)
    put_file(storage, "first.txt", "1")
    run("sync", "--no-preprocess")
    for i in range(4000):
        put_file(storage, f"folder-{i // 100}/a-file-with-a-rather-long-name-{i:05d}.txt", "x")
    line = one_line(run("sync", "--no-preprocess", expect=1))
    assert line.startswith(f"syncd: error: catalogue {tiny_disk / 'c.db'}: the disk is full")
    # The catalogue is as it was before the failed sync.
    assert [i["filename"] for i in run.json_lines("items", "list", "photos")] == ["/first.txt"]


def full_by_file_size_limit(tmp_path, storage) -> None:
    """Where no tmpfs can be mounted: the same sync in a process whose files may not grow
    past a limit (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG)."""
    config = local_config(tmp_path, storage)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "syncd", "--config", str(config), "sync", "--no-preprocess"]
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    for i in range(4000):
        put_file(storage, f"folder-{i // 100}/a-file-with-a-rather-long-name-{i:05d}.txt", "x")
    limit = (tmp_path / "catalogue.db").stat().st_size + 64 * 1024

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(command, env=env, capture_output=True, text=True, preexec_fn=limited)
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"syncd: error: catalogue {tmp_path / 'catalogue.db'}: ")
    assert "disk" in line


def test_a_full_disk_under_local_storage_is_one_line(tmp_path, storage, tiny_disk):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(512 * 1024))
    if tiny_disk is None:  # a file size limit instead: writes past it fail with EFBIG
        config = local_config(tmp_path, storage)
        command = [sys.executable, "-m", "syncd", "--config", str(config), "put", "photos",
                   str(big), "--no-preprocess"]

        def limited():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

        Runner(config)("sync")  # the catalogue exists, and is small
        done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, preexec_fn=limited)
        assert done.returncode == 4, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert "big.bin: file too large" in line
        assert not [p for p in storage.rglob("*") if p.is_file()]
        return
    run = Runner(local_config(tmp_path, tiny_disk))
    line = one_line(run("put", "photos", str(big), "--no-preprocess", expect=4))
    assert "no space left on the device" in line and "big.bin" in line
    assert not [p for p in tiny_disk.rglob("*") if p.is_file()]  # no half-written file left


# -- names too long --------------------------------------------------------------------------------

def test_an_over_long_name_is_one_line(run, tmp_path):
    local = tmp_path / "a.jpg"
    local.write_bytes(images.oriented_jpeg(1))
    name = "/" + "n" * 300 + ".jpg"
    line = one_line(run("put", "photos", str(local), "--as", name, expect=2))
    assert "name too long" in line and "more than the 255 bytes" in line
    assert len(line) < 300  # the name itself is shortened


def test_an_over_long_key_in_a_bucket_is_one_line(s3_endpoint, tmp_path):
    bucket = s3_endpoint.new_bucket()
    config = write_config(tmp_path / "s3.toml", f"""
        [catalogue]
        path = "{tmp_path / 'c.db'}"
        {s3_endpoint.toml(bucket, name="s3")}
        [[datasets]]
        name = "photos"
        driver = "s3"
        """)
    local = tmp_path / "a.txt"
    local.write_text("a")
    name = "/" + "/".join(["folder" * 20] * 9) + ".txt"  # 1,088 bytes
    line = one_line(Runner(config)("put", "photos", str(local), "--as", name, expect=2))
    assert "name too long" in line and "more than the 1024 bytes" in line
    assert not s3_client(s3_endpoint).list_objects_v2(Bucket=bucket).get("Contents")


# -- a malformed Azure connection string --------------------------------------------------------

@pytest.mark.parametrize("value", ["not a connection string", "AccountKey=abc;;=;"])
def test_a_malformed_azure_connection_string_is_a_config_error(tmp_path, value, monkeypatch):
    monkeypatch.setenv("AZ_CONNECTION", value)
    config = write_config(tmp_path / "az.toml", f"""
        [catalogue]
        path = "{tmp_path / 'c.db'}"
        [[drivers]]
        name = "az"
        kind = "azure"
        container = "photos"
        connection_string = "${{AZ_CONNECTION}}"
        [[datasets]]
        name = "photos"
        driver = "az"
        """)
    line = one_line(Runner(config)("sync", expect=2))
    assert "drivers[0] ('az'): connection_string: malformed" in line
    assert value not in line


def test_an_azure_storage_class_that_is_no_tier_is_a_config_error(tmp_path):
    config = write_config(tmp_path / "az.toml", f"""
        [catalogue]
        path = "{tmp_path / 'c.db'}"
        [[drivers]]
        name = "az"
        kind = "azure"
        container = "photos"
        account_url = "https://acct.blob.core.windows.net"
        storage_class = "GLACIER"
        """)
    line = one_line(Runner(config)("sync", expect=2))
    assert "storage_class: 'GLACIER' is not an Azure access tier" in line and "Cool" in line


# -- refused credentials: "refused", exit 4, and `drivers check` says missing ------------------

@pytest.fixture
def iam_bucket(s3_iam):
    bucket = unique_name("refused")
    admin = s3_client(s3_iam.endpoint, **s3_iam.users["admin"])
    admin.create_bucket(Bucket=bucket)
    admin.put_object(Bucket=bucket, Key="photo.jpg", Body=images.oriented_jpeg(1))
    return bucket


def config_with(tmp_path, driver_toml: str, name: str = "syncd.toml") -> Runner:
    return Runner(write_config(tmp_path / name, f"""
[catalogue]
path = "{tmp_path / 'c.db'}"

{driver_toml}
[[datasets]]
name = "photos"
driver = "store"

[preprocess]
workers = 0
retry_delay_seconds = 0
"""))


def statuses(run: Runner) -> dict[str, tuple[str, str | None]]:
    result = run("drivers", "check", "store", "--json", expect=4)
    return {line["permission"]: (line["status"], line["code"])
            for line in map(json.loads, result.stdout.splitlines())}


@pytest.mark.parametrize("keys", [
    {"access_key_id": "AKIANOTAREALKEY0000", "secret_access_key": "wrong-secret-value"},
    "wrong secret",
])
def test_s3_refused_credentials(s3_iam, iam_bucket, tmp_path, keys):
    if keys == "wrong secret":
        keys = {**s3_iam.users["admin"], "secret_access_key": "wrong-secret-value"}
    run = config_with(tmp_path, s3_iam.endpoint.toml(iam_bucket, name="store", **keys))
    found = statuses(run)
    code = "InvalidAccessKeyId" if keys["access_key_id"].startswith("AKIANOT") else "SignatureDoesNotMatch"
    assert found["list"] == ("missing", code) and found["put"] == ("missing", code)
    line = one_line(run("sync", expect=4))
    assert "credentials refused" in line and "unreachable" not in line
    assert "wrong-secret-value" not in line


def test_azure_refused_account_key_and_sas(azure_endpoint, tmp_path):
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container = azure_endpoint.new_bucket()
    azure_service(azure_endpoint).get_container_client(container).upload_blob("a.jpg", b"a")
    connection = azure_endpoint.credentials["connection_string"]
    right_key = connection.split("AccountKey=")[1].split(";")[0]
    wrong_key = "d3Jvbmcga2V5IGZvciB0aGUgdGVzdA=="
    bad_key = connection.replace(right_key, wrong_key)
    run = config_with(tmp_path, azure_endpoint.toml(container, name="store", connection_string=bad_key))
    found = statuses(run)
    assert found["list"][0] == "missing" and found["put"][0] == "missing"
    line = one_line(run("sync", expect=4))
    assert "unreachable" not in line and wrong_key not in line
    # A SAS signed with another key than the account's: refused the same way.
    token = generate_container_sas(AZURITE_ACCOUNT, container, account_key=wrong_key,
                                   permission=ContainerSasPermissions(read=True, list=True, write=True),
                                   expiry=datetime.now(UTC) + timedelta(hours=1))
    sas = (f'[[drivers]]\nname = "store"\nkind = "azure"\ncontainer = "{container}"\n'
           f'account_url = "{azure_endpoint.url}"\nsas_token = "{token}"\nmax_attempts = 1\n')
    run = config_with(tmp_path, sas, name="sas.toml")
    found = statuses(run)
    assert found["list"][0] == "missing" and found["put"][0] == "missing"
    assert "unreachable" not in one_line(run("sync", expect=4))


def test_gcs_unusable_key_file_is_refused(gcs_endpoint, tmp_path):
    """fake-gcs-server accepts any credentials, so a refused key is a key file that cannot
    sign anything: refused before a request, the same error as a revoked key."""
    key_file = tmp_path / "key.json"
    key_file.write_text('{"type": "service_account", "private_key": "SECRET"}')
    run = config_with(tmp_path, gcs_endpoint.toml("any-bucket", name="store", anonymous=False,
                                                  credentials_file=str(key_file)))
    found = statuses(run)
    assert found["list"] == ("missing", "BadCredentialsFile")
    assert "credentials refused" in one_line(run("sync", expect=4))


# -- permanent driver errors are not retried -------------------------------------------------

def test_a_job_whose_credentials_are_refused_fails_at_once(s3_iam, iam_bucket, tmp_path):
    admin = config_with(tmp_path, s3_iam.endpoint.toml(iam_bucket, name="store", **s3_iam.users["admin"]))
    admin("sync", "--no-preprocess")
    wrong = {**s3_iam.users["admin"], "secret_access_key": "wrong-secret-value"}
    refused = config_with(tmp_path, s3_iam.endpoint.toml(iam_bucket, name="store", **wrong),
                          name="refused.toml")
    [summary] = refused.json_lines("jobs", "run", expect=5)
    assert (summary["failed"], summary["retried"]) == (1, 0)
    [job] = refused.json_lines("jobs", "list")
    assert (job["state"], job["attempts"]) == ("failed", 1)
    assert job["error"].startswith("permission denied: ") and "SignatureDoesNotMatch" in job["error"]


def test_retriable_is_decided_where_each_sdk_is_mapped():
    """Each SDK's own exceptions, as its client raises them, through the driver's table."""
    import azure.core.exceptions as aexc
    import google.api_core.exceptions as gexc
    import google.auth.exceptions
    from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError

    from drivers import AlreadyExists, CredentialsRefused, DriverError, InvalidKey, NotFound
    from drivers import PermissionDenied, Unreachable
    from drivers import azure, gcs, s3

    def aws(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    def az(error_class, code: str | None, status: int):
        error = error_class(message="m")
        error.error_code, error.status_code = code, status
        return error

    cases = [
        (s3, aws("NoSuchKey", 404), NotFound, False),
        (s3, aws("AccessDenied", 403), PermissionDenied, False),
        (s3, aws("InvalidAccessKeyId", 403), CredentialsRefused, False),
        (s3, aws("PreconditionFailed", 412), AlreadyExists, False),
        (s3, aws("KeyTooLongError", 400), InvalidKey, False),
        (s3, aws("InvalidArgument", 400), DriverError, False),
        (s3, aws("SlowDown", 503), DriverError, True),
        (s3, aws("InternalError", 500), DriverError, True),
        (s3, EndpointConnectionError(endpoint_url="http://x"), Unreachable, True),
        (s3, ParamValidationError(report="bad bucket"), DriverError, False),
        (azure, az(aexc.ResourceNotFoundError, "BlobNotFound", 404), NotFound, False),
        (azure, az(aexc.ClientAuthenticationError, "AuthenticationFailed", 403), CredentialsRefused, False),
        (azure, az(aexc.HttpResponseError, "AuthorizationPermissionMismatch", 403), PermissionDenied, False),
        (azure, az(aexc.ResourceExistsError, "BlobAlreadyExists", 409), AlreadyExists, False),
        (azure, az(aexc.HttpResponseError, "InvalidResourceName", 400), InvalidKey, False),
        (azure, az(aexc.HttpResponseError, "ServerBusy", 503), DriverError, True),
        (azure, az(aexc.HttpResponseError, "InvalidHeaderValue", 400), DriverError, False),
        (azure, aexc.ServiceRequestError("connection refused"), Unreachable, True),
        (gcs, gexc.NotFound("m"), NotFound, False),
        (gcs, gexc.Forbidden("m"), PermissionDenied, False),
        (gcs, gexc.Unauthorized("m"), CredentialsRefused, False),
        (gcs, gexc.PreconditionFailed("m"), AlreadyExists, False),
        (gcs, gexc.TooManyRequests("m"), DriverError, True),
        (gcs, gexc.ServiceUnavailable("m"), DriverError, True),
        (gcs, gexc.Conflict("m"), DriverError, False),
        (gcs, google.auth.exceptions.RefreshError("invalid_grant"), CredentialsRefused, False),
        (gcs, google.auth.exceptions.RefreshError("metadata server busy", retryable=True),
         Unreachable, True),
    ]
    for module, error, kind, retriable in cases:
        mapped = module.translate(error, "k")
        assert type(mapped) is kind and mapped.retriable is retriable, (module.__name__, error, mapped)


# -- hook_token, global options, the daemon's warning ------------------------------------------

def test_hook_token_is_read_only_by_the_daemon(tmp_path, storage, monkeypatch):
    monkeypatch.delenv("SYNCD_TEST_UNSET_TOKEN", raising=False)
    from daemon_support import free_port

    config = local_config(tmp_path, storage, extra=f"""
        [daemon]
        listen = "127.0.0.1:{free_port()}"
        hook_token = "${{SYNCD_TEST_UNSET_TOKEN}}"
        """)
    run = Runner(config)
    put_file(storage, "a.txt", "a")
    assert run.json_lines("sync", "--no-preprocess")[0]["created"] == 1
    assert len(run.json_lines("items", "list", "photos")) == 1
    result = run("daemon", "--no-preprocess", expect=2)
    assert "Traceback" not in result.stderr and "no event source" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "syncd.toml: daemon.hook_token: environment variable SYNCD_TEST_UNSET_TOKEN is not set")


def test_global_options_after_the_command_name(config_file, storage):
    put_file(storage, "a.txt", "a")
    runner = CliRunner()
    for args in (["sync", "--config", str(config_file), "--no-preprocess", "--json"],
                 ["sync", "--json", f"--config={config_file}", "--log-level", "error",
                  "--no-preprocess", "--log-format=json"],
                 ["items", "list", "photos", "--config", str(config_file), "--json"]):
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, (args, result.stderr)
        assert result.stdout.strip() and json.loads(result.stdout.splitlines()[0])
    # Still an error, where they are not options: after `--`, a value, not an option.
    result = runner.invoke(cli, ["--config", str(config_file), "items", "get", "photos", "--",
                                 "--config"])
    assert result.exit_code == 3 and "no item '/--config'" in result.stderr


def test_the_daemon_warns_of_datasets_without_an_event_source(tmp_path, storage, caplog):
    from daemon_support import daemon_config
    from syncd.app import App
    from syncd.service.daemon import Daemon

    config = daemon_config(tmp_path, storage, watch=False, daemon="rescan_interval_seconds = 600",
                           extra=f"""
        [[drivers]]
        name = "watched"
        kind = "local"
        root = "{tmp_path}"
        [[datasets]]
        name = "live"
        driver = "watched"
        rescan_interval_seconds = 0
        [[datasets]]
        name = "never"
        driver = "disk"
        rescan_interval_seconds = 0
        [[sources]]
        kind = "watch"
        driver = "watched"
        """)
    with App.from_file(config) as app, caplog.at_level(logging.WARNING):
        daemon = Daemon(app, sources=[])
        daemon.start()
        daemon.shutdown()
    warnings = [r.getMessage() for r in caplog.records if "no event source" in r.getMessage()]
    assert warnings == [
        "dataset 'photos' has no event source: its changes are seen only by rescans, every "
        "600 s (rescan_interval_seconds)",
        "dataset 'never' has no event source: its changes are seen only by rescans, and "
        "rescan_interval_seconds = 0: never",
    ]


# -- Ctrl-C / SIGTERM during sync's preprocessing ------------------------------------------------

@pytest.mark.parametrize("sig, datasets, code", [
    (signal.SIGTERM, 1, 0),  # the sync was done: its summary, exit 0
    (signal.SIGINT, 2, 130),  # the second dataset was never synced: cut short
])
def test_a_signal_during_preprocessing_stops_like_jobs_run(tmp_path, storage, sig, datasets, code):
    extra = """
        [preprocess]
        workers = 1
        thumbnails = false
        """
    if datasets == 2:
        (tmp_path / "other").mkdir()
        extra += f"""
        [[drivers]]
        name = "other"
        kind = "local"
        root = "{tmp_path / 'other'}"
        [[datasets]]
        name = "second"
        driver = "other"
        """
    config = local_config(tmp_path, storage, extra=extra)
    config.write_text(config.read_text().replace(
        'driver = "disk"\n', 'driver = "disk"\npreprocessors = [{function = "custom_preprocessors:slow"}]\n', 1))
    count = 60
    for i in range(count):
        put_file(storage, f"{i:03d}.txt", f"file {i}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    process = subprocess.Popen([sys.executable, "-m", "syncd", "--config", str(config), "sync",
                                "--json"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while done_jobs(tmp_path / "catalogue.db") < 2:  # preprocessing has begun
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, stderr
    [summary] = [json.loads(line) for line in stdout.splitlines()]
    assert summary["dataset"] == "photos" and summary["created"] == count
    done = summary["preprocessed"]["done"]
    assert 2 <= done < count
    with Catalogue(tmp_path / "catalogue.db") as catalogue:
        states = Counter(row["state"] for row in JobQueue(catalogue).rows())
    # Jobs in flight finished and were recorded; nothing is left claimed; the rest wait.
    assert states == {"done": done, "pending": count - done}
    assert "jobs not yet started stay queued" in stderr
    if code == 130:
        assert stderr.strip().splitlines()[-1] == "syncd: error: interrupted: not synced: second"
    assert "Traceback" not in stderr


def done_jobs(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM jobs WHERE state = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
