"""The HTTP service's bounds, against the real server on 127.0.0.1 (issue 11, item 7):
1,000 concurrent authenticated deliveries are all answered and applied; connections that never
finish their headers or their body are closed, and hold nothing meanwhile."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

from daemon_support import ThreadDaemon, free_port, items, synced, wait_for
from emulators import gcs_client
from test_daemon_cloud import TOKEN, cloud_config, pubsub_push

DELIVERIES = 1000


async def _post(port: int, path: str, body: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 120)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def _post_all(port: int, bodies: list[bytes]) -> list[int | str]:
    async def one(body):
        try:
            return await _post(port, "/hooks/pubsub", body)
        except (OSError, IndexError, ValueError, TimeoutError) as error:
            return f"{type(error).__name__}: {error}"

    return await asyncio.gather(*(one(b) for b in bodies))


def test_a_thousand_concurrent_deliveries_are_all_answered_and_applied(tmp_path, gcs_endpoint):
    bucket = gcs_endpoint.new_bucket()
    client_bucket = gcs_client(gcs_endpoint).bucket(bucket)
    port = free_port()
    db = tmp_path / "catalogue.db"
    cfg = cloud_config(tmp_path, gcs_endpoint.toml(bucket, name="bucket"),
                       daemon=f'listen = "127.0.0.1:{port}"\nhook_token = "{TOKEN}"')
    names = [f"burst/{n:04d}.txt" for n in range(DELIVERIES)]
    with ThreadDaemon(cfg):
        wait_for(lambda: synced(db))
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda name: client_bucket.blob(name).upload_from_string(name.encode()), names))
        bodies = [json.dumps(pubsub_push(bucket, name)).encode() for name in names]
        answers = asyncio.run(_post_all(port, bodies))
        assert answers == [200] * DELIVERIES, sorted({str(a) for a in answers})
        catalogued = items(db)
        assert all(f"/{name}" in catalogued and catalogued[f"/{name}"]["state"] == "present"
                   for name in names)


async def _stalled_clients(port: int, count: int, *, wait: float) -> list[bool]:
    """`count` connections sending half a request line; True for each the server closed."""
    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /hooks/pubsub HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(), wait) == b""
        except TimeoutError:
            return False
        finally:
            writer.close()

    return await asyncio.gather(*(one() for _ in range(count)))


def _healthz(port: int) -> int:
    async def get():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        line = await reader.readline()
        writer.close()
        return int(line.split()[1])

    return asyncio.run(get())


def test_connections_that_never_finish_their_headers_or_body_are_closed(tmp_path, gcs_endpoint):
    bucket = gcs_endpoint.new_bucket()
    port = free_port()
    db = tmp_path / "catalogue.db"
    cfg = cloud_config(tmp_path, gcs_endpoint.toml(bucket, name="bucket"),
                       daemon=f'listen = "127.0.0.1:{port}"\nhook_token = "{TOKEN}"')
    cfg.write_text(cfg.read_text() + "\n[web]\nheader_timeout_seconds = 1\nbody_timeout_seconds = 1\n")
    with ThreadDaemon(cfg):
        wait_for(lambda: synced(db))

        async def stalled_and_served():
            stalled = asyncio.ensure_future(_stalled_clients(port, 300, wait=20))
            await asyncio.sleep(0.3)
            # Meanwhile the server answers others at once.
            served = await asyncio.get_running_loop().run_in_executor(None, _healthz, port)
            return served, await stalled

        served, closed = asyncio.run(stalled_and_served())
        assert served == 200
        assert all(closed), f"{closed.count(False)} of 300 stalled connections were kept open"

        async def short_body():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"POST /hooks/pubsub HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                         f"Content-Length: 1000\r\n\r\n{{\"message\"".encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 20)
            writer.close()
            return int(line.split()[1])

        assert asyncio.run(short_body()) == 408
        assert items(db) == {}


def test_past_the_connection_cap_requests_get_503_not_a_reset(tmp_path, storage):
    from daemon_support import daemon_config

    port = free_port()
    cfg = daemon_config(tmp_path, storage, watch=False, daemon=f'listen = "127.0.0.1:{port}"')
    cfg.write_text(cfg.read_text() + "\n[web]\nmax_connections = 20\n")

    async def crowded() -> int:
        # The server accepts connections in order: these 25 are open when /healthz is read.
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(25)]
        over = await asyncio.get_running_loop().run_in_executor(None, _healthz, port)
        for _, writer in idle:
            writer.close()
            await writer.wait_closed()
        return over

    with ThreadDaemon(cfg):
        assert asyncio.run(crowded()) == 503
        wait_for(lambda: _healthz(port) == 200, what="served again once the idle connections closed")
