"""The page at `/` of `mt serve` in a real headless browser (Debian's chromium driven by
Playwright): a translator a person would use, on a desktop and on a phone. Type and pause,
or press the button, and the translation appears; swap swaps languages and texts; copy puts
the translation on the clipboard; the character counter reaches the server's limit and the
error replaces the translation; with the server stopped an error shows and no stale text;
at 390 px nothing scrolls sideways, heatmap open; axe-core finds no serious or critical
accessibility violation; nothing is fetched from outside. Screenshots at desktop and phone
widths go to $MT_SCREENSHOTS (docs/ with `make test-browser`).

Not part of `make test` (it needs chromium); run with `make test-browser`.
"""
import json
import os
import shutil
import urllib.request
from pathlib import Path

import httpx
import pytest

from tests.conftest import SENTENCES, start_server

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
LIMIT = 300
FORTY_WORDS = ("A man in a red shirt is riding a bicycle down a busy street while two children with "
               "colorful kites run along the sandy beach and an old woman sells fresh bread and fruit "
               "from a small wooden cart near the blue harbour today")


@pytest.fixture(scope="module")
def two_models(learned, tmp_path_factory):
    """The learned en-fr model, and the same weights served as fr-en, so swap has a way back."""
    other = tmp_path_factory.mktemp("fr-en") / "fr-en"
    shutil.copytree(learned[0], other, ignore=shutil.ignore_patterns("checkpoints", "data"))
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "pair": "fr-en"}))
    return learned[0], other


@pytest.fixture(scope="module")
def server(two_models):
    proc, url = start_server("--model", two_models[0], "--model", two_models[1], "--char-limit", LIMIT)
    yield proc, url
    if proc.poll() is None:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


def open_page(browser, url, width=1100, height=900, outside=None, scheme="light"):
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page = context.new_page()
    if outside is not None:
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None)
    page.goto(url)
    page.wait_for_selector("#target-language option", state="attached")  # languages came from the server
    return page


def translation_of(url, text, source="en", target="fr"):
    return httpx.post(f"{url}/translate", json={"q": text, "source": source, "target": target}, timeout=60).json()[
        "translatedText"]


def output(page) -> str:
    page.wait_for_function("!document.getElementById('output').classList.contains('loading')"
                           " && document.getElementById('output').textContent.trim().length > 0", timeout=30_000)
    return page.text_content("#output")


def translated(page, text: str) -> str:
    """Type `text`, press the button, and return the translation the page shows."""
    page.fill("#source", text)
    page.click("#translate")
    return output(page)


def shows(page, text: str) -> None:
    """Wait until the page shows exactly `text` as the translation."""
    page.wait_for_function(f"document.getElementById('output').textContent === {json.dumps(text)}", timeout=30_000)


