"""Issue 26, section 3: inputs from an attack run that were taken in silently, hung, or ended in a traceback.

Each test reproduces one attack (items 1, 2, 3, 5, 6, 7, 8, 9, 10 and the two smaller ones) and
asserts the behaviour that replaces it: one located error (exit 2) and no output, or a page and
subtitles that a browser reads as intended.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from dialog_tts import synthesize_dialog
from dialog_tts.cli import main
from dialog_tts.errors import MAX_MESSAGE_LINE, DialogTTSError, ScriptError, VoiceSpecError
from dialog_tts.io.tags import MAX_COVER_BYTES
from dialog_tts.script.parse import MAX_LINE_CHARS, parse_text
from dialog_tts.script.speakers import load_speaker_map
from dialog_tts.script.textfiles import MAX_YAML_DEPTH

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
        "--disable-background-networking"]


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def cli_within(seconds: float, *args: object):
    """The CLI run on a thread: a run that reads forever (/dev/zero, a FIFO) fails the test instead of hanging it."""
    box: list = []
    thread = threading.Thread(target=lambda: box.append(cli(*args)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert box, f"the command was still running after {seconds} s"
    return box[0]


def error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


# ------------------------------------------------------------------ 1: control characters in text

@pytest.mark.parametrize("char, column", [("\x00", 26), ("\x1b", 26), ("\x07", 26), ("\x0c", 26), ("\x85", 26),
                                           ("\x7f", 26), ("\r", 26)])
def test_a_control_character_in_a_line_is_an_error_naming_it(write_script, tone_backend, tmp_path, char, column):
    script = write_script(f"B: Fine.\nA: Hello there my friend.{char} Unspoken tail.\n".encode())
    out = tmp_path / "o.wav"
    result = cli("-s", script, "--backend", "tone", "-o", out)
    assert result.exit_code == 2
    message = error_line(result)
    assert message.startswith(f"Error: {script}:2: ") and f"(U+{ord(char):04X}) at column {column}" in message
    assert char not in result.output                  # shown escaped
    assert not out.exists() and tone_backend.calls == []


def test_a_control_character_in_a_comment_or_a_continuation_is_found_too():
    with pytest.raises(ScriptError, match=r"U\+0000") as err:
        parse_text("A: hi\n   more\x00\n")
    assert err.value.line == 2
    with pytest.raises(ScriptError, match=r"U\+0008") as err:
        parse_text("# a\x08comment\nA: hi\n")
    assert err.value.line == 1


def test_tabs_and_crlf_line_ends_are_not_control_characters():
    script = parse_text("A:\tHello\tthere.\r\nB: Hi.\r\r\n")
    assert [(line.speaker, line.text) for line in script.lines] == [("A", "Hello\tthere."), ("B", "Hi.")]


# ------------------------------------------------------------------ 2: one very long line

def test_a_100kb_turn_is_split_into_lines_at_most_the_cap_at_sentence_ends():
    turn = "Hello there my friend. " * 4500                    # 103,500 characters, one turn
    script = parse_text(f"A: {turn}\nB: Short.\n")
    lines = script.lines
    assert max(len(line.text) for line in lines) <= MAX_LINE_CHARS
    assert len(lines) == 12 and lines[-1].text == "Short."
    assert " ".join(line.text for line in lines[:-1]) == turn.strip()   # nothing lost, nothing repeated
    assert all(line.text.endswith(".") for line in lines[:-1])          # cut at sentence ends only
    assert {(line.speaker, line.line_no) for line in lines[:-1]} == {("A", 1)}


def test_a_long_turn_over_many_lines_is_split_and_each_piece_keeps_its_line():
    para = "Word " * 999 + "end."                               # 4,999 characters a line
    script = parse_text("A: " + "\n   ".join([para] * 5) + "\n")
    assert [(len(line.text), line.line_no) for line in script.lines] == [(9999, 1), (9999, 3), (4999, 5)]


def test_a_sentence_longer_than_the_cap_is_an_error_naming_its_line(write_script, tone_backend, tmp_path):
    script = write_script("A: Hi.\nB: Fine.\n" + "A: " + "word " * 3000 + "\n")
    out = tmp_path / "o.wav"
    result = cli("-s", script, "--backend", "tone", "-o", out)
    assert result.exit_code == 2
    assert error_line(result).startswith(f"Error: {script}:3: a sentence of 14,999 characters is longer than")
    assert not out.exists() and tone_backend.calls == []


def test_a_turn_at_the_cap_is_one_line():
    text = "x" * MAX_LINE_CHARS
    assert [line.text for line in parse_text(f"A: {text}").lines] == [text]


# ------------------------------------------------------------------ 3: deeply nested YAML

DEEP = 250


@pytest.mark.parametrize("text, line", [
    ("A: " + "[" * DEEP + "]" * DEEP + "\n", 1),
    ("A: joe\nB:\n  voice: joe\n  x: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n", 4),
    ("A: joe\nB: " + "[" * 5000 + "]" * 5000 + "\n", 2),                            # past the composer's recursion
    ("A:\n" + "".join("  " * (i + 1) + "k:\n" for i in range(300)) + "  " * 301 + "1\n", MAX_YAML_DEPTH + 1),
    ("A: &a [*a]\n", 1),                                                              # a recursive alias
])
def test_deep_yaml_in_a_speaker_map_is_an_input_error_naming_the_line(write_script, tone_backend, tmp_path,
                                                                      text, line):
    smap = tmp_path / "map.yaml"
    smap.write_text(text, encoding="utf-8")
    result = cli("-s", write_script("A: hi\n"), "--backend", "tone", "--speaker-map", smap, "--dry-run")
    assert result.exit_code == 2, result.output
    assert error_line(result) == (f"Error: {smap}:{line}: the YAML nests lists and mappings more than "
                                  f"{MAX_YAML_DEPTH} deep")


@pytest.mark.parametrize("text, line", [
    ("x: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n", 1),
    ("Siobhan: Shiv-awn\ny: " + "[" * 5000 + "]" * 5000 + "\n", 2),
])
def test_deep_yaml_in_a_lexicon_is_an_input_error_naming_the_line(write_script, tone_backend, tmp_path, text, line):
    lex = tmp_path / "lex.yaml"
    lex.write_text(text, encoding="utf-8")
    result = cli("-s", write_script("A: hi\n"), "--backend", "tone", "--lexicon", lex, "--dry-run")
    assert result.exit_code == 2, result.output
    assert error_line(result).startswith(f"Error: {lex}:{line}: the YAML nests lists and mappings more than")
    smap = tmp_path / "map.yaml"                                     # a speaker map's lexicon: the same
    smap.write_text(f"lexicon: {lex}\n", encoding="utf-8")
    with pytest.raises(VoiceSpecError, match="nests lists and mappings") as err:
        load_speaker_map(smap)
    assert err.value.path == str(lex) and err.value.line == line


def test_ordinary_nesting_still_loads(tmp_path):
    smap = tmp_path / "map.yaml"
    smap.write_text("A:\n  voice: joe\n  x: " + "{a: " * 20 + "1" + "}" * 20 + "\n", encoding="utf-8")
    fields = load_speaker_map(smap).entries["a"][1]
    depth, value = 0, fields["x"]
    while isinstance(value, dict):
        depth, value = depth + 1, value["a"]
    assert depth == 20 and value == 1


# ------------------------------------------------------------------ 5: the front matter's cover

@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "cover.fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "large"])
def test_a_front_matter_cover_that_is_not_a_regular_small_file_is_refused(write_script, tone_backend, tmp_path,
                                                                          fifo, kind):
    cover = {"/dev/zero": Path("/dev/zero"), "fifo": fifo, "large": tmp_path / "big.jpg"}[kind]
    if kind == "large":
        with open(cover, "wb") as f:
            f.write(b"\xff\xd8")
            f.truncate(MAX_COVER_BYTES + 1)
    script = write_script(f"---\ntitle: T\ncover: {cover}\n---\nA: Hello.\n")
    out = tmp_path / "o.mp3"
    result = cli_within(60, "-s", script, "--backend", "tone", "-o", out)
    assert result.exit_code == 2, result.output
    message = error_line(result)
    assert message.startswith(f"Error: {script}:3: front matter: cover ")
    assert {"/dev/zero": "is a device: a cover must be a regular file", "fifo": "is a FIFO: a cover must be",
            "large": f"larger than {MAX_COVER_BYTES // 1000 ** 2} MB"}[kind] in message
    assert not out.exists() and tone_backend.calls == []


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "large"])
def test_a_cover_option_that_is_not_a_regular_small_file_is_refused(write_script, tone_backend, tmp_path, fifo,
                                                                    kind):
    cover = {"/dev/zero": Path("/dev/zero"), "fifo": fifo, "large": tmp_path / "big.png"}[kind]
    if kind == "large":
        with open(cover, "wb") as f:
            f.write(b"\x89PNG")
            f.truncate(MAX_COVER_BYTES + 1)
    out = tmp_path / "o.mp3"
    result = cli_within(60, "-s", write_script("A: Hello.\n"), "--backend", "tone", "--cover", cover, "-o", out)
    assert result.exit_code == 2, result.output
    assert error_line(result).startswith(f"Error: {cover}: ")
    assert not out.exists() and tone_backend.calls == []


def test_a_front_matter_cover_is_still_written(write_script, tone_backend, tmp_path):
    from mutagen.id3 import ID3

    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    (tmp_path / "c.png").write_bytes(png)
    out = tmp_path / "o.mp3"
    result = cli("-s", write_script("---\ncover: c.png\n---\nA: Hello.\n"), "--backend", "tone", "-o", out)
    assert result.exit_code == 0, result.output
    assert ID3(out).getall("APIC")[0].data == png


# ------------------------------------------------------------------ 6, 7: the review page in a browser

def _need_browser() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it with apt-get")
        pytest.skip("no /usr/bin/chromium (apt-get install chromium)")


def _open(page_path: Path, check) -> None:
    """Open *page_path* in headless chromium and run *check(page)*; no script error may occur."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(page_path.as_uri())
            check(page)
            assert errors == []
        finally:
            browser.close()


