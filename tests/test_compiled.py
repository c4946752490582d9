"""Tests of dialog_tts.finish.kweighting: the K-weighting biquads, compiled (dialog_tts._takecheck) or through
scipy.signal.sosfilt, give the same figures, and the loudness meter reads right on either path.

The references are independent of the code under test: scipy.signal.sosfilt (public) for the filter,
libebur128 (through pyebur128) for the meter.  The path without the compiled loop runs in a fresh
interpreter where ``dialog_tts._takecheck`` cannot be imported, as on an install that could not build it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.signal import sosfilt as scipy_sosfilt

from dialog_tts.finish import kweighting as compiled
from dialog_tts.finish.loudness import integrated_loudness, k_weighting_sos
from measure import ebur128_lufs

CASES = [(np.float32, (30001,)), (np.float64, (30001,)), (np.float32, (20001, 2)), (np.float64, (20001, 2))]

#: libebur128 designs its K-weighting filter its own way: agreement within these LU (tests/test_loudness.py)
EBUR128_TOLERANCE = {44100: 0.06, 48000: 0.06}


def needs_the_loop() -> None:
    if compiled.biquads_loop() is None:
        pytest.skip("dialog_tts._takecheck was not built (no C compiler at install)")


def signal(dtype: type, shape: tuple[int, ...], seed: int = 7) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype) * 0.1
    x[: shape[0] // 3] *= 0.01          # a quiet first third, so both BS.1770 gates matter
    return x


def test_the_compiled_loop_is_built_where_a_compiler_is():
    """The install builds the loop with the quality gate's pass (setup.py), wherever it builds that."""
    from dialog_tts.quality import checks as quality

    if quality.compiled() is None:
        pytest.skip("dialog_tts._takecheck was not built (no C compiler at install)")
    assert compiled.biquads_loop() is not None


@pytest.mark.parametrize(("dtype", "shape"), CASES)
def test_the_compiled_biquads_give_scipys_figures(dtype, shape):
    """Whole, and split anywhere with the state carried: scipy's values and states (to float tolerance;
    the arithmetic is the same, so in practice to the bit), in the input's dtype, the input left alone."""
    needs_the_loop()
    x = signal(dtype, shape)
    before = x.copy()
    sos = k_weighting_sos(44100).astype(dtype)
    state = np.zeros((2, 2, *shape[1:]), dtype)
    rtol, atol = (1e-5, 1e-7) if dtype == np.float32 else (1e-12, 1e-15)
    whole, final = compiled.sosfilt(sos, x)
    ref, ref_final = scipy_sosfilt(sos, x, axis=0, zi=state)
    assert whole.dtype == dtype and whole.shape == x.shape and final.shape == state.shape
    np.testing.assert_allclose(whole, ref, rtol=rtol, atol=atol)
    np.testing.assert_allclose(final, ref_final, rtol=rtol, atol=atol)
    head, carried = compiled.sosfilt(sos, x[:12345], state)
    tail, last = compiled.sosfilt(sos, x[12345:], carried)
    np.testing.assert_allclose(np.concatenate([head, tail]), ref, rtol=rtol, atol=atol)
    np.testing.assert_allclose(last, ref_final, rtol=rtol, atol=atol)
    assert np.array_equal(x, before) and not np.shares_memory(whole, x)
    assert np.array_equal(state, np.zeros_like(state))           # the caller's state is left alone too


def test_any_number_of_sections_and_a_starting_state():
    """The loop is a general cascade (not only K-weighting's two sections), from any state."""
    needs_the_loop()
    rng = np.random.default_rng(1)
    sos = np.vstack([k_weighting_sos(48000), k_weighting_sos(16000)[:1]])      # three stable sections
    x = rng.standard_normal((5000, 3))
    zi = rng.standard_normal((3, 2, 3)) * 0.1
    y, final = compiled.sosfilt(sos, x, zi)
    ref, ref_final = scipy_sosfilt(sos, x, axis=0, zi=zi)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(final, ref_final, rtol=1e-12, atol=1e-15)


