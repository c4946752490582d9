"""The engine (issue 3): order, deduplication, concurrency caps, retries, failure
isolation, the report and progress.

Fakes are registered through the real backend registry (``flaky`` and ``tone``
from conftest, and a few subclasses here); retries never sleep: every test that
can retry injects a ``sleep`` that only records the waits.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from conftest import FlakyBackend, ToneBackend
from dialog_tts import backends, synthesize_dialog
from dialog_tts.api import Renderer, RenderOptions
from dialog_tts.backends.base import Backend
from dialog_tts.cli import main
from dialog_tts.errors import (
    DialogTTSError,
    SynthesisError,
    SynthesisFailed,
    TransientSynthesisError,
    UnknownVoiceError,
)
from dialog_tts.script.voice import Rate, Voice
from dialog_tts.synth.cache import AudioCache
from dialog_tts.synth.cachekeys import Keys
from dialog_tts.synth.engine import Backoff, Engine, ProgressEvent, Source, Stats
from dialog_tts.synth.executors import ThreadExecutor
from dialog_tts.synth.jobs import Job

GAP = 0.25          # the default --gap-ms, in seconds
FRAME = 1 / 24000   # one frame at the default output rate


class Sleeps(list):
    """An injected ``sleep``: records each wait, never sleeps."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def flaky_voice(name: str = "v1", **kw) -> Voice:
    return Voice(name=name, backend="flaky", **kw)


def register(name: str, inst):
    backends.register(name, lambda: inst)
    return inst


@pytest.fixture
def extra_backends():
    """Backends registered by a test under extra names, unregistered afterwards."""
    names: list[str] = []

    def add(name: str, inst):
        names.append(name)
        return register(name, inst)
    yield add
    for name in names:
        backends.unregister(name)


class SlowBackend(FlakyBackend):
    """A second flaky backend with its own name (so its own concurrency limit)."""

    name = "slow"


class BatchingBackend(FlakyBackend):
    """A flaky backend that takes its lines in batches (like a GPU model)."""

    name = "batchy"
    batch_size = 4

    def __init__(self) -> None:
        super().__init__(max_delay=0.001)
        self.batches: list[list[str]] = []

    def synthesize_batch(self, texts, voices):
        self.batches.append(list(texts))
        return super().synthesize_batch(texts, voices)


def reference(text: str, voice: Voice):
    """What FlakyBackend makes of one line, from an unregistered instance."""
    return FlakyBackend(max_delay=0).synthesize(text, voice)


