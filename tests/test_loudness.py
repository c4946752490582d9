"""Tests of dialog_tts.finish.loudness: the K-weighting filters, integrated loudness and normalize_loudness.

The references are independent of the code under test: pyloudnorm's filters and meter,
libebur128 (through pyebur128), BS.1770's tabulated 48 kHz coefficients, and a true
peak oversampled with scipy.signal.resample_poly.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
from scipy.ndimage import minimum_filter1d
from scipy.signal import resample_poly, sosfilt, sosfreqz

from dialog_tts.finish import kweighting as compiled
from dialog_tts.finish import loudness
from dialog_tts.finish.loudness import integrated_loudness, k_weighting_sos, normalize_loudness
from measure import ebur128_lufs

RATES = [16000, 22050, 24000, 44100, 48000]
ROOT = Path(__file__).resolve().parents[1]


def noise(rate: int, channels: int, seconds: float = 7.3, seed: int = 0) -> np.ndarray:
    """Seeded white noise at -20 dBFS RMS with a quiet first third (so both BS.1770 gates matter)."""
    rng = np.random.default_rng(seed + rate + channels)
    n = int(rate * seconds)
    x = rng.standard_normal((n, channels) if channels == 2 else n).astype(np.float32) * 0.1
    x[: n // 3] *= 0.01
    return x


def our_lufs(x: np.ndarray, rate: int) -> float:
    ours = integrated_loudness(x, rate)
    assert ours is not None
    return ours


def pyloudnorm_k_weighting(rate: int) -> list[pyloudnorm.IIRfilter]:
    """The stages of pyloudnorm's K-weighting meter (``Meter(rate)``), built with its public IIRfilter and
    the parameters its meter gives them: the high shelf, then the high pass."""
    return [pyloudnorm.IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, rate, "high_shelf"),
            pyloudnorm.IIRfilter(0.0, 0.5, 38.0, rate, "high_pass")]


@pytest.mark.parametrize("rate", RATES)
def test_k_weighting_coefficients_equal_pyloudnorms(rate):
    """Both biquads, designed here, equal the ones pyloudnorm's meter filters with (to float precision)."""
    reference = np.array([np.concatenate([f.b, f.a]) for f in pyloudnorm_k_weighting(rate)])
    ours = k_weighting_sos(rate)
    assert ours.shape == (2, 6) and np.all(ours[:, 3] == 1.0)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-15)


@pytest.mark.parametrize("rate", RATES)
def test_k_weighted_signal_equals_pyloudnorms(rate):
    """Filtering with our sections gives pyloudnorm's K-weighted signal (it runs lfilter per stage)."""
    x = noise(rate, 1)[: rate].astype(np.float64)
    expected = x
    for stage in pyloudnorm_k_weighting(rate):
        expected = stage.apply_filter(expected)
    np.testing.assert_allclose(sosfilt(k_weighting_sos(rate), x), expected, rtol=0, atol=1e-12)


def test_k_weighting_at_48k_is_bs1770s_table():
    """At 48 kHz the response is within 0.05 dB of ITU-R BS.1770's tabulated coefficients, 20 Hz-20 kHz."""
    table = np.array([[1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241,
                       0.73248077421585],
                      [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621]])
    freqs = np.geomspace(20.0, 20000.0, 400)
    _, ours = sosfreqz(k_weighting_sos(48000), worN=freqs, fs=48000)
    _, standard = sosfreqz(table, worN=freqs, fs=48000)
    difference = 20 * np.log10(np.abs(ours)) - 20 * np.log10(np.abs(standard))
    assert np.abs(difference).max() < 0.05
    _, at_10k = sosfreqz(k_weighting_sos(48000), worN=[10000.0], fs=48000)
    assert 20 * math.log10(abs(at_10k[0])) == pytest.approx(4.0, abs=0.1)      # the +4 dB shelf