def test_other_dtypes_and_bad_shapes_are_handled_as_scipy_does():
    """A dtype the loop does not run (complex here) goes to scipy's public function; shapes scipy
    refuses are a ValueError, and a section whose a0 is not 1 too."""
    x = signal(np.float64, (2000,)) * (1 + 0.5j)
    sos = k_weighting_sos(48000)
    y, _ = compiled.sosfilt(sos, x)
    ref, _ = scipy_sosfilt(sos, x, axis=0, zi=np.zeros((2, 2), np.complex128))
    assert y.dtype == np.complex128
    np.testing.assert_array_equal(y, ref)
    with pytest.raises(ValueError):
        compiled.sosfilt(np.ones((2, 5)), np.zeros(10))
    with pytest.raises(ValueError):
        compiled.sosfilt(k_weighting_sos(48000) * 2, np.zeros(10))
    with pytest.raises(ValueError):
        compiled.sosfilt(k_weighting_sos(48000), np.zeros(10), np.zeros((2, 3)))


def test_the_loop_refuses_what_it_cannot_filter():
    """Called directly, the compiled loop checks its arrays instead of reading past them."""
    needs_the_loop()
    loop = compiled.biquads_loop()
    assert loop is not None
    sos = np.ascontiguousarray(k_weighting_sos(48000))
    x = np.zeros((1, 100))
    with pytest.raises(ValueError):
        loop(sos, x, np.zeros((2, 2, 2)))                      # state for two signals, one signal
    with pytest.raises(ValueError):
        loop(sos.astype(np.float32), x, np.zeros((1, 2, 2)))   # mixed dtypes
    with pytest.raises(TypeError):
        loop(sos, np.zeros((100, 1))[::2].T, np.zeros((1, 2, 2)))   # not C-contiguous
    with pytest.raises(ValueError):
        loop(sos, x, x[:, :4].reshape(1, 2, 2))                # the state inside the signal


@pytest.mark.parametrize("rate", [44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_the_meter_reads_as_libebur128_with_the_compiled_loop(rate, channels):
    needs_the_loop()
    x = signal(np.float32, (int(rate * 7.3), 2) if channels == 2 else (int(rate * 7.3),), seed=rate)
    ours = integrated_loudness(x, rate)
    assert ours == pytest.approx(ebur128_lufs(x, rate), abs=EBUR128_TOLERANCE[rate])


WITHOUT_THE_LOOP = """
import json, sys, warnings
sys.modules["dialog_tts._takecheck"] = None          # as on an install that could not build it
warnings.simplefilter("error")
import numpy as np
from dialog_tts.finish import kweighting as compiled
from dialog_tts.finish.loudness import integrated_loudness, k_weighting_sos, sosfilt
folder, rate = sys.argv[1], int(sys.argv[2])
x = np.load(folder + "/x.npy")
y, state = compiled.sosfilt(k_weighting_sos(rate), x)
np.save(folder + "/y.npy", y)
np.save(folder + "/state.npy", state)
np.save(folder + "/meter_y.npy", sosfilt(k_weighting_sos(rate), x)[0])
print(json.dumps({"loop": compiled.biquads_loop() is not None, "lufs": integrated_loudness(x, rate)}))
"""


def test_without_the_compiled_loop_the_figures_are_the_same(tmp_path):
    """Where dialog_tts._takecheck cannot be imported, scipy.signal.sosfilt runs the biquads, silently
    (no output, no warning): the same filtered signal and state as the compiled loop's, and the same
    meter reading, which still agrees with libebur128."""
    rate = 48000
    x = signal(np.float64, (int(rate * 5.2), 2), seed=3)
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run([sys.executable, "-c", WITHOUT_THE_LOOP, str(tmp_path), str(rate)],
                         capture_output=True, text=True, check=True)
    assert run.stderr == ""
    slow = json.loads(run.stdout)
    assert slow["loop"] is False
    y, state = compiled.sosfilt(k_weighting_sos(rate), x)
    for name, ours in (("y", y), ("meter_y", y), ("state", state)):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), ours, rtol=1e-12, atol=1e-15)
    assert slow["lufs"] == pytest.approx(integrated_loudness(x, rate), abs=1e-9)
    assert slow["lufs"] == pytest.approx(ebur128_lufs(x, rate), abs=EBUR128_TOLERANCE[rate])


LOADER_PROBE = """
import json, sys
import numpy as np
from dialog_tts.finish import loudness
y, _ = loudness.sosfilt(loudness.k_weighting_sos(48000), np.zeros(4800, np.float32))
print(json.dumps({"scipy": sorted(m for m in sys.modules if m.split(".")[0] == "scipy")}))
"""


