"""The true-peak ceiling holds by the meters people use (issue 26), and the block path's memory.

Every mix here is read by three references, none of them the code under test:
- libebur128 (pyebur128's true peak, 4x oversampled with its own interpolator);
- 16x interpolation whose passband reaches Nyquist: by FFT (``scipy.signal.resample``, the exact
  band-limited interpolation of the zero-padded signal).  A finite filter is no reference for noise
  that reaches Nyquist: ``resample_poly`` with 2 x 512 Kaiser taps a phase reads it up to 0.3 dB over
  the FFT with its cutoff at Nyquist (images of what lies just under it come through) and up to 0.9 dB
  over with its cutoff at 0.995 (its steep edge inside the noise's band rings);
- ffmpeg's ``ebur128=peak=true`` where ffmpeg is installed (those tests skip without it).
The material is rich near Nyquist: clicks, fast limiter action, and noise at 0.9-1.0 of Nyquist.
The tool's own reading must be conservative: at least as high as every reference.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tracemalloc

import numpy as np
import pyebur128
import pytest
import soundfile as sf
from scipy.signal import resample

from dialog_tts.finish import clips as mix
from dialog_tts.finish import loudness
from dialog_tts.finish import mixer as blockmix
from dialog_tts.finish import timeline as tl
from dialog_tts.script.parse import Line
from dialog_tts.script.voice import Voice

CEILING = -1.0
TARGETS = (-23.0, -16.0, -10.0)
FORMS = ((16000, 1), (24000, 2), (44100, 1), (48000, 2))
MATERIALS = ("clicks", "limiter", "nyquist_noise")
FFMPEG = shutil.which("ffmpeg")


# ---------------------------------------------------------------- references (independent of dialog_tts)

def _db(value: float) -> float:
    return 20.0 * math.log10(value) if value > 0 else -math.inf


def _columns(x: np.ndarray) -> list[np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    return [x] if x.ndim == 1 else [x[:, c] for c in range(x.shape[1])]


def ebur128_true_peak_db(x: np.ndarray, rate: int) -> float:
    """libebur128's true peak (dBTP), the largest of the channels."""
    channels = 1 if x.ndim == 1 else x.shape[1]
    state = pyebur128.R128State(channels, rate, pyebur128.MeasurementMode.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(x, dtype=np.float64).ravel(), x.shape[0])
    return _db(max(pyebur128.get_true_peak(state, c) for c in range(channels)))


def fft16_true_peak_db(x: np.ndarray) -> float:
    """16x by FFT: the exact band-limited interpolation of the signal with silence around it."""
    peak = 0.0
    for column in _columns(x):
        padded = np.concatenate([np.zeros(4096), column, np.zeros(4096)])
        peak = max(peak, float(np.abs(resample(padded, 16 * padded.shape[0])).max()))
    return _db(peak)


def ffmpeg_true_peak_db(x: np.ndarray, rate: int, folder) -> float:
    """ffmpeg's ``ebur128=peak=true`` reading of *x* written as a 32-bit float WAV."""
    path = folder / "tp.wav"
    sf.write(path, np.asarray(x, dtype=np.float32), rate, subtype="FLOAT")
    run = subprocess.run([FFMPEG, "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
                          "-f", "null", "-"], capture_output=True, text=True, check=True)
    summary = run.stderr[run.stderr.rindex("Summary:"):]
    return float(re.search(r"True peak:\s*Peak:\s*(-?[\d.]+|-inf)", summary).group(1))


def references_db(x: np.ndarray, rate: int) -> dict[str, float]:
    return {"libebur128": ebur128_true_peak_db(x, rate), "fft16": fft16_true_peak_db(x)}


# ---------------------------------------------------------------- material rich near Nyquist

