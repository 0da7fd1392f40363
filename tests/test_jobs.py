"""The created trigger end to end: sync -> jobs -> workers -> metadata and artifacts in storage."""

from __future__ import annotations

import io
import os
import socket
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

import images
from conftest import Runner, catalogue_section
from emulators import driver_toml, new_store
from local_http import Response, http_server  # noqa: F401 - the fixture
from syncd.app import App
from syncd.catalogue.jobs import JobQueue

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL

POOL = "workers = 2"  # a real process pool
DEFAULTS = {"workers": 0, "retry_delay_seconds": 0}  # in-process, unless a test says otherwise


class Bucket:
    """The storage a test's dataset syncs, read and written behind syncd's back through a
    driver of its own (every permission on): a local folder or an emulated cloud bucket."""

    def __init__(self, store):
        self.store = store
        self.kind = store.kind
        self.driver = store.make(name="backdoor")

    def driver_toml(self, permissions: list[str]) -> str:
        return driver_toml(self.store.options(name="store", permissions=permissions,
                                              allow_delete=False))

    def put(self, key: str, data: bytes) -> None:
        self.driver.put(key, data)

    def get(self, key: str) -> bytes:
        return self.driver.read(key)

    def exists(self, key: str) -> bool:
        return self.driver.exists(key)

    def delete(self, key: str) -> None:
        self.driver.delete(key)


@pytest.fixture(params=["local", "s3"])
def bucket(request, endpoint_for, tmp_path_factory):
    return Bucket(new_store(request.param, endpoint_for, tmp_path_factory))


