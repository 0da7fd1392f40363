"""[datasets.upload]: sampling, quotas, resizing, batches and tags for upload and imports;
`put --meta`."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from PIL import Image

from conftest import Runner, local_config, put_file
from images import quadrants, save
from syncd.app import App
from syncd.imports.controls import batch_name

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


def controls_config(tmp_path, storage, upload: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    storage.mkdir(parents=True, exist_ok=True)
    return local_config(tmp_path, storage, extra=f"[datasets.upload]\n{upload}\n")


def names(config):
    with App.from_file(config) as app:
        return sorted(i["filename"] for i in app.catalogue.iter_items(app.dataset("photos")))


def test_sampling_is_repeatable_by_seed_and_reported(tmp_path, storage):
    local = tmp_path / "shoot"
    for index in range(40):
        put_file(local, f"{index:02d}.bin", f"file {index}")
    first = controls_config(tmp_path / "a", storage / "a", "sample_percent = 25\nsample_seed = 7")
    [line] = Runner(first).json_lines("upload", str(local), "--dataset", "photos")
    assert line["sampled"] == 40 - line["created"] and 3 < line["created"] < 20
    assert line["controls"]["sample"] == {"percent": 25.0, "seed": 7, "left_out": line["sampled"]}
    assert line["failures"] is None  # left out by choice: not failures
    second = controls_config(tmp_path / "b", storage / "b", "sample_percent = 25\nsample_seed = 7")
    Runner(second).json_lines("upload", str(local), "--dataset", "photos")
    assert names(first) == names(second)  # the same seed keeps the same files
    # Without a seed one is drawn and reported; giving it back repeats the choice.
    third = controls_config(tmp_path / "c", storage / "c", "sample_percent = 25")
    [line] = Runner(third).json_lines("upload", str(local), "--dataset", "photos")
    seed = line["controls"]["sample"]["seed"]
    fourth = controls_config(tmp_path / "d", storage / "d", f"sample_percent = 25\nsample_seed = {seed}")
    Runner(fourth).json_lines("upload", str(local), "--dataset", "photos")
    assert names(third) == names(fourth)


def test_quota_refuses_the_rest_into_the_failures_file(tmp_path, storage):
    local = tmp_path / "shoot"
    for index in range(5):
        put_file(local, f"{index}.bin", f"file {index}")
    config = controls_config(tmp_path, storage, "quota_per_hour = 3")
    [line] = Runner(config).json_lines("upload", str(local), "--dataset", "photos", expect=5)
    assert (line["created"], line["refused"], line["failed"]) == (3, 2, 0)
    assert line["controls"]["quota"] == {"quota_per_hour": {"limit": 3, "used": 3}, "refused": 2}
    failures = tmp_path / "shoot.failures.csv"
    rows = failures.read_text().splitlines()
    assert rows[1:] == ["3.bin,/3.bin: quota_per_hour = 3 reached; import this again later",
                        "4.bin,/4.bin: quota_per_hour = 3 reached; import this again later"]
    # The quota counts what earlier runs created: still full now, fed back later it goes in.
    [line] = Runner(config).json_lines("upload", str(local), "--dataset", "photos", "--retry", str(failures), expect=5)
    assert (line["created"], line["refused"]) == (0, 2)
    config.write_text(config.read_text().replace("quota_per_hour = 3", "quota_per_hour = 5"))
    [line] = Runner(config).json_lines("upload", str(local), "--dataset", "photos", "--retry", str(failures))
    assert (line["created"], line["refused"], line["failures"]) == (2, 0, None)
    assert len(names(config)) == 5


def test_max_size_and_jpeg_quality_resize_before_storing(tmp_path, storage):
    local = tmp_path / "shoot"
    big_jpeg = save(quadrants(400, 200), "JPEG", quality=95)
    put_file(local, "big.jpg", big_jpeg)
    put_file(local, "big.png", save(quadrants(300, 150), "PNG"))
    small_png = save(quadrants(40, 20), "PNG")
    put_file(local, "small.png", small_png)
    put_file(local, "notes.txt", "not an image")
    config = controls_config(tmp_path, storage, "max_size = 100\njpeg_quality = 60")
    [line] = Runner(config).json_lines("upload", str(local), "--dataset", "photos")
    assert line["created"] == 4
    stored = Image.open(io.BytesIO((storage / "big.jpg").read_bytes()))
    assert (stored.format, stored.size) == ("JPEG", (100, 50))
    assert Image.open(storage / "big.png").size == (100, 50)
    assert (storage / "small.png").read_bytes() == small_png  # small and not a JPEG: as it was
    assert (storage / "notes.txt").read_text() == "not an image"
    # What the catalogue holds matches what is stored: the next sync changes nothing.
    [result] = Runner(config).json_lines("sync", "--no-preprocess")
    assert result["unchanged"] == 4


def test_batches_and_tags_are_recorded_on_each_item(tmp_path, storage):
    put_file(tmp_path / "shoot", "a.bin", "a")
    config = controls_config(tmp_path, storage, 'batch_prefix = "shoot"\nbatch_every = "daily"\ntags = ["field", "2026"]')
    [line] = Runner(config).json_lines("upload", str(tmp_path / "shoot"), "--dataset", "photos")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert line["controls"]["batch"] == f"shoot-{today}"
    with App.from_file(config) as app:
        item = app.catalogue.get_item(app.dataset("photos"), "/a.bin")
    assert item["metadata"]["user"] == {"tags": ["field", "2026"], "batch": f"shoot-{today}"}


def test_batch_names():
    moment = datetime(2026, 1, 1, tzinfo=UTC)  # ISO week 1 of 2026
    assert batch_name("b", "never", moment) == "b"
    assert batch_name("b", "daily", moment) == "b-2026-01-01"
    assert batch_name("b", "weekly", moment) == "b-2026-W01"
    assert batch_name("b", "monthly", moment) == "b-2026-01"
    assert batch_name(None, "daily", moment) is None


def test_put_meta_sets_user_metadata_and_a_bad_pair_writes_nothing(run, app, storage, tmp_path):
    local = put_file(tmp_path, "a.bin", "a")
    [item] = run.json_lines("put", "photos", str(local), "--no-preprocess", "--meta", "camera=cam_01",
                            "--meta", "site.area=north", "--meta", "count=3")
    assert item["metadata"]["user"] == {"camera": "cam_01", "site": {"area": "north"}, "count": 3}
    other = put_file(tmp_path, "b.bin", "b")
    result = run("put", "photos", str(other), "--meta", "no-equals-sign", expect=2)
    assert "expected key=value" in result.stderr
    assert not (storage / "b.bin").exists()
    assert json.loads(json.dumps(item["metadata"]["user"]))["count"] == 3


def test_put_meta_is_written_in_the_items_own_transaction(app, storage, tmp_path, monkeypatch):
    """A crash while writing the metadata leaves no item without it: the item and its
    metadata are committed together or not at all (the next sync catalogues the file)."""
    from syncd.catalogue import items
    from syncd.imports import downstream

    local = put_file(tmp_path, "c.bin", "c")

    def crash(*args, **kwargs):
        raise RuntimeError("killed while writing the metadata")

    monkeypatch.setattr(items, "set_metadata", crash)
    with pytest.raises(RuntimeError, match="killed while writing"):
        downstream.put(app, "photos", local, user={"camera": "cam_01"})
    assert [i["filename"] for i in app.catalogue.iter_items(app.dataset("photos"))] == []
    monkeypatch.undo()
    item, _ = downstream.put(app, "photos", local, user={"camera": "cam_01"})
    assert item["metadata"]["user"] == {"camera": "cam_01"}


def test_files_that_arrive_get_tags_and_batch_and_are_never_rewritten(tmp_path, storage):
    """The daemon's events and a sync record tags and the batch on files that arrive on their
    own; max_size and jpeg_quality never rewrite them (the user's own files in their own
    storage). Their sampling and quotas: tests/test_arrival_controls.py."""
    from daemon_support import ThreadDaemon, items, wait_for

    upload = ('tags = ["field"]\nbatch_prefix = "drop"\nbatch_every = "daily"\n'
              "max_size = 16\njpeg_quality = 20\n")
    config = local_config(tmp_path, storage, name="daemon.toml", extra=f"""
[datasets.upload]
{upload}
[daemon]
debounce_seconds = 0.05

[[sources]]
kind = "watch"
driver = "disk"
""")
    big = save(quadrants(200, 100))
    batch = batch_name("drop", "daily", datetime.now(UTC))
    db = tmp_path / "catalogue.db"
    with ThreadDaemon(config):
        put_file(storage, "a.jpg", big)
        put_file(storage, "b.jpg", big + b"")
        put_file(storage, "c.txt", "c")
        wait_for(lambda: {"/a.jpg", "/b.jpg", "/c.txt"} <= set(items(db)), what="all arrivals")
    for item in items(db).values():
        assert item["metadata"]["user"] == {"tags": ["field"], "batch": batch}
    assert (storage / "a.jpg").read_bytes() == big  # not resized nor re-encoded

    # A file found by a sync (the daemon was down) gets the same.
    put_file(storage, "later/d.jpg", big)
    Runner(config)("sync", "--no-preprocess")
    assert items(db)["/later/d.jpg"]["metadata"]["user"] == {"tags": ["field"], "batch": batch}
    assert (storage / "later/d.jpg").read_bytes() == big
