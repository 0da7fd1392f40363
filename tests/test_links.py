"""Linked items: the reference's link format, `syncd import links`, and link files found by a sync."""

from __future__ import annotations

import json
import logging

import pytest

from conftest import put_file
from local_http import http_server  # noqa: F401 - the fixture
from syncd.errors import InputError
from syncd.imports.upload import import_link_files
from syncd.imports.links import (
    LinkError,
    link_bytes,
    link_filename,
    parse_link,
    url_link_info,
    url_link_name,
    url_mimetype,
)

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL

# What the reference SDK's upload code path writes for dl.UrlLink(ref=URL): UrlLink names it
# from the URL (dots dropped, query dropped), guesses the mimetype, and Uploader.link dumps
# {'type','shebang','metadata':{'dltype','linkInfo':{'type','ref','mimetype'}}} with
# json.dumps defaults into '<name>_link.json'.
SDK_URL = "https://cdn.example.com/imgs/cat.jpg?X-Sig=ab.cd"
SDK_NAME = "catjpg"
SDK_BYTES = (b'{"type": "link", "shebang": "dataloop", "metadata": {"dltype": "link", "linkInfo": '
             b'{"type": "url", "ref": "https://cdn.example.com/imgs/cat.jpg?X-Sig=ab.cd", '
             b'"mimetype": "image/jpeg"}}}')


def items_by_path(app, dataset="photos"):
    return {i["filename"]: i for i in app.catalogue.iter_items(app.dataset(dataset))}


def job_count(app):
    return sum(app.jobs().counts().values())


# -- the format -----------------------------------------------------------------------------

def test_links_are_named_and_written_exactly_as_the_sdk_does():
    assert url_link_name(SDK_URL) == SDK_NAME
    assert link_filename(SDK_NAME) == "catjpg_link.json"
    assert url_mimetype(SDK_URL) == "image/jpeg"
    assert link_bytes(url_link_info(SDK_URL)) == SDK_BYTES


@pytest.mark.parametrize("url, name, mimetype", [
    ("https://h.example/a/b/photo.png", "photopng", "image/png"),
    ("https://h.example/a/clip.mp4?t=1", "clipmp4", "video/mp4"),
    ("https://h.example/a/noext", "noext", "image"),  # the SDK's fallback
    ("https://h.example/a/", "", "image"),
])
def test_sdk_name_and_mimetype_defaults(url, name, mimetype):
    assert url_link_name(url) == name
    assert url_mimetype(url) == mimetype


def test_parse_fills_a_missing_mimetype_and_keeps_other_keys():
    info = parse_link(json.dumps({"type": "link", "shebang": "dataloop", "metadata": {
        "dltype": "link", "linkInfo": {"type": "url", "ref": "https://h.example/x.png", "datasetId": "d1"}}}),
        source="x.json")
    assert info == {"type": "url", "ref": "https://h.example/x.png", "datasetId": "d1", "mimetype": "image/png"}


@pytest.mark.parametrize("text, message", [
    ("{not json", r"x\.json: not valid JSON: Expecting property name .*line 1, column 2"),
    ("[1, 2]", r"x\.json: expected a JSON object, got an array"),
    ('{"type": "file", "shebang": "dataloop"}', r'x\.json: type: expected "link", got "file"'),
    ('{"type": "link"}', r'x\.json: shebang: expected "dataloop", got null'),
    ('{"type": "link", "shebang": "dataloop"}', r"x\.json: metadata: missing"),
    ('{"type": "link", "shebang": "dataloop", "metadata": {"dltype": "link"}}',
     r"x\.json: metadata\.linkInfo: missing"),
    ('{"type": "link", "shebang": "dataloop", "metadata": {"linkInfo": {"type": "file", "ref": "abc"}}}',
     r'x\.json: metadata\.linkInfo\.type: expected "url" or "id", got "file"'),
    ('{"type": "link", "shebang": "dataloop", "metadata": {"linkInfo": {"type": "id", "ref": ""}}}',
     r'x\.json: metadata\.linkInfo\.ref: missing \(the id of an item of this catalogue\)'),
    ('{"type": "link", "shebang": "dataloop", "metadata": {"linkInfo": {"type": "url", "ref": "ftp://h/a"}}}',
     r"x\.json: metadata\.linkInfo\.ref: 'ftp://h/a' is not a http or https URL"),
    ('{"type": "link", "shebang": "dataloop", "metadata": {"linkInfo": {"type": "url"}}}',
     r"x\.json: metadata\.linkInfo\.ref: missing"),
    ('{"type": "link", "shebang": "dataloop", "metadata": {"linkInfo": {"type": "url", '
     '"ref": "https://h/a", "mimetype": 3}}}', r"x\.json: metadata\.linkInfo\.mimetype: expected"),
])
def test_malformed_link_documents_name_the_file_and_key(text, message):
    with pytest.raises(LinkError, match=message):
        parse_link(text, source="x.json")


