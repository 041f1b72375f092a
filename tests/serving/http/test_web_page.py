"""The web page in a real browser: Playwright drives Debian's Chromium, headless, as a new user
would: pick the photos, read the candidates, switch the landmark method and epsilon, pick
another type, see its guidebook (or that the bundle has none), get an error for a corrupt file.
The page is served over the tiny bundle with a guidebook (``guidebook_bundle``). Screenshots go
to the test's temporary folder, and also to $DENARIUS_SCREENSHOTS when set;
$DENARIUS_WEB_BUNDLE serves another bundle (the README's screenshots are of the quickstart
bundle with a guidebook built by ``denarius guidebook``)::

    DENARIUS_WEB_BUNDLE=denarius-quickstart/bundle DENARIUS_SCREENSHOTS=docs/web \\
        .venv/bin/python -m pytest -q tests/serving/http/test_web_page.py
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("DENARIUS_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
requests = pytest.importorskip("requests")

from denarius.serving.server import BackgroundServer  # noqa: E402 - after the skips

from serving_helpers import server_config  # noqa: E402

# The machine's closed network would otherwise keep Chromium waiting on its own connections.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def page_url(request, beside):
    """The page over the tiny bundle with a guidebook, or over $DENARIUS_WEB_BUNDLE, on a server of its own."""
    bundle = os.environ.get("DENARIUS_WEB_BUNDLE")
    config = server_config(bundle, precision=None) if bundle else server_config(request.getfixturevalue("guidebook_bundle"))
    with BackgroundServer(config) as running, beside(running) as frontend:
        yield f"http://127.0.0.1:{frontend.port}"


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> list[Path]:
    folders = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("DENARIUS_SCREENSHOTS"):
        folders.append(Path(os.environ["DENARIUS_SCREENSHOTS"]))
        folders[-1].mkdir(parents=True, exist_ok=True)
    return folders


def _save(page, shots: list[Path], name: str, **options) -> None:
    page.screenshot(path=str(shots[0] / name), **options)
    assert (shots[0] / name).stat().st_size > 1000
    for folder in shots[1:]:  # for the README: 256 colours keep it small
        from PIL import Image

        with Image.open(shots[0] / name) as picture:
            picture.convert("RGB").quantize(256).save(folder / name, optimize=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="denarius-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


@contextlib.contextmanager
def _opened(browser, url: str):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url + "/")
    page.wait_for_function("document.querySelector('#model').textContent.startsWith('Model ')")
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser, page_url):
    with _opened(browser, page_url) as opened:
        yield opened


@pytest.fixture(scope="module")
def synthetic_coin() -> dict[str, bytes]:
    """One coin of the project's generator ('tiny' preset), both sides as JPEG."""
    pytest.importorskip("denarius.training.synth.coin")
    from denarius.training.synth.catalogue import build_catalogue
    from denarius.training.synth.coin import render_coin
    from denarius.training.synth.presets import make_config

    config = make_config("tiny")
    coin = render_coin(build_catalogue(config, 0), 0, seed=0, coin_index=0, config=config)
    return {side: coin[side][0] for side in ("obverse", "reverse")}


def _overlays_drawn(page, sides=("obverse", "reverse")) -> None:
    for side in sides:
        page.wait_for_function(
            f"(() => {{ const f = document.querySelector('#lm-{side}'); const i = f.querySelector('img');"
            f" return !f.hidden && !f.classList.contains('busy') && i.complete && i.naturalWidth === 512; }})()")


def _rows(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#candidates tbody tr",
        "rows => rows.map(r => ({ric: r.dataset.ric, emperor: r.dataset.emperor, score: r.querySelector('td.score').dataset.score,"
        " text: r.innerText}))")


def test_identify_the_real_pair_then_switch_method_epsilon_and_type(page, page_url, fixture_photos, shots):
    page.set_input_files("#file-obverse", str(fixture_photos["obverse"]))
    page.set_input_files("#file-reverse", str(fixture_photos["reverse"]))  # both chosen: it identifies at once
    page.wait_for_selector("#candidates tbody tr")
    rows = _rows(page)
    api = requests.post(f"{page_url}/v1/identify", timeout=30, data={"top_k": "5"},
                        files={side: (path.name, path.read_bytes()) for side, path in fixture_photos.items()}).json()
    assert [(r["ric"], r["emperor"], float(r["score"])) for r in rows] == [
        (c["ric"], c["emperor"], c["score"]) for c in api["candidates"]]  # the table shows what the API answers
    assert api["candidates"][0]["reverse_description"] in rows[0]["text"]
    assert page.inner_text("#status").startswith("Identified")
    _overlays_drawn(page)
    assert "optimised landmarks" in page.inner_text("#lm-reverse figcaption")
    assert page.inner_text("#gb-type") == rows[0]["ric"]
    _guidebook_settled(page)
    _save(page, shots, "page-desktop.png", full_page=True)

    first = page.get_attribute("#lm-reverse img", "src")
    page.check("input[name=method][value=saliency]")
    page.wait_for_selector("#lm-reverse[data-method=saliency]")
    _overlays_drawn(page)
    assert page.is_disabled("#epsilon") and page.get_attribute("#lm-reverse img", "src") != first
    page.check("input[name=method][value=occlusion]")
    page.wait_for_selector("#lm-obverse[data-method=occlusion]")
    _overlays_drawn(page)

    page.check("input[name=method][value=optimized]")
    page.wait_for_selector("#lm-reverse[data-method=optimized][data-epsilon='0.5']")
    page.focus("#epsilon")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")  # 0.5 -> 0.3 -> 0.1, the start of Figure 6's progression
    page.wait_for_selector("#lm-reverse[data-epsilon='0.1']")
    _overlays_drawn(page)
    assert page.inner_text("#epsilon-value") == "0.1" and "epsilon 0.1" in page.inner_text("#lm-reverse figcaption")
    page.keyboard.press("End")
    page.wait_for_selector("#lm-reverse[data-epsilon='1']")
    _overlays_drawn(page)

    page.click("#candidates tbody tr:nth-child(2)")
    second = rows[1]
    assert page.inner_text("#gb-type") == second["ric"]
    page.wait_for_selector(f"#lm-reverse[data-target='{second['ric']}']")
    page.wait_for_selector(f"#lm-obverse[data-target='{second['emperor']}']")
    _overlays_drawn(page)