def assert_same_audio(got, expected) -> None:
    """The same clip, up to the engine's rounding of samples (to 24 bits)."""
    assert got.sample_rate == expected.sample_rate and got.samples.shape == expected.samples.shape
    np.testing.assert_allclose(got.samples, expected.samples, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ 1. order, dedup, caps

def test_results_in_job_order_and_duplicates_synthesized_once(flaky):
    flaky.max_delay = 0.01
    distinct = [f"Line {i}:" + " la" * i for i in range(48)]  # distinct lengths: distinct clips
    texts = list(distinct)
    for k in range(12):  # repeats of earlier lines, spread through the script
        texts.insert(5 * k + 4, distinct[3 * k])
    voice = flaky_voice()
    jobs = [Job(t, voice, "s.txt", i + 1, "A") for i, t in enumerate(texts)]
    finished: list[str] = []
    result = Engine(8, progress=lambda done, total, msg: finished.append(str(msg))).run(jobs)

    refs = {t: reference(t, voice) for t in distinct}
    assert len({(c.frames, c.samples[:200].tobytes()) for c in refs.values()}) == len(distinct)
    first_seen: set[str] = set()
    for job, outcome in zip(jobs, result.outcomes):
        assert_same_audio(outcome.clip, refs[job.text])
        if job.text in first_seen:
            assert (outcome.source, outcome.attempts, outcome.seconds) == ("repeat", 0, 0.0)
        else:
            assert (outcome.source, outcome.attempts, outcome.error) == ("synthesized", 1, None)
            assert outcome.seconds > 0
        first_seen.add(job.text)
    assert Counter(flaky.calls) == Counter(distinct)  # each distinct line exactly once
    assert result.stats == Stats(lines=60, synthesized=48, repeated=12)
    assert result.failures == []
    # the lines really did finish out of order (one progress message per distinct line)
    firsts = [job.where() for i, job in enumerate(jobs) if job.text not in texts[:i]]
    assert sorted(finished) == sorted(firsts) and finished != firsts


def test_settings_that_change_synthesis_are_not_deduplicated(flaky):
    base = flaky_voice()
    variants = {
        "base": base,
        "rate": replace(base, rate=Rate(wpm=200)),
        "pitch": replace(base, pitch=2.0),
        "volume": replace(base, volume=-3.0),
        "name": replace(base, name="v2"),
        "pan": replace(base, pan=0.7),
        "gain": replace(base, gain=-6.0),
        "pangain": replace(base, pan=-0.4, gain=3.0),
    }
    jobs = [Job("The same words.", v, "s.txt", i + 1, k) for i, (k, v) in enumerate(variants.items())]
    result = Engine(4).run(jobs)
    sources = {job.speaker: o.source for job, o in zip(jobs, result.outcomes)}
    assert sources == {"base": "synthesized", "rate": "synthesized", "pitch": "synthesized",
                       "volume": "synthesized", "name": "synthesized",
                       "pan": "repeat", "gain": "repeat", "pangain": "repeat"}
    assert flaky.calls == ["The same words."] * 5
    clips = {job.speaker: o.clip for job, o in zip(jobs, result.outcomes)}
    for mix_only in ("pan", "gain", "pangain"):
        np.testing.assert_array_equal(clips[mix_only].samples, clips["base"].samples)
    assert not np.array_equal(clips["pitch"].samples, clips["base"].samples)  # it was its own synthesis
    assert result.stats == Stats(lines=8, synthesized=5, repeated=3)


def test_render_deduplicates_speakers_differing_only_in_pan(flaky, write_script, tmp_path):
    script = write_script("A: Hello there.\nB: Hello there.\nA: Bye now.\n")
    result = synthesize_dialog(script, tmp_path / "o.wav", cache=False,
                               voices={"A": "v1,backend=flaky,pan=-0.5", "B": "v1,backend=flaky,pan=0.5"})
    assert sorted(flaky.calls) == ["Bye now.", "Hello there."]
    assert [r.source for r in result.lines] == ["synthesized", "repeat", "synthesized"]
    # the repeat is still placed with its own pan: left for A, right for B
    data, rate = sf.read(tmp_path / "o.wav", dtype="float32")
    (s0, e0), (s1, e1) = [(round(r.start * rate), round(r.end * rate)) for r in result.lines[:2]]
    a, b = data[s0:e0], data[s1:e1]
    assert np.abs(a[:, 0]).max() > 2 * np.abs(a[:, 1]).max()
    assert np.abs(b[:, 1]).max() > 2 * np.abs(b[:, 0]).max()


@pytest.mark.parametrize("cap, workers, limit", [(2, 8, 2), (None, 4, 4), (6, 3, 3)])
def test_backend_concurrency_cap(flaky, cap, workers, limit):
    flaky.max_concurrency = cap
    flaky.max_delay = 0.01
    voice = flaky_voice()
    jobs = [Job(f"Sentence number {i}.", voice, "s.txt", i + 1, "A") for i in range(40)]
    result = Engine(workers).run(jobs)
    assert [o.source for o in result.outcomes] == ["synthesized"] * 40
    assert len(flaky.calls) == 40
    assert 1 < flaky.max_active <= limit  # parallel, and never past the cap


def test_two_backends_each_keep_their_own_limit(flaky, tone_backend, extra_backends):
    flaky.max_concurrency = 2
    flaky.max_delay = 0.01
    slow = extra_backends("slow", SlowBackend(max_delay=0.01, max_concurrency=3, seed=7))
    tone_backend.max_concurrency = 1
    jobs = []
    for i in range(30):
        jobs.append(Job(f"flaky {i}", flaky_voice(), "s.txt", len(jobs) + 1, "F"))
        jobs.append(Job(f"slow {i}", Voice("v1", "slow"), "s.txt", len(jobs) + 1, "S"))
        jobs.append(Job(f"tone {i}", Voice("mid", "tone"), "s.txt", len(jobs) + 1, "T"))
    result = Engine(8).run(jobs)
    assert [o.source for o in result.outcomes] == ["synthesized"] * 90
    assert sorted(flaky.calls) == sorted(f"flaky {i}" for i in range(30))
    assert sorted(slow.calls) == sorted(f"slow {i}" for i in range(30))
    assert sorted(t for t, _ in tone_backend.calls) == sorted(f"tone {i}" for i in range(30))
    assert 1 < flaky.max_active <= 2
    assert 1 < slow.max_active <= 3
    assert tone_backend.max_active <= 1
    for job, outcome in zip(jobs, result.outcomes):  # every clip from its own backend, in order
        if job.speaker == "T":
            assert outcome.clip.sample_rate == 16000 and outcome.clip.duration == pytest.approx(0.05 * len(job.text))
        else:
            assert_same_audio(outcome.clip, reference(job.text, job.voice))


def test_batching_backend_isolates_a_failing_line(extra_backends):
    batchy = extra_backends("batchy", BatchingBackend())
    voice = Voice("v1", "batchy")
    texts = [f"Batched line {i}" + "!" * i for i in range(10)]
    batchy.failures[texts[6]] = [SynthesisError("bad line") for _ in range(3)]
    jobs = [Job(t, voice, "s.txt", i + 1, "A") for i, t in enumerate(texts)]
    sleeps = Sleeps()
    result = Engine(4, sleep=sleeps).run(jobs)
    assert [o.source for o in result.outcomes] == ["synthesized"] * 6 + ["failed"] + ["synthesized"] * 3
    assert max(len(b) for b in batchy.batches) == 4
    # its batch of 4 failed, then the half holding it, then the line alone: split down to it
    assert batchy.calls.count(texts[6]) == 3 and [texts[6]] in batchy.batches
    assert [texts[7]] in batchy.batches and batchy.failures[texts[6]] == []
    for job, outcome in zip(jobs, result.outcomes):
        if outcome.clip is not None:
            assert_same_audio(outcome.clip, reference(job.text, voice))
    assert [f.job.line_no for f in result.failures] == [7] and sleeps == []
    assert "bad line" in str(result.failures[0])


def test_engine_rejects_bad_settings():
    with pytest.raises(ValueError, match="workers"):
        Engine(0)
    with pytest.raises(ValueError, match="retries"):
        Engine(2, retries=-1)


# ------------------------------------------------------------------ 2. retries

def test_transient_errors_retried_with_default_backoff(flaky, write_script, tmp_path):
    script = write_script("A: First line.\nB: Second line.\nA: Third line.\n")
    flaky.failures["Second line."] = [TransientSynthesisError("timed out"), TransientSynthesisError("rate limited")]
    sleeps = Sleeps()
    result = synthesize_dialog(script, tmp_path / "o.wav", backend="flaky", retries=2, sleep=sleeps)
    assert Counter(flaky.calls) == {"First line.": 1, "Second line.": 3, "Third line.": 1}
    assert [r.attempts for r in result.lines] == [1, 3, 1]
    assert [r.source for r in result.lines] == ["synthesized"] * 3
    assert len(sleeps) == 2
    for n, wait in enumerate(sleeps):  # Backoff(): 1 s, 2 s, 4 s ... plus up to 0.5 s of jitter
        assert 1.0 * 2 ** n <= wait <= 1.0 * 2 ** n + 0.5
    assert result.totals.retries == 2 and result.totals.failed == 0
    assert (tmp_path / "o.wav").exists()


def test_custom_backoff_waits_exactly_and_is_capped(flaky):
    flaky.failures["Try hard."] = [TransientSynthesisError(f"hiccup {i}") for i in range(4)]
    sleeps = Sleeps()
    engine = Engine(2, retries=4, backoff=Backoff(initial=0.1, maximum=0.3, jitter=0), sleep=sleeps)
    result = engine.run([Job("Try hard.", flaky_voice(), "s.txt", 1, "A"),
                         Job("Easy.", flaky_voice(), "s.txt", 2, "A")])
    assert sleeps == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert [(o.source, o.attempts) for o in result.outcomes] == [("synthesized", 5), ("synthesized", 1)]
    assert result.stats.retries == 4 and result.failures == []
    assert flaky.calls.count("Try hard.") == 5


def test_transient_errors_beyond_the_retries_fail_the_line(flaky):
    errors = [TransientSynthesisError(f"timeout {i}") for i in range(3)]
    flaky.failures["Never works."] = list(errors)
    sleeps = Sleeps()
    jobs = [Job(t, flaky_voice(), "s.txt", i + 1, "A") for i, t in enumerate(["Fine.", "Never works.", "Also fine."])]
    result = Engine(4, retries=2, sleep=sleeps).run(jobs)
    failed = result.outcomes[1]
    assert (failed.source, failed.attempts, failed.clip) == ("failed", 3, None)
    assert failed.error is errors[2]
    assert len(sleeps) == 2 and result.stats.retries == 2 and result.stats.failed == 1
    assert [o.source for o in (result.outcomes[0], result.outcomes[2])] == ["synthesized"] * 2
    assert flaky.calls.count("Never works.") == 3


@pytest.mark.parametrize("error, type_, message", [
    (SynthesisError("text rejected"), SynthesisError, "text rejected"),
    (UnknownVoiceError("no voice 'zz'"), UnknownVoiceError, "no voice 'zz'"),
    (RuntimeError("model exploded"), SynthesisError, "RuntimeError: model exploded"),
])
def test_permanent_errors_are_not_retried(flaky, error, type_, message):
    flaky.failures["Bad one."] = [error, error, error]
    sleeps = Sleeps()
    jobs = [Job(t, flaky_voice(), "s.txt", i + 1, "A") for i, t in enumerate(["Good one.", "Bad one."])]
    result = Engine(2, retries=3, sleep=sleeps).run(jobs)
    bad = result.outcomes[1]
    assert (bad.source, bad.attempts) == ("failed", 1)
    assert type(bad.error) is type_ and isinstance(bad.error, DialogTTSError)
    assert str(bad.error) == message
    assert sleeps == [] and result.stats.retries == 0 and result.stats.failed == 1
    assert flaky.calls.count("Bad one.") == 1
    assert result.outcomes[0].source == "synthesized"
    assert str(result.failures[0]) == f's.txt:2 A "Bad one.": {message}'


# ------------------------------------------------------------------ 3. failure isolation

THREE = "A: First line is fine.\nB: This line is much longer than thirty characters.\nA: Third line is fine too.\n"
LONG = "This line is much longer than thirty characters."


def no_part_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".part" in p.name]


