"""Config loading: every error names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import find_config_file, load_config, parse_config
from syncd.errors import ConfigError

from conftest import write_config

GOOD = """
[catalogue]
path = "cat.db"

[[drivers]]
name = "disk"
kind = "local"
root = "photos"

[[datasets]]
name = "photos"
driver = "disk"
"""


def load(tmp_path: Path, body: str):
    return load_config(write_config(tmp_path / "syncd.toml", body))


def error_of(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body)
    return str(caught.value)


def test_good_config_resolves_paths_relative_to_the_file(tmp_path):
    config = load(tmp_path, GOOD)
    assert config.catalogue.path == tmp_path / "cat.db"
    assert config.driver("disk").root == tmp_path / "photos"
    assert config.driver("disk").permissions == ("list", "get", "put", "delete")
    assert config.driver("disk").allow_delete is False


def test_example_config_is_valid():
    config = load_config(Path(__file__).parent.parent / "config.example.toml")
    assert config.driver("samples").root.is_dir()
    assert [d.name for d in config.datasets] == ["photos"]


@pytest.mark.parametrize("body, expected", [
    (GOOD.replace('root = "photos"', 'root = "photos"\nrooot = "x"'), "drivers[0] ('disk'): rooot: unknown key"),
    (GOOD.replace('root = "photos"', ''), "drivers[0] ('disk'): root: missing"),
    (GOOD.replace('kind = "local"', 'kind = "ftp"'), "drivers[0] ('disk').kind: unknown kind 'ftp'"),
    (GOOD.replace('kind = "local"', ''), "drivers[0] ('disk').kind: missing"),
    (GOOD + '\n[catalog]\npath = "x"\n', "catalog: unknown key"),
    (GOOD.replace('path = "cat.db"', 'path = "cat.db"\nsize = 3'), "catalogue.size: unknown key"),
    (GOOD.replace('driver = "disk"', 'driver = "nope"'), "datasets[0].driver: no driver named 'nope'"),
    (GOOD.replace('name = "photos"\n', ''), "datasets[0].name: missing"),
    (GOOD.replace('root = "photos"', 'root = "photos"\npermissions = ["list", "fly"]'), "permissions[1]: 'fly' is not one of: list, get, put, delete"),
    (GOOD.replace('root = "photos"', 'root = "photos"\nallow_delete = "maybe"'), "allow_delete"),
    (GOOD.replace('root = "photos"', 'root = "photos"\npath = "../up"'), "path"),
    (GOOD + GOOD.split("[[datasets]]")[0].split("[catalogue]\npath = \"cat.db\"")[1], "drivers: the name 'disk' is used twice"),
    ("[[drivers]\n", "not valid TOML"),
    ("drivers = 3\n", "drivers: must be an array of tables"),
])
def test_errors_name_the_file_and_key(tmp_path, body, expected):
    message = error_of(tmp_path, body)
    assert str(tmp_path / "syncd.toml") in message
    assert expected in message


def test_environment_variables_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("PHOTO_ROOT", "/data/photos")
    config = load(tmp_path, GOOD.replace('root = "photos"', 'root = "${PHOTO_ROOT}"'))
    assert config.driver("disk").root == Path("/data/photos")


def test_unset_environment_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    message = error_of(tmp_path, GOOD.replace('root = "photos"', 'root = "${NOT_SET_ANYWHERE}"'))
    assert "drivers[0].root: environment variable NOT_SET_ANYWHERE is not set" in message


def test_error_messages_do_not_echo_values(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_VALUE", "hunter2-do-not-print")
    message = error_of(tmp_path, GOOD.replace('root = "photos"', 'root = "photos"\nallow_delete = "${SECRET_VALUE}"'))
    assert "hunter2" not in message


def test_config_file_discovery(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    assert find_config_file() == Path("syncd.toml")
    monkeypatch.setenv("SYNCD_CONFIG", "/etc/syncd.toml")
    assert find_config_file() == Path("/etc/syncd.toml")
    assert find_config_file("given.toml") == Path("given.toml")


def test_missing_file_says_how_to_provide_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="SYNCD_CONFIG"):
        load_config()


def test_parse_config_accepts_a_dict(tmp_path):
    config = parse_config({"drivers": [{"name": "a", "kind": "local", "root": "/x"}],
                           "datasets": [{"name": "d", "driver": "a"}]}, source=tmp_path / "x.toml")
    assert config.dataset("d").driver == "a"
