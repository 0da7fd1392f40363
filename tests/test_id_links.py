"""Id links (linkInfo.type "id"): accepted for items of this catalogue, preprocessed from the
target item's bytes through its own dataset's driver; any other id fails its file or row alone."""

from __future__ import annotations

import pytest

import csv
import json

from conftest import Runner, local_config, put_file
from images import quadrants, save
from syncd.app import App
from syncd.imports.links import link_bytes

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL

EXIT_PARTIAL = 5


def two_datasets(tmp_path, storage):
    """"photos" on storage/ and "library" on a second local driver."""
    library = tmp_path / "library"
    library.mkdir()
    return local_config(tmp_path, storage, extra=f"""
        [[drivers]]
        name = "shelf"
        kind = "local"
        root = "{library}"

        [[datasets]]
        name = "library"
        driver = "shelf"
        """), library


def id_link(ref: str) -> bytes:
    return link_bytes({"type": "id", "ref": ref})


def test_id_links_to_items_of_the_catalogue_preprocess_from_the_targets_bytes(tmp_path, storage):
    config, library = two_datasets(tmp_path, storage)
    put_file(library, "cats/tabby.jpg", save(quadrants(160, 80)))
    run = Runner(config)
    run("sync", "library")
    with App.from_file(config) as app:
        target = app.catalogue.get_item(app.dataset("library"), "/cats/tabby.jpg")
        app.dataset("photos")
    put_file(tmp_path, "in/tabby_link.json", id_link(target["id"]))
    put_file(tmp_path, "in/gone_link.json", id_link(target["id"][:8] + "0" * 15 + "9"))
    put_file(tmp_path, "in/other_link.json", id_link("5f0c0ffee5f0c0ffee5f0c0f"))
    lines = run.json_lines("import", "links", str(tmp_path / "in/tabby_link.json"),
                           str(tmp_path / "in/gone_link.json"), str(tmp_path / "in/other_link.json"),
                           "--dataset", "photos", expect=EXIT_PARTIAL)
    by_file = {line["file"].rpartition("/")[2]: line for line in lines}
    assert by_file["tabby_link.json"]["status"] == "created"
    assert by_file["gone_link.json"]["status"] == "failed"
    assert by_file["gone_link.json"]["error"] == (
        f"{tmp_path / 'in/gone_link.json'}: metadata.linkInfo.ref: '{target['id'][:8]}{'0' * 15}9'"
        " is not an item of this catalogue")
    assert by_file["other_link.json"]["error"].endswith("is not an item id of this catalogue")

    run("jobs", "run", "--dataset", "photos", "--workers", "0")
    with App.from_file(config) as app:
        link = app.catalogue.get_item(app.dataset("photos"), "/tabby_link.json")
    assert link["type"] == "link"
    assert link["metadata"]["system"]["shebang"]["linkInfo"] == {"type": "id", "ref": target["id"]}
    system = link["metadata"]["system"]
    assert (system["width"], system["height"], system["mimetype"]) == (160, 80, "image/jpeg")
    # The thumbnail is the link item's own, in its own dataset's storage; the target's bytes
    # were read, never copied.
    assert (storage / system["thumbnailId"]).is_file()
    assert system["thumbnailId"].endswith(link["id"] + ".jpg")
    assert sorted(p.name for p in storage.iterdir() if p.name != ".dataloop") == ["tabby_link.json"]


def test_a_synced_id_link_whose_item_is_gone_fails_its_job_naming_the_id(tmp_path, storage):
    config, library = two_datasets(tmp_path, storage)
    put_file(library, "a.jpg", save(quadrants()))
    run = Runner(config)
    run("sync", "library")
    with App.from_file(config) as app:
        target = app.catalogue.get_item(app.dataset("library"), "/a.jpg")
    put_file(storage, "a_link.json", id_link(target["id"]))
    (library / "a.jpg").unlink()
    run("sync", "library")  # the target is now a ghost
    run("sync", "photos", "--no-preprocess")
    run("jobs", "run", "--dataset", "photos", "--workers", "0", expect=None)
    [job] = [j for j in run.json_lines("jobs", "list") if j["filename"] == "/a_link.json"]
    assert job["state"] == "failed"
    assert job["error"] == (f"/a_link.json: metadata.linkInfo.ref: {target['id']!r} names /a.jpg,"
                            " which is gone from storage")


def test_sdk_upload_rows_with_link_files_fail_alone_on_unknown_ids(tmp_path, storage):
    config, library = two_datasets(tmp_path, storage)
    put_file(library, "b.jpg", save(quadrants()))
    run = Runner(config)
    run("sync", "library")
    with App.from_file(config) as app:
        target = app.catalogue.get_item(app.dataset("library"), "/b.jpg")
        app.dataset("photos")
    put_file(tmp_path, "up/b_link.json", id_link(target["id"]))
    put_file(tmp_path, "up/x_link.json", id_link("not-an-id"))
    put_file(tmp_path, "up/u_link.json", link_bytes({"type": "url", "ref": "https://h.example/u.jpg",
                                                      "mimetype": "image/jpeg"}))
    source = tmp_path / "up.csv"
    with open(source, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["local_path", "remote_path", "remote_name", "item_metadata", "item_description"])
        writer.writerows([["up/b_link.json", "/linked", "", '{"user": {"k": 1}}', ""],
                          ["up/x_link.json", "/linked", "", "", ""],
                          ["up/u_link.json", "/linked", "", "", ""]])
    [line] = run.json_lines("import", "csv", str(source), "--dataset", "photos", expect=EXIT_PARTIAL)
    assert (line["created"], line["failed"]) == (2, 1)
    with open(line["failures"], newline="") as file:
        [_, failed] = list(csv.reader(file))
    assert failed[0] == "up/x_link.json"
    assert failed[-1] == ("up.csv row 2 (line 3): local_path x_link.json: metadata.linkInfo.ref:"
                          " 'not-an-id' is not an item id of this catalogue")
    with App.from_file(config) as app:
        ds = app.dataset("photos")
        linked = app.catalogue.get_item(ds, "/linked/b_link.json")
        url = app.catalogue.get_item(ds, "/linked/u_link.json")
    assert linked["type"] == url["type"] == "link" and linked["metadata"]["user"] == {"k": 1}
    assert json.loads((storage / "linked/b_link.json").read_bytes())["metadata"]["linkInfo"]["ref"] == target["id"]
