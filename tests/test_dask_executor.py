"""`[preprocess] executor = "dask://HOST:PORT"`: the jobs run on a real Dask distributed
cluster (a LocalCluster of worker processes started by the test), with the same results as
the local pool; a task that kills its Dask worker fails as KilledWorker, the others finish."""

from __future__ import annotations

import io
import textwrap

import pytest
from PIL import Image

import images
from conftest import put_file
from syncd.app import App
from syncd.errors import ConfigError

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    import dask

    # A worker that dies running a task is retried on another once, then KilledWorker.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=None,
                                      silence_logs=40) as cluster:
            yield cluster


def make_app(tmp_path, storage, address: str, dataset: str = "") -> App:
    uri = address.replace("tcp://", "dask://")
    config = tmp_path / "dask.toml"
    config.write_text(textwrap.dedent(f"""
        [catalogue]
        path = "{tmp_path / 'catalogue.db'}"

        [[drivers]]
        name = "disk"
        kind = "local"
        root = "{storage}"

        [[datasets]]
        name = "photos"
        driver = "disk"
        {dataset}

        [preprocess]
        executor = "{uri}"
        max_attempts = 2
        retry_delay_seconds = 0
        """))
    return App.from_file(config)


def test_jobs_run_on_the_dask_cluster(cluster, tmp_path, storage):
    for i in range(6):
        put_file(storage, f"img-{i}.jpg", images.oriented_jpeg(1 + i % 8))
    with make_app(tmp_path, storage, cluster.scheduler_address) as app:
        app.sync("photos")
        result = app.run_jobs()
        assert (result.done, result.failed, result.worker_deaths) == (6, 0, 0)
        done = {i["filename"]: i["metadata"]["system"] for i in app.catalogue.iter_items(app.dataset("photos"))}
    assert len(done) == 6
    for system in done.values():
        assert system["etl"]["status"] == "done" and system["mimetype"] == "image/jpeg"
        thumbnail = Image.open(io.BytesIO((storage / system["thumbnailId"]).read_bytes()))
        assert max(thumbnail.size) <= 256


def test_a_task_that_kills_its_dask_worker_fails_as_killed_worker(cluster, tmp_path, storage):
    for i in range(3):
        put_file(storage, f"fine-{i}.jpg", images.oriented_jpeg(1))
    put_file(storage, "poison.jpg", images.oriented_jpeg(1))
    with make_app(tmp_path, storage, cluster.scheduler_address,
                  dataset='preprocessors = [{function = "custom_preprocessors:kill_worker"}]') as app:
        app.sync("photos")
        result = app.run_jobs()
        rows = {j["item"]: (j["state"], j["attempts"], j["error"]) for j in app.jobs().rows()}
        names = {i["id"]: i["filename"] for i in app.catalogue.iter_items(app.dataset("photos"))}
    by_name = {names[item]: row for item, row in rows.items()}
    state, attempts, error = by_name.pop("/poison.jpg")
    assert (state, attempts) == ("failed", 2)
    assert "KilledWorker" in error
    # A fine task whose worker the poison task killed (running, or holding its result) is
    # retried like any lost attempt: it ends done, within max_attempts.
    assert {(state, error) for state, _, error in by_name.values()} == {("done", None)}
    assert all(attempts <= 2 for _, attempts, _ in by_name.values())
    assert (result.done, result.failed) == (3, 1)
    # The cluster's nannies replaced the killed workers: it still runs tasks.
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path, storage):
    from emulators import free_port

    put_file(storage, "a.jpg", images.oriented_jpeg(1))
    from syncd.jobs.executors import DaskExecutor

    with make_app(tmp_path, storage, f"tcp://127.0.0.1:{free_port()}") as app:
        with pytest.raises(ConfigError, match="cannot reach the Dask scheduler at tcp://127.0.0.1"):
            DaskExecutor(app.config.preprocess.executor, timeout_seconds=2)
    with pytest.raises(ConfigError, match="expected dask://HOST:PORT"):
        DaskExecutor("tcp://127.0.0.1:1")
