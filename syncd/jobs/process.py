"""The life of one worker process of syncd's pool, apart from the tasks it runs: its signals,
its count of tasks in hand, and leaving when its parent is gone.

Light on purpose (no Pillow, no syncd.jobs.worker): `syncd sync` forks its workers with this
as their initializer before it imports the rest, so that they start sooner.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator

STOP_SIGNAL = signal.SIGUSR1  # what a stopping runner sends its workers

_active = 0  # tasks running in this process
_idle = threading.Condition()


def init_worker() -> None:
    """Run once in each worker process of syncd's pool."""
    from ..imports.fetch import stop_fetches  # imported now: a signal handler must not import

    def stop_fetching(_signum, _frame) -> None:
        stop_fetches()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # A stopping runner (or systemd, signalling the whole service) asks its workers to give
    # up fetches in flight: their jobs come back as retries, nothing half-written.
    signal.signal(STOP_SIGNAL, stop_fetching)
    signal.signal(signal.SIGTERM, stop_fetching)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True,
                         name="syncd-parent-watch").start()


@contextlib.contextmanager
def busy() -> Iterator[None]:
    """Around each task: a worker whose parent died leaves only between tasks."""
    global _active
    with _idle:
        _active += 1
    try:
        yield
    finally:
        with _idle:
            _active -= 1
            _idle.notify_all()


def _exit_with_parent(parent) -> None:
    """A pool worker outlives a parent killed with -9 (its queues never report EOF): leave
    when the parent is gone, once the task in hand is finished (no half-written artifact)."""
    parent.join()
    with _idle:
        while _active:
            _idle.wait()
        os._exit(0)


def ping() -> bool:
    """A no-op: proves a new worker process can start and run tasks."""
    return True


def preload() -> bool:
    """Import what tasks need (a forked worker's first task, ahead of the jobs)."""
    import importlib

    from .executors import PRELOAD

    for module in (*PRELOAD, "preprocess.pipeline", "preprocess.image", "preprocess.thumbnail",
                   "syncd.jobs.worker"):
        importlib.import_module(module)
    return True
