"""`syncd serve` and `syncd daemon --listen` as processes: the same page and API, the token
required, SIGTERM stops them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import local_config, put_file
from daemon_support import ROOT, DaemonProcess, daemon_config, free_port, wait_for
from web_support import TOKEN, Client


def test_serve_runs_until_sigterm(tmp_path, storage, run):
    put_file(storage, "a.txt", "hello")
    config = local_config(tmp_path, storage, extra=f'[web]\ntoken = "{TOKEN}"\n')
    run.config_file = config
    run("sync")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "syncd", "--config", str(config), "serve",
                                    "--listen", f"127.0.0.1:{port}", "--read-only"],
                                   cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for(lambda: f"listening on http://127.0.0.1:{port}" in log.read_text()
                 or process.poll() is not None, what="serve start")
        api = Client(f"http://127.0.0.1:{port}", token=TOKEN)
        (item,) = api("/api/v1/datasets/photos/items").json()["items"]
        assert api(item["stream"].split(api.base, 1)[1]).body == b"hello"
        assert Client(api.base)("/api/v1/datasets").status == 401
        assert api("/api/v1/datasets/photos/sync", method="POST").status == 403  # --read-only
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert TOKEN not in log.read_text()


def test_serve_needs_a_token(tmp_path, storage, run):
    result = run("serve", expect=2)
    assert "web.token: missing" in result.stderr


def test_daemon_listen_serves_the_api_beside_the_hooks(tmp_path, storage):
    port = free_port()
    cfg = daemon_config(tmp_path, storage, watch=False,
                        daemon=f'listen = "127.0.0.1:{port}"\nhook_token = "{TOKEN}"')
    put_file(storage, "b.txt", "bee")
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log", "--no-preprocess").start()
    try:
        api = Client(f"http://127.0.0.1:{port}", token=TOKEN)
        items = wait_for(lambda: api("/api/v1/datasets/photos/items").json()["items"], what="startup sync")
        assert [i["filename"] for i in items] == ["/b.txt"]
        assert api("/healthz").status == 200 and b"syncd_items" in api("/metrics").body
        assert daemon.terminate() == 0
    finally:
        daemon.close()


def test_the_web_token_is_read_from_the_environment_only_when_served(tmp_path, storage, run, monkeypatch):
    monkeypatch.delenv("SYNCD_TEST_WEB_TOKEN", raising=False)
    run.config_file = local_config(tmp_path, storage, extra='[web]\ntoken = "${SYNCD_TEST_WEB_TOKEN}"\n')
    run("sync")  # other commands work without the variable
    result = run("serve", expect=2)
    assert "web.token: environment variable SYNCD_TEST_WEB_TOKEN is not set" in result.stderr