def test_the_loudness_meters_filter_loads_nothing_of_scipys():
    """dialog_tts.finish.loudness filters through the project's own loop: no module of scipy's is loaded."""
    needs_the_loop()
    run = subprocess.run([sys.executable, "-c", LOADER_PROBE], capture_output=True, text=True, check=True)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {"scipy": []}


# ---------------------------------------------------------------- the true-peak reader's bounds

def needs_the_bounds_pass() -> None:
    if compiled.peak_bounds_loop() is None:
        pytest.skip("dialog_tts._takecheck was not built (no C compiler at install)")


def oversampled(frames: int, factor: int, channels: int, seed: int) -> np.ndarray:
    """Points as the 8x reader hands them over: smooth speech-like content with sharp edges, silent
    runs (a silent first window among them) and a few values under float32's normal range."""
    rng = np.random.default_rng(seed)
    shape = (frames * factor, channels) if channels > 1 else (frames * factor,)
    x = np.cumsum(rng.standard_normal(shape), axis=0).astype(np.float32) * np.float32(0.01)
    x *= rng.random(shape[0]).astype(np.float32).reshape(-1, *([1] * (x.ndim - 1))) > 0.02    # clicks of silence
    x[: 40 * factor] = 0.0                                    # a silent start
    x[40 * factor] = 0.3                                      # ... ended by a step
    x[frames * factor // 2: frames * factor // 2 + 300 * factor] = 0.0
    x[frames * factor // 2 + 7] = np.float32(1e-41)          # subnormal
    return x


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(("factor", "window", "first"), [(8, 32, 0), (8, 32, 5), (8, 32, 31), (8, 8, 3),
                                                          (4, 32, 17), (2, 1, 0), (1, 32, 9)])
def test_the_compiled_peak_bounds_are_numpys_to_the_bit(channels, factor, window, first):
    """The one-pass bounds (dialog_tts._takecheck.peak_bounds) are the NumPy version's, bit for bit:
    each frame's peak, each window's highest frame raised by its curvature, windows counted from the
    signal's first frame (*first*), the points before and after the block taken into the edges."""
    from dialog_tts.finish.loudness import _peak_bounds, _peak_bounds_numpy

    needs_the_bounds_pass()
    for frames, seed in ((2001, 1), (64, 2), (1, 3)):
        up = oversampled(max(frames, 1000), factor, channels, seed)[: frames * factor]
        rng = np.random.default_rng(seed + 100)
        edge = (1, channels) if channels > 1 else (1,)
        before, after = (rng.standard_normal(edge).astype(np.float32) * 0.2 for _ in range(2))
        ours = _peak_bounds(up, before, after, factor, first, window)
        numpy_figures = _peak_bounds_numpy(up, before, after, factor, first, window)
        assert ours.dtype == np.float32 and ours.shape == (frames,)
        assert np.array_equal(ours.view(np.uint32), numpy_figures.view(np.uint32)), (frames, seed)


def test_a_nan_in_the_points_gives_numpys_figures():
    """A NaN sends the block to the NumPy version (whose NaN rules the reader keeps); an infinity is read alike."""
    from dialog_tts.finish.loudness import _peak_bounds, _peak_bounds_numpy

    needs_the_bounds_pass()
    up = oversampled(1000, 8, 2, 4)
    up[3000, 1] = np.nan
    edge = np.zeros((1, 2), np.float32)
    ours = _peak_bounds(up, edge, edge, 8, 0, 32)
    assert np.isnan(ours).any()
    assert np.array_equal(ours, _peak_bounds_numpy(up, edge, edge, 8, 0, 32), equal_nan=True)
    up[3000, 1] = np.inf            # one infinite point reads as NumPy reads it, without a NaN on the way
    ours = _peak_bounds(up, edge, edge, 8, 0, 32)
    assert np.isinf(ours).any() and np.array_equal(ours, _peak_bounds_numpy(up, edge, edge, 8, 0, 32))


def test_the_bounds_pass_refuses_what_it_cannot_read():
    """Called directly, the compiled pass checks its arrays instead of reading past them."""
    needs_the_bounds_pass()
    loop = compiled.peak_bounds_loop()
    assert loop is not None
    up, edge, out = np.zeros((80, 2), np.float32), np.zeros((1, 2), np.float32), np.zeros(10, np.float32)
    assert loop(up, edge, edge, 8, 0, 32, out) is True
    with pytest.raises(ValueError):
        loop(up, edge, edge, 8, 0, 32, np.zeros(11, np.float32))        # not one value a frame
    with pytest.raises(ValueError):
        loop(up[:79], edge, edge, 8, 0, 32, out)                        # points of no whole frame
    with pytest.raises(ValueError):
        loop(up, np.zeros((1, 1), np.float32), edge, 8, 0, 32, out)     # another channel count
    with pytest.raises(ValueError):
        loop(up, edge, edge, 8, 32, 32, out)                            # lead outside the window
    with pytest.raises(ValueError):
        loop(up.astype(np.float64), edge, edge, 8, 0, 32, out)          # not float32
    with pytest.raises(ValueError):
        loop(up, edge, edge, 8, 0, 32, up.reshape(-1)[:10])                 # out inside the points


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("factor", [4, 2])
def test_the_compiled_interpolator_peaks_are_numpys_to_the_bit(channels, factor):
    """libebur128's interpolator's peaks in one pass (dialog_tts._takecheck.frame_points) are the NumPy
    version's, bit for bit, on blocks of any length (a block of two frames and of one included)."""
    from dialog_tts.finish.loudness import _frame_points, _frame_points_numpy

    needs_the_bounds_pass()
    for frames, seed in ((5000, 5), (37, 6), (2, 7), (1, 8)):
        data = oversampled(max(frames, 1000), 1, channels, seed)[:frames] * np.float32(4.0)
        ours, numpy_figures = _frame_points(data, factor), _frame_points_numpy(data, factor)
        assert ours.dtype == np.float32 and ours.shape == (max(0, frames - 1),)
        assert np.array_equal(ours.view(np.uint32), numpy_figures.view(np.uint32)), (frames, seed)
    data = oversampled(1000, 1, channels, 9)
    data[500] = np.nan                        # a NaN: NumPy's figures, NaN where the taps reach it
    assert np.array_equal(_frame_points(data, factor), _frame_points_numpy(data, factor), equal_nan=True)
    loop = compiled.frame_points_loop()
    assert loop is not None
    block, taps, out = np.zeros((10, 2), np.float32), np.ones(49, np.float32), np.zeros(9, np.float32)
    assert loop(block, taps, 4, 6, out) is True
    with pytest.raises(ValueError):
        loop(block, taps, 4, 6, np.zeros(10, np.float32))               # not one value for each frame but the last
    with pytest.raises(ValueError):
        loop(block.astype(np.float64), taps, 4, 6, out)                 # not float32
    with pytest.raises(ValueError):
        loop(block, taps, 0, 6, out)                                    # no phases


READER_WITHOUT_THE_PASS = """
import sys
sys.modules["dialog_tts._takecheck"] = None          # as on an install that could not build it
import numpy as np
from dialog_tts.finish import loudness
folder = sys.argv[1]
x = np.load(folder + "/x.npy")
np.save(folder + "/own.npy", loudness.source_peaks(x, 24000, 480))
np.save(folder + "/frames.npy", loudness.true_peak_per_frame(x, 24000))
from dialog_tts.finish import kweighting
print(kweighting.peak_bounds_loop() is None and kweighting.frame_points_loop() is None)
"""


def test_without_the_compiled_pass_the_true_peaks_are_the_same(tmp_path):
    """A line's own true peaks and the per-frame reading are the same bytes where the module cannot be
    imported: the reader's figures do not depend on how the install was built."""
    needs_the_bounds_pass()
    from dialog_tts.finish import loudness

    x = oversampled(24000 * 3, 1, 2, 9) * np.float32(3.0)       # 3 s of stereo audio at 24 kHz, some over 0 dBFS
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run([sys.executable, "-c", READER_WITHOUT_THE_PASS, str(tmp_path)],
                         capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "True" and run.stderr == ""
    assert np.load(tmp_path / "own.npy").tobytes() == loudness.source_peaks(x, 24000, 480).tobytes()
    assert np.load(tmp_path / "frames.npy").tobytes() == loudness.true_peak_per_frame(x, 24000).tobytes()
