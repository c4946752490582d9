"""Loudness and true peak: pure NumPy (with SciPy filters and soxr oversampling), no I/O.

- K-weighting and integrated loudness as ITU-R BS.1770 defines them, measured from
  the energies of 100 ms sub-blocks so that a long mix is never copied;
- the loudness of one line (:func:`measure_line`), gated so that pauses and short
  lines do not read quiet, and its share of the mix's sub-block energies;
- the true peak of every frame (the signal oversampled 8x by an interpolator whose passband
  reaches Nyquist, :class:`Oversampler`), and a bound of it that no finer reading exceeds;
- a look-ahead limiter, and :func:`normalize_loudness`, which brings a buffer to a
  loudness target (or a fixed gain) with its true peak under a ceiling, in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .audio import db_to_gain

OVERSAMPLING = 8          # true peaks are read 8x oversampled, whatever the rate (see Oversampler)
BLOCK = 1 << 16  # frames per block (a multiple of the limiter's group)

# Loudness normalization works on a long mix without copying it: the K-weighted energy of
# every 100 ms sub-block (BS.1770 gating blocks are four of them) is measured once, in
# blocks; a constant gain only scales those energies, so only the regions the limiter
# touches are filtered again in each round of the search.  The limiter itself works on
# groups of frames: their true peaks (oversampled only where a peak could reach the
# ceiling) and one gain per group, interpolated between groups when applied.
_SUB_SECONDS = 0.1        # BS.1770: 400 ms gating blocks, 75 % overlap → 100 ms steps
_GROUP = 32               # frames per limiter group
_WARM = 0.1               # seconds of filter warm-up before a region filtered again
_TP_MARGIN = 4352         # frames of context around an oversampled segment (the interpolator's reach and more)
_TP_SEGMENT = 16384       # true peaks are oversampled in whole segments of this many frames
_TP_HEADROOM = 2.0        # a true peak is assumed at most 2x (6 dB) over the sample peak
_ATTACK = 0.003           # limiter look-ahead, seconds
_HOLD = 0.002             # limiter hold, seconds (short: a 100 ms block around a peak keeps its level)
_TAIL = 0.02              # seconds of K-filter ring-out kept after a line (the energy left after it: < 3e-6)
_DENORMAL_GUARD = 1e-20   # added to a line before K-weighting it in float32 (its energy: 1e-40 a sample)
_PROPORTIONAL = 1e-5      # stereo channels this close to proportional are read as one (a panned mono line)
_TOP_PERCENTILE = 99.5    # the limiter's largest push is counted from this percentile of the peaks
# Meters disagree near Nyquist: short interpolators let through images of what lies just under Nyquist and
# read over the band-limited peak there (on clicks, fast limiting and noise at 0.9-1.0 of Nyquist,
# tests/test_true_peak.py).  libebur128's own reading is taken exactly (ShortInterpolatorReader); for the
# others (ffmpeg's) a reported true peak includes this allowance, and the limiter holds the peaks the
# allowance (and 0.02 dB for the interpolator's last 0.1 % below Nyquist, where its gain falls) under the
# ceiling.
REPORT_ALLOWANCE_DB = 0.05
_CEILING_MARGIN_DB = 0.02 + REPORT_ALLOWANCE_DB
# Half-sample interpolator (Oversampler): 2 x 4096 taps of a Kaiser-windowed sinc (beta 7), applied by FFT.
# Its gain is flat within 0.002 dB up to 0.999 of Nyquist.  Written here because soxr's passband ends near
# 0.95 of Nyquist (its quality recipes have no wider one), and content between 0.95 and 1.0 of Nyquist
# (clicks, a limiter's fast gain changes) raises inter-sample peaks that other meters (libebur128, ffmpeg,
# FFT interpolation) read.  Content that close to Nyquist needs a filter this long to be interpolated.
_HALF_TAPS = 4096
_KAISER_BETA = 7.0
SHORTFALL_LU = 0.5        # a loudness target missed by more than this is not reached

# BS.1770's K-weighting: a high shelf (+4 dB above about 1.5 kHz, the head's acoustic
# effect) followed by the "RLB" high-pass (about 38 Hz).  The standard tabulates both
# biquads at 48 kHz only; for any rate they are designed here from their analog
# parameters with the bilinear transform of the Audio EQ Cookbook (R. Bristow-Johnson),
# the parameters and formulas pyloudnorm uses, so that measurements equal its own.
# We compute them ourselves rather than read pyloudnorm's private ``Meter._filters``.
_SHELF_DB, _SHELF_Q, _SHELF_HZ = 4.0, 1 / np.sqrt(2), 1500.0
_HIGH_PASS_Q, _HIGH_PASS_HZ = 0.5, 38.0


def _cookbook_terms(q: float, fc: float, rate: float) -> tuple[float, float]:
    """(cos w0, alpha) of a cookbook biquad at centre frequency *fc* and sample rate *rate*."""
    w0 = 2.0 * np.pi * (fc / rate)
    return np.cos(w0), np.sin(w0) / (2.0 * q)


def _section(b0: float, b1: float, b2: float, a0: float, a1: float, a2: float) -> np.ndarray:
    """One second-order section ``[b0, b1, b2, 1, a1, a2]`` (scipy's sos layout), normalized by a0."""
    return np.concatenate([np.array([b0, b1, b2]) / a0, np.array([a0, a1, a2]) / a0])


def high_shelf_section(gain_db: float, q: float, fc: float, rate: float) -> np.ndarray:
    """Cookbook high-shelf biquad as one sos row."""
    a = 10 ** (gain_db / 40.0)
    cos_w0, alpha = _cookbook_terms(q, fc, rate)
    root = 2 * np.sqrt(a) * alpha
    return _section(a * ((a + 1) + (a - 1) * cos_w0 + root),
                    -2 * a * ((a - 1) + (a + 1) * cos_w0),
                    a * ((a + 1) + (a - 1) * cos_w0 - root),
                    (a + 1) - (a - 1) * cos_w0 + root,
                    2 * ((a - 1) - (a + 1) * cos_w0),
                    (a + 1) - (a - 1) * cos_w0 - root)


def high_pass_section(q: float, fc: float, rate: float) -> np.ndarray:
    """Cookbook high-pass biquad as one sos row."""
    cos_w0, alpha = _cookbook_terms(q, fc, rate)
    return _section((1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2, 1 + alpha, -2 * cos_w0, 1 - alpha)


def k_weighting_sos(rate: float) -> np.ndarray:
    """BS.1770's K-weighting filter at *rate* Hz as second-order sections (shape (2, 6), for sosfilt)."""
    return np.stack([high_shelf_section(_SHELF_DB, _SHELF_Q, _SHELF_HZ, rate),
                     high_pass_section(_HIGH_PASS_Q, _HIGH_PASS_HZ, rate)])


# ---------------------------------------------------------------- peaks and limiter

def abs_max_channels(x: np.ndarray) -> np.ndarray:
    """|x| per frame, the larger channel for stereo (element-wise: far faster than max(axis=1))."""
    if x.ndim == 1:
        return np.abs(x)
    out = np.abs(x[:, 0])
    for c in range(1, x.shape[1]):
        np.maximum(out, np.abs(x[:, c]), out=out)
    return out


def _max_every(x: np.ndarray, k: int) -> np.ndarray:
    """Maximum of each run of *k* values (len(x) a multiple of k), by strided element-wise maxima."""
    out = x[0::k].copy()
    for i in range(1, k):
        np.maximum(out, x[i::k], out=out)
    return out


def oversampling_for(rate: int) -> int:
    """The oversampling factor of a true peak reading: 8 at every rate.

    What the grid misses depends on the factor, not on the rate (content reaches Nyquist at any
    rate): at 8x up to 0.17 dB, which :func:`_peak_bounds` adds back where the curvature says so."""
    return OVERSAMPLING


@lru_cache(maxsize=1)
def _half_sample_taps() -> np.ndarray:
    """The interpolator's taps: sinc at offsets -4095.5 .. 4095.5, Kaiser-windowed (float32)."""
    offsets = np.arange(-_HALF_TAPS + 1, _HALF_TAPS + 1) - 0.5
    return (np.sinc(offsets) * np.kaiser(2 * _HALF_TAPS, _KAISER_BETA)).astype(np.float32)


@lru_cache(maxsize=16)
def _half_sample_spectrum(size: int) -> np.ndarray:
    return np.fft.rfft(_half_sample_taps(), size)


_FFT_SIZE = 1 << 17      # overlap-save pieces: 94 % of each is new output


@lru_cache(maxsize=64)
def _fast_size(n: int) -> int:
    """The smallest 2**a 3**b 5**c at least *n* (sizes pocketfft transforms fast)."""
    best = 1 << (n - 1).bit_length()
    five = 1
    while five < best:
        three = five
        while three < best:
            size = three << max(0, (-(-n // three) - 1).bit_length())
            best = min(best, size)
            three *= 3
        five *= 5
    return best


def _valid_convolution(x: np.ndarray) -> np.ndarray:
    """``np.convolve(x, taps, 'valid')`` along axis 0, by FFT in overlapping pieces (overlap-save)."""
    taps = 2 * _HALF_TAPS
    count = x.shape[0] - taps + 1
    out = np.empty((max(0, count), *x.shape[1:]), np.float32)
    done = 0
    while done < count:
        piece = x[done:done + _FFT_SIZE]
        size = _FFT_SIZE if piece.shape[0] == _FFT_SIZE else _fast_size(piece.shape[0])
        spectrum = np.fft.rfft(piece, size, axis=0)
        spectrum *= _half_sample_spectrum(size) if x.ndim == 1 else _half_sample_spectrum(size)[:, None]
        y = np.fft.irfft(spectrum, size, axis=0)
        n = piece.shape[0] - taps + 1
        out[done:done + n] = y[taps - 1:taps - 1 + n]
        done += n
    return out


class Oversampler:
    """8x oversampling whose passband reaches Nyquist, for audio handed over in blocks, in order.

    Two steps: the half-sample points are interpolated with a long windowed sinc (FFT convolution),
    which doubles the rate with the band intact up to 0.99 of the old Nyquist; soxr then takes the
    doubled signal up 4x, where all of its content lies well inside soxr's passband.  The output is
    aligned with the input: sample ``j`` is at frame ``j / 8``.  The signal is silent before the
    first block and after the last one (``last=True``)."""

    def __init__(self, rate: int, channels: int, oversampling: int = OVERSAMPLING) -> None:
        import soxr

        self.channels, self.factor = channels, oversampling
        shape = (0,) if channels == 1 else (0, channels)
        self._input = np.zeros((_HALF_TAPS - 1, *shape[1:]), np.float32)   # frames the filter still needs
        self._unpaired = np.zeros(shape, np.float32)     # frames whose half-sample point is not known yet
        self._up = (soxr.ResampleStream(2 * rate, oversampling * rate, channels, dtype="float32", quality="HQ")
                    if oversampling > 2 else None)

    def push(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """The oversampled signal as far as *x* (and the blocks before it) determine it."""
        x = np.asarray(x, np.float32)
        tail = np.zeros((_HALF_TAPS * last, *x.shape[1:]), np.float32)
        data = np.concatenate([self._input, x, tail])
        halves = _valid_convolution(data)
        self._input = data[halves.shape[0]:]
        frames = np.concatenate([self._unpaired, x]) if self._unpaired.shape[0] else x
        n = halves.shape[0]
        doubled = np.empty((2 * n, *x.shape[1:]), np.float32)
        doubled[0::2], doubled[1::2] = frames[:n], halves
        self._unpaired = frames[n:].copy()
        if self._up is None:
            return doubled
        return self._up.resample_chunk(doubled, last=last)


_BOUND_WINDOW = 32        # frames (the limiter's group) whose highest frame is raised to a bound of their peak


def _peak_bounds(up: np.ndarray, before: np.ndarray, after: np.ndarray, factor: int, first: int) -> np.ndarray:
    """For each frame of the oversampled *up* (*factor* points a frame; *before* and *after*: the
    points next to it; *first*: the index of its first frame in the whole signal), the peak of its
    points (the larger channel); the highest frame of each window of 32 (counted from the signal's
    first frame) is raised to a bound of the window's true peak.

    Between grid points a band-limited signal rises over the highest one by at most the curvature
    there times (step / 2)**2 / 2, that is ``|v[-1] - 2 v + v[+1]| / 8``: the window's largest
    curvature, added to its highest point, bounds its peak.  At most 0.005 dB under a tone at
    Nyquist sampled 8x at the worst phase (its highest point alone is 0.17 dB under, a 16x grid's
    0.04 dB), and next to nothing over the peak for speech, whose curvature on an 8x grid is small."""
    n = up.shape[0] // factor
    lead = first % _BOUND_WINDOW
    windows = -(-(lead + n) // _BOUND_WINDOW)
    # |curvature| at every point: differences of differences, the edges from the points next to them
    steps = np.diff(np.concatenate([before, up, after]), axis=0)
    curvature = np.subtract(steps[1:], steps[:-1], out=steps[:-1])
    np.abs(curvature, out=curvature)
    if lead or n % _BOUND_WINDOW:      # laid out on whole windows
        laid = np.zeros((windows * _BOUND_WINDOW * factor, *up.shape[1:]), np.float32)
        laid[lead * factor:lead * factor + up.shape[0]] = curvature
        curvature = laid
    most = curvature.reshape(windows, -1).max(axis=1) * np.float32(0.125)
    magnitude = np.abs(up) if up.ndim == 1 else abs_max_channels(up)
    peaks = _max_every(magnitude, factor)
    # the highest frame of each window gets the window's largest correction
    padded = np.zeros(windows * _BOUND_WINDOW, np.float32)
    padded[lead:lead + n] = peaks
    grid = padded.reshape(windows, _BOUND_WINDOW)
    at = grid.argmax(axis=1)
    grid[np.arange(windows), at] += most
    return padded[lead:lead + n]


# libebur128's true-peak interpolator (ebur128.c, interp_create(49, factor)): a 49-tap Hann-windowed sinc,
# 4x under 96 kHz and 2x under 192 kHz.  Its stopband is shallow, so on content near Nyquist its reading
# lies over the signal's true peak; a Kokoro line read 0.13 dB over the 8x reading there.  Delivery platforms
# meter with it, so it is one of the readings the limiter holds under the ceiling.
_EBU_TAPS = 49
_EBU_CONTEXT = 32         # input frames kept between blocks: twice the frames a peak's points reach at 2x


@lru_cache(maxsize=4)
def _ebu_taps(factor: int) -> np.ndarray:
    j = np.arange(_EBU_TAPS)
    taps: np.ndarray = np.sinc((j - (_EBU_TAPS - 1) / 2) / factor) * 0.5 * (1 - np.cos(2 * np.pi * j / (_EBU_TAPS - 1)))
    return taps


def _interpolate(data: np.ndarray, factor: int) -> np.ndarray:
    """|libebur128's interpolation| of *data* (the larger channel): point m at frame (m - 24) / factor.

    Polyphase with np.convolve rather than scipy.signal.upfirdn (the same points): importing
    scipy.signal costs a render more start-up time than this filter takes (tests/test_imports.py)."""
    taps = _ebu_taps(factor)
    count = data.shape[0]
    columns = [data] if data.ndim == 1 else [data[:, c] for c in range(data.shape[1])]
    points = np.zeros(factor * (count + _EBU_TAPS // factor + 1))
    for column in columns:
        up = np.zeros_like(points)
        for phase in range(factor):
            y = np.convolve(column.astype(np.float64), taps[phase::factor])
            up[phase::factor][:y.shape[0]] = y
        np.maximum(points, np.abs(up), out=points)
    return points[:(count - 1) * factor + _EBU_TAPS]


class ShortInterpolatorReader:
    """Per-frame peaks of libebur128's interpolator (the points within one frame either side) of
    audio handed over in blocks, in order; silence before the first block and after the last."""

    def __init__(self, rate: int, channels: int) -> None:
        self.factor = 4 if rate < 96000 else 2     # (from 192 kHz libebur128 reads the samples)
        self._tail = np.zeros((_EBU_CONTEXT, *((channels,) if channels > 1 else ())), np.float32)
        self._first = -_EBU_CONTEXT         # the frame index of self._tail's first frame
        self._done = 0                      # frames whose peaks are out
        self._received = 0                  # frames handed over

    def push(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """The peaks of the frames that *x* (and the blocks before it) determine; with *last*, of all."""
        data = np.concatenate([self._tail, np.asarray(x, np.float32),
                               np.zeros((_EBU_CONTEXT * last, *self._tail.shape[1:]), np.float32)])
        f, count = self.factor, data.shape[0]
        # point m of the interpolated signal lies at frame (m - 24) / f of data
        points = _interpolate(data, f)
        points = points[(_EBU_TAPS - 1) // 2:(_EBU_TAPS - 1) // 2 + f * (count - 1) + 1]
        between = np.maximum(points[:-1].reshape(count - 1, f).max(axis=1), points[f::f])  # frames i..i+1
        # a frame's peak: the points up to one frame either side; valid where no tap reaches past data
        reach = -(-(_EBU_TAPS - 1) // (2 * f)) + 1
        self._received += np.asarray(x).shape[0]
        stop = max(self._done, min(self._received, self._first + count - reach))
        start = self._done - self._first
        peaks = np.maximum(between[start - 1:stop - self._first - 1], between[start:stop - self._first])
        self._done = stop
        self._tail = data[-_EBU_CONTEXT:].copy()
        self._first += count - _EBU_CONTEXT
        return peaks.astype(np.float32)


class PeakReader:
    """Per-frame true peak bounds (:func:`_peak_bounds`) of audio handed over in blocks, in order,
    at least libebur128's reading (:class:`ShortInterpolatorReader`)."""

    def __init__(self, rate: int, channels: int, oversampling: int = OVERSAMPLING) -> None:
        self.factor = oversampling
        self._shape = (0,) if channels == 1 else (0, channels)
        self._sampler = Oversampler(rate, channels, oversampling)
        self._short = ShortInterpolatorReader(rate, channels) if oversampling > 1 and rate < 192000 else None
        self._short_pending = np.zeros(0, np.float32)          # its peaks of frames not out yet
        self._pending = np.zeros(self._shape, np.float32)                # points of frames not complete yet
        self._before = np.zeros((1, *self._shape[1:]), np.float32)       # silence before the first frame
        self._frames = 0                                                   # frames read so far

    def push(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """The bounds of the frames that *x* (and the blocks before it) complete; with *last*, of all."""
        factor = self.factor
        if self._short is not None:
            self._short_pending = np.concatenate([self._short_pending, self._short.push(x, last=last)])
        up = self._sampler.push(x, last=last)
        up = np.concatenate([self._pending, up]) if self._pending.shape[0] else up
        if last:    # silence after the last frame
            up = np.concatenate([up, np.zeros((factor, *self._shape[1:]), np.float32)])
        usable = max(0, (up.shape[0] - 1) // factor) * factor      # one point after them is needed
        if usable == 0:
            self._pending = up.copy()
            return np.zeros(0, np.float32)
        bounds = _peak_bounds(up[:usable], self._before, up[usable:usable + 1], factor, self._frames)
        self._before, self._pending = up[usable - 1:usable].copy(), up[usable:].copy()
        self._frames += bounds.shape[0]
        return self._with_short(bounds)

    def _with_short(self, bounds: np.ndarray) -> np.ndarray:
        """*bounds*, raised to libebur128's reading of the same frames (it runs ahead of the 8x reader)."""
        if self._short is None:
            return bounds
        n = bounds.shape[0]
        short = self._short_pending[:n]
        np.maximum(bounds[:short.shape[0]], short, out=bounds[:short.shape[0]])
        self._short_pending = self._short_pending[n:]
        return bounds


def true_peak_per_frame(samples: np.ndarray, rate: int, oversampling: int | None = None) -> np.ndarray:
    """For each frame, the true peak near it (all channels): the signal oversampled 8x
    (:class:`Oversampler`, unless *oversampling* says otherwise), never under the sample peak.
    The highest frame of each run of 32 (from the first) is a bound: corrected for what the grid
    can miss (:func:`_peak_bounds`), at least as high as finer readings."""
    oversampling = oversampling or OVERSAMPLING
    if oversampling == 1:
        return abs_max_channels(samples)
    frames = samples.shape[0]
    reader = PeakReader(rate, 1 if samples.ndim == 1 else samples.shape[1], oversampling)
    peaks = np.empty(frames, dtype=np.float32)
    filled = 0
    for start in range(0, frames, BLOCK):
        block = reader.push(np.ascontiguousarray(samples[start:start + BLOCK]), last=start + BLOCK >= frames)
        n = min(block.shape[0], frames - filled)
        peaks[filled:filled + n] = block[:n]
        filled += n
    if filled < frames:  # the resampler's tail: fall back to the sample peaks
        peaks[filled:] = abs_max_channels(samples[filled:])
    return np.maximum(peaks, abs_max_channels(samples))


def running_min(x: np.ndarray, size: int) -> np.ndarray:
    """``out[k] = min(x[k:k + size])`` for every full window (len(x) - size + 1 values).

    van Herk / Gil-Werman: minima accumulated forward and backward within blocks of *size*, so
    three passes whatever the window.  Written here rather than taken from scipy.ndimage's
    minimum_filter1d (same values: a minimum is exact) because importing scipy.ndimage took
    0.37 s of a render on this machine, more than the limiter it serves."""
    n = x.shape[0] - size + 1
    if n <= 0:
        return x[:0].copy()
    blocks = -(-x.shape[0] // size)
    padded = np.full(blocks * size, np.inf, dtype=x.dtype)
    padded[:x.shape[0]] = x
    grid = padded.reshape(blocks, size)
    forward = np.minimum.accumulate(grid, axis=1).ravel()
    backward = np.minimum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.minimum(backward[:n], forward[size - 1:size - 1 + n])


def limiter_gain(peaks: np.ndarray, ceiling: float, rate: float, attack: float = _ATTACK,
                 hold: float = _HOLD) -> np.ndarray:
    """Smooth gain per frame that keeps ``peaks * gain`` at or below *ceiling*.

    The gain needed at each frame is taken as the minimum over a window reaching
    ``attack`` ahead and ``hold`` behind, then averaged over ``attack``: the
    average of values that are all at most the need at a peak is itself at most
    that need, so every peak is held, and the gain moves without steps.
    *rate* is frames per second (a float where a frame is a group of samples).
    """
    need = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12)).astype(np.float32)
    n = need.shape[0]
    if n == 0 or float(need.min()) >= 1.0:
        return need
    w = max(1, round(attack * rate))
    h = max(0, round(hold * rate))
    size = h + w
    # window_min[k] = min(need[k-h .. k+w-1]): a forward window over a padded copy
    padded = np.concatenate([np.ones(h, np.float32), need, np.ones(w - 1, np.float32)])
    window_min = running_min(padded, size)
    # averaged over the attack; before the start the first value stands in (it holds those frames too)
    lead = np.full(w - 1, window_min[0], dtype=np.float64)
    csum = np.concatenate([np.zeros(1), np.cumsum(np.concatenate([lead, window_min]), dtype=np.float64)])
    idx = np.arange(n) + (w - 1)
    smooth = ((csum[idx + 1] - csum[idx + 1 - w]) / w).astype(np.float32)
    return np.minimum(smooth, need)  # float rounding must never let a peak through


# ---------------------------------------------------------------- loudness

def block_count(frames: int, rate: int) -> int:
    """How many 400 ms gating blocks (100 ms apart) BS.1770 measures in *frames*, as pyloudnorm counts them."""
    return int(np.round((frames / rate - 0.4) / _SUB_SECONDS)) + 1


def sub_block_edges(frames: int, rate: int) -> np.ndarray:
    """First frame of each 100 ms sub-block of a buffer of *frames* (block_count + 4 edges, clipped to the end)."""
    return np.minimum((np.arange(block_count(frames, rate) + 4) * _SUB_SECONDS * rate).astype(np.int64), frames)


def gated_loudness(blocks: np.ndarray) -> float:
    """BS.1770 integrated loudness (LUFS) of gating blocks given as mean squares (one channel weight)."""
    with np.errstate(divide="ignore"):
        block_loudness = -0.691 + 10.0 * np.log10(blocks)
    gated = block_loudness >= -70.0
    if not gated.any():
        return -math.inf
    relative = -0.691 + 10.0 * np.log10(blocks[gated].mean()) - 10.0
    gated &= block_loudness > relative
    return float(-0.691 + 10.0 * np.log10(blocks[gated].mean())) if gated.any() else -math.inf


@dataclass(frozen=True)
class LineLevel:
    """A line's K-weighted measurement: its own gating blocks, and its energy in the mix's sub-blocks."""

    blocks: np.ndarray    # mean square of each 400 ms block of the line (one block if it is shorter)
    first: int            # the mix's sub-block where *subs* starts
    subs: np.ndarray      # K-weighted energy (sum of squares) in each mix sub-block from *first*, filter tail included

    @property
    def loudness(self) -> float:
        return gated_loudness(self.blocks)


_SOSFILT_MODULE = "scipy.signal._sosfilt"


@lru_cache(maxsize=1)
def _sosfilt_loop() -> Callable[..., None] | None:
    """The compiled loop inside ``scipy.signal.sosfilt``, loaded without the ``scipy.signal`` package.

    Why not ``from scipy.signal import sosfilt``: with scipy 1.17 that import took 0.75 s of every render
    here (the package rewrites the docstrings of some 650 functions with array-API notes and imports
    scipy.stats), against 16 ms for the loop itself: about a third of a 6-minute cached re-render and of
    the first audio of a stream.  The loop is the one ``sosfilt`` calls, so results are bit-identical.
    None where a scipy release has moved it (the public function is used then).
    """
    from .compiled import load_extension

    loaded = load_extension(_SOSFILT_MODULE, "_sosfilt")
    loop = getattr(loaded, "_sosfilt", None)
    return loop if callable(loop) else None


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.sosfilt(sos, x, axis=0, zi=zi)`` for x of shape ``(n,)`` or ``(n, channels)``:
    the filtered signal (x's dtype, or sos's where wider) and the final state, shaped as scipy shapes it."""
    loop = _sosfilt_loop()
    dtype = np.result_type(sos, x, *(() if zi is None else (zi,)))
    sections = sos.shape[0]
    state_shape = (sections, 2, *x.shape[1:])
    state = np.zeros(state_shape, dtype) if zi is None else np.asarray(zi, dtype)
    if loop is None:
        from scipy.signal import sosfilt as public

        y, final = public(sos, x, axis=0, zi=state)
        return y, final
    signals = np.array(np.moveaxis(x.reshape(x.shape[0], -1), 0, -1), dtype, order="C")     # (channels, n)
    flat = np.array(np.moveaxis(state.reshape(sections, 2, -1), -1, 0), order="C")   # a copy: (channels, sections, 2)
    loop(sos.astype(dtype, copy=False), signals, flat)
    y = np.moveaxis(signals, -1, 0).reshape(x.shape)
    return y, np.moveaxis(flat, 0, -1).reshape(state_shape)


def k_squared(samples: np.ndarray, rate: int, tail: int = 0) -> np.ndarray:
    """The squared K-weighted signal of one mono line followed by *tail* frames of its ring-out.

    Filtered in float32 (3e-6 dB from float64, three times faster), plus a constant of
    1e-20 that keeps the filter's state out of float32's denormal range (exact silence
    otherwise made it ten times slower)."""
    x = np.concatenate([samples, np.zeros(tail, np.float32)])
    x += np.float32(_DENORMAL_GUARD)
    y, _ = sosfilt(k_weighting_sos(rate).astype(np.float32), x)
    y *= y
    return y


def tail_frames(rate: int) -> int:
    """Frames of K-filter ring-out counted after a line (20 ms)."""
    return round(_TAIL * rate)


def measure_line(samples: np.ndarray, rate: int, start: int, edges: np.ndarray, frames: int,
                 squared: np.ndarray | None = None) -> LineLevel:
    """K-weight one mono line placed at *start* in a mix of *frames* frames whose sub-blocks start at *edges*.

    The line is filtered alone (:func:`k_squared`, or *squared* where the caller has it), with
    20 ms of ring-out.  Its gating blocks are BS.1770's (400 ms, 100 ms apart) but counted
    from its own start, so that silence around it never counts; a line shorter than 400 ms
    is one block of its own length (padded to 400 ms with silence, it would read quiet and
    be over-raised).  *edges* may be a slice of the mix's edges: ``first`` counts from it.
    """
    n = samples.shape[0]
    tail = max(0, min(tail_frames(rate), frames - start - n))
    y = k_squared(samples, rate, tail) if squared is None else squared[:n + tail]
    if n >= 0.4 * rate:
        own = np.arange(block_count(n, rate) + 3) * round(_SUB_SECONDS * rate)
        sub = np.add.reduceat(y[:n], own[own < n]).astype(np.float64)
        sub = np.concatenate([sub, np.zeros(len(own) - len(sub))])
        blocks = (sub[:-3] + sub[1:-2] + sub[2:-1] + sub[3:]) / (0.4 * rate)
    else:
        blocks = np.array([float(y[:n].sum(dtype=np.float64)) / max(n, 1)])
    first = int(np.searchsorted(edges, start, side="right")) - 1
    inner = edges[first + 1:][edges[first + 1:] < start + y.shape[0]] - start
    subs = np.add.reduceat(y, np.concatenate([[0], inner]).astype(np.int64)).astype(np.float64)
    return LineLevel(blocks, first, subs)


_LINE_CHUNK = 1 << 20     # frames of a line filtered at once by measure_placed_line (a multiple of _GROUP)


def _add_binned(out: np.ndarray, values: np.ndarray, offset: int, bounds: np.ndarray) -> None:
    """Add to ``out[k]`` the sum of *values* (frames offset.. of a longer run) that fall in
    ``bounds[k]:bounds[k + 1]`` (*bounds* increasing, from 0): np.add.reduceat, one chunk at a time."""
    end = offset + values.shape[0]
    k0 = int(np.searchsorted(bounds, offset, side="right")) - 1
    k1 = int(np.searchsorted(bounds, end, side="left"))
    starts = np.concatenate([[offset], bounds[k0 + 1:k1]]).astype(np.int64) - offset
    out[k0:k0 + starts.shape[0]] += np.add.reduceat(values, starts)


def measure_placed_line(samples: np.ndarray, rate: int, start: int) -> tuple[LineLevel, np.ndarray, np.ndarray]:
    """(level, K-weighted energy per group, sample peak per group) of one mono line placed at frame
    *start* of an unbounded mix: :func:`measure_line` (``first`` counted from the mix's first
    sub-block), :func:`group_sums` of :func:`k_squared` and :func:`group_maxima` of its magnitude,
    filtered and summed in chunks, so that a line of any length needs a few MB beside itself.
    Both group arrays cover the line and its 20 ms of ring-out."""
    n = samples.shape[0]
    tail = tail_frames(rate)
    total = n + tail
    own_step = round(_SUB_SECONDS * rate)
    long_line = n >= 0.4 * rate
    own = np.arange(block_count(n, rate) + 3) * own_step if long_line else np.zeros(1, np.int64)
    own = own[own < n]
    own_sums = np.zeros(own.shape[0])
    k0 = max(0, sub_block_of(start, rate) - 1)
    k1 = sub_block_of(start + total, rate) + 2
    edges = sub_block_edges_between(k0, k1, rate)
    first = int(np.searchsorted(edges, start, side="right")) - 1
    inner = edges[first + 1:][edges[first + 1:] < start + total] - start
    sub_bounds = np.concatenate([[0], inner]).astype(np.int64)
    subs = np.zeros(sub_bounds.shape[0])
    group_bounds = np.arange(-(start % _GROUP), total, _GROUP)
    group_bounds[0] = 0
    energies = np.zeros(group_bounds.shape[0])
    peaks = []
    sos = k_weighting_sos(rate).astype(np.float32)
    state = None
    cut = -start % _GROUP + _LINE_CHUNK        # chunks after the first start on the mix's group grid
    pos = 0
    while pos < total:
        stop = min(total, cut if pos == 0 else pos + _LINE_CHUNK)
        x = np.zeros(stop - pos, np.float32)
        own_part = samples[pos:min(stop, n)]
        x[:own_part.shape[0]] = own_part
        x += np.float32(_DENORMAL_GUARD)
        y, state = sosfilt(sos, x, state)
        y *= y
        if pos < n:
            _add_binned(own_sums, y[:min(stop, n) - pos], pos, own)
            peaks.append(group_maxima(np.abs(own_part), start + pos))
        _add_binned(subs, y, pos, sub_bounds)
        _add_binned(energies, y, pos, group_bounds)
        pos = stop
    if long_line:
        sub = np.concatenate([own_sums, np.zeros(block_count(n, rate) + 3 - own_sums.shape[0])])
        blocks = (sub[:-3] + sub[1:-2] + sub[2:-1] + sub[3:]) / (0.4 * rate)
    else:
        blocks = np.array([float(own_sums.sum()) / max(n, 1)])
    group_peaks = np.concatenate([*peaks, np.zeros(0, np.float32)])
    group_peaks = np.concatenate([group_peaks, np.zeros(energies.shape[0] - group_peaks.shape[0], np.float32)])
    return LineLevel(blocks, first + k0, subs), energies.astype(np.float32), group_peaks


def sub_block_edges_between(first: int, last: int, rate: int) -> np.ndarray:
    """Sub-block edges first..last-1 of an unbounded mix (the same values :func:`sub_block_edges` gives)."""
    return (np.arange(first, last) * _SUB_SECONDS * rate).astype(np.int64)


def sub_block_of(frame: int, rate: int) -> int:
    """The sub-block that holds *frame* (of an unbounded mix)."""
    k = int(frame / (_SUB_SECONDS * rate))
    edges = sub_block_edges_between(max(0, k - 1), k + 2, rate)
    return max(0, k - 1) + int(np.searchsorted(edges, frame, side="right")) - 1


def loudness_of(energies: np.ndarray, frames: int, rate: int) -> float:
    """Integrated loudness (LUFS) of a mix of *frames* frames from its sub-block energies (rows, channels)."""
    blocks = block_count(frames, rate)
    sub = np.zeros((blocks + 3, energies.shape[1]))
    rows = min(blocks + 3, energies.shape[0])
    sub[:rows] = energies[:rows] / (0.4 * rate)
    z = sub[:blocks] + sub[1:blocks + 1] + sub[2:blocks + 2] + sub[3:blocks + 3]
    return gated_loudness(z.sum(axis=1))   # channel weights are 1 (mono, left, right)


class _Loudness:
    """BS.1770 integrated loudness from K-weighted sub-block energies (pyloudnorm's block counting and gating)."""

    def __init__(self, x: np.ndarray, rate: int, base: np.ndarray | None = None) -> None:
        self.sos = k_weighting_sos(rate)
        self.x, self.rate = x, rate
        self.blocks = block_count(x.shape[0], rate)
        self.edges = sub_block_edges(x.shape[0], rate)
        # unit gain; *base* when the caller has measured it (the mixer sums it from its lines)
        self.base = self.energies(0, self.blocks + 3) if base is None else base

    def energies(self, first: int, last: int, gain: Callable[[int, int], np.ndarray] | None = None) -> np.ndarray:
        """Sum of squared K-weighted samples per channel of sub-blocks first..last-1 (x times *gain*)."""
        x, edges = self.x, self.edges
        channels = 1 if x.ndim == 1 else x.shape[1]
        out = np.zeros((last - first, channels))
        start = int(edges[first])
        warm = 0 if first == 0 else min(start, round(_WARM * self.rate))
        pos, stop = start - warm, int(edges[last])
        zi = np.zeros((self.sos.shape[0], 2, channels)) if channels > 1 else np.zeros((self.sos.shape[0], 2))
        while pos < stop:
            end = min(stop, pos + BLOCK)
            chunk = x[pos:end].astype(np.float64)
            if gain is not None:
                g = gain(pos, end)
                chunk *= g if chunk.ndim == 1 else g[:, None]
            y, zi = sosfilt(self.sos, chunk, zi)
            y *= y
            keep_from = max(pos, start)
            lo = int(np.searchsorted(edges, keep_from, side="right")) - 1
            hi = int(np.searchsorted(edges, end, side="left"))          # edges lo+1..hi-1 fall inside
            bounds = np.concatenate([[keep_from], edges[lo + 1:max(lo + 1, min(hi, last + 1))]])
            sums = np.add.reduceat(y[keep_from - pos:], bounds - keep_from, axis=0)
            sums = sums.reshape(len(bounds), channels)
            out[lo - first:lo - first + len(bounds)] += sums
            pos = end
        return out

    def loudness(self, energies: np.ndarray) -> float:
        """Integrated loudness (LUFS) from per-sub-block energies, with BS.1770's two gates."""
        sub = energies / (0.4 * self.rate)
        z = sub[:self.blocks] + sub[1:self.blocks + 1] + sub[2:self.blocks + 2] + sub[3:self.blocks + 3]
        return gated_loudness(z.sum(axis=1))   # channel weights are 1 (mono, left, right)


# ---------------------------------------------------------------- group peaks and gain curves

def _sample_group_peaks(x: np.ndarray) -> np.ndarray:
    """The sample peak of each group of frames, block by block (BLOCK is a multiple of _GROUP)."""
    n = x.shape[0]
    peaks = np.empty(-(-n // _GROUP), dtype=np.float32)
    for start in range(0, n, BLOCK):
        block = abs_max_channels(x[start:start + BLOCK])
        pad = -block.shape[0] % _GROUP
        if pad:
            block = np.concatenate([block, np.zeros(pad, np.float32)])
        peaks[start // _GROUP:start // _GROUP + block.shape[0] // _GROUP] = _max_every(block, _GROUP)
    return peaks


def _segment_runs(check: np.ndarray, codes: Callable[[np.ndarray], np.ndarray]) -> list[tuple[int, int, int]]:
    """(first group, last group, channel code) of each run of whole segments that hold a group in *check*.

    *codes(segments)* says how each segment is oversampled (see :func:`_channel_code`);
    consecutive segments with one code are joined, up to 2**20 frames at once."""
    groups = check.shape[0]
    per = _TP_SEGMENT // _GROUP
    segments = np.flatnonzero(np.add.reduceat(check, np.arange(0, groups, per)) > 0)
    code = codes(segments)
    longest = (1 << 20) // _TP_SEGMENT
    breaks = np.flatnonzero((np.diff(segments) > 1) | (np.arange(1, segments.size) % longest == 0)
                            | (np.diff(code) != 0))
    firsts = np.concatenate([[0], breaks + 1])
    lasts = np.concatenate([breaks, [segments.size - 1]])
    return [(int(segments[a]) * per, min(groups, (int(segments[b]) + 1) * per) - 1, int(code[a]))
            for a, b in zip(firsts, lasts)]


def _channel_code(x: np.ndarray) -> int:
    """-1 when one true peak reading serves all of *x* (mono); for stereo the channel whose true
    peak bounds both (0 or 1: the other is that channel times at most 1, as a panned mono line
    is), or 2 when both must be read.  Reading one channel halves the oversampling."""
    if x.ndim == 1:
        return -1
    if x.shape[0] == 0:
        return 0
    at = [int(np.abs(x[:, c]).argmax()) for c in (0, 1)]
    d = int(abs(x[at[1], 1]) > abs(x[at[0], 0]))
    peak = abs(float(x[at[d], d]))
    if peak == 0.0:
        return d
    ratio = np.float32(x[at[d], 1 - d] / x[at[d], d])     # the other channel's share, read at the peak
    residual = float(np.abs(x[:, 1 - d] - ratio * x[:, d]).max())
    return d if residual <= _PROPORTIONAL * peak else 2


def _run_true_peak(x: np.ndarray, lo: int, hi: int, rate: int, code: int) -> np.ndarray:
    """True peak per frame of x[lo:hi], reading one channel where :func:`_channel_code` allows."""
    if code in (0, 1):
        tp = true_peak_per_frame(np.ascontiguousarray(x[lo:hi, code]), rate)
        return tp * np.float32(1.0 + 4 * _PROPORTIONAL)     # the other channel, within the residual
    return true_peak_per_frame(np.ascontiguousarray(x[lo:hi]), rate)


def _group_peaks(x: np.ndarray, rate: int,
                 candidate: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(peak of each group of frames, which of them are true peaks): groups that *candidate(sample
    peaks)* selects are oversampled; the others keep their sample peak (a lower bound)."""
    n = x.shape[0]
    peaks = _sample_group_peaks(x)
    check = candidate(peaks)
    if not check.any():
        return peaks, check

    def codes(segments: np.ndarray) -> np.ndarray:
        spans = [(max(0, int(s) * _TP_SEGMENT - _TP_MARGIN), min(n, (int(s) + 1) * _TP_SEGMENT + _TP_MARGIN))
                 for s in segments]
        return np.array([_channel_code(x[a:b]) for a, b in spans], dtype=np.int64)

    for first, last, code in _segment_runs(check, codes):   # oversampled with context
        a, b = first * _GROUP, min(n, (last + 1) * _GROUP)
        lo, hi = max(0, a - _TP_MARGIN), min(n, b + _TP_MARGIN)
        tp = _run_true_peak(x, lo, hi, rate, code)[a - lo:b - lo]
        pad = -tp.shape[0] % _GROUP
        if pad:
            tp = np.concatenate([tp, np.zeros(pad, np.float32)])
        peaks[first:first + tp.shape[0] // _GROUP] = _max_every(tp, _GROUP)
        check[first:last + 1] = True      # the whole segment is measured now
    return peaks, check


GROUP = _GROUP


def group_maxima(values: np.ndarray, start: int) -> np.ndarray:
    """The maximum of *values* (one per frame, from frame *start* of the mix) in each of the mix's
    groups of GROUP frames that they touch (the first group is ``start // GROUP``)."""
    lead = start % _GROUP
    padded = np.concatenate([np.zeros(lead, np.float32), values.astype(np.float32, copy=False)])
    pad = -padded.shape[0] % _GROUP
    if pad:
        padded = np.concatenate([padded, np.zeros(pad, np.float32)])
    return _max_every(padded, _GROUP) if padded.size else padded


def group_sums(values: np.ndarray, start: int) -> np.ndarray:
    """The sum of *values* (one per frame, from frame *start*) in each group of GROUP frames they touch."""
    bounds = np.arange(-(start % _GROUP), values.shape[0], _GROUP)
    bounds[0] = 0
    return np.add.reduceat(values, bounds).astype(np.float32) if values.size else values.astype(np.float32)


def limit_groups(peaks: np.ndarray, ceiling: float, rate: int) -> np.ndarray:
    """The limiter's gain per group for group true peaks *peaks* (already times the gain): what
    :func:`normalize_loudness` applies, for a caller that holds a mix in parts."""
    return limiter_gain(peaks, ceiling, rate / _GROUP, attack=_ATTACK, hold=max(_HOLD, 1.5 * _GROUP / rate))


def limiter_reach(rate: int) -> int:
    """Groups before and after a group whose peak the limiter's gain depends on (look-ahead and hold)."""
    return round(_ATTACK * rate / _GROUP) + round(max(_HOLD, 1.5 * _GROUP / rate) * rate / _GROUP) + 2


def ceiling_gain(ceiling_db: float) -> float:
    """The level the limiter holds true peaks at for a ceiling of *ceiling_db* dBTP (with its margin)."""
    return db_to_gain(ceiling_db - _CEILING_MARGIN_DB)


TP_HEADROOM = _TP_HEADROOM


def group_true_peaks(samples: np.ndarray, start: int, wanted: np.ndarray, rate: int) -> np.ndarray:
    """The peak of each group of the mix's grid that mono *samples* placed at frame *start* touch:
    the true peak (oversampled, with context) where *wanted*, the sample peak elsewhere."""
    lead = start % _GROUP
    x = np.concatenate([np.zeros(lead, np.float32), samples]) if lead else samples
    peaks, _measured = _group_peaks(x, rate, lambda _sample_peaks: wanted[:-(-x.shape[0] // _GROUP)])
    return peaks


def frame_curve(group_gain: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Per-frame gain for frames start..stop-1 of *group_gain* (see :func:`_frame_curve`)."""
    return _frame_curve(group_gain, start, stop)


def _frame_curve(group_gain: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Per-frame gain for frames start..stop-1: linear between group starts (never above either end)."""
    g0, g1 = start // _GROUP, -(-stop // _GROUP) + 1
    anchors = np.arange(g0, g1) * _GROUP
    values = group_gain[np.minimum(np.arange(g0, g1), group_gain.shape[0] - 1)]
    return np.interp(np.arange(start, stop), anchors, values).astype(np.float32)


def _apply_curve(x: np.ndarray, group_gain: np.ndarray) -> None:
    """Multiply *x* by the per-frame gain of *group_gain*, in place, block by block."""
    for start in range(0, x.shape[0], BLOCK):
        stop = min(x.shape[0], start + BLOCK)
        c = _frame_curve(group_gain, start, stop)
        x[start:stop] *= c if x.ndim == 1 else c[:, None]


def _final_true_peak(x: np.ndarray, rate: int, peaks: np.ndarray, measured: np.ndarray,
                     curve: np.ndarray) -> float:
    """The true peak (dBTP) of the normalized *x*, measuring again only where it is not yet known
    (with the meters' allowance, REPORT_ALLOWANCE_DB).

    A group whose true peak was measured before the gain keeps it times the largest gain
    applied to it (the gain moves slowly and linearly across a group).  Other groups are
    oversampled now only if their bound (sample peak, times the headroom, times the gain)
    could exceed that, or the highest sample peak (a lower bound of the answer).
    """
    following = np.append(curve[1:], curve[-1:])
    upper = np.maximum(curve, following)
    known = float((peaks * upper)[measured].max()) if measured.any() else 0.0
    # a sample peak is a lower bound of the true peak: only groups that could beat the highest are read
    floor = max(known, float((peaks * np.minimum(curve, following)).max()) if peaks.size else 0.0)
    could_exceed = ~measured & (peaks * upper * np.float32(_TP_HEADROOM) > floor)
    if could_exceed.any():
        again, _ = _group_peaks(x, rate, lambda _sample_peaks: could_exceed)
        known = max(known, float(again[could_exceed].max()))
    return 20.0 * math.log10(known) + REPORT_ALLOWANCE_DB if known > 0 else -math.inf


def true_peak_db(x: np.ndarray, rate: int) -> float:
    """The true peak (dBTP) of *x*, read 8x oversampled wherever it could be the highest: a bound
    (:func:`true_peak_per_frame`) at least as high as finer readings."""
    peaks = _sample_group_peaks(x)
    return _final_true_peak(x, rate, peaks, np.zeros(peaks.shape, bool), np.ones(peaks.shape, np.float32))


def integrated_loudness(x: np.ndarray, rate: int) -> float | None:
    """BS.1770 integrated loudness (LUFS) of *x*; None if it is shorter than one 400 ms block."""
    if x.shape[0] < 0.4 * rate:
        return None
    meter = _Loudness(x, rate)
    return meter.loudness(meter.base)


# ---------------------------------------------------------------- normalization

class _LimitedGain:
    """Loudness of *x* under a gain with the limiter holding its true peaks under *ceiling*.

    True peaks are measured where a gain of up to ``plain + reach`` dB could bring them
    near the ceiling; :meth:`reach_further` measures up to the largest gain (:meth:`top`) when the
    search goes beyond that.
    """

    def __init__(self, x: np.ndarray, rate: int, meter: _Loudness | None, plain: float, ceiling: float,
                 max_push_db: float) -> None:
        self.meter, self.x, self.rate = meter, x, rate
        self.plain, self.ceiling, self.max_push_db = plain, ceiling, max_push_db
        self.reach = min(3.0, max_push_db)
        self._top: float | None = None
        self.peaks = _sample_group_peaks(x)
        self.measured = np.zeros(self.peaks.shape, bool)
        self._checked: tuple[float, float] | None = None   # (plain, reach) of the last check of every group
        self._measure_peaks()

    def _measure_peaks(self, g0: int = 0, g1: int | None = None) -> None:
        """Read the true peak of every group not read yet that the reach could bring near the ceiling.

        After a check of every group, the others can only become wanted again where their peaks
        changed (groups g0..g1-1, :meth:`rescale`) or when plain or reach moved: the check then
        covers g0..g1-1 alone, with the same result (2 ms of 2.7 M groups, 1160 times an hour)."""
        bound = np.float32(_TP_HEADROOM * db_to_gain(self.plain + self.reach))
        if g1 is not None and self._checked == (self.plain, self.reach):
            part = ~self.measured[g0:g1] & (self.peaks[g0:g1] * bound > self.ceiling)
            if not part.any():
                return
            wanted = np.zeros(self.peaks.shape, bool)
            wanted[g0:g1] = part
        else:
            wanted = ~self.measured & (self.peaks * bound > self.ceiling)
            self._checked = (self.plain, self.reach)
        if wanted.any():
            again, measured = _group_peaks(self.x, self.rate, lambda _sample_peaks: wanted)
            self.peaks[measured], self.measured[measured] = again[measured], True

    def top(self) -> float:
        """The largest gain (dB): the one at which the limiter takes max_push_db off the speech's high
        peaks (the 99.5th percentile of the sounding groups' peaks, so that one click does not decide),
        as first measured (what :meth:`rescale` adds later is on top)."""
        if self._top is None:
            sounding = self.peaks[self.peaks > self.peaks.max() * 1e-3] if self.peaks.size else self.peaks
            peak = float(np.percentile(sounding, _TOP_PERCENTILE)) if sounding.size else 0.0
            self._top = (20.0 * math.log10(self.ceiling / peak) if peak > 0 else 0.0) + self.max_push_db
        return self._top

    def reach_further(self, gain_db: float) -> bool:
        """Measure true peaks up to the largest gain once *gain_db* is beyond the reach; True if it did."""
        furthest = self.top() - self.plain
        if gain_db > self.plain + self.reach and self.reach < furthest:
            self.reach = furthest
            self._measure_peaks()
            return True
        return False

    def rescale(self, start: int, stop: int, factor: float) -> None:
        """Multiply frames start..stop-1 by *factor*, and the peaks known there with them (edges: upper bounds)."""
        self.x[start:stop] *= np.float32(factor)
        g0, g1 = start // _GROUP, -(-stop // _GROUP)
        self.peaks[g0:g1] *= np.float32(factor)
        if factor < 1.0:    # a group shared with the frames around keeps the larger of its two peaks
            for g in {g0, g1 - 1}:
                if g < self.peaks.shape[0] and (g * _GROUP < start or (g + 1) * _GROUP > stop):
                    self.peaks[g] /= np.float32(factor)
        self._measure_peaks(g0, g1)

    def group_gain(self, gain_db: float) -> np.ndarray:
        """Gain per group (limiter included) at a gain of *gain_db*; hold spans at least one group."""
        g = db_to_gain(gain_db)
        return limit_groups(self.peaks * np.float32(g), self.ceiling, self.rate) * np.float32(g)

    def loudest(self) -> float:
        """The loudness at the largest push (the loudest this ceiling allows)."""
        self.reach_further(self.top())
        return self.loudness_at(self.top())

    def loudness_at(self, gain_db: float) -> float:
        """Integrated loudness (LUFS) of *x* times the limited gain of *gain_db*."""
        assert self.meter is not None
        return self.meter.loudness(self.energies_at(gain_db))

    def energies_at(self, gain_db: float) -> np.ndarray:
        """Sub-block energies of *x* times the limited gain of *gain_db*."""
        assert self.meter is not None
        g = db_to_gain(gain_db)
        curve = self.group_gain(gain_db)
        energies = self.meter.base * (g * g)
        limited = np.flatnonzero(curve < np.float32(g) * np.float32(0.99999))
        if limited.size:  # filter the limited regions again, from just before to just after
            self._refilter(energies, limited, curve)
        return energies

    def _refilter(self, energies: np.ndarray, limited: np.ndarray, curve: np.ndarray) -> None:
        """Measure again, in *energies*, the sub-blocks around the *limited* groups under *curve*."""
        meter = self.meter
        assert meter is not None
        subs = unique_sorted(np.searchsorted(meter.edges, limited * _GROUP, side="right") - 1)
        subs = unique_sorted(np.clip(np.concatenate([subs, subs + 1]), 0, meter.blocks + 2))
        for run in np.split(subs, np.flatnonzero(np.diff(subs) > 1) + 1):
            first, last = int(run[0]), int(run[-1]) + 1
            energies[first:last] = meter.energies(first, last, lambda a, b: _frame_curve(curve, a, b))


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` of a 1-D array: sorted, each value once.  Written out because NumPy 2.4's
    ``np.unique`` imports ``numpy.ma`` on its first call (7 ms of a render here, measured)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _secant_gain(gain: float, got: float, prev: tuple[float, float] | None, target: float) -> float:
    """The next gain of the secant search; the slope is kept between 0.02 and 1 LU per dB."""
    slope = 1.0 if prev is None or prev[0] == gain else (got - prev[1]) / (gain - prev[0])
    return gain + (target - got) / min(1.0, max(0.02, slope))


def _search(gains: _LimitedGain, target: float, tolerance: float, max_rounds: int) -> tuple[float, float]:
    """(gain in dB, loudness reached there): a secant search for *target*, kept inside a bracket."""
    high = gains.top()
    gain = min(gains.plain, high)
    low = gain - 1.0
    got = gains.loudness_at(gain)
    prev: tuple[float, float] | None = None
    for _ in range(max_rounds):
        if gains.reach_further(gain):   # beyond what was measured: measured further, measure again
            got = gains.loudness_at(gain)
        if abs(got - target) <= tolerance:
            break
        if got < target:
            low = max(low, gain)
        else:
            high = min(high, gain)
        step_to = _secant_gain(gain, got, prev, target)
        prev = (gain, got)
        gain = step_to if low < step_to < high else (low + high) / 2   # outside the bracket: bisect
        got = gains.loudness_at(gain)
    return gain, got


@dataclass(frozen=True)
class Normalization:
    """What :func:`normalize_loudness` reached: LUFS and dBTP (None where not measured), and notes.

    ``loudest`` is set when the target was out of reach: the loudest LUFS the ceiling allows."""

    loudness: float | None = None
    true_peak: float | None = None
    notes: tuple[str, ...] = ()
    loudest: float | None = None
    gain_db: float = 0.0          # the plain gain applied, before the limiter's


def normalize_loudness(x: np.ndarray, rate: int, target: float | None, ceiling_db: float = -1.0,
                       tolerance: float = 0.05, max_rounds: int = 12, max_push_db: float = 12.0, *,
                       gain_db: float = 0.0, energies: np.ndarray | None = None,
                       accept_short: bool = True) -> Normalization:
    """Bring *x* to *target* LUFS with its true peak at or below *ceiling_db*, in place.

    A plain gain reaches the target; where that pushes the true peak over the
    ceiling, a look-ahead limiter holds the peaks, and the gain is raised further
    (at most until the limiter takes *max_push_db* off the speech's peaks) until the
    limited signal meets the target too.  Loudness grows monotonically with the gain but by less than 1 dB per dB
    once the limiter works, so the gain is found by a secant search kept inside a
    bracket.  A target missed by more than SHORTFALL_LU even at the largest push is
    out of reach: with *accept_short* the loudest result is kept (with a note),
    otherwise *x* is left as it is and ``loudest`` says what could be reached.
    With *target* None, *x* gets the fixed gain *gain_db* and the limiter alone.
    *energies*: the K-weighted sub-block energies of *x*, where the caller has them.
    """
    normalizer = Normalizer(x, rate, target, ceiling_db, max_push_db, gain_db=gain_db, energies=energies)
    gain, got = normalizer.search(tolerance, max_rounds)
    return normalizer.finish(gain, got, accept_short)


class Normalizer:
    """:func:`normalize_loudness` in steps, for a caller that rescales parts of *x* between the
    search and the result (the mixer compensates what the limiter takes from each speaker)."""

    def __init__(self, x: np.ndarray, rate: int, target: float | None, ceiling_db: float = -1.0,
                 max_push_db: float = 12.0, *, gain_db: float = 0.0, energies: np.ndarray | None = None) -> None:
        self.x, self.rate, self.target, self.ceiling_db = x, rate, target, ceiling_db
        self.max_push_db, self.gain_db = max_push_db, gain_db
        self.notes: tuple[str, ...] = ()
        long_enough = x.shape[0] >= 0.4 * rate           # one whole 400 ms block is needed
        meter = _Loudness(x, rate, energies) if long_enough and (target is not None or energies is not None) else None
        measured = meter.loudness(meter.base) if meter is not None else -math.inf
        self.fixed = target is None or not math.isfinite(measured)
        if target is not None and self.fixed:
            self.notes = ("audio shorter than 0.4 s: loudness not normalized" if not long_enough
                          else "audio is silent: loudness not normalized",)
        plain = gain_db if self.fixed else target - measured   # type: ignore[operator]
        self.gains = _LimitedGain(x, rate, meter if math.isfinite(measured) else None, plain,
                                  db_to_gain(ceiling_db - _CEILING_MARGIN_DB), 0.0 if self.fixed else max_push_db)

    def set_energies(self, energies: np.ndarray) -> None:
        """New sub-block energies of *x* (after the caller rescaled parts of it); the plain gain follows."""
        meter = self.gains.meter
        assert meter is not None
        meter.base = energies
        if self.target is not None and not self.fixed:
            self.gains.plain = self.target - meter.loudness(energies)

    def search(self, tolerance: float = 0.05, max_rounds: int = 12) -> tuple[float, float | None]:
        """(gain in dB, loudness there): the target's gain, or the fixed gain."""
        if self.fixed:
            return self.gain_db, None
        assert self.target is not None
        return _search(self.gains, self.target, tolerance, max_rounds)

    def limited_energies(self, gain_db: float) -> np.ndarray | None:
        """The sub-block energies of *x* under the limited gain of *gain_db* (None without a meter)."""
        return self.gains.energies_at(gain_db) if self.gains.meter is not None else None

    def finish(self, gain: float, got: float | None, accept_short: bool = True) -> Normalization:
        """Apply the limited gain of *gain* dB and say what was reached (see :func:`normalize_loudness`)."""
        target, notes, gains = self.target, self.notes, self.gains
        if not self.fixed and got is not None and target is not None:
            if got < target - SHORTFALL_LU:
                loudest = gains.loudest()
                why = (f"holding the true peak under {self.ceiling_db:g} dBTP allows at most {loudest:.1f} LUFS "
                       f"with the limiter taking up to {self.max_push_db:g} dB off the speech's peaks")
                if not accept_short:
                    return Normalization(notes=(why,), loudest=loudest)
                gain, got = gains.top(), loudest
                notes = (f"loudness reached {got:.1f} LUFS, not {target:g}: {why}",)
            elif abs(got - target) > 0.1:   # got was measured on exactly this curve in the last round
                notes = (f"loudness reached {got:.1f} LUFS, not {target:g}",)
        return _finish(gains, gain, got, notes, report_peak=target is None and gains.meter is not None)


def _finish(gains: _LimitedGain, gain: float, got: float | None, notes: tuple[str, ...],
            report_peak: bool = True) -> Normalization:
    """Apply the limited gain of *gain* dB to the samples and measure the true peak where asked."""
    curve = gains.group_gain(gain)
    changed = bool(np.any(curve != np.float32(1.0)))
    if changed:
        _apply_curve(gains.x, curve)
    if got is None and gains.meter is not None:
        got = gains.loudness_at(gain)
    x, rate = gains.x, gains.rate
    wanted = limited_groups(gains.peaks, curve, db_to_gain(gain), gains.ceiling)
    read = np.zeros(0, np.float32)
    for _round in range(HOLD_ROUNDS):        # the limited result read again, and limited again where over
        if not wanted.any():
            break
        read, _measured = _group_peaks(x, rate, _constant(wanted))
        extra = relimit(read, wanted, gains.ceiling, rate, _round)
        if extra is None:
            break
        _apply_curve(x, extra)
        curve = curve * extra
        wanted = wanted | (extra < np.float32(1.0))
    peak = None
    if report_peak or got is not None:
        peaks, measured = gains.peaks, gains.measured
        if read.size:    # where the result was read, its reading stands (the others: bounds from before)
            peaks, measured = np.where(wanted, 0.0, peaks).astype(np.float32), measured & ~wanted
        peak = _final_true_peak(x, rate, peaks, measured, curve)
        if read.size:
            peak = max(peak, 20.0 * math.log10(max(float(read[wanted].max()), 1e-12)) + REPORT_ALLOWANCE_DB)
    return Normalization(got if gains.meter is not None else None, peak, notes, gain_db=gain)


def _constant(wanted: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A candidate choice (for :func:`_group_peaks`) that is *wanted* whatever the sample peaks."""
    return lambda _sample_peaks: wanted


HOLD_ROUNDS = 4
_HOLD_STEP = 0.997        # each round limits 0.026 dB lower than the one before


def limited_groups(peaks: np.ndarray, curve: np.ndarray, gain: float, ceiling: float) -> np.ndarray:
    """The groups whose result must be read again: where the limiter moved the gain (its gain
    changes put content near Nyquist that can raise inter-sample peaks over what was read before
    them) and the peaks (times the gain, times the headroom) could reach the ceiling."""
    following = np.append(curve[1:], curve[-1:])
    moved = np.minimum(curve, following) < np.float32(gain) * np.float32(0.99999)
    return moved & (peaks * np.maximum(curve, following) * np.float32(_TP_HEADROOM) > np.float32(ceiling))


def relimit(read: np.ndarray, wanted: np.ndarray, ceiling: float, rate: int, round_: int) -> np.ndarray | None:
    """Extra gain per group that holds the *read* peaks of the *wanted* groups under the ceiling
    (a little lower each round); None when none is over."""
    peaks = np.where(wanted, read, np.float32(0.0)).astype(np.float32)
    if float(peaks.max()) <= ceiling:
        return None
    return limit_groups(peaks, ceiling * _HOLD_STEP ** (round_ + 1), rate)
