"""A worker pool started ahead of need: `syncd sync` starts one before it lists and writes the
catalogue, so that the pool's start-up (its processes, their imports of Pillow and syncd's
worker) overlaps that work instead of following it.

Light to import on purpose: the heavy imports happen in the workers (or in a thread).
The forked workers never touch the catalogue connection they inherit: they leave with
`os._exit`, so it is not even closed there.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import Executor


class WarmPool:
    """`factory` hands the warm pool to the runner first (syncd.jobs.runner.run_jobs's
    `executor`), and new pools after a worker death; `close` shuts it down if unused.

    When the caller is the process's only thread, the workers are forked from it at once:
    they inherit what start-up imported (config, drivers, syncd), cost a few milliseconds
    each, and import the decoders while the caller lists. Forking a process that runs other
    threads can copy a lock held mid-operation, so otherwise the pool is the fork-server one
    (syncd.jobs.executors.process_pool), started in a thread."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: Executor | None = None
        self._thread: threading.Thread | None = None
        if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
            self._pool = self._forked()
        else:
            self._thread = threading.Thread(target=self._start, name="syncd-warm-pool", daemon=True)
            self._thread.start()

    def _forked(self) -> Executor:
        from .executors import process_pool
        from .process import preload

        pool = process_pool(self.workers, fork=True)
        for _ in range(self.workers):  # the first submit forks every worker, in this thread
            pool.submit(preload)
        return pool

    def _start(self) -> None:
        try:
            from .executors import process_pool
            from .process import ping

            pool = process_pool(self.workers)
            for future in [pool.submit(ping) for _ in range(self.workers)]:
                future.result()
            self._pool = pool
        except Exception:  # noqa: BLE001 - the runner starts (and reports on) its own pool
            self._pool = None

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def factory(self) -> Executor:
        from .executors import process_pool

        self._join()
        pool, self._pool = self._pool, None
        return pool if pool is not None else process_pool(self.workers)

    def close(self) -> None:
        """Shut the pool down if no runner took it."""
        self._join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
