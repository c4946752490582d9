"""The edge backend through the real edge_tts client, against a local Edge-protocol server."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dialog_tts import backends, synthesize_dialog
from dialog_tts.cli import main
from dialog_tts.errors import SynthesisFailed
from dialog_tts.script.voice import Voice
from dialog_tts.synth.engine import Engine
from dialog_tts.synth.jobs import Job
from edge_server import expected_audio

ARIA = Voice("en-US-AriaNeural", backend="edge")


class Waits(list):
    """An injected sleep: records the waits, never sleeps."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def run_one(text: str, faults: list, edge_server, retries: int = 2, timeout: float | None = None):
    edge_server.faults.extend(faults)
    backends.get_backend("edge").timeout = timeout
    waits = Waits()
    result = Engine(workers=1, retries=retries, sleep=waits).run([Job(text, ARIA, "t.txt", 1, "A")])
    return result.outcomes[0], waits


def test_normal_request_gives_the_servers_audio(edge_server):
    text = "Hello there. This is a test of the local server."
    outcome, waits = run_one(text, [], edge_server)
    assert outcome.source == "synthesized" and outcome.attempts == 1 and waits == []
    clip = outcome.clip
    assert clip.sample_rate == 24000
    expected = expected_audio(text, "en-US-AriaNeural")
    assert abs(clip.frames - len(expected)) <= 576            # the codec delay is trimmed: within one frame
    n = min(clip.frames, len(expected))
    corr = np.corrcoef(clip.samples[:n], expected[:n])[0, 1]
    assert corr > 0.9                                          # aligned: same tone at the same place
    request = edge_server.requests[0]
    assert (request.short_voice, request.rate, request.pitch, request.volume) == \
        ("en-US-AriaNeural", "+0%", "+0Hz", "+0%")


@pytest.mark.parametrize("fault, attempts, reason", [
    ("403_once", 1, None),                       # the client's own clock-skew retry recovers it
    ("429", 2, "HTTP 429 Too Many Requests"),
    ("503", 2, "HTTP 503"),
    ("drop_before_audio", 2, "closed before any audio"),
    ("drop_mid_stream", 2, "cut short"),
    ("stall", 2, "no complete answer within"),
    ("malformed", 2, "malformed answer"),
])
def test_each_fault_is_retried_and_recovered(edge_server, fault, attempts, reason, caplog):
    text = "One sentence here. And a second sentence to make the stream long enough to cut."
    with caplog.at_level("INFO", logger="dialog_tts"):
        outcome, waits = run_one(text, [fault], edge_server, timeout=0.5)
    assert outcome.source == "synthesized" and outcome.attempts == attempts
    assert len(waits) == attempts - 1
    if reason:
        assert reason in caplog.text                            # the retry said why
    expected = expected_audio(text, "en-US-AriaNeural")
    assert abs(outcome.clip.frames - len(expected)) <= 576     # complete audio, not the cut one


@pytest.mark.parametrize("fault, reason", [
    ("429", "edge: HTTP 429 Too Many Requests"),
    ("drop_mid_stream", "edge: the stream closed before the end of the turn"),
    ("stall", "edge: no complete answer within 0.3 s"),
])
def test_persistent_faults_fail_with_a_clear_reason(edge_server, fault, reason):
    outcome, waits = run_one("Still failing after every retry.", [fault] * 3, edge_server, retries=2,
                             timeout=0.3)
    assert outcome.source == "failed" and outcome.attempts == 3 and len(waits) == 2
    assert str(outcome.error).startswith(reason)


def test_rejected_handshake_is_permanent(edge_server):
    import aiohttp

    from dialog_tts.backends.edge import _classify
    error = aiohttp.WSServerHandshakeError(None, (), status=400, message="Bad Request")
    assert not _classify(error).transient
    assert _classify(aiohttp.WSServerHandshakeError(None, (), status=429, message="")).transient


def test_truncation_is_caught_by_the_sentence_boundaries(edge_server):
    """Even if the client reported the turn as ended, audio short of the last boundary is rejected."""
    from dialog_tts.backends.edge import COVERAGE_TOLERANCE
    text = "First sentence. Second sentence. Third sentence is the longest one of them all."
    outcome, _ = run_one(text, [], edge_server)
    request = edge_server.requests[0]
    assert outcome.clip.duration >= request_end(text) - COVERAGE_TOLERANCE
    assert request.completed


def request_end(text: str) -> float:
    from edge_server import render
    sentences = render(text, "en-US-AriaNeural").sentences
    return (sentences[-1].offset_ticks + sentences[-1].duration_ticks) / 10_000_000