def _plays_from_a_clicked_line(page, index: int) -> None:
    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=30000)
    assert page.evaluate("document.getElementById('player').duration") > 0.5
    page.locator("#lines .line").nth(index).click()
    page.wait_for_function("document.getElementById('player').currentTime > 0.05", timeout=30000)
    assert page.evaluate("window.dialogReview.current()") == index


HOSTILE = ["A line with <!--<script> in it.", "Then </script><script>window.pwned = 1</script> here.",
           "And {{data}} and {{rows}} as text."]


def test_script_tags_and_comments_in_lines_leave_the_page_script_working(tone_backend, write_script, tmp_path):
    _need_browser()
    script = write_script("".join(f"{'AB'[i % 2]}: {text}\n" for i, text in enumerate(HOSTILE)) + "A: The end.\n")
    page_path = tmp_path / "review.html"
    synthesize_dialog(script, tmp_path / "o.wav", backend="tone", review=page_path)
    html = page_path.read_text(encoding="utf-8")
    data = html.split('<script id="line-data" type="application/json">')[1].split("</script>")[0]
    assert "<" not in data and ">" not in data                      # nothing in the data block opens a tag

    def check(page):
        assert page.evaluate("typeof window.dialogReview") == "object"        # the page's own script ran
        assert page.evaluate("window.pwned") is None
        items = page.evaluate("JSON.parse(document.getElementById('line-data').textContent)")
        assert [item["text"] for item in items] == [*HOSTILE, "The end."]
        texts = page.evaluate("Array.from(document.querySelectorAll('#lines .text')).map(e => e.textContent)")
        assert texts == [*HOSTILE, "The end."]                                 # shown as written
        _plays_from_a_clicked_line(page, 2)

    _open(page_path, check)


