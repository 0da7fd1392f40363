"""Running jobs: claim from the queue, run in an executor, record the results.

`run_jobs(app)` is the whole stage. Tasks run in a process pool sized by
`[preprocess] workers` (default: the CPU count), or in any `concurrent.futures.Executor`
given instead (a Dask cluster's, to spread the work over machines). The main process alone
touches the catalogue: it claims jobs, renews their leases while they run, and records each
result in a transaction with the item's metadata (syncd.jobs.record).

A worker that dies (a segfault in a decoder, the OOM killer) breaks the whole process pool,
and every task then in flight fails with it. The pool is replaced, and those tasks are run
again one at a time, so that the one that kills its worker is known; it goes back to the
queue until it has used up `max_attempts`, then fails. The others are not charged for it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import BrokenExecutor, Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import preprocess

from ..catalogue import Dataset, items
from ..catalogue.archives import EXPAND
from ..catalogue.jobs import CLEANUP, PREPROCESS, Job, JobQueue
from ..errors import ConfigError, SyncdError
from ..imports.idlinks import link_target
from ..imports.links import LinkError, item_link_target
from .executors import InlineExecutor, process_pool
from .process import STOP_SIGNAL, ping
from .record import Recorder
from .worker import Preprocessor, Task, TaskResult, run_task

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the number of jobs just finished
ExecutorFactory = Callable[[], Executor]

POLL_SECONDS = 0.5  # --wait: how often to look for jobs held by other runners
STOP_CHECK = 0.5  # seconds between looks at the stop flag while jobs are in flight
IN_FLIGHT_PER_WORKER = 4  # tasks submitted ahead, per worker...
IN_FLIGHT_MIN = 16  # ...and at least this many (claims are one transaction per batch)


@dataclass
class RunResult:
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0  # went back to the queue (storage errors, worker deaths)
    worker_deaths: int = 0
    seconds: float = 0.0

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


def preprocess_options(app) -> preprocess.Options:
    config = app.config.preprocess
    return preprocess.Options(
        thumbnails=config.thumbnails, thumbnail_size=config.thumbnail_size,
        thumbnail_format=config.thumbnail_format, thumbnail_quality=config.thumbnail_quality,
        max_pixels=config.max_pixels, head_bytes=config.head_bytes, memory_mb=config.memory_mb,
        video_preview=config.video_preview,
    )


def run_jobs(
    app,
    *,
    datasets: Sequence[str] | None = None,
    wait: bool = False,
    executor: Executor | ExecutorFactory | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    forever: bool = False,
) -> RunResult:
    """Run the open jobs (of `datasets`, default all) until none is claimable.

    wait: also wait for jobs other runners hold, taking them over if those runners die,
        until no job is pending or running.
    forever: keep going, looking for new jobs every POLL_SECONDS, until `stop` is set (the
        daemon's mode: the worker pool stays up between jobs; see BackgroundRunner).
    executor: an Executor, or a function making one (then a broken one is replaced);
        default: a process pool of `workers` (default `[preprocess] workers`, else the CPU
        count; 0 runs tasks in this process).
    stop: set it to stop claiming; jobs in flight are finished and recorded first.
    """
    return Runner(app, datasets=datasets, wait=wait, executor=executor, workers=workers,
                  progress=progress, stop=stop, forever=forever).run()


class BackgroundRunner:
    """Runs jobs in a thread of its own, with its own catalogue connection, from start() until
    stop(): new jobs are picked up as they are queued (within POLL_SECONDS)."""

    def __init__(self, open_app: Callable[[], Any], **options):
        self.open_app = open_app  # makes the App (config, catalogue, drivers) the thread uses
        self.options = options  # run_jobs's keyword arguments
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="syncd-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming, finish and record the jobs in flight, then return."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            with self.open_app() as app:
                self.result = run_jobs(app, stop=self._stop, forever=True, **self.options)
        except BaseException as error:
            self.error = error
            log.exception("the job runner stopped: %s", error)


class Runner:
    def __init__(self, app, *, datasets=None, wait=False, executor=None, workers=None,
                 progress=None, stop=None, forever=False, clock=time.time):
        self.app = app
        self.forever = forever
        self.config = app.config
        settings = app.config.preprocess
        self.queue = JobQueue(app.catalogue, lease_seconds=settings.lease_seconds,
                              max_attempts=settings.max_attempts, clock=clock)
        self.dataset_ids = None if datasets is None else [app.dataset(name).id for name in datasets]
        self.wait = wait
        self.stop = stop or threading.Event()
        self.clock = clock
        self.options = preprocess_options(app)
        self.result = RunResult()
        self._datasets: dict[int, Dataset] = {}
        self.recorder = Recorder(app, self.queue, self.result, dataset=self._dataset,
                                 progress=progress)
        workers = settings.workers if workers is None else workers
        if workers is None:
            workers = os.cpu_count() or 1
        if executor is None and settings.executor:
            from .executors import DaskExecutor  # only when a cluster is configured

            self.factory = lambda: DaskExecutor(settings.executor)
        elif executor is None:
            self.factory: ExecutorFactory | None = (
                InlineExecutor if workers == 0 else lambda: process_pool(workers)
            )
        elif isinstance(executor, Executor):
            self.factory, self._given = None, executor
            workers = getattr(executor, "_max_workers", workers)
        else:
            self.factory = executor
        # Tasks in flight: enough to keep every worker busy between two claims.
        self.capacity = max(IN_FLIGHT_MIN, IN_FLIGHT_PER_WORKER * workers)
        self._pool: Executor | None = None
        self._processes: list = []
        # Expand jobs run on a thread of their own with their own App (catalogue connection),
        # so claiming and the worker pool go on while a large archive expands.
        self._expander: ThreadPoolExecutor | None = None
        self._expand_app = None
        self._abort = threading.Event()  # the loop left abruptly: an expansion gives up

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> RunResult:
        started = time.monotonic()
        inflight: dict[Future, tuple[Job, Task]] = {}
        suspects: deque[tuple[Job, Task]] = deque()  # in flight when a worker died
        solo = False  # the one task in flight is a suspect run alone
        interrupted = False  # the workers were told to give up their fetches
        renewed = self.clock()
        try:
            while True:
                recorded = False
                if suspects and not self._in_pool(inflight):
                    job, task = suspects.popleft()
                    inflight[self._submit(task)] = (job, task)
                    solo = True
                elif not suspects and not self.stop.is_set():
                    recorded = self._fill(inflight)
                if not inflight:
                    if suspects or recorded:  # a job ended here may have let another be claimed
                        continue
                    if self.stop.is_set():
                        break
                    if self.forever or (self.wait and self.queue.open_count(datasets=self.dataset_ids)):
                        self.stop.wait(POLL_SECONDS)
                        continue
                    break
                done, _ = futures.wait(inflight, timeout=min(self.queue.lease_seconds / 3, STOP_CHECK),
                                       return_when=futures.FIRST_COMPLETED)
                if self.stop.is_set() and not interrupted:
                    interrupted = self._interrupt_workers()
                finished, crashed = self._collect(done, inflight)
                if crashed:
                    # Everything still in flight in the pool went down with it.
                    rest, _ = futures.wait(self._in_pool(inflight))
                    more_finished, more_crashed = self._collect(rest, inflight)
                    finished += more_finished
                    crashed += more_crashed
                    reason = self._replace_pool()
                    self.result.worker_deaths += 1
                    if solo:
                        job, task = crashed[0]
                        death = TaskResult(job.id, "retry", retry_delay=0,
                                           errors=[f"the worker process died ({reason})"])
                        finished.append((job, task, death))
                        log.warning("job %d (%s) killed its worker process (%s)", job.id,
                                    task.key or task.kind, reason)
                    else:
                        suspects.extend(crashed)
                    solo = False
                elif done:
                    solo = False
                if finished:
                    self.recorder.record(finished)
                if self.clock() - renewed >= self.queue.lease_seconds / 3:
                    held = [job.id for job, _ in inflight.values()] + [job.id for job, _ in suspects]
                    self.queue.renew(held)
                    renewed = self.clock()
        finally:
            if self._pool is not None and self.factory is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
            if self._expander is not None:
                # Left with expands in flight only on an error or a second Ctrl-C: they stop
                # at their next member, their jobs left to lease expiry like a killed runner's.
                self._abort.set()
                self._expander.shutdown(wait=True, cancel_futures=True)
                self._expand_app.close()
        self.result.seconds = time.monotonic() - started
        return self.result

    def _interrupt_workers(self) -> bool:
        """Stopping: tell the worker processes to abandon fetches in flight (their jobs are
        recorded as retries), so a slow linked URL never holds a stop. (Tasks run in this
        process are interrupted by whoever handles the signal: see syncd.cli.jobs.)"""
        for process in self._processes:
            try:
                os.kill(process.pid, STOP_SIGNAL)
            except (OSError, AttributeError, TypeError):
                pass  # already gone
        return True

    def _fill(self, inflight: dict[Future, tuple[Job, Task]]) -> bool:
        """Claim jobs into `inflight`; True if some ended here without a worker (recorded)."""
        room = self.capacity - len(inflight)
        if room <= 0:
            return False
        jobs = self.queue.claim(room, datasets=self.dataset_ids)
        unrunnable = []
        for job in jobs:
            if job.kind == EXPAND and not self.app.catalogue.in_memory:
                inflight[self._submit_expand(job)] = (job, None)
                continue
            task = self._task(job)
            if isinstance(task, TaskResult):
                unrunnable.append((job, None, task))
            else:
                inflight[self._submit(task)] = (job, task)
        if unrunnable:
            self.recorder.record(unrunnable)
        return bool(unrunnable)

    def _submit(self, task: Task) -> Future:
        if self._pool is None:
            if self.factory is None:
                self._pool = self._given
            else:
                self._pool = self.factory()
                self._check_pool()
                # A cluster says how many tasks it runs at once only once it is reached.
                self.capacity = max(self.capacity,
                                    IN_FLIGHT_PER_WORKER * getattr(self._pool, "_max_workers", 0))
        future = self._pool.submit(run_task, task)
        self._processes = list(getattr(self._pool, "_processes", {}).values())
        return future

    @staticmethod
    def _in_pool(inflight: dict[Future, tuple[Job, Task | None]]) -> list[Future]:
        """The futures of tasks in the worker pool (not expand jobs, which run on a thread)."""
        return [future for future, (job, _) in inflight.items() if job.kind != EXPAND]

    def _submit_expand(self, job: Job) -> Future:
        if self._expander is None:
            from ..app import App

            self._expander = ThreadPoolExecutor(1, thread_name_prefix="syncd-expand")
            self._expand_app = App(self.app.config)  # opened, and used, on that thread only
        return self._expander.submit(self._expand, job)

    def _expand(self, job: Job) -> TaskResult:
        """One expand job, on the expand thread. Its lease is renewed by the loop (the job
        is in flight like any other), its result recorded there; `renew` only checks, member
        by member, that the loop is still there."""
        from .expand import expand_job

        def check() -> None:
            if self._abort.is_set():
                raise SyncdError(f"job {job.id}: the runner stopped; the expansion gave up")

        return expand_job(self._expand_app, job, renew=check, renew_every=0.0)

    def _check_pool(self) -> None:
        """A new pool must run a no-op: workers that die before any task (they cannot import
        syncd, say) would otherwise fail every job in turn as if each had killed them."""
        try:
            self._pool.submit(ping).result()
        except BrokenExecutor:
            self._processes = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=True, cancel_futures=True)
            reason = self._death_reason()
            self._pool = None
            raise SyncdError(f"worker processes cannot start: a new worker {reason}") from None

    def _collect(self, done, inflight):
        finished, crashed = [], []
        for future in done:
            job, task = inflight.pop(future)
            try:
                finished.append((job, task, future.result()))
            except BrokenExecutor:
                crashed.append((job, task))
            except Exception as error:  # noqa: BLE001 - the executor failed this one task
                failure = TaskResult(job.id, "retry", retry_delay=0, errors=[
                    f"the worker failed: {type(error).__name__}: {error}"])
                finished.append((job, task, failure))
        return finished, crashed

    def _death_reason(self) -> str:
        """Why a worker of the broken pool died. Only after the pool's shutdown: the pool's
        own thread reads the exit statuses, and a second reader at the same time gets none."""
        reason = "exited abruptly"
        for process in self._processes:
            code = getattr(process, "exitcode", None)
            if code is not None and code < 0:
                name = signal.Signals(-code).name
                return f"killed by {name}" + (": out of memory?" if name == "SIGKILL" else "")
            if code:
                reason = f"exit code {code}"
        return reason

    def _replace_pool(self) -> str:
        """Drop the broken pool (a new one is made at the next submit); say why it broke."""
        if self.factory is None:
            raise SyncdError("the executor broke: a worker process died")
        self._pool.shutdown(wait=True, cancel_futures=True)
        reason = self._death_reason()
        self._pool, self._processes = None, []
        return reason

    # -- tasks ----------------------------------------------------------------------------

    def _task(self, job: Job) -> Task | TaskResult:
        """The task for a claimed job, or the result to record when it cannot run."""
        try:
            if job.kind == CLEANUP:
                driver = self.config.driver(job.payload.get("driver", ""))
                keys = tuple(dict.fromkeys(k for k in job.payload.get("keys", ()) if k))
                return Task(job.id, CLEANUP, driver, keys=keys)
            if job.kind == EXPAND:  # an in-memory catalogue has one connection: on this thread
                from .expand import expand_job

                return expand_job(self.app, job, renew=lambda: self.queue.renew([job.id]))
            if job.kind != PREPROCESS:
                return TaskResult(job.id, "failed", errors=[f"unknown job kind {job.kind!r}"])
            row = self.app.catalogue.item_row_by_pk(job.item_pk)
            if row is None:
                return TaskResult(job.id, "cancelled", errors=["the item no longer exists"])
            if row["state"] != "present":
                return TaskResult(job.id, "cancelled", errors=["the item is gone from storage"])
            dataset = self._dataset(row["dataset_id"])
            dataset_config = self.config.dataset(dataset.name)
            item = self.app.catalogue.item_json(dataset, row)
            try:
                source = self._link_source(item) if row["type"] == "link" else None
            except LinkError as error:
                return TaskResult(job.id, "failed", errors=[str(error)])
            return Task(
                job.id, PREPROCESS, self.config.driver(dataset_config.driver),
                item_id=item["id"], item_type=row["type"], key=row["filename"].lstrip("/"),
                size=None if row["type"] == "link" else row["size"], item=item,
                options=self.options, fetch=self.config.fetch, source=source,
                preprocessors=tuple(
                    Preprocessor(p.target, p.mimetypes, p.key, p.entry_point, p.input)
                    for p in dataset_config.preprocessors
                ),
            )
        except ConfigError as error:
            return TaskResult(job.id, "failed", errors=[str(error)])

    def _link_source(self, item: dict[str, Any]):
        """An id link's bytes: (the target dataset's driver, key, size); None for URL links."""
        ref = item_link_target(item)
        if ref is None:
            return None
        target = link_target(self.app.catalogue, ref, where=item["filename"])
        return (self.config.driver(self.config.dataset(target.dataset).driver), target.key,
                target.size)

    def _dataset(self, dataset_id: int) -> Dataset:
        if dataset_id not in self._datasets:
            self._datasets[dataset_id] = items.dataset_by_id(self.app.catalogue, dataset_id)
        return self._datasets[dataset_id]
