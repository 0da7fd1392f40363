"""`syncd upload DIR`: a local folder into a dataset's storage and catalogue."""

from __future__ import annotations

import pytest

import csv
import os

from conftest import put_file
from syncd.imports.upload import upload_folder

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


def items_by_path(app, dataset="photos"):
    return {i["filename"]: i for i in app.catalogue.iter_items(app.dataset(dataset))}


def make_folder(root):
    put_file(root, "cats/tabby.jpg", b"tabby bytes")
    put_file(root, "cats/black cat.jpg", b"black cat bytes")
    put_file(root, "dogs/puppy #2.jpg", b"puppy bytes")
    put_file(root, "field.jpg", b"field bytes")
    put_file(root, ".dataloop/thumbnails/x.jpg", b"artifact, not uploaded")
    return root


def test_upload_puts_files_and_items_and_the_next_sync_sees_them_unchanged(app, storage, tmp_path, run):
    local = make_folder(tmp_path / "shoot")
    [line] = run.json_lines("upload", str(local), "--dataset", "photos", "--folder", "/in")
    assert {k: line[k] for k in ("total", "created", "updated", "unchanged", "failed", "folder")} == {
        "total": 4, "created": 4, "updated": 0, "unchanged": 0, "failed": 0, "folder": "/in"}
    assert line["failures"] is None and not (tmp_path / "shoot.failures.csv").exists()
    assert (storage / "in/dogs/puppy #2.jpg").read_bytes() == b"puppy bytes"
    assert not (storage / "in/.dataloop").exists()
    items = items_by_path(app)
    assert sorted(items) == ["/in/cats/black cat.jpg", "/in/cats/tabby.jpg", "/in/dogs/puppy #2.jpg", "/in/field.jpg"]
    assert items["/in/field.jpg"]["metadata"]["system"]["size"] == len(b"field bytes")
    assert app.jobs().counts()["pending"] == 4
    # What the catalogue recorded is what a listing shows: the sync changes nothing.
    [result] = run.json_lines("sync", "photos", "--no-preprocess")  # jobs would fill metadata
    assert (result["listed"], result["unchanged"], result["updated"], result["created"]) == (4, 4, 0, 0)
    assert items_by_path(app) == items


def test_identical_files_are_skipped_and_changed_ones_updated(app, storage, tmp_path):
    local = make_folder(tmp_path / "shoot")
    upload_folder(app, "photos", local)
    stamps = {p: p.stat().st_mtime_ns for p in storage.rglob("*") if p.is_file()}
    again = upload_folder(app, "photos", local)
    assert (again.total, again.unchanged, again.created, again.updated) == (4, 4, 0, 0)
    assert {p: p.stat().st_mtime_ns for p in storage.rglob("*") if p.is_file()} == stamps
    (local / "field.jpg").write_bytes(b"field bytes, edited")
    third = upload_folder(app, "photos", local)
    assert (third.unchanged, third.updated) == (3, 1)
    assert (storage / "field.jpg").read_bytes() == b"field bytes, edited"
    item = app.catalogue.get_item(app.dataset("photos"), "/field.jpg")
    jobs = [j["state"] for j in app.jobs().rows() if j["item"] == item["id"]]
    assert jobs == ["cancelled", "pending"]


def test_files_already_in_storage_are_compared_by_content(app, storage, tmp_path):
    put_file(storage, "a.jpg", b"same")  # there before, found by a sync: no MD5 from a local listing
    put_file(storage, "b.jpg", b"old!")  # same size, other content
    app.sync("photos")
    local = tmp_path / "up"
    put_file(local, "a.jpg", b"same")
    put_file(local, "b.jpg", b"new!")
    before = (storage / "a.jpg").stat().st_mtime_ns
    result = upload_folder(app, "photos", local)
    assert (result.unchanged, result.updated) == (1, 1)
    assert (storage / "a.jpg").stat().st_mtime_ns == before
    assert (storage / "b.jpg").read_bytes() == b"new!"
    assert app.sync("photos").unchanged == 2


def test_label_folders(app, tmp_path, run):
    local = make_folder(tmp_path / "shoot")
    run("upload", str(local), "--dataset", "photos", "--label-folders")
    labels = {f: i["metadata"]["user"].get("label") for f, i in items_by_path(app).items()}
    assert labels == {"/cats/black cat.jpg": "cats", "/cats/tabby.jpg": "cats",
                      "/dogs/puppy #2.jpg": "dogs", "/field.jpg": "shoot"}


def test_failures_are_logged_and_retried(app, storage, tmp_path, run):
    local = make_folder(tmp_path / "shoot")
    put_file(storage, "field.jpg/blocker", b"a folder where a file must go")
    result = run("upload", str(local), "--dataset", "photos", "--batch-size", "2", expect=5)
    assert "created 3" in result.stdout and "failed 1" in result.stdout
    failures = tmp_path / "shoot.failures.csv"
    with open(failures, newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["path", "error"] and [r[0] for r in rows[1:]] == ["field.jpg"]
    assert rows[1][1]  # the reason
    (storage / "field.jpg/blocker").unlink()
    os.rmdir(storage / "field.jpg")
    [line] = run.json_lines("upload", str(local), "--dataset", "photos", "--retry", str(failures))
    assert (line["total"], line["created"], line["failed"]) == (1, 1, 0)  # only the failed file
    assert not failures.exists()
    assert (storage / "field.jpg").read_bytes() == b"field bytes"


def test_upload_without_put_permission_fails_every_file(config_file, storage, tmp_path, run):
    config_file.write_text(config_file.read_text().replace('root = "', 'permissions = ["list", "get"]\nroot = "'))
    local = make_folder(tmp_path / "shoot")
    failures = tmp_path / "f.csv"
    [line] = run.json_lines("upload", str(local), "--dataset", "photos", "--failures", str(failures), expect=5)
    assert (line["failed"], line["created"]) == (4, 0) and line["failures"] == str(failures)
    assert list(storage.iterdir()) == []


def test_upload_into_the_hidden_folder_is_refused(app, tmp_path):
    local = make_folder(tmp_path / "shoot")
    result = upload_folder(app, "photos", local, folder="/.dataloop")
    assert result.failed == 4 and result.created == 0
