"""The real PostgreSQL server the catalogue tests run on (tests/postgres.py), and the three
primitives the shared catalogue is built on, checked on it: jobs claimed with
FOR UPDATE SKIP LOCKED (each row by one claimer), a session advisory lock freed when its
holder's connection dies, and COPY into a temporary table."""

from __future__ import annotations

import threading

import psycopg
import pytest


def test_server_runs_on_loopback_and_databases_are_fresh(postgres_server, postgres_url):
    assert postgres_url.startswith(f"postgresql://syncd@127.0.0.1:{postgres_server.port}/")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == postgres_url.rsplit("/", 1)[1]
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
        assert tables == 0
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        assert int(version) >= 130000


def test_skip_locked_claims_each_job_once(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE jobs (id serial PRIMARY KEY, state text NOT NULL, owner int)")
        conn.execute("INSERT INTO jobs (state) SELECT 'pending' FROM generate_series(1, 400)")
    claimed: dict[int, list[int]] = {}
    barrier = threading.Barrier(4)

    def claimer(owner: int) -> None:
        mine = claimed.setdefault(owner, [])
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            barrier.wait()
            while True:
                rows = conn.execute(
                    """UPDATE jobs SET state = 'running', owner = %s WHERE id IN (
                           SELECT id FROM jobs WHERE state = 'pending'
                           ORDER BY id LIMIT 7 FOR UPDATE SKIP LOCKED)
                       RETURNING id""", (owner,)).fetchall()
                if not rows:
                    return
                mine.extend(r[0] for r in rows)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = sorted(i for ids in claimed.values() for i in ids)
    assert every == list(range(1, 401))  # each job claimed exactly once
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM jobs WHERE state = 'pending'").fetchone()[0] == 0


def test_advisory_lock_is_freed_when_its_holder_dies(postgres_url):
    key = 42  # in syncd: one key per dataset, so one sync of it at a time across hosts
    holder = psycopg.connect(postgres_url, autocommit=True)
    assert holder.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0] is True
    pid = holder.info.backend_pid
    with psycopg.connect(postgres_url, autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0] is False
        # The holder's backend dies (its host crashed, its process was killed): the server
        # ends the session and the lock goes with it.
        assert other.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0] is True
        other.execute("SELECT pg_sleep(0.2)")
        for _ in range(50):
            if other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                break
            other.execute("SELECT pg_sleep(0.1)")
        else:
            pytest.fail("the advisory lock outlived its holder's session")
    with pytest.raises(psycopg.OperationalError):
        holder.execute("SELECT 1")
    holder.close()


def test_copy_streams_rows_into_a_temporary_table(postgres_url):
    rows = [(f"d{i // 100}/img_{i}.jpg", i, 1.7e9 + i, f"{i:032x}", None) for i in range(5000)]
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TEMP TABLE listing (path text, size bigint, mtime double precision,"
                     " etag text, md5 text)")
        with conn.cursor().copy("COPY listing FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        assert conn.execute("SELECT count(*), sum(size), count(md5) FROM listing").fetchone() == \
            (5000, sum(range(5000)), 0)


@pytest.mark.parametrize("left", ["SELECT pg_sleep(30)", "COPY t FROM STDIN", "COPY t TO STDOUT"])
def test_a_command_left_in_flight_by_an_interrupt_does_not_wedge_the_session(postgres_url, left):
    """Ctrl-C / SIGTERM can land after psycopg sent a command and before it read the result
    (seen in test_interrupted_sync): syncd's connection cancels it and reads its results, and
    the session, with its advisory lock and temporary table, goes on."""
    from syncd.catalogue.postgres import connect_postgres

    conn = connect_postgres(postgres_url)
    conn.execute("CREATE TEMP TABLE t (n int)")
    conn.execute("INSERT INTO t VALUES (1), (2)")
    conn.execute("SELECT pg_advisory_lock(7)")
    conn.raw.pgconn.send_query(left.encode())  # what the interrupted psycopg call left behind
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (3)")
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 3
    with psycopg.connect(postgres_url, autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(7)").fetchone()[0] is False
    conn.close()