def _guidebook_settled(page) -> None:
    page.wait_for_function("document.querySelector('#gb-note').dataset.state !== undefined")
    for side in ("obverse", "reverse"):
        page.wait_for_function(
            f"(() => {{ const f = document.querySelector('#gb-{side}'); const i = f.querySelector('img');"
            f" return f.hidden || (i.complete && i.naturalWidth === 512); }})()")


def test_the_guidebook_of_the_chosen_type(page, page_url, fixture_photos, shots):
    index = requests.get(f"{page_url}/v1/guidebook", timeout=10)
    if index.status_code == 404 and os.environ.get("DENARIUS_WEB_BUNDLE"):
        pytest.skip("$DENARIUS_WEB_BUNDLE has no guidebook (denarius guidebook BUNDLE --images MANIFEST)")
    kinds = {kind: {e["label"]: e for e in index.json()["entries"] if e["kind"] == kind} for kind in ("ric", "emperor")}
    page.set_input_files("#file-obverse", str(fixture_photos["obverse"]))
    page.set_input_files("#file-reverse", str(fixture_photos["reverse"]))
    page.wait_for_selector("#candidates tbody tr")
    rows = _rows(page)
    with_book = [i for i, row in enumerate(rows) if row["ric"] in kinds["ric"]]
    assert with_book, "the guidebook bundle covers 2 of 6 types, so 5 candidates include one"
    chosen = rows[with_book[0]]
    page.click(f"#candidates tbody tr:nth-child({with_book[0] + 1})")
    page.wait_for_selector(f"#gb-reverse[data-label='{chosen['ric']}']")
    _guidebook_settled(page)
    entry = kinds["ric"][chosen["ric"]]
    caption = page.inner_text("#gb-reverse figcaption")
    assert f"mean landmarks of {entry['coins']} held-out coin" in caption and chosen["ric"] in caption
    assert f"drawn over coin {entry['representative']}" in caption
    assert page.is_visible("#gb-reverse img") and page.is_visible("#gb-obverse") == (chosen["emperor"] in kinds["emperor"])
    assert "Where the model usually looks" in page.inner_text("#gb-note")
    _save(page, shots, "page-guidebook.png", full_page=True)

    without = [i for i, row in enumerate(rows) if row["ric"] not in kinds["ric"]]
    if without:  # a listed type the guidebook has no coins of: said so, no picture
        page.click(f"#candidates tbody tr:nth-child({without[0] + 1})")
        page.wait_for_function(f"document.querySelector('#gb-type').textContent === {rows[without[0]]['ric']!r}")
        page.wait_for_function("['partial', 'shown'].includes(document.querySelector('#gb-note').dataset.state)")
        _guidebook_settled(page)
        assert page.is_hidden("#gb-reverse")
        assert f"no entry for the type {rows[without[0]]['ric']}" in page.inner_text("#gb-note")


def test_a_bundle_without_a_guidebook_says_so(browser, http_url, fixture_photos):
    with _opened(browser, http_url) as page:  # the tiny bundle as exported: no guidebook
        page.set_input_files("#file-obverse", str(fixture_photos["obverse"]))
        page.set_input_files("#file-reverse", str(fixture_photos["reverse"]))
        page.wait_for_selector("#candidates tbody tr")
        page.wait_for_function("document.querySelector('#gb-note').dataset.state === 'none'")
        assert "This bundle has no guidebook" in page.inner_text("#gb-note")
        assert page.is_hidden("#gb-reverse") and page.is_hidden("#gb-obverse")
        assert page.inner_text("#gb-reverse-text")  # the catalogue descriptions are still shown


def test_a_synthetic_coin_and_a_corrupt_file(page, synthetic_coin, shots):
    for side in ("obverse", "reverse"):
        page.set_input_files(f"#file-{side}", files=[{"name": f"synthetic_{side}.jpg", "mimeType": "image/jpeg",
                                                        "buffer": synthetic_coin[side]}])
    page.wait_for_selector("#candidates tbody tr")
    _overlays_drawn(page)
    assert len(_rows(page)) >= 1 and page.is_visible("#guidebook")

    page.set_input_files("#file-obverse", files=[{"name": "broken.jpg", "mimeType": "image/jpeg",
                                                    "buffer": b"\xff\xd8\xff\xe0 this is not really a JPEG"}])
    page.wait_for_selector("#status.error")
    message = page.inner_text("#status")
    assert message.startswith("Could not identify the coin: obverse:"), message
    assert page.is_hidden("#results") and page.is_hidden("#landmarks")
    _save(page, shots, "page-error.png")


def test_readable_on_a_phone(page, fixture_photos, shots):
    page.set_viewport_size({"width": 390, "height": 844})
    page.set_input_files("#file-obverse", str(fixture_photos["obverse"]))
    page.set_input_files("#file-reverse", str(fixture_photos["reverse"]))
    page.wait_for_selector("#candidates tbody tr")
    _overlays_drawn(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
    _save(page, shots, "page-phone.png", full_page=True)