def screenshot(page, name: str) -> None:
    """Into $MT_SCREENSHOTS (docs/ under `make test-browser`), when it is set."""
    if os.environ.get("MT_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["MT_SCREENSHOTS"]) / name), full_page=True)


def test_typing_then_pausing_translates(browser, server):
    proc, url = server
    outside = []
    page = open_page(browser, url, outside=outside)
    page.type("#source", SENTENCES[0], delay=5)  # the page translates when typing pauses
    assert output(page) == translation_of(url, SENTENCES[0])
    assert not outside, f"the page fetched outside resources: {outside}"
    assert page.is_visible("#files")  # this server translates files (/frontend/settings says so)
    assert page.input_value("#source-language") == "en" and "auto" in page.eval_on_selector_all(
        "#source-language option", "os => os.map(o => o.value)")  # "Detect language" is offered


def test_a_file_chosen_on_the_page_comes_back_as_a_download_link(browser, server, tmp_path):
    """The page's file picker posts to /translate_file and links the translation; the link
    gives the subtitles back translated, cue for cue."""
    proc, url = server
    page = open_page(browser, url)
    assert page.get_attribute("#file", "accept") == ".txt,.srt,.vtt,.html,.htm,.docx"
    subtitles = tmp_path / "talk.srt"
    subtitles.write_text(f"1\n00:00:01,000 --> 00:00:02,500\n{SENTENCES[3]}\n", encoding="utf-8")
    page.set_input_files("#file", str(subtitles))
    page.wait_for_selector("#file-status a", timeout=30_000)
    assert page.text_content("#file-status a") == "Download the translation of talk.srt"
    link = page.get_attribute("#file-status a", "href")
    with urllib.request.urlopen(link, timeout=30) as answer:
        translated = answer.read().decode("utf-8")
    head, text = translated.split("\n", 2)[:2], translated.split("\n", 2)[2]
    assert head == ["1", "00:00:01,000 --> 00:00:02,500"]
    assert " ".join(text.split()) == translation_of(url, SENTENCES[3])  # (wrapped at 42 characters a line)


def test_the_button_and_ctrl_enter_translate(browser, server):
    proc, url = server
    page = open_page(browser, url)
    assert translated(page, SENTENCES[1]) == translation_of(url, SENTENCES[1])
    page.select_option("#source-language", "auto")  # "Detect language": the server detects English
    page.wait_for_function("document.getElementById('detected').textContent.startsWith('Detected: English')",
                           timeout=30_000)
    page.fill("#source", SENTENCES[2])
    page.keyboard.press("Control+Enter")
    shows(page, translation_of(url, SENTENCES[2]))


def test_swap_swaps_languages_and_texts(browser, server):
    proc, url = server
    page = open_page(browser, url)
    french = translated(page, SENTENCES[3])
    page.click("#swap")
    assert page.input_value("#source-language") == "fr" and page.input_value("#target-language") == "en"
    assert page.input_value("#source") == french
    english = translation_of(url, french, "fr", "en")
    shows(page, english)
    page.keyboard.press("Control+Shift+S")  # and back, by the keyboard
    page.wait_for_function("document.getElementById('source-language').value === 'en'")
    assert page.input_value("#target-language") == "fr" and page.input_value("#source") == english


def test_copy_puts_the_translation_on_the_clipboard(browser, server):
    proc, url = server
    page = open_page(browser, url)
    shown = translated(page, SENTENCES[4])
    page.click("#copy")
    page.wait_for_function("document.getElementById('status').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == shown


def test_the_counter_reaches_the_limit_and_the_error_replaces_the_translation(browser, server):
    proc, url = server
    page = open_page(browser, url)
    translated(page, SENTENCES[0])
    page.fill("#source", "a" * (LIMIT + 1))
    page.click("#translate")
    page.wait_for_function("document.getElementById('error').textContent.includes('limit')")
    assert page.text_content("#counter") == f"{LIMIT + 1} / {LIMIT}"
    assert "over" in page.get_attribute("#counter", "class")
    assert page.text_content("#output") == ""  # no stale translation


def test_the_phone_width_never_scrolls_sideways_and_the_heatmap_scrolls_in_its_box(browser, server):
    proc, url = server
    page = open_page(browser, url, width=390, height=844)
    translated(page, FORTY_WORDS)
    page.click("#why-box summary")
    page.wait_for_selector("table.heatmap td", timeout=30_000)
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], widths
    box = page.evaluate("(() => { const b = document.getElementById('heatmap');"
                        " return [b.scrollWidth, b.clientWidth]; })()")
    assert box[0] > box[1]  # the 40-word heatmap is wider than the phone: it scrolls inside its box
    page.click("#alternatives-box summary")
    page.wait_for_selector("#alternatives li", timeout=30_000)
    assert "(" not in page.text_content("#alternatives li")  # plain sentences; scores only when asked
    screenshot(page, "serve_page_phone.png")


def test_no_serious_accessibility_violations(browser, server):
    proc, url = server
    for width, height, name, scheme in ((1100, 900, "serve_page.png", "light"), (390, 844, None, "light"),
                                        (1100, 900, "serve_page_dark.png", "dark")):
        page = open_page(browser, url, width, height, scheme=scheme)
        translated(page, SENTENCES[0])
        page.click("#why-box summary")
        page.wait_for_selector("table.heatmap td", timeout=30_000)
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
                   if v["impact"] in ("serious", "critical")]
        assert not serious, serious
        if name:
            screenshot(page, name)


def test_with_the_server_stopped_an_error_shows_and_no_stale_text(browser, two_models):
    proc, url = start_server("--model", two_models[0])
    try:
        page = open_page(browser, url)
        assert translated(page, SENTENCES[5])
        proc.terminate()
        proc.wait(30)
        page.fill("#source", SENTENCES[6])
        page.click("#translate")
        page.wait_for_function("document.getElementById('error').textContent.includes('Cannot reach the server')",
                               timeout=30_000)
        assert page.text_content("#output") == ""
    finally:
        if proc.poll() is None:
            proc.kill()


def test_chromium_is_debians():
    assert shutil.which("chromium") == CHROMIUM
