"""Messages and exit codes: missing packages, escapes, plurals, the cast log, python -m, the benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dialog_tts import backends
from dialog_tts.cli import main

ROOT = Path(__file__).resolve().parents[1]


def errors_of(result) -> list[str]:
    assert "Traceback" not in result.output, result.output
    return [ln for ln in result.output.splitlines() if ln.startswith("Error:")]


# ------------------------------------------------------------------ 17: a backend whose package is missing

@pytest.mark.parametrize("module, voice, extra", [
    ("edge_tts", "A=en-US-AriaNeural,backend=edge", "edge"),
    ("aiohttp", "A=Aria,backend=edge", "edge"),
    ("qwen_tts", "A=Vivian,backend=qwen", "qwen"),
])
def test_missing_backend_package_is_one_usage_error_before_synthesis(module, voice, extra, monkeypatch,
                                                                     write_script, tone_backend, tmp_path):
    from dialog_tts.backends.base import install_hint
    monkeypatch.setitem(sys.modules, module, None)             # as if it were not installed
    script = write_script("".join(f"A: Line {i}.\nB: Reply {i}.\n" for i in range(7)))
    result = CliRunner().invoke(main, ["-s", str(script), "--voices", voice, "--voices", "B=mid,backend=tone",
                                       "-o", str(tmp_path / "o.wav"), "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 2
    [error] = errors_of(result)                                # one error, not one per line
    assert f"({module} missing)" in error or f"({module} is missing)" in error
    assert install_hint(extra) in error
    assert "run again" not in result.output and tone_backend.calls == []   # nothing was synthesized
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "r.json").exists()


def test_install_hint_for_a_checkout_and_for_an_installed_package(tmp_path, monkeypatch):
    from dialog_tts.backends.base import install_hint
    checkout = tmp_path / "src"
    (checkout / "dialog_tts").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'dialog-tts'\n", encoding="utf-8")
    site = tmp_path / "site-packages"
    (site / "dialog_tts").mkdir(parents=True)
    assert install_hint("edge", site / "dialog_tts") == "pip install 'dialog-tts[edge]'"
    assert install_hint("edge", checkout / "dialog_tts") == f"pip install -e '{checkout}[edge]'"
    monkeypatch.chdir(checkout)
    assert install_hint("qwen", checkout / "dialog_tts") == "pip install -e '.[qwen]'"


# ------------------------------------------------------------------ 22: small ones

def test_python_dash_m_runs_the_command():
    done = subprocess.run([sys.executable, "-m", "dialog_tts", "--version"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.startswith("dialog-tts, version "), done.stderr


def test_control_characters_in_errors_are_shown_escaped(write_script, flaky, tmp_path):
    from dialog_tts.errors import SynthesisError
    text = "\x1bc\x1b(0pwned\x07 Red alert."       # terminal reset, line-drawing set, bell
    script = write_script(f"A: Fine.\nA: {text}\n")
    result = CliRunner().invoke(main, ["-s", str(script), "--backend", "flaky", "--retries", "0",
                                       "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 2                       # a script holds no control characters
    assert "\x1b" not in result.output and "\x07" not in result.output      # no raw control bytes
    assert f"{script}:2: control character '\\x1b' (U+001B) at column 4" in result.output
    flaky.failures["Red alert."] = [SynthesisError("refused \x1b[31mloudly\x1b[0m")]
    script = write_script("A: Red alert.\n")
    result = CliRunner().invoke(main, ["-s", str(script), "--backend", "flaky", "--retries", "0",
                                       "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 1
    assert "\x1b" not in result.output                                      # a backend's message, escaped
    assert "refused \\x1b[31mloudly\\x1b[0m" in result.output


def test_one_line_one_speaker_in_the_summary_and_the_plan(write_script, tone_backend, tmp_path):
    script = write_script("A: Hello.\n")
    runner = CliRunner()
    result = runner.invoke(main, ["-s", str(script), "--backend", "tone", "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 0, result.output
    assert "; 1 line: 1 synthesized" in result.stderr and "0 retries, 0 retakes; 1 speaker;" in result.stderr
    result = runner.invoke(main, ["-s", str(script), "--backend", "tone", "-o", str(tmp_path / "o.wav")])
    assert "is up to date: 1 line, all cached" in result.stderr
    result = runner.invoke(main, ["-s", str(script), "--backend", "tone", "--dry-run"])
    assert "1 line, 1 cached, 0 to synthesize" in result.stdout


def test_verbose_prints_the_cast_before_the_lines(write_script, tone_backend, tmp_path):
    script = write_script("A: Hello.\nB: Hi.\n")
    result = CliRunner().invoke(main, ["-s", str(script), "--backend", "tone", "-o", str(tmp_path / "o.wav"),
                                       "-v", "--voices", "B=high"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    cast_at = next(i for i, ln in enumerate(lines) if ln.startswith("B: tone:high,pan=+0.30"))
    first_line_at = next(i for i, ln in enumerate(lines) if "synthesized in" in ln)
    assert cast_at < first_line_at


def test_cleared_goes_to_stderr(private_cache):
    result = CliRunner().invoke(main, ["--clear-cache"])
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.startswith(f"Cleared the cache at {private_cache}: 0 entries")


def test_blend_is_described_by_speaker_and_weight():
    from dialog_tts.script.voice import Voice
    guest = (("ref_audio", "/a/very/long/path/to/the/guest/recording.wav"), ("ref_text", "What it says."),
             ("weight", 0.6))
    host = (("ref_audio", "/another/long/path/host2.wav"), ("ref_text", None), ("weight", 0.4))
    voice = Voice("blend", "qwen", options=(("mix", (("Guest", guest), ("Host2", host))), ("model", "m")))
    assert voice.describe() == "qwen:blend,mix=Guest:0.6+Host2:0.4,model=m"
    assert Voice("x", "qwen", options=(("instruct", "warm"),)).describe() == "qwen:x,instruct=warm"


# ------------------------------------------------------------------ 23: the benchmark without extras

def test_benchmark_skips_a_section_whose_extra_is_missing(tmp_path):
    """The benchmark's own main, in a child where edge-tts and aiohttp cannot be imported."""
    code = ("import sys; sys.modules['edge_tts'] = None; sys.modules['aiohttp'] = None\n"
            "import benchmark_enhanced as b\n"
            "sys.exit(b.main(['--quick', '--only', 'edge']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    notes = [ln for ln in done.stdout.splitlines() if "skipped" in ln]
    assert notes == ["skipped: edge_tts, aiohttp not installed (in this folder: pip install '.[edge]', "
                     "or pip install 'dialog-tts[edge]')"]


def test_every_backend_checks_itself_once_per_render(write_script, tone_backend, tmp_path):
    checks = []
    tone_backend.check_available = lambda: checks.append("tone")
    script = write_script("".join(f"A: Line {i}.\n" for i in range(5)))
    result = CliRunner().invoke(main, ["-s", str(script), "--backend", "tone", "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 0, result.output
    assert checks == ["tone"]
    backends.get_backend("tone")      # still registered
