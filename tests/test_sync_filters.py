"""Filters applied by every writer: sync and rescans, the event applier, put, upload, imports;
and rsync writing into a watched folder leaves no ghosts and no failed jobs."""

from __future__ import annotations

import csv
import shutil
import subprocess
import time

import pytest

from conftest import Runner, local_config, put_file
from daemon_support import ThreadDaemon, daemon_config, items, jobs, wait_for
from images import noisy_jpeg
from syncd.app import App
from syncd.sync.applier import Applier
from syncd.sync.events import ObjectCreated, ObjectMoved

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL

IN_PROGRESS = [".a.jpg.Xy12Zq", "film.mp4.part", "dl/x.crdownload", "b.tmp", "docs/~$memo.docx",
               "cats/.DS_Store"]


def names(app, dataset="photos", *, present=True):
    return sorted(i["filename"] for i in app.catalogue.iter_items(app.dataset(dataset))
                  if not present or i["state"] == "present")


def test_sync_leaves_default_excludes_out_and_dry_run_names_the_rules(tmp_path, storage):
    for key in ["a.jpg", "cats/c.jpg", *IN_PROGRESS]:
        put_file(storage, key)
    run = Runner(local_config(tmp_path, storage))
    [dry] = run.json_lines("sync", "--dry-run")
    assert dry["listed"] == dry["created"] == 2
    assert dry["excluded"] == {
        "default: exclude .*.{{[A-Za-z0-9]{6}}}": 1, "default: exclude *.part": 1,
        "default: exclude *.crdownload": 1, "default: exclude *.tmp": 1,
        "default: exclude ~$*": 1, "default: exclude .DS_Store": 1}
    text = run("sync", "--dry-run").stdout
    assert "excluded by default: exclude *.part: 1\n    /film.mp4.part\n" in text
    assert "excluded by default: exclude ~$*: 1\n    /docs/~$memo.docx\n" in text
    run("sync", "--no-preprocess")
    with App.from_file(run.config_file) as app:
        assert names(app) == ["/a.jpg", "/cats/c.jpg"]


def test_driver_and_dataset_rules_and_defaults_switched_off(tmp_path, storage):
    for key in ["cats/a.jpg", "cats/a.raw", "cats/notes.txt", "dogs/b.jpg", "cats/x.tmp"]:
        put_file(storage, key)
    config = local_config(tmp_path, storage, driver='exclude = ["*.raw"]\ndefault_excludes = false')
    text = config.read_text().replace('driver = "disk"\n', 'driver = "disk"\ninclude = ["/cats/**"]\n'
                                      'filters = ["- *.txt"]\n', 1)
    config.write_text(text)
    run = Runner(config)
    [result] = run.json_lines("sync", "--no-preprocess")
    assert result["excluded"] == {"driver disk: exclude *.raw": 1, "dataset photos: exclude *.txt": 1,
                                  "dataset photos: matches no include": 1}
    with App.from_file(config) as app:
        assert names(app) == ["/cats/a.jpg", "/cats/x.tmp"]  # defaults off: *.tmp is an item


def test_a_filter_added_later_turns_existing_items_into_ghosts(tmp_path, storage):
    put_file(storage, "a.jpg")
    put_file(storage, "b.raw")
    config = local_config(tmp_path, storage)
    Runner(config)("sync", "--no-preprocess")
    config.write_text(config.read_text().replace('driver = "disk"\n', 'driver = "disk"\nexclude = ["*.raw"]\n', 1))
    [result] = Runner(config).json_lines("sync", "--no-preprocess")
    assert (result["deleted"], result["excluded"]) == (1, {"dataset photos: exclude *.raw": 1})
    with App.from_file(config) as app:
        assert names(app) == ["/a.jpg"]
        assert names(app, present=False) == ["/a.jpg", "/b.raw"]


