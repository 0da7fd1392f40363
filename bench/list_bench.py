"""Parallel listing by prefix against the sequential listing loop, on the emulators.

Starts moto (S3), fake-gcs-server (GCS) and Azurite (Azure) as the tests do, fills, in each,
one bucket with PREFIXES top-level folders of PER objects and one flat bucket with as many
objects, then lists each bucket three ways, taking turns:

- the SDK's own listing loop, reading each object's name, size, time and ETag: the floor, the
  loop every tool starts with (boto3's paginator, google-cloud-storage's list_blobs,
  azure-storage-blob's list_blobs, with the services' default page sizes, which the driver
  asks for too: 1,000 objects on S3 and GCS (fake-gcs-server, unlike GCS, answers with the
  whole bucket when no size is given), 5,000 on Azure);
- the driver with `list_concurrency = 1`: one listing in name order, read by the driver;
- the driver with `list_concurrency = 8`: in parallel by folder.

It prints the median of each and the parallel listing's speed-up against both: against the
SDK's loop (the target) and against the driver's own sequential listing (what running in
parallel adds, beside reading pages faster). Beside them, the emulator's own CPU time (read
from /proc) during the sequential and the parallel listing, and how busy that kept it during
the parallel one. An emulator that serves from one thread (moto's Python, Azurite's Node.js)
cannot serve faster than 100% of one core: once the parallel listing keeps it that busy, the
listing is as fast as that emulator allows, whatever the client does.

    python bench/list_bench.py                     # 100 prefixes x 300 objects
    python bench/list_bench.py --per 1000 --kinds gcs
    python bench/list_bench.py --latency-ms 20     # each request held 20 ms, as on a network

Loopback has no network between client and service; `--latency-ms` puts a proxy (a process
of its own) in front of each emulator for the listings, which holds every request that long
before passing it on: the round trip that a real service's pages take, and that parallel
requests overlap. The emulator's work per request is unchanged.

Targets: at least 1.5x faster on 100 top-level prefixes; never slower on a flat bucket.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import emulators  # noqa: E402


def start(kind: str):
    """Run an emulator fixture's generator outside pytest: (endpoint, stop)."""
    fixture = {"s3": emulators.s3_endpoint, "gcs": emulators.gcs_endpoint,
               "azure": emulators.azure_endpoint}[kind]
    generator = fixture.__wrapped__()
    endpoint = next(generator)
    return endpoint, lambda: next(generator, None)


def fill(endpoint, bucket: str, names: list[str]) -> None:
    """Write the objects with the SDK itself (no stat after each put, as the driver does)."""
    if endpoint.kind == "s3":
        client = emulators.s3_client(endpoint)
        write = lambda name: client.put_object(Bucket=bucket, Key=name, Body=b"x" * 64)  # noqa: E731
    elif endpoint.kind == "gcs":
        target = emulators.gcs_client(endpoint).bucket(bucket)
        write = lambda name: target.blob(name).upload_from_string(b"x" * 64)  # noqa: E731
    else:
        container = emulators.azure_service(endpoint).get_container_client(bucket)
        write = lambda name: container.upload_blob(name, b"x" * 64)  # noqa: E731
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, names))


def sdk_loop(endpoint, bucket: str) -> int:
    """The plain listing loop of the service's SDK; the number of objects it read."""
    count = 0
    if endpoint.kind == "s3":
        pages = emulators.s3_client(endpoint).get_paginator("list_objects_v2").paginate(
            Bucket=bucket)
        for page in pages:
            for item in page.get("Contents", ()):
                (item["Key"], item["Size"], item["LastModified"].timestamp(), item["ETag"])
                count += 1
    elif endpoint.kind == "gcs":  # 1,000 a page: GCS's default, which fake-gcs-server lacks
        for blob in emulators.gcs_client(endpoint).list_blobs(bucket, page_size=1000):
            (blob.name, blob.size, blob.updated.timestamp(), blob.etag)
            count += 1
    else:
        container = emulators.azure_service(endpoint).get_container_client(bucket)
        for page in container.list_blobs().by_page():
            for blob in page:
                (blob.name, blob.size, blob.last_modified.timestamp(), blob.etag)
                count += 1
    return count


