"""User metadata: `items set-meta`, `--from-json`, and `items list --where`."""

from __future__ import annotations

import json
import re

import pytest

from conftest import put_file
from syncd.errors import InputError
from syncd.usermeta import parse_assignments

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


@pytest.fixture
def synced(app, storage):
    for key in ("cam1/a.jpg", "cam1/b.jpg", "cam2/c.jpg", "d_link.json"):
        put_file(storage, key, key)
    app.sync("photos")
    return app


def user_of(app, path):
    return app.catalogue.get_item(app.dataset("photos"), path)["metadata"]["user"]


def listed(run, *where):
    args = [arg for w in where for arg in ("--where", w)]
    return [item["filename"] for item in run.json_lines("items", "list", "photos", *args)]


def test_values_keep_their_json_types():
    assert parse_assignments(["camera=cam_01", "n=3", "x=2.5", "ok=true", "none=null", 'tags=["a","b"]',
                              'quoted="3"', "site.area=north", "site.lot=7", "empty=", "eq=a=b", "nan=NaN"]) == {
        "camera": "cam_01", "n": 3, "x": 2.5, "ok": True, "none": None, "tags": ["a", "b"],
        "quoted": "3", "site": {"area": "north", "lot": 7}, "empty": "", "eq": "a=b", "nan": "NaN"}


@pytest.mark.parametrize("pair, message", [("camera", "expected key=value"), ("=3", "is not a key"),
                                           ("a..b=1", "is not a key")])
def test_bad_assignments(pair, message):
    with pytest.raises(InputError, match=message):
        parse_assignments([pair])


def test_set_meta_merges_and_replaces(synced, run):
    lines = run.json_lines("items", "set-meta", "photos", "/cam1/a.jpg", "camera=cam_01", "lot=42",
                           "site.area=north")
    assert lines[0]["metadata"]["user"] == {"camera": "cam_01", "lot": 42, "site": {"area": "north"}}
    run("items", "set-meta", "photos", "cam1/a.jpg", "site.row=3", "lot=43")
    assert user_of(synced, "/cam1/a.jpg") == {"camera": "cam_01", "lot": 43, "site": {"area": "north", "row": 3}}
    run("items", "set-meta", "photos", "/cam1/a.jpg", "only=1", "--replace")
    assert user_of(synced, "/cam1/a.jpg") == {"only": 1}


def test_user_metadata_survives_a_resync(synced, storage, run):
    run("items", "set-meta", "photos", "/cam1/a.jpg", "camera=cam_01")
    (storage / "cam1/a.jpg").write_text("new content")
    assert synced.sync("photos").updated == 1
    assert user_of(synced, "/cam1/a.jpg") == {"camera": "cam_01"}


def test_set_meta_of_an_unknown_item(synced, run):
    result = run("items", "set-meta", "photos", "/nope.jpg", "a=1", expect=3)
    assert "no item '/nope.jpg'" in result.stderr


def test_set_meta_usage(synced, run):
    assert "KEY=VALUE" in run("items", "set-meta", "photos", "/cam1/a.jpg", expect=2).stderr
    result = run("items", "set-meta", "photos", "/cam1/a.jpg", "camera", expect=2)
    assert "'camera': expected key=value" in result.stderr


def test_from_json_object_sets_many_items_at_once(synced, run, tmp_path):
    source = tmp_path / "meta.json"
    source.write_text(json.dumps({"/cam1/a.jpg": {"camera": "cam_01"}, "/cam1/b.jpg": {"camera": "cam_01"},
                                  "/cam2/c.jpg": {"camera": "cam_02", "lot": 7}}))
    lines = run.json_lines("items", "set-meta", "photos", "--from-json", str(source))
    assert [l["filename"] for l in lines] == ["/cam1/a.jpg", "/cam1/b.jpg", "/cam2/c.jpg"]
    assert user_of(synced, "/cam2/c.jpg") == {"camera": "cam_02", "lot": 7}


