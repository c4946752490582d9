"""The command line: options, one-line errors and exit codes (2 usage, 1 failed run)."""

from __future__ import annotations

import pytest
import soundfile as sf
from click.testing import CliRunner

from dialog_tts import backends
from dialog_tts.cli import expand_voices, main
from dialog_tts.errors import SynthesisError

TWO = "A: Hello there.\nB: Hi, how are you?\nA: Fine.\n"


def one_error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


def test_render_with_fake_backend(run, write_script, tone_backend, tmp_path):
    script = write_script(TWO)
    result = run("--script", script, "--backend", "tone", "--out", "out.wav", "--mono", "--sample-rate", 16000)
    assert result.exit_code == 0, result.output
    info = sf.info(tmp_path / "out.wav")
    assert (info.channels, info.samplerate) == (1, 16000)
    assert len(tone_backend.calls) == 3


def test_one_voices_option_takes_several_assignments(run, write_script, tone_backend):
    script = write_script(TWO)
    result = run("--script", script, "--voices", "A=low,backend=tone,pan=-0.3", "B=high,backend=tone,pan=+0.3",
                 "--backend", "tone", "-v", "--out", "o.wav")
    assert result.exit_code == 0, result.output
    assert "A: tone:low,pan=-0.30" in result.output and "B: tone:high,pan=+0.30" in result.output


@pytest.mark.parametrize("args, expected", [
    (["--voices", "A=x", "B=y", "--gap-ms", "3"], ["--voices", "A=x", "--voices", "B=y", "--gap-ms", "3"]),
    (["--voices=A=x", "B=y"], ["--voices=A=x", "--voices", "B=y"]),
    (["--voices", "A=x", "voices"], ["--voices", "A=x", "voices"]),
    (["--out", "a=b.wav", "--voices", "A=x"], ["--out", "a=b.wav", "--voices", "A=x"]),
    (["--voices", "A=x", "--", "B=y"], ["--voices", "A=x", "--", "B=y"]),
])
def test_expand_voices(args, expected):
    assert expand_voices(args) == expected


@pytest.mark.parametrize("args, message", [
    (["--gap-ms", "-5"], "--gap-ms"),
    (["--sample-rate", "100"], "--sample-rate"),
    (["--lufs", "3"], "--lufs"),
    (["--true-peak", "2"], "--true-peak"),
    (["--workers", "0"], "--workers"),
    (["--voices", "A"], "expected NAME=SPEC"),
    (["--voices", "A=joe,pan=2"], "pan '2' is out of range"),
    (["--voices", "A=joe,rate=fast"], "rate 'fast'"),
    (["--voices", "A=joe,pitch=+30st"], "pitch '+30st' is out of range"),
    (["--voices", "A=joe,bogus"], "cannot read 'bogus'"),
])
def test_bad_option_values_exit_2(run, write_script, args, message):
    result = run("--script", write_script(TWO), "--out", "o.wav", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--backend", "nope"], "unknown backend 'nope' (available: piper, hibari, espeak"),
    (["--voices", "A=nosuchvoice"], "--voices A: unknown piper voice 'nosuchvoice'"),
    (["--voices", "A=joe,backend=nope"], "unknown backend 'nope'"),
    (["--voices", "A=en-us+nosuch,backend=espeak"], "unknown espeak variant 'nosuch'"),
    (["--voices", "C=joe"], "no speaker 'C' in the script (speakers: A, B)"),
    (["--voices", "A=joe,instruct=calm"], "unknown option 'instruct' for backend 'piper'"),
])
def test_unknown_backend_voice_or_speaker_exit_2(run, write_script, args, message, tmp_path):
    result = run("--script", write_script(TWO), "--out", "o.wav", *args)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)
    assert not (tmp_path / "o.wav").exists()


def test_missing_and_invalid_script(run, write_script, tmp_path):
    result = run("--script", "missing.txt", "--out", "o.wav")
    assert result.exit_code == 2 and one_error_line(result).startswith("Error: missing.txt: cannot read script")
    result = run("--script", tmp_path, "--out", "o.wav")
    assert result.exit_code == 2 and "is a directory" in one_error_line(result)
    bad = write_script("Hello there\nA: hi\n", "bad.txt")
    result = run("--script", bad, "--out", "o.wav")
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"Error: {bad}:1: text before any turn")
    latin1 = write_script(b"A: ok\nB: caf\xe9\n", "latin1.txt")
    result = run("--script", latin1, "--out", "o.wav")
    assert result.exit_code == 2 and f"{latin1}:2: not valid UTF-8" in one_error_line(result)


