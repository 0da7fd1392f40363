"""Faults: throttling and 5xx answers retried by each SDK's own retry; an unknown bucket,
refused credentials or an unreachable endpoint give one clear line, a non-zero exit, and
leave the catalogue as it was. No secret appears in any output."""

from __future__ import annotations

import json
import time

import pytest

from conftest import Runner
import drivers
from drivers import DriverError, Unreachable
from drivers.options import convert
from emulators import FlakyProxy, free_port

CLOUDS = ["s3", "gcs", "azure"]
# Each service's own throttling answer.
THROTTLED = {
    "s3": dict(status=503, content_type="application/xml",
               body=b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                    b"<Message>Please reduce your request rate.</Message></Error>"),
    "gcs": dict(status=429, content_type="application/json",
                body=json.dumps({"error": {"code": 429, "message": "rate limit",
                                           "errors": [{"reason": "rateLimitExceeded"}]}}).encode()),
    "azure": dict(status=503, content_type="application/xml", headers={"x-ms-error-code": "ServerBusy"},
                  body=b"<?xml version='1.0' encoding='utf-8'?><Error><Code>ServerBusy</Code>"
                       b"<Message>The server is busy.</Message></Error>"),
}


def through(endpoint, url: str) -> dict:
    """Driver option keys that send `endpoint`'s driver to `url` instead."""
    if endpoint.kind == "azure":
        old = endpoint.credentials["connection_string"]
        return {"connection_string": old.replace(endpoint.url.rsplit("/", 1)[0], url)}
    return {"endpoint_url": url}


@pytest.mark.parametrize("kind", CLOUDS)
def test_throttling_is_retried_by_the_sdk(kind, endpoint_for):
    endpoint = endpoint_for(kind)
    bucket = endpoint.new_bucket()
    endpoint.driver(bucket).put("a.txt", b"a")
    fast = {"gcs": {"retry_backoff_seconds": 0.05, "retry_seconds": 30},
            "azure": {"retry_backoff_seconds": 0.05}}.get(kind, {})
    proxy = FlakyProxy(endpoint.url, failures=2, **THROTTLED[kind])
    try:
        attempts = {} if kind == "gcs" else {"max_attempts": 4}  # GCS retries for a time
        driver = endpoint.driver(bucket, **attempts, **fast, **through(endpoint, proxy.url))
        assert [i.key for i in driver.list()] == ["a.txt"]
        assert proxy.requests == 3, proxy.paths  # two throttled answers, then the real one
    finally:
        proxy.close()


def test_gcs_sends_only_the_requests_the_driver_makes(endpoint_for):
    """google-cloud-storage 3.x fetches a bucket's metadata for its tracing in a thread of its
    own, at the first call: a request that needs storage.buckets.get. The driver turns that
    off, so a listing is the listing's request alone (the SDK's thread would start at once)."""
    endpoint = endpoint_for("gcs")
    bucket = endpoint.new_bucket()
    endpoint.driver(bucket).put("a.txt", b"a")
    proxy = FlakyProxy(endpoint.url)
    try:
        driver = endpoint.driver(bucket, **through(endpoint, proxy.url))
        assert [i.key for i in driver.list()] == ["a.txt"]
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and proxy.requests == 1:
            time.sleep(0.02)
        assert len(proxy.paths) == 1 and f"/b/{bucket}/o?" in proxy.paths[0], proxy.paths
    finally:
        proxy.close()


@pytest.mark.parametrize("kind", ["s3", "azure"])
def test_throttling_past_the_attempts_is_an_error_with_the_service_code(kind, endpoint_for):
    endpoint = endpoint_for(kind)
    bucket = endpoint.new_bucket()
    proxy = FlakyProxy(endpoint.url, failures=100, **THROTTLED[kind])
    try:
        driver = endpoint.driver(bucket, max_attempts=2, **through(endpoint, proxy.url))
        with pytest.raises(DriverError) as error:
            list(driver.list())
        assert error.value.code in ("SlowDown", "ServerBusy")
        assert proxy.requests == 2
    finally:
        proxy.close()


# -- failing syncs ------------------------------------------------------------------------

def sync_config(tmp_path, driver_toml: str) -> Runner:
    config = tmp_path / "syncd.toml"
    config.write_text(f'[catalogue]\npath = "{tmp_path / "c.db"}"\n\n{driver_toml}\n'
                      '[[datasets]]\nname = "photos"\ndriver = "cloud"\n')
    return Runner(config)


def assert_failed_cleanly(run: Runner, *, secret: str | None = None) -> str:
    """A sync that fails: exit 4, one line on stderr naming the driver, nothing on stdout,
    and the catalogue's items exactly as they were."""
    before = _items(run)
    result = run("sync", "--json", expect=4)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("syncd: error: driver 'cloud' ("), lines
    assert _items(run) == before
    if secret:
        assert secret not in result.stderr
    return lines[0]


