"""Issue 11 #14: credentials in URLs never reach errors or logs; source errors stay one line."""

from __future__ import annotations

import base64
import logging
import textwrap

from conftest import Runner, local_config, write_config
from daemon_support import free_port, wait_for
from emulators import AZURITE_ACCOUNT, AZURITE_KEY, unique_name
from syncd.config import load_config
from test_daemon_cloud import azure_queue_url  # noqa: F401 - the fixture

PASSWORD = "hunter2-very-secret"


def test_endpoint_url_credentials_are_not_printed(tmp_path):
    port = free_port()  # nothing listens there
    config = write_config(tmp_path / "syncd.toml", f"""
        [catalogue]
        path = "{tmp_path / 'catalogue.db'}"

        [[drivers]]
        name = "minio"
        kind = "s3"
        bucket = "b"
        endpoint_url = "http://admin:{PASSWORD}@127.0.0.1:{port}"
        region = "us-east-1"
        access_key_id = "AKIAEXAMPLE"
        secret_access_key = "also-secret-value"
        timeout_seconds = 1

        [[datasets]]
        name = "photos"
        driver = "minio"
        """)
    run = Runner(config)
    for args in (["sync"], ["drivers", "check", "minio"]):
        result = run(*args, expect=None)
        assert result.exit_code != 0
        output = result.stdout + result.stderr
        assert "127.0.0.1" in output, output  # the error does say where
        assert PASSWORD not in output and "also-secret-value" not in output, output


def source_warnings(caplog, source, count=1, timeout=20.0):
    """Start `source`, wait for `count` warnings from it, stop it; their messages."""
    source.start(lambda delivery: delivery.finish())
    try:
        wait_for(lambda: len([r for r in caplog.records if r.levelno == logging.WARNING]) >= count,
                 timeout=timeout, what="the source's warning")
    finally:
        source.stop()
        source.join(5)
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def with_source(tmp_path, source: str):
    """A config with a local dataset and one `[[sources]]` table (its keys in `source`)."""
    return load_config(local_config(tmp_path, tmp_path, extra="[[sources]]\n" + textwrap.dedent(source)))


def test_sqs_source_errors_are_redacted_one_liners(tmp_path, caplog):
    from syncd.service.sources import Router
    from syncd.service.sources.sqs import SqsQueueSource

    port = free_port()
    loaded = with_source(tmp_path, f"""
        kind = "sqs"
        queue_url = "http://user:{PASSWORD}@127.0.0.1:{port}/123/q"
        endpoint_url = "http://user:{PASSWORD}@127.0.0.1:{port}"
        region = "us-east-1"
        access_key_id = "AKIAEXAMPLE"
        secret_access_key = "also-secret-value"
        wait_seconds = 0
        receivers = 1
        """)
    caplog.set_level(logging.INFO)
    source = SqsQueueSource("sqs[0]", loaded.sources[0], Router(loaded))
    messages = source_warnings(caplog, source)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in text and "also-secret-value" not in text
    assert all("\n" not in message for message in messages)
    assert "127.0.0.1" in messages[0]


def test_azure_queue_source_errors_are_redacted_one_liners(tmp_path, caplog, azure_queue_url):
    from syncd.service.sources import Router
    from syncd.service.sources.azure_queue import AzureQueueSource

    wrong_key = base64.b64encode(b"not the account key, but secret" * 2).decode()
    connection = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                  f"AccountKey={wrong_key};QueueEndpoint={azure_queue_url};")
    loaded = with_source(tmp_path, f"""
        kind = "azure_queue"
        queue = "{unique_name('q')}"
        connection_string = "{connection}"
        poll_seconds = 0.2
        """)
    caplog.set_level(logging.INFO)
    source = AzureQueueSource("azure_queue[0]", loaded.sources[0], Router(loaded))
    messages = source_warnings(caplog, source)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert wrong_key not in text and AZURITE_KEY not in text
    assert all("\n" not in message and "<?xml" not in message for message in messages), messages