def test_from_json_takes_items_list_output_back(synced, run, tmp_path):
    run("items", "set-meta", "photos", "/cam1/a.jpg", "camera=cam_01")
    exported = run("items", "list", "photos", "--json").stdout
    edited = [json.loads(line) for line in exported.splitlines()]
    for item in edited:
        item["metadata"]["user"]["reviewed"] = True
    source = tmp_path / "items.jsonl"
    source.write_text("\n".join(json.dumps(item) for item in edited) + "\n")
    run("items", "set-meta", "photos", "--from-json", str(source))
    assert user_of(synced, "/cam1/a.jpg") == {"camera": "cam_01", "reviewed": True}
    assert user_of(synced, "/d_link.json") == {"reviewed": True}


def test_from_json_is_all_or_nothing(synced, run, tmp_path):
    source = tmp_path / "meta.json"
    source.write_text(json.dumps({"/cam1/a.jpg": {"camera": "cam_01"}, "/missing.jpg": {"camera": "x"}}))
    assert "no item '/missing.jpg'" in run("items", "set-meta", "photos", "--from-json", str(source), expect=3).stderr
    assert user_of(synced, "/cam1/a.jpg") == {}


@pytest.mark.parametrize("text, message", [
    ('{"/a.jpg": {"camera": 1},', r"meta.json: not valid JSON: Expecting property name .*line 1"),
    ('{"/a.jpg": 3}', r"meta.json: '/a.jpg': expected an object of metadata"),
    ('[{"filename": "/a.jpg", "user": [1]}]', r'meta.json: \[0\] \(/a.jpg\): expected "user"'),
    ('[{"name": "a.jpg"}]', r'meta.json: \[0\]: expected an object with a "filename"'),
    ('{"filename": "/a.jpg"}\n{"filename": oops}\n', r"meta.json line 2: not valid JSON"),
    ('"just a string"', r"meta.json: expected an object of filename -> metadata"),
])
def test_malformed_metadata_files_name_the_file_and_entry(synced, run, tmp_path, text, message):
    source = tmp_path / "meta.json"
    source.write_text(text)
    result = run("items", "set-meta", "photos", "--from-json", str(source), expect=2)
    assert re.search(message, result.stderr), result.stderr


def test_list_where_filters_on_user_metadata_with_types(synced, run):
    run("items", "set-meta", "photos", "/cam1/a.jpg", "camera=cam_01", "lot=7", "ok=true", 'tags=["x"]')
    run("items", "set-meta", "photos", "/cam1/b.jpg", "camera=cam_01", 'lot="7"', "site.area=north")
    run("items", "set-meta", "photos", "/cam2/c.jpg", "camera=cam_02", "lot=7.0")
    assert listed(run, "user.camera=cam_01") == ["/cam1/a.jpg", "/cam1/b.jpg"]
    assert listed(run, "user.lot=7") == ["/cam1/a.jpg", "/cam2/c.jpg"]  # numbers, not the string "7"
    assert listed(run, 'user.lot="7"') == ["/cam1/b.jpg"]
    assert listed(run, "user.camera=cam_01", "user.lot=7") == ["/cam1/a.jpg"]
    assert listed(run, "user.ok=true") == ["/cam1/a.jpg"]
    assert listed(run, "user.ok=1") == []  # a boolean is not a number
    assert listed(run, 'user.tags=["x"]') == ["/cam1/a.jpg"]
    assert listed(run, "user.site.area=north") == ["/cam1/b.jpg"]
    assert listed(run, "user.camera=cam_09") == []


def test_list_where_on_system_and_item_fields(synced, storage, run):
    assert listed(run, "system.size=10") == ["/cam1/a.jpg", "/cam1/b.jpg", "/cam2/c.jpg"]
    (storage / "d_link.json").write_text(json.dumps({"type": "link", "shebang": "dataloop", "metadata": {
        "dltype": "link", "linkInfo": {"type": "url", "ref": "https://h.example/v.mp4", "mimetype": "video/mp4"}}}))
    synced.sync("photos")
    assert listed(run, "type=link") == ["/d_link.json"]
    assert listed(run, "system.mimetype=video/mp4") == ["/d_link.json"]


def test_bad_where(synced, run):
    assert "expected =, !=, <" in run("items", "list", "photos", "--where", "user.camera", expect=2).stderr
    assert "unknown field 'camera'" in run("items", "list", "photos", "--where", "camera=1", expect=2).stderr
    assert "unknown field 'user.'" in run("items", "list", "photos", "--where", "user.=3", expect=2).stderr