def _band_noise(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """White noise kept between *lo* and *hi* of Nyquist (by FFT), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.linspace(0.0, 1.0, spectrum.shape[0])
    spectrum[(f < lo) | (f > hi)] = 0.0
    y = np.fft.irfft(spectrum, n)
    return y / np.sqrt(np.mean(y * y))


def material(kind: str, rate: int, channels: int, seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """Speech-like syllables, with clicks, sudden loud bursts (the limiter acts fast), or noise at
    0.9-1.0 of Nyquist on top; float32, ``(n,)`` or ``(n, channels)``."""
    rng = np.random.default_rng(seed + 1000 * MATERIALS.index(kind) + rate + channels)
    n = round(seconds * rate)
    out = np.zeros((n, channels))
    for c in range(channels):
        x = np.zeros(n)
        pos = 0.05
        while pos < seconds - 0.4:
            d = rng.uniform(0.15, 0.3)
            i0, i1 = round(pos * rate), round((pos + d) * rate)
            t = np.arange(i1 - i0) / rate
            f0 = rng.uniform(110, 220)
            x[i0:i1] += 0.1 * np.sin(math.pi * t / d) ** 2 * (np.sin(2 * math.pi * f0 * t)
                                                               + 0.5 * np.sin(4 * math.pi * f0 * t))
            pos += d + rng.uniform(0.08, 0.3)
        if kind == "clicks":
            for at in rng.integers(100, n - 100, 40):
                width = int(rng.integers(1, 6))
                x[at:at + width] += rng.uniform(0.3, 0.8) * (-1.0) ** np.arange(width)   # alternating: at Nyquist
            for at in rng.integers(100, n - 100, 20):
                x[at] += rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.9)
        elif kind == "limiter":
            for at in rng.integers(0, n - rate // 10, 12):
                burst = round(rng.uniform(0.005, 0.05) * rate)
                t = np.arange(burst)
                x[at:at + burst] += rng.uniform(0.5, 0.95) * np.sin(2 * math.pi * rng.uniform(0.3, 0.48) * t) \
                    * np.hanning(burst)
        else:
            x += 0.05 * _band_noise(rng, n, 0.9, 1.0)
            for at in rng.integers(0, n - rate // 5, 8):
                burst = rate // 5
                x[at:at + burst] += 0.2 * _band_noise(rng, burst, 0.9, 1.0) * np.hanning(burst)
        out[:, c] = x
    return (out[:, 0] if channels == 1 else out).astype(np.float32)


# ---------------------------------------------------------------- the two mixers

def whole_path(x: np.ndarray, rate: int, target: float) -> tuple[np.ndarray, float]:
    """The whole-buffer mixer's normalization: (samples, reported true peak)."""
    y = x.copy()
    result = loudness.normalize_loudness(y, rate, target, CEILING)
    assert result.true_peak is not None
    return y, result.true_peak


def block_path(x: np.ndarray, rate: int, target: float) -> tuple[np.ndarray, float]:
    """The block mixer, the material cut into four lines without gaps: (samples, reported true peak)."""
    channels = 1 if x.ndim == 1 else x.shape[1]
    settings = mix.MixSettings(lufs=target, true_peak=CEILING, channels=channels, sample_rate=rate,
                               gap=0.0, leveling="off", allow_quieter=True)
    mono = x if x.ndim == 1 else x[:, 0]       # lines are mono; stereo: panned
    parts = np.array_split(mono, 4)
    lines = [Line("A", "x", i + 1) for i in range(len(parts))]
    voices = [Voice("v", pan=(-0.5, 0.5, 0.0, 0.3)[i] if channels == 2 else None) for i in range(len(parts))]
    inputs = [tl.LineInput(ln, v, p.shape[0]) for ln, v, p in zip(lines, voices, parts)]
    timeline = tl.build(lines, inputs, sample_rate=rate, gap=0.0)
    with blockmix.BlockMix(settings) as bm:
        for entry in timeline.lines:
            bm.add(entry, parts[entry.index][:entry.frames])
        figures = bm.finish(timeline.frames)
        out = np.concatenate(list(bm.blocks()))
        figures = bm.rendered(figures)
    assert figures.true_peak is not None
    return out, figures.true_peak


PATHS = {"whole": whole_path, "blocks": block_path}


def _check(out: np.ndarray, rate: int, reported: float) -> dict[str, float]:
    readings = references_db(out, rate)
    for meter, value in readings.items():
        assert value <= CEILING + 1e-6, (meter, readings, reported)
    assert reported <= CEILING + 1e-6
    assert reported >= max(readings.values()) - 1e-3, (readings, reported)    # conservative
    return readings


@pytest.mark.parametrize("kind", MATERIALS)
@pytest.mark.parametrize("rate, channels", FORMS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("path", PATHS)
def test_the_ceiling_holds_by_every_reference(path, target, rate, channels, kind):
    x = material(kind, rate, channels)
    out, reported = PATHS[path](x, rate, target)
    _check(out, rate, reported)


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
@pytest.mark.parametrize("kind", MATERIALS)
@pytest.mark.parametrize("rate, channels", FORMS)
@pytest.mark.parametrize("path", PATHS)
def test_the_ceiling_holds_by_ffmpeg(tmp_path, path, rate, channels, kind):
    x = material(kind, rate, channels, seed=7)
    out, reported = PATHS[path](x, rate, -10.0)
    got = ffmpeg_true_peak_db(out, rate, tmp_path)
    assert got <= CEILING + 1e-6
    assert reported >= got - 0.05        # ffmpeg prints one decimal
    assert reported <= CEILING + 1e-6


@pytest.mark.parametrize("kind", MATERIALS)
@pytest.mark.parametrize("rate, channels", FORMS)
def test_the_reading_is_at_least_every_reference(rate, channels, kind):
    # unprocessed material, read as the report reads a file: never under a reference
    x = material(kind, rate, channels, seed=3)
    x *= np.float32(0.9 / float(np.abs(x).max()))
    own = loudness.true_peak_db(x, rate)
    readings = references_db(x, rate)
    assert own >= max(readings.values()) - 1e-3, (own, readings)
    assert own <= max(readings.values()) + 0.3, (own, readings)    # and not far over the highest of them


def test_a_tone_near_nyquist_at_its_worst_phase_reads_at_least_its_amplitude():
    # samples of a tone at 0.98 of Nyquist, read at 1/16 sample off its crests: the 8x grid's worst case
    rate = 24000
    n = np.arange(rate)
    x = (0.5 * np.cos(math.pi * 0.98 * (n + 1 / 16))).astype(np.float32)
    per_frame = loudness.true_peak_per_frame(x, rate)
    assert float(per_frame[2000:-2000].max()) >= 0.5 * (1 - 1e-4)
    assert float(per_frame[2000:-2000].max()) <= 0.5 * 1.02     # the bound: at most 0.17 dB over


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_the_file_meter_reads_as_the_mixer_does(tmp_path, suffix):
    from dialog_tts.io.writers import measure_file

    rate = 24000
    x = material("nyquist_noise", rate, 2, seed=5)
    x *= np.float32(0.8 / float(np.abs(x).max()))
    sf.write(tmp_path / f"n{suffix}", x, rate, subtype="FLOAT" if suffix == ".wav" else "PCM_24")
    _lufs, peak = measure_file(tmp_path / f"n{suffix}")
    decoded, _ = sf.read(tmp_path / f"n{suffix}", dtype="float32")
    readings = references_db(decoded, rate)
    assert peak >= max(readings.values()) - 1e-3, (peak, readings)
    assert peak == pytest.approx(loudness.true_peak_db(decoded, rate), abs=0.01)


# ---------------------------------------------------------------- one long clip in the block path

def _one_line_peak_allocation(seconds: float) -> tuple[int, int]:
    """(bytes of the clip, peak bytes traced while the block mixer renders it as one line, clip excluded)."""
    rate = 24000
    settings = mix.MixSettings(lufs=-16.0, channels=2, sample_rate=rate, allow_quieter=True)
    rng = np.random.default_rng(1)
    n = round(seconds * rate)
    t = np.arange(n) / rate
    clip = (0.3 * np.sin(2 * math.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * math.pi * 3 * t))
            + 0.02 * rng.standard_normal(n)).astype(np.float32)
    del t
    line = Line("A", "x", 1)
    timeline = tl.build([line], [tl.LineInput(line, Voice("v", pan=0.3), n)], sample_rate=rate, gap=0.0)
    tracemalloc.start()
    try:
        with blockmix.BlockMix(settings) as bm:
            bm.add(timeline.lines[0], clip)
            bm.finish(timeline.frames)
            total = sum(block.shape[0] for block in bm.blocks())
        assert total == timeline.frames
        return clip.nbytes, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_one_long_line_is_mixed_in_bounded_memory():
    # a whole-clip buffer of the mix (stereo float32) alone would be twice the clip; a per-frame gain
    # curve as int64 and float64 (what an 83-minute line once ran out of memory on) four times; the
    # whole-clip arrays were about 9.5 times the clip.  What grows now is one value a group of 32 frames
    # (the limiter's gain, the group peaks) in a few arrays: about 0.3 times the clip.
    short_bytes, short = _one_line_peak_allocation(120)
    long_bytes, long = _one_line_peak_allocation(600)
    grown = long - short
    assert grown < 0.5 * (long_bytes - short_bytes), (short, long)


# ---------------------------------------------------------------- libebur128's own interpolator

@pytest.mark.parametrize("rate, channels", [(22050, 1), (24000, 2), (48000, 2), (96000, 1), (176400, 2)])
def test_libebur128s_reading_is_reproduced_block_by_block(rate, channels):
    from dialog_tts.finish.loudness import ShortInterpolatorReader

    rng = np.random.default_rng(11)
    x = (0.3 * rng.standard_normal((rate // 2, channels))).astype(np.float32)
    x = x[:, 0].copy() if channels == 1 else x
    reader = ShortInterpolatorReader(rate, channels)
    parts, at = [], 0
    for size in (1, 7, 300, 4000, 2, 10**9):    # blocks of any size, some shorter than the filter
        parts.append(reader.push(x[at:at + size], last=at + size >= x.shape[0]))
        at += size
        if at >= x.shape[0]:
            break
    peaks = np.concatenate(parts)
    assert peaks.shape[0] == x.shape[0]
    assert _db(float(peaks.max())) == pytest.approx(ebur128_true_peak_db(x, rate), abs=1e-4)


@pytest.mark.parametrize("channels", [1, 2])
def test_the_8x_reader_holds_libebur128s_reading_of_every_frame_however_it_is_handed_blocks(channels):
    """The 8x reader hands libebur128's short interpolator only the frames it needs so far (the rest
    wait for a later block): every frame still gets at least that interpolator's reading of the whole
    signal at once, where it reads over the 8x points too (near Nyquist), whatever the block sizes."""
    from dialog_tts.finish.loudness import PeakReader, ShortInterpolatorReader

    rate = 24000
    x = material("nyquist_noise", rate, channels, seconds=1.5)
    short = ShortInterpolatorReader(rate, channels).push(x, last=True)
    for sizes in ((10**9,), (1, 7, 300, 4000, 2, 5000, 10**9), (4096,) * 9 + (10**9,)):
        reader, parts, at = PeakReader(rate, channels), [], 0
        for size in sizes:
            parts.append(reader.push(x[at:at + size], last=at + size >= x.shape[0]))
            at += size
            if at >= x.shape[0]:
                break
        bounds = np.concatenate(parts)
        assert bounds.shape[0] == x.shape[0] == short.shape[0]
        assert (bounds >= short).all(), sizes
    assert (bounds == short).sum() > 100       # frames where the short interpolator reads over the 8x points


def test_a_kokoro_line_holds_the_ceiling_by_libebur128(tmp_path):
    """A Kokoro line whose onset libebur128 once read at -0.97 dBTP under a -1.0 ceiling (0.13 dB over the
    8x reading: its short interpolator passes images of what lies near Nyquist)."""
    import json

    from click.testing import CliRunner

    from dialog_tts.cli import main

    script = tmp_path / "s.txt"
    script.write_text("Margaret: Then why did he keep it painted every spring, Captain?\n", encoding="utf-8")
    for target in ("-14", "-10"):
        out, report = tmp_path / f"o{target}.wav", tmp_path / f"r{target}.json"
        result = CliRunner().invoke(main, ["-s", str(script), "-o", str(out), "--backend", "kokoro", "--voices",
                                           "Margaret=af_sarah", "--lufs", target, "--report", str(report)])
        assert result.exit_code == 0, result.output
        x, rate = sf.read(out, dtype="float32")
        readings = references_db(x, rate)
        if FFMPEG is not None:
            readings["ffmpeg"] = ffmpeg_true_peak_db(x, rate, tmp_path) - 0.05    # it prints one decimal
        reported = json.loads(report.read_text())["true_peak"]
        assert max(readings.values()) <= CEILING + 1e-6, readings
        assert reported >= max(readings.values()) - 1e-3, (readings, reported)


@pytest.mark.parametrize("kind", MATERIALS)
@pytest.mark.parametrize("channels", [1, 2])
def test_a_few_groups_read_from_their_context_read_as_the_whole_signal_does(kind, channels):
    """Groups read alone (each span's reader starts from the signal before it and stops where its
    filters stop reaching) get the true peaks that the whole signal read from its first frame to its
    last gives them, at the signal's start and end too (to float32 rounding; a stereo pair read from
    one channel, times the allowance for the other)."""
    rate = 24000
    x = material(kind, rate, channels, seconds=3.0) * np.float32(2.5)
    groups = -(-x.shape[0] // loudness.GROUP)
    wanted = np.zeros(groups, bool)
    wanted[[0, 1, 7, 40, 41, 900, 1700, 1701, groups // 2, groups - 2, groups - 1]] = True
    wanted[np.argsort(loudness.group_maxima(np.abs(x).max(axis=-1) if channels == 2 else np.abs(x), 0))[-3:]] = True
    alone = loudness.group_true_peaks(x, 0, wanted, rate)[wanted]
    whole = loudness.group_maxima(loudness.true_peak_per_frame(x, rate), 0)[wanted]
    # float32 rounding: of the filters' sums, so relative to the loudest frames the filters reach
    np.testing.assert_allclose(alone, whole, rtol=1e-4, atol=1e-6 * float(np.abs(x).max()))
    assert alone.max() > 0.1      # loud groups among them