@pytest.fixture
def make_app(tmp_path, bucket, catalogue_location):
    apps = []

    def make(preprocess: str = "", dataset: str = "",
             permissions: tuple[str, ...] = ("list", "get", "put", "delete"), extra: str = "") -> App:
        config = tmp_path / "jobs.toml"
        config.write_text(textwrap.dedent(f"""
            {catalogue_section(catalogue_location)}

            {{driver}}

            [[datasets]]
            name = "photos"
            driver = "store"
            {{dataset}}

            [preprocess]
            {{preprocess}}

            {{extra}}
            """).format(driver=bucket.driver_toml(list(permissions)), dataset=dataset, extra=extra,
                        preprocess="\n".join([preprocess] + [
                            f"{key} = {value}" for key, value in DEFAULTS.items() if key not in preprocess])))
        app = App.from_file(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def items(app) -> dict[str, dict]:
    return {i["filename"]: i for i in app.catalogue.iter_items(app.dataset("photos"))}


def jobs(app, kind: str | None = None) -> list[tuple]:
    """(id, item pk, kind, state, attempts, error) of each job, oldest first."""
    return [(j["id"], app.catalogue.item_pk(j["item"]), j["kind"], j["state"], j["attempts"], j["error"])
            for j in app.jobs().rows() if kind is None or j["kind"] == kind]


def thumbnail(bucket, item) -> Image.Image:
    key = item["metadata"]["system"]["thumbnailId"]
    assert key == f".dataloop/thumbnails/{item['id']}.jpg"
    return Image.open(io.BytesIO(bucket.get(key)))


# -- the happy path ----------------------------------------------------------------------------

def test_new_items_get_metadata_and_upright_thumbnails_in_storage(make_app, bucket):
    for orientation in range(1, 9):
        bucket.put(f"orient/{orientation}.jpg", images.oriented_jpeg(orientation, 320, 160))
    bucket.put("camera/shot.JPG", images.camera_jpeg())
    bucket.put("docs/readme.txt", b"hello\n")
    app = make_app(POOL)
    app.sync("photos")
    result = app.run_jobs()
    assert (result.done, result.failed, result.worker_deaths) == (10, 0, 0)
    assert {(kind, state, attempts) for _, _, kind, state, attempts, _ in jobs(app)} == {
        ("preprocess", "done", 1)}
    found = items(app)
    for orientation in range(1, 9):
        item = found[f"/orient/{orientation}.jpg"]
        system = item["metadata"]["system"]
        assert system["exif"]["Orientation"] == orientation
        assert (system["width"], system["height"]) == ((160, 320) if orientation >= 5 else (320, 160))
        thumb = thumbnail(bucket, item)
        assert thumb.size == (256, 128)
        for (name, color), (x, y) in zip(images.QUADRANTS.items(),
                                         [(0.2, 0.2), (0.8, 0.2), (0.2, 0.8), (0.8, 0.8)], strict=True):
            assert images.near(images.color_at(thumb, x, y), color), (orientation, name)
    shot = found["/camera/shot.JPG"]["metadata"]["system"]
    assert shot["mimetype"] == "image/jpeg" and shot["encoding"] == "binary" and shot["isBinary"]
    assert shot["originalname"] == "shot.JPG" and shot["size"] == len(images.camera_jpeg())
    assert shot["exif"]["Model"] == "Canon EOS R5" and shot["location"]["longitude"] == -70.5
    assert shot["etl"]["status"] == "done" and shot["etl"]["errors"] == []
    text = found["/docs/readme.txt"]["metadata"]["system"]
    assert (text["mimetype"], text["encoding"], text["isBinary"]) == ("text/plain", "7bit", False)
    assert "thumbnailId" not in text and "width" not in text


@pytest.mark.parametrize("bucket", ["gcs", "azure"], indirect=True)
def test_gcs_and_azure_buckets_get_thumbnails_and_lose_them_with_the_item(make_app, bucket):
    bucket.put("a/photo.jpg", images.oriented_jpeg(6, 320, 160))
    bucket.put("a/notes.txt", b"text\n")
    app = make_app(POOL)
    app.sync("photos")
    assert app.run_jobs().done == 2
    item = items(app)["/a/photo.jpg"]
    thumb = thumbnail(bucket, item)
    assert thumb.size == (256, 128) and images.near(images.color_at(thumb, 0.8, 0.8), images.WHITE)
    assert item["metadata"]["system"]["width"] == 160
    bucket.delete("a/photo.jpg")
    app.sync("photos", prune=True)
    assert app.run_jobs().done == 1
    assert not bucket.exists(item["metadata"]["system"]["thumbnailId"])


def test_bad_images_end_as_failed_jobs_and_the_queue_goes_on(make_app, bucket):
    bad = {
        "empty.jpg": (b"", "empty file (0 bytes)"),
        "half.jpg": (images.truncated_jpeg(), "truncated image"),
        "bomb.png": (images.bomb_png(), "image too large: 100000 x 100000"),
        "big.png": (images.save(Image.new("RGB", (1100, 1000)), "PNG"), "more than max_pixels = 1000000"),
        "photo.heic": (images.fake_heic(), "damaged image (image/heic)"),
        "fake.jpg": (b"plain text\n", "not an image"),
    }
    good = {
        "cmyk.jpg": images.cmyk_jpeg(), "grey16.png": images.grey16_png(),
        "rgb16.png": images.rgb16_png(), "palette.png": images.palette_png_with_transparency(),
        "anim.gif": images.animated_gif(), "anim.webp": images.animated_webp(),
        "pages.tiff": images.multipage_tiff(),
    }
    for name, (data, _) in bad.items():
        bucket.put(name, data)
    for name, data in good.items():
        bucket.put(name, data)
    app = make_app(POOL + "\nmax_pixels = 1000000")
    app.sync("photos")
    result = app.run_jobs()
    assert (result.done, result.failed, result.worker_deaths) == (len(good), len(bad), 0)
    assert app.jobs().open_count() == 0
    found = items(app)
    for name, (data, reason) in bad.items():
        system = found[f"/{name}"]["metadata"]["system"]
        assert system["etl"]["status"] == "failed"
        assert len(system["etl"]["errors"]) == 1 and reason in system["etl"]["errors"][0], name
        assert "thumbnailId" not in system and system["size"] == len(data)
    failed = {row[5] for row in jobs(app) if row[3] == "failed"}
    assert all(error and "(" not in error[:3] for error in failed)
    for name in good:
        system = found[f"/{name}"]["metadata"]["system"]
        assert system["etl"]["status"] == "done", (name, system["etl"])
        assert thumbnail(bucket, found[f"/{name}"]).mode == "RGB"
    assert found["/cmyk.jpg"]["metadata"]["system"]["channels"] == 4
    assert found["/palette.png"]["metadata"]["system"]["channels"] == 4
    assert found["/pages.tiff"]["metadata"]["system"]["frames"] == 3


def test_running_a_job_again_gives_the_same_result(make_app, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(6))
    app = make_app()
    app.sync("photos")
    app.run_jobs()
    first = items(app)["/a.jpg"]
    thumb = bucket.get(first["metadata"]["system"]["thumbnailId"])
    assert app.jobs().requeue(ids=[1], states=()) == 1
    assert app.run_jobs().done == 1
    second = items(app)["/a.jpg"]
    strip = lambda item: {k: v for k, v in item["metadata"]["system"].items() if k != "etl"}  # noqa: E731
    assert strip(second) == strip(first)
    assert bucket.get(second["metadata"]["system"]["thumbnailId"]) == thumb
    assert [row[2] for row in jobs(app)] == ["preprocess"]  # no cleanup: same thumbnail key


def test_content_change_replaces_metadata_and_removes_the_old_thumbnail(make_app, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    app = make_app()
    app.sync("photos")
    app.run_jobs()
    key = items(app)["/a.jpg"]["metadata"]["system"]["thumbnailId"]
    assert bucket.exists(key)
    bucket.put("a.jpg", b"now it is text\n")
    app.sync("photos")
    app.run_jobs()
    system = items(app)["/a.jpg"]["metadata"]["system"]
    assert system["etl"]["status"] == "failed" and "not an image" in system["etl"]["errors"][0]
    assert not {"width", "exif", "thumbnailId"} & set(system)
    assert not bucket.exists(key)
    assert [(kind, state) for _, _, kind, state, _, _ in jobs(app)] == [
        ("preprocess", "done"), ("preprocess", "failed"), ("cleanup", "done")]


def test_changing_the_thumbnail_format_removes_the_old_one(make_app, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    app = make_app()
    app.sync("photos")
    app.run_jobs()
    old = items(app)["/a.jpg"]["metadata"]["system"]["thumbnailId"]
    app.close()
    app = make_app('thumbnail_format = "webp"')
    app.jobs().requeue(ids=[1], states=())
    app.run_jobs()
    new = items(app)["/a.jpg"]["metadata"]["system"]["thumbnailId"]
    assert new.endswith(".webp") and bucket.exists(new) and not bucket.exists(old)


@pytest.mark.parametrize("prune", [False, True])
def test_deleted_items_artifacts_are_removed(make_app, bucket, prune):
    bucket.put("keep.jpg", images.oriented_jpeg(1))
    bucket.put("gone.jpg", images.oriented_jpeg(1))
    app = make_app()
    app.sync("photos")
    app.run_jobs()
    gone_key = items(app)["/gone.jpg"]["metadata"]["system"]["thumbnailId"]
    keep_key = items(app)["/keep.jpg"]["metadata"]["system"]["thumbnailId"]
    bucket.delete("gone.jpg")
    app.sync("photos", prune=prune)
    cleanup = jobs(app, "cleanup")
    assert [row[3] for row in cleanup] == ["pending"]  # written by the sync itself
    assert app.run_jobs().done == 1
    assert not bucket.exists(gone_key) and bucket.exists(keep_key)
    if prune:
        assert "/gone.jpg" not in items(app)
    else:
        ghost = items(app)["/gone.jpg"]
        assert ghost["state"] == "missing" and "thumbnailId" not in ghost["metadata"]["system"]


def test_without_delete_permission_artifacts_stay(make_app, bucket):
    bucket.put("gone.jpg", images.oriented_jpeg(1))
    app = make_app(permissions=("list", "get", "put"))
    app.sync("photos")
    app.run_jobs()
    key = items(app)["/gone.jpg"]["metadata"]["system"]["thumbnailId"]
    bucket.delete("gone.jpg")
    app.sync("photos")
    result = app.run_jobs()
    assert result.cancelled == 1 and bucket.exists(key)
    assert "no 'delete' permission" in jobs(app, "cleanup")[0][5]


def test_a_pending_job_of_a_deleted_item_is_cancelled(make_app, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    app = make_app()
    app.sync("photos")
    bucket.delete("a.jpg")
    app.sync("photos")
    assert app.run_jobs().finished == 0
    assert [row[2:4] for row in jobs(app)] == [("preprocess", "cancelled")]  # nothing to clean


def test_without_put_permission_the_job_fails_with_the_reason(make_app, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    app = make_app(permissions=("list", "get"))
    app.sync("photos")
    assert app.run_jobs().failed == 1
    system = items(app)["/a.jpg"]["metadata"]["system"]
    assert "cannot write the thumbnail" in system["etl"]["errors"][0] and system["width"] == 160


def test_thumbnails_off_reads_headers_only_and_writes_nothing(make_app, bucket):
    bucket.put("a.jpg", images.camera_jpeg())
    app = make_app("thumbnails = false")
    app.sync("photos")
    app.run_jobs()
    system = items(app)["/a.jpg"]["metadata"]["system"]
    assert system["width"] == 120 and "thumbnailId" not in system
    assert not bucket.exists(f".dataloop/thumbnails/{items(app)['/a.jpg']['id']}.jpg")


def test_linked_items_are_preprocessed_from_their_url(make_app, bucket, http_server):
    from syncd.imports.links import link_bytes, url_link_info

    photo = http_server.route("/shots/photo.jpg", images.oriented_jpeg(8))
    missing = http_server.route("/shots/gone.jpg", Response(404))
    bucket.put("p_link.json", link_bytes(url_link_info(photo)))
    bucket.put("gone_link.json", link_bytes(url_link_info(missing)))
    app = make_app(POOL, extra='[fetch]\nallow_hosts = ["127.0.0.1"]\ntimeout_seconds = 5')
    app.sync("photos")
    result = app.run_jobs()
    assert (result.done, result.failed) == (1, 1)
    found = items(app)
    linked = found["/p_link.json"]
    system = linked["metadata"]["system"]
    assert linked["type"] == "link" and system["shebang"]["linkInfo"]["ref"] == photo
    assert (system["width"], system["height"], system["exif"]["Orientation"]) == (80, 160, 8)
    assert system["mimetype"] == "image/jpeg" and system["size"] == len(link_bytes(url_link_info(photo)))
    thumb = thumbnail(bucket, linked)  # written to the bucket under the link item's id
    assert images.near(images.color_at(thumb, 0.2, 0.2), images.RED)
    assert not bucket.exists("photo.jpg") and not bucket.exists("shots/photo.jpg")
    gone = found["/gone_link.json"]["metadata"]["system"]
    assert gone["etl"]["errors"][0].startswith("cannot fetch the linked file:") and "404" in gone["etl"]["errors"][0]
    assert gone["mimetype"] == "image/jpeg"  # the link's own, kept: nothing was read


# -- leases, restarts, crashes -----------------------------------------------------------------

def _claim_as(app, owner: str, clock=None) -> list:
    queue = JobQueue(app.catalogue, owner=owner, lease_seconds=60, **({"clock": clock} if clock else {}))
    return queue.claim(10)


def test_jobs_of_a_dead_runner_on_this_host_are_resumed_at_once(make_app, bucket):
    for i in range(3):
        bucket.put(f"{i}.jpg", images.oriented_jpeg(1))
    app = make_app()
    app.sync("photos")
    dead_pid = _unused_pid()
    assert len(_claim_as(app, f"{socket.gethostname()}:{dead_pid}:dead")) == 3
    result = app.run_jobs()
    assert result.done == 3
    assert [row[3:5] for row in jobs(app)] == [("done", 2)] * 3


def test_jobs_of_a_live_runner_wait_for_its_lease(make_app, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    app = make_app()
    app.sync("photos")
    assert len(_claim_as(app, "elsewhere:1:live")) == 1
    assert app.run_jobs().finished == 0  # held, lease not over
    later = JobQueue(app.catalogue, owner="me:2:x", clock=lambda: 1e12)
    assert [job.attempts for job in later.claim(10)] == [2]  # the lease passed: taken over


def test_a_job_whose_runner_keeps_dying_is_abandoned(make_app, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    app = make_app("max_attempts = 2")
    app.sync("photos")
    for attempt in range(2):
        assert len(_claim_as(app, f"{socket.gethostname()}:{_unused_pid()}:r{attempt}",
                             clock=lambda: 1e12 * (1 + attempt))) == 1
    assert app.run_jobs().finished == 0
    assert jobs(app)[0][3:] == ("failed", 2, "abandoned: the runner processing it stopped during each of 2 attempts")


def test_a_worker_that_dies_is_replaced_and_its_job_failed_after_the_limit(make_app, bucket, tmp_path):
    for i in range(4):
        bucket.put(f"fine-{i}.jpg", images.oriented_jpeg(1))
    bucket.put("poison.jpg", images.oriented_jpeg(1))
    bucket.put("crash-once.txt", str(tmp_path / "marker").encode())
    app = make_app(POOL + "\nmax_attempts = 3",
                   dataset='preprocessors = [{function = "custom_preprocessors:kill_worker"}]')
    app.sync("photos")
    result = app.run_jobs()
    assert result.failed == 1 and result.done == 5 and result.worker_deaths >= 4
    by_name = {items(app)[f"/{name}"]["id"]: name for name in
               ["poison.jpg", "crash-once.txt"] + [f"fine-{i}.jpg" for i in range(4)]}
    rows = {by_name[app.catalogue.item_id(pk)]: (state, attempts, error)
            for _, pk, _, state, attempts, error in jobs(app)}
    state, attempts, error = rows.pop("poison.jpg")
    assert (state, attempts) == ("failed", 3)
    assert "the worker process died (killed by SIGKILL" in error and "gave up after 3 attempts" in error
    # It did kill a worker once, in company: run again alone, it passed, and neither it nor
    # the innocent bystanders were charged an attempt for that death.
    assert (tmp_path / "marker").exists()
    assert set(rows.values()) == {("done", 1, None)}
    poison = items(app)["/poison.jpg"]["metadata"]["system"]["etl"]
    assert poison["status"] == "failed" and "worker process died" in poison["errors"][0]


def test_a_storage_error_is_retried_later_then_failed(make_app, bucket, monkeypatch):
    from drivers import PermissionGuard, Unreachable

    bucket.put("a.jpg", images.oriented_jpeg(1))
    app = make_app("max_attempts = 2")
    app.sync("photos")
    calls = []

    def unreachable(self, key, **kw):
        calls.append(key)
        raise Unreachable("connection reset")

    monkeypatch.setattr(PermissionGuard, "open", unreachable)  # every driver, in-process
    result = app.run_jobs()
    assert (result.retried, result.failed) == (1, 1) and len(calls) == 2
    assert jobs(app)[0][3:] == ("failed", 2, "storage error: Unreachable: connection reset"
                                             " (gave up after 2 attempts)")


def test_jobs_of_one_item_run_oldest_first(make_app, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    bucket.put("b.jpg", images.oriented_jpeg(1))
    app = make_app()
    app.sync("photos")
    with app.catalogue.transaction(immediate=True):
        app.jobs().add("cleanup", 1, dataset_id=1, payload={"driver": "store", "keys": []})
    claimed = JobQueue(app.catalogue, owner="x:1:a").claim(10)
    assert [(job.kind, job.item_pk) for job in claimed] == [("preprocess", 1), ("preprocess", 2)]


def test_any_executor_can_run_the_stage(make_app, bucket):
    for i in range(5):
        bucket.put(f"{i}.jpg", images.oriented_jpeg(3))
    app = make_app()
    app.sync("photos")
    with ThreadPoolExecutor(max_workers=2) as executor:
        result = app.run_jobs(executor=executor)
    assert result.done == 5
    assert all(i["metadata"]["system"]["thumbnailId"] for i in items(app).values())


def test_a_background_runner_picks_up_jobs_as_they_are_queued(make_app, bucket):
    import time


    app = make_app(POOL)
    runner = app.background_runner()
    runner.start()
    try:
        for round_ in range(2):  # jobs queued while the runner idles are found
            bucket.put(f"{round_}.jpg", images.oriented_jpeg(3))
            app.sync("photos")
            deadline = time.monotonic() + 60
            while app.jobs().open_count():
                assert time.monotonic() < deadline, "the background runner did not run the jobs"
                time.sleep(0.05)
    finally:
        runner.stop(timeout=60)
    assert not runner._thread.is_alive() and runner.error is None
    assert runner.result.done == 2 and runner.result.worker_deaths == 0
    assert all("thumbnailId" in i["metadata"]["system"] for i in items(app).values())


# -- custom preprocessing ----------------------------------------------------------------------

CUSTOM = """preprocessors = [
    {function = "custom_preprocessors:measure", mimetypes = ["image/*"]},
    {function = "custom_preprocessors:faces", mimetypes = ["image/jpeg"], key = "faces"},
    {function = "custom_preprocessors:broken", mimetypes = ["text/*"]},
]"""


@pytest.mark.parametrize("workers", ["workers = 0", POOL])
def test_custom_preprocessors_merge_into_user_metadata(make_app, bucket, workers):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    bucket.put("b.png", images.save(Image.new("RGB", (7, 5)), "PNG"))
    bucket.put("c.txt", b"words\n")
    app = make_app(workers, dataset=CUSTOM)
    app.sync("photos")
    result = app.run_jobs()
    assert (result.done, result.failed) == (2, 1)
    found = items(app)
    a = found["/a.jpg"]["metadata"]["user"]
    assert a == {"bytes": len(images.oriented_jpeg(1)), "seen_mimetype": "image/jpeg",
                 "seen_width": 160, "name": "a.jpg", "faces": {"count": 0, "model": "none"}}
    assert set(found["/b.png"]["metadata"]["user"]) == {"bytes", "seen_mimetype", "seen_width", "name"}
    c = found["/c.txt"]["metadata"]
    assert c["user"] == {}
    assert c["system"]["etl"]["errors"] == [
        "preprocessor custom_preprocessors:broken: ValueError: no faces here"]


def test_custom_preprocessor_problems_are_recorded(make_app, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    app = make_app(dataset="""preprocessors = [
        {function = "custom_preprocessors:not_a_dict"},
        {function = "custom_preprocessors:missing"},
        {function = "no_such_module:fn"},
        {entry_point = "nothing-registered"},
    ]""")
    app.sync("photos")
    assert app.run_jobs().failed == 1
    errors = items(app)["/a.jpg"]["metadata"]["system"]["etl"]["errors"]
    assert errors == [
        "preprocessor custom_preprocessors:not_a_dict: TypeError: returned list, not a dict",
        "preprocessor custom_preprocessors:missing: AttributeError: module 'custom_preprocessors'"
        " has no attribute 'missing'",
        "preprocessor no_such_module:fn: ModuleNotFoundError: No module named 'no_such_module'",
        "preprocessor entry point 'nothing-registered': LookupError: no 'syncd.preprocessors'"
        " entry point named 'nothing-registered'",
    ]


def test_custom_preprocessor_from_an_entry_point(make_app, bucket, tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "syncd_test_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: syncd-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[syncd.preprocessors]\nfaces = custom_preprocessors:faces\n")
    monkeypatch.syspath_prepend(str(site))
    bucket.put("a.jpg", images.oriented_jpeg(1))
    app = make_app(dataset='preprocessors = [{entry_point = "faces", key = "detector"}]')
    app.sync("photos")
    assert app.run_jobs().done == 1
    assert items(app)["/a.jpg"]["metadata"]["user"] == {"detector": {"count": 0, "model": "none"}}


# -- the CLI -----------------------------------------------------------------------------------

@pytest.fixture
def cli(make_app, tmp_path):
    def runner(preprocess: str = "", dataset: str = "") -> Runner:
        make_app(preprocess, dataset).close()
        return Runner(tmp_path / "jobs.toml")
    return runner


def test_sync_runs_the_jobs_by_default(cli, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    bucket.put("bad.jpg", b"")
    run = cli()
    [line] = run.json_lines("sync")  # a failed job is the item's problem, not the sync's
    assert line["created"] == 2 and line["preprocessed"]["done"] == 1
    assert line["preprocessed"]["failed"] == 1
    listed = sorted(run.json_lines("jobs", "list"), key=lambda j: j["filename"])
    assert [(j["kind"], j["state"], j["filename"]) for j in listed] == [
        ("preprocess", "done", "/a.jpg"), ("preprocess", "failed", "/bad.jpg")]
    assert listed[1]["error"] == "empty file (0 bytes)" and listed[0]["dataset"] == "photos"
    assert len(listed[0]["item"]) == 24


def test_sync_no_preprocess_leaves_jobs_queued_for_jobs_run(cli, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    run = cli()
    [line] = run.json_lines("sync", "--no-preprocess")
    assert "preprocessed" not in line
    assert [j["state"] for j in run.json_lines("jobs", "list", "--state", "pending")] == ["pending"]
    text = run("jobs", "run").stdout
    assert text.startswith("jobs: done 1, failed 0, cancelled 0")
    assert run.json_lines("jobs", "list", "--state", "pending") == []
    [summary] = run.json_lines("jobs", "run", "--wait")
    assert summary["done"] == 0 and summary["failed"] == 0


def test_jobs_retry_failed(cli, bucket):
    bucket.put("bad.jpg", b"")
    run = cli()
    run("sync", "--no-preprocess")
    [summary] = run.json_lines("jobs", "run", expect=5)
    assert summary["failed"] == 1
    bucket.put("bad.jpg", images.oriented_jpeg(1))  # fixed in place, without a sync
    assert run("jobs", "retry", "--failed").stdout == "1 job queued again\n"
    [summary] = run.json_lines("jobs", "run")
    assert summary["done"] == 1
    [job] = run.json_lines("jobs", "list")
    assert (job["state"], job["attempts"], job["error"]) == ("done", 1, None)
    assert run("jobs", "retry", expect=2).exit_code == 2


def test_sync_text_output_and_disabled_preprocessing(cli, bucket):
    bucket.put("a.jpg", images.oriented_jpeg(1))
    run = cli("enabled = false")
    out = run("sync").stdout
    assert "jobs:" not in out
    assert [j["state"] for j in run.json_lines("jobs", "list")] == ["pending"]
    assert "jobs: done 1" in run("jobs", "run", "--dataset", "photos").stdout


def _unused_pid() -> int:
    pid = os.getpid() + 1000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


@pytest.mark.sqlite_only
def test_catalogue_schema_has_the_job_columns(make_app):
    app = make_app()
    columns = {row[1] for row in app.catalogue._conn.execute("PRAGMA table_info(jobs)")}
    assert {"lease_until", "run_after", "dataset_id", "payload"} <= columns