@dataclass
class Run:
    seconds: float
    emulator_cpu: float  # seconds of the emulator's CPU time the listing took


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time, all its threads (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listing(endpoint, bucket: str, concurrency: int, expected: int) -> Run:
    """One listing of the bucket: by the driver (concurrency >= 1) or by the SDK (0)."""
    driver = None
    if concurrency:
        driver = endpoint.driver(bucket, list_concurrency=concurrency)
        driver.inner.client if hasattr(driver.inner, "client") else driver.inner.container  # connect
    cpu = cpu_seconds(endpoint.pid)
    started = time.perf_counter()
    if driver is None:
        count = sdk_loop(endpoint, bucket)
    else:
        count = sum(len(page) for page in driver.list_pages())
    took = time.perf_counter() - started
    run = Run(took, cpu_seconds(endpoint.pid) - cpu)
    if driver is not None:
        driver.close()
    assert count == expected, (count, expected)
    return run


def turns(endpoint, bucket: str, total: int, repeats: int) -> dict[int, list[Run]]:
    """Each listing `repeats` times: SDK loop (0), sequential (1), parallel (8), taking turns
    forwards then backwards (the machine is shared, and an emulator slows as it runs), so
    that the drift falls on every side."""
    runs: dict[int, list[Run]] = {0: [], 1: [], 8: []}
    for repeat in range(repeats):
        for concurrency in ((0, 1, 8) if repeat % 2 == 0 else (8, 1, 0)):
            runs[concurrency].append(listing(endpoint, bucket, concurrency, total))
    return runs


def row(kind: str, label: str, runs: dict[int, list[Run]]) -> str:
    """A table row of the medians: SDK loop (0), sequential (1) and parallel (8)."""
    sdk, one, eight = (statistics.median(run.seconds for run in runs[c]) for c in (0, 1, 8))
    cpu_one, cpu_eight = (statistics.median(run.emulator_cpu for run in runs[c]) for c in (1, 8))
    busy = statistics.median(run.emulator_cpu / run.seconds for run in runs[8])
    return (f"| {kind} | {label} | {sdk:.2f} | {one:.2f} | {eight:.2f} | {sdk / eight:.2f}x"
            f" | {one / eight:.2f}x | {cpu_one:.2f} | {cpu_eight:.2f} | {busy:.0%} |")


def _proxy(host: str, port: int, delay: float, ready) -> None:
    """Forward 127.0.0.1:<a free port> to host:port, each request chunk `delay` s late."""
    async def pipe(reader, writer, late: float) -> None:
        try:
            while data := await reader.read(1 << 16):
                if late:
                    await asyncio.sleep(late)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection(host, port)
        await asyncio.gather(pipe(client_reader, server_writer, delay),
                             pipe(server_reader, client_writer, 0.0))

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ready.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(serve())


@contextmanager
def network(endpoint, latency_ms: float):
    """The endpoint as reached through a proxy that holds each request `latency_ms`."""
    if not latency_ms:
        yield endpoint
        return
    where = urlsplit(endpoint.url)
    ours, theirs = multiprocessing.Pipe()
    proxy = multiprocessing.Process(target=_proxy, daemon=True,
                                    args=(where.hostname, where.port, latency_ms / 1000, theirs))
    proxy.start()
    try:
        port = ours.recv()
        swap = lambda value: value.replace(where.netloc, f"127.0.0.1:{port}") \
            if isinstance(value, str) else value  # noqa: E731
        yield dataclasses.replace(endpoint, url=swap(endpoint.url), credentials={
            key: swap(value) for key, value in endpoint.credentials.items()})
    finally:
        proxy.terminate()
        proxy.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=100)
    parser.add_argument("--per", type=int, default=300, help="objects per prefix")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--kinds", default="s3,gcs,azure")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="hold each listing request this long on its way (a proxy)")
    args = parser.parse_args()
    total = args.prefixes * args.per
    print("| storage | bucket | SDK loop s | driver, sequential s | driver, parallel (8) s |"
          " parallel vs SDK loop | parallel vs sequential | emulator CPU, sequential s |"
          " emulator CPU, parallel s | emulator busy, parallel |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        endpoint, stop = start(kind)
        try:
            foldered, flat = endpoint.new_bucket(), endpoint.new_bucket()
            started = time.monotonic()
            fill(endpoint, foldered, [f"p{i:03d}/img_{j:05d}.jpg" for i in range(args.prefixes)
                                      for j in range(args.per)])
            fill(endpoint, flat, [f"img_{j:07d}.jpg" for j in range(total)])
            print(f"{kind}: filled 2 x {total:,} objects in {time.monotonic() - started:.0f} s",
                  file=sys.stderr, flush=True)
            with network(endpoint, args.latency_ms) as reached:
                for bucket, label in ((foldered, f"{args.prefixes} prefixes x {args.per}"),
                                      (flat, f"flat, {total:,}")):
                    print(row(kind, label, turns(reached, bucket, total, args.repeats)), flush=True)
        finally:
            stop()


if __name__ == "__main__":
    main()
