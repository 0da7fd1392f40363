"""The daemon's HTTP endpoint on 127.0.0.1: health, metrics, token-guarded push hooks."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from conftest import put_file
from daemon_support import ThreadDaemon, daemon_config, free_port, items, synced, wait_for

TOKEN = "hook-token-value-1234"


def request(url, *, method="GET", body=None, headers=None):
    """(status, headers (case-insensitive, as HTTP has them), body text)."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


class ConfirmServer:
    """A stand-in for SNS's SubscribeURL endpoint: counts the GETs it gets."""

    def __init__(self):
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def confirm():
    with ConfirmServer() as server:
        yield server


@pytest.fixture
def hook(tmp_path, storage, confirm):
    port = free_port()
    cfg = daemon_config(tmp_path, storage, daemon=f"""
        listen = "127.0.0.1:{port}"
        hook_token = "{TOKEN}"
        debounce_seconds = 0.05
        sns_confirm_hosts = ["127.0.0.1:{confirm.port}"]
        """)
    with ThreadDaemon(cfg):
        wait_for(lambda: synced(tmp_path / "catalogue.db"), what="startup sync")
        yield f"http://127.0.0.1:{port}"


def test_healthz_and_metrics(hook, storage, tmp_path):
    status, headers, body = request(hook + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    put_file(storage, "a.jpg", "a")
    wait_for(lambda: "/a.jpg" in items(tmp_path / "catalogue.db"))

    def metrics():
        status, headers, body = request(hook + "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        return body if 'syncd_items{dataset="photos",state="present"} 1.0' in body else None

    body = wait_for(metrics, what="metrics")
    assert 'syncd_jobs{state="pending"} 1.0' in body
    assert 'syncd_events_applied_total{action="created",dataset="photos",source="watch"}' in body
    assert 'syncd_event_lag_seconds_count{source="watch"}' in body
    assert request(hook + "/nope")[0] == 404


def pubsub_for_unknown_bucket():
    return json.dumps({"message": {"attributes": {"eventType": "OBJECT_FINALIZE",
                                                  "bucketId": "not-ours", "objectId": "x.jpg"},
                                   "data": ""}})


@pytest.mark.parametrize("path", ["/hooks/sns", "/hooks/pubsub", "/hooks/eventgrid"])
def test_hooks_refuse_requests_without_the_token(hook, path, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    before = items(tmp_path / "catalogue.db")
    for url, headers in [(hook + path, {}), (hook + path + "?token=wrong", {}),
                         (hook + path, {"Authorization": "Bearer wrong"}),
                         (hook + path + "?token=" + TOKEN[:-1], {})]:
        status, response_headers, _ = request(url, method="POST", body=pubsub_for_unknown_bucket(),
                                              headers=headers)
        assert status == 401 and response_headers["WWW-Authenticate"] == "Bearer"
    assert request(hook + path + "?token=wrong", method="OPTIONS")[0] == 401
    assert items(tmp_path / "catalogue.db") == before


def test_token_in_query_or_header_and_never_logged(hook, caplog):
    caplog.set_level(logging.DEBUG)
    body = pubsub_for_unknown_bucket()
    assert request(hook + "/hooks/pubsub?token=" + TOKEN, method="POST", body=body)[0] == 200
    assert request(hook + "/hooks/pubsub", method="POST", body=body,
                   headers={"Authorization": "Bearer " + TOKEN})[0] == 200
    assert request(hook + "/hooks/pubsub?token=" + TOKEN, method="POST", body="{not json")[0] == 400
    assert caplog.records and TOKEN not in caplog.text


def test_sns_subscription_confirmation(hook, confirm):
    url = f"http://127.0.0.1:{confirm.port}/?Action=ConfirmSubscription&Token=abc"
    message = {"Type": "SubscriptionConfirmation", "MessageId": "1", "Token": "abc",
               "TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "SubscribeURL": url}
    status, _, _ = request(hook + "/hooks/sns?token=" + TOKEN, method="POST", body=json.dumps(message),
                           headers={"x-amz-sns-message-type": "SubscriptionConfirmation"})
    assert status == 200 and confirm.hits == ["/?Action=ConfirmSubscription&Token=abc"]
    # A SubscribeURL that is not SNS (nor allowed in config) is never fetched.
    message["SubscribeURL"] = f"http://localhost:{confirm.port}/steal"
    status, _, _ = request(hook + "/hooks/sns?token=" + TOKEN, method="POST", body=json.dumps(message),
                           headers={"x-amz-sns-message-type": "SubscriptionConfirmation"})
    assert status == 403 and len(confirm.hits) == 1


def test_event_grid_validation_handshakes(hook):
    validation = [{"id": "1", "topic": "/subscriptions/x", "subject": "", "eventTime": "2024-01-01T00:00:00Z",
                   "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                   "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                            "validationUrl": "https://example.invalid/validate"}}]
    status, _, body = request(hook + "/hooks/eventgrid?token=" + TOKEN, method="POST",
                              body=json.dumps(validation),
                              headers={"aeg-event-type": "SubscriptionValidation"})
    assert status == 200
    assert json.loads(body) == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    status, headers, _ = request(hook + "/hooks/eventgrid?token=" + TOKEN, method="OPTIONS",
                                 headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert status == 200 and headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_hooks_are_closed_without_a_configured_token(tmp_path, storage):
    port = free_port()
    cfg = daemon_config(tmp_path, storage, watch=False, daemon=f'listen = "127.0.0.1:{port}"')
    with ThreadDaemon(cfg):
        status, _, _ = request(f"http://127.0.0.1:{port}/hooks/pubsub?token=", method="POST",
                               body=pubsub_for_unknown_bucket())
        assert status == 401
        assert request(f"http://127.0.0.1:{port}/healthz")[0] == 200


def test_a_taken_port_is_a_clear_error(tmp_path, storage):
    import socket

    from conftest import Runner

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = daemon_config(tmp_path, storage, watch=False)
        result = Runner(cfg)("daemon", "--listen", f"127.0.0.1:{port}", expect=1)
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
