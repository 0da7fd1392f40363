"""`syncd import csv`: the reference's columns, rows run concurrently and independently,
failures written to a CSV that imports again as it is."""

from __future__ import annotations

import base64
import csv

import pytest

from local_http import Response, http_server  # noqa: F401 - the fixture
from syncd.app import App
from syncd.errors import InputError
from syncd.imports.fetch import Fetcher, FetchPolicy
from syncd.imports.csv_import import import_csv
from syncd.imports.links import link_bytes, url_link_info

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL

PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 50


@pytest.fixture
def fetch_app(config_file):
    """An app whose [fetch] allows the local test server (127.0.0.1)."""
    config_file.write_text(config_file.read_text() + '\n[fetch]\nallow_hosts = ["127.0.0.1"]\ntimeout_seconds = 5\n')
    with App.from_file(config_file) as app:
        yield app


def fast_fetcher(**overrides) -> Fetcher:
    """Allows the local server; backoff waits are recorded, not slept."""
    return Fetcher(FetchPolicy(allow_hosts=("127.0.0.1",), timeout_seconds=5, **overrides),
                   sleep=lambda seconds: None)


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def items_by_path(app, dataset="photos"):
    return {i["filename"]: i for i in app.catalogue.iter_items(app.dataset(dataset))}


def counts(result):
    return result.total, result.created, result.updated, result.unchanged, result.failed


HEADER = ["ID", "URL", "image_bytes", "name", "action", "mimetype", "item_metadata", "item_description"]


def test_mixed_good_and_bad_rows_and_the_failures_file_reimports_cleanly(fetch_app, storage, tmp_path, http_server):
    server = http_server
    down = server.route("/later.png", Response(503))  # fails now (after retries), fine later
    rows = [
        ["", "https://cdn.example.com/a/cat.jpg", "", "", "link", "", '{"user": {"camera": "cam_01"}, "lot": 7}', "a cat"],
        ["2", server.url("/dog.png"), "", "dog.png", "upload", "", '{"user": {"area": "north"}}', ""],
        ["3", "", base64.b64encode(PNG).decode(), "inline.png", "upload", "", "", ""],
        ["4", down, "", "later.png", "upload", "", "", ""],
        ["5", "https://cdn.example.com/b.jpg", "", "", "delete", "", "", ""],  # bad action
        ["6", "https://cdn.example.com/c.jpg", "", "", "link", "", "{camera: 1}", ""],  # bad JSON
        ["7", "ftp://files.example.com/d.jpg", "", "", "link", "", "", ""],  # bad scheme
        ["8", "http://10.0.0.8/e.jpg", "", "e.jpg", "upload", "", "", ""],  # private: refused
        ["9", "", "not*base64!", "f.png", "upload", "", "", ""],  # bad bytes
        ["10", "https://cdn.example.com/x.jpg", "eA==", "", "link", "", "", ""],  # bytes can't be linked
    ]
    server.route("/dog.png", Response(body=PNG, headers={"Content-Type": "image/png"}))
    source = write_csv(tmp_path / "shoot 1.csv", HEADER, rows)

    result = import_csv(fetch_app, "photos", source, batch_size=4, fetcher=fast_fetcher())
    assert counts(result) == (10, 3, 0, 0, 7)
    assert result.folder == "/shoot 1"

    items = items_by_path(fetch_app)
    assert sorted(items) == ["/shoot 1/catjpg_link.json", "/shoot 1/dog.png", "/shoot 1/inline.png"]
    link = items["/shoot 1/catjpg_link.json"]
    assert link["type"] == "link" and link["description"] == "a cat"
    assert link["metadata"]["user"] == {"camera": "cam_01"} and link["metadata"]["lot"] == 7
    assert link["metadata"]["system"]["shebang"]["linkInfo"]["ref"] == "https://cdn.example.com/a/cat.jpg"
    assert (storage / "shoot 1/catjpg_link.json").read_bytes() == link_bytes(
        url_link_info("https://cdn.example.com/a/cat.jpg"))
    assert items["/shoot 1/dog.png"]["metadata"]["user"] == {"area": "north"}
    assert (storage / "shoot 1/dog.png").read_bytes() == PNG
    assert (storage / "shoot 1/inline.png").read_bytes() == PNG

    # The failures file: the input's columns, its rows as they were, and why each failed.
    assert result.failures == str(tmp_path / "shoot 1.failures.csv")
    failed = read_csv(result.failures)
    assert failed[0] == HEADER + ["error"]
    # Each failed row as it was in the input, then why it failed, naming the row and column.
    by_row = {rows.index(row[:-1]) + 1: row[-1] for row in failed[1:]}
    assert sorted(by_row) == [4, 5, 6, 7, 8, 9, 10]
    assert by_row[4].startswith("shoot 1.csv row 4 (line 5): http://127.0.0.1") and "HTTP 503" in by_row[4]
    assert by_row[5] == "shoot 1.csv row 5 (line 6): action: expected 'link' or 'upload', got 'delete'"
    assert by_row[6].startswith("shoot 1.csv row 6 (line 7): item_metadata: not valid JSON")
    assert by_row[7] == "shoot 1.csv row 7 (line 8): URL: 'ftp://files.example.com/d.jpg' is not a http or https URL"
    assert by_row[8] == ("shoot 1.csv row 8 (line 9): refused 'http://10.0.0.8/e.jpg': 10.0.0.8 is a private"
                         " address (add the host to [fetch] allow_hosts to allow it)")
    assert by_row[9].startswith("shoot 1.csv row 9 (line 10): image_bytes: not valid base64")
    assert by_row[10] == "shoot 1.csv row 10 (line 11): image_bytes: given with action 'link': a link keeps only the URL"
    assert server.hits.count("/later.png") == 3  # 503 is retried

    # The server is back; the failures file goes back in as it is, and only its rows run.
    server.route("/later.png", Response(body=b"later bytes"))
    hits_before = list(server.hits)
    retry = import_csv(fetch_app, "photos", result.failures, fetcher=fast_fetcher())
    assert retry.folder == "/shoot 1"  # the same folder: named after the original CSV
    assert counts(retry) == (7, 1, 0, 0, 6)
    assert server.hits[len(hits_before):] == ["/later.png"]  # the good rows were not fetched again
    assert (storage / "shoot 1/later.png").read_bytes() == b"later bytes"
    # The failures file now holds only what still fails.
    still = read_csv(retry.failures)
    assert retry.failures == result.failures
    assert sorted(row[0] for row in still[1:]) == ["10", "5", "6", "7", "8", "9"]
    assert still[0] == HEADER + ["error"]

    # Fixing those rows in the failures file and importing it once more finishes the job.
    fixed = [["5", "https://cdn.example.com/b.jpg", "", "", "link", "", "", "", "old error"]]
    write_csv(result.failures, HEADER + ["error"], fixed)
    final = import_csv(fetch_app, "photos", result.failures, fetcher=fast_fetcher())
    assert counts(final) == (1, 1, 0, 0, 0) and final.failures is None
    assert not (tmp_path / "shoot 1.failures.csv").exists()
    assert len(items_by_path(fetch_app)) == 5


