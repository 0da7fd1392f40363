"""Fetching a URL without letting it reach where it should not.

A linked item or a CSV row names a URL that syncd then fetches: whoever writes the URL chooses
where syncd connects. So, before any connection:

- only `http` and `https` are fetched;
- the host is resolved, and every address it resolves to must be a public one: loopback,
  link-local (169.254.0.0/16, where clouds serve instance credentials), private, shared,
  reserved, multicast and unspecified addresses, and every block of IANA's special-purpose
  registries, are refused, IPv4 and IPv6 alike (including IPv4 addresses embedded in IPv6
  ones), unless the host is in `[fetch] allow_hosts`;
- the connection goes to the address that was checked, not to a second DNS answer (no DNS
  rebinding); TLS still verifies the certificate against the host name;
- a redirect is checked the same way before it is followed, at most `max_redirects` of them;
- a response larger than `max_bytes` is refused, from its Content-Length or while it streams;
- a body shorter than its Content-Length (or a chunked body without its last chunk) is a
  retriable error, never a complete download;
- each connect and each read has `timeout_seconds`; a whole download, headers included, ten
  times that: a watchdog closes the connection at the deadline, so a server that trickles
  bytes cannot hold a fetch past it;
- `stop_fetches()` (a stopping `jobs run` or daemon, or a worker told to stop) ends every
  fetch in the process within WATCH_TICK seconds, as a retriable FetchInterrupted;
- 5xx answers and connection errors are retried with exponential backoff (tenacity); nothing
  else is.

Proxies from the environment are not used: a proxy would do the connecting, unchecked.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, TypeVar
from urllib.parse import quote, urljoin, urlsplit

from .. import __version__
from ..errors import SyncdError

CHUNK = 64 * 1024  # bytes read at a time
SPOOL_BYTES = 8 * 1024 * 1024  # a body is kept in memory up to this, then in a temp file
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEADLINE_FACTOR = 10  # a whole download may take this many timeout_seconds
WATCH_TICK = 0.1  # seconds between the watchdog's looks at the deadline and the stop flag
_STOPPING = threading.Event()  # set when this process is stopping: fetches give up
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IANA's IPv4 and IPv6 Special-Purpose Address Registries (checked 2024), whole: Python 3.11's
# `ipaddress` misses some (192.0.0.8, the anycast and AS112 blocks, 3fff::/20, 5f00::/16).
# Not listed: the IPv6 blocks that embed an IPv4 address (::ffff:0:0/96, 64:ff9b::/96,
# 2002::/16), which are judged by the address they embed.
_SPECIAL_PURPOSE = {
    4: [ipaddress.ip_network(n) for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
        "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4")],
    6: [ipaddress.ip_network(n) for n in (
        "::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64", "2001::/23",
        "2001:db8::/32", "2620:4f:8000::/48", "3fff::/20", "5f00::/16", "fc00::/7",
        "fe80::/10", "ff00::/8")],
}
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"  # left as they are when quoting a path or query


_R = TypeVar("_R")

class FetchError(SyncdError):
    """A URL could not be fetched."""


class FetchRefused(FetchError):
    """The URL, or a redirect, leads where syncd may not connect; nothing was sent."""


class FetchTooLarge(FetchError):
    """The response is larger than [fetch] max_bytes."""


class FetchFailed(FetchError):
    """The server answered with an error, or could not be reached."""

    def __init__(self, message: str, *, retriable: bool, status: int | None = None):
        super().__init__(message)
        self.retriable = retriable
        self.status = status


class FetchInterrupted(FetchFailed):
    """The process is stopping (stop_fetches): the fetch was abandoned, to be tried again."""

    def __init__(self, message: str):
        super().__init__(message, retriable=True)


def stop_fetches() -> None:
    """End every fetch of this process now (safe from a signal handler: it sets a flag)."""
    _STOPPING.set()


def resume_fetches() -> None:
    """Allow fetching again (a process that stopped one run and goes on, as tests do)."""
    _STOPPING.clear()


class _Watchdog:
    """Shuts a connection's socket down at the deadline, or as soon as the process stops
    fetching, so that no blocked read (of headers or body) outlives either."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.sock: socket.socket | None = None  # the socket to shut down; replaced by TLS
        self.reason: str | None = None  # "deadline" | "stopped", once it fired
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="syncd-fetch-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(min(WATCH_TICK, max(0.0, self.deadline - time.monotonic()))):
            if _STOPPING.is_set():
                self.reason = "stopped"
            elif time.monotonic() >= self.deadline:
                self.reason = "deadline"
            else:
                continue
            sock = self.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return

    def close(self) -> None:
        self._done.set()