# -- import links ---------------------------------------------------------------------------

def test_import_an_sdk_written_link_file(app, storage, tmp_path, run):
    source = tmp_path / f"{SDK_NAME}_link.json"
    source.write_bytes(SDK_BYTES)
    lines = run.json_lines("import", "links", str(source), "--dataset", "photos", "--folder", "/links")
    assert [(l["file"], l["filename"], l["status"]) for l in lines] == [
        (str(source), "/links/catjpg_link.json", "created")]
    # The bucket holds what the catalogue does: the link file, byte for byte as the SDK writes it.
    assert (storage / "links/catjpg_link.json").read_bytes() == SDK_BYTES
    item = items_by_path(app)["/links/catjpg_link.json"]
    assert item["type"] == "link" and item["id"] == lines[0]["id"]
    system = item["metadata"]["system"]
    assert system["shebang"] == {"dltype": "link", "linkInfo": {
        "type": "url", "ref": SDK_URL, "mimetype": "image/jpeg"}}
    assert system["mimetype"] == "image/jpeg"
    assert job_count(app) == 1  # preprocessing is queued with the item


def test_a_link_file_not_named_the_sdk_way_is_named_from_its_url(app, storage, tmp_path):
    source = tmp_path / "anything.json"
    source.write_text(json.dumps({"type": "link", "shebang": "dataloop", "metadata": {
        "dltype": "link", "linkInfo": {"type": "url", "ref": "https://h.example/v/clip.mp4?s=1"}}}))
    result, outcomes = import_link_files(app, "photos", [source])
    assert result.created == 1 and outcomes[0].filename == "/clipmp4_link.json"
    written = json.loads((storage / "clipmp4_link.json").read_text())
    assert written["metadata"]["linkInfo"]["mimetype"] == "video/mp4"


def test_imported_links_are_unchanged_by_the_next_sync_and_by_a_reimport(app, storage, tmp_path, run):
    sources = []
    for name in ("a", "b", "c"):
        path = tmp_path / f"{name}_link.json"
        path.write_bytes(link_bytes(url_link_info(f"https://h.example/{name}.jpg")))
        sources.append(str(path))
    run("import", "links", *sources, "--dataset", "photos")
    before = items_by_path(app)
    jobs = job_count(app)
    [result] = run.json_lines("sync", "photos", "--no-preprocess")  # jobs would fill metadata
    assert (result["listed"], result["unchanged"], result["updated"], result["created"]) == (3, 3, 0, 0)
    lines = run.json_lines("import", "links", *sources, "--dataset", "photos")
    assert {l["status"] for l in lines} == {"unchanged"}
    assert items_by_path(app) == before and job_count(app) == jobs


def test_a_malformed_link_file_stops_the_import_before_anything_is_written(app, storage, tmp_path, run):
    good = tmp_path / "good_link.json"
    good.write_bytes(link_bytes(url_link_info("https://h.example/g.jpg")))
    bad = tmp_path / "bad_link.json"
    bad.write_text('{"type": "link", "shebang": "dataloop", "metadata": {"linkInfo": {"type": "url", "ref": "file:///etc/passwd"}}}')
    result = run("import", "links", str(good), str(bad), "--dataset", "photos", expect=2)
    assert f"{bad}: metadata.linkInfo.ref: 'file:///etc/passwd' is not a http or https URL" in result.stderr
    assert list(storage.iterdir()) == [] and items_by_path(app) == {}


def test_import_links_needs_put_permission(config_file, storage, tmp_path, run):
    text = config_file.read_text().replace('root = "', 'permissions = ["list", "get"]\nroot = "')
    config_file.write_text(text)
    source = tmp_path / "x_link.json"
    source.write_bytes(link_bytes(url_link_info("https://h.example/x.jpg")))
    result = run("import", "links", str(source), "--dataset", "photos", expect=5)
    assert "not configured with the 'put' permission" in result.stderr
    assert list(storage.iterdir()) == []


# -- link files found by a sync -------------------------------------------------------------

def test_a_link_json_dropped_into_the_bucket_becomes_a_linked_item(app, storage):
    put_file(storage, "drop/catjpg_link.json", SDK_BYTES)
    put_file(storage, "drop/annotations.json", json.dumps({"boxes": [[1, 2, 3, 4]]}))
    put_file(storage, "drop/photo.jpg", b"\xff\xd8 not really")
    result = app.sync("photos")
    assert result.created == 3
    items = items_by_path(app)
    link = items["/drop/catjpg_link.json"]
    assert link["type"] == "link"
    assert link["metadata"]["system"]["shebang"]["linkInfo"]["ref"] == SDK_URL
    assert items["/drop/annotations.json"]["type"] == "file"
    assert items["/drop/photo.jpg"]["type"] == "file"
    # Every new item, link or not, has its preprocessing job.
    assert job_count(app) == 3