def test_failed_line_stops_nothing_else_and_reruns_only_it(flaky, write_script, tmp_path, private_cache):
    script = write_script(THREE + "B: Fourth one, fails too.\n")
    flaky.failures[LONG] = [SynthesisError("server rejected it")]
    flaky.failures["Fourth one, fails too."] = [RuntimeError("boom")]
    out = tmp_path / "o.wav"
    sleeps = Sleeps()
    with pytest.raises(SynthesisFailed) as info:
        synthesize_dialog(script, out, backend="flaky", sleep=sleeps)
    err = info.value
    assert err.exit_code == 1
    assert str(err).splitlines() == [
        "2 of 4 lines failed (the others are cached; run again to retry only these):",
        f'  {script}:2 B "This line is much longer than…": server rejected it',
        f'  {script}:4 B "Fourth one, fails too.": RuntimeError: boom',
    ]
    assert [f.job.line_no for f in err.failures] == [2, 4]
    assert not out.exists() and no_part_files(tmp_path)
    assert sleeps == []
    assert sorted(flaky.calls) == sorted(["First line is fine.", LONG, "Third line is fine too.",
                                          "Fourth one, fails too."])
    with AudioCache(private_cache) as cache:  # the good lines were cached all the same
        assert cache.info().entries == 2

    fresh = register("flaky", FlakyBackend(seed=3))
    result = synthesize_dialog(script, out, backend="flaky", sleep=sleeps)
    assert sorted(fresh.calls) == sorted([LONG, "Fourth one, fails too."])
    assert [r.source for r in result.lines] == ["cache", "synthesized", "cache", "synthesized"]
    assert out.exists() and no_part_files(tmp_path)


