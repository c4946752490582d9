"""Renders mixed in blocks (--mix-in-blocks, --out -, Renderer.stream): the same audio as the
whole-buffer mixer, constant memory, and audio out before the last line is synthesized.
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
def test_blocks_write_the_bytes_the_whole_mix_writes(tone_backend, write_script, tmp_path, lufs, suffix):
    script = write_script(SCRIPT)
    whole, blocks = tmp_path / f"whole{suffix}", tmp_path / f"blocks{suffix}"
    a = synthesize_dialog(script, whole, voices=VOICES, lufs=lufs, mix_in_blocks=False)
    b = synthesize_dialog(script, blocks, voices=VOICES, lufs=lufs, mix_in_blocks=True)
    assert a.duration == b.duration
    x, rate = sf.read(whole)
    y, _ = sf.read(blocks)
    assert x.shape == y.shape
    if lufs is None:
        # tones are never limited: the two mixers do the same float32 arithmetic, and dither runs on
        assert whole.read_bytes() == blocks.read_bytes()
    else:   # the gain is searched from the lines' energies rather than the mix's: within 0.01 dB
        ratio = np.sum(y * y) / np.sum(x * x)
        assert abs(10 * np.log10(ratio)) < 0.01
    assert b.loudness is not None and abs(b.loudness - ebur128_lufs(y, rate)) <= 0.15
    if lufs is not None:
        assert abs(ebur128_lufs(y, rate) - lufs) <= 0.2


@pytest.mark.parametrize("suffix", [".mp3", ".ogg", ".opus", ".m4b"])
def test_every_format_is_written_in_blocks(tone_backend, write_script, tmp_path, suffix):
    script = write_script("## One\n" + SCRIPT + "## Two\nB: And after the second chapter.\n")
    out = tmp_path / f"out{suffix}"
    result = synthesize_dialog(script, out, voices=VOICES, lufs=-16.0, mix_in_blocks=True)
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
        synthesize_dialog(script, out, voices={"A": "x,backend=flaky"}, retries=0, mix_in_blocks=True)
    assert failed.value.exit_code == 1 and "FAIL here" in str(failed.value)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["script.txt"]
    calls = len(flaky.calls)
    flaky.failures.clear()
    synthesize_dialog(script, out, voices={"A": "x,backend=flaky"}, retries=0, mix_in_blocks=True)
    assert len(flaky.calls) == calls + 1          # the two good lines stayed cached


def test_music_needs_the_whole_mix(tone_backend, write_script, tmp_path, run):
    script = write_script(SCRIPT)
    bed = tmp_path / "bed.wav"
    sf.write(bed, np.zeros(24000, np.float32), 24000)
    result = run("--script", script, "--voices", "A=low,backend=tone", "--voices", "B=high,backend=tone", "--music", bed,
                 "--mix-in-blocks", "--out", tmp_path / "x.wav")
    assert result.exit_code == 2 and "--music" in result.output


def test_report_and_up_to_date_work_in_blocks(tone_backend, write_script, tmp_path):
    script = write_script(SCRIPT)
    out, report = tmp_path / "out.flac", tmp_path / "report.json"
    first = synthesize_dialog(script, out, voices=VOICES, mix_in_blocks=True, report=report)
    data = json.loads(report.read_text())
    assert len(data["lines"]) == 13 and data["lines"][3]["start"] > 0
    again = synthesize_dialog(script, out, voices=VOICES, mix_in_blocks=True)
    assert again.totals.up_to_date and again.duration == first.duration


LONG = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from conftest import ToneBackend
    from dialog_tts import backends
    from dialog_tts.api import synthesize_dialog
    backends.register("tone", ToneBackend)
    synthesize_dialog({script!r}, {out!r}, voices={{"A": "low,backend=tone", "B": "high,backend=tone"}}, lufs=-16.0,
                      sample_rate=16000, stereo=False, cache=False, mix_in_blocks={blocks})
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's peak over the exec)
    print(next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")))
""")


def _peak_rss_kib(tmp_path, hours: float, blocks: bool) -> int:
    text = "x" * 100                      # 5 s of tone a line
    lines = round(hours * 3600 / 5.25)
    script = tmp_path / f"long{hours}.txt"
    script.write_text("".join(f"{'AB'[i % 2]}: {text}\n" for i in range(lines)))
    code = LONG.format(tests=str(__import__("pathlib").Path(__file__).parent), script=str(script),
                       out=str(tmp_path / f"long{hours}.flac"), blocks=blocks)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_a_long_render_in_blocks_keeps_its_memory(tmp_path):
    short, long = _peak_rss_kib(tmp_path, 0.25, True), _peak_rss_kib(tmp_path, 1.25, True)
    whole_short, whole_long = _peak_rss_kib(tmp_path, 0.25, False), _peak_rss_kib(tmp_path, 0.75, False)
    # an hour more at 16 kHz mono is 230 MB of float32 mix; in blocks it costs a few MB
    assert long - short < 25_000, (short, long)
    assert whole_long - whole_short > 80_000, (whole_short, whole_long)   # the reference: the whole mix grows
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
    outputs = {}
    for mode in (False, True):
        folder = tmp_path / str(mode)
        folder.mkdir()
        result = synthesize_dialog(script, folder / "out.flac", voices=VOICES, mix_in_blocks=mode,
                                   subtitles=folder / "out.srt", review=folder / "review.html")
        outputs[mode] = (result, (folder / "out.srt").read_text(), sf.info(folder / "out.flac"))
    (whole, whole_srt, whole_info), (blocks, blocks_srt, blocks_info) = outputs[False], outputs[True]
    assert blocks_srt == whole_srt and "Line number 3" in blocks_srt
    assert blocks.chapters == whole.chapters and [c["title"] for c in blocks.chapters] == ["One", "Two"]
    page = (tmp_path / "True" / "review.html").read_text()
    assert page == (tmp_path / "False" / "review.html").read_text() and "Line number 11" in page
    import mutagen
    tags = mutagen.File(tmp_path / "True" / "out.flac")
    assert tags["title"] == ["The Book"] and tags["artist"] == ["Someone"]
    assert blocks_info.frames == whole_info.frames


def test_keep_going_leaves_silence_in_blocks(flaky, write_script, tmp_path):
    from dialog_tts.errors import SynthesisError

    flaky.failures["FAIL here"] = [SynthesisError("server rejected it")] * 10
    script = write_script("A: fine one, said at some length.\nA: FAIL here\nA: fine two, said at some length.\n")
    runs = {}
    for mode in (False, True):
        out = tmp_path / f"out{mode}.wav"
        runs[mode] = synthesize_dialog(script, out, voices={"A": "x,backend=flaky"}, retries=0, keep_going=True,
                                       mix_in_blocks=mode)
        assert out.exists()
    assert runs[True].duration == runs[False].duration
    assert [line.source for line in runs[True].lines] == ["cache", "failed", "cache"]
    assert (tmp_path / "outTrue.wav").read_bytes() == (tmp_path / "outFalse.wav").read_bytes()