@pytest.mark.parametrize("name, folder", [("ep#1.wav", "pages"), ("q?x.wav", ""), ("a:b.wav", ""),
                                          ("50% off & more.wav", "pages"), ("été 1.wav", "")])
def test_the_review_page_plays_audio_whose_name_needs_url_encoding(tone_backend, write_script, tmp_path, name,
                                                                    folder):
    _need_browser()
    script = write_script("A: One line here.\nB: And a second one.\nA: A third.\n")
    page_path = tmp_path / folder / "review.html"
    page_path.parent.mkdir(exist_ok=True)
    synthesize_dialog(script, tmp_path / name, backend="tone", review=page_path)
    _open(page_path, lambda page: _plays_from_a_clicked_line(page, 1))


# ------------------------------------------------------------------ 8: WebVTT chapters

TIMING = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3} --> \d{2}:\d{2}:\d{2}\.\d{3}$")


def test_a_chapter_title_with_an_arrow_never_makes_a_cue(tone_backend, write_script, tmp_path):
    # The first title made the NOTE line "00:00:00.000 --> 00:00:09.000 INJECTED SUBTITLE": a cue to chromium.
    script = write_script("## --> 00:00:09.000 INJECTED SUBTITLE\nA: Hello there.\n## Part --> two\n"
                          "B: Goodbye now.\n## Three --->-->\nA: The end.\n")
    vtt = tmp_path / "o.vtt"
    synthesize_dialog(script, tmp_path / "o.wav", backend="tone", subtitles=vtt)
    text = vtt.read_text(encoding="utf-8")
    note = text.split("\n\n")[1]
    assert note.startswith("NOTE Chapters\n") and "-->" not in note and "INJECTED SUBTITLE" in note
    arrows = [line for line in text.splitlines() if "-->" in line]
    assert len(arrows) == 3 and all(TIMING.match(line) for line in arrows)      # one per cue, timings only
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:                                                # as chromium's parser reads it
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            src = "data:text/vtt;base64," + base64.b64encode(text.encode()).decode("ascii")
            page.set_content(f'<video id="v"><track id="t" kind="subtitles" default src="{src}"></video>')
            page.wait_for_function("document.getElementById('t').readyState === 2", timeout=30000)
            cues = page.evaluate("Array.from(document.getElementById('v').textTracks[0].cues).map(c => c.text)")
        finally:
            browser.close()
    assert cues == ["<v A>Hello there.", "<v B>Goodbye now.", "<v A>The end."]


