"""`syncd sync` gives the same results on every driver for the same file operations."""

from __future__ import annotations

import io

from conftest import Runner
from drivers.cloud import CHUNK_SIZE


def runner(tmp_path, store) -> Runner:
    config = tmp_path / "syncd.toml"
    config.write_text(f'[catalogue]\npath = "{tmp_path / "c.db"}"\n\n'
                      f'{store.toml(name="store")}\n'
                      '[[datasets]]\nname = "photos"\ndriver = "store"\n')
    return Runner(config)


def counts(result: dict) -> dict:
    keys = ("listed", "created", "updated", "moved", "deleted", "unchanged", "errors")
    return {key: result[key] for key in keys}


def test_same_operations_same_results_on_every_driver(store, tmp_path):
    run = runner(tmp_path, store)
    driver = store.make()
    for name in ("a.jpg", "b.jpg", "c.jpg", "cats/d.jpg"):
        driver.put(name, f"content of {name}".encode())
    driver.put(".dataloop/thumbnails/a.jpg", b"thumbnail")
    [first] = run.json_lines("sync")
    assert counts(first) == dict(listed=4, created=4, updated=0, moved=0, deleted=0,
                                 unchanged=0, errors=0)
    ids = {i["filename"]: i["id"] for i in run.json_lines("items", "list", "photos")}

    driver.put("b.jpg", b"new, longer content of b")  # updated
    driver.delete("c.jpg")  # deleted
    store.rename("cats/d.jpg", "dogs/renamed d.jpg")  # moved: same content, new name
    driver.put("f.jpg", b"fresh")  # created
    [second] = run.json_lines("sync")
    assert counts(second) == dict(listed=4, created=1, updated=1, moved=1, deleted=1,
                                  unchanged=1, errors=0)
    items = {i["filename"]: i for i in run.json_lines("items", "list", "photos")}
    assert items["/dogs/renamed d.jpg"]["id"] == ids["/cats/d.jpg"]
    assert items["/c.jpg"]["state"] == "missing"
    assert items["/b.jpg"]["metadata"]["system"]["size"] == len(b"new, longer content of b")

    [third] = run.json_lines("sync")
    assert counts(third) == dict(listed=4, created=0, updated=0, moved=0, deleted=0,
                                 unchanged=4, errors=0)


def test_item_json_says_whether_the_etag_is_an_md5(store, tmp_path):
    run = runner(tmp_path, store)
    driver = store.make()
    driver.put("small.bin", b"small")
    driver.put("large.bin", io.BytesIO(b"L" * (CHUNK_SIZE + 1)))
    run.json_lines("sync")
    system = {i["filename"]: i["metadata"]["system"] for i in run.json_lines("items", "list", "photos")}
    if store.kind == "s3":
        assert system["/small.bin"]["etagIsMd5"] is True
        assert system["/small.bin"]["md5"] == system["/small.bin"]["etag"]
        assert system["/large.bin"]["etag"].endswith("-2")  # a multipart ETag
        assert system["/large.bin"]["md5"] is None and system["/large.bin"]["etagIsMd5"] is False
    else:
        assert system["/small.bin"]["etagIsMd5"] is False
    for item in system.values():
        assert item["etagIsMd5"] == (item["md5"] is not None and item["md5"] == item["etag"])
