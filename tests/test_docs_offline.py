"""/docs works with no internet (issue 19): a real headless Chromium (Debian's `chromium`,
driven by Playwright without a browser download of its own) opens /docs and /redoc from the
server on loopback while every other host is cut off, uploads a WAV made here with "Try it
out" on /stt, and sees the fake Google's transcript. A screenshot is left in
tests/artifacts/ (git-ignored) to look at."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_server import HEARD, SPEECH, build_engine, running

from ovos_stt_plugin_google_apikey.server import create_app

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")
# Flags that work in a container as root; the resolver rule cuts off every host but loopback
# even for requests Playwright's routing would not see (the browser's own background traffic).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":           # .ci/run installs it: absent is a failure
            pytest.fail("chromium is not installed; .ci/run must apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # the [test] extra
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def url(fake):
    engine = build_engine(fake)
    try:
        with running(create_app(engine)) as base:
            yield base
    finally:
        engine.shutdown()


def cut_off(context, attempted):
    """Every request to a host other than loopback is recorded and aborted."""
    def route(request_route):
        host = urlsplit(request_route.request.url).hostname or ""
        if request_route.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            request_route.continue_()
        else:
            attempted.append(request_route.request.url)
            request_route.abort()
    context.route("**/*", route)


def test_docs_try_it_out_on_stt_transcribes_a_wav_with_no_network(browser, url, fake, tmp_path):
    attempted, finished = [], []
    cut_off(browser, attempted)
    browser.on("requestfinished", lambda request: finished.append(request.url))
    page = browser.new_page()
    page.goto(url + "/docs")
    operation = page.locator("#operations-default-stt_stt_post")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    wav = tmp_path / "speech.wav"
    wav.write_bytes(SPEECH)
    operation.locator("input[type=file]").set_input_files(str(wav))
    operation.get_by_role("button", name="Execute").click()
    body = operation.locator(".live-responses-table .response-col_description pre").first
    body.wait_for(timeout=30000)
    assert body.inner_text().strip() == HEARD
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs-offline.png"), full_page=True)
    assert len(fake.requests) == 1 and fake.requests[0].json["audio"]["content"]
    # Swagger UI came from this server, and nothing beyond loopback was reached.
    assert any(u.endswith("/docs-assets/swagger-ui-bundle.js") for u in finished)
    assert [u for u in finished if urlsplit(u).hostname not in LOOPBACK
            and not u.startswith("data:")] == []
    assert attempted == [], attempted


def test_redoc_renders_the_contract_with_no_network(browser, url):
    attempted, finished = [], []
    cut_off(browser, attempted)
    browser.on("requestfinished", lambda request: finished.append(request.url))
    page = browser.new_page()
    page.goto(url + "/redoc")
    page.get_by_text("/stt/json").first.wait_for(timeout=30000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "redoc-offline.png"))
    assert any(u.endswith("/docs-assets/redoc.standalone.js") for u in finished)
    assert [u for u in finished if urlsplit(u).hostname not in LOOPBACK
            and not u.startswith("data:")] == []
    # ReDoc's footer links its maker's logo from their CDN: cut off, the page renders without it.
    assert set(attempted) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}, attempted