# ------------------------------------------------------------------ 9: label-shaped lines

@pytest.mark.parametrize("label, problem", [
    ("B (x) (y): hi", "more than one (direction)"),
    ("B (a(b)): hi", "brackets inside brackets"),
    ("B {x} {y}: hi", "more than one {voice override}"),
    ("B [aside]: hi", "a direction in a label goes in parentheses"),
    ("B {x} (y): hi", "the (direction) comes before the {voice override}"),
    ("B (x) {y} (z): hi", "more than one (direction)"),
])
def test_a_label_shaped_line_is_an_error_never_text_read_aloud(write_script, tone_backend, tmp_path, label,
                                                               problem):
    script = write_script(f"A: First.\n{label}\n")
    out = tmp_path / "o.wav"
    result = cli("-s", script, "--backend", "tone", "-o", out)
    assert result.exit_code == 2, result.output
    message = error_line(result)
    assert message.startswith(f"Error: {script}:2: cannot read the label ") and problem in message
    assert not out.exists() and tone_backend.calls == []


def test_valid_labels_and_prose_with_brackets_are_unchanged():
    script = parse_text("A: One.\nB (x, y) {rate=0.9x}: hi\nA: Two.\n   B [aside]: indented, so text\n"
                        "He smiled (see: chapter 2).\n")
    assert [(line.speaker, line.text, line.directions, line.override) for line in script.lines] == [
        ("A", "One.", (), ""), ("B", "hi", ("x", "y"), "rate=0.9x"),
        ("A", "Two. B : indented, so text He smiled (see: chapter 2).", ("aside",), "")]