def test_keep_going_writes_silence_for_the_failed_line(flaky, write_script, tmp_path):
    without = write_script("A: First line is fine.\nA: Third line is fine too.\n", "without.txt")
    base = synthesize_dialog(without, None, backend="flaky", cache=False)
    script = write_script(THREE)
    flaky.failures[LONG] = [SynthesisError("server rejected it")]
    out = tmp_path / "kept.wav"
    result = synthesize_dialog(script, out, backend="flaky", keep_going=True)

    first, failed, third = result.lines
    assert (failed.source, failed.start, failed.end, failed.attempts) == ("failed", None, None, 1)
    assert failed.error == "server rejected it"
    assert (first.source, third.source) == ("synthesized", "synthesized")
    assert result.totals.failed == 1 and result.totals.synthesized == 2
    estimate = len(LONG.split()) * 60.0 / 170.0  # words at the backend's base rate
    # the silence stands between the neighbours as the line would: a gap, the estimate, a gap
    between = third.start - first.end
    assert between == pytest.approx(estimate + 2 * GAP, abs=2 * FRAME)
    # against the same script without that line, the output grew by about the estimate
    assert [r.voice for r in result.lines] == ["v1", "v2", "v1"] and base.lines[0].voice == "v1"
    grown = result.duration - base.duration
    assert grown == pytest.approx(estimate + GAP, abs=2 * FRAME)
    assert first.end - first.start == pytest.approx(base.lines[0].end - base.lines[0].start, abs=FRAME)
    data, rate = sf.read(out, dtype="float32")
    assert data.shape[0] / rate == pytest.approx(result.duration, abs=FRAME)
    assert np.abs(data[round(first.end * rate) + 2:round(third.start * rate) - 2]).max() < 1e-4
    assert np.abs(data[round(third.start * rate):round(third.end * rate)]).max() > 0.1

    flaky.failures.clear()  # the cause is fixed: only that line is synthesized again
    flaky.calls.clear()
    again = synthesize_dialog(script, out, backend="flaky", keep_going=True)
    assert flaky.calls == [LONG]
    assert [r.source for r in again.lines] == ["cache", "synthesized", "cache"]
    assert again.totals.failed == 0


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args])
    return invoke


def test_cli_failed_line_exit_1_and_no_output(cli, flaky, write_script, tmp_path):
    script = write_script(THREE)
    flaky.failures[LONG] = [SynthesisError("server rejected it")]
    result = cli("--script", script, "--backend", "flaky", "--out", "o.wav")
    assert result.exit_code == 1, result.output
    assert "1 of 3 lines failed" in result.stderr
    assert f'{script}:2 B "This line is much longer than…": server rejected it' in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.wav").exists() and no_part_files(tmp_path)


def test_cli_keep_going_warns_and_summary_matches_report(cli, flaky, write_script, tmp_path):
    script = write_script(THREE + "A: First line is fine.\n")
    flaky.failures[LONG] = [TransientSynthesisError("timed out")]  # --retries 0: no wait, fails at once
    result = cli("--script", script, "--backend", "flaky", "--out", "o.wav", "--keep-going",
                 "--retries", "0", "--report", "run.json")
    assert result.exit_code == 0, result.output
    assert f'Warning: {script}:2 B "This line is much longer than…": left silent (timed out)' in result.stderr
    assert (tmp_path / "o.wav").exists()
    report = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert [(r["source"], r["attempts"], r["error"]) for r in report["lines"]] == [
        ("synthesized", 1, None), ("failed", 1, "timed out"), ("synthesized", 1, None), ("repeat", 0, None)]
    assert_summary_matches(result.stderr, report, "o.wav")
    assert "1 failed (left silent)" in result.stderr


# ------------------------------------------------------------------ 4. the report

FIRST = "A: Good evening.\nB: Hello to you.\nA: Shall we start?\n"
SECOND = """\
A: Good evening.
B: Hello to you.
A: Something new here.
[pause 500ms]
B: Needs a retry.
A: Good evening.
A: Something new here.
B: Hello to you.
"""

RECORD_FIELDS = {"line", "speaker", "backend", "voice", "cache_hit", "source", "attempts",
                 "synthesis_seconds", "start", "end", "error"}
TOTAL_FIELDS = {"lines", "synthesized", "cached", "repeated", "retries", "failed", "duration",
                "wall_time", "real_time_factor"}