def _items(run: Runner) -> list:
    result = run("items", "list", "photos", "--json", expect=None)
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("kind", CLOUDS)
def test_unreachable_endpoint(kind, endpoint_for, tmp_path):
    endpoint = endpoint_for(kind)
    bucket = endpoint.new_bucket()
    endpoint.driver(bucket).put("a.jpg", b"a")
    run = sync_config(tmp_path, endpoint.toml(bucket, name="cloud"))
    assert run.json_lines("sync")[0]["created"] == 1
    dead = f"http://127.0.0.1:{free_port()}"
    quick = {"gcs": {"retry_seconds": 0.5, "retry_backoff_seconds": 0.05}}.get(
        kind, {"max_attempts": 1})
    run.config_file.write_text(run.config_file.read_text().replace(
        endpoint.toml(bucket, name="cloud"),
        endpoint.toml(bucket, name="cloud", **quick, **through(endpoint, dead))))
    line = assert_failed_cleanly(run)
    assert "unreachable" in line


@pytest.mark.parametrize("kind", CLOUDS)
def test_unknown_bucket(kind, endpoint_for, tmp_path):
    endpoint = endpoint_for(kind)
    run = sync_config(tmp_path, endpoint.toml("no-such-bucket-anywhere", name="cloud"))
    line = assert_failed_cleanly(run)
    assert "not found" in line and ("NoSuchBucket" in line or "ContainerNotFound" in line)


def test_s3_refused_credentials_from_an_environment_variable(s3_iam, tmp_path, monkeypatch):
    bucket = "refused-creds"
    from emulators import s3_client

    s3_client(s3_iam.endpoint).create_bucket(Bucket=bucket)
    monkeypatch.setenv("TEST_S3_SECRET", "wrong-secret-value-123")
    toml = s3_iam.endpoint.toml(bucket, name="cloud", secret_access_key="${TEST_S3_SECRET}",
                                access_key_id=s3_iam.users["reader"]["access_key_id"])
    line = assert_failed_cleanly(sync_config(tmp_path, toml), secret="wrong-secret-value-123")
    assert "SignatureDoesNotMatch" in line and "credentials refused" in line


def test_azure_refused_account_key(azure_endpoint, tmp_path):
    bucket = azure_endpoint.new_bucket()
    wrong = "d3Jvbmcga2V5IGZvciB0aGUgdGVzdA=="
    connection = azure_endpoint.credentials["connection_string"]
    connection = connection.replace(connection.split("AccountKey=")[1].split(";")[0], wrong)
    toml = azure_endpoint.toml(bucket, name="cloud", connection_string=connection)
    line = assert_failed_cleanly(sync_config(tmp_path, toml), secret=wrong)
    # Azure answers AuthenticationFailed; Azurite AuthorizationFailure, with the same message.
    assert "AuthenticationFailed" in line or "failed to authenticate" in line


def test_gcs_unusable_credentials_file(gcs_endpoint, tmp_path):
    key_file = tmp_path / "key.json"
    key_file.write_text('{"type": "service_account", "private_key": "SECRET-PEM-TEXT"}')
    toml = gcs_endpoint.toml("any-bucket", name="cloud", anonymous=False,
                             credentials_file=str(key_file))
    line = assert_failed_cleanly(sync_config(tmp_path, toml), secret="SECRET-PEM-TEXT")
    assert "credentials refused" in line


def test_azure_sas_signature_never_appears_in_errors(azure_endpoint):
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    options = {"name": "az", "kind": "azure", "container": "c", "account_url": dead,
               "sas_token": "sv=2024-01-01&sp=rl&sig=SUPERSECRETSIGNATURE%3D", "max_attempts": 1}
    import drivers

    driver = drivers.open_driver(convert(options, drivers.options_model("azure")))
    with pytest.raises(Unreachable) as error:
        list(driver.list())
    assert "SUPERSECRETSIGNATURE" not in str(error.value)
    assert "SUPERSECRETSIGNATURE" not in repr(driver.options)


def test_redact_masks_url_signatures_and_configured_secrets():
    from drivers.cloud import redact

    message = ("HTTPConnectionPool(host='acct.blob.core.windows.net', port=443): Max retries "
               "exceeded with url: /c?restype=container&sv=2024&sp=rl&sig=AbC%2Bsecret%3D "
               "(key wJalrXUtnFEMI/K7MDENG)")
    masked = redact(message, ("wJalrXUtnFEMI/K7MDENG", None))
    assert "AbC%2Bsecret" not in masked and "sig=***" in masked
    assert "wJalrXUtnFEMI" not in masked and "restype=container" in masked
