"""A worker pool started ahead of need, in a thread: `syncd sync` starts one while it lists and
writes the catalogue, so that the pool's start-up (importing Pillow and syncd's worker, the
fork server, each worker process) overlaps that work instead of following it.

Light to import on purpose: the heavy imports happen in the thread.
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor


class WarmPool:
    """`factory` hands the warm pool to the runner first (syncd.jobs.runner.run_jobs's
    `executor`), and new pools after a worker death; `close` shuts it down if unused."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: Executor | None = None
        self._thread = threading.Thread(target=self._start, name="syncd-warm-pool", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            from .executors import process_pool
            from .worker import ping

            pool = process_pool(self.workers)
            for future in [pool.submit(ping) for _ in range(self.workers)]:
                future.result()
            self._pool = pool
        except Exception:  # noqa: BLE001 - the runner starts (and reports on) its own pool
            self._pool = None

    def factory(self) -> Executor:
        from .executors import process_pool

        self._thread.join()
        pool, self._pool = self._pool, None
        return pool if pool is not None else process_pool(self.workers)

    def close(self) -> None:
        """Shut the pool down if no runner took it."""
        self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