@dataclass(frozen=True)
class FetchPolicy:
    allow_hosts: tuple[str, ...] = ()  # host names, addresses or networks allowed though not public
    max_bytes: int = 100 * 1024 * 1024
    timeout_seconds: float = 30.0  # each connect and each read
    attempts: int = 3  # tries in all, for 5xx answers and connection errors
    backoff_seconds: float = 0.5  # wait before the first retry, doubled each time up to 8 s
    max_redirects: int = 5

    @classmethod
    def from_config(cls, config, **overrides) -> FetchPolicy:
        """From a `[fetch]` section (syncd.config.FetchConfig)."""
        return cls(allow_hosts=tuple(config.allow_hosts), max_bytes=config.max_bytes,
                   timeout_seconds=config.timeout_seconds, **overrides)


class Fetched:
    """A fetched body: a seekable stream at 0, with its size, MD5 and content type."""

    def __init__(self, url: str, final_url: str, content_type: str | None, size: int, md5: str,
                 body: BinaryIO):
        self.url, self.final_url, self.content_type = url, final_url, content_type
        self.size, self.md5, self.body = size, md5, body

    def read(self) -> bytes:
        self.body.seek(0)
        return self.body.read()

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> Fetched:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


Resolver = Callable[[str, int], list[str]]  # (host, port) -> IP addresses as text


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_class(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address may not be fetched from ("loopback", "private", ...), or None if public."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one (mapped, 6to4, NAT64) is judged as itself.
        # (Teredo addresses, 2001::/32, are not global in themselves.)
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and (kind := address_class(embedded)):
            return kind
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    )
    for kind, hit in checks:
        if hit:
            return kind
    if not ip.is_global:
        return "non-public"  # shared (100.64.0.0/10), documentation, benchmarking, ...
    if any(ip in network for network in _SPECIAL_PURPOSE[ip.version]):
        return "special-purpose"
    return None


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect and what to ask for."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # path and query, quoted
    addresses: tuple[str, ...]  # the checked addresses, in the resolver's order


