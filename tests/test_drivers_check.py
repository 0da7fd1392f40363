"""`syncd drivers check` against real storage, including credentials that really lack
put or delete: moto IAM users with inline policies, Azurite SAS tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from conftest import Runner
from emulators import AZURITE_ACCOUNT, AZURITE_KEY, azure_service, s3_client, unique_name
from syncd.checks import TEST_KEY, check_driver


def write_config(tmp_path, driver_toml: str):
    path = tmp_path / "syncd.toml"
    path.write_text(f'[catalogue]\npath = "{tmp_path / "c.db"}"\n\n{driver_toml}')
    return Runner(path)


def statuses(lines):
    return {line["permission"]: (line["status"], line["code"]) for line in lines}


def test_full_access_is_ok_and_cleans_up(store, tmp_path):
    run = write_config(tmp_path, store.toml(name="store"))
    lines = run.json_lines("drivers", "check", "store")
    assert statuses(lines) == {p: ("ok", None) for p in ("list", "get", "put", "delete")}
    assert {line["driver"] for line in lines} == {"store"}
    assert all("test_file_left" not in line for line in lines)
    assert not store.make().exists(TEST_KEY)
    text = run("drivers", "check", "store").stdout
    assert "list   ok" in text and "delete ok" in text


def test_without_delete_the_test_file_is_left_and_said_where(store, tmp_path):
    store.make().put("photo.jpg", b"jpeg")
    run = write_config(tmp_path, store.toml(name="store", permissions=["list", "get", "put"]))
    lines = run.json_lines("drivers", "check", "store")
    assert statuses(lines)["delete"] == ("not requested", None)
    [delete] = [line for line in lines if line["permission"] == "delete"]
    assert delete["test_file_left"].endswith(f"data/{TEST_KEY}")
    assert store.make().exists(TEST_KEY)
    # The test file is hidden: a sync never makes it an item.
    assert [i.key for i in store.make().list()] == ["photo.jpg"]


def test_not_requested_permissions_are_not_tried(store):
    report = check_driver(store.make(permissions=["list", "get"]))
    assert report.result("put").status == "not requested"
    assert report.result("get").status == "untested"  # nothing listed, nothing written
    assert report.ok and any("'put' is not in permissions" in note for note in report.notes)
    assert not store.make().exists(TEST_KEY)


# -- S3: IAM users whose inline policies lack put or delete -------------------------------------

# These drivers sync the whole bucket (path = ""): moto's signature check fails on a query
# parameter holding a "/" (prefix=data/), which real S3 accepts.

@pytest.fixture
def iam_bucket(s3_iam):
    bucket = unique_name("iam")
    admin = s3_client(s3_iam.endpoint, **s3_iam.users["admin"])
    admin.create_bucket(Bucket=bucket)
    admin.put_object(Bucket=bucket, Key="photo.jpg", Body=b"jpeg")
    return bucket


def test_s3_list_and_get_only_user_lacks_put(s3_iam, iam_bucket, tmp_path):
    toml = s3_iam.endpoint.toml(iam_bucket, name="s3", **s3_iam.users["reader"])
    run = write_config(tmp_path, toml)
    result = run("drivers", "check", "s3", "--json", expect=4)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    found = statuses(lines)
    assert found["list"] == ("ok", None) and found["get"] == ("ok", None)
    assert found["put"] == ("missing", "AccessDenied")
    assert found["delete"][0] == "untested"
    assert "put" in result.stderr and result.stderr.count("\n") == 1
    secret_key = s3_iam.users["reader"]["secret_access_key"]
    assert secret_key not in result.stdout + result.stderr


def test_s3_user_without_delete_is_reported_and_file_left(s3_iam, iam_bucket, tmp_path):
    run = write_config(tmp_path, s3_iam.endpoint.toml(iam_bucket, name="s3",
                                                      **s3_iam.users["writer"]))
    lines = run.json_lines("drivers", "check", "s3")  # delete is not mandatory: exit 0
    found = statuses(lines)
    assert found["put"] == ("ok", None) and found["get"] == ("ok", None)
    assert found["delete"] == ("missing", "AccessDenied")
    [delete] = [line for line in lines if line["permission"] == "delete"]
    assert delete["test_file_left"] == f"s3://{iam_bucket}/{TEST_KEY}"
    admin = s3_client(s3_iam.endpoint, **s3_iam.users["admin"])
    assert admin.head_object(Bucket=iam_bucket, Key=TEST_KEY)["ContentLength"] > 0


def test_s3_refused_credentials_are_one_clear_line(s3_iam, iam_bucket, tmp_path):
    toml = s3_iam.endpoint.toml(iam_bucket, name="s3", access_key_id="AKIANOTAREALKEY0000",
                                secret_access_key="not-the-secret-at-all")
    result = write_config(tmp_path, toml)("drivers", "check", "s3", expect=4)
    assert "InvalidAccessKeyId" in result.stdout
    assert "not-the-secret-at-all" not in result.stdout + result.stderr


# -- Azure: SAS tokens without write or delete --------------------------------------------------

def sas(container: str, **permissions: bool) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(AZURITE_ACCOUNT, container, account_key=AZURITE_KEY,
                                  permission=ContainerSasPermissions(**permissions),
                                  expiry=datetime.now(UTC) + timedelta(hours=1))


@pytest.fixture
def sas_container(azure_endpoint):
    container = azure_endpoint.new_bucket()
    azure_service(azure_endpoint).get_container_client(container).upload_blob(
        "data/photo.jpg", b"jpeg")
    return container


def sas_toml(endpoint, container: str, token: str) -> str:
    return (f'[[drivers]]\nname = "az"\nkind = "azure"\ncontainer = "{container}"\n'
            f'path = "data"\naccount_url = "{endpoint.url}"\nsas_token = "{token}"\n'
            f'max_attempts = 1\n')


def test_azure_read_list_sas_lacks_put(azure_endpoint, sas_container, tmp_path):
    token = sas(sas_container, read=True, list=True)
    run = write_config(tmp_path, sas_toml(azure_endpoint, sas_container, token))
    result = run("drivers", "check", "az", "--json", expect=4)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    found = statuses(lines)
    assert found["list"] == ("ok", None) and found["get"] == ("ok", None)
    assert found["put"] == ("missing", "AuthorizationPermissionMismatch")
    signature = token.split("sig=", 1)[1].split("&", 1)[0]
    assert signature not in result.stdout + result.stderr


def test_azure_sas_without_delete(azure_endpoint, sas_container, tmp_path):
    token = sas(sas_container, read=True, list=True, write=True, create=True)
    run = write_config(tmp_path, sas_toml(azure_endpoint, sas_container, token))
    found = statuses(run.json_lines("drivers", "check", "az"))
    assert found["put"] == ("ok", None)
    assert found["delete"] == ("missing", "AuthorizationPermissionMismatch")


def test_unknown_bucket_is_an_error_exit(store, tmp_path):
    key = {"local": "root", "azure": "container"}.get(store.kind, "bucket")
    value = str(tmp_path / "nowhere") if store.kind == "local" else "no-such-bucket-at-all"
    run = write_config(tmp_path, store.toml(name="store", **{key: value}))
    result = run("drivers", "check", "store", expect=4)
    assert "list   error" in result.stdout
    assert result.stderr.startswith("syncd: error: driver 'store'")
