"""The quality gate in a render: bad takes caught, retaken, reported; the kept take deterministic."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from conftest import GlitchyBackend
from dialog_tts import synthesize_dialog
from dialog_tts.cli import main
from dialog_tts.errors import SynthesisFailed
from dialog_tts.quality.checks import Thresholds
from dialog_tts.quality.gate import Gate, GateSettings
from dialog_tts.script.voice import Voice
from dialog_tts.synth.engine import Engine
from dialog_tts.synth.jobs import Job

LINES = {
    "truncate": "Nobody in the village could have guessed what would happen next.",
    "silence": "The keys to the lighthouse were under the kitchen table all along.",
    "loop": "We sold twelve hundred tickets in two days, and then it rained.",
    "clip": "Listen to me, the storm will reach the harbour before breakfast.",
    "tone": "Professor Nakamura carried the manuscript all the way to Vienna.",
}
SCRIPT = "".join(f"{'AB'[i % 2]}: {text}\n" for i, text in enumerate(LINES.values()))


def run(jobs_texts, glitchy, **settings):
    engine = Engine(2, gate=Gate(GateSettings(**settings)))
    voice = Voice("g1", "glitchy")
    return engine.run([Job(t, voice, "s.txt", i + 1, "A") for i, t in enumerate(jobs_texts)])


@pytest.mark.parametrize("fault", list(LINES))
def test_each_fault_is_caught_and_the_retake_fixes_it(glitchy, fault):
    text = LINES[fault]
    glitchy.plan[text] = [fault]
    result = run([text], glitchy)
    outcome = result.outcomes[0]
    assert result.failures == []
    assert outcome.quality is not None and outcome.quality.kept == 2
    first, second = outcome.quality.takes
    assert not first.verdict.passed and second.verdict.passed
    assert sorted(glitchy.calls) == [(text, 1), (text, 2)]
    assert result.stats.retakes == 1


def test_a_line_that_never_passes_fails_and_nothing_is_cached(glitchy, write_script, tmp_path, private_cache):
    glitchy.plan[LINES["loop"]] = ["loop", "loop", "loop"]
    out = tmp_path / "o.wav"
    with pytest.raises(SynthesisFailed) as info:
        synthesize_dialog(write_script(SCRIPT), out, backend="glitchy", voices={"A": "g1", "B": "g2"})
    assert len(info.value.failures) == 1
    message = str(info.value)
    assert "no take passed the quality gate (3 taken" in message and "duration" in message
    assert not out.exists()
    glitchy.calls.clear()
    glitchy.plan[LINES["loop"]] = ["loop", "clean"]      # the next run retakes only that line
    synthesize_dialog(write_script(SCRIPT), out, backend="glitchy", voices={"A": "g1", "B": "g2"})
    assert glitchy.calls == [(LINES["loop"], 1), (LINES["loop"], 2)]


def test_keep_going_keeps_the_best_take_flagged_and_reports_it(glitchy, write_script, tmp_path):
    glitchy.plan[LINES["clip"]] = ["clip"] * 3
    glitchy.plan[LINES["truncate"]] = ["truncate"]
    report = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["-s", str(write_script(SCRIPT)), "-o", str(tmp_path / "o.wav"),
                                       "--backend", "glitchy", "--keep-going", "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "3 retakes" in result.stderr and "1 flagged" in result.stderr
    lines = json.loads(report.read_text())["lines"]
    truncated, clipped = lines[0], lines[3]
    assert truncated["quality"]["kept_take"] == 2 and not truncated["quality"]["flagged"]
    assert [t["failed"] for t in truncated["quality"]["takes"]] == [["duration"], []]
    assert clipped["quality"]["flagged"] and clipped["quality"]["checks"]["clipping"]["passed"] is False
    assert len(clipped["quality"]["takes"]) == 3
    assert json.loads(report.read_text())["totals"]["retakes"] == 3


def test_an_accepted_take_is_cached_and_not_rechecked(glitchy, write_script, tmp_path):
    glitchy.plan[LINES["silence"]] = ["silence"]
    out, report = tmp_path / "o.wav", tmp_path / "r.json"
    synthesize_dialog(write_script(SCRIPT), out, backend="glitchy")
    first = sf.read(out)[0]
    glitchy.calls.clear()
    glitchy.plan[LINES["silence"]] = ["silence"] * 3       # would never pass now: but the cache holds take 2
    result = synthesize_dialog(write_script(SCRIPT), out, backend="glitchy", force=True, report=report)
    assert glitchy.calls == [] and result.totals.cached == len(LINES)
    assert np.array_equal(sf.read(out)[0], first)


def test_the_kept_take_is_deterministic(glitchy, write_script, tmp_path, monkeypatch):
    outs = []
    for i in range(2):
        monkeypatch.setenv("DIALOG_TTS_CACHE_DIR", str(tmp_path / f"cache{i}"))   # no shared cache
        for fault, text in LINES.items():
            glitchy.plan[text] = [fault, fault]                                 # take 3 passes
        out = tmp_path / f"o{i}.wav"
        synthesize_dialog(write_script(SCRIPT), out, backend="glitchy", workers=3)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_check_none_turns_the_gate_off(glitchy, write_script, tmp_path):
    glitchy.plan[LINES["silence"]] = ["silence"]
    result = synthesize_dialog(write_script(SCRIPT), tmp_path / "o.wav", backend="glitchy", check="none")
    assert glitchy.calls.count((LINES["silence"], 1)) == 1 and len(glitchy.calls) == len(LINES)
    assert result.totals.retakes == 0 and result.lines[1].quality is None


def test_thresholds_are_render_options(glitchy, write_script, tmp_path):
    from dialog_tts.quality.checks import Thresholds

    strict = Thresholds(max_duration=0.3, duration_slack=0.0)
    result = synthesize_dialog(write_script(SCRIPT), tmp_path / "o.wav", backend="glitchy", keep_going=True,
                               thresholds=strict, strict=True, cache=False)
    assert result.totals.flagged == len(LINES) and result.totals.retakes == 2 * len(LINES)
    assert all(line.flags and "duration" in line.flags[0] for line in result.lines)
    # too long for these limits, but no loop: without --strict a soft failure, kept with a warning
    result = synthesize_dialog(write_script(SCRIPT), tmp_path / "o.wav", backend="glitchy", thresholds=strict,
                               force=True, cache=False)
    assert result.totals.flagged == 0 and result.totals.failed == 0 and result.totals.warned == len(LINES)
    assert all(line.warnings and "duration" in line.warnings[0] and not line.flags for line in result.lines)


def test_takes_one_fails_at_once(glitchy):
    glitchy.plan[LINES["tone"]] = ["tone"]
    result = run([LINES["tone"]], glitchy, takes=1)
    assert len(result.failures) == 1 and glitchy.calls == [(LINES["tone"], 1)]


def test_deterministic_backends_are_not_retaken(write_script, tmp_path):
    """espeak says every take the same way: a failing line fails after one take."""
    from dialog_tts.quality.checks import Thresholds

    engine = Engine(1, gate=Gate(GateSettings(thresholds=Thresholds(max_duration=0.1, duration_slack=0.0),
                                              strict=True)))
    result = engine.run([Job("This line is far longer than any limit this strict allows.", Voice("en-us", "espeak"))])
    assert result.outcomes[0].quality is not None and len(result.outcomes[0].quality.takes) == 1
    assert len(result.failures) == 1


def test_bad_gate_options_are_usage_errors(write_script, tmp_path):
    script = str(write_script("A: Hi.\n"))
    for args in (["--takes", "0"], ["--check", "loud"], ["--max-wer", "0"]):
        result = CliRunner().invoke(main, ["-s", script, "-o", str(tmp_path / "o.wav"), *args])
        assert result.exit_code == 2, (args, result.output)


def test_bad_gate_options_are_usage_errors_before_the_engine_is_made(write_script, tmp_path):
    """A renderer makes its gate with its engine, at the first render; a gate option given is checked
    when the renderer is made, so a dry run (which makes no engine) rejects it too."""
    from dialog_tts.api import Renderer, RenderOptions, plan_dialog
    from dialog_tts.errors import InputError

    script = write_script("A: Hi.\n")
    for bad in ({"takes": 0}, {"check": "loud"}, {"max_wer": 0.0}, {"takes": 11}):
        with pytest.raises(InputError):
            Renderer(RenderOptions(**bad))
        with pytest.raises(InputError):
            plan_dialog(script, cache_dir=tmp_path / "cache", **bad)
    with Renderer(RenderOptions(takes=2, cache_dir=tmp_path / "cache")) as renderer:
        assert renderer.engine.gate is not None and renderer.engine.gate.takes == 2
    with Renderer(RenderOptions(cache_dir=tmp_path / "cache")) as renderer:
        assert renderer.engine.gate is not None and renderer.engine.gate.settings == GateSettings()


def test_the_review_page_marks_flagged_lines(glitchy, write_script, tmp_path):
    glitchy.plan[LINES["clip"]] = ["clip"] * 3
    page = tmp_path / "review.html"
    synthesize_dialog(write_script(SCRIPT), tmp_path / "o.wav", backend="glitchy", keep_going=True, review=page)
    html = page.read_text(encoding="utf-8")
    assert html.count('class="line flagged"') == 1
    assert "flagged: clipping" in html and html.count("flag-mark") >= 1


# ---------------------------------------------------------------- soft checks, --strict, checks of cached takes

def test_a_line_failing_only_soft_checks_is_kept_with_a_warning_and_marked(glitchy, write_script, tmp_path):
    """A long pause on every take (a voice that dwells on it) is a real reading: kept, warned, marked."""
    text = LINES["loop"]
    glitchy.plan[text] = ["pause"] * 3
    out, report, page = tmp_path / "o.wav", tmp_path / "r.json", tmp_path / "review.html"
    result = CliRunner().invoke(main, ["-s", str(write_script(SCRIPT)), "-o", str(out), "--backend", "glitchy",
                                       "--report", str(report), "--review", str(page)])
    assert result.exit_code == 0, result.output
    assert "1 with warnings (only soft checks failed)" in result.stderr and "kept with a warning" in result.stderr
    line = json.loads(report.read_text())["lines"][2]
    assert line["quality"]["warned"] and not line["quality"]["flagged"] and line["error"] is None
    assert line["quality"]["checks"]["pause"] == {**line["quality"]["checks"]["pause"], "passed": False, "soft": True}
    assert len(line["quality"]["takes"]) == 3 and line["warnings"] and "pause" in line["warnings"][0]
    html = page.read_text(encoding="utf-8")
    assert html.count('class="line warned"') == 1 and "listen: pause" in html
    assert out.exists()


def test_strict_makes_every_check_hard(glitchy, write_script, tmp_path):
    text = LINES["loop"]
    glitchy.plan[text] = ["pause"] * 3
    script = str(write_script(SCRIPT))
    result = CliRunner().invoke(main, ["-s", script, "-o", str(tmp_path / "o.wav"), "--backend", "glitchy",
                                       "--strict", "--no-cache"])
    assert result.exit_code == 1 and "1 of 5 lines failed" in result.output + result.stderr
    assert not (tmp_path / "o.wav").exists()
    kept = synthesize_dialog(script, tmp_path / "k.wav", backend="glitchy", strict=True, keep_going=True, cache=False)
    assert kept.totals.flagged == 1 and kept.totals.warned == 0 and kept.lines[2].flags


def test_hard_failures_still_fail_the_line(glitchy, write_script, tmp_path):
    for fault in ("silence", "clip", "truncate", "tone", "gap"):
        glitchy.plan[LINES[fault if fault in LINES else "loop"]] = [fault] * 3
    with pytest.raises(SynthesisFailed) as info:
        synthesize_dialog(write_script(SCRIPT), tmp_path / "o.wav", backend="glitchy", cache=False)
    assert len(info.value.failures) == 5


@pytest.mark.parametrize("bad", ["no", 1, None])
def test_strict_is_checked_by_the_api(bad, write_script, tmp_path):
    from dialog_tts.errors import InputError

    with pytest.raises(InputError, match="strict"):
        synthesize_dialog(write_script("A: Hi.\n"), tmp_path / "o.wav", backend="glitchy", strict=bad)


def test_a_cached_line_keeps_its_checks_and_warnings(glitchy, write_script, tmp_path):
    glitchy.plan[LINES["loop"]] = ["pause"] * 3
    script = write_script(SCRIPT)
    first = synthesize_dialog(script, tmp_path / "o.wav", backend="glitchy")
    glitchy.calls.clear()
    report = tmp_path / "r.json"
    again = synthesize_dialog(script, tmp_path / "o.wav", backend="glitchy", force=True, report=report)
    assert glitchy.calls == [] and again.totals.cached == len(LINES)
    assert again.totals.warned == 1 and again.lines[2].warnings == first.lines[2].warnings
    for before, line in zip(first.lines, json.loads(report.read_text())["lines"]):
        assert line["quality"] is not None and line["quality"]["cached"] is True
        assert line["quality"]["checks"] == before.quality["checks"]


def test_stricter_limits_judge_a_cached_take_again(glitchy, write_script, tmp_path):
    """The cache keeps a take's figures, not its verdict: limits given later apply to it."""
    script = write_script(SCRIPT)
    synthesize_dialog(script, tmp_path / "o.wav", backend="glitchy")
    glitchy.calls.clear()
    with pytest.raises(SynthesisFailed):
        synthesize_dialog(script, tmp_path / "o.wav", backend="glitchy", force=True, strict=True,
                          thresholds=Thresholds(max_duration=0.1, duration_slack=0.0))
    assert len(glitchy.calls) == 3 * len(LINES)           # every cached take failed them: taken again