class Fetcher:
    """Fetches URLs under a FetchPolicy. Thread-safe: holds no connection between fetches."""

    def __init__(self, policy: FetchPolicy = FetchPolicy(), *, resolver: Resolver = system_resolver,
                 sleep: Callable[[float], None] = time.sleep, ssl_context: ssl.SSLContext | None = None):
        self.policy = policy
        self.resolver = resolver
        self.sleep = sleep
        self._allow_names: set[str] = set()
        self._allow_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in policy.allow_hosts:
            entry = entry.strip().lower().strip("[]").rstrip(".")
            try:
                self._allow_networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._allow_names.add(entry)
        self._ssl = ssl_context or ssl.create_default_context()

    # -- checks, before anything is sent ----------------------------------------------------

    def check(self, url: str) -> Target:
        """Resolve and check `url`; raise FetchRefused if it may not be fetched."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise FetchRefused(f"refused {url!r}: not a valid URL: {error}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise FetchRefused(f"refused {url!r}: scheme {scheme or '(none)'!r} is not http or https")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise FetchRefused(f"refused {url!r}: no host")
        port = port or (443 if scheme == "https" else 80)
        try:
            addresses = self.resolver(host, port)
        except socket.gaierror as error:
            raise FetchFailed(f"cannot resolve {host!r} ({url}): {error.strerror or error}",
                              retriable=error.errno == socket.EAI_AGAIN) from None
        except OSError as error:
            raise FetchFailed(f"cannot resolve {host!r} ({url}): {error}", retriable=True) from None
        if not addresses:
            raise FetchFailed(f"cannot resolve {host!r} ({url}): no address", retriable=False)
        if host.lower() not in self._allow_names:
            for address in addresses:
                ip = ipaddress.ip_address(address.split("%")[0])
                kind = address_class(ip)
                if kind and not any(ip in network for network in self._allow_networks
                                    if network.version == ip.version):
                    what = f"{host} is" if _is_literal(host) else f"{host} resolves to {address},"
                    raise FetchRefused(
                        f"refused {url!r}: {what} a {kind} address"
                        f" (add the host to [fetch] allow_hosts to allow it)"
                    )
        path = quote(parts.path or "/", safe=_PATH_SAFE)
        if parts.query:
            path += "?" + quote(parts.query, safe=_PATH_SAFE + "?")
        return Target(url, scheme, host, port, path, tuple(addresses))

    # -- fetching -------------------------------------------------------------------------

    def fetch(self, url: str) -> Fetched:
        """GET `url` (following checked redirects), retrying 5xx answers and connection errors.

        Raises FetchRefused, FetchTooLarge or FetchFailed."""
        import tenacity  # here: it imports asyncio and tornado, which start-up does without

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self.policy.attempts)),
            wait=tenacity.wait_exponential(multiplier=self.policy.backoff_seconds, max=8),
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, FetchFailed) and e.retriable and not _STOPPING.is_set()),
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(self._fetch_once, url)

    def _fetch_once(self, url: str) -> Fetched:
        if _STOPPING.is_set():
            raise FetchInterrupted(f"{url}: not fetched: syncd is stopping")
        return self._under_deadline(url, lambda watchdog: self._follow(url, watchdog))

    def _under_deadline(self, url: str, call: Callable[[_Watchdog], _R]) -> _R:
        """call(watchdog) with the whole-request deadline held by a watchdog; a failure the
        watchdog caused is reported as the deadline (or the stop) it was."""
        budget = self.policy.timeout_seconds * DEADLINE_FACTOR
        watchdog = _Watchdog(time.monotonic() + budget)
        try:
            return call(watchdog)
        except FetchError as error:
            replacement = _watchdog_failure(url, watchdog, budget)
            if replacement is None:
                raise
            raise replacement from error
        finally:
            watchdog.close()

    def _follow(self, url: str, watchdog: _Watchdog) -> Fetched:
        current = url
        for _ in range(self.policy.max_redirects + 1):
            target = self.check(current)
            connection = self._request(target, watchdog)
            try:
                response = connection.getresponse()
                if response.status in REDIRECTS:
                    location = response.getheader("Location")
                    if not location:
                        raise FetchFailed(f"{current}: HTTP {response.status} without a Location",
                                          retriable=False, status=response.status)
                    current = urljoin(current, location.strip())
                    continue
                if response.status >= 500:
                    raise FetchFailed(f"{current}: HTTP {response.status} {response.reason}",
                                      retriable=True, status=response.status)
                if not 200 <= response.status < 300:
                    raise FetchFailed(f"{current}: HTTP {response.status} {response.reason}",
                                      retriable=False, status=response.status)
                return self._read_body(url, current, response, watchdog)
            except (OSError, http.client.HTTPException) as error:
                raise _connection_failure(current, error) from error
            finally:
                connection.close()
        raise FetchRefused(f"refused {url!r}: more than {self.policy.max_redirects} redirects")

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """POST `body` to `url` once, through the same checks as a fetch (no redirects
        followed): (status, reason). Raises FetchRefused or FetchFailed."""
        def send(watchdog: _Watchdog) -> tuple[int, str]:
            connection = self._request(self.check(url), watchdog, method="POST", body=body,
                                       headers=headers)
            try:
                response = connection.getresponse()
                response.read(64 * 1024)  # a receiver's answer is not kept
                return response.status, response.reason
            except (OSError, http.client.HTTPException) as error:
                raise _connection_failure(url, error) from error
            finally:
                connection.close()

        return self._under_deadline(url, send)

    def _request(self, target: Target, watchdog: _Watchdog, *, method: str = "GET", body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> http.client.HTTPConnection:
        timeout = self.policy.timeout_seconds
        sock, last_error = None, None
        for address in target.addresses:
            try:
                sock = self.connect(address, target.port, timeout)
                break
            except OSError as error:
                last_error = error
        if sock is None:
            raise FetchFailed(f"{target.url}: cannot connect to {target.host}: {last_error}",
                              retriable=True)
        watchdog.sock = sock
        if target.scheme == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                target.host, target.port, timeout=timeout, context=self._ssl)
            try:
                sock = self._ssl.wrap_socket(sock, server_hostname=target.host)
            except (OSError, ssl.SSLError) as error:
                sock.close()
                raise _connection_failure(target.url, error) from error
            watchdog.sock = sock
        else:
            connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        connection.sock = sock  # connected to the checked address: http.client will not connect again
        try:
            connection.request(method, target.path, body=body, headers={
                "User-Agent": f"syncd/{__version__}", "Accept": "*/*",
                "Accept-Encoding": "identity", **(headers or {}),
            })
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise _connection_failure(target.url, error) from error
        return connection

    def connect(self, address: str, port: int, timeout: float) -> socket.socket:
        """Open a TCP connection to an address that `check` passed. (Tests watch this.)"""
        return socket.create_connection((address, port), timeout=timeout)

    def _read_body(self, url: str, final_url: str, response: http.client.HTTPResponse,
                   watchdog: _Watchdog) -> Fetched:
        limit = self.policy.max_bytes
        length = response.getheader("Content-Length")
        if length and length.strip().isdigit() and int(length) > limit:
            raise FetchTooLarge(f"{final_url}: {int(length)} bytes, more than [fetch] max_bytes = {limit}")
        body = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - handed over
        digest, size = hashlib.md5(), 0
        try:
            while chunk := response.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise FetchTooLarge(f"{final_url}: more than [fetch] max_bytes = {limit} bytes")
                digest.update(chunk)
                body.write(chunk)
            if watchdog.reason is not None:  # the body ended because the watchdog cut it
                raise FetchFailed(f"{final_url}: cut by the watchdog", retriable=False)
            if length and length.strip().isdigit() and size < int(length):
                # http.client's read(n) returns b"" when the connection closes early.
                raise FetchFailed(f"{final_url}: connection closed after {size} of {int(length)}"
                                  " bytes (Content-Length)", retriable=True)
        except BaseException:
            body.close()
            raise
        body.seek(0)
        content_type = response.getheader("Content-Type")
        if content_type:
            content_type = content_type.split(";")[0].strip() or None
        return Fetched(url, final_url, content_type, size, digest.hexdigest(), body)


def _watchdog_failure(url: str, watchdog: _Watchdog, budget: float) -> FetchError | None:
    """The error to report when the watchdog cut the connection (whatever the read raised)."""
    if watchdog.reason == "stopped" or _STOPPING.is_set():
        return FetchInterrupted(f"{url}: fetch interrupted: syncd is stopping")
    if watchdog.reason == "deadline":
        return FetchFailed(f"{url}: no complete answer within {budget:g} s ({DEADLINE_FACTOR} x"
                           " [fetch] timeout_seconds)", retriable=False)
    return None


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


def _connection_failure(url: str, error: BaseException) -> FetchError:
    if isinstance(error, FetchError):
        return error
    if isinstance(error, ssl.SSLCertVerificationError):
        return FetchFailed(f"{url}: TLS certificate not valid: {error.verify_message}", retriable=False)
    if isinstance(error, TimeoutError | socket.timeout):
        return FetchFailed(f"{url}: timed out", retriable=True)
    return FetchFailed(f"{url}: {type(error).__name__}: {error}", retriable=True)