def check_totals_agree(report: dict) -> None:
    lines, totals = report["lines"], report["totals"]
    by_source = Counter(r["source"] for r in lines)
    assert totals["lines"] == len(lines)
    for key, source in [("synthesized", "synthesized"), ("cached", "cache"), ("repeated", "repeat"),
                        ("failed", "failed")]:
        assert totals[key] == by_source[source], key
    assert totals["retries"] == sum(max(0, r["attempts"] - 1) for r in lines)
    assert all(r["cache_hit"] == (r["source"] == "cache") for r in lines)
    assert all((r["error"] is not None) == (r["source"] == "failed") for r in lines)


def test_report_records_what_happened(flaky, write_script, tmp_path):
    write_script(FIRST)
    synthesize_dialog(tmp_path / "script.txt", tmp_path / "first.wav", backend="flaky")
    script = write_script(SECOND)  # edited: some lines new, some cached, some repeated
    flaky.calls.clear()
    flaky.failures["Needs a retry."] = [TransientSynthesisError("busy"), TransientSynthesisError("busy")]
    sleeps = Sleeps()
    out, report_path = tmp_path / "o.wav", tmp_path / "run.json"
    result = synthesize_dialog(script, out, backend="flaky", sleep=sleeps, report=report_path)

    report = json.loads(report_path.read_text(encoding="utf-8"))
    lines = report["lines"]
    assert all(RECORD_FIELDS <= set(r) for r in lines) and TOTAL_FIELDS <= set(report["totals"])
    assert [(r["line"], r["speaker"], r["backend"], r["voice"]) for r in lines] == [
        (1, "A", "flaky", "v1"), (2, "B", "flaky", "v2"), (3, "A", "flaky", "v1"), (5, "B", "flaky", "v2"),
        (6, "A", "flaky", "v1"), (7, "A", "flaky", "v1"), (8, "B", "flaky", "v2")]
    assert [r["source"] for r in lines] == ["cache", "cache", "synthesized", "synthesized",
                                            "repeat", "repeat", "repeat"]
    assert [r["attempts"] for r in lines] == [0, 0, 1, 3, 0, 0, 0]
    assert [r["cache_hit"] for r in lines] == [True, True] + [False] * 5
    assert all((r["synthesis_seconds"] > 0) == (r["source"] == "synthesized") for r in lines)
    assert all(r["error"] is None for r in lines)
    # what actually happened: the backend saw the two new lines only, one of them three times
    assert Counter(flaky.calls) == {"Something new here.": 1, "Needs a retry.": 3}
    assert len(sleeps) == 2
    totals = report["totals"]
    assert {k: totals[k] for k in ("lines", "synthesized", "cached", "repeated", "retries", "failed")} == {
        "lines": 7, "synthesized": 2, "cached": 2, "repeated": 3, "retries": 2, "failed": 0}
    check_totals_agree(report)
    # spans: increasing, apart by the gap (plus the pause after line 3), inside the output
    info = sf.info(out)
    assert totals["duration"] == pytest.approx(info.frames / info.samplerate, abs=FRAME)
    spans = [(r["start"], r["end"]) for r in lines]
    assert spans[0][0] == 0.0 and spans[-1][1] <= totals["duration"] + 1e-4
    for i, ((s0, e0), (s1, e1)) in enumerate(zip(spans, spans[1:])):
        assert s0 < e0 <= s1 < e1
        assert s1 - e0 == pytest.approx(GAP + (0.5 if i == 2 else 0.0), abs=2e-4)
    assert totals["wall_time"] > 0
    assert totals["real_time_factor"] == pytest.approx(totals["wall_time"] / totals["duration"])
    assert report == json.loads(json.dumps(result.to_json()))  # the file is the result


def test_report_written_when_the_run_fails(flaky, write_script, tmp_path):
    script = write_script(THREE)
    flaky.failures[LONG] = [SynthesisError("server rejected it")]
    report_path = tmp_path / "run.json"
    with pytest.raises(SynthesisFailed):
        synthesize_dialog(script, tmp_path / "o.wav", backend="flaky", report=report_path, sleep=Sleeps())
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["output"] is None
    assert [(r["line"], r["source"], r["attempts"], r["error"]) for r in report["lines"]] == [
        (1, "synthesized", 1, None), (2, "failed", 1, "server rejected it"), (3, "synthesized", 1, None)]
    assert all(r["start"] is None and r["end"] is None for r in report["lines"])
    assert report["totals"]["failed"] == 1 and report["totals"]["synthesized"] == 2
    check_totals_agree(report)
    assert not (tmp_path / "o.wav").exists() and no_part_files(tmp_path)


SUMMARY = re.compile(
    r"Wrote (?P<path>\S+): (?P<duration>[\d.]+) s stereo 24000 Hz, (?P<lufs>-[\d.]+) LUFS, (?P<tp>-[\d.]+) dBTP; "
    r"(?P<lines>\d+) lines: "
    r"(?P<synthesized>\d+) synthesized, (?P<cached>\d+) cached, (?P<repeated>\d+) repeated, "
    r"(?P<retries>\d+) retr(?:y|ies), (?P<retakes>\d+) retakes?(?:, (?P<failed>\d+) failed \(left silent\))?"
    r"(?:, (?P<flagged>\d+) flagged \(no take passed the checks\))?; (?P<speakers>\d+) speakers; "
    r"(?P<wall>[\d.]+) s wall, real-time factor (?P<rtf>[\d.]+)")