def test_a_link_file_edited_in_the_bucket_follows_its_content(app, storage):
    path = put_file(storage, "x_link.json", link_bytes(url_link_info("https://h.example/one.jpg")))
    app.sync("photos")
    path.write_bytes(link_bytes(url_link_info("https://h.example/two.png")))
    assert app.sync("photos").updated == 1
    item = items_by_path(app)["/x_link.json"]
    assert item["type"] == "link"
    assert item["metadata"]["system"]["shebang"]["linkInfo"] == {
        "type": "url", "ref": "https://h.example/two.png", "mimetype": "image/png"}
    path.write_text('{"no longer": "a link"}')
    assert app.sync("photos").updated == 1
    item = items_by_path(app)["/x_link.json"]
    assert item["type"] == "file"
    assert "shebang" not in item["metadata"]["system"] and "mimetype" not in item["metadata"]["system"]


def test_a_broken_link_file_stays_a_file_with_a_warning(app, storage, caplog):
    put_file(storage, "broken_link.json", '{"type": "link", "shebang": "dataloop", "metadata": {}}')
    with caplog.at_level(logging.WARNING):
        app.sync("photos")
    assert items_by_path(app)["/broken_link.json"]["type"] == "file"
    assert "broken_link.json: metadata: expected an object" in caplog.text or \
        "broken_link.json: metadata.linkInfo: missing" in caplog.text


def test_large_json_files_are_not_read(app, storage, monkeypatch):
    put_file(storage, "big.json", json.dumps({"pad": "x" * 20_000}))
    put_file(storage, "small_link.json", SDK_BYTES)
    driver = app.dataset_driver("photos").inner
    reads = []
    real = driver.open

    def recording(key, **kwargs):
        reads.append(key)
        return real(key, **kwargs)

    monkeypatch.setattr(driver, "open", recording)
    app.sync("photos")
    assert reads == ["small_link.json"]
    assert app.sync("photos").unchanged == 2 and reads == ["small_link.json"]  # nothing re-read


def test_link_files_are_not_read_without_get_permission(config_file, storage, caplog):
    from syncd.app import App
    text = config_file.read_text().replace('root = "', 'permissions = ["list"]\nroot = "')
    config_file.write_text(text)
    put_file(storage, "a_link.json", SDK_BYTES)
    with App.from_file(config_file) as app, caplog.at_level(logging.WARNING):
        assert app.sync("photos").created == 1
        assert items_by_path(app)["/a_link.json"]["type"] == "file"
    assert "no 'get' permission" in caplog.text


def test_dry_run_reads_no_link_file(app, storage):
    put_file(storage, "a_link.json", SDK_BYTES)
    assert app.sync("photos", dry_run=True).created == 1
    assert items_by_path(app) == {}


def test_input_error_is_a_syncd_error_with_exit_code_2():
    assert issubclass(LinkError, InputError) and InputError.exit_code == 2


# -- the linked binary, for preprocessing ---------------------------------------------------

def test_a_linked_items_binary_is_fetched_safely_and_not_stored(app, storage, tmp_path, http_server):
    from syncd.imports.fetch import Fetcher, FetchPolicy, FetchRefused
    from syncd.imports.links import open_linked

    url = http_server.route("/photo.jpg", b"\xff\xd8linked binary")
    source = tmp_path / "p_link.json"
    source.write_bytes(link_bytes(url_link_info(url)))
    import_link_files(app, "photos", [source])
    item = items_by_path(app)["/p_link.json"]
    with open_linked(item, Fetcher(FetchPolicy(allow_hosts=("127.0.0.1",), timeout_seconds=5))) as fetched:
        assert fetched.read() == b"\xff\xd8linked binary"
    assert sorted(p.name for p in storage.rglob("*")) == ["p_link.json"]  # the binary is not stored
    with pytest.raises(FetchRefused, match="loopback"):  # the default policy allows no local host
        open_linked(item, Fetcher())
    with pytest.raises(LinkError, match="not a URL link item"):
        open_linked({"filename": "/a.jpg", "type": "file", "metadata": {"system": {}}}, Fetcher())


def test_linked_source_fetches_once_and_serves_ranges(app, tmp_path, http_server):
    from syncd.imports.fetch import Fetcher, FetchPolicy
    from syncd.imports.links import LinkedSource

    url = http_server.route("/dir/photo%201.jpg", b"0123456789")
    source = tmp_path / "p_link.json"
    source.write_bytes(link_bytes(url_link_info(url)))
    import_link_files(app, "photos", [source])
    item = items_by_path(app)["/p_link.json"]
    with LinkedSource(item, Fetcher(FetchPolicy(allow_hosts=("127.0.0.1",), timeout_seconds=5))) as linked:
        assert (linked.name, linked.size) == ("photo 1.jpg", None)
        assert linked.open(0, 4).read() == b"0123"
        assert linked.open(6).read() == b"6789"
        assert linked.size == 10
    assert http_server.hits == ["/dir/photo%201.jpg"]  # one fetch for every range