def test_missing_edge_tts_names_the_install_command(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "edge_tts", None)       # as if it were not installed
    from dialog_tts.backends.base import install_hint
    from dialog_tts.errors import BackendUnavailableError
    with pytest.raises(BackendUnavailableError, match=re.escape(install_hint("edge"))):
        backends.get_backend("edge").synthesize("hi", ARIA)


KOREAN = """\
철수: 안녕하세요. 오늘의 팟캐스트에 오신 것을 환영합니다.
영희: 반갑습니다. 초대해 주셔서 감사합니다.
철수: 오늘은 음성 합성에 대해 이야기해 보겠습니다.
영희: 좋아요. 시작해 볼까요?
"""


def test_cli_renders_a_korean_dialog_through_edge(edge_server, write_script, tmp_path):
    script = write_script(KOREAN, "ko.txt")
    out = tmp_path / "podcast.wav"
    result = CliRunner().invoke(main, [
        "--script", str(script), "--voices", "철수=SunHi,rate=180,pan=-0.3", "영희=InJoon,rate=170,pan=+0.3",
        "--backend", "edge", "--stereo", "--lufs", "-16", "--workers", "5", "--out", str(out),
        "--report", str(tmp_path / "run.json")])
    assert result.exit_code == 0, result.output
    data, rate = sf.read(out, dtype="float32")
    assert rate == 24000 and data.shape[1] == 2
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["loudness"] == pytest.approx(-16, abs=0.1) and report["true_peak"] <= -1.0
    assert [r["voice"] for r in report["lines"]] == ["ko-KR-SunHiNeural", "ko-KR-InJoonNeural"] * 2
    sent = sorted((r.short_voice, r.rate, r.text) for r in edge_server.requests)
    assert [s[:2] for s in sent] == [("ko-KR-InJoonNeural", "+13%")] * 2 + [("ko-KR-SunHiNeural", "+20%")] * 2
    assert {s[2] for s in sent} == {line.split(": ", 1)[1] for line in KOREAN.splitlines()}
    # each line is where the report says, and is the line the server made (not a neighbour's)
    for r, text in zip(report["lines"], [line.split(": ", 1)[1] for line in KOREAN.splitlines()]):
        seg = data[round(r["start"] * rate):round(r["end"] * rate)].mean(axis=1)
        ref = expected_audio(text, r["voice"], rate=("+20%" if "SunHi" in r["voice"] else "+13%"))
        assert abs(dominant(seg) - dominant(ref)) < 8


def dominant(x: np.ndarray, rate: int = 24000) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def faulty_plan(rate: float, seed: int):
    """About *rate* of all requests faulted, every mode, seeded; a line is cut at most twice at stream level."""
    import itertools

    rng = random.Random(seed)                       # whether a request is faulted
    handshake = itertools.cycle(["403_once", "429", "503"])            # which fault: every mode in turn
    stream = itertools.cycle(["drop_before_audio", "drop_mid_stream", "stall", "malformed"])
    per_text: dict[str, int] = {}

    def fault_for(index, text):
        if text is None:
            return next(handshake) if rng.random() < rate / 2 else None
        if per_text.get(text, 0) < 2 and rng.random() < rate / 2:
            per_text[text] = per_text.get(text, 0) + 1
            return next(stream)
        return None
    return fault_for


def test_hundred_lines_with_30_percent_faults_are_bit_identical(edge_server, write_script, tmp_path):
    script = write_script("".join(f"{'AB'[i % 2]}: Line {i}. It says something of its own, number {i}.\n"
                                  for i in range(100)))
    voices = {"A": "Aria", "B": "Guy"}
    clean = synthesize_dialog(script, tmp_path / "clean.wav", voices=voices, backend="edge", workers=6,
                              cache=False, timeout=1.0)
    assert clean.totals.retries == 0
    edge_server.reset()
    edge_server.fault_for = faulty_plan(0.3, seed=7)
    waits = Waits()
    faulted = synthesize_dialog(script, tmp_path / "faulted.wav", voices=voices, backend="edge", workers=6,
                                cache=False, timeout=1.0, retries=8, sleep=waits,
                                report=tmp_path / "run.json")
    requests = edge_server.requests
    faulted_share = sum(r.fault is not None for r in requests) / len(requests)
    assert faulted_share >= 0.25, faulted_share
    assert {r.fault for r in requests if r.fault} >= {"429", "503", "drop_before_audio", "drop_mid_stream",
                                                       "malformed"}
    assert faulted.totals.failed == 0 and faulted.totals.lines == 100          # 0 lines lost
    assert (tmp_path / "clean.wav").read_bytes() == (tmp_path / "faulted.wav").read_bytes()
    report = json.loads((tmp_path / "run.json").read_text())
    retried = [r for r in report["lines"] if r["attempts"] > 1]
    assert report["totals"]["retries"] == len(waits) == sum(r["attempts"] - 1 for r in report["lines"]) > 10
    assert retried and all(r["source"] == "synthesized" for r in retried)


