"""The quality gate in a render: bad takes caught, retaken, reported; the kept take deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dialog_tts import synthesize_dialog
from dialog_tts.cli import main
from dialog_tts.engine import Engine
from dialog_tts.errors import SynthesisFailed
from dialog_tts.gate import Gate, GateSettings
from dialog_tts.jobs import Job
from dialog_tts.voice import Voice

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
    from dialog_tts.quality import Thresholds

    result = synthesize_dialog(write_script(SCRIPT), tmp_path / "o.wav", backend="glitchy", keep_going=True,
                               thresholds=Thresholds(max_duration=0.3, duration_slack=0.0))
    assert result.totals.flagged == len(LINES) and result.totals.retakes == 2 * len(LINES)
    assert all(line.flags and "duration" in line.flags[0] for line in result.lines)


def test_takes_one_fails_at_once(glitchy):
    glitchy.plan[LINES["tone"]] = ["tone"]
    result = run([LINES["tone"]], glitchy, takes=1)
    assert len(result.failures) == 1 and glitchy.calls == [(LINES["tone"], 1)]


def test_deterministic_backends_are_not_retaken(write_script, tmp_path):
    """espeak says every take the same way: a failing line fails after one take."""
    from dialog_tts.quality import Thresholds

    engine = Engine(1, gate=Gate(GateSettings(thresholds=Thresholds(max_duration=0.1, duration_slack=0.0))))
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
