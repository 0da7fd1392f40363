"""The PostgreSQL catalogue's password sources, against a real server that asks for one.

tests/postgres.py makes a role (`syncd_pw`) that must log in with scram-sha-256; every other
role is trusted. A `[catalogue] url` without a password connects through libpq's own
sources (PGPASSWORD; a .pgpass file, here named by PGPASSFILE) or through `${VAR}` in the
URL; a wrong or missing password is one line on stderr, exit 1, naming the URL without the
password; and nothing syncd prints or logs (at debug level) contains the password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import local_config, put_file

ROOT = Path(__file__).resolve().parent.parent
WRONG = "wrong-Pw-81zq"


@pytest.fixture
def database(postgres_server) -> str:
    """A fresh database owned by the password role: its name."""
    return postgres_server.create_database(owner=postgres_server.password_user).rsplit("/", 1)[1]


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment without any libpq password source (HOME has no .pgpass)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k != "SYNCD_DB_PASSWORD"}
    home = tmp_path / "home"
    home.mkdir()
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    return env


def config_with_url(tmp_path: Path, storage: Path, url: str) -> Path:
    put_file(storage, "a.jpg", "aaaa")
    put_file(storage, "cats/b.jpg", "bbbbbb")
    return local_config(tmp_path, storage, catalogue=url, extra="[preprocess]\nenabled = false\n")


def syncd(config: Path, env: dict[str, str], *args: str, debug: bool = True):
    levels = ["--log-level", "debug"] if debug else []
    return subprocess.run([sys.executable, "-m", "syncd", "--config", str(config), *levels,
                           "sync", "--json", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def assert_synced(done, password: str) -> None:
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["dataset"] == "photos" and summary["created"] + summary["unchanged"] == 2
    assert password not in done.stdout + done.stderr  # logged at debug level: still not there


def bare_url(server, database: str) -> str:
    return f"postgresql://{server.password_user}@127.0.0.1:{server.port}/{database}"


def test_pgpassword_gives_the_password(tmp_path, storage, postgres_server, database, clean_env):
    config = config_with_url(tmp_path, storage, bare_url(postgres_server, database))
    done = syncd(config, clean_env)  # no password anywhere: the server refuses
    assert done.returncode == 1
    assert "no password supplied" in done.stderr or "password authentication failed" in done.stderr
    assert_synced(syncd(config, {**clean_env, "PGPASSWORD": postgres_server.password}),
                  postgres_server.password)


def test_a_pgpass_file_named_by_pgpassfile_gives_the_password(tmp_path, storage, postgres_server,
                                                               database, clean_env):
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres_server.port}:{database}:"
                      f"{postgres_server.password_user}:{postgres_server.password}\n")
    pgpass.chmod(0o600)  # libpq ignores a password file others can read
    config = config_with_url(tmp_path, storage, bare_url(postgres_server, database))
    env = {**clean_env, "PGPASSFILE": str(pgpass)}
    assert_synced(syncd(config, env), postgres_server.password)
    assert_synced(syncd(config, env), postgres_server.password)  # and again: a no-op re-sync


def test_a_variable_in_the_url_gives_the_password(tmp_path, storage, postgres_server, database,
                                                   clean_env):
    url = (f"postgresql://{postgres_server.password_user}:${{SYNCD_DB_PASSWORD}}"
           f"@127.0.0.1:{postgres_server.port}/{database}")
    config = config_with_url(tmp_path, storage, url)
    assert_synced(syncd(config, {**clean_env, "SYNCD_DB_PASSWORD": postgres_server.password}),
                  postgres_server.password)


@pytest.mark.parametrize("source", ["url", "PGPASSWORD", "pgpass"])
def test_a_wrong_password_is_one_clear_line_without_the_password(
        tmp_path, storage, postgres_server, database, clean_env, source):
    env = dict(clean_env)
    url = bare_url(postgres_server, database)
    if source == "url":
        url = url.replace("@", ":${SYNCD_DB_PASSWORD}@", 1)
        env["SYNCD_DB_PASSWORD"] = WRONG
    elif source == "PGPASSWORD":
        env["PGPASSWORD"] = WRONG
    else:
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"*:*:*:{postgres_server.password_user}:{WRONG}\n")
        pgpass.chmod(0o600)
        env["PGPASSFILE"] = str(pgpass)
    config = config_with_url(tmp_path, storage, url)
    done = syncd(config, env, debug=False)
    assert done.returncode == 1, done.stderr  # a catalogue that cannot be used (README: exit 1)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("syncd: error: catalogue postgresql://syncd_pw")
    assert "cannot connect" in lines[0]
    assert f'password authentication failed for user "{postgres_server.password_user}"' in lines[0]
    assert done.stdout == ""
    if source == "url":
        assert ":***@127.0.0.1" in lines[0]  # the URL named, its password masked
    verbose = syncd(config, env)  # every debug log line as well
    assert verbose.returncode == 1
    for secret in (WRONG, postgres_server.password):
        assert secret not in done.stderr + verbose.stderr + verbose.stdout
