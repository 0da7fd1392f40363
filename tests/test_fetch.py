"""The safe fetcher: every refused URL class is refused before any connection is made."""

from __future__ import annotations

import hashlib
import socket

import pytest

from local_http import Response, http_server  # noqa: F401 - the fixture
from syncd.imports.fetch import (
    Fetcher,
    FetchFailed,
    FetchPolicy,
    FetchRefused,
    FetchTooLarge,
    address_class,
    system_resolver,
)


class RecordingFetcher(Fetcher):
    """Records every TCP connection it opens, and never sleeps between retries."""

    def __init__(self, policy=FetchPolicy(), **kwargs):
        self.connections: list[tuple[str, int]] = []
        self.sleeps: list[float] = []
        kwargs.setdefault("sleep", self.sleeps.append)
        super().__init__(policy, **kwargs)

    def connect(self, address, port, timeout):
        self.connections.append((address, port))
        return super().connect(address, port, timeout)


@pytest.fixture
def no_sockets(monkeypatch):
    """Any TCP connection attempt fails the test: refusals must happen before connecting."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)


def local_policy(**overrides) -> FetchPolicy:
    return FetchPolicy(allow_hosts=("127.0.0.1",), timeout_seconds=5, **overrides)


def fake_resolver(table: dict[str, list[str]]):
    def resolve(host, port):
        if host in table:
            return table[host]
        return system_resolver(host, port)  # IP literals only: never a DNS query in tests
    return resolve


# -- what is fetched ------------------------------------------------------------------------

def test_fetches_from_an_allowed_local_server(http_server):
    url = http_server.route("/a.jpg", Response(body=b"JPEGDATA", headers={"Content-Type": "image/jpeg; q=1"}))
    fetcher = RecordingFetcher(local_policy())
    with fetcher.fetch(url) as fetched:
        assert fetched.read() == b"JPEGDATA"
        assert fetched.size == 8 and fetched.content_type == "image/jpeg"
        assert fetched.md5 == hashlib.md5(b"JPEGDATA").hexdigest()
    assert fetcher.connections == [("127.0.0.1", http_server.port)]


def test_connects_to_the_checked_address_and_sends_the_host_name(http_server):
    # "files.test" resolves (by the injected resolver) to the local server; the request goes to
    # that checked address, with the name in the Host header: no second DNS lookup to rebind.
    http_server.route("/x", b"ok")
    fetcher = RecordingFetcher(FetchPolicy(allow_hosts=("files.test",), timeout_seconds=5),
                               resolver=fake_resolver({"files.test": ["127.0.0.1"]}))
    with fetcher.fetch(f"http://files.test:{http_server.port}/x") as fetched:
        assert fetched.read() == b"ok"
    assert fetcher.connections == [("127.0.0.1", http_server.port)]
    assert http_server.hosts == [f"files.test:{http_server.port}"]


def test_allow_hosts_takes_networks(http_server):
    url = http_server.route("/n", b"net")
    fetcher = RecordingFetcher(FetchPolicy(allow_hosts=("127.0.0.0/8",), timeout_seconds=5))
    with fetcher.fetch(url) as fetched:
        assert fetched.read() == b"net"


def test_public_address_passes_the_check_without_connecting(no_sockets):
    fetcher = Fetcher(resolver=fake_resolver({"example.com": ["93.184.216.34", "2606:2800:220:1::248"]}))
    target = fetcher.check("https://example.com/a b.jpg?x=1&y=a b")
    assert target.addresses == ("93.184.216.34", "2606:2800:220:1::248")
    assert (target.port, target.path) == (443, "/a%20b.jpg?x=1&y=a%20b")


def test_path_with_spaces_is_quoted_on_the_wire(http_server):
    http_server.route("/with%20space.jpg", b"s")
    fetcher = RecordingFetcher(local_policy())
    with fetcher.fetch(http_server.url("/with space.jpg")) as fetched:
        assert fetched.read() == b"s"
    assert http_server.hits == ["/with%20space.jpg"]


# -- refused, each class, before any connection ---------------------------------------------

@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://example.com/", "data:,hello",
    "javascript:alert(1)", "example.com/a.jpg", "//example.com/a.jpg", "http:///nohost",
])
def test_refuses_schemes_other_than_http(url, no_sockets):
    with pytest.raises(FetchRefused, match="scheme|no host"):
        RecordingFetcher().fetch(url)


@pytest.mark.parametrize("url, kind", [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.8.9.10:8080/", "loopback"),
    ("http://2130706433/", "loopback"),  # 127.0.0.1 as one number
    ("http://0x7f.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),  # the cloud metadata service
    ("http://169.254.0.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://10.0.0.1/", "private"),
    ("http://10.255.255.255/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.254/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fd12:3456::1]/", "private"),  # IPv6 unique local (ULA)
    ("http://[fc00::1]/", "private"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped IPv6
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[::ffff:169.254.169.254]/", "link-local"),
    ("http://[2002:a00:1::]/", "private"),  # 6to4 of 10.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),  # NAT64 of 169.254.169.254
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://100.64.0.1/", "non-public"),  # carrier-grade NAT
    ("http://240.0.0.1/", "reserved"),
])
def test_refuses_non_public_addresses(url, kind, no_sockets):
    fetcher = RecordingFetcher()
    with pytest.raises(FetchRefused, match=f"a {kind} address") as error:
        fetcher.fetch(url)
    assert "allow_hosts" in str(error.value)
    assert fetcher.connections == []


@pytest.mark.parametrize("addresses", [
    ["10.1.2.3"], ["169.254.169.254"], ["93.184.216.34", "192.168.0.7"], ["fd00::5"],
])
def test_refuses_a_name_resolving_to_any_non_public_address(addresses, no_sockets):
    fetcher = RecordingFetcher(resolver=fake_resolver({"sneaky.example": addresses}))
    with pytest.raises(FetchRefused, match="sneaky.example resolves to"):
        fetcher.fetch("https://sneaky.example/a.jpg")
    assert fetcher.connections == []


def test_loopback_is_refused_unless_allowed(http_server):
    url = http_server.route("/a", b"a")
    fetcher = RecordingFetcher(FetchPolicy())
    with pytest.raises(FetchRefused, match="loopback"):
        fetcher.fetch(url)
    assert fetcher.connections == [] and http_server.hits == []


def test_address_class_of_public_addresses():
    for address in ("8.8.8.8", "93.184.216.34", "2606:4700::1111", "2002:808:808::1"):
        assert address_class(address) is None


# -- redirects ------------------------------------------------------------------------------

@pytest.mark.parametrize("location", [
    "http://10.0.0.1/secret", "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
    "http://192.168.0.1:8080/", "file:///etc/passwd", "ftp://10.0.0.1/x",
])
def test_redirect_into_a_refused_class_is_not_followed(http_server, location):
    url = http_server.redirect("/go", location)
    fetcher = RecordingFetcher(local_policy())
    with pytest.raises(FetchRefused):
        fetcher.fetch(url)
    # Only the allowed server was ever connected to; the redirect target never was.
    assert fetcher.connections == [("127.0.0.1", http_server.port)]
    assert http_server.hits == ["/go"]


def test_redirect_to_an_unallowed_host_name_is_checked_too(http_server):
    url = http_server.redirect("/go", "http://internal.example/x")
    fetcher = RecordingFetcher(local_policy(), resolver=fake_resolver({"internal.example": ["172.20.0.5"]}))
    with pytest.raises(FetchRefused, match="internal.example resolves to 172.20.0.5, a private"):
        fetcher.fetch(url)
    assert fetcher.connections == [("127.0.0.1", http_server.port)]


def test_redirects_within_allowed_hosts_are_followed(http_server):
    http_server.redirect("/one", "/two", status=301)
    http_server.redirect("/two", http_server.url("/three"), status=307)
    http_server.route("/three", b"arrived")
    with RecordingFetcher(local_policy()).fetch(http_server.url("/one")) as fetched:
        assert fetched.read() == b"arrived"
        assert fetched.final_url == http_server.url("/three")
    assert http_server.hits == ["/one", "/two", "/three"]


def test_redirect_loops_stop(http_server):
    http_server.redirect("/loop", "/loop")
    with pytest.raises(FetchRefused, match="more than 5 redirects"):
        RecordingFetcher(local_policy()).fetch(http_server.url("/loop"))
    assert len(http_server.hits) == 6


# -- size, errors, retries ------------------------------------------------------------------

def test_oversize_response_is_refused_from_its_content_length(http_server):
    url = http_server.route("/big", b"x" * 2000)
    with pytest.raises(FetchTooLarge, match="2000 bytes, more than .*max_bytes = 1000"):
        RecordingFetcher(local_policy(max_bytes=1000)).fetch(url)


def test_oversize_response_without_length_is_cut_while_streaming(http_server):
    url = http_server.route("/stream", Response(body=b"y" * 300_000, content_length=False))
    with pytest.raises(FetchTooLarge, match="more than .*max_bytes = 100000"):
        RecordingFetcher(local_policy(max_bytes=100_000)).fetch(url)


def test_response_at_the_limit_is_fine(http_server):
    url = http_server.route("/edge", Response(body=b"z" * 1000, content_length=False))
    with RecordingFetcher(local_policy(max_bytes=1000)).fetch(url) as fetched:
        assert fetched.size == 1000


def test_5xx_is_retried_with_backoff(http_server):
    url = http_server.route("/flaky", Response(500), Response(503), Response(body=b"third time"))
    fetcher = RecordingFetcher(local_policy(backoff_seconds=0.25))
    with fetcher.fetch(url) as fetched:
        assert fetched.read() == b"third time"
    assert len(http_server.hits) == 3
    assert fetcher.sleeps == [0.25, 0.5]


def test_persistent_5xx_fails_after_the_attempts(http_server):
    url = http_server.route("/down", Response(502))
    fetcher = RecordingFetcher(local_policy(attempts=3))
    with pytest.raises(FetchFailed, match="HTTP 502") as error:
        fetcher.fetch(url)
    assert error.value.status == 502 and len(http_server.hits) == 3


def test_4xx_is_not_retried(http_server):
    url = http_server.route("/missing", Response(404))
    with pytest.raises(FetchFailed, match="HTTP 404"):
        RecordingFetcher(local_policy()).fetch(url)
    assert len(http_server.hits) == 1


def test_connection_refused_is_retried_then_fails():
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fetcher = RecordingFetcher(local_policy(attempts=2))
    with pytest.raises(FetchFailed, match="cannot connect"):
        fetcher.fetch(f"http://127.0.0.1:{port}/")
    assert len(fetcher.connections) == 2 and len(fetcher.sleeps) == 1


def test_a_silent_server_times_out():
    with socket.socket() as listener:  # accepts connections (the kernel does) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        fetcher = RecordingFetcher(FetchPolicy(allow_hosts=("127.0.0.1",), timeout_seconds=0.2,
                                               attempts=1))
        with pytest.raises(FetchFailed, match="timed out") as error:
            fetcher.fetch(f"http://127.0.0.1:{port}/")
        assert error.value.retriable


# -- TLS: connected to the checked address, certificate checked against the host name -------

@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on 127.0.0.1 whose self-signed certificate names files.test."""
    import datetime
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "files.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("files.test")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = f"secure {self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    client_context = ssl.create_default_context(cafile=str(cert_file))
    yield httpd.server_address[1], client_context
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_https_connects_to_the_checked_address_and_verifies_the_host_name(tls_server):
    port, context = tls_server
    fetcher = RecordingFetcher(FetchPolicy(allow_hosts=("files.test",), timeout_seconds=5),
                               resolver=fake_resolver({"files.test": ["127.0.0.1"]}), ssl_context=context)
    with fetcher.fetch(f"https://files.test:{port}/a.jpg") as fetched:
        assert fetched.read() == f"secure files.test:{port}".encode()
    assert fetcher.connections == [("127.0.0.1", port)]


def test_https_with_a_certificate_for_another_name_fails_without_retry(tls_server):
    port, context = tls_server
    fetcher = RecordingFetcher(FetchPolicy(allow_hosts=("other.test",), timeout_seconds=5),
                               resolver=fake_resolver({"other.test": ["127.0.0.1"]}), ssl_context=context)
    with pytest.raises(FetchFailed, match="TLS certificate not valid") as error:
        fetcher.fetch(f"https://other.test:{port}/a.jpg")
    assert not error.value.retriable and len(fetcher.connections) == 1