def assert_summary_matches(stderr: str, report: dict, out: str) -> None:
    m = SUMMARY.search(stderr)
    assert m, stderr
    t = report["totals"]
    assert m["path"] == out
    assert m["duration"] == f"{t['duration']:.1f}"
    for key in ("lines", "synthesized", "cached", "repeated", "retries", "retakes"):
        assert int(m[key]) == t[key], key
    assert int(m["failed"] or 0) == t["failed"] and int(m["flagged"] or 0) == t["flagged"]
    assert int(m["speakers"]) == len(report["voices"])
    assert m["wall"] == f"{t['wall_time']:.1f}" and m["rtf"] == f"{t['real_time_factor']:.3f}"
    assert m["lufs"] == f"{report['loudness']:.1f}" and m["tp"] == f"{report['true_peak']:.1f}"


def test_cli_report_and_summary_agree(cli, flaky, write_script, tmp_path):
    write_script(FIRST)
    assert cli("--script", "script.txt", "--backend", "flaky", "--out", "first.wav").exit_code == 0
    write_script(SECOND)
    flaky.calls.clear()
    result = cli("--script", "script.txt", "--backend", "flaky", "--out", "o.wav", "--report", "run.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert [r["source"] for r in report["lines"]] == ["cache", "cache", "synthesized", "synthesized",
                                                      "repeat", "repeat", "repeat"]
    assert sorted(flaky.calls) == ["Needs a retry.", "Something new here."]
    check_totals_agree(report)
    assert_summary_matches(result.stderr, report, "o.wav")


def test_cli_report_written_when_the_run_fails(cli, flaky, write_script, tmp_path):
    write_script(THREE)
    flaky.failures[LONG] = [SynthesisError("server rejected it")]
    result = cli("--script", "script.txt", "--backend", "flaky", "--out", "o.wav", "--report", "run.json")
    assert result.exit_code == 1
    report = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert [r["error"] for r in report["lines"]] == [None, "server rejected it", None]
    check_totals_agree(report)
    assert not (tmp_path / "o.wav").exists()


# ------------------------------------------------------------------ 5. progress

def test_progress_callback(flaky, write_script, tmp_path):
    write_script(FIRST)
    synthesize_dialog(tmp_path / "script.txt", None, backend="flaky")
    script = write_script(SECOND + "A: This one fails.\n")
    flaky.failures["Needs a retry."] = [TransientSynthesisError("busy")]
    flaky.failures["This one fails."] = [SynthesisError("nope")]
    calls: list[tuple[int, int, str]] = []
    events: list[ProgressEvent] = []
    with Renderer(RenderOptions(backend="flaky", keep_going=True, workers=3), sleep=Sleeps(),
                  progress_callback=lambda done, total, msg: calls.append((done, total, msg)),
                  on_progress=events.append) as renderer:
        result = renderer.render(script, None)
    spoken = len(result.lines)
    assert spoken == 8
    assert {total for _, total, _ in calls} == {spoken}
    dones = [done for done, _, _ in calls]
    assert dones == sorted(set(dones)) and dones[0] >= 1 and dones[-1] == spoken
    line_numbers = {r.line for r in result.lines}
    seen = []
    previous = Stats()
    assert [(e.done, e.total, e.message) for e in events] == calls    # the same, plus the counters
    for (done, _, message), event in zip(calls, events):
        assert type(message) is str
        m = re.match(rf"{re.escape(str(script))}:(\d+) [AB] \"", message)
        assert m and int(m[1]) in line_numbers, message
        seen.append(int(m[1]))
        stats = event.stats
        assert isinstance(stats, Stats)
        assert stats.synthesized + stats.cached + stats.repeated + stats.failed == done
        for key in ("synthesized", "cached", "repeated", "retries", "failed"):
            assert getattr(stats, key) >= getattr(previous, key), key
        previous = stats
    # one message per distinct line (repeats are counted with the line they repeat)
    assert sorted(seen) == [1, 2, 3, 5, 9]
    t = result.totals
    assert (previous.cached, previous.repeated, previous.retries, previous.failed) == (t.cached, t.repeated, t.retries, t.failed)
    assert (t.cached, t.repeated, t.retries, t.failed) == (2, 3, 1, 1)


def test_progress_is_reported_on_the_thread_that_runs_the_engine(flaky, extra_backends):
    """Workers hand their results back; only the run loop fills outcomes, counts and reports."""
    flaky.max_delay = 0.002
    batching = extra_backends("batchy", BatchingBackend())
    jobs = [Job(f"Line {i}.", flaky_voice(), "s.txt", i + 1, "A") for i in range(12)]
    jobs += [Job(f"Batched {i}.", Voice("v1", backend="batchy"), "s.txt", 20 + i, "B") for i in range(9)]
    threads: set[str] = set()
    events: list[ProgressEvent] = []

    def listen(event):
        threads.add(threading.current_thread().name)
        events.append(event)
    result = Engine(4, listener=listen).run(jobs)
    assert threads == {threading.current_thread().name}
    assert [e.done for e in events] == list(range(1, 22))
    assert events[-1].stats == result.stats == Stats(lines=21, synthesized=21)
    assert all(isinstance(o.source, Source) and o.source is Source.SYNTHESIZED for o in result.outcomes)
    assert len(batching.batches) == 3 and sorted(map(len, batching.batches)) == [1, 4, 4]