# ------------------------------------------------------------------ 10: tags

@pytest.mark.parametrize("line, problem", [
    ('title: "Part\\nTwo"', "title holds the control character '\\n' (U+000A)"),
    ('artist: "A\\tB"', "artist holds the control character '\\t' (U+0009)"),
    ('comment: "cut\\0here"', "comment holds the control character '\\x00' (U+0000)"),
    ('year: "2025\\nX"', "year holds the control character '\\n'"),
    ("year: abc", "year 'abc' is not a year"),
    ("year: 2025-02-30", "year '2025-02-30' is not a year"),
    ("year: 99", "year '99' is not a year"),
    ("title: [a, b]", "title is one line of text"),
])
def test_bad_front_matter_tags_are_errors_naming_the_line(write_script, tone_backend, tmp_path, line, problem):
    script = write_script(f"---\nalbum: Fine\n{line}\n---\nA: Hello.\n")
    out = tmp_path / "o.mp3"
    result = cli("-s", script, "--backend", "tone", "-o", out)
    assert result.exit_code == 2, result.output
    assert error_line(result).startswith(f"Error: {script}:3: front matter: {problem}")
    assert not out.exists()


@pytest.mark.parametrize("option, value, problem", [
    ("--year", "abc", "year 'abc' is not a year"),
    ("--year", "2025\nX", "year holds the control character"),
    ("--title", "Part\nTwo", "title holds the control character '\\n'"),
    ("--comment", "cut\x00here", "comment holds the control character '\\x00'"),
])
def test_bad_tag_options_are_usage_errors(write_script, tone_backend, tmp_path, option, value, problem):
    out = tmp_path / "o.flac"
    result = cli("-s", write_script("A: Hello.\n"), "--backend", "tone", option, value, "-o", out)
    assert result.exit_code == 2, result.output
    assert error_line(result).startswith(f"Error: {problem}")
    assert not out.exists() and tone_backend.calls == []


def test_good_tags_are_written_as_given(write_script, tone_backend, tmp_path):
    import mutagen

    script = write_script('---\ntitle: No\nyear: 2025-03\ncomment: "two\\nlines"\n---\nA: Hello.\n')
    out = tmp_path / "o.flac"
    result = cli("-s", script, "--backend", "tone", "-o", out)
    assert result.exit_code == 0, result.output
    tags = mutagen.File(out).tags
    assert tags["TITLE"] == ["No"] and tags["DATE"] == ["2025-03"] and tags["COMMENT"] == ["two\nlines"]


# ------------------------------------------------------------------ smaller: echoes

SHADOW = ("root:$6$Zq8sAlT5aLt$" + "HASHSECRET" * 8 + ":20228:0:99999:7:::\n"
          "daemon:*:20228:0:99999:7:::\n")


