"""The page in a real browser: headless Chromium driven by Playwright, with a fake camera playing FER2013
faces (or the bundled photo where the dataset is absent).

Skipped, with the reason, where Chromium or Playwright is missing. ``FER_KERAS_SCREENSHOT=docs/serve.png``
also serves the shipped models and saves the README's screenshot of the page.
"""

import base64
import os
import re
from pathlib import Path

import cv2
import pytest

from fer_keras.constants import CLASS_NAMES
from fer_keras.serve import create_app
from tests.serve.browser import camera_flags, chromium_path, launch, serving
from tests.serve.camera import camera_frames, write_y4m

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-test.txt)")
pytestmark = [pytest.mark.skipif(chromium_path() is None, reason="no chromium on this machine "
                                 "(apt-get install chromium; .ci/run installs it)")]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = os.environ.get("FER_KERAS_SCREENSHOT")
LABEL = re.compile(rf"^({'|'.join(CLASS_NAMES)}) \d+%$")


def _shipped_app():
    """The shipped ensemble and distilled member, as serve.py loads them (for the screenshot only)."""
    from fer_keras.cli import serve_cli

    return serve_cli.build_app(serve_cli.build_parser().parse_args(["--models-dir", str(REPO / "models")]))


@pytest.fixture(scope="module")
def base_url(tiny_ensemble):
    app = _shipped_app() if SCREENSHOT else create_app(tiny_ensemble)
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def pictures():
    return camera_frames()


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def camera_browser(playwright, pictures, tmp_path_factory):
    y4m = write_y4m(tmp_path_factory.mktemp("camera") / "faces.y4m", pictures)
    browser = launch(playwright, camera_flags(y4m))
    yield browser
    browser.close()


def open_page(browser, base_url, requests):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.on("request", lambda r: requests.append(r.url))
    page.goto(base_url + "/")
    page.wait_for_function("document.getElementById('models').textContent.includes('member')")
    return page


def overlay_ink(page):
    """How many pixels of the overlay canvas are drawn on (boxes, labels, bars)."""
    return page.evaluate("""() => {
        const c = document.getElementById('overlay');
        if (!c.width || !c.height) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
        return n; }""")


def test_live_camera_shows_a_box_and_a_label(camera_browser, base_url, tmp_path):
    """Check that with a camera the page draws a box and an emotion over the video within seconds, from
    nothing but the app's own address."""
    requests = []
    page = open_page(camera_browser, base_url, requests)
    page.click("#camera-button")
    page.wait_for_function("window.ferStats.frames >= 3 && window.ferStats.lastFaces.length > 0", timeout=15000)
    assert LABEL.match(page.text_content("#top-label"))
    assert overlay_ink(page) > 500
    assert page.is_hidden("#camera-message")
    assert int(page.text_content("#face-count")) == 1
    assert page.evaluate("window.ferStats.errors") == 0
    page.wait_for_timeout(1500)  # a second of frames for the fps counter and the timeline
    assert int(page.text_content("#fps")) >= 1
    if SCREENSHOT:
        page.set_input_files("#file", str(_photo(tmp_path)))
        page.wait_for_selector("#photo-result:not([hidden])")
        page.wait_for_timeout(300)
        _save_screenshot(page, REPO / SCREENSHOT)
    page.click("#camera-button")  # stop
    assert [u for u in requests if not u.startswith((base_url + "/", "data:", "blob:"))] == []
    page.close()


def _photo(folder):
    path = Path(folder) / "photo.jpg"
    cv2.imwrite(str(path), camera_frames()[-1] if SCREENSHOT else cv2.imread(str(REPO / "README.md")))
    return path


def _save_screenshot(page, path):
    """The page, reduced to a 256-colour PNG so the committed file stays small."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.png")
    page.screenshot(path=str(raw), full_page=True)
    with Image.open(raw) as image:
        image.convert("RGB").quantize(256).save(path, optimize=True)
    raw.unlink()


@pytest.mark.parametrize("how", ["choose", "drop"])
def test_upload_returns_the_annotated_picture_and_table(camera_browser, base_url, frame, face_jpeg, tmp_path, how):
    """Check that a picture chosen or dropped on the page comes back annotated, with one table row per face."""
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), frame)
    page = open_page(camera_browser, base_url, [])
    if how == "choose":
        page.set_input_files("#file", str(photo))
    else:
        files = page.evaluate_handle("""(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)), dt = new DataTransfer();
            dt.items.add(new File([bytes], "photo.jpg", {type: "image/jpeg"}));
            return dt; }""", base64.b64encode(face_jpeg).decode("ascii"))
        page.dispatch_event("#drop", "drop", {"dataTransfer": files})
    page.wait_for_selector("#photo-result:not([hidden])", timeout=10000)
    assert page.get_attribute("#annotated", "src").startswith("data:image/jpeg;base64,")
    assert page.evaluate("document.getElementById('annotated').naturalWidth") >= 640
    rows = page.query_selector_all("#faces-table tbody tr")
    assert len(rows) == 1
    assert rows[0].query_selector_all("td")[2].text_content().strip().split()[-1] in CLASS_NAMES
    page.close()


def test_upload_of_a_non_picture_shows_the_error(camera_browser, base_url, tmp_path):
    """Check that a file that is not a picture gives a readable message, not a broken page."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page = open_page(camera_browser, base_url, [])
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#photo-message:not([hidden])", timeout=10000)
    assert "not a JPEG, PNG or WebP picture" in page.text_content("#photo-message")
    page.close()


@pytest.mark.parametrize("case, expected", [("absent", "No camera was found"), ("refused", "refused")])
def test_a_missing_or_refused_camera_shows_a_message(playwright, pictures, base_url, tmp_path, case, expected):
    """Check that a browser without a camera, or one that refuses it, says so and what to do instead."""
    # absent: no fake device at all; refused: a fake camera, but the permission prompt is not auto-accepted
    flags = [f for f in camera_flags(write_y4m(tmp_path / "c.y4m", pictures[:1], seconds_each=0.1))
             if "fake-ui" not in f] if case == "refused" else []
    browser = launch(playwright, flags)
    try:
        page = open_page(browser, base_url, [])
        assert page.is_hidden("#photo-result") and page.is_hidden("#camera-message")
        page.click("#camera-button")
        page.wait_for_selector("#camera-message:not([hidden])", timeout=10000)
        message = page.text_content("#camera-message")
        assert expected in message and "photo upload" in message, message
        assert page.text_content("#camera-button") == "Start camera"
    finally:
        browser.close()


def test_api_docs_render_offline(playwright, base_url):
    """Check that /docs (Swagger UI) draws the API's operations from nothing but the app's own address:
    FastAPI's default page loads its script from a CDN, which an offline machine cannot reach."""
    browser = launch(playwright, [])
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(base_url + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15000)
    assert "/api/predict" in page.content()
    assert [u for u in requests if not u.startswith((base_url + "/", "data:", "blob:"))] == []
    browser.close()