def test_workers_above_the_cap_queue(edge_server, write_script, tmp_path, monkeypatch):
    edge_server.latency = 0.05
    monkeypatch.setattr(backends.get_backend("edge"), "max_concurrency", 3)
    script = write_script("".join(f"A: Sentence number {i}.\n" for i in range(12)))
    synthesize_dialog(script, tmp_path / "o.wav", voices={"A": "Aria"}, backend="edge", workers=8, cache=False)
    assert 1 < edge_server.max_concurrent <= 3


def test_a_failed_edge_line_is_listed_and_nothing_written(edge_server, write_script, tmp_path):
    edge_server.faults.extend([None, "429", "429", "429"])
    script = write_script("A: First line.\nA: Second line.\n")
    with pytest.raises(SynthesisFailed) as err:
        synthesize_dialog(script, tmp_path / "o.wav", voices={"A": "Aria"}, backend="edge", workers=1,
                          retries=2, sleep=Waits())
    assert 'script.txt:2 A "Second line.": edge: HTTP 429 Too Many Requests' in str(err.value)
    assert not (tmp_path / "o.wav").exists()


# ------------------------------------------------------------------ issue 11, item 20

@pytest.mark.parametrize("url, reason", [
    ("wss://127.0.0.1:99999/edge?TrustedClientToken=SECRET", "Port out of range"),
    ("file:///etc/passwd", "give a ws:// or wss:// URL"),
    ("garbage", "give a ws:// or wss:// URL"),
    ("wss://:443/edge", "give a ws:// or wss:// URL"),
])
def test_an_invalid_edge_url_is_a_usage_error_before_synthesis(url, reason, monkeypatch, write_script, tmp_path):
    monkeypatch.setenv("DIALOG_TTS_EDGE_URL", url)
    result = CliRunner().invoke(main, ["-s", str(write_script("A: Hello.\nA: Again.\n")), "--voices",
                                       "A=Aria,backend=edge", "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "DIALOG_TTS_EDGE_URL=" in errors[0] and reason in errors[0]
    assert "SECRET" not in result.output and "run again" not in result.output


def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_url_token_and_object_reprs_never_reach_messages_or_the_report(monkeypatch, write_script, tmp_path):
    monkeypatch.setenv("DIALOG_TTS_EDGE_URL", f"wss://127.0.0.1:{_closed_port()}/edge?TrustedClientToken=SECRET")
    report = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["-s", str(write_script("A: Hello.\n")), "--voices", "A=Aria,backend=edge",
                                       "-o", str(tmp_path / "o.wav"), "--retries", "0", "--report", str(report),
                                       "-vv"])
    assert result.exit_code == 1 and "edge: connection failed: Cannot connect to host 127.0.0.1" in result.output
    saved = report.read_text(encoding="utf-8")
    for text in (result.output, saved):
        assert "SECRET" not in text and " object at 0x" not in text


def test_classified_errors_cut_the_query_of_any_url():
    import aiohttp

    from dialog_tts.backends.edge import _classify
    url = "wss://speech.example/edge/v1?TrustedClientToken=SECRET&ConnectionId=42"
    error = _classify(aiohttp.InvalidURL(url))
    assert str(error) == "edge: connection failed: wss://speech.example/edge/v1?…"


def test_a_voice_missing_from_the_table_is_warned_about_once(write_script):
    script = write_script("A: One.\nB: Two.\nA: Three.\n")
    result = CliRunner().invoke(main, ["-s", str(script), "--voices", "A=en-US-NobodyNeural,backend=edge",
                                       "B=en-US-NobodyNeural,backend=edge", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("not in the voice table") == 1


def test_a_tagged_mp3_cut_short_decodes_without_decoder_noise(capfd):
    import io

    from dialog_tts.io.audio import decode_mp3
    tone = (0.3 * np.sin(np.arange(24000) * 0.05)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, tone, 24000, format="MP3")              # has a Xing/Info frame announcing its size
    data = buf.getvalue()
    assert decode_mp3(data).frames == 24000                # complete: untouched, exact length
    capfd.readouterr()
    clip = decode_mp3(data[: len(data) // 2])              # cut short: the tag announces twice the bytes
    assert 0 < clip.frames < 24000
    assert "Xing" not in capfd.readouterr().err
