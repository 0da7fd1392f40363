"""`syncd items export` (JSON Lines, CSV, Parquet), `syncd status` and `syncd errors`."""

from __future__ import annotations

import csv
import io
import json
import os

import pyarrow.parquet as pq
import pytest

from conftest import put_file
from images import camera_jpeg, noisy_jpeg

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


@pytest.fixture
def synced(app, storage, run):
    put_file(storage, "cam1/a.jpg", camera_jpeg())
    put_file(storage, "cam1/b.jpg", noisy_jpeg((64, 48)))
    put_file(storage, "notes.txt", "hello\n")
    os.makedirs(storage / "odd", exist_ok=True)
    open(os.path.join(os.fsencode(storage / "odd"), b"bad\xff.jpg"), "wb").close()  # not UTF-8
    run("sync", expect=5)  # the odd name is a listing error
    run("items", "set-meta", "photos", "/cam1/a.jpg", "camera=cam_01", "lot=7", 'tags=["x","y"]')
    run("items", "set-meta", "photos", "/cam1/b.jpg", "camera=cam_02", "lot=7.5")
    return app


def test_export_jsonl_is_the_item_json(synced, run):
    lines = run("items", "export", "photos").stdout.splitlines()
    items = [json.loads(line) for line in lines]
    assert [i["filename"] for i in items] == ["/cam1/a.jpg", "/cam1/b.jpg", "/notes.txt"]
    assert items[0] == run.json_lines("items", "get", "photos", "/cam1/a.jpg")[0]


def test_export_csv_has_flat_columns(synced, run, tmp_path):
    out = tmp_path / "items.csv"
    result = run("items", "export", "photos", "--format", "csv", "--output", str(out))
    assert "exported 3 items of photos" in result.stderr and not (tmp_path / "items.csv.partial").exists()
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["filename"] for r in rows] == ["/cam1/a.jpg", "/cam1/b.jpg", "/notes.txt"]
    a = rows[0]
    assert a["metadata.user.camera"] == "cam_01" and a["metadata.user.lot"] == "7"
    assert json.loads(a["metadata.user.tags"]) == ["x", "y"]
    assert a["metadata.system.exif.Make"] == "Canon" and a["metadata.system.mimetype"] == "image/jpeg"
    assert rows[2]["metadata.user.camera"] == ""


def test_export_parquet_is_typed_and_filtered(synced, run, tmp_path):
    out = tmp_path / "items.parquet"
    run("items", "export", "photos", "--format", "parquet", "--output", str(out),
        "--where", "user.lot >= 7")
    table = pq.read_table(out)
    assert table.column("filename").to_pylist() == ["/cam1/a.jpg", "/cam1/b.jpg"]
    types = {field.name: str(field.type) for field in table.schema}
    assert types["metadata.system.size"] == "int64"
    assert types["metadata.user.lot"] == "double"  # 7 and 7.5
    assert types["metadata.user.camera"] == "string" and types["metadata.user.tags"] == "string"
    assert table.column("metadata.user.lot").to_pylist() == [7.0, 7.5]
    assert json.loads(table.column("metadata.user.tags").to_pylist()[0]) == ["x", "y"]
    assert "needs --output" in run("items", "export", "photos", "--format", "parquet", expect=2).stderr
    assert "position" in run("items", "export", "photos", "--where", "lot ==", expect=2).stderr


def test_status_and_errors(synced, run):
    (status,) = [line for line in run.json_lines("status") if "dataset" in line]
    assert status["dataset"] == "photos" and status["items"] == {"present": 3, "missing": 0}
    assert status["jobs"]["pending"] == 0 and status["jobs"]["done"] == 3
    assert status["mimetypes"] == {"image/jpeg": 2, "text/plain": 1}
    assert status["lastSync"]["created"] == 3 and status["listingErrors"] == 1
    text = run("status").stdout
    assert "3 present, 0 missing" in text and "1 listing errors (syncd errors photos)" in text
    assert "jobs: done 3" in text
    (error,) = run.json_lines("errors", "photos")
    assert "odd" in error["path"] and error["reason"]
    assert "odd" in run("errors", "photos").stdout
    assert "no dataset named 'nope'" in run("status", "nope", expect=3).stderr