# How far libebur128 may read above us: it derives its K-weighting from BS.1770's 48 kHz table for
# every rate (its high-pass keeps the table's +0.04 dB passband gain), pyloudnorm (and so we) use
# the cookbook parameters.  Measured: 0.04 LU at 48 kHz, 0.045 at 44.1k, 0.085 at 24k, 0.09 at
# 22.05k, 0.125 at 16k, for noise and voiced audio alike.
EBUR128_TOLERANCE = {16000: 0.14, 22050: 0.11, 24000: 0.1, 44100: 0.06, 48000: 0.06}


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", [1, 2])
def test_integrated_loudness_equals_pyloudnorm_and_ebur128(rate, channels):
    """Our streaming measurement equals pyloudnorm's, and libebur128's within their filters' difference."""
    x = noise(rate, channels)
    ours = our_lufs(x, rate)
    assert ours == pytest.approx(pyloudnorm.Meter(rate).integrated_loudness(x.astype(np.float64)), abs=1e-9)
    assert ours == pytest.approx(ebur128_lufs(x, rate), abs=EBUR128_TOLERANCE[rate])


@pytest.mark.parametrize("rate", RATES)
def test_speech_like_loudness_agrees_with_references(rate):
    """Voiced, speech-like audio (harmonics of 140 Hz, syllables): as with noise."""
    t = np.arange(int(rate * 6.0)) / rate
    voice = sum(0.5 ** k * np.sin(2 * np.pi * 140 * (k + 1) * t) for k in range(12))
    x = (0.2 * voice * np.maximum(0, np.sin(2 * np.pi * 3.7 * t)) ** 2).astype(np.float32)
    ours = our_lufs(x, rate)
    assert ours == pytest.approx(pyloudnorm.Meter(rate).integrated_loudness(x.astype(np.float64)), abs=1e-9)
    assert ours == pytest.approx(ebur128_lufs(x, rate), abs=EBUR128_TOLERANCE[rate])


@pytest.mark.parametrize("channels", [1, 2])
def test_normalize_loudness_works_on_a_bare_array(channels):
    """normalize_loudness takes samples and a rate (no mixer types) and reports what it reached."""
    rate = 24000
    x = noise(rate, channels, seconds=5.0) * np.float32(3.0)
    x[rate:rate + 10] = 0.9                      # a spike for the limiter to hold
    done = normalize_loudness(x, rate, -16.0, -1.0)
    assert done.notes == ()
    assert done.loudness == pytest.approx(-16.0, abs=0.05)
    assert ebur128_lufs(x, rate) == pytest.approx(-16.0, abs=0.15)
    reference_peak = 20 * math.log10(float(np.abs(resample_poly(x.astype(np.float64), 4, 1, axis=0)).max()))
    assert done.true_peak is not None and reference_peak <= done.true_peak + 0.05 <= -1.0 + 0.05
    assert done.true_peak == pytest.approx(reference_peak, abs=0.5)      # an upper bound, measured in groups


def test_normalize_loudness_leaves_short_and_silent_audio_alone():
    short = np.full(100, 0.5, np.float32)
    silent = np.zeros(24000, np.float32)
    assert normalize_loudness(short, 24000, -16.0).notes == ("audio shorter than 0.4 s: loudness not normalized",)
    assert normalize_loudness(silent, 24000, -16.0).notes == ("audio is silent: loudness not normalized",)
    assert np.all(short == 0.5) and not silent.any()


def _imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add("." * node.level + (node.module or ""))
    return modules


def test_loudness_module_boundary():
    """loudness.py needs only NumPy/SciPy/soxr and audio's dB helper (no mixer, no I/O); nothing in the
    package reads pyloudnorm; the mixer reaches the loudness code through dialog_tts.finish.loudness."""
    loudness = _imports(ROOT / "dialog_tts" / "finish" / "loudness.py")
    assert loudness <= {"__future__", "math", "dataclasses", "functools", "collections.abc", "numpy", "soxr",
                        "scipy.signal", "dialog_tts.io.audio",
                        "dialog_tts.finish.kweighting"}   # the project's compiled K-weighting loop
    for path in (ROOT / "dialog_tts").rglob("*.py"):
        assert not any(m.split(".")[0] == "pyloudnorm" for m in _imports(path)), path
    for mixer in ("clips.py", "mixer.py"):
        assert "sosfilt" not in (ROOT / "dialog_tts" / "finish" / mixer).read_text(encoding="utf-8")


