"""Tar archives that arrive in a dataset with `expand_archives = true` (synced, or dropped into
a watched folder) are expanded into items by an `expand` job: streamed, members in a folder
named after the archive, bad members failing alone with their reason."""

from __future__ import annotations

import pytest

import io
import os
import tarfile

from conftest import Runner, local_config, put_file
from daemon_support import ThreadDaemon, items, jpeg, wait_for
from syncd.app import App

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL

OPT_IN = "expand_archives = true\n"  # appended to the [[datasets]] table of local_config


def tar_bytes(members: dict[str, bytes], *, symlinks: dict[str, str] | None = None,
              mode: str = "w:gz") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return out.getvalue()


def job_rows(config):
    with App.from_file(config) as app:
        return list(app.jobs().rows())


def test_a_synced_archive_is_expanded_beside_itself_and_bad_members_fail_alone(tmp_path, storage):
    config = local_config(tmp_path, storage, extra=OPT_IN)
    inner = tar_bytes({"deep.jpg": jpeg(9)}, mode="w")
    put_file(storage, "drops/shoot.tar.gz", tar_bytes(
        {"a.jpg": jpeg(1), "./sub/b.jpg": jpeg(2), "../evil.txt": b"x", "nested.tar": inner},
        symlinks={"link.jpg": "a.jpg"}))
    run = Runner(config)
    run("sync", "--no-preprocess")
    run("jobs", "run", "--workers", "0", expect=None)
    with App.from_file(config) as app:
        got = {i["filename"]: i for i in app.catalogue.iter_items(app.dataset("photos"))}
    archive = got["/drops/shoot.tar.gz"]
    assert sorted(got) == ["/drops/shoot.tar.gz", "/drops/shoot/a.jpg", "/drops/shoot/nested.tar",
                           "/drops/shoot/sub/b.jpg"]  # an archive in an archive stays a file
    assert (storage / "drops/shoot/sub/b.jpg").read_bytes() == jpeg(2)
    member = got["/drops/shoot/a.jpg"]["metadata"]["system"]
    assert member["expandedFrom"] == archive["id"]
    assert (member["width"], member["height"]) == (64, 48)  # members are preprocessed as files
    [expand] = [j for j in job_rows(config) if j["kind"] == "expand"]
    assert expand["state"] == "failed" and expand["filename"] == "/drops/shoot.tar.gz"
    assert expand["error"].startswith("expanded into /drops/shoot: 3 created, 0 updated")
    assert "shoot.tar.gz: ../evil.txt: the path leaves the archive's folder" in expand["error"]
    assert "shoot.tar.gz: link.jpg: a symbolic link; only files are imported" in expand["error"]
    assert not (storage / "evil.txt").exists() and not (storage / "drops/evil.txt").exists()

    # Retried, it rewrites nothing; a new sync finds nothing to do.
    mtime = (storage / "drops/shoot/a.jpg").stat().st_mtime_ns
    run("jobs", "retry", "--failed")
    run("jobs", "run", "--workers", "0", expect=None)
    assert (storage / "drops/shoot/a.jpg").stat().st_mtime_ns == mtime
    [line] = run.json_lines("sync", "--no-preprocess")
    assert (line["created"], line["updated"]) == (0, 0)


def test_archives_are_left_alone_unless_the_dataset_opts_in(tmp_path, storage):
    config = local_config(tmp_path, storage)
    put_file(storage, "shoot.tar", tar_bytes({"a.jpg": jpeg(1)}, mode="w"))
    run = Runner(config)
    run("sync", "--no-preprocess")
    run("jobs", "run", "--workers", "0")
    assert [j["kind"] for j in job_rows(config)] == ["preprocess"]
    assert not (storage / "shoot").exists()