def test_a_lexicon_that_is_not_one_is_quoted_only_in_a_short_excerpt(write_script, tone_backend, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.write_text(SHADOW, encoding="utf-8")
    smap = tmp_path / "map.yaml"
    smap.write_text(f"A: mid\nlexicon: {shadow}\n", encoding="utf-8")
    for args in (["--lexicon", shadow], ["--speaker-map", smap]):
        result = cli("-s", write_script("A: Hello.\n"), "--backend", "tone", *args, "--dry-run")
        assert result.exit_code == 2, result.output
        message = error_line(result)
        assert message.startswith(f"Error: {shadow}:1: lexicon word 'root:$6$Zq8sAlT5aLt")
        assert "HASHSECRET" not in message and "20228" not in message


def test_a_10000_character_voice_name_gives_a_short_error(write_script, tone_backend):
    result = cli("-s", write_script("A: Hello.\n"), "--backend", "tone", "--voices", "A=" + "x" * 10_000,
                 "--dry-run")
    assert result.exit_code == 2
    message = error_line(result)
    assert len(message) <= MAX_MESSAGE_LINE + 20 and "characters left out" in message
    assert "unknown tone voice" in message


def test_error_messages_keep_their_start_and_end_and_every_line_is_capped():
    err = DialogTTSError("start " + "y" * 50_000 + " end\nsecond line")
    lines = str(err).splitlines()
    assert lines[0].startswith("start yyy") and lines[0].endswith("yyy end") and len(lines[0]) <= MAX_MESSAGE_LINE + 40
    assert lines[1] == "second line"


# ------------------------------------------------------------------ 2 (parser): a turn's directions stay bounded

def test_a_turn_keeps_each_direction_once_and_refuses_too_many_different_ones():
    from dialog_tts.script.parse import MAX_TURN_DIRECTIONS

    # Every line of a turn carries the turn's directions so far: 8,000 pauses each after a new
    # direction made 8,000 tuples of up to 8,000 (quadratic); now each is kept once, at most 100.
    script = parse_text("A (softly): " + "".join(f"[d{i % 50}] y [softly] [pause 1ms] " for i in range(8000)))
    assert len(script.lines) == 8000
    assert script.lines[-1].directions == ("softly", *(f"d{i}" for i in range(50)))
    with pytest.raises(ScriptError, match=f"more than {MAX_TURN_DIRECTIONS} different directions") as err:
        parse_text("A: " + "".join(f"[d{i}] y [pause 1ms]\n" for i in range(8000)))
    assert err.value.line == MAX_TURN_DIRECTIONS + 1
    assert parse_text("A: [d1] x\nB: [d2] y\n").lines[1].directions == ("d2",)        # a new turn starts afresh


# ------------------------------------------------------------------ 9: a label after a line's directions

@pytest.mark.parametrize("line", ["[whispering] B: hi", "[pause 1s] B: hi", "[x] [y] B (z): hi", "[x] B [aside]: hi"])
def test_a_label_after_leading_directions_is_an_error_never_spoken(line):
    with pytest.raises(ScriptError, match="a label starts its line|cannot read the label") as err:
        parse_text(f"A: First.\n{line}\n")
    assert err.value.line == 2


def test_leading_directions_before_text_still_continue_the_turn():
    script = parse_text("A: First.\n[laughs] and then more.\n[pause 1s] 10:30 sharp.\n   [x] B: indented\n")
    assert [line.text for line in script.lines] == ["First. and then more.", "10:30 sharp. B: indented"]


# ------------------------------------------------------------------ 5, 10: a Script made in code is checked too

@pytest.mark.parametrize("meta, problem", [({"title": "a\nb"}, "title holds the control character"),
                                           ({"year": "20x5"}, "is not a year"),
                                           ({"cover": "/dev/zero"}, "a cover must be a regular file")])
def test_front_matter_of_a_script_built_in_code_is_checked_before_synthesis(tone_backend, tmp_path, meta, problem):
    from dialog_tts.errors import InputError

    script = parse_text("A: Hello.\n")
    script.meta = meta
    out = tmp_path / "o.mp3"
    box: list = []

    def render():
        try:
            synthesize_dialog(script, out, backend="tone")
        except InputError as exc:
            box.append(exc)

    thread = threading.Thread(target=render, daemon=True)
    thread.start()
    thread.join(60)
    assert box and problem in str(box[0])
    assert tone_backend.calls == [] and not out.exists()
