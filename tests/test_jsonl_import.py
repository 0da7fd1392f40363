"""`syncd import jsonl`: one JSON object a line, streamed; bad lines fail alone, named by
line and key; the failures file imports again as it is."""

from __future__ import annotations

import pytest

import json

from conftest import put_file
from local_http import Response, http_server  # noqa: F401 - the fixture
from syncd.app import App
from test_csv_import import PNG, fast_fetcher, fetch_app, write_csv  # noqa: F401 - the fixture
from syncd.imports.jsonl import import_jsonl

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


def write_lines(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines), encoding="utf-8")
    return path


def items_by_path(app):
    return {i["filename"]: i for i in app.catalogue.iter_items(app.dataset("photos"))}


def test_urls_paths_and_bad_lines_then_the_failures_file_reimports(fetch_app, storage, tmp_path, http_server):
    put_file(tmp_path / "refs", "local/cat.png", PNG)
    server = http_server
    server.route("/dog.png", Response(body=PNG, headers={"Content-Type": "image/png"}))
    source = write_lines(tmp_path / "refs" / "batch 1.jsonl", [
        {"url": "https://cdn.example.com/a/cat.jpg", "metadata": {"camera": "cam_01"}, "description": "a cat"},
        {"url": server.url("/dog.png"), "action": "upload", "name": "dogs/dog.png",
         "metadata": {"user": {"area": "north"}}},
        {"path": "local/cat.png"},
        "",
        "{not json",
        {"url": "ftp://x.example.com/a.jpg"},
        {"path": "local/missing.png", "name": "later.png"},
        {"url": "https://cdn.example.com/b.jpg", "colour": "red"},
        {"url": "https://cdn.example.com/c.jpg", "path": "local/cat.png"},
        {"path": "local/cat.png", "name": "notes.tmp"},
    ])
    result = import_jsonl(fetch_app, "photos", source, fetcher=fast_fetcher())
    assert (result.total, result.created, result.excluded, result.failed) == (9, 3, 1, 5)
    assert result.folder == "/batch 1"
    items = items_by_path(fetch_app)
    assert sorted(items) == ["/batch 1/cat.png", "/batch 1/catjpg_link.json", "/batch 1/dogs/dog.png"]
    link = items["/batch 1/catjpg_link.json"]
    # `metadata` is the item's metadata (the rule CSV item_metadata follows): a bare key is
    # metadata.<key>, user metadata goes under "user".
    assert link["type"] == "link" and link["metadata"]["camera"] == "cam_01"
    assert link["metadata"]["user"] == {}
    assert link["description"] == "a cat"
    assert items["/batch 1/dogs/dog.png"]["metadata"]["user"] == {"area": "north"}
    assert (storage / "batch 1/dogs/dog.png").read_bytes() == PNG
    assert (storage / "batch 1/cat.png").read_bytes() == PNG

    failures = tmp_path / "refs" / "batch 1.failures.jsonl"
    assert result.failures == str(failures)
    lines = failures.read_text().splitlines()
    assert lines[0] == "{not json"  # not an object: kept as it was
    errors = [json.loads(line)["error"] for line in lines[1:]]
    assert errors == [
        "batch 1.jsonl line 6: url: 'ftp://x.example.com/a.jpg' is not a http or https URL",
        f"batch 1.jsonl line 7: path: no such file: {tmp_path / 'refs/local/missing.png'}",
        "batch 1.jsonl line 8: colour: unknown key; the keys are url, path, name, metadata, description, mimetype, action",
        "batch 1.jsonl line 9: url: give exactly one of url and path",
    ]
    # Fix the input the failures file points at, and feed the failures file back unchanged.
    failures.write_text("\n".join(lines[1:]) + "\n")  # the unparseable line fixed by dropping it
    put_file(tmp_path / "refs", "local/missing.png", PNG + b"2")
    again = import_jsonl(fetch_app, "photos", failures, fetcher=fast_fetcher())
    assert (again.total, again.created, again.failed) == (4, 1, 3)
    assert "/batch 1/later.png" in items_by_path(fetch_app)  # same folder as the first run


def test_cli_jsonl_import_and_rerun_duplicates_nothing(run, app, storage, tmp_path):
    put_file(tmp_path, "a.png", PNG)
    source = write_lines(tmp_path / "refs.jsonl", [{"path": "a.png", "metadata": {"k": 1}}])
    [line] = run.json_lines("import", "jsonl", str(source), "--dataset", "photos", "--folder", "/in")
    assert (line["created"], line["failed"], line["folder"]) == (1, 0, "/in/refs")
    [line] = run.json_lines("import", "jsonl", str(source), "--dataset", "photos", "--folder", "/in")
    assert (line["created"], line["unchanged"]) == (0, 1)
    bad = write_lines(tmp_path / "bad.jsonl", ["[1, 2]"])
    result = run("import", "jsonl", str(bad), "--dataset", "photos", expect=5)
    assert "bad.jsonl line 1: expected a JSON object, got list" in result.stderr


def test_jsonl_metadata_and_csv_item_metadata_follow_one_rule(fetch_app, tmp_path):
    """The same object given as a JSONL line's `metadata` and as a CSV row's `item_metadata`
    makes the same item metadata: `user` replaces metadata.user, other keys are
    metadata.<key>, `system` fails the line or row alone, naming it."""
    given = {"user": {"camera": "cam_01", "lot": 7}, "project": {"site": "north"}}
    bad = {"system": {"mimetype": "text/plain"}}
    write_lines(tmp_path / "j.jsonl", [
        {"url": "https://h.example/a.jpg", "metadata": given},
        {"url": "https://h.example/b.jpg", "metadata": bad},
        {"url": "https://h.example/c.jpg", "metadata": ["no"]},
    ])
    write_csv(tmp_path / "c.csv", ["URL", "item_metadata"], [
        ["https://h.example/a.jpg", json.dumps(given)], ["https://h.example/b.jpg", json.dumps(bad)],
        ["https://h.example/c.jpg", json.dumps(["no"])]])
    from syncd.imports.csv_import import import_csv

    jsonl = import_jsonl(fetch_app, "photos", tmp_path / "j.jsonl", fetcher=fast_fetcher())
    csv = import_csv(fetch_app, "photos", tmp_path / "c.csv")
    assert (jsonl.created, jsonl.failed) == (csv.created, csv.failed) == (1, 2)
    items = items_by_path(fetch_app)
    from_jsonl, from_csv = items["/j/ajpg_link.json"]["metadata"], items["/c/ajpg_link.json"]["metadata"]
    for metadata in (from_jsonl, from_csv):
        assert metadata["user"] == given["user"] and metadata["project"] == given["project"]
    errors = [json.loads(line)["error"] for line in (tmp_path / "j.failures.jsonl").read_text().splitlines()]
    assert errors[0].startswith("j.jsonl line 2: metadata: system: metadata.system is written by syncd")
    assert errors[1] == "j.jsonl line 3: metadata: expected a JSON object, got list"
