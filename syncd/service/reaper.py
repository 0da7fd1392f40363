"""The daemon's reaper: missing items older than `move_window_seconds` (time for a matching
create to turn the delete into a move) are gone for good. The gone rule queues their
artifacts' cleanup, a job run by the workers, durable across crashes; with
`on_delete = "remove"` the items are removed too.

It runs only when something may be due (`dirty`: a delete or a move was applied, or a
rescan saw one, or items were still waiting out the window), at most every half window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from drivers import Driver

from ..app import App
from ..catalogue import Dataset, items
from ..errors import CatalogueBusyError
from ..sync.rules import RULES, Change
from .metrics import Metrics

log = logging.getLogger(__name__)


class Reaper:
    def __init__(self, app: App, resolve: Callable[[str], tuple[Dataset, Driver]],
                 metrics: Metrics):
        self.app = app
        self.config = app.config
        self.settings = app.config.daemon
        self.resolve = resolve  # a dataset name -> (its Dataset, its driver)
        self.metrics = metrics
        self.dirty = True  # set when items may have gone missing: reap at the next chance
        self._next = 0.0  # the loop's clock: no reaping before then

    def run_if_due(self, now: float) -> None:
        """Reap if something may be due and the last reaping is half a window ago; a busy
        catalogue leaves it to a later turn."""
        if self.dirty and now >= self._next:
            self._next = now + max(1.0, self.settings.move_window_seconds / 2)
            try:
                self.reap()
            except CatalogueBusyError as error:  # locked, or the database away: next turn
                log.warning("reaper not run: %s", error)

    def reap(self) -> None:
        """Apply the gone rule (and with on_delete = "remove", removal) to every dataset's
        items missing for longer than the move window, a transaction a dataset."""
        remove = self.settings.on_delete == "remove"
        cutoff = time.time() - self.settings.move_window_seconds
        waiting = False
        for dataset_config in self.config.datasets:
            dataset, _ = self.resolve(dataset_config.name)
            with self.app.catalogue.transaction(immediate=True):
                due, more = items.reapable(self.app.catalogue, dataset, missing_before=cutoff,
                                           remove=remove)
                waiting |= more
                if not due:
                    continue
                items.apply_rule(self.app.catalogue, RULES[Change.GONE], due)
                if remove:
                    items.delete(self.app.catalogue, due)
            self.metrics.reaped.labels(dataset.name).inc(len(due))
            log.info("%s: %s %d missing items", dataset.name,
                     "removed" if remove else "queued the artifacts' cleanup of", len(due),
                     extra={"dataset": dataset.name})
        self.dirty = waiting
