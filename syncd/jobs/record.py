"""Recording finished jobs: each result, in the runner's transaction, into the job queue,
the item's metadata and the webhook outbox.

A result may still change its fate here: a retry goes back to the queue until the job has
used up `max_attempts`; a preprocess job whose file was not where its task looked is
cancelled, refunded or failed by the vanished rule (the item moved or went since). A done
preprocess job's facts replace what an earlier run wrote (`SYSTEM_KEYS`), and artifacts it
no longer names get a cleanup job; a done cleanup job drops the artifact keys it deleted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import preprocess

from ..catalogue import Dataset, items, now_iso, outbox
from ..catalogue.jobs import CLEANUP, PREPROCESS, Job, JobQueue
from ..sync import rules
from .worker import Task, TaskResult

if TYPE_CHECKING:
    from .runner import Progress, RunResult

log = logging.getLogger(__name__)

# metadata.system fields that preprocessing owns (the file facts and each media handler's
# keys, from the handler registry, plus the run's `etl`): replaced as a whole by each run, so
# a re-run after a content change leaves nothing stale behind.
SYSTEM_KEYS = preprocess.system_keys() | {"etl"}
ARTIFACT_KEYS = ("thumbnailId", "previewId")  # metadata.system keys naming files in storage
ROW_KEYS = frozenset({"originalname", "size"})  # item_json derives these from the item row


class Recorder:
    """Records the runner's finished jobs and counts them in its `RunResult`."""

    def __init__(self, app, queue: JobQueue, result: RunResult, *,
                 dataset: Callable[[int], Dataset], progress: Progress | None = None):
        self.catalogue = app.catalogue
        self.config = app.config
        self.queue = queue
        self.result = result  # the runner's: done, failed, cancelled and retried are added up
        self._dataset = dataset  # a dataset id -> its Dataset (the runner's cache)
        self.progress = progress

    def record(self, finished: list[tuple[Job, Task | None, TaskResult]]) -> None:
        """Each (job, its task or None, result) in one transaction; then `progress` is told
        how many jobs ended here (not those sent back to the queue or whose claim was lost)."""
        counted = 0
        with self.catalogue.transaction(immediate=True):
            for job, task, result in finished:
                counted += self._record_one(job, task, result)
        if counted and self.progress:
            self.progress(counted)

    def _record_one(self, job: Job, task: Task | None, result: TaskResult) -> int:
        state = result.state
        if state == "failed" and result.not_found and job.kind == PREPROCESS and task is not None:
            # The file was not where the task looked: the item may have moved or gone since.
            item = items.by_pk(self.catalogue, job.item_pk)
            state, reason, refund = rules.vanished(
                state=item and item["state"],
                moved=item is not None and item["filename"] != "/" + (task.key or ""))
            if refund:
                if self.queue.retry_later(job, result.error, 0, refund=True):
                    self.result.retried += 1
                return 0
            if reason:
                result.errors = [reason]
        if state == "retry":
            if job.attempts < self.queue.max_attempts:
                delay = result.retry_delay
                if delay is None:
                    delay = self.config.preprocess.retry_delay_seconds * 2 ** (job.attempts - 1)
                if self.queue.retry_later(job, result.error, delay):
                    self.result.retried += 1
                else:
                    log.warning("job %d: lost its claim to another runner; result dropped", job.id)
                return 0
            state = "failed"
            result.errors[-1] += f" (gave up after {job.attempts} attempts)"
        if not self.queue.finish(job, state, result.error):
            log.warning("job %d: lost its claim to another runner; result dropped", job.id)
            return 0
        if job.kind == PREPROCESS and task is not None and state != "cancelled":
            self._merge(job, task, result, state)
        elif job.kind == CLEANUP and state == "done":
            self._forget_artifacts(job.item_pk, result.deleted)
        setattr(self.result, state, getattr(self.result, state) + 1)
        if state in ("done", "failed"):  # webhooks, in this transaction
            outbox.job_finished(self.catalogue, state, {
                "job": job.id, "kind": job.kind, **self._subject(job, task),
                "error": result.error if state == "failed" else None})
        if state == "failed":
            log.warning("job %d (%s %s) failed: %s", job.id, job.kind,
                        (task.key if task else None) or job.item_pk, result.error)
        elif state == "cancelled":
            log.info("job %d (%s %s) cancelled: %s", job.id, job.kind,
                     (task.key if task else None) or job.item_pk, result.error)
        return 1

    def _subject(self, job: Job, task: Task | None) -> dict[str, Any]:
        """The dataset, id and filename of a job's item, for its webhook event: from the
        task's item JSON, else (expand and cleanup jobs, jobs that never reached a worker)
        from the item's row as it is now; None where the item is gone."""
        if task is not None and task.item:
            return {"dataset": task.item.get("dataset"), "id": task.item_id,
                    "filename": task.item.get("filename")}
        row = items.by_pk(self.catalogue, job.item_pk)
        if row is None:
            dataset = self._dataset(job.dataset_id) if job.dataset_id is not None else None
            return {"dataset": dataset and dataset.name, "id": None, "filename": None}
        return {"dataset": self._dataset(row["dataset_id"]).name,
                "id": self.catalogue.item_id(row["pk"]), "filename": row["filename"]}

    def _merge(self, job: Job, task: Task, result: TaskResult, state: str) -> None:
        """The results into the item's metadata, replacing what an earlier run wrote."""
        catalogue = self.catalogue
        row = items.by_pk(catalogue, job.item_pk)
        if row is None:
            return
        system = json.loads(row["system"]) if row["system"] else {}
        old_artifacts = [system[key] for key in ARTIFACT_KEYS if system.get(key)]
        if result.system:  # the file was read: its facts replace the last run's
            for key in SYSTEM_KEYS:
                system.pop(key, None)
            system.update({k: v for k, v in result.system.items() if k not in ROW_KEYS})
        system["etl"] = {"status": state, "errors": result.errors, "job": job.id,
                         "attempts": job.attempts, "at": now_iso()}
        user = json.loads(row["user"]) if row["user"] else {}
        for key, values in result.user.items():
            if key == "user":
                user.update(values)
            else:
                user[key] = values
        items.set_metadata(catalogue, job.item_pk, system=system, user=user)
        stale = [key for key in old_artifacts if key not in {system.get(k) for k in ARTIFACT_KEYS}]
        if stale:
            self.queue.add(CLEANUP, job.item_pk, dataset_id=row["dataset_id"],
                           payload={"driver": task.driver.name, "keys": stale})

    def _forget_artifacts(self, item_pk: int, deleted: list[str]) -> None:
        row = items.by_pk(self.catalogue, item_pk)
        if row is None or not row["system"]:
            return
        system = json.loads(row["system"])
        gone = [key for key in ARTIFACT_KEYS if system.get(key) in deleted]
        if gone:
            for key in gone:
                del system[key]
            items.set_metadata(self.catalogue, item_pk, system=system)
