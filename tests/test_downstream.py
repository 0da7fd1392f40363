"""`syncd put` / `syncd rm`: through the driver's permissions, never re-imported."""

from __future__ import annotations

import pytest

from conftest import Runner, local_config, put_file
from daemon_support import ThreadDaemon, daemon_config, items, jobs, jpeg, synced, wait_for

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


def config(tmp_path, storage, *, permissions='["list", "get", "put", "delete"]', allow_delete="false",
           catalogue=None):
    return local_config(tmp_path, storage, catalogue=catalogue,
                        driver=f"permissions = {permissions}\n        allow_delete = {allow_delete}")


@pytest.fixture
def local_file(tmp_path):
    path = tmp_path / "upload" / "new photo.jpg"
    path.parent.mkdir()
    path.write_bytes(b"jpeg bytes")
    return path


def test_put_writes_storage_and_catalogue(catalogue_location, tmp_path, storage, local_file, run):
    [item] = run.json_lines("put", "photos", str(local_file), "--no-preprocess")
    assert item["filename"] == "/new photo.jpg" and item["state"] == "present"
    assert (storage / "new photo.jpg").read_bytes() == b"jpeg bytes"
    [item] = run.json_lines("put", "photos", str(local_file), "--as", "/cats/renamed.jpg", "--no-preprocess")
    assert (storage / "cats/renamed.jpg").exists() and item["filename"] == "/cats/renamed.jpg"
    [item] = run.json_lines("put", "photos", str(local_file), "--as", "dogs/", "--no-preprocess")
    assert item["filename"] == "/dogs/new photo.jpg"
    assert [state for _, state in jobs(catalogue_location)] == ["pending"] * 3
    # A sync afterwards finds storage and catalogue in agreement: nothing to import.
    [result] = run.json_lines("sync", "--no-preprocess")
    assert (result["created"], result["updated"], result["unchanged"]) == (0, 0, 3)


def test_put_preprocesses_the_new_item(tmp_path, storage, run):
    image = tmp_path / "photo.jpg"
    image.write_bytes(jpeg())
    [item] = run.json_lines("put", "photos", str(image), "--as", "/cats/photo.jpg")
    system = item["metadata"]["system"]
    assert system["mimetype"] == "image/jpeg" and system["width"] == 64
    assert (storage / system["thumbnailId"]).exists()


def test_put_refused_by_permissions_changes_nothing(catalogue_location, tmp_path, storage, local_file):
    run = Runner(config(tmp_path, storage, catalogue=catalogue_location, permissions='["list", "get"]'))
    result = run("put", "photos", str(local_file), expect=4)
    assert "put" in result.stderr and not any(storage.iterdir())
    assert items(catalogue_location) == {}


def test_put_into_the_artifacts_folder_is_refused(tmp_path, local_file, run):
    result = run("put", "photos", str(local_file), "--as", "/.dataloop/x.jpg", expect=2)  # a bad name
    assert "artifacts" in result.stderr


def test_daemon_does_not_reimport_its_own_write(catalogue_location, tmp_path, storage, local_file):
    cfg = daemon_config(tmp_path, storage, catalogue=catalogue_location, daemon="debounce_seconds = 0.05")
    db = catalogue_location
    with ThreadDaemon(cfg) as daemon:
        wait_for(lambda: synced(db) and not daemon.rescans.running, what="startup sync")
        Runner(cfg)("put", "photos", str(local_file), "--as", "/cats/a.jpg", "--no-preprocess")

        def seen():
            samples = daemon.metrics.events.collect()[0].samples
            return [s for s in samples if s.labels["source"] == "watch" and s.value]

        wait_for(seen, what="the daemon saw the write")
    assert list(items(db)) == ["/cats/a.jpg"]
    assert [state for _, state in jobs(db)] == ["pending"]


def test_rm_keeps_the_binary_without_allow_delete(catalogue_location, tmp_path, storage, local_file, run):
    run("put", "photos", str(local_file), "--as", "/a.jpg", "--no-preprocess")
    result = run("rm", "photos", "/a.jpg")
    assert "stays in storage" in result.stderr
    assert (storage / "a.jpg").exists() and items(catalogue_location) == {}
    assert [state for _, state in jobs(catalogue_location)] == ["cancelled"]
    run("rm", "photos", "/a.jpg", expect=3)


def test_rm_deletes_the_binary_with_allow_delete(catalogue_location, tmp_path, storage, local_file):
    run = Runner(config(tmp_path, storage, catalogue=catalogue_location, allow_delete="true"))
    local_file.write_bytes(jpeg())
    [item] = run.json_lines("put", "photos", str(local_file), "--as", "/cats/a.jpg")
    thumbnail = storage / item["metadata"]["system"]["thumbnailId"]
    assert thumbnail.exists()
    [removed] = run.json_lines("rm", "photos", "cats/a.jpg")
    assert removed["binary_deleted"] is True and removed["filename"] == "/cats/a.jpg"
    assert not (storage / "cats").exists()  # the local driver prunes emptied folders
    assert items(catalogue_location) == {}
    run("jobs", "run")  # the queued cleanup deletes the thumbnail
    assert not thumbnail.exists()


def test_rm_without_delete_permission_changes_nothing(catalogue_location, tmp_path, storage, local_file):
    run = Runner(config(tmp_path, storage, catalogue=catalogue_location, permissions='["list", "get", "put"]', allow_delete="true"))
    run("put", "photos", str(local_file), "--as", "/a.jpg", "--no-preprocess")
    result = run("rm", "photos", "/a.jpg", expect=4)
    assert "delete" in result.stderr
    assert (storage / "a.jpg").exists() and "/a.jpg" in items(catalogue_location)
