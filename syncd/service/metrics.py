"""The daemon's Prometheus metrics (prometheus_client, in a registry of its own).

Counters and histograms are updated as the daemon works; the catalogue's numbers (items per
dataset, jobs per state) are read from the SQLite file at each scrape, read-only, so they
are right whoever wrote them (the daemon, `syncd sync`, a worker).
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import (
    CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..catalogue.counts import read_counts
from ..catalogue.jobs import STATES

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)  # seconds

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

disable_created_metrics()  # no `_created` series beside every counter


class _CatalogueCollector:
    def __init__(self, path: Path | str):  # a SQLite file or a postgresql:// URL
        self.path = path

    def collect(self):
        items = GaugeMetricFamily("syncd_items", "Items in the catalogue, per dataset and state.",
                                  labels=["dataset", "state"])
        jobs = GaugeMetricFamily("syncd_jobs", "Preprocessing jobs, per state.", labels=["state"])
        hooks = GaugeMetricFamily("syncd_webhook_events",
                                  "Webhook events in the outbox, per webhook and state (dead: dead letters).",
                                  labels=["webhook", "state"])
        refused = GaugeMetricFamily("syncd_refused_files",
                                    "Files that arrived on their own and got no item (upload "
                                    "controls), per dataset and reason.",
                                    labels=["dataset", "reason"])
        counts = read_counts(self.path)
        if counts is None:
            return
        for (name, state), count in counts.items.items():
            items.add_metric([name, state], count)
        for state in STATES:
            jobs.add_metric([state], counts.jobs.get(state, 0))
        for row in counts.webhooks:
            hooks.add_metric([row["webhook"], row["state"]], row["events"])
        for (name, reason), count in counts.refused.items():
            refused.add_metric([name, reason], count)
        yield items
        yield jobs
        yield hooks
        yield refused


class Metrics:
    def __init__(self, catalogue_path: Path | str | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("syncd_events_applied", "Events applied to the catalogue.",
                              ["dataset", "source", "action"], registry=r)
        self.lag = Histogram("syncd_event_lag_seconds",
                             "From a change in storage (or its receipt, where the storage gives no "
                             "time) to the catalogue commit.", ["source"], buckets=LAG_BUCKETS,
                             registry=r)
        self.failed_batches = Counter("syncd_event_batches_failed",
                                      "Batches of events that could not be applied (left for "
                                      "redelivery).", registry=r)
        self.rescans = Counter("syncd_rescans", "Rescans of a dataset's storage.",
                               ["dataset", "scope", "status"], registry=r)
        self.last_rescan = Gauge("syncd_last_rescan_timestamp_seconds",
                                 "When the last full rescan of a dataset finished.", ["dataset"],
                                 registry=r)
        self.reaped = Counter("syncd_items_reaped",
                              "Missing items whose artifacts were cleaned up (and, with "
                              "on_delete = remove, the items removed).", ["dataset"], registry=r)
        self.started = Gauge("syncd_start_time_seconds", "When the daemon started.", registry=r)
        self.started.set(time.time())
        if catalogue_path is not None and str(catalogue_path) != ":memory:":
            r.register(_CatalogueCollector(catalogue_path))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
