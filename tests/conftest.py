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


def local_config(tmp_path: Path, storage: Path, *, name: str = "syncd.toml",
                 driver: str = "", extra: str = "") -> Path:
    """A config with one local driver "disk" on `storage` and one dataset "photos";
    `driver` adds keys to the driver's table, `extra` appends tables."""
    base = f"""
        [catalogue]
        path = "{tmp_path / 'catalogue.db'}"

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
def config_file(tmp_path: Path, storage: Path) -> Path:
    return local_config(tmp_path, storage)


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
