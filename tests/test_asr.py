"""The recognizer check (--check asr) on the real default voices: pocketsphinx hears what they say."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dialog_tts.backends import get_backend
from dialog_tts.cli import main
from dialog_tts.io.audio import Clip, pcm24
from dialog_tts.quality.asr import Recognizer, comparable, recognizes
from dialog_tts.quality.gate import Gate, GateSettings
from dialog_tts.script.voice import Voice

SENTENCES = [
    "The weather was cold and wet all week.",
    "Please bring the red umbrella to the station.",
    "We should have left the house much earlier this morning.",
]
WRONG = "Nobody knows where the seven golden keys of the castle are hidden."

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer()


def take(backend: str, voice: str, text: str) -> tuple[Clip, Voice, object]:
    inst = get_backend(backend).bind({}, workers=1)
    resolved = inst.resolve(Voice(voice, backend))
    return pcm24(inst.synthesize(text, resolved)), resolved, inst


def kept_take(recognizer: Recognizer, voice: str, text: str) -> tuple[float, list[str]]:
    """The word error rate of the take a render would keep with --max-wer 0.6 (stricter than the default
    0.8): piper draws fresh noise on every call (onnxruntime takes no per-call seed), so, like the gate,
    make up to its default number of takes and keep the best.  Every take, kept or not, must be told apart
    from a wrong text."""
    heard = []
    best = 1.0
    for _ in range(GateSettings().takes):
        clip, _voice, _inst = take("piper", voice, text)
        wer, words = recognizer.word_error_rate(clip, text)
        heard.append(words)
        wrong, _ = recognizer.word_error_rate(clip, WRONG)
        assert wrong >= 0.8, (WRONG, words)
        best = min(best, wer)
        if wer <= 0.6:                                          # within --max-wer 0.6: kept
            break
    return best, heard


@pytest.mark.parametrize("voice", ["joe", "joe-tenor", "joe-light"])
def test_the_default_voices_are_heard_and_a_wrong_text_is_not(recognizer, voice):
    # Measured on 12 takes of each sentence: joe 0-0.4 per take; the CI run of 346f8e7 drew one take at
    # 0.625 ("whispering the red and grow up to the station"), which the gate would have retaken.
    rates = []
    for text in SENTENCES:
        wer, heard = kept_take(recognizer, voice, text)
        rates.append(wer)
        assert wer <= 0.6, (text, heard)
    assert sum(rates) / len(rates) <= 0.3


def test_the_gate_fails_a_take_that_says_something_else(recognizer):
    gate = Gate(GateSettings(check="asr"))
    for _ in range(GateSettings().takes):         # a take of the right words passes within the gate's takes
        clip, voice, inst = take("piper", "joe", SENTENCES[2])
        if gate.judge(clip, SENTENCES[2], voice, inst).passed:
            break
    else:
        pytest.fail(f"no take of {SENTENCES[2]!r} passed")
    babble, _voice, _inst = take("piper", "joe", WRONG)        # a take of other words, about as long
    verdict = gate.judge(babble, SENTENCES[2], voice, inst)
    assert {c.name for c in verdict.failed} == {"asr"}
    assert verdict.notes and verdict.notes[0].startswith("heard: ")


def test_numbers_and_abbreviations_are_compared_as_spoken():
    assert comparable("Dr. Patel sold 1,250 tickets.", "doctor patel sold one thousand two hundred fifty tickets") \
        == ("doctor patel sold tickets", "doctor patel sold tickets")
    assert recognizes("en-US") and recognizes("en-gb-x-rp") and not recognizes("ko") and not recognizes("")


def test_other_languages_are_skipped_once_with_a_warning(glitchy, write_script, tmp_path):
    glitchy.lang = "ko-KR"
    script = write_script("A: 안녕하세요. 만나서 반갑습니다.\nB: 감사합니다.\nA: 좋은 아침입니다.\n")
    report = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["-s", str(script), "-o", str(tmp_path / "o.wav"), "--backend", "glitchy",
                                       "--check", "asr", "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("the recognizer check skips glitchy voices in ko-KR (it recognizes only English)") == 1
    lines = json.loads(report.read_text())["lines"]
    assert all("asr" not in line["quality"]["checks"] and line["quality"]["passed"] for line in lines)


@pytest.mark.parametrize(("backend", "voice"), [("espeak", "en-us"), ("piper", "joe-bass")])
def test_voices_the_recognizer_does_not_understand_are_skipped_once(write_script, tmp_path, backend, voice):
    """espeak's formant speech, and joe shifted far down, are not understood by pocketsphinx."""
    script = write_script("A: Good morning to you.\nA: And a good morning to you too.\n")
    result = CliRunner().invoke(main, ["-s", str(script), "-o", str(tmp_path / "o.wav"), "--voices", f"A={voice}",
                                       "--backend", backend, "--check", "asr"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count(f"the recognizer check skips {backend} voice {voice} (it does not understand") == 1


def test_asr_render_reports_what_was_heard(write_script, tmp_path):
    script = write_script(f"A: {SENTENCES[0]}\nB: {SENTENCES[1]}\n")
    report = tmp_path / "r.json"
    # --max-wer 0.35: a piper take above it is retaken (its noise differs every take), so the kept take is within.
    # Piper by name: Kokoro (the default cast) makes one take only, and what the recognizer hears of it differs
    # between CPUs (onnxruntime's kernels), 0.25 on one machine and 0.375 on another for the first sentence.
    result = CliRunner().invoke(main, ["-s", str(script), "-o", str(tmp_path / "o.wav"), "--backend", "piper",
                                       "--check", "asr",
                                       "--max-wer", "0.35", "--report", str(report), "--workers", "2"])
    assert result.exit_code == 0, result.output
    lines = json.loads(report.read_text())["lines"]
    for line in lines:
        asr = line["quality"]["checks"]["asr"]
        assert asr["passed"] and asr["value"] <= 0.35 and line["quality"]["heard"]
    assert np.isfinite([line["quality"]["checks"]["duration"]["value"] for line in lines]).all()


# ---------------------------------------------------------------- names and short lines (issue 26)

def test_names_and_words_outside_the_dictionary_are_no_errors():
    from dialog_tts.quality.asr import dictionary, reference, score

    assert "bracknell" in dictionary() and "quorbly" not in dictionary()     # the decoder's own dictionary
    assert [w for w, counted in reference("Lady Bracknell is coming to tea, Mr. Worthing.") if not counted] \
        == ["lady", "bracknell", "mister", "worthing"]
    # the recognizer's tries at the names, split or swapped for common words, cost nothing
    assert score("Lady Bracknell is coming to tea this afternoon.",
                 "lay the brack nell is coming to tea this afternoon") == 0.0
    assert score("I have introduced you to every one as Ernest.",
                 "i have introduced you to every one as earnest") == 0.0
    assert score("The quorbly weather was cold and wet all week.", "the quarterly weather was cold and wet all week") \
        == 0.0
    # the words that count are still scored: a take of other words is far off
    assert score("Lady Bracknell is coming to tea this afternoon.", WRONG) >= 0.8
    assert score(SENTENCES[0], "the weather was old and wet all week") == pytest.approx(1 / 8)


def test_a_line_too_short_to_judge_is_not_judged():
    from dialog_tts.quality.asr import judged

    for text in ("Mr. Ernest Worthing.", "Lady Augusta Bracknell.", "Yes, sir.", "Miss Prism! Miss Prism!"):
        assert not judged(text), text
    assert judged(SENTENCES[0]) and judged("Gwendolen is devoted to bread and butter.")


@pytest.mark.parametrize("text", ["Mr. Ernest Worthing.", "Lady Augusta Bracknell."])
def test_a_title_a_given_name_and_a_surname_pass_the_recognizer_check(text):
    """Issue 26: such a line scored WER 1.0 on all three takes, and the render failed."""
    gate = Gate(GateSettings(check="asr"))
    clip, voice, inst = take("piper", "joe", text)
    verdict = gate.judge(clip, text, voice, inst)
    assert verdict.passed, verdict.describe()
    assert "asr" not in {c.name for c in verdict.checks}                 # not judged by WER at all