class ViewsBackend(ToneBackend):
    """Binds as real backends do (a copy per render, with its workers) and records the workers of the view
    that speaks each line."""

    name = "views"
    bind = Backend.bind

    def __init__(self) -> None:
        super().__init__()
        self.workers_seen: list[int] = []

    def synthesize(self, text: str, voice: Voice):
        self.workers_seen.append(self.workers)
        return super().synthesize(text, voice)


def test_a_run_with_fewer_lines_to_synthesize_than_workers_binds_for_the_calls_it_makes(extra_backends, tmp_path):
    """A backend shares the cores among the calls running together (piper's threads are cores / workers):
    a run that synthesizes one line (an edit) binds its view for one call, so that call gets them all;
    cached lines do not count, and a run with more lines than workers binds for the workers."""
    views = extra_backends("views", ViewsBackend())
    cache = AudioCache(tmp_path / "cache")
    engine = Engine(4, cache=cache)
    voice = Voice("mid", backend="views")
    engine.run([Job(f"Line {i}.", voice) for i in range(6)])
    assert views.workers_seen == [4] * 6
    engine.run([Job(f"Line {i}.", voice) for i in range(6)] + [Job("An edited line.", voice)])
    assert views.workers_seen == [4] * 6 + [1]
    engine.run([Job("Two more.", voice), Job("And three.", voice), Job("Line 1.", voice)])
    assert views.workers_seen == [4] * 6 + [1, 2, 2]
    assert engine.backend("views").workers == 2
    cache.close()


class ElsewhereExecutor(ThreadExecutor):
    """Runs calls in threads here, but is not the thread executor (as a Ray cluster is not)."""

    name = "elsewhere"


def test_views_keep_the_renders_workers_when_the_calls_run_elsewhere(extra_backends):
    """On a cluster a call's threads are the CPUs its task asks for: one line must not ask for every
    core of the driver's machine, so an executor other than the thread pool leaves the views alone."""
    views = extra_backends("views", ViewsBackend())
    engine = Engine(4, executor=ElsewhereExecutor())
    engine.run([Job("One line only.", Voice("mid", backend="views"))])
    assert views.workers_seen == [4]
    engine.executor.close()


def test_a_renderer_plans_without_the_engine_and_renders_with_the_same_views(extra_backends, write_script,
                                                                            tmp_path):
    """A dry run looks the jobs up with the renderer's keys; the engine, made for the first render,
    uses those keys (the same views, the fingerprints already read), not a second set."""
    extra_backends("views", ViewsBackend())
    script = write_script("A: One line.\nB: Another line.\n")
    options = RenderOptions(voices={"A": "mid,backend=views", "B": "mid,backend=views"}, cache_dir=tmp_path / "cache", workers=3)
    with Renderer(options) as renderer:
        view = renderer.keys.backend("views")
        assert [row.to_synthesize for row in renderer.plan(script)] == [1, 1]
        assert "engine" not in vars(renderer)      # planning made no engine
        renderer.render(script, tmp_path / "out.wav")
        assert renderer.engine.keys is renderer.keys
        assert renderer.engine.backend("views").workers == 2      # fitted to the run's two lines, in the keys
        assert renderer.keys.backend("views") is renderer.engine.backend("views") is not view
        assert [row.cached for row in renderer.plan(script)] == [1, 1]


def test_an_engine_takes_keys_bound_for_its_own_workers_or_backend_options_not_both():
    with pytest.raises(ValueError, match="keys"):
        Engine(2, keys=Keys(4))
    with pytest.raises(ValueError, match="keys"):
        Engine(2, keys=Keys(2), backend_options={"edge": {"timeout": 3}})
    assert Engine(2, keys=Keys(2, {"edge": {"timeout": 3}})).backend("edge").timeout == 3


def test_outcome_kinds_are_an_enum_with_the_report_strings():
    assert [s.value for s in Source] == ["pending", "synthesized", "cache", "repeat", "failed"]
    assert str(Source.CACHE) == "cache" and f"{Source.REPEAT}" == "repeat"
    assert json.dumps([Source.FAILED]) == '["failed"]' and Source("synthesized") is Source.SYNTHESIZED
    stats = Stats()
    for source in (Source.SYNTHESIZED, Source.CACHE, Source.CACHE, Source.REPEAT, Source.FAILED):
        stats.count(source)
    assert stats == Stats(synthesized=1, cached=2, repeated=1, failed=1)


# ------------------------------------------------------------------ 6. interrupts (issue 11, item 1)

TWO_HUNDRED = "".join(f"{'AB'[i % 2]}: Line number {i} of a long script.\n" for i in range(200))


class InterruptingBackend(FlakyBackend):
    """Presses Ctrl-C (as the terminal would: KeyboardInterrupt in the main thread) at its Nth call."""

    name = "interrupting"

    def __init__(self, after: int) -> None:
        super().__init__(max_delay=0.002)
        self.after = after
        self.finished = 0

    def synthesize(self, text, voice):
        clip = super().synthesize(text, voice)
        with self._count:
            self.finished += 1
            press = self.finished == self.after
        if press:
            import _thread

            _thread.interrupt_main()
        return clip


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "script.txt")