def test_invalid_speaker_map(run, write_script, tmp_path):
    (tmp_path / "map.yaml").write_text("A:\n  voice: joe\n  pan: [1, 2\n", encoding="utf-8")
    result = run("--script", write_script(TWO), "--speaker-map", "map.yaml", "--out", "o.wav")
    assert result.exit_code == 2
    assert one_error_line(result).startswith("Error: map.yaml:")
    (tmp_path / "map2.yaml").write_text("defaults:\n  rate: 170\nB:\n  voice: joe\n  pan: 3\n", encoding="utf-8")
    result = run("--script", write_script(TWO), "--speaker-map", "map2.yaml", "--out", "o.wav")
    assert result.exit_code == 2
    assert one_error_line(result) == "Error: map2.yaml:5: speaker 'B': pan '3' is out of range (-1 left to +1 right)"  # the pan's line
    result = run("--script", write_script(TWO), "--speaker-map", "nomap.yaml", "--out", "o.wav")
    assert result.exit_code == 2 and "nomap.yaml: cannot read speaker map" in one_error_line(result)


def test_output_problems_exit_2_before_any_synthesis(run, write_script, tone_backend):
    script = write_script(TWO)
    result = run("--script", script, "--backend", "tone", "--out", "out.aiff")
    assert result.exit_code == 2 and "cannot write .aiff" in one_error_line(result)
    result = run("--script", script, "--backend", "tone", "--out", "no/such/dir/out.wav")
    assert result.exit_code == 2 and "does not exist" in one_error_line(result)
    assert tone_backend.calls == []


def test_missing_required_options(run, write_script):
    assert run("--out", "o.wav").exit_code == 2
    result = run("--script", write_script(TWO))
    assert result.exit_code == 2 and "missing --out" in result.output


def test_no_arguments_prints_help(run):
    result = run()
    assert result.exit_code == 0 and "Usage:" in result.output and "voices" in result.output


class BrokenBackend(backends.Backend):
    name = "broken"
    speech = False      # a short constant, not speech: the quality gate checks only level and clipping

    def resolve(self, voice):
        return voice

    def list_voices(self):
        return []

    def palette(self):
        return ["v"]

    def synthesize(self, text, voice):
        if "fail" in text:
            raise SynthesisError("the engine exploded")
        import numpy as np

        from dialog_tts.io.audio import Clip
        return Clip(np.full(1600, 0.1, np.float32), 16000)


@pytest.fixture
def broken():
    backends.register("broken", BrokenBackend)
    yield
    backends.unregister("broken")


def test_failed_run_exits_1_lists_lines_and_writes_nothing(run, write_script, broken, tmp_path):
    script = write_script("A: this one is fine\nB: this will fail\nA: fine again\n")
    result = run("--script", script, "--backend", "broken", "--out", "o.wav")
    assert result.exit_code == 1
    assert "1 of 3 lines failed" in result.output
    assert f'{script}:2 B "this will fail": the engine exploded' in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.glob("o.wav*")) == [] and list(tmp_path.glob(".o.wav*")) == []


def test_debug_shows_the_traceback(write_script, broken, tmp_path):
    script = write_script("A: this will fail\n")
    result = CliRunner().invoke(main, ["--script", str(script), "--backend", "broken",
                                       "--out", str(tmp_path / "o.wav"), "--debug"])
    assert result.exit_code == 1
    from dialog_tts.errors import SynthesisFailed
    assert isinstance(result.exception, SynthesisFailed)


def test_voices_command_lists_offline_backends(run):
    result = run("voices")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(ln.split()[:2] == ["piper", "joe"] for ln in lines)
    assert any(ln.split()[:2] == ["espeak", "ko"] for ln in lines)
    assert "en-us+f3" in result.output  # how variants are named
    result = run("voices", "--backend", "espeak", "--language", "ko")
    rows = [ln.split()[1] for ln in result.stdout.splitlines()[1:]]
    assert rows == ["ko"]
    result = run("voices", "--backend", "nope")
    assert result.exit_code == 2 and "unknown backend 'nope'" in one_error_line(result)


def test_progress_bar_and_quiet(run, write_script, tone_backend):
    script = write_script(TWO)
    result = run("--script", script, "--backend", "tone", "--out", "o.wav", "--progress")
    assert result.exit_code == 0
    assert "0/3" in result.stderr and "line/s" in result.stderr   # the bar was drawn on stderr
    result = run("--script", script, "--backend", "tone", "--out", "o2.wav", "-q", "--progress")
    assert result.exit_code == 0 and result.output == ""      # -q silences the bar and the summary
    result = run("--script", script, "--backend", "tone", "--out", "o3.wav", "-v")
    assert result.stderr.count(": cached") == 3   # -v logs each line as it finishes