def test_events_for_excluded_keys_make_no_items_and_a_rename_out_of_one_is_a_create(app, storage):
    applier = Applier(app.catalogue, lambda n: (app.dataset(n), app.dataset_driver(n)),
                      path_filter=app.path_filter)
    try:
        def event(kind, key, **extra):
            return kind(dataset="photos", key=key, source="test", received=time.time(), **extra)

        put_file(storage, ".a.jpg.Xy12Zq", "partial")
        [change] = applier.apply([event(ObjectCreated, ".a.jpg.Xy12Zq")])
        assert change.action == "unchanged" and names(app) == []
        (storage / ".a.jpg.Xy12Zq").rename(storage / "a.jpg")
        changes = applier.apply([event(ObjectMoved, "a.jpg", old_key=".a.jpg.Xy12Zq")])
        assert [c.action for c in changes] == ["unchanged", "created"]
        assert names(app) == ["/a.jpg"]
        # An item renamed to an excluded name is gone, as if deleted.
        (storage / "a.jpg").rename(storage / "a.jpg.tmp")
        changes = applier.apply([event(ObjectMoved, "a.jpg.tmp", old_key="a.jpg")])
        assert [c.action for c in changes] == ["deleted", "unchanged"]
        assert names(app) == []
    finally:
        applier.close()


def test_put_refuses_an_excluded_name_and_writes_nothing(run, storage, tmp_path):
    local = put_file(tmp_path, "upload/report.tmp", "x")
    result = run("put", "photos", str(local), expect=2)
    assert "/report.tmp is excluded by the dataset's filters (default: exclude *.tmp)" in result.stderr
    assert not (storage / "report.tmp").exists()


def test_upload_and_csv_import_report_excluded_files_apart_from_failures(run, app, storage, tmp_path):
    local = tmp_path / "shoot"
    put_file(local, "a.jpg", "a")
    put_file(local, ".DS_Store", "finder")
    put_file(local, "b.jpg.part", "half")
    [line] = run.json_lines("upload", str(local), "--dataset", "photos")
    assert (line["total"], line["created"], line["excluded"], line["failed"]) == (3, 1, 2, 0)
    assert line["failures"] is None
    assert sorted(p.name for p in storage.iterdir()) == ["a.jpg"]
    table = tmp_path / "rows.csv"
    with open(table, "w", newline="") as file:
        csv.writer(file).writerows([["name", "image_bytes"], ["x.jpg", "eHg="], ["y.tmp", "eXk="]])
    [line] = run.json_lines("import", "csv", str(table), "--dataset", "photos")
    assert (line["created"], line["excluded"], line["failed"]) == (1, 1, 0)
    assert names(app) == ["/a.jpg", "/rows/x.jpg"]


@pytest.mark.skipif(shutil.which("rsync") is None and not __import__("os").environ.get("CI"),
                    reason="rsync is not installed (.ci/run installs it)")
def test_rsync_into_a_watched_folder_leaves_no_ghosts_or_failed_jobs(tmp_path, storage):
    source = tmp_path / "camera"
    expected = set()
    for index in range(2):
        put_file(source, f"day1/img{index}.jpg", noisy_jpeg((960, 720), seed=index))  # ~340 KB
        expected.add(f"/incoming/day1/img{index}.jpg")
    (storage / "incoming").mkdir()
    cfg = daemon_config(tmp_path, storage, daemon="debounce_seconds = 0.05")
    db = tmp_path / "catalogue.db"
    with ThreadDaemon(cfg, workers=0):
        wait_for(lambda: items(db) == {} and jobs(db) == [], what="started")
        # Slow enough that each of rsync's .NAME.XXXXXX files is written for over a second,
        # longer than the watcher's longest hold (MAX_DELAY): without the default excludes
        # they would be handed over half-written.
        subprocess.run(["rsync", "-r", "--bwlimit=200", f"{source}/", f"{storage}/incoming/"],
                       check=True, timeout=60)
        wait_for(lambda: set(items(db)) == expected
                 and all(state == "done" for _, state in jobs(db)), what="items and their jobs")
    final = items(db)
    assert all(item["state"] == "present" for item in final.values())
    assert all(item["metadata"]["system"].get("thumbnailId") for item in final.values())
    states = [state for _, state in jobs(db)]
    assert states == ["done"] * len(expected), states