@pytest.mark.parametrize(("dtype", "shape"), [(np.float32, (30001,)), (np.float64, (30001,)), (np.float64, (30001, 2))])
def test_the_sosfilt_loop_gives_scipys_sosfilt_bit_for_bit(dtype, shape):
    """dialog_tts.finish.loudness.sosfilt runs the project's compiled loop without importing scipy.signal: same bits,
    with and without a carried state, split anywhere.  (That a render takes the loop, scipy.signal left
    unloaded, is tests/test_imports.py's check.)"""
    x = np.random.default_rng(7).standard_normal(shape).astype(dtype)
    sos = k_weighting_sos(44100).astype(dtype)
    state = np.zeros((2, 2, *shape[1:]), dtype)
    whole, _ = loudness.sosfilt(sos, x)
    assert whole.dtype == dtype and np.array_equal(whole, sosfilt(sos, x, axis=0))
    head, carried = loudness.sosfilt(sos, x[:12345], state)
    tail, final = loudness.sosfilt(sos, x[12345:], carried)
    ref_head, ref_carried = sosfilt(sos, x[:12345], axis=0, zi=state)
    ref_tail, ref_final = sosfilt(sos, x[12345:], axis=0, zi=ref_carried)
    assert np.array_equal(head, ref_head) and np.array_equal(tail, ref_tail)
    assert np.array_equal(carried, ref_carried) and np.array_equal(final, ref_final)
    assert not np.shares_memory(head, x)                    # the input is left alone


def test_without_the_compiled_loop_the_public_sosfilt_gives_the_same(monkeypatch):
    """An install without the compiled loop falls back to scipy.signal.sosfilt: same values, same state."""
    x = np.random.default_rng(3).standard_normal((4000, 2))
    sos = k_weighting_sos(48000)
    fast, fast_state = loudness.sosfilt(sos, x, np.zeros((2, 2, 2)))
    monkeypatch.setattr(compiled, "biquads_loop", lambda: None)
    slow, slow_state = loudness.sosfilt(sos, x, np.zeros((2, 2, 2)))
    assert np.array_equal(fast, slow) and np.array_equal(fast_state, slow_state)


@pytest.mark.parametrize("size", [1, 2, 4, 5, 16, 17, 64, 481])
def test_the_running_minimum_equals_scipy_ndimages(size):
    x = np.random.default_rng(size).random(5000).astype(np.float32)
    x[1000:1300] = 0.25                                     # a plateau, as the limiter's need has
    expected = minimum_filter1d(x, size=size, mode="nearest")[size // 2:size // 2 + x.size - size + 1]
    assert np.array_equal(loudness.running_min(x, size), expected)
    assert loudness.running_min(x[:size - 1], size).size == 0


def test_the_per_frame_gain_is_np_interp_between_group_starts():
    """frame_curve lays the gain out a group per row; np.interp (the reference) gives the same values, to
    the bit, for any span of frames, limited or not."""
    rng = np.random.default_rng(1)
    for trial in range(200):
        n = int(rng.integers(2, 300))
        curve = rng.uniform(0.2, 1.0, n).astype(np.float32)
        if trial % 3 == 0:
            curve[:] = 1.0
            curve[rng.integers(0, n)] = 0.5
        a = int(rng.integers(0, (n - 1) * loudness.GROUP))
        b = int(rng.integers(a + 1, (n - 1) * loudness.GROUP + 1))
        g0, g1 = a // loudness.GROUP, -(-b // loudness.GROUP) + 1
        values = curve[np.minimum(np.arange(g0, g1), n - 1)]
        want = np.interp(np.arange(a, b), np.arange(g0, g1) * loudness.GROUP, values).astype(np.float32)
        got = loudness.frame_curve(curve, a, b)
        assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32)), trial
