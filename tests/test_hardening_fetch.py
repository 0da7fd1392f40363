"""Issue 11: fetches that end short, trickle, or outlive a stop, against real sockets."""

from __future__ import annotations

import ipaddress
import threading
import time

import pytest

from raw_http import RawServer
from syncd.imports import fetch as fetch_module
from syncd.imports.fetch import FetchFailed, FetchInterrupted, Fetcher, FetchPolicy, address_class


def fetcher(**overrides) -> Fetcher:
    return Fetcher(FetchPolicy(allow_hosts=("127.0.0.1",), **overrides), sleep=lambda s: None)


@pytest.fixture
def raw():
    servers: list[RawServer] = []

    def make(handler) -> RawServer:
        servers.append(RawServer(handler))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


# -- 4. truncated bodies ----------------------------------------------------------------------

def test_a_body_shorter_than_its_content_length_is_a_retriable_error(raw):
    def short(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n")
        conn.sendall(b"x" * 1000)

    server = raw(short)
    with pytest.raises(FetchFailed) as caught:
        fetcher(attempts=2).fetch(server.url())
    assert caught.value.retriable
    assert "closed after 1000 of 100000 bytes" in str(caught.value)
    assert server.connections == 2  # retried


def test_a_chunked_body_without_its_last_chunk_is_a_retriable_error(raw):
    def cut(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"400\r\n" + b"y" * 1024 + b"\r\n")

    with pytest.raises(FetchFailed) as caught:
        fetcher(attempts=1).fetch(raw(cut).url())
    assert caught.value.retriable


def test_a_complete_chunked_body_is_fine(raw):
    def whole(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n")

    with fetcher().fetch(raw(whole).url()) as fetched:
        assert fetched.read() == b"hello"


def test_a_truncated_csv_upload_row_fails_and_stores_nothing(app, storage, tmp_path, raw):
    from syncd.imports.csv_import import import_csv

    def short(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n" + b"z" * 100)

    server = raw(short)
    source = tmp_path / "rows.csv"
    source.write_text(f"URL,name,action\n{server.url()},a.bin,upload\n")
    result = import_csv(app, "photos", source, fetcher=fetcher(attempts=1))
    assert (result.created, result.failed) == (0, 1)
    assert not (storage / "rows" / "a.bin").exists()


# -- 5. deadlines and stop ------------------------------------------------------------------

def test_a_trickled_body_is_cut_at_the_whole_download_deadline(raw):
    def slow_body(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        server.trickle(conn, b"b" * 1000, 0.05)

    # A read waits up to 0.5 s, ten times the trickle's pace: a loaded machine that stalls
    # the trickling thread for a moment must not turn this into a read timeout.
    started = time.monotonic()
    with pytest.raises(FetchFailed) as caught:
        fetcher(timeout_seconds=0.5, attempts=1).fetch(raw(slow_body).url())
    elapsed = time.monotonic() - started
    assert "no complete answer within 5 s" in str(caught.value)
    assert elapsed < 5 + 1.5, elapsed  # the deadline holds to within a second (+ scheduling)


def test_trickled_headers_are_cut_at_the_deadline_too(raw):
    def slow_headers(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        server.trickle(conn, b"X-Padding: " + b"p" * 2000 + b"\r\n\r\n", 0.05)

    started = time.monotonic()
    with pytest.raises(FetchFailed) as caught:
        fetcher(timeout_seconds=0.5, attempts=1).fetch(raw(slow_headers).url())
    assert "no complete answer within 5 s" in str(caught.value)
    assert time.monotonic() - started < 5 + 1.5


def test_stop_fetches_interrupts_a_fetch_in_flight(raw):
    def slow_body(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        server.trickle(conn, b"b" * 1000, 0.05)

    server = raw(slow_body)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            fetcher(timeout_seconds=10, attempts=3).fetch(server.url())
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        time.sleep(0.3)
        assert thread.is_alive()
        fetch_module.stop_fetches()
        thread.join(5)
        assert not thread.is_alive()
    finally:
        fetch_module.resume_fetches()
    assert isinstance(outcome[0], FetchInterrupted) and outcome[0].retriable
    assert server.connections == 1  # not retried while stopping


# -- 15. IANA special-purpose registries ----------------------------------------------------

@pytest.mark.parametrize("address", [
    "192.0.0.8", "192.0.0.9", "192.0.0.10", "192.0.0.170", "192.0.0.171", "192.0.0.255",
    "192.31.196.1", "192.52.193.1", "192.88.99.1", "192.175.48.1", "198.18.0.1", "240.0.0.1",
    "2001:1::1", "2001:2::1", "2001:3::1", "2001:4:112::1", "2001:20::1", "2001:db8::1",
    "2620:4f:8000::1", "100::1", "64:ff9b:1::1", "fc00::1", "5f00::1", "3fff::1",
])
def test_special_purpose_addresses_are_refused(address):
    assert address_class(address) is not None, address


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "192.0.3.1"])
def test_public_addresses_still_pass(address):
    assert address_class(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("command", ["jobs", "daemon"])
def test_sigterm_interrupts_a_link_fetch_in_a_worker(tmp_path, storage, raw, command):
    """`jobs run` and the daemon stop within seconds of SIGTERM while a worker process
    fetches a trickling linked URL; the job is left to retry, not failed."""
    import json
    import signal
    import subprocess
    import sys

    from conftest import local_config, put_file
    from daemon_support import ROOT, wait_for
    from syncd.app import App

    def slow_body(conn, server):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n")
        server.trickle(conn, b"b" * 1000, 0.05)

    server = raw(slow_body)
    link = {"type": "link", "shebang": "dataloop", "metadata": {"dltype": "link", "linkInfo": {
        "type": "url", "ref": server.url("/a.jpg"), "mimetype": "image/jpeg"}}}
    put_file(storage, "a_link.json", json.dumps(link))
    config = local_config(tmp_path, storage, extra="""
        [fetch]
        allow_hosts = ["127.0.0.1"]
        timeout_seconds = 30
        [preprocess]
        workers = 1
        """)
    with App.from_file(config) as app:
        app.sync("photos")
    args = ["jobs", "run"] if command == "jobs" else ["daemon"]
    log = open(tmp_path / "stderr.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "syncd", "--config", str(config), *args],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
                               env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_for(lambda: server.connections >= 1, timeout=30, what="the worker fetching")
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)  # the fetch alone would take 50 s (300 s allowed)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert code == 0, (tmp_path / "stderr.log").read_text()
    with App.from_file(config) as app:
        states = [job["state"] for job in app.jobs().rows()]
    assert states == ["pending"], (states, (tmp_path / "stderr.log").read_text())