def test_reimporting_the_same_csv_duplicates_nothing(fetch_app, storage, tmp_path, http_server):
    url = http_server.route("/p.png", PNG)
    source = write_csv(tmp_path / "batch.csv", ["URL", "name", "action"], [
        [url, "p.png", "upload"], ["https://h.example/l.jpg", "", "link"]])
    first = import_csv(fetch_app, "photos", source, fetcher=fast_fetcher())
    assert counts(first) == (2, 2, 0, 0, 0) and first.failures is None
    mtime = (storage / "batch/p.png").stat().st_mtime_ns
    items = items_by_path(fetch_app)
    jobs = sum(fetch_app.jobs().counts().values())
    again = import_csv(fetch_app, "photos", source, fetcher=fast_fetcher())
    assert counts(again) == (2, 0, 0, 2, 0)
    assert (storage / "batch/p.png").stat().st_mtime_ns == mtime  # not written again
    assert items_by_path(fetch_app) == items
    assert sum(fetch_app.jobs().counts().values()) == jobs


def test_changed_content_or_metadata_updates_the_item(fetch_app, storage, tmp_path, http_server):
    http_server.route("/p.png", PNG)
    source = write_csv(tmp_path / "b.csv", ["URL", "action", "item_metadata"],
                       [[http_server.url("/p.png"), "upload", '{"user": {"n": 1}}']])
    import_csv(fetch_app, "photos", source, fetcher=fast_fetcher())
    [item] = items_by_path(fetch_app).values()
    write_csv(source, ["URL", "action", "item_metadata"], [[http_server.url("/p.png"), "upload", '{"user": {"n": 2}}']])
    assert counts(import_csv(fetch_app, "photos", source, fetcher=fast_fetcher())) == (1, 0, 1, 0, 0)
    http_server.route("/p.png", b"new content")
    assert counts(import_csv(fetch_app, "photos", source, fetcher=fast_fetcher())) == (1, 0, 0, 0, 1)
    assert counts(import_csv(fetch_app, "photos", source, fetcher=fast_fetcher(),
                             overwrite=True)) == (1, 0, 1, 0, 0)
    [after] = items_by_path(fetch_app).values()
    assert after["id"] == item["id"] and after["metadata"]["user"] == {"n": 2}
    assert after["metadata"]["system"]["size"] == len(b"new content")
    states = [j["state"] for j in fetch_app.jobs().rows()]
    assert states == ["cancelled", "pending"]  # new content: new preprocessing; metadata alone: none


