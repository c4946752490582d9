"""Casting by gender: spec and map fields, titles in names, alternating sexes, the reasons shown."""

from __future__ import annotations

import logging
import textwrap

import pytest
from click.testing import CliRunner

from dialog_tts.cli import main
from dialog_tts.errors import VoiceSpecError
from dialog_tts.script.casting import cast, gender_hint
from dialog_tts.script.parse import parse_text
from dialog_tts.script.speakers import load_speaker_map, parse_assignment


def palette_of(gender: str) -> list[str]:
    """The default cast's voices of one sex (Kokoro's palette), in the order it picks them."""
    from dialog_tts.backends import kokoro

    return [n for n in kokoro.palette_names() if kokoro.catalogue()[n].gender == gender]


def script_of(*names: str):
    return parse_text("\n".join(f"{n}: Line {i}." for i, n in enumerate(names)), path="s.txt")


@pytest.mark.parametrize("name, hint", [
    ("Lady Bracknell", ("female", "Lady")), ("Mrs. Hudson", ("female", "Mrs")), ("MISS MARPLE", ("female", "MISS")),
    ("Ms Li", ("female", "Ms")), ("Queen", ("female", "Queen")), ("Old Woman", ("female", "Woman")),
    ("Mr. Holmes", ("male", "Mr")), ("Sir Toby", ("male", "Sir")), ("Lord Darlington", ("male", "Lord")),
    ("Mister Rogers", ("male", "Mister")), ("King Lear", ("male", "King")), ("Father Brown", ("male", "Father")),
    ("Host", None), ("Dr. Watson", None), ("Missy", None), ("Mrsmith", None), ("Sirius", None),
])
def test_gender_hint_from_titles(name, hint):
    assert gender_hint(name) == hint


def test_titles_pick_voices_of_that_sex():
    voices = cast(script_of("Mr Holmes", "Sir Henry", "Lady Agatha", "Mrs Hudson"))
    assert [v.gender for v in voices.values()] == ["male", "male", "female", "female"]
    men, women = palette_of("male"), palette_of("female")
    assert [v.name for v in voices.values()] == [men[0], men[1], women[0], women[1]]
    assert voices.why["sirhenry"] == "male (title 'Sir'); default cast, first unused male voice"


@pytest.mark.parametrize("spec, gender, pan", [
    ("A=female,pan=-0.3", "female", -0.3), ("A=male", "male", None), ("A=gender=female,rate=1.1x", "female", None),
    ("A=MALE,pan=0.5", "male", 0.5),
])
def test_gender_in_voices_spec(spec, gender, pan):
    voices = cast(script_of("Lady A", "A"), overrides=[parse_assignment(spec)])
    assert voices["a"].gender == gender
    if pan is not None:
        assert voices["a"].pan == pan
    assert voices.why["a"].startswith(f"{gender} (--voices)")
    assert voices["a"].name != voices["ladya"].name


def test_gender_overrides_the_title_and_is_named_in_the_reason(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text(textwrap.dedent("""\
        # cast
        Lord Fauntleroy:
          gender: female
        Narrator: {gender: male, pan: 0.2}
        """), encoding="utf-8")
    voices = cast(script_of("Lord Fauntleroy", "Narrator"), speaker_map=load_speaker_map(path))
    assert voices["lordfauntleroy"].gender == "female"
    assert voices.why["lordfauntleroy"] == "female (speaker map line 2); default cast, first unused female voice"
    assert voices["narrator"].gender == "male" and voices["narrator"].pan == 0.2
    assert voices.why["narrator"].startswith("male (speaker map line 4)")


@pytest.mark.parametrize("spec, match", [
    ("A=female,gender=male", "contradicts gender"), ("A=robot,gender=robot", "gender 'robot' is not one of female, male"),
])
def test_bad_gender_is_a_spec_error(spec, match):
    with pytest.raises(VoiceSpecError, match=match) as info:
        parse_assignment(spec)
    assert info.value.exit_code == 2


def test_consecutive_unknown_speakers_alternate_sexes():
    voices = cast(script_of("Host", "Guest", "Caller", "Producer", "Intern"))
    genders = [v.gender for v in voices.values()]
    assert genders == ["female", "male", "female", "male", "female"]
    assert len({v.name for v in voices.values()}) == 5            # no voice shared while one is unused
    assert "reused" not in voices.why["intern"]


def test_named_voice_sets_the_sex_the_next_speaker_alternates_from():
    voices = cast(script_of("A", "B"), overrides=[parse_assignment("A=joe")])
    assert voices.why["a"] == "--voices"
    assert (voices["b"].name, voices["b"].gender) == (palette_of("female")[0], "female")
    assert voices.why["b"] == "default cast, next distinct voice after a male one"


def test_backend_without_voices_of_that_sex_says_so():
    voices = cast(script_of("Lady Jane"), default_backend="piper")
    assert voices["ladyjane"].backend == "piper"
    assert voices.why["ladyjane"] == "female (title 'Lady'); piper's palette, no female voice there"


def test_backend_palette_by_gender():
    voices = cast(script_of("Mr A", "Ms B", "Mr C"), default_backend="espeak")
    assert [v.name for v in voices.values()] == ["en-gb-x-rp+m3", "en-us+f3", "en+m7"]


def test_dry_run_shows_the_cast_and_why(write_script):
    script = write_script("Lady Bracknell: A handbag?\nJack: Yes.\nNarrator: Silence.\n")
    result = CliRunner().invoke(main, ["-s", str(script), "--dry-run", "--voices", "Narrator=male,pan=0.4"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[-1] == "WHY"
    men, women = palette_of("male"), palette_of("female")
    assert f"kokoro:{women[0]}" in lines[1] and "female (title 'Lady'); default cast, first unused female voice" \
        in lines[1]
    assert f"kokoro:{men[0]}" in lines[2] and "male (first name 'Jack'); default cast, first unused male voice" \
        in lines[2]
    assert f"kokoro:{men[1]}" in lines[3] and "male (--voices)" in lines[3]


def test_verbose_render_logs_the_cast_and_why(write_script, tmp_path, caplog):
    script = write_script("Sir Toby: Hello.\n")
    with caplog.at_level(logging.INFO, logger="dialog_tts"):
        result = CliRunner().invoke(main, ["-s", str(script), "-o", str(tmp_path / "o.wav"), "-v"])
    assert result.exit_code == 0, result.output
    assert f"Sir Toby: kokoro:{palette_of('male')[0]},pan=+0.00 (male (title 'Sir'); default cast, first unused " \
           "male voice)" in caplog.text
