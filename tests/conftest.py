"""Fixtures shared by every test: temp folders with real files, configs, apps, the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd.app import App
from syncd.cli import cli

pytest_plugins = ["emulators", "postgres"]  # S3/GCS/Azure emulators, PostgreSQL: see those modules


def write_config(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    root.mkdir()
    return root


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "sqlite_only: in a both_backends module, a test of SQLite itself (WAL, its "
                   "query plans, its file)")
    config.addinivalue_line(
        "markers", "both_backends: run the module's tests on a SQLite and on a PostgreSQL "
                   "catalogue (the `catalogue_backend` fixture)")


def pytest_generate_tests(metafunc):
    if "catalogue_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
            "both_backends") and not metafunc.definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("catalogue_backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def catalogue_backend(request) -> str:
    """sqlite, or (in modules marked both_backends) each of sqlite and postgresql."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def catalogue_location(request, catalogue_backend: str, tmp_path: Path) -> str:
    """The test's catalogue: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if catalogue_backend == "postgresql":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "catalogue.db")


def catalogue_section(location: str | Path) -> str:
    key = "url" if str(location).startswith("postgresql://") else "path"
    return f'[catalogue]\n{key} = "{location}"'


def local_config(tmp_path: Path, storage: Path, *, name: str = "syncd.toml",
                 driver: str = "", extra: str = "", catalogue: str | Path | None = None) -> Path:
    """A config with one local driver "disk" on `storage` and one dataset "photos";
    `driver` adds keys to the driver's table, `extra` appends tables; `catalogue`: a SQLite
    file or a postgresql:// URL (default: catalogue.db in tmp_path)."""
    section = catalogue_section(catalogue or tmp_path / "catalogue.db").replace("\n", "\n        ")
    base = f"""
        {section}

        [[drivers]]
        name = "disk"
        kind = "local"
        root = "{storage}"
        {driver}

        [[datasets]]
        name = "photos"
        driver = "disk"
        """
    return write_config(tmp_path / name, textwrap.dedent(base) + textwrap.dedent(extra))


@pytest.fixture
def config_file(tmp_path: Path, storage: Path, catalogue_location: str) -> Path:
    return local_config(tmp_path, storage, catalogue=catalogue_location)


@pytest.fixture
def app(config_file: Path):
    with App.from_file(config_file) as app:
        yield app


class Runner:
    """Runs the CLI in-process, stdout and stderr kept apart."""

    def __init__(self, config_file: Path):
        self.config_file = config_file
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int | None = 0):
        result = self.runner.invoke(cli, ["--config", str(self.config_file), *args],
                                    catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
        return result

    def json_lines(self, *args: str, expect: int | None = 0) -> list[dict]:
        result = self(*args, "--json", expect=expect)
        return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def run(config_file: Path) -> Runner:
    return Runner(config_file)


def put_file(root: Path, key: str, data: bytes | str = b"x") -> Path:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path
