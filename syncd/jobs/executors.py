"""Where preprocessing tasks run, besides the local process pool: a Dask distributed cluster.

`[preprocess] executor = "dask://HOST:PORT"` sends each task (syncd.jobs.worker.run_task on a
self-contained Task: the driver's options, the item, the preprocessing options) to the
cluster's scheduler through `Client.get_executor()`, a `concurrent.futures.Executor`, so the
runner's claims, leases and result recording are the same as with the process pool.

A Dask worker that dies mid-task is not a broken pool: the scheduler runs the task again on
another worker, and after `distributed.scheduler.allowed-failures` deaths fails it with
`KilledWorker`, which the runner records as that job's failed attempt (retried up to
`max_attempts`). The workers must be able to import syncd (and any custom preprocessor).
"""

from __future__ import annotations

from concurrent.futures import Executor, Future

from ..errors import ConfigError

SCHEMES = {"dask://": "tcp://", "dask+tls://": "tls://"}


def scheduler_address(uri: str) -> str:
    """The Dask scheduler address of a `dask://HOST:PORT` executor URI."""
    for scheme, transport in SCHEMES.items():
        if uri.startswith(scheme) and len(uri) > len(scheme):
            return transport + uri[len(scheme):]
    raise ConfigError(f"preprocess.executor {uri!r}: expected dask://HOST:PORT")


class DaskExecutor(Executor):
    """A Dask cluster as an Executor; `_max_workers` is the cluster's thread count, so the
    runner keeps every worker busy. Shutting it down closes the client, not the cluster."""

    def __init__(self, uri: str, *, timeout_seconds: float = 30.0):
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError(f"preprocess.executor {uri!r}: Dask is not installed"
                              " (pip install 'syncd[dask]')") from None
        address = scheduler_address(uri)
        try:
            self.client = Client(address, timeout=timeout_seconds, set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise ConfigError(f"preprocess.executor {uri!r}: cannot reach the Dask scheduler"
                              f" at {address}: {error}") from error
        self._executor = self.client.get_executor(pure=False)
        workers = self.client.scheduler_info().get("workers", {})
        self._max_workers = max(1, sum(w.get("nthreads", 1) for w in workers.values()))

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait)
        self.client.close()