def test_an_archive_that_is_not_one_fails_its_job_naming_it(tmp_path, storage):
    config = local_config(tmp_path, storage, extra=OPT_IN)
    put_file(storage, "fake.tar", b"this is not a tar archive at all" * 20)
    run = Runner(config)
    run("sync", "--no-preprocess")
    run("jobs", "run", "--workers", "0", expect=None)
    [expand] = [j for j in job_rows(config) if j["kind"] == "expand"]
    assert expand["state"] == "failed"
    assert expand["error"].startswith("fake.tar: not a readable tar archive")


def test_an_archive_dropped_into_a_watched_folder_is_expanded_by_the_daemon(tmp_path, storage):
    config = local_config(tmp_path, storage, name="daemon.toml", extra=OPT_IN + """
[daemon]
debounce_seconds = 0.05

[[sources]]
kind = "watch"
driver = "disk"
""")
    db = tmp_path / "catalogue.db"
    staging = tmp_path / "staging.tar"
    staging.write_bytes(tar_bytes({f"day1/{i}.jpg": jpeg(i) for i in range(5)}))
    with ThreadDaemon(config, workers=0):
        (storage / "in").mkdir()
        os.replace(staging, storage / "in/batch.tgz")  # dropped whole, as rsync and mv do
        expected = {f"/in/batch/day1/{i}.jpg" for i in range(5)}
        wait_for(lambda: expected <= set(items(db)), timeout=30, what="the members as items")
    assert {k for k, v in items(db).items() if v["metadata"]["system"].get("expandedFrom")} == expected
    assert [j["state"] for j in job_rows(config) if j["kind"] == "expand"] == ["done"]


def test_an_archive_put_by_syncd_is_expanded_too(tmp_path, storage):
    config = local_config(tmp_path, storage, extra=OPT_IN)
    local = tmp_path / "up.tar.xz"
    local.write_bytes(tar_bytes({"p/a.jpg": jpeg(3)}, mode="w:xz"))
    run = Runner(config)
    run("put", "photos", str(local), "--as", "/uploads/up.tar.xz")  # runs the dataset's jobs
    with App.from_file(config) as app:
        got = {i["filename"] for i in app.catalogue.iter_items(app.dataset("photos"))}
    assert got == {"/uploads/up.tar.xz", "/uploads/up/p/a.jpg"}
    assert [j["state"] for j in job_rows(config) if j["kind"] == "expand"] == ["done"]


def test_a_large_archive_expands_while_other_jobs_are_claimed_and_finish(tmp_path, storage):
    """The expand job runs on a thread of its own: while a large archive expands, the runner
    keeps claiming, and small preprocessing jobs (queued beside it, and the members it has
    already written) finish and are recorded before it does. Order read from the job.done
    events, in the order the runner recorded them (no timing)."""
    import time

    from syncd.catalogue.outbox import Outbox

    config = local_config(tmp_path, storage, extra=OPT_IN + """
[[webhooks]]
name = "order"
url = "http://127.0.0.1:9/never-called"
events = ["job.done", "job.failed"]
""")
    put_file(storage, "drops/big.tar", tar_bytes(
        {f"m/{index:04d}.txt": b"member %d" % index for index in range(4000)}, mode="w"))
    for index in range(10):
        put_file(storage, f"small/{index}.txt", f"small {index}")
    run = Runner(config)
    run("sync", "--no-preprocess")
    run("jobs", "run", "--workers", "0")
    with App.from_file(config) as app:
        done = [(entry.data["kind"], entry.data["filename"]) for entry in
                Outbox(app.catalogue).claim("order", time.time(), limit=100_000, lease_seconds=60)]
    assert done.count(("expand", "/drops/big.tar")) == 1 and len(done) == 4000 + 12
    before = done[:done.index(("expand", "/drops/big.tar"))]
    assert {f"/small/{index}.txt" for index in range(10)} <= {name for _, name in before}
    assert any(name.startswith("/drops/big/m/") for _, name in before), \
        "members written so far were claimed and processed while the archive expanded"
