"""Issue 26, section 3, items 11 to 17: where a run writes, attacked.

A symlink loop as the output, a closed pipe and a full device on stdout, ``kill -9`` during the
final write, an emptied cache database, a full disk, and an output edited in place with its
mtime put back.  The attacks that need a real process (a pipe, a signal, a file-size limit) run
the command line in a child process with the tone backend registered, as ``tone_backend`` does.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
TWO = "A: Hello there.\nB: Hi, how are you?\n"
FORMATS = ["wav", "flac", "ogg", "opus", "mp3", "m4a"]

#: The command line with the tone backend registered (the child's own registry, as the fixture does it).
CHILD = f"""
import sys
sys.path.insert(0, {str(ROOT / "tests")!r})
from conftest import ToneBackend
from dialog_tts import backends
from dialog_tts.cli import main
backends.register("tone", ToneBackend)
main(sys.argv[1:], prog_name="dialog-tts")
"""


def child(*args: object, **popen: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **popen.pop("env", {})}   # type: ignore[dict-item]
    return subprocess.Popen([sys.executable, "-c", CHILD, *map(str, args)], env=env, **popen)  # type: ignore[call-overload]


def lines_of(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def one_error(text: str) -> str:
    """The one line a failed run printed (and nothing else: no traceback, no 'Exception ignored')."""
    lines = lines_of(text)
    assert len(lines) == 1 and lines[0].startswith("Error: "), text
    return lines[0]


def scene(lines: int = 12, words: int = 12) -> str:
    return "".join(f"{'AB'[i % 2]}: {' '.join(['Speaking'] * words)} line {i}.\n" for i in range(lines))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:       # renamed over the output meanwhile
        return 0


def parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part." in p.name)


# ------------------------------------------------------------------ 11: a symlink loop as the output

@pytest.mark.parametrize("extra", [[], ["--force"]])
def test_a_symlink_loop_as_the_output_is_a_usage_error(run, write_script, tone_backend, tmp_path, extra):
    (tmp_path / "a.wav").symlink_to("b.wav")
    (tmp_path / "b.wav").symlink_to("a.wav")
    script = write_script(TWO)
    result = run("-s", script, "--backend", "tone", "-o", "a.wav", *extra)
    assert result.exit_code == 2, result.output
    assert one_error(result.output) == ("Error: a.wav: is a symlink loop (too many levels of symbolic links): "
                                        "remove the link or choose another name")
    assert tone_backend.calls == []
    assert run("-s", script, "--backend", "tone", "-o", "ok.wav").exit_code == 0   # the up-to-date record next
    again = run("-s", script, "--backend", "tone", "-o", "a.wav", *extra)
    assert again.exit_code == 2 and "symlink loop" in one_error(again.output)


@pytest.mark.parametrize("option", ["--report", "--subtitles", "--stems"])
def test_a_symlink_loop_as_another_output_is_a_usage_error(run, write_script, tone_backend, tmp_path, option):
    name = {"--report": "r.json", "--subtitles": "s.srt", "--stems": "stems"}[option]
    (tmp_path / name).symlink_to("other")
    (tmp_path / "other").symlink_to(name)
    result = run("-s", write_script(TWO), "--backend", "tone", "-o", "o.wav", option, name)
    assert result.exit_code == 2 and f"Error: {name}: is a symlink loop" in one_error(result.output)
    assert not (tmp_path / "o.wav").exists() and tone_backend.calls == []


# ------------------------------------------------------------------ 12: a closed pipe

def _read_then_close(proc: subprocess.Popen, count: int) -> bytes:
    assert proc.stdout is not None
    got = proc.stdout.read(count)
    proc.stdout.close()
    return got


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size", ["large", "small"])
def test_a_closed_pipe_is_one_error_never_success(write_script, fmt, size):
    """``-o - | head -c 100``: the reader leaves early; the run says so, whatever the format, whether
    the output is larger than the pipe's buffer (a write fails; stdout unbuffered, as with ``python -u``,
    where a write may take only part) or fits in it (no write fails)."""
    script = write_script(scene(12, 12) if size == "large" else TWO)
    proc = child("-s", script, "--backend", "tone", "-o", "-", "--format", fmt, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, env={"PYTHONUNBUFFERED": "1" if size == "large" else ""})
    assert len(_read_then_close(proc, 100)) == 100
    _out, err = proc.communicate(timeout=300)
    text = err.decode()
    assert proc.returncode == 1, text
    assert one_error(text) == ("Error: <stdout>: cannot write audio: Broken pipe "
                               "(the program reading it stopped before the end)")


@pytest.mark.parametrize("fmt", ["wav", "ogg"])
def test_a_reader_that_takes_everything_gets_the_whole_stream(write_script, tmp_path, fmt):
    """The control of the test above: read to the end, and the run succeeds with every byte delivered."""
    proc = child("-s", write_script(TWO), "--backend", "tone", "-o", "-", "--format", fmt,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PYTHONUNBUFFERED": "1"})
    data, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and err.decode().startswith("Wrote -"), err.decode()
    (tmp_path / f"got.{fmt}").write_bytes(data)
    decoded, rate = sf.read(tmp_path / f"got.{fmt}")
    assert rate in (24000, 48000) and decoded.shape[0] / rate > 1.0


# ------------------------------------------------------------------ 13: stdout on a full device

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("fmt", FORMATS)
def test_stdout_on_a_full_device_is_one_line(write_script, fmt):
    with open("/dev/full", "wb") as full:
        proc = child("-s", write_script(scene(4)), "--backend", "tone", "-o", "-", "--format", fmt,
                     stdout=full, stderr=subprocess.PIPE)
        _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err.decode()
    assert one_error(err.decode()) == "Error: <stdout>: cannot write audio: No space left on device"


# ------------------------------------------------------------------ 14: kill -9 during the final write

_PART = re.compile(r"\.episode\.wav\.[a-z0-9_]{8}\.part\.wav")


def test_kill_9_during_the_final_write_leaves_one_part_file_that_the_next_run_removes(run, write_script,
                                                                                      tone_backend, tmp_path):
    script = write_script(scene(12, 20))
    seen: list[str] = []
    for _attempt in range(5):          # the write takes a while, but a busy machine may still beat the poll
        proc = child("-s", script, "--backend", "tone", "-o", tmp_path / "episode.wav", "--sample-rate", "48000",
                     "--bit-depth", "32f", "--no-cache", stderr=subprocess.PIPE, cwd=tmp_path)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:     # until audio goes into a part file
            seen = parts(tmp_path)
            if any(_size(tmp_path / name) > 0 for name in seen):
                os.kill(proc.pid, signal.SIGKILL)
                break
            seen = []
            time.sleep(0.001)
        proc.communicate(timeout=120)
        if seen:
            break
    assert seen, "the part file never showed (the run ended first each time)"
    assert proc.returncode == -signal.SIGKILL
    left = parts(tmp_path)
    assert left and all(_PART.fullmatch(name) for name in left), left      # one level: no part of a part
    assert len(left) == 1
    result = run("-s", script, "--backend", "tone", "-o", "episode.wav", "--sample-rate", "48000",
                 "--bit-depth", "32f", "--force")
    assert result.exit_code == 0, result.output
    assert parts(tmp_path) == [] and sf.info(tmp_path / "episode.wav").frames > 0


@pytest.mark.parametrize("extra", [[], ["--force"]])
def test_nested_part_files_left_by_earlier_versions_are_removed(run, write_script, tone_backend, tmp_path, extra):
    script = write_script(TWO)
    assert run("-s", script, "--backend", "tone", "-o", "pk.wav").exit_code == 0
    nested = [tmp_path / "..pk.wav.yj21r91c.part.wav.nh4lbs2x.part.wav",
              tmp_path / "...pk.wav.abcdefgh.part.wav.ijklmnop.part.wav.qrstuvwx.part.wav"]
    plain = tmp_path / ".pk.wav.k3x_9a2q.part.wav"
    not_ours = [tmp_path / "..other.wav.yj21r91c.part.wav.nh4lbs2x.part.wav",
                tmp_path / "..pk.wav.yj21r91c.part.wav.notes.txt"]
    for path in [*nested, plain, *not_ours]:
        path.write_bytes(b"partial")
    result = run("-s", script, "--backend", "tone", "-o", "pk.wav", *extra)     # up to date, or --force
    assert result.exit_code == 0, result.output
    assert ("is up to date" in result.output) == (extra == [])
    assert not any(p.exists() for p in [*nested, plain]) and all(p.exists() for p in not_ours)


def test_a_writer_inside_an_atomic_write_writes_into_its_part_file(tmp_path):
    from dialog_tts.io.outputs import atomic_path

    out = tmp_path / "x.wav"
    with atomic_path(out) as tmp, atomic_path(tmp) as inner:
        assert inner == tmp
        Path(inner).write_bytes(b"RIFF")
        assert parts(tmp_path) == [Path(tmp).name]
    assert out.read_bytes() == b"RIFF" and parts(tmp_path) == []


# ------------------------------------------------------------------ 15: an emptied cache database

def _value_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*/*/*.val"))


def test_an_emptied_cache_database_warns_and_its_orphans_are_counted_and_cleared(run, write_script, tone_backend,
                                                                                   private_cache, tmp_path):
    script = write_script(scene(6, 12))     # long lines: diskcache keeps each in a value file of its own
    made = child("-s", script, "--backend", "tone", "-o", "o.wav", cwd=tmp_path)   # a run that has ended
    assert made.wait(timeout=300) == 0
    files = _value_files(private_cache)
    assert len(files) == 6
    size = sum(f.stat().st_size for f in files)
    (private_cache / "cache.db").write_bytes(b"")                                # emptied
    result = run("-s", script, "--backend", "tone", "-o", "o.wav", "--force")
    assert result.exit_code == 0, result.output
    warnings = [ln for ln in result.output.splitlines() if ln.startswith("Warning:")]
    assert len(warnings) == 1 and "was empty or missing while 6 files" in warnings[0], result.output
    assert "`dialog-tts cache clear` removes them" in warnings[0]
    info = run("cache", "info")
    assert info.exit_code == 0 and "entries:  6\n" in info.output       # synthesized again
    assert "orphans:  6 files" in info.output, info.output
    from dialog_tts.synth.cache import AudioCache
    with AudioCache(private_cache) as cache:
        counted = cache.info()
    assert (counted.orphans, counted.orphan_size) == (6, size)
    cleared = run("cache", "clear")
    assert cleared.exit_code == 0 and "12 entries" in cleared.output, cleared.output
    assert _value_files(private_cache) == [] and not any(f.exists() for f in files)
    assert "orphans" not in run("cache", "info").output


def test_a_missing_cache_database_warns_too(run, write_script, tone_backend, private_cache, tmp_path):
    script = write_script(scene(3, 12))
    assert child("-s", script, "--backend", "tone", "-o", "o.wav", cwd=tmp_path).wait(timeout=300) == 0
    (private_cache / "cache.db").unlink()
    result = run("-s", script, "--backend", "tone", "-o", "o.wav", "--force")
    assert result.exit_code == 0 and "was empty or missing while 3 files" in result.output, result.output
    quiet = run("-s", script, "--backend", "tone", "-o", "o.wav", "--force")    # a healthy cache: no warning
    assert quiet.exit_code == 0 and "Warning" not in quiet.output, quiet.output


# ------------------------------------------------------------------ 16: a full disk

def _limited(limit: int):
    def limit_size() -> None:            # past the limit a write fails with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_size


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "m4a", "m4b"])
def test_a_file_size_limit_during_the_write_is_one_line(run, write_script, tone_backend, tmp_path, fmt):
    """The process may not grow a file past 64 kB (``ulimit -f``): the write fails as on a full disk."""
    script = write_script(scene(20, 4))
    proc = child("-s", script, "--backend", "tone", "-o", f"out.{fmt}", "--no-cache", cwd=tmp_path,
                 stderr=subprocess.PIPE, preexec_fn=_limited(64 * 1024))
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err.decode()
    assert one_error(err.decode()) == f"Error: out.{fmt}: cannot write audio: {os.strerror(errno.EFBIG)}"
    assert not (tmp_path / f"out.{fmt}").exists() and parts(tmp_path) == []


def test_a_file_size_limit_on_the_mix_s_spill_file_is_one_line(run, write_script, tone_backend, tmp_path):
    script = write_script(scene(12, 40))     # 3.5 minutes of lines: more than the mixer holds in memory
    proc = child("-s", script, "--backend", "tone", "-o", "out.m4a", "--no-cache", cwd=tmp_path,
                 stderr=subprocess.PIPE, preexec_fn=_limited(64 * 1024))
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err.decode()
    assert one_error(err.decode()) == (f"Error: {os.path.realpath(tmp_path)}: cannot write the mix's temporary "
                                       f"file here: {os.strerror(errno.EFBIG)}")
    assert not (tmp_path / "out.m4a").exists() and parts(tmp_path) == []


@pytest.mark.parametrize("fmt", ["m4a", "wav"])
def test_a_full_disk_is_one_line(run, write_script, tone_backend, mounts, fmt):
    """A real ENOSPC where a small tmpfs can be mounted (root; skipped elsewhere)."""
    disk = mounts.tmpfs("256k", "disk")
    result = run("-s", write_script(scene(20, 4)), "--backend", "tone", "-o", disk / f"out.{fmt}", "--no-cache")
    assert result.exit_code == 1
    assert one_error(result.output) == f"Error: {disk / f'out.{fmt}'}: cannot write audio: No space left on device"
    assert os.listdir(disk) == []


# ------------------------------------------------------------------ 17: up to date by content

def _edit_in_place(path: Path) -> None:
    """Change one byte in the middle of *path*, then put its mtime back."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


def test_an_output_edited_in_place_with_its_mtime_restored_is_rendered_again(run, write_script, tone_backend,
                                                                             tmp_path):
    script = write_script(TWO)
    args = ("-s", script, "--backend", "tone", "-o", "o.wav", "--subtitles", "o.srt")
    assert run(*args).exit_code == 0
    rendered = (tmp_path / "o.wav").read_bytes()
    assert "is up to date" in run(*args).output
    _edit_in_place(tmp_path / "o.wav")
    again = run(*args)
    assert again.exit_code == 0 and again.output.startswith("Wrote o.wav"), again.output
    assert (tmp_path / "o.wav").read_bytes() == rendered
    _edit_in_place(tmp_path / "o.srt")                  # the subtitles written with it count too
    assert run(*args).output.startswith("Wrote o.wav")
    os.utime(tmp_path / "o.wav")                         # a new mtime, the same bytes: still up to date
    assert "is up to date" in run(*args).output
