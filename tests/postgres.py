"""A real PostgreSQL server for tests: initdb + pg_ctl from the distribution's packages
(`.ci/run` installs Debian's `postgresql`), started once per session on a free 127.0.0.1 port
in a temporary folder, and stopped at the end. Never a mock.

Tests run as root in CI, and PostgreSQL refuses to run as root: then the server runs as the
`postgres` system user the package creates (else `nobody`), through `setpriv`.

Every role but one logs in without a password (trust): `PostgresServer.password_user` must
give its password (`.password`), checked with scram-sha-256 (pg_hba.conf), so that the libpq
password sources (a password in the URL, PGPASSWORD, a .pgpass file) are exercised for real.

Fixtures:
    postgres_server     the running server: `.url(dbname)`, `.admin_url`,
                        `.create_database(owner=...)`
    postgres_url        a fresh, empty database for one test, as a postgresql:// URL

On a developer's machine without PostgreSQL the tests skip; with $CI set they fail.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulators import free_port, unavailable

_databases = itertools.count()


def postgres_bin() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that drops root, and the user it drops to (None: not root)."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                "--"], user
    unavailable("running as root and there is no postgres or nobody user to run PostgreSQL as")
    raise AssertionError  # unreachable


PASSWORD_USER = "syncd_pw"  # the one role that must give a password (scram-sha-256)
PASSWORD = "pw-7Qx9-scram-only"  # its password (URL-safe, so it can stand in a URL as is)


@dataclass
class PostgresServer:
    port: int
    user: str = "syncd"
    password_user: str = PASSWORD_USER
    password: str = PASSWORD

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def create_database(self, owner: str | None = None) -> str:
        """A fresh database, owned by `owner` (a role of this server; default the trusted
        superuser), as a URL naming the trusted superuser (no password)."""
        import psycopg

        name = f"t{os.getpid()}_{next(_databases)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = postgres_bin()
    if bin_dir is None:
        unavailable("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    prefix, user = _as_user()
    work = Path(tempfile.mkdtemp(prefix="syncd-postgres-"))
    data, log = work / "data", work / "server.log"
    if user is not None:
        os.chown(work, user.pw_uid, user.pw_gid)
    port = free_port()
    env = {**os.environ, "LC_ALL": "C"}

    def run(*command: str) -> None:
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, env=env,
                              cwd=work, timeout=120)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout)[-2000:]
            if log.exists():
                detail += "\n" + log.read_text()[-2000:]
            unavailable(f"{Path(command[0]).name} failed: {detail}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "syncd", "--auth=trust", "-E", "UTF8",
        "--no-locale", "--no-sync")
    # The password role first (the first matching line wins), trust for every other role.
    hba = data / "pg_hba.conf"
    hba.write_text(f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
                   f"host all {PASSWORD_USER} ::1/128 scram-sha-256\n"
                   f"local all {PASSWORD_USER} scram-sha-256\n" + hba.read_text())
    options = (f"-p {port} -k {work} -c listen_addresses=127.0.0.1 -c fsync=off"
               " -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
        "-t", "60", "start")
    try:
        server = PostgresServer(port)
        import psycopg

        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")
        yield server
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                        "stop"], capture_output=True, cwd=work, timeout=60)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database()