def test_uploaded_rows_are_unchanged_by_the_next_sync(fetch_app, tmp_path, http_server):
    url = http_server.route("/q.png", PNG)
    source = write_csv(tmp_path / "s.csv", ["url", "NAME", "Action"], [[url, "q.png", "upload"]])
    import_csv(fetch_app, "photos", source, fetcher=fast_fetcher())
    result = fetch_app.sync("photos")
    assert (result.listed, result.unchanged, result.updated, result.created) == (1, 1, 0, 0)


def test_column_names_ignore_case_and_unknown_ones_are_named(fetch_app, storage, tmp_path, run):
    source = write_csv(tmp_path / "u.csv", ["url", "Label", "name", "Extra"], [["https://h.example/a.jpg", "x", "", ""]])
    result = run("import", "csv", str(source), "--dataset", "photos", expect=2)
    assert "u.csv: unknown columns 'Label' (column 2), 'Extra' (column 4)" in result.stderr
    assert list(storage.iterdir()) == []


@pytest.mark.parametrize("header, message", [
    (["name", "item_metadata"], "needs a URL or an image_bytes column"),
    (["URL", "url"], "column 'URL' appears twice"),
])
def test_bad_headers(fetch_app, tmp_path, header, message):
    source = write_csv(tmp_path / "h.csv", header, [])
    with pytest.raises(InputError, match=message):
        import_csv(fetch_app, "photos", source)