class CountingSpeech(GlitchyBackend):
    """espeak's speech (the recognizer can hear it), counting its calls; never retaken."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        from dialog_tts.backends import get_backend

        self.espeak = get_backend("espeak").bind({}, workers=1)

    def resolve(self, voice):
        return replace(voice, name=voice.name or "en-us")

    def retake(self, voice, take):
        return None

    def synthesize(self, text, voice):
        with self._calls_lock:
            self.calls.append((text, 1))
        return self.espeak.synthesize(text, self.espeak.resolve(Voice("en-us", "espeak")))


def test_a_check_asked_for_later_runs_on_the_cached_takes(write_script, tmp_path, monkeypatch):
    """--check asr after a basic render hears the cached takes: nothing is synthesized again, each cached
    line's report has the recognizer's result, and the result is kept: a third render hears nothing."""
    pytest.importorskip("pocketsphinx")
    from conftest import registered
    from dialog_tts.quality.asr import Recognizer

    inst = CountingSpeech()
    gen = registered("counting", inst)
    next(gen)
    try:
        lines = ["The weather was cold and wet all week.", "Please bring the red umbrella to the station."]
        script = write_script("".join(f"{'AB'[i]}: {t}\n" for i, t in enumerate(lines)))
        synthesize_dialog(script, tmp_path / "o.wav", backend="counting")
        assert len(inst.calls) == 2
        heard = []
        real = Recognizer.transcribe
        monkeypatch.setattr(Recognizer, "transcribe", lambda self, clip: heard.append(1) or real(self, clip))
        report = tmp_path / "r.json"
        result = synthesize_dialog(script, tmp_path / "o.wav", backend="counting", check="asr", max_wer=10.0,
                                   report=report)        # not "up to date": other checks were asked for
        assert len(inst.calls) == 2 and result.totals.cached == 2 and len(heard) == 2
        for line in json.loads(report.read_text())["lines"]:
            assert line["cache_hit"] and "asr" in line["quality"]["checks"] and "heard" in line["quality"]
        synthesize_dialog(script, tmp_path / "o.wav", backend="counting", check="asr", max_wer=10.0, force=True)
        assert len(inst.calls) == 2 and len(heard) == 2          # the recognizer's result came from the cache
    finally:
        gen.close()
