"""The dialog script format: dialog_tts.script.parse (parse_text, load, decode, names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialog_tts.errors import InputError, ScriptError
from dialog_tts.script.parse import (
    MAX_LABEL_LENGTH,
    MAX_LINE_CHARS,
    MAX_NAME_LENGTH,
    MAX_PAUSE_SECONDS,
    Line,
    Pause,
    Script,
    decode,
    is_valid_name,
    load,
    parse_text,
    speaker_key,
)

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "dialog.txt"


def lines(script: Script) -> list[tuple[str, str, int]]:
    return [(e.speaker, e.text, e.line_no) for e in script.lines]


def raises_at(text: str, line: int, match: str | None = None, **kwargs) -> ScriptError:
    """Parse *text* as file 'd.txt' and check the error points at *line*."""
    with pytest.raises(ScriptError, match=match) as info:
        parse_text(text, path="d.txt", **kwargs)
    err = info.value
    assert err.line == line
    assert str(err).startswith(f"d.txt:{line}: ")
    assert err.exit_code == 2
    return err


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("name", [
    "Lady Bracknell", "Dr. Who", "B", "O'Brien", "R2-D2", "agent_7", "철수", "José",
    "Jose\u0301",  # decomposed é: a combining mark
    "A" * MAX_NAME_LENGTH, "42",
])
def test_valid_names_start_a_turn(name):
    assert is_valid_name(name)
    script = parse_text(f"{name}: Hello there.")
    assert script.events == [Line(name, "Hello there.", 1)]
    assert script.speaker_names() == [name]


@pytest.mark.parametrize("name", [
    "", "A" * (MAX_NAME_LENGTH + 1), "Bob!", "a/b", "x@y", "tab\there", " lead", "trail ", "semi;colon",
])
def test_invalid_names(name):
    assert not is_valid_name(name)


def test_max_name_length_is_40():
    assert MAX_NAME_LENGTH == 40
    assert is_valid_name("x" * 40) and not is_valid_name("x" * 41)


def test_41_char_name_before_any_turn_is_an_error():
    err = raises_at("B" * 41 + ": hello", 1, match="invalid speaker name")
    assert "40" in err.message


def test_41_char_name_after_a_turn_is_an_error_not_spoken():
    long = "B" * 41
    err = raises_at(f"A: first\n{long}: second", 2, match="invalid speaker name")
    assert "41 characters" in err.message and "indent" in err.message


def test_name_before_colon_may_have_trailing_spaces():
    script = parse_text("Lady Bracknell   :   A handbag?")
    assert lines(script) == [("Lady Bracknell", "A handbag?", 1)]


@pytest.mark.parametrize("a, b", [
    ("Lady Bracknell", "lady  bracknell"),
    ("Lady Bracknell", "LADYBRACKNELL"),
    ("José", "Jose\u0301"),           # NFC vs NFD
    ("STRASSE", "strasse"),
])
def test_speaker_key_is_case_and_space_insensitive(a, b):
    assert speaker_key(a) == speaker_key(b)


def test_speaker_key_distinguishes_different_names():
    assert speaker_key("Dr. Who") != speaker_key("Dr Who")
    assert speaker_key("Anna") != speaker_key("Ana")


def test_spellings_of_one_speaker_are_one_speaker_first_spelling_kept():
    script = parse_text("Lady Bracknell: One.\nlady  bracknell: Two.\nLADYBRACKNELL: Three.\nJack: Four.")
    assert script.speakers == {"ladybracknell": "Lady Bracknell", "jack": "Jack"}
    assert script.speaker_names() == ["Lady Bracknell", "Jack"]
    assert lines(script) == [("Lady Bracknell", "One.", 1), ("Lady Bracknell", "Two.", 2),
                             ("Lady Bracknell", "Three.", 3), ("Jack", "Four.", 4)]
    assert {line.key for line in script.lines} == {"ladybracknell", "jack"}


def test_unicode_speakers_in_order_of_first_appearance():
    script = parse_text("철수: 안녕하세요.\nJosé: ¡Hola!\n철수: 반가워요.")
    assert script.speaker_names() == ["철수", "José"]
    assert lines(script) == [("철수", "안녕하세요.", 1), ("José", "¡Hola!", 2), ("철수", "반가워요.", 3)]


def test_turn_text_may_contain_colons():
    script = parse_text("A: The time is 10:30: late.")
    assert lines(script) == [("A", "The time is 10:30: late.", 1)]


# ---------------------------------------------------------------- continuation, blanks, comments

def test_indented_line_continues_the_turn():
    script = parse_text("A: Hello\n   there,\n\tfriend.\nB: Hi.")
    assert lines(script) == [("A", "Hello there, friend.", 1), ("B", "Hi.", 4)]


def test_indented_name_line_is_continuation_not_a_new_turn():
    script = parse_text("A: She said\n  B: hello.")
    assert lines(script) == [("A", "She said B: hello.", 1)]
    assert list(script.speakers) == ["a"]


def test_unindented_line_without_name_continues():
    script = parse_text("A: It was a dark night,\nand the rain fell!\nB: Hm.")
    assert lines(script) == [("A", "It was a dark night, and the rain fell!", 1), ("B", "Hm.", 3)]


def test_line_no_is_where_the_text_started():
    script = parse_text("A:\n   Hello\n   there.\nB: Yes.")
    assert lines(script) == [("A", "Hello there.", 2), ("B", "Yes.", 4)]


def test_blank_lines_say_nothing_and_end_nothing():
    script = parse_text("\n\nA: One\n\n   \ntwo\n\n\t\nB: Three\n\n")
    assert lines(script) == [("A", "One two", 3), ("B", "Three", 9)]
    assert all(isinstance(e, Line) for e in script.events)


def test_comments_are_skipped_and_hash_inside_text_is_kept():
    text = "# a comment\nA: We are #1 # really\n# Another: comment\n  more\n#B: not a turn"
    script = parse_text(text)
    assert lines(script) == [("A", "We are #1 # really more", 2)]
    assert script.speaker_names() == ["A"]


# ---------------------------------------------------------------- text before any turn

@pytest.mark.parametrize("text, line", [
    ("Hello there.\nA: hi", 1),
    ("# comment\n\n   indented text\nA: hi", 3),
    ("\n\nJust words, no name\nA: hi", 3),
])
def test_text_before_any_turn_is_an_error(text, line):
    raises_at(text, line, match="before any turn")


@pytest.mark.parametrize("text", ["Bob!: hi\nA: ok", "Who?: hi", "a/b: hi"])
def test_invalid_name_before_any_turn_is_an_error(text):
    err = raises_at(text, 1, match="invalid speaker name")
    assert text.split(":")[0] in err.message


def test_script_error_is_an_input_error():
    with pytest.raises(InputError):
        parse_text("no turn here")


# ---------------------------------------------------------------- pauses

@pytest.mark.parametrize("directive, seconds", [
    ("[pause 800ms]", 0.8), ("[pause 1.5s]", 1.5), ("[PAUSE 2s]", 2.0), ("[pause .5s]", 0.5),
    ("[Pause 250 MS]", 0.25), ("[ pause 3s ]", 3.0), ("[pause 0s]", 0.0), ("[pause 10ms]", 0.01),
])
def test_pause_on_its_own_line(directive, seconds):
    script = parse_text(f"A: One.\n{directive}\nB: Two.")
    assert script.events == [Line("A", "One.", 1), Pause(seconds, 2), Line("B", "Two.", 3)]
    assert script.events[1].seconds == pytest.approx(seconds, abs=0)


def test_pause_inside_a_turn_splits_it():
    script = parse_text("A: Let me think. [pause 1.5s] Yes.\n  I am sure.")
    assert script.events == [Line("A", "Let me think.", 1), Pause(1.5, 1),
                             Line("A", "Yes. I am sure.", 1)]


def test_pause_on_own_line_inside_a_turn_keeps_the_speaker():
    script = parse_text("A: One\n   [pause 300ms]\n   two\nthree")
    assert script.events == [Line("A", "One", 1), Pause(0.3, 2), Line("A", "two three", 3)]


def test_two_pauses_in_a_row():
    script = parse_text("A: a [pause 1s][pause 200ms] b")
    assert script.events == [Line("A", "a", 1), Pause(1.0, 1), Pause(0.2, 1), Line("A", "b", 1)]


def test_pause_before_the_first_turn_is_allowed():
    script = parse_text("# intro\n[pause 2s]\nA: Hello.")
    assert script.events == [Pause(2.0, 2), Line("A", "Hello.", 3)]


@pytest.mark.parametrize("directive", [
    "[pause soon]", "[pause 5 minutes]", "[pause]", "[pause 2]", "[pause -1s]", "[pause 1h]", "[pause 1.s]",
])
def test_malformed_pause_is_an_error_naming_the_line(directive):
    err = raises_at(f"A: One.\nB: Two {directive} three.", 2, match="bad pause")
    assert "[pause 800ms]" in err.message


def test_malformed_pause_on_its_own_line():
    raises_at("A: x\n\n[pause soon]\n", 3, match="bad pause")


# ---------------------------------------------------------------- stage directions

def test_directions_are_not_spoken_by_default():
    script = parse_text("A: Thank you. [laughs] It is good. [to B]\nB: [quietly] Yes.")
    assert lines(script) == [("A", "Thank you. It is good.", 1), ("B", "Yes.", 2)]


def test_directions_are_spoken_as_words_when_asked():
    script = parse_text("A: Thank you. [laughs] It is good.\nB: [quietly] Yes.", speak_directions=True)
    assert lines(script) == [("A", "Thank you. laughs It is good.", 1), ("B", "quietly Yes.", 2)]


def test_pause_is_never_spoken_even_with_speak_directions():
    script = parse_text("A: a [pause 1s] b", speak_directions=True)
    assert script.events == [Line("A", "a", 1), Pause(1.0, 1), Line("A", "b", 1)]


def test_a_direction_only_line_yields_no_line():
    script = parse_text("A: [laughs]\nB: Hi.\n  [sighs]\n[door slams]\nA: Bye.")
    assert lines(script) == [("B", "Hi.", 2), ("A", "Bye.", 5)]
    assert all(isinstance(e, Line) for e in script.events)


def test_direction_only_line_before_first_turn_is_ignored():
    script = parse_text("[Night. A studio.]\nA: Hello.")
    assert script.events == [Line("A", "Hello.", 2)]


def test_spoken_direction_before_first_turn_is_an_error():
    raises_at("[Night. A studio.]\nA: Hello.", 1, speak_directions=True)


@pytest.mark.parametrize("text, line", [
    ("A: hello [laughs", 1),
    ("A: ok\nB: hello ] there", 2),
    ("A: ok\n  [unclosed\nB: x", 2),
    ("A: hi [a [b] c]", 1),
])
def test_unbalanced_bracket_is_an_error(text, line):
    raises_at(text, line, match="unbalanced bracket")


@pytest.mark.parametrize("text", ["A: [oops hello [laughs] there", "A: oops] hi [laughs]"])
def test_unbalanced_bracket_before_a_balanced_one_is_an_error(text):
    raises_at(text, 1, match="unbalanced bracket")


# ---------------------------------------------------------------- encodings and files

BASE_TEXT = "# c\nA: Héllo, 철수.\n  more [pause 1s] after\n\nB: [laughs] Bye.\n"


@pytest.mark.parametrize("data", [
    BASE_TEXT.encode("utf-8"),
    b"\xef\xbb\xbf" + BASE_TEXT.encode("utf-8"),
    BASE_TEXT.replace("\n", "\r\n").encode("utf-8"),
    b"\xef\xbb\xbf" + BASE_TEXT.replace("\n", "\r\n").encode("utf-8"),
], ids=["utf8-lf", "bom-lf", "utf8-crlf", "bom-crlf"])
def test_bom_and_line_ends_give_identical_events(write_script, data):
    path = write_script(data)
    script = load(path)
    assert script.path == str(path)
    assert script.events == [Line("A", "Héllo, 철수. more", 2), Pause(1.0, 3), Line("A", "after", 3),
                             Line("B", "Bye.", 5, ("laughs",))]
    assert script.speaker_names() == ["A", "B"]   # no BOM glued to the first name


def test_decode_strips_bom():
    assert decode(b"\xef\xbb\xbfA: hi") == "A: hi"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_bom_is_an_error(write_script, codec):
    data = "A: hi\n".encode(codec)
    if codec != "utf-16":
        data = ("\ufeff" + "A: hi\n").encode(codec)
    path = write_script(data)
    with pytest.raises(ScriptError, match="UTF-16") as info:
        load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "UTF-8" in str(info.value)


@pytest.mark.parametrize("data, line, byte", [
    (b"A: caf\xe9\n", 1, "0xe9"),
    (b"A: ok\n\nB: na\xefve\n", 3, "0xef"),
    (b"# c\nA: one\n  two \xff\n", 3, "0xff"),
])
def test_invalid_utf8_names_the_line(write_script, data, line, byte):
    path = write_script(data)
    with pytest.raises(ScriptError, match="not valid UTF-8") as info:
        load(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert byte in str(info.value)


def test_invalid_utf8_after_bom_names_the_right_line_and_byte():
    with pytest.raises(ScriptError) as info:
        decode(b"\xef\xbb\xbfA: ok\n\n\xe9\n", path="d.txt")
    assert info.value.line == 3
    assert "0xe9" in str(info.value)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "[pause 1s]\n", "A: [laughs]\n",
                                  "A:\nB:   \n"])
def test_a_script_with_no_spoken_lines_is_an_error(write_script, text):
    path = write_script(text)
    with pytest.raises(ScriptError, match="no spoken lines") as info:
        load(path)
    assert str(info.value).startswith(f"{path}: ")


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(ScriptError, match="cannot read") as info:
        load(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.exit_code == 2


def test_directory_names_the_path(tmp_path):
    with pytest.raises(ScriptError, match="directory") as info:
        load(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: ")


def test_load_passes_speak_directions(write_script):
    path = write_script("A: [softly] hi")
    assert lines(load(path)) == [("A", "hi", 1)]
    assert lines(load(path, speak_directions=True)) == [("A", "softly hi", 1)]


def test_load_accepts_str_path(write_script):
    path = write_script("A: hi")
    assert load(str(path)).events == [Line("A", "hi", 1)]


def test_error_path_defaults_to_placeholder():
    with pytest.raises(ScriptError) as info:
        parse_text("words")
    assert str(info.value).startswith("<script>:1: ")


# ---------------------------------------------------------------- the shipped sample

def test_sample_dialog_parses():
    script = load(SAMPLE)
    assert script.speaker_names() == ["Narrator", "Lady Bracknell", "Dr. Who"]
    assert script.events == [
        Line("Narrator", "A small radio studio, late at night.", 4, ("quietly",)),
        Pause(0.6, 5),
        Line("Lady Bracknell",
             "Good evening. You are listening to the night shift. An indented line continues the same turn.", 7),
        Line("Dr. Who", "Thank you for having me. It is good to be here.", 9, ("laughs",)),
        Line("Lady Bracknell", "Names match without regard to case or spaces, so this is still Lady Bracknell.",
             11),
        Line("Dr. Who", "Let me think.", 12),
        Pause(1.5, 12),
        Line("Dr. Who", "Yes, I am sure.", 12),
        Line("Narrator", "And with that, the lights went out.", 13),
    ]


def test_sample_dialog_exercises_every_rule():
    raw = SAMPLE.read_text(encoding="utf-8")
    assert any(l.startswith("#") for l in raw.splitlines())                       # comments
    assert any(l[:1].isspace() and l.strip() for l in raw.splitlines())          # continuation
    assert "lady bracknell:" in raw and "Lady Bracknell:" in raw                  # name matching
    script = load(SAMPLE)
    assert sum(isinstance(e, Pause) for e in script.events) == 2                  # pauses
    spoken = " ".join(l.text for l in script.lines)
    assert "quietly" not in spoken and "laughs" not in spoken and "[" not in spoken  # directions
    with_directions = " ".join(l.text for l in load(SAMPLE, speak_directions=True).lines)
    assert "quietly" in with_directions and "laughs" in with_directions



# ---------------------------------------------------------------- labels: directions, punctuation, overrides

def test_parenthetical_after_a_name_is_a_direction_of_that_turn():
    script = parse_text("Tom (aside): How very dull.\nTom: Back again.")
    assert script.events == [Line("Tom", "How very dull.", 1, ("aside",)), Line("Tom", "Back again.", 2)]
    assert script.speaker_names() == ["Tom"]


def test_parenthetical_is_never_spoken_even_with_speak_directions():
    script = parse_text("Tom (aside, whispering): Psst.", speak_directions=True)
    assert script.events == [Line("Tom", "Psst.", 1, ("aside", "whispering"))]


@pytest.mark.parametrize("name", ["Dr. Smith, D.D.", "Smith & Jones", "O’Brien", "Mary-Kate", "Agent 7"])
def test_punctuation_common_in_names_is_accepted(name):
    script = parse_text(f"A: Hello.\n{name}: Indeed.")
    assert lines(script) == [("A", "Hello.", 1), (name, "Indeed.", 2)]


def test_brace_override_is_kept_unparsed_for_that_turn_only():
    script = parse_text("A {en-us+f3,rate=1.2x}: One. [pause 1s] Two.\nA: Three.")
    assert script.events == [Line("A", "One.", 1, (), "en-us+f3,rate=1.2x"), Pause(1.0, 1),
                             Line("A", "Two.", 1, (), "en-us+f3,rate=1.2x"), Line("A", "Three.", 2)]


def test_direction_and_override_together():
    script = parse_text("B (sadly) {rate=0.9x}: Oh.")
    assert script.events == [Line("B", "Oh.", 1, ("sadly",), "rate=0.9x")]


def test_directions_accumulate_over_the_turn_and_reset_at_the_next():
    script = parse_text("A: [softly] One. [pause 1s] [slowly] Two.\nB: Three.")
    assert [(l.text, l.directions) for l in script.lines] == [
        ("One.", ("softly",)), ("Two.", ("softly", "slowly")), ("Three.", ())]


@pytest.mark.parametrize("text, line, match", [
    ("A: hi\nBob!: hello", 2, "'!' is not allowed"),
    ("A: hi\nThe rain, which had fallen all night long: stopped", 2, "41 characters"),
    ("A: hi\n (aside): hm", None, None),                       # indented: continuation, not a label
    ("A: hi\n(aside): hm", 2, "the name is empty"),
    ("A: hi\nTom (): hm", 2, "empty direction"),
    ("A: hi\nTom {}: hm", 2, "empty voice override"),
])
def test_a_label_that_is_not_valid_is_an_error_naming_the_line(text, line, match):
    if line is None:
        assert lines(parse_text(text)) == [("A", "hi (aside): hm", 1)]
        return
    raises_at(text, line, match=match)


def test_prose_with_a_colon_continues_when_indented_and_is_a_turn_when_not():
    script = parse_text("A: Remember this.\n   Note: the keys are under the mat.\nNote: a new speaker.")
    assert lines(script) == [("A", "Remember this. Note: the keys are under the mat.", 1),
                             ("Note", "a new speaker.", 3)]


def test_times_and_ratios_are_not_labels():
    script = parse_text("A: We meet at\n10:30 sharp, 3:1 odds.")
    assert lines(script) == [("A", "We meet at 10:30 sharp, 3:1 odds.", 1)]


def test_a_colon_beyond_the_label_window_is_text():
    prose = "x" * (MAX_LABEL_LENGTH + 1) + ": still text"   # the label before a colon is at most 100
    assert lines(parse_text(f"A: hi\n{prose}")) == [("A", f"hi {prose}", 1)]


def test_label_search_is_linear_on_a_1mb_line():
    # The old label regex backtracked quadratically (29 s for 160 kB); now only the first
    # MAX_LABEL_LENGTH + 1 characters are ever matched, so 1 MB is as quick as 1 kB.  A
    # sentence that long is more than one spoken line may say: refused, naming its line.
    with pytest.raises(ScriptError, match="a sentence of 1,000,002 characters") as err:
        parse_text("A: hi\nB" + " " * 1_000_000 + "x\n")
    assert err.value.line == 2
    script = parse_text("A: hi\nB" + " x." * 400_000 + "\n")      # 1.2 MB of short sentences: split
    assert " ".join(l.text for l in script.lines) == "hi B" + " x." * 400_000
    assert {l.speaker for l in script.lines} == {"A"} and [l.line_no for l in script.lines][:2] == [1, 2]
    assert max(len(l.text) for l in script.lines) <= MAX_LINE_CHARS and len(script.lines) == 121


@pytest.mark.parametrize("directive, match", [
    ("[pause 99999999999s]", "bad pause"),
    ("[pause " + "9" * 300 + "ms]", "bad pause"),
    ("[pause 3600s]", "longer than the most allowed"),
    ("[pause 60001ms]", "longer than the most allowed"),
])
def test_absurd_pauses_are_errors(directive, match):
    raises_at(f"A: hi {directive} there", 1, match=match)


def test_the_longest_pause_is_allowed():
    assert parse_text(f"A: hi [pause {MAX_PAUSE_SECONDS:g}s] there").events[1] == Pause(MAX_PAUSE_SECONDS, 1)
