"""The web page of `mt serve` in a real headless browser (Debian's chromium driven by
Playwright): type a sentence, see its translation and the attention heatmap appear, save a
screenshot. Not part of `make test` (it needs chromium); run with `make test-browser`."""
import os
import shutil
from pathlib import Path

import pytest

from tests.test_serve import SENTENCES, start_server

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_the_page_translates_as_you_type_and_draws_the_attention(learned, tmp_path):
    from playwright.sync_api import sync_playwright
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    proc, url = start_server("--model", learned[0])
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            outside = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None)
            page.goto(url)
            page.wait_for_selector("#pair option", state="attached")  # the pairs came from /languages
            page.fill("#source", SENTENCES[0])
            page.wait_for_function("document.getElementById('output').textContent.trim().length > 0", timeout=30_000)
            page.wait_for_selector("table.heatmap td", timeout=30_000)
            translation = page.text_content("#output").strip()
            cells = page.locator("table.heatmap td").count()
            rows = page.locator("table.heatmap tbody tr").count()
            shot = Path(os.environ.get("MT_SCREENSHOT", tmp_path / "web_page.png"))
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        import httpx
        expected = httpx.post(f"{url}/v1/translate", json={"src": [SENTENCES[0]], "beam": 4},
                              timeout=60).json()["translations"][0]["text"]
        assert translation == expected
        assert rows >= 2 and cells % rows == 0 and cells // rows >= 2  # target pieces x source pieces
        assert shot.stat().st_size > 10_000
        assert not outside, f"the page fetched outside resources: {outside}"
        print(f"screenshot: {shot}")
    finally:
        proc.terminate()
        proc.wait(30)


def test_chromium_is_debians(tmp_path):
    assert shutil.which("chromium") == CHROMIUM
