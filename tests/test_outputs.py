"""What a run writes: output paths checked up front, symlinks, files not ours, temp files after signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

TWO = "A: Hello there.\nB: Hi, how are you?\n"
ROOT = Path(__file__).resolve().parents[1]


def error_line(result) -> str:
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


# ------------------------------------------------------------------ 15: every output path up front

def test_report_over_the_audio_output_is_a_usage_error(run, write_script, tone_backend, tmp_path):
    result = run("-s", write_script(TWO), "--backend", "tone", "-o", "x.wav", "--report", "x.wav")
    assert result.exit_code == 2 and "x.wav: is also the output x.wav" in error_line(result)
    assert tone_backend.calls == [] and not (tmp_path / "x.wav").exists()


def test_report_over_an_input_is_a_usage_error(run, write_script, tone_backend, tmp_path):
    script = write_script(TWO)
    smap = tmp_path / "map.yaml"
    smap.write_text("A: mid\n", encoding="utf-8")
    for target in (script, smap):
        before = target.read_bytes()
        result = run("-s", script, "--speaker-map", smap, "--backend", "tone", "-o", "o.wav", "--report", target)
        assert result.exit_code == 2 and f"is also the input {target}" in error_line(result)
        assert target.read_bytes() == before
    result = run("-s", script, "--backend", "tone", "-o", script.name)   # the audio over the script
    assert result.exit_code == 2 and "cannot write .txt" in error_line(result)
    assert tone_backend.calls == []


def test_same_file_through_a_symlink_is_caught(run, write_script, tone_backend, tmp_path):
    script = write_script(TWO)
    (tmp_path / "alias.json").symlink_to(script)
    result = run("-s", script, "--backend", "tone", "-o", "o.wav", "--report", "alias.json")
    assert result.exit_code == 2 and "is also the input" in error_line(result)
    assert script.read_text(encoding="utf-8") == TWO


def test_report_in_a_missing_folder_fails_before_synthesis(run, write_script, tone_backend):
    result = run("-s", write_script(TWO), "--backend", "tone", "-o", "o.wav", "--report", "/nonexistent/r.json")
    assert result.exit_code == 2 and "output folder '/nonexistent' does not exist" in error_line(result)
    assert tone_backend.calls == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_in_a_read_only_folder_fails_before_synthesis(run, write_script, tone_backend, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run("-s", write_script(TWO), "--backend", "tone", "-o", locked / "o.wav")
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 2 and "is not writable" in error_line(result)


def test_api_checks_outputs_too(write_script, tone_backend, tmp_path):
    from dialog_tts import InputError, synthesize_dialog
    script = write_script(TWO)
    with pytest.raises(InputError, match="is also the input"):
        synthesize_dialog(script, tmp_path / "o.wav", backend="tone", report=script)
    assert tone_backend.calls == []


# ------------------------------------------------------------------ 16: overwrite only our own files

def test_a_text_file_named_like_audio_is_not_overwritten(run, write_script, tone_backend, tmp_path):
    keep = tmp_path / "keep.wav"
    keep.write_text("my notes, not audio\n", encoding="utf-8")
    script = write_script(TWO)
    result = run("-s", script, "--backend", "tone", "-o", keep)
    assert result.exit_code == 2
    assert "keep.wav: exists and is not an audio file; refusing to overwrite it" in error_line(result)
    assert keep.read_text(encoding="utf-8") == "my notes, not audio\n" and tone_backend.calls == []
    result = run("-s", script, "--backend", "tone", "-o", keep, "--force")
    assert result.exit_code == 0, result.output
    assert sf.info(keep).frames > 0


def test_an_audio_file_and_an_empty_file_are_replaced(run, write_script, tone_backend, tmp_path):
    script = write_script(TWO)
    sf.write(tmp_path / "old.flac", [0.0] * 100, 8000)        # audio of another format, same name
    (tmp_path / "empty.wav").write_bytes(b"")
    for name in ("old.flac", "empty.wav"):
        result = run("-s", script, "--backend", "tone", "-o", name)
        assert result.exit_code == 0, result.output
        assert sf.info(tmp_path / name).frames > 100


def test_only_our_own_report_is_overwritten(run, write_script, tone_backend, tmp_path):
    script = write_script(TWO)
    other = tmp_path / "settings.json"
    other.write_text('{"theme": "dark"}\n', encoding="utf-8")
    result = run("-s", script, "--backend", "tone", "-o", "o.wav", "--report", other)
    assert result.exit_code == 2 and "is not a dialog-tts report" in error_line(result)
    assert json.loads(other.read_text(encoding="utf-8")) == {"theme": "dark"}
    assert run("-s", script, "--backend", "tone", "-o", "o.wav", "--report", "r.json").exit_code == 0
    result = run("-s", script, "--backend", "tone", "-o", "o2.wav", "--report", "r.json")   # ours: replaced
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["output"].endswith("o2.wav")


# ------------------------------------------------------------------ 3: symlinks, across file systems

def test_writing_through_a_symlink_replaces_its_target(run, write_script, tone_backend, tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "episode.wav"
    link = tmp_path / "episode.wav"
    link.symlink_to(target)                                       # dangling until the first write
    result = run("-s", write_script(TWO), "--backend", "tone", "-o", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and sf.info(target).frames > 0       # the link kept, its target written
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["episode.wav"]


def _other_file_system(path: Path) -> Path | None:
    for candidate in ("/dev/shm", "/run/user", "/var/tmp", "/tmp"):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            if os.stat(candidate).st_dev != os.stat(path).st_dev:
                return Path(candidate)
    return None


def test_a_symlink_to_another_file_system_is_written(run, write_script, tone_backend, tmp_path):
    other = _other_file_system(tmp_path)
    if other is None:
        pytest.skip("no second writable file system here")
    import tempfile
    with tempfile.TemporaryDirectory(dir=other) as far:
        link = tmp_path / "out.wav"
        link.symlink_to(Path(far) / "out.wav")
        result = run("-s", write_script(TWO), "--backend", "tone", "-o", link)
        assert result.exit_code == 0, result.output               # was: [Errno 18] Invalid cross-device link
        assert sf.info(Path(far) / "out.wav").frames > 0 and os.listdir(far) == ["out.wav"]


# ------------------------------------------------------------------ 2: temp files after signals and kills

def test_stale_part_files_of_the_same_output_are_removed(run, write_script, tone_backend, tmp_path):
    stale = tmp_path / ".out.wav.k3x_9a2q.part.wav"       # left by a run killed with -9
    others = [tmp_path / ".other.wav.k3x_9a2q.part.wav",  # another output's
              tmp_path / ".out.wav.notes.txt",            # not our pattern
              tmp_path / "out.wav.k3x_9a2q.part.wav"]     # not hidden: not ours
    for path in [stale, *others]:
        path.write_bytes(b"partial")
    result = run("-s", write_script(TWO), "--backend", "tone", "-o", "out.wav")
    assert result.exit_code == 0, result.output
    assert not stale.exists() and all(p.exists() for p in others)
    stale.write_bytes(b"partial")                         # killed again, and the output is up to date
    again = run("-s", write_script(TWO), "--backend", "tone", "-o", "out.wav")
    assert again.exit_code == 0 and "is up to date" in again.output, again.output
    assert not stale.exists() and all(p.exists() for p in others)


def test_a_part_file_being_written_by_another_process_is_left_alone(tmp_path):
    import fcntl
    live = tmp_path / ".out.wav.abcdefgh.part.wav"
    with open(live, "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)               # as atomic_path holds it while writing
        code = (f"from dialog_tts.io import outputs; "
                f"print(len(outputs.remove_stale_parts({str(tmp_path / 'out.wav')!r})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.stdout.strip() == "0", done.stderr
        assert live.exists()
    from dialog_tts.io import outputs
    assert outputs.remove_stale_parts(tmp_path / "out.wav") == [live] and not live.exists()


CHILD = """
import os, signal, sys
from pathlib import Path
from dialog_tts.cli import cleanup_on_signals
from dialog_tts.io.outputs import atomic_path
out = Path(sys.argv[1])
with cleanup_on_signals():
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(b"half an episode")
        print(tmp, flush=True)
        os.kill(os.getpid(), getattr(signal, sys.argv[2]))
        sys.exit(99)   # only reached if the signal did not end the process
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_a_signal_during_the_write_removes_the_temp_file(tmp_path, name):
    out = tmp_path / "episode.wav"
    done = subprocess.run([sys.executable, "-c", CHILD, str(out), name], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    tmp = Path(done.stdout.strip())
    assert tmp.parent == tmp_path and tmp.name.startswith(".episode.wav.")
    assert done.returncode == -getattr(signal, name), done.stderr      # died of the signal: exit 128 + N
    assert not tmp.exists() and list(tmp_path.iterdir()) == []


def test_the_handlers_are_restored_after_a_render(run, write_script, tone_backend):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    assert run("-s", write_script(TWO), "--backend", "tone", "-o", "o.wav").exit_code == 0
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before