def test_an_empty_or_undecodable_csv_is_named(fetch_app, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty.csv: empty: expected a header row"):
        import_csv(fetch_app, "photos", empty)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("URL,name\nhttps://h.example/a.jpg,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin.csv line \d: not UTF-8 text"):
        import_csv(fetch_app, "photos", latin)


def test_row_shape_errors(fetch_app, tmp_path):
    source = write_csv(tmp_path / "r.csv", ["URL", "name", "image_bytes"], [
        ["https://h.example/a.jpg", "a", "", "one too many"],
        ["", "b", ""],
        ["", "", base64.b64encode(b"x").decode()],
        ["https://h.example/dir/", "", ""],
        ["https://h.example/ok.jpg", "../escape", ""],
        ["https://h.example/z/a.jpg", "", ""],
        ["https://h.example/y/a.jpg?v=2", "", ""],  # the same SDK name, ajpg, as the row before
    ])
    result = import_csv(fetch_app, "photos", source)
    assert counts(result) == (7, 1, 0, 0, 6)
    errors = [row[-1] for row in read_csv(result.failures)[1:]]
    assert errors == [
        "r.csv row 1 (line 2): 4 fields, but the header has 3",
        "r.csv row 2 (line 3): URL: empty, and so is image_bytes: a row needs one of them",
        "r.csv row 3 (line 4): name: empty, and so is ID: image_bytes need a name",
        "r.csv row 4 (line 5): URL: no name can be taken from 'https://h.example/dir/'; fill name or ID",
        "r.csv row 5 (line 6): name: '../escape_link.json' is not a relative path inside the import folder /r",
        "r.csv row 7 (line 8): name: /r/ajpg_link.json is already written by row 6",
    ]


def test_oversize_rows_fail_alone(fetch_app, tmp_path, http_server):
    http_server.route("/big.bin", b"b" * 5000)
    http_server.route("/small.bin", b"s" * 10)
    source = write_csv(tmp_path / "z.csv", ["URL", "image_bytes", "name", "action"], [
        [http_server.url("/big.bin"), "", "", "upload"],
        [http_server.url("/small.bin"), "", "", "upload"],
        ["", base64.b64encode(b"c" * 5000).decode(), "c.bin", "upload"],
    ])
    result = import_csv(fetch_app, "photos", source, fetcher=fast_fetcher(max_bytes=1000))
    assert counts(result) == (3, 1, 0, 0, 2)
    errors = sorted(row[-1] for row in read_csv(result.failures)[1:])
    assert "more than [fetch] max_bytes = 1000" in errors[0] and "max_bytes = 1000" in errors[1]


def test_cli_csv_import_with_failures_path_and_json(fetch_app, config_file, storage, tmp_path, run):
    source = write_csv(tmp_path / "c.csv", ["ID", "URL"], [
        ["one", "https://h.example/1.jpg"], ["two", "gopher://h.example/2.jpg"]])
    failures = tmp_path / "out" / "failed.csv"
    [line] = run.json_lines("import", "csv", str(source), "--dataset", "photos", "--folder", "/imports",
                            "--failures", str(failures), "--batch-size", "2", expect=5)
    assert line == {**line, "dataset": "photos", "folder": "/imports/c", "total": 2, "created": 1,
                    "failed": 1, "failures": str(failures)}
    assert (storage / "imports/c/one_link.json").exists()
    assert read_csv(failures)[1][:2] == ["two", "gopher://h.example/2.jpg"]


def test_item_metadata_must_be_an_object(fetch_app, tmp_path):
    source = write_csv(tmp_path / "m.csv", ["URL", "item_metadata"], [
        ["https://h.example/1.jpg", "[1, 2]"], ["https://h.example/2.jpg", '{"x": NaN}']])
    result = import_csv(fetch_app, "photos", source)
    errors = sorted(row[-1] for row in read_csv(result.failures)[1:])
    assert errors == ["m.csv row 1 (line 2): item_metadata: expected a JSON object, got list",
                      "m.csv row 2 (line 3): item_metadata: not valid JSON: NaN is not JSON"]


def test_item_metadata_sets_the_items_metadata_as_the_reference_sdk_does(fetch_app, tmp_path, run):
    """`user` replaces metadata.user; other top-level keys become metadata.<key>, each replaced
    when given again and kept when not; `system` is refused for its row alone."""
    from syncd import usermeta

    header = ["ID", "URL", "item_metadata"]
    source = write_csv(tmp_path / "m.csv", header, [
        ["a", "https://h.example/a.jpg", '{"user": {"camera": "cam_01", "lot": 7}, "project": {"site": "north"}}'],
        ["b", "https://h.example/b.jpg", '{"system": {"mimetype": "text/plain"}, "user": {"x": 1}}'],
        ["c", "https://h.example/c.jpg", '{"user": ["not", "an", "object"]}'],
    ])
    result = import_csv(fetch_app, "photos", source)
    assert (result.created, result.failed) == (1, 2)
    errors = sorted(row[-1] for row in read_csv(result.failures)[1:])
    assert errors[0].startswith("m.csv row 2 (line 3): item_metadata: system: metadata.system is written by syncd")
    assert errors[1] == "m.csv row 3 (line 4): item_metadata: user: expected a JSON object, got list"
    ds = fetch_app.dataset("photos")
    usermeta.set_user_metadata(fetch_app.catalogue, ds, [("/m/a_link.json", {"added": True})])

    write_csv(source, header, [["a", "https://h.example/a.jpg", '{"user": {"camera": "cam_02"}, "note": "re-shot"}']])
    again = import_csv(fetch_app, "photos", source)
    assert (again.updated, again.failed) == (1, 0)
    item = fetch_app.catalogue.get_item(ds, "/m/a_link.json")
    metadata = item["metadata"]
    assert metadata["user"] == {"camera": "cam_02"}  # replaced, not merged
    assert (metadata["project"], metadata["note"]) == ({"site": "north"}, "re-shot")
    assert metadata["system"]["shebang"]["linkInfo"]["ref"] == "https://h.example/a.jpg"
    # The item JSON of the CLI carries the same keys, and a third import changes nothing.
    [listed] = run.json_lines("items", "list", "photos")
    assert listed["metadata"]["project"] == {"site": "north"}
    assert counts(import_csv(fetch_app, "photos", source))[3] == 1


def test_a_csv_that_breaks_off_midway_keeps_what_was_imported(fetch_app, storage, tmp_path):
    source = tmp_path / "half.csv"
    good = b"".join(b"https://h.example/%d.jpg,n%d\n" % (i, i) for i in range(1000))  # past the first read
    source.write_bytes(b"URL,name\n" + good + b"https://h.example/b.jpg,b\xff\xfe\n")
    with pytest.raises(InputError, match=r"half.csv line \d+: not UTF-8 text .*rows after it were not read"):
        import_csv(fetch_app, "photos", source, batch_size=4)
    # Rows read before the fault were imported and catalogued: storage and catalogue agree.
    stored = sorted(p.relative_to(storage).as_posix() for p in storage.rglob("*") if p.is_file())
    assert stored and stored == sorted(f.lstrip("/") for f in items_by_path(fetch_app))


def test_rows_are_fetched_concurrently_up_to_the_batch_size(fetch_app, storage, tmp_path, http_server):
    import threading

    together = threading.Barrier(4)  # the server answers only when 4 requests wait at once
    rows = []
    for i in range(8):
        http_server.route(f"/{i}.bin", Response(body=b"%d" % i, barrier=together))
        rows.append([http_server.url(f"/{i}.bin"), "upload"])
    source = write_csv(tmp_path / "par.csv", ["URL", "action"], rows)
    result = import_csv(fetch_app, "photos", source, batch_size=4, fetcher=fast_fetcher(attempts=1))
    assert counts(result) == (8, 8, 0, 0, 0)
    assert sorted(p.name for p in (storage / "par").iterdir()) == [f"{i}.bin" for i in range(8)]
