"""Where preprocessing tasks run: a local process pool (started ahead of need by
syncd.jobs.warm), the calling thread (`workers = 0`), or a Dask distributed cluster.

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

import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor

from ..errors import ConfigError
from .process import init_worker

class InlineExecutor(Executor):
    """Runs each task in the calling thread at submit (`workers = 0`): no crash isolation."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the caller via the future
            future.set_exception(error)
        return future


# Imported once by the fork server, so each worker starts with them loaded. Only libraries:
# Python 3.11's fork server does not use the parent's sys.path, so it could find another
# copy of syncd than the parent's; workers import syncd themselves, with the right path.
PRELOAD = ["PIL.Image", "PIL.JpegImagePlugin", "PIL.PngImagePlugin", "msgspec", "filetype"]


def process_pool(workers: int, *, fork: bool = False) -> ProcessPoolExecutor:
    """Worker processes forked from a clean server process (fast to start, and safe however
    many threads the parent runs); with `fork`, forked from the caller itself, which must
    be its process's only thread (syncd.jobs.warm)."""
    methods = multiprocessing.get_all_start_methods()
    if fork:
        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if context.get_start_method() == "forkserver":
            context.set_forkserver_preload(PRELOAD)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker)


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
