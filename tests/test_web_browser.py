"""The web page in a real headless Chromium (the distribution's `chromium`, driven by
Playwright; never `playwright install`): log in, the overview, the thumbnail grid (loaded
images), filters, folder navigation, an item's metadata edit saved, a late page never
replacing the one moved to, a video playing, the jobs page and its retry. Screenshots go to
test-artifacts/screenshots/ (CI keeps that folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from web_support import TOKEN, Client, served_catalogue

CHROMIUM = Path(os.environ.get("SYNCD_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
WAIT = 20_000  # ms a step may take before the test fails (a bound, not a sleep)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs the chromium package")
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_catalogue(tmp_path_factory.mktemp("browser"), broken=True, preview=True) as server:
        yield server


@pytest.fixture
def page(browser, served):
    # bypass_csp: Playwright evaluates its wait conditions as strings, which the page's CSP forbids.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(WAIT)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(served.url + "/")
    page.wait_for_url("**/login?next=/")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector(".card[data-dataset=photos]")
    yield page
    context.close()
    assert errors == [], errors


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def until(page, condition) -> None:
    """Let the page run, so that its events reach Python, until `condition()` holds."""
    for _ in range(WAIT // 20):
        if condition():
            return
        page.wait_for_timeout(20)
    raise AssertionError(f"not reached within {WAIT} ms")


def grid_filenames(page) -> list[str]:
    page.wait_for_function("document.getElementById('grid-note') && document.getElementById('grid-note').textContent")
    return page.eval_on_selector_all("#grid .tile", "tiles => tiles.map(t => t.dataset.filename)")


def test_wrong_token_is_refused(browser, served):
    context = browser.new_context()
    page = context.new_page()
    page.goto(served.url + "/login")
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    assert page.locator("p.error").inner_text() == "Wrong token."
    assert not any(c["name"] == "syncd_session" for c in context.cookies())
    context.close()


def test_overview(page):
    card = page.locator(".card[data-dataset=photos]")
    text = card.inner_text()
    assert "present" in text and "image/jpeg 4" in text and "Last sync:" in text
    assert "failed 1" in text
    shot(page, "overview")


def test_grid_shows_loaded_thumbnails_and_filters_change_it(page, served):
    page.click(".card[data-dataset=photos] h2 a")
    names = grid_filenames(page)
    assert names == sorted("/" + k for k in [*served.files, "cats/broken.jpg"])
    page.wait_for_function("""() => {
        const images = [...document.querySelectorAll('#grid img')];
        return images.length >= 4 && images.every(i => i.complete && i.naturalWidth > 0);
    }""")
    widths = page.eval_on_selector_all("#grid img", "images => images.map(i => i.naturalWidth)")
    assert len(widths) >= 4 and all(w > 0 for w in widths)
    shot(page, "grid")
    page.select_option("select[name=mimetype]", "image/png")
    page.click(".filters button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 1")
    assert grid_filenames(page) == ["/cats/deep/c.png"]
    page.select_option("select[name=mimetype]", "")
    page.fill("input[name=where]", "width >= 200")
    page.click(".filters button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 2")
    assert grid_filenames(page) == ["/cats/b.jpg", "/dogs/d.jpg"]
    shot(page, "grid-filtered")
    page.fill("input[name=where]", "width >")
    page.click(".filters button[type=submit]")
    page.wait_for_selector("#grid-note.error")
    assert "position" in page.inner_text("#grid-note")


def test_folder_navigation(page):
    page.click(".card[data-dataset=photos] h2 a")
    page.click(".tree a[data-folder='/cats']")
    page.wait_for_function("!document.querySelector('#grid .tile[data-filename=\"/dogs/d.jpg\"]') && "
                           "document.querySelectorAll('#grid .tile').length > 0")
    assert grid_filenames(page) == ["/cats/a.jpg", "/cats/b.jpg", "/cats/broken.jpg", "/cats/deep/c.png"]
    page.click(".tree a[data-folder='/cats/deep']")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 1")
    assert grid_filenames(page) == ["/cats/deep/c.png"]
    shot(page, "folder")


def test_item_metadata_edit_is_saved(page, served):
    page.click(".card[data-dataset=photos] h2 a")
    page.click("#grid .tile[data-filename='/cats/a.jpg']")
    page.wait_for_selector("#user-metadata")
    page.wait_for_function("document.getElementById('image').naturalWidth > 0")
    assert "GPS: -33.859833, -70.500000" in page.inner_text("#gps")
    assert "Canon" in page.inner_text("#system")
    page.fill("#user-metadata", json.dumps({"camera": "cam_07", "tags": ["cat"]}))
    page.click("#save")
    page.wait_for_function("document.getElementById('saved').textContent === 'Saved'")
    shot(page, "item")
    api = Client(served.url, token=TOKEN)
    item_id = page.url.rsplit("/", 1)[1]
    assert api(f"/api/v1/items/{item_id}").json()["metadata"]["user"] == {"camera": "cam_07", "tags": ["cat"]}
    page.reload()
    page.wait_for_selector("#user-metadata")
    assert json.loads(page.input_value("#user-metadata")) == {"camera": "cam_07", "tags": ["cat"]}


def test_a_page_still_loading_never_replaces_the_one_moved_to(page, served):
    """A folder is opened, and before its listing arrives the user opens an item: the
    listing must not replace the item page. Each route aborts the reads of the one before."""
    held, outcome = [], []
    page.on("requestfinished", lambda r: outcome.append("answered") if held and r == held[0].request else None)
    page.on("requestfailed", lambda r: outcome.append("aborted") if held and r == held[0].request else None)
    page.route("**/api/v1/datasets/photos/folders?*", lambda route: held.append(route))
    page.click(".card[data-dataset=photos] h2 a")
    until(page, lambda: held)
    items = Client(served.url, token=TOKEN)("/api/v1/datasets/photos/items?folder=/cats").json()
    item = next(i for i in items["items"] if i["filename"] == "/cats/a.jpg")
    page.evaluate(f"location.hash = '#/i/{item['id']}'")
    page.wait_for_selector("#user-metadata")
    held[0].continue_()  # the server's answer, late
    until(page, lambda: outcome)
    page.wait_for_timeout(300)  # were the answer rendered, it would be by now
    assert outcome == ["aborted"]
    assert page.locator("#user-metadata").count() == 1 and page.locator("#grid").count() == 0


def test_video_plays(page, served):
    if "clips/test.webm" not in served.files:
        pytest.skip("no ffmpeg to make the test video")
    page.click(".card[data-dataset=photos] h2 a")
    page.click(".tree a[data-folder='/clips']")
    page.click("#grid .tile[data-filename='/clips/test.webm']")
    page.wait_for_selector("#player")
    page.evaluate("() => { const v = document.getElementById('player'); v.muted = true; return v.play(); }")
    page.wait_for_function("document.getElementById('player').currentTime > 0.5")
    assert page.evaluate("document.getElementById('player').videoWidth") == 160
    assert "/preview?v=" in page.evaluate("document.getElementById('player').currentSrc")  # the H.264 preview
    # Seeking asks the server for a byte range, and playback goes on from there.
    page.evaluate("() => { document.getElementById('player').currentTime = 2.0; }")
    page.wait_for_function("document.getElementById('player').currentTime >= 2.0")
    shot(page, "video")


def test_jobs_page_lists_failures_and_retries(page, served):
    page.click("header nav a[href='#/jobs']")
    page.wait_for_selector("#job-list")
    text = page.inner_text("#job-list")
    assert "/cats/broken.jpg" in text and "damaged image header" in text
    shot(page, "jobs")
    page.click("#job-list button[data-job]")
    page.wait_for_function("document.querySelector('#job-list button[data-job]').textContent === 'Queued'")
    api = Client(served.url, token=TOKEN)
    pending = api("/api/v1/jobs?state=pending").json()
    assert [job["filename"] for job in pending] == ["/cats/broken.jpg"]
