"""Renders (files, --out -, Renderer.stream), all mixed in blocks: the target and the ceiling by
independent meters, the same bytes whatever the workers and threads, constant memory, music and
stems in a stream, and audio out before the last line is synthesized.
Loudness by libebur128 (pyebur128), true peak by resample_poly (tests/test_finishing.py)."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pyebur128
import pytest
import soundfile as sf

from conftest import ToneBackend, registered
from dialog_tts.api import Renderer, RenderOptions, synthesize_dialog
from test_finishing import ebur128_lufs, oversampled_peak_db

SCRIPT = "\n".join(f"{'AB'[i % 2]}: Line number {i} says something a little longer than the last one."
                   for i in range(12)) + "\n[pause 1.5s]\nA: The end.\n"
VOICES = {"A": "low,backend=tone,pan=-0.4", "B": "high,backend=tone,pan=0.5,gain=-4"}


@pytest.mark.parametrize("lufs", [None, -16.0])
@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_a_render_reads_as_reported_by_the_references(tone_backend, write_script, tmp_path, lufs, suffix):
    script = write_script(SCRIPT)
    out = tmp_path / f"out{suffix}"
    result = synthesize_dialog(script, out, voices=VOICES, lufs=lufs)
    y, rate = sf.read(out)
    assert abs(y.shape[0] / rate - result.duration) < 1e-3
    assert result.loudness is not None and abs(result.loudness - ebur128_lufs(y, rate)) <= 0.15
    assert oversampled_peak_db(y, rate) <= -1.0
    if lufs is not None:
        assert abs(ebur128_lufs(y, rate) - lufs) <= 0.2


@pytest.mark.parametrize("lufs", [None, -16.0])
def test_the_same_bytes_whatever_the_workers_and_threads(tone_backend, write_script, tmp_path, lufs):
    script = write_script(SCRIPT)
    files = []
    for workers, threads in ((1, 1), (4, 2), (8, 4)):
        out = tmp_path / f"out{workers}.flac"
        synthesize_dialog(script, out, voices=VOICES, lufs=lufs, workers=workers, threads=threads, cache=False)
        files.append(out.read_bytes())
    assert files[0] == files[1] == files[2]


@pytest.mark.parametrize("suffix", [".mp3", ".ogg", ".opus", ".m4b"])
def test_every_format_is_written_in_blocks(tone_backend, write_script, tmp_path, suffix):
    script = write_script("## One\n" + SCRIPT + "## Two\nB: And after the second chapter.\n")
    out = tmp_path / f"out{suffix}"
    result = synthesize_dialog(script, out, voices=VOICES, lufs=-16.0)
    import av
    with av.open(str(out)) as container:
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    x = np.concatenate(frames, axis=1).T.astype(np.float64)
    assert abs(x.shape[0] / rate - result.duration) < 0.1
    assert abs(ebur128_lufs(x, rate) + 16.0) <= 0.5
    assert oversampled_peak_db(x, rate) <= -1.0
    if suffix == ".m4b":
        assert [c["title"] for c in result.chapters] == ["One", "Two"]


def _wav_stream(data: bytes) -> tuple[np.ndarray, int, int]:
    """(samples, rate, channels) of a WAV stream whose sizes say 'until the end' (0xFFFFFFFF)."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    channels, rate = struct.unpack("<HI", data[22:28])
    bits = struct.unpack("<H", data[34:36])[0]
    start = data.index(b"data") + 8
    assert bits == 16
    pcm = np.frombuffer(data[start:start + (len(data) - start) // 2 * 2], "<i2")
    return pcm.reshape(-1, channels) / 32768.0, rate, channels


def test_stdout_streams_a_wav(tone_backend, write_script, run):
    script = write_script(SCRIPT)
    result = run("--script", script, "--voices", "A=low,backend=tone", "--voices", "B=high,backend=tone", "--lufs", "-16",
                 "--out", "-", "--quiet")
    assert result.exit_code == 0, result.output
    x, rate, channels = _wav_stream(result.stdout_bytes)
    assert (rate, channels) == (24000, 2)
    assert oversampled_peak_db(x, rate) <= -1.0
    assert abs(ebur128_lufs(x, rate) + 16.0) <= 0.5     # predicted gain: documented within 0.5 LU


class GatedTone(ToneBackend):
    """A tone backend whose line "LAST" waits until the test lets it go."""

    name = "gated"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def synthesize(self, text, voice):
        if text.startswith("LAST"):
            assert self.release.wait(30), "never released"
        return super().synthesize(text, voice)


@pytest.fixture
def gated():
    yield from registered("gated", GatedTone())


def test_the_stream_starts_before_the_last_line_is_synthesized(gated, write_script):
    lines = [f"A: Line {i} of the long scene, spoken at some length." for i in range(40)] + ["A: LAST line."]
    script = write_script("\n".join(lines) + "\n")
    with Renderer(RenderOptions(voices={"A": "mid,backend=gated"}, lufs=-16.0, workers=2, cache=False)) as renderer:
        stream = renderer.stream(script)
        blocks = iter(stream)
        first = next(blocks)
        assert first.shape[1] == 2 and not gated.release.is_set()
        assert ("LAST line.", "mid") not in gated.calls
        gated.release.set()
        rest = list(blocks)
    x = np.concatenate([first, *rest])
    assert stream.result is not None and abs(x.shape[0] / stream.sample_rate - stream.result.duration) < 1e-3
    assert stream.result.lines[-1].source == "synthesized"


def test_failed_line_writes_nothing_and_keeps_the_cache(flaky, write_script, tmp_path):
    from dialog_tts.errors import SynthesisError, SynthesisFailed

    flaky.failures["FAIL here"] = [SynthesisError("server rejected it")] * 10
    script = write_script("A: fine one\nA: FAIL here\nA: fine two\n")
    out = tmp_path / "out.wav"
    with pytest.raises(SynthesisFailed) as failed:
        synthesize_dialog(script, out, voices={"A": "x,backend=flaky"}, retries=0)
    assert failed.value.exit_code == 1 and "FAIL here" in str(failed.value)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["script.txt"]
    calls = len(flaky.calls)
    flaky.failures.clear()
    synthesize_dialog(script, out, voices={"A": "x,backend=flaky"}, retries=0)
    assert len(flaky.calls) == calls + 1          # the two good lines stayed cached


def test_music_intro_and_stems_come_out_of_a_stream(tone_backend, write_script, tmp_path):
    script = write_script(SCRIPT)
    rate = 24000
    t = np.arange(3 * rate) / rate
    bed, intro = tmp_path / "bed.wav", tmp_path / "intro.wav"
    sf.write(bed, (0.5 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), rate)
    sf.write(intro, (0.5 * np.sin(2 * np.pi * 550 * t[:rate])).astype(np.float32), rate)
    options = RenderOptions(voices=VOICES, lufs=-16.0, music=bed, intro=intro, stems=tmp_path / "stems")
    with Renderer(options) as renderer:
        stream = renderer.stream(script)
        x = np.concatenate(list(stream)).astype(np.float64)
    result = stream.result
    assert abs(x.shape[0] / rate - result.duration) < 1e-3 and result.lines[0].start > 1.0
    assert np.abs(x[:rate // 2]).max() > 0.05                     # the intro, before the first line
    assert abs(ebur128_lufs(x, rate) + 16.0) <= 0.2 and abs(result.loudness - ebur128_lufs(x, rate)) <= 0.15
    assert oversampled_peak_db(x, rate) <= -1.0
    stems = {p.stem: sf.read(p)[0] for p in (tmp_path / "stems").iterdir()}
    assert sorted(stems) == ["A", "B", "music"] and all(s.shape == x.shape for s in stems.values())
    assert np.abs(stems["music"][:rate // 2]).max() > 0.05 and np.abs(stems["A"][:rate // 2]).max() == 0


def test_music_streams_to_stdout(tone_backend, write_script, tmp_path, run):
    script = write_script(SCRIPT)
    bed = tmp_path / "bed.wav"
    sf.write(bed, (0.3 * np.sin(2 * np.pi * 330 * np.arange(24000) / 24000)).astype(np.float32), 24000)
    result = run("--script", script, "--voices", "A=low,backend=tone", "--voices", "B=high,backend=tone", "--music", bed,
                 "--lufs", "-16", "--out", "-", "--quiet")
    assert result.exit_code == 0, result.output
    x, rate = sf.read(__import__("io").BytesIO(result.stdout_bytes))
    assert abs(ebur128_lufs(x, rate) + 16.0) <= 0.2 and oversampled_peak_db(x, rate) <= -1.0
    assert np.abs(x[:rate // 2]).max() > 0.01                     # the bed leads the first line


def test_report_and_up_to_date_work_in_blocks(tone_backend, write_script, tmp_path):
    script = write_script(SCRIPT)
    out, report = tmp_path / "out.flac", tmp_path / "report.json"
    first = synthesize_dialog(script, out, voices=VOICES, report=report)
    data = json.loads(report.read_text())
    assert len(data["lines"]) == 13 and data["lines"][3]["start"] > 0
    again = synthesize_dialog(script, out, voices=VOICES)
    assert again.totals.up_to_date and again.duration == first.duration


LONG = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from conftest import ToneBackend
    from dialog_tts import backends
    from dialog_tts.api import synthesize_dialog
    backends.register("tone", ToneBackend)
    synthesize_dialog({script!r}, {out!r}, voices={{"A": "low,backend=tone", "B": "high,backend=tone"}}, lufs=-16.0,
                      sample_rate=16000, stereo=False, cache=False)
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's peak over the exec)
    print(next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")))
""")


def _peak_rss_kib(tmp_path, hours: float) -> int:
    text = "x" * 100                      # 5 s of tone a line
    lines = round(hours * 3600 / 5.25)
    script = tmp_path / f"long{hours}.txt"
    script.write_text("".join(f"{'AB'[i % 2]}: {text}\n" for i in range(lines)))
    code = LONG.format(tests=str(__import__("pathlib").Path(__file__).parent), script=str(script),
                       out=str(tmp_path / f"long{hours}.flac"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_a_long_render_in_blocks_keeps_its_memory(tmp_path):
    short, long = _peak_rss_kib(tmp_path, 0.25), _peak_rss_kib(tmp_path, 1.25)
    # an hour more at 16 kHz mono is 230 MB of float32 mix; in blocks it costs a few MB
    assert long - short < 25_000, (short, long)
    path = tmp_path / "long1.25.flac"
    info = sf.info(path)
    assert info.samplerate == 16000 and abs(info.duration - 1.25 * 3600) < 30
    state = pyebur128.R128State(1, 16000, pyebur128.MeasurementMode.MODE_I)
    peak = -math.inf
    for block in sf.blocks(path, blocksize=16000 * 300, dtype="float64"):
        state.add_frames(np.ascontiguousarray(block), block.shape[0])
        peak = max(peak, oversampled_peak_db(block, 16000))
    assert abs(pyebur128.get_loudness_global(state) + 16.0) <= 0.15
    assert peak <= -1.0


def test_subtitles_review_chapters_and_tags_in_blocks(tone_backend, write_script, tmp_path):
    text = "---\ntitle: The Book\nartist: Someone\n---\n## One\n" + SCRIPT + "## Two\nB: The second chapter.\n"
    script = write_script(text)
    result = synthesize_dialog(script, tmp_path / "out.flac", voices=VOICES, subtitles=tmp_path / "out.srt",
                               review=tmp_path / "review.html")
    srt = (tmp_path / "out.srt").read_text()
    assert "Line number 3" in srt and srt.count(" --> ") == 14
    assert [c["title"] for c in result.chapters] == ["One", "Two"] and result.chapters[0]["start"] == 0
    assert result.chapters[1]["start"] == pytest.approx(result.lines[-1].start, abs=1e-3)
    page = (tmp_path / "review.html").read_text()
    assert "Line number 11" in page and "out.flac" in page
    import mutagen
    tags = mutagen.File(tmp_path / "out.flac")
    assert tags["title"] == ["The Book"] and tags["artist"] == ["Someone"]
    info = sf.info(tmp_path / "out.flac")
    assert abs(info.frames / info.samplerate - result.duration) < 1e-3


def test_keep_going_leaves_silence_in_blocks(flaky, write_script, tmp_path):
    from dialog_tts.errors import SynthesisError

    flaky.failures["FAIL here"] = [SynthesisError("server rejected it")] * 10
    script = write_script("A: fine one, said at some length.\nA: FAIL here\nA: fine two, said at some length.\n")
    out = tmp_path / "out.wav"
    result = synthesize_dialog(script, out, voices={"A": "x,backend=flaky"}, retries=0, keep_going=True)
    assert [line.source for line in result.lines] == ["synthesized", "failed", "synthesized"]
    x, rate = sf.read(out)
    first, _failed, last = result.lines
    assert last.start - first.end > 0.3 + 2 * 0.25             # a silence as long as the line would take
    assert not np.any(x[round(first.end * rate) + 200:round(last.start * rate) - 200])
    assert np.abs(x[round(last.start * rate):round(last.end * rate)]).max() > 0.01
