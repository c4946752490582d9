"""The review page, opened in a real headless browser (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dialog_tts import synthesize_dialog
from dialog_tts.errors import SynthesisError

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking"]

SCRIPT = """## First
A: Line one is here.
B: Line two answers it.
A: Line three will fail.
B: Line four is fine.
## Second
A: Line five is where we click.
B: Line six follows it.
A: Line seven comes next.
B: Line eight ends it all.
"""


def _need_browser() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it with apt-get")
        pytest.skip("no /usr/bin/chromium (apt-get install chromium)")


@pytest.fixture
def page_of(flaky, write_script, tmp_path):
    """Render SCRIPT (line three fails, kept silent) to a WAV and a review page; (page path, result)."""
    flaky.failures["Line three will fail."] = [SynthesisError("server rejected it")] * 10
    out, page = tmp_path / "scene.wav", tmp_path / "pages" / "scene.html"
    page.parent.mkdir()
    result = synthesize_dialog(write_script(SCRIPT), out, backend="flaky", keep_going=True, retries=0,
                               review=page, gap_ms=300)
    return page, result


def test_page_is_self_contained(page_of):
    page, result = page_of
    text = page.read_text()
    assert 'src="../scene.wav"' in text                     # the audio beside the page, linked relatively
    assert "http://" not in text and "https://" not in text
    assert text.count('<li class="line') == 8 and text.count('<li class="line failed"') == 1
    assert "Chapters" in text and ">Second</button>" in text


def test_review_page_in_a_headless_browser(page_of):
    _need_browser()
    from playwright.sync_api import sync_playwright

    page_path, result = page_of
    starts = [r.start if r.start is not None else None for r in result.lines]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            page.wait_for_function("document.getElementById('player').readyState >= 1")
            _check_marks_and_click(page, starts)
            _check_highlight_follows_playback(page, starts)
            _check_keyboard(page, starts)
            assert errors == []
            assert all(url.startswith(("file:", "data:")) for url in requests)
        finally:
            browser.close()


def _state(page):
    return page.evaluate("""() => {
        const a = document.getElementById('player');
        const cur = document.querySelector('#lines .line.current');
        return [a.currentTime, a.paused, cur ? parseInt(cur.dataset.index) : -1];
    }""")


def _check_marks_and_click(page, starts):
    failed = page.locator("#lines .line.failed")
    assert failed.count() == 1 and "failed" in failed.inner_text() and "Line three" in failed.inner_text()
    page.locator("#lines .line").nth(4).click()                  # line 5
    page.wait_for_function("!document.getElementById('player').paused")
    time, _paused, current = _state(page)
    assert starts[4] - 0.01 <= time < starts[4] + 0.5
    assert current == 4


def _check_highlight_follows_playback(page, starts):
    target = starts[6] + 0.1                                       # into line 7
    page.wait_for_function(f"document.getElementById('player').currentTime > {target}", timeout=30000)
    page.evaluate("document.getElementById('player').pause()")
    time, paused, current = _state(page)
    assert paused
    expected = max(i for i, s in enumerate(starts) if s is not None and s <= time)
    assert current == expected and expected >= 6


def _check_keyboard(page, starts):
    page.locator("#lines .line").nth(1).focus()
    page.keyboard.press("Enter")                                   # play from line 2
    page.wait_for_function("!document.getElementById('player').paused")
    time, _paused, current = _state(page)
    assert starts[1] - 0.01 <= time < starts[1] + 0.5 and current == 1
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.index") == "2"
    page.evaluate("document.body.focus()")
    page.keyboard.press("k")                                       # pause
    assert page.evaluate("document.getElementById('player').paused")
