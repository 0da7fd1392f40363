"""The JSON API and media URLs, on a real server on 127.0.0.1 over a catalogue of real images
(and a real WebM video where ffmpeg is installed), preprocessed as `syncd jobs run` does."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from conftest import put_file
from daemon_support import wait_for
from web_support import TOKEN, Client, Served, served_catalogue

pytestmark = pytest.mark.both_backends  # every test on SQLite and on PostgreSQL


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_catalogue(tmp_path_factory.mktemp("web"), preview=True) as server:
        yield server


@pytest.fixture
def api(served):
    return Client(served.url, token=TOKEN)


def item_of(api, filename):
    page = api(f"/api/v1/datasets/photos/items?where={quote(f'filename = {filename!r}')}").json()
    (item,) = page["items"]
    return item


# -- auth -----------------------------------------------------------------------------------

def test_nothing_is_served_without_the_token(served):
    anonymous = Client(served.url)
    for path in ["/api/v1/datasets", "/api/v1/datasets/photos/items", "/api/v1/status", "/api/v1/jobs"]:
        answer = anonymous(path)
        assert answer.status == 401 and answer.json() == {"error": "missing or wrong token"}
    assert Client(served.url, token="wrong")("/api/v1/datasets").status == 401
    page = anonymous("/")
    assert page.status == 303 and page.headers["Location"] == "/login?next=/"
    assert anonymous("/login").status == 200 and anonymous("/static/app.js").status == 200
    assert anonymous("/healthz").status == 200


def test_login_cookie_and_csrf_safe_writes(served, api):
    browser = Client(served.url)
    wrong = browser("/login", method="POST", body="token=nope",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert wrong.status == 401 and b"Wrong token" in wrong.body and not list(browser.cookies)
    login = browser("/login?next=/", method="POST", body=f"token={TOKEN}",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert login.status == 303 and login.headers["Location"] == "/"
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    page = browser("/")
    assert page.status == 200 and b'name="csrf-token"' in page.body
    csrf = page.body.split(b'name="csrf-token" content="')[1].split(b'"')[0].decode()
    item = item_of(api, "/cats/a.jpg")
    patch = {"metadata": {"user": {"by": "browser"}}}
    # A cookie alone does not make a write: another site's form could send it.
    assert browser(f"/api/v1/items/{item['id']}", method="PATCH", body=patch).status == 403
    assert browser(f"/api/v1/items/{item['id']}", method="PATCH", body=patch,
                   headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}).status == 403
    saved = browser(f"/api/v1/items/{item['id']}", method="PATCH", body=patch,
                    headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-origin"})
    assert saved.status == 200 and saved.json()["metadata"]["user"]["by"] == "browser"
    assert browser("/logout", method="POST").status == 303
    assert browser("/api/v1/datasets").status == 401


def test_read_only_serves_no_write(served, tmp_path):
    with Served(served.app.config.source, read_only=True) as readonly:
        api = Client(readonly.url, token=TOKEN)
        item = item_of(api, "/cats/a.jpg")
        for path, method in [(f"/api/v1/items/{item['id']}", "PATCH"),
                             ("/api/v1/datasets/photos/sync", "POST"), ("/api/v1/jobs/retry", "POST")]:
            answer = api(path, method=method, body={"metadata": {"user": {"x": 1}}})
            assert answer.status == 403 and "read-only" in answer.json()["error"]
        assert b'name="read-only" content="true"' in api("/").body
        assert api(f"/api/v1/items/{item['id']}").json()["metadata"]["user"].get("x") is None


# -- items ----------------------------------------------------------------------------------

def test_item_json_has_the_sdk_fields(served, api):
    item = item_of(api, "/cats/a.jpg")
    base = served.url + f"/api/v1/items/{item['id']}"
    assert item["url"] == base and item["stream"] == base + "/stream"
    assert item["thumbnail"].startswith(base + "/thumbnail?v=")
    assert len(item["datasetId"]) == 24 and item["dataset"] == "photos"
    one = api(f"/api/v1/items/{item['id']}").json()
    assert one["metadata"]["system"]["exif"]["Make"] == "Canon"
    assert [job["state"] for job in one["jobs"]] == ["done"]
    assert api("/api/v1/items/0000000000000000deadbeef").status == 404


def test_keyset_pages_folders_and_queries(served, api):
    seen, cursor = [], ""
    while True:
        page = api(f"/api/v1/datasets/photos/items?limit=2&cursor={cursor}").json()
        assert len(page["items"]) <= 2
        seen += [i["filename"] for i in page["items"]]
        if page["next"] is None:
            break
        cursor = page["next"]
    assert seen == sorted("/" + k for k in served.files)
    cats = api("/api/v1/datasets/photos/items?folder=/cats").json()["items"]
    assert [i["filename"] for i in cats] == ["/cats/a.jpg", "/cats/b.jpg", "/cats/deep/c.png"]
    query = quote("mimetype = image/jpeg and system.width >= 200")
    hits = api(f"/api/v1/datasets/photos/items?where={query}").json()["items"]
    assert [i["filename"] for i in hits] == ["/cats/b.jpg", "/dogs/d.jpg"]
    folders = api("/api/v1/datasets/photos/folders?parent=/").json()["folders"]
    assert folders == sorted({"/" + k.split("/")[0] for k in served.files if "/" in k})
    assert api("/api/v1/datasets/photos/folders?parent=/cats").json()["folders"] == ["/cats/deep"]
    bad = api(f"/api/v1/datasets/photos/items?where={quote('width >')}")
    assert bad.status == 400 and "expected a value at position 8" in bad.json()["error"]
    assert api("/api/v1/datasets/nope/items").status == 404


def test_patch_merges_or_replaces_user_metadata(api):
    item = item_of(api, "/dogs/d.jpg")
    url = f"/api/v1/items/{item['id']}"
    assert api(url, method="PATCH", body={"metadata": {"user": {"camera": "cam_01", "lot": 3}}}).status == 200
    merged = api(url, method="PATCH", body={"metadata": {"user": {"lot": 4}}}).json()
    assert merged["metadata"]["user"] == {"camera": "cam_01", "lot": 4}
    replaced = api(url + "?replace=true", method="PATCH", body={"metadata": {"user": {"only": True}}}).json()
    assert replaced["metadata"]["user"] == {"only": True}
    assert api(url, method="PATCH", body="{not json").status == 400
    assert api(url, method="PATCH", body={"metadata": {"user": [1]}}).status == 400
    found = api(f"/api/v1/datasets/photos/items?where={quote('user.only = true')}").json()["items"]
    assert [i["filename"] for i in found] == ["/dogs/d.jpg"]


# -- media ----------------------------------------------------------------------------------

def test_thumbnail_with_etag_and_long_cache(api):
    item = item_of(api, "/cats/b.jpg")
    path = item["thumbnail"].split(api.base, 1)[1]
    answer = api(path)
    assert answer.status == 200 and answer.headers["Content-Type"] == "image/jpeg"
    assert answer.body[:3] == b"\xff\xd8\xff"
    assert "max-age=31536000" in answer.headers["Cache-Control"] and answer.headers["ETag"]
    again = api(path, headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status == 304 and again.body == b""
    assert api(f"/api/v1/items/{item_of(api, '/notes.txt')['id']}/thumbnail").status == 404


def test_stream_answers_byte_ranges(served, api):
    data = served.files["dogs/d.jpg"]
    stream = f"/api/v1/items/{item_of(api, '/dogs/d.jpg')['id']}/stream"
    whole = api(stream)
    assert whole.status == 200 and whole.body == data and whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Type"] == "image/jpeg"
    part = api(stream, headers={"Range": "bytes=10-99"})
    assert part.status == 206 and part.body == data[10:100]
    assert part.headers["Content-Range"] == f"bytes 10-99/{len(data)}"
    tail = api(stream, headers={"Range": "bytes=-16"})
    assert tail.status == 206 and tail.body == data[-16:]
    rest = api(stream, headers={"Range": f"bytes={len(data) - 5}-"})
    assert rest.body == data[-5:]
    beyond = api(stream, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(data)}"
    head = api(stream, method="HEAD")
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data)) and head.body == b""


def test_video_streams_in_ranges(served, api):
    if "clips/test.webm" not in served.files:
        pytest.skip("no ffmpeg to make the test video")
    item = item_of(api, "/clips/test.webm")
    assert item["metadata"]["system"]["mimetype"] == "video/webm"
    answer = api(item["stream"].split(api.base, 1)[1], headers={"Range": "bytes=0-"})
    assert answer.status == 206 and answer.body == served.files["clips/test.webm"]
    # Its 360p MP4 preview, made by preprocessing, streams in ranges too.
    preview = item["preview"].split(api.base, 1)[1]
    whole = api(preview)
    assert whole.status == 200 and whole.headers["Content-Type"] == "video/mp4"
    assert whole.body[4:8] == b"ftyp" and "immutable" in whole.headers["Cache-Control"]
    part = api(preview, headers={"Range": "bytes=4-7"})
    assert part.status == 206 and part.body == b"ftyp"
    assert item_of(api, "/cats/a.jpg")["preview"] is None


# -- status, jobs, sync ---------------------------------------------------------------------

def test_status_jobs_and_retry(api):
    (status,) = api("/api/v1/status").json()
    assert status["dataset"] == "photos" and status["items"]["present"] >= 5
    assert status["mimetypes"]["image/jpeg"] == 3 and status["lastSync"]["status"] == "ok"
    assert status["jobs"]["failed"] == 0 and status["listingErrors"] == 0
    done = api("/api/v1/jobs?state=done&limit=2").json()
    assert len(done) == 2 and all(job["state"] == "done" for job in done)
    assert api(f"/api/v1/jobs/{done[0]['id']}/retry", method="POST").json() == {"requeued": 1}
    assert api("/api/v1/jobs?state=pending").json()[0]["id"] == done[0]["id"]
    assert api("/api/v1/datasets/photos/errors").json() == []


def test_sync_now(served, api):
    put_file(served.storage, "new/fresh.jpg", served.files["cats/b.jpg"])
    answer = api("/api/v1/datasets/photos/sync", method="POST")
    assert answer.status == 202 and answer.json()["started"] is True

    def fresh():
        items = api(f"/api/v1/datasets/photos/items?where={quote('filename = /new/fresh.jpg')}").json()["items"]
        return items and items[0]["thumbnail"] and items[0]

    item = wait_for(fresh, what="the synced and preprocessed new file")
    assert item["metadata"]["system"]["mimetype"] == "image/jpeg"
    wait_for(lambda: not api("/api/v1/datasets/photos").json()["syncRunning"] or None)
    time.sleep(0)  # the sync thread has finished: the module's other tests see a settled catalogue
