"""Cloud driver config: validation, environment variables, secrets kept out of messages,
lazy SDK imports, and docs that the tests keep honest."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import drivers
from drivers.options import convert
from syncd.config import parse_config
from syncd.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
CLOUD_KINDS = ["s3", "gcs", "azure"]


def parse(text: str):
    return parse_config(tomllib.loads(text), source=Path("/etc/syncd.toml"))


def test_secrets_come_from_the_environment_and_are_never_shown(monkeypatch):
    monkeypatch.setenv("TEST_SECRET", "s3cr3t-value")
    config = parse('[[drivers]]\nname = "s3"\nkind = "s3"\nbucket = "b"\n'
                   'access_key_id = "AKIA"\nsecret_access_key = "${TEST_SECRET}"\n')
    options = config.driver("s3")
    assert options.secret_access_key.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(config) + str(options)
    assert "s3cr3t-value" not in drivers.open_driver(options).describe()


def test_bad_cloud_config_names_the_key_without_values(monkeypatch):
    with pytest.raises(ConfigError, match=r"drivers\[0\] \('a'\): azure_key: unknown key"):
        parse('[[drivers]]\nname = "a"\nkind = "s3"\nbucket = "b"\nazure_key = "x"\n')
    with pytest.raises(ConfigError, match="set connection_string, or account_url") as error:
        parse('[[drivers]]\nname = "a"\nkind = "azure"\ncontainer = "c"\n'
              'sas_token = "sig=hidden-sas"\n')
    assert "hidden-sas" not in str(error.value)
    with pytest.raises(ConfigError, match="bucket: missing"):
        parse('[[drivers]]\nname = "g"\nkind = "gcs"\n')
    with pytest.raises(ConfigError, match="endpoint_url: must be an http"):
        parse('[[drivers]]\nname = "g"\nkind = "gcs"\nbucket = "b"\nendpoint_url = "localhost"\n')


def test_a_local_only_setup_imports_no_cloud_sdk(tmp_path):
    code = ("import sys, drivers, syncd.cli, syncd.config as c; "
            f"c.load_config({str(REPO / 'config.example.toml')!r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('boto3', 'botocore', 'google', 'azure')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def commented_examples() -> list[dict]:
    text = (REPO / "config.example.toml").read_text()
    blocks = re.findall(r"# \[\[drivers\]\]\n((?:# .*\n)+)", text)
    return [tomllib.loads("\n".join(line[2:] for line in block.splitlines()
                                    if not line.startswith("# #"))) for block in blocks]


def test_config_example_has_a_valid_commented_example_of_each_cloud_driver(monkeypatch):
    from syncd.config import expand_env

    # The variables the examples read, set as a user would (the connection string is parsed).
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;"
                       "EndpointSuffix=core.windows.net")
    examples = commented_examples()
    assert sorted(e["kind"] for e in examples) == sorted(CLOUD_KINDS)
    for example in examples:
        example = {k: expand_env(v, None, k) if isinstance(v, str) else v
                   for k, v in example.items()}
        convert(example, drivers.options_model(example["kind"]))


@pytest.mark.parametrize("kind", CLOUD_KINDS)
def test_readme_documents_every_config_key(kind):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Storage drivers", 1)[1].split("\n## ", 1)[0]
    for key in drivers.options_model(kind).keys():
        assert f"`{key}`" in section, f"README's Storage drivers section lacks `{key}`"