def test_interrupt_cancels_the_queued_lines_and_keeps_the_finished_ones(flaky, write_script, tmp_path, private_cache):
    script = write_script(TWO_HUNDRED)

    def progress(done, total, message):
        if done == 5:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        synthesize_dialog(script, tmp_path / "o.wav", backend="flaky", workers=3, progress_callback=progress)
    started = len(flaky.calls)
    assert 5 <= started <= 5 + 3                  # the lines done, plus at most one in flight per worker
    assert leftovers(tmp_path) == []              # no output, no temp file
    with AudioCache(private_cache) as cache:      # every line that was synthesized is cached
        assert cache.info().entries == started
    result = synthesize_dialog(script, tmp_path / "o.wav", backend="flaky", workers=3)
    assert result.totals.cached == started and result.totals.synthesized == 200 - started
    assert sorted(flaky.calls) == sorted(f"Line number {i} of a long script." for i in range(200))


class GatedBackend(FlakyBackend):
    """Line 0 finishes only once line 1 has failed and waits to be retried."""

    name = "gated"

    def __init__(self) -> None:
        super().__init__(max_delay=0.0)
        self.retrying = threading.Event()

    def synthesize(self, text, voice):
        if text == "Line 0.":
            assert self.retrying.wait(10)
        return super().synthesize(text, voice)


def test_no_backend_call_starts_after_an_interrupt(extra_backends):
    """A line in flight that is waiting to retry gives up instead of calling the backend again."""
    gated = extra_backends("gated", GatedBackend())
    gated.failures["Line 1."] = [TransientSynthesisError("busy")] * 5
    jobs = [Job(f"Line {i}.", Voice("v1", backend="gated"), "s.txt", i + 1, "A") for i in range(50)]
    interrupted = threading.Event()

    def sleep(seconds):                           # line 1 waits to retry until Ctrl-C has been pressed
        gated.retrying.set()
        assert interrupted.wait(10)

    def progress(done, total, message):           # line 0 finished: Ctrl-C
        interrupted.set()
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        Engine(2, retries=5, sleep=sleep, progress=progress).run(jobs)
    assert sorted(gated.calls) == ["Line 0.", "Line 1."]   # no retry, no new line after the interrupt


@pytest.fixture
def ctrl_c_as_in_a_terminal():
    """Python turns SIGINT into KeyboardInterrupt unless its parent ignored the signal, as a shell does for
    a command started in the background (`pytest &`); interrupt_main() then does nothing.  These tests
    press Ctrl-C as a terminal would, so they want Python's own handler, whoever started pytest."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_cli_ctrl_c_exits_130_with_one_line(cli, write_script, tmp_path, extra_backends, private_cache,
                                            ctrl_c_as_in_a_terminal):
    backend = extra_backends("interrupting", InterruptingBackend(after=4))
    write_script(TWO_HUNDRED)
    result = cli("-s", "script.txt", "--backend", "interrupting", "--workers", "2", "-o", "o.wav")
    assert result.exit_code == 130, result.output
    assert [ln for ln in result.output.splitlines() if ln.strip()] == ["Interrupted"]
    assert 4 <= len(backend.calls) <= 4 + 2 + 2   # far fewer than 200: the queued lines were cancelled
    assert leftovers(tmp_path) == []
    with AudioCache(private_cache) as cache:
        assert cache.info().entries == len(backend.calls)


# ------------------------------------------------------------------ packaging

def test_every_third_party_import_is_a_declared_dependency():
    """A clean `pip install .` has everything the package imports (optional backends aside)."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(requirements):
        return {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in requirements}
    declared = names(project["dependencies"])
    optional = set().union(*(names(v) for v in project.get("optional-dependencies", {}).values()))
    modules = set()
    for path in (root / "dialog_tts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = {m for m in modules if m not in sys.stdlib_module_names and m != "dialog_tts"}
    owners = packages_distributions()
    missing = {}
    for module in sorted(third_party):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        if not dists & (declared | optional):
            missing[module] = sorted(dists)
    assert missing == {}
    assert {"tenacity", "diskcache", "platformdirs", "tqdm", "soxr"} <= declared
    # pyloudnorm is the loudness tests' reference only: dialog_tts computes its K-weighting itself
    assert "pyloudnorm" not in declared and "pyloudnorm" not in third_party
    assert {"pyloudnorm", "pyebur128"} <= names(project["optional-dependencies"]["test"])


class CoreBoundBackend(FlakyBackend):
    """A flaky fake whose calls each keep a core busy (as Kokoro's one-thread calls do)."""

    name = "corebound"
    cpu_bound = True


def test_a_cpu_bound_backend_runs_no_more_calls_than_cores(extra_backends):
    """On the thread executor, calls of a cpu_bound backend are capped at the machine's cores, whatever
    the workers; the same engine runs a backend that is not cpu_bound on every worker."""
    from dialog_tts.synth.executors import ThreadExecutor, usable_cores

    cores = usable_cores()
    bound = extra_backends("corebound", CoreBoundBackend(max_delay=0.01, seed=3))
    free = extra_backends("flaky", FlakyBackend(max_delay=0.01, seed=4))
    assert ThreadExecutor().calls(bound, 16) == min(16, cores)
    assert ThreadExecutor().calls(free, 16) == 16
    for backend in (bound, free):
        jobs = [Job(f"Sentence number {i}.", Voice("v1", backend.name), "s.txt", i + 1, "A") for i in range(60)]
        result = Engine(cores + 4).run(jobs)
        assert [o.source for o in result.outcomes] == ["synthesized"] * 60
    assert bound.max_active <= cores
    assert free.max_active > cores
