"""Loudness and true peak: pure NumPy (with SciPy filters and soxr oversampling), no I/O.

- K-weighting and integrated loudness as ITU-R BS.1770 defines them, measured from
  the energies of 100 ms sub-blocks so that a long mix is never copied;
- the loudness of one line or track placed in a mix (:func:`measure_placed`), gated so that
  pauses and short lines do not read quiet, and its share of the mix's sub-block energies;
- the one meter of audio handed over in blocks (:class:`StreamMeter`), the one gain search
  (:func:`search_gain`) and the limiter's hold of the ceiling (:func:`hold_ceiling`);
- the true peak of every frame (the signal oversampled 8x by an interpolator whose passband
  reaches Nyquist, :class:`Oversampler`), and a bound of it that no finer reading exceeds;
- a look-ahead limiter, and :func:`normalize_loudness`, which brings one buffer to a
  loudness target (or a fixed gain) with its true peak under a ceiling, in place, as the
  block mixer (:mod:`dialog_tts.finish.mixer`) does a mix of lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dialog_tts.io.audio import db_to_gain

OVERSAMPLING = 8          # true peaks are read 8x oversampled, whatever the rate (see Oversampler)
BLOCK = 1 << 16  # frames per block (a multiple of the limiter's group)

# Loudness normalization works on a long mix without copying it: the K-weighted energy of
# every 100 ms sub-block (BS.1770 gating blocks are four of them) and of every group of frames
# is measured once per source; a constant gain only scales those energies, and what the limiter
# takes is read from the groups' energies times its gain squared.  The limiter itself works on
# groups of frames: their true peaks (oversampled only where a peak could reach the
# ceiling) and one gain per group, interpolated between groups when applied.
_SUB_SECONDS = 0.1        # BS.1770: 400 ms gating blocks, 75 % overlap → 100 ms steps
_GROUP = 32               # frames per limiter group
_TP_MARGIN = 4352         # frames around a segment that its channel code looks at (the interpolator's reach and more)
_TP_SEGMENT = 512         # true peaks are oversampled in whole segments of this many frames (see _span_true_peak)
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


def _before(history: np.ndarray | None, frames: int, shape: tuple[int, ...]) -> np.ndarray:
    """The last *frames* frames of *history* (the signal before a reader's first block), silence
    before it where it is shorter (or None)."""
    out = np.zeros((frames, *shape), np.float32)
    if history is not None and history.shape[0]:
        take = history[-frames:]
        out[frames - take.shape[0]:] = take
    return out


class Oversampler:
    """8x oversampling whose passband reaches Nyquist, for audio handed over in blocks, in order.

    Two steps: the half-sample points are interpolated with a long windowed sinc (FFT convolution),
    which doubles the rate with the band intact up to 0.99 of the old Nyquist; soxr then takes the
    doubled signal up 4x, where all of its content lies well inside soxr's passband.  The output is
    aligned with the input: sample ``j`` is at frame ``j / 8``.  The signal is silent before the
    first block (or is *history* there) and after the last one (``last=True``)."""

    def __init__(self, rate: int, channels: int, oversampling: int = OVERSAMPLING,
                 history: np.ndarray | None = None) -> None:
        import soxr

        self.channels, self.factor = channels, oversampling
        shape = (0,) if channels == 1 else (0, channels)
        self._input = _before(history, _HALF_TAPS - 1, shape[1:])   # frames the filter still needs
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


def _peak_bounds(up: np.ndarray, before: np.ndarray, after: np.ndarray, factor: int, first: int,
                 window: int = _BOUND_WINDOW) -> np.ndarray:
    """:func:`_peak_bounds_numpy`'s figures, by the project's compiled pass where it was built (the same
    arithmetic in one pass over the points instead of a dozen: ``tests/test_compiled.py`` holds them equal)."""
    from dialog_tts.finish.kweighting import peak_bounds_loop

    loop = peak_bounds_loop()
    if loop is not None and up.dtype == np.float32 and before.dtype == np.float32 and after.dtype == np.float32:
        shape = (-1, 1) if up.ndim == 1 else (-1, up.shape[1])
        out = np.empty(up.shape[0] // factor, np.float32)
        if loop(np.ascontiguousarray(up).reshape(shape), np.ascontiguousarray(before).reshape(shape),
                np.ascontiguousarray(after).reshape(shape), factor, first % window, window, out):
            return out
    return _peak_bounds_numpy(up, before, after, factor, first, window)


def _peak_bounds_numpy(up: np.ndarray, before: np.ndarray, after: np.ndarray, factor: int, first: int,
                       window: int = _BOUND_WINDOW) -> np.ndarray:
    """For each frame of the oversampled *up* (*factor* points a frame; *before* and *after*: the
    points next to it; *first*: the index of its first frame in the whole signal), the peak of its
    points (the larger channel); the highest frame of each *window* of frames (counted from the signal's
    first frame) is raised to a bound of the window's true peak.

    Between grid points a band-limited signal rises over the highest one by at most the curvature
    there times (step / 2)**2 / 2, that is ``|v[-1] - 2 v + v[+1]| / 8``: the window's largest
    curvature, added to its highest point, bounds its peak.  At most 0.005 dB under a tone at
    Nyquist sampled 8x at the worst phase (its highest point alone is 0.17 dB under, a 16x grid's
    0.04 dB), and next to nothing over the peak for speech, whose curvature on an 8x grid is small."""
    n = up.shape[0] // factor
    lead = first % window
    windows = -(-(lead + n) // window)
    # |curvature| at every point: differences of differences, the edges from the points next to them
    steps = np.diff(np.concatenate([before, up, after]), axis=0)
    curvature = np.subtract(steps[1:], steps[:-1], out=steps[:-1])
    np.abs(curvature, out=curvature)
    if lead or n % window:      # laid out on whole windows
        laid = np.zeros((windows * window * factor, *up.shape[1:]), np.float32)
        laid[lead * factor:lead * factor + up.shape[0]] = curvature
        curvature = laid
    most = curvature.reshape(windows, -1).max(axis=1) * np.float32(0.125)
    magnitude = np.abs(up) if up.ndim == 1 else abs_max_channels(up)
    peaks = _max_every(magnitude, factor)
    # the highest frame of each window gets the window's largest correction
    padded = np.zeros(windows * window, np.float32)
    padded[lead:lead + n] = peaks
    grid = padded.reshape(windows, window)
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
    return taps.astype(np.float32)


def _frame_points(data: np.ndarray, factor: int) -> np.ndarray:
    """:func:`_frame_points_numpy`'s figures, by the project's compiled pass where it was built (the same
    sums in one pass instead of about fifty NumPy calls a channel: ``tests/test_compiled.py`` holds them equal)."""
    from dialog_tts.finish.kweighting import frame_points_loop

    loop = frame_points_loop()
    if loop is not None and data.dtype == np.float32 and data.shape[0] >= 2:
        out = np.empty(data.shape[0] - 1, np.float32)
        if loop(np.ascontiguousarray(data).reshape(data.shape[0], -1), _ebu_taps(factor), factor,
                (_EBU_TAPS - 1) // 2 // factor, out):
            return out
    return _frame_points_numpy(data, factor)


def _frame_points_numpy(data: np.ndarray, factor: int) -> np.ndarray:
    """For frames 0 .. n-2 of *data*, the largest |point| of libebur128's interpolation from the
    frame to the next one (its *factor* points there; the larger channel).

    Point ``m`` lies at frame ``(m - 24) / factor`` and is tap phase ``m % factor`` convolved with the
    samples, so frame ``i``'s points are each phase's output at ``24 / factor + i``: the phases'
    maxima, with no interleaved array.  Each phase's 12 or 13 taps are summed as shifted multiply-adds
    over the whole block (NumPy's convolve calls a dot product for every output, several times
    slower at this length), rather than scipy.signal.upfirdn: importing scipy.signal costs a render
    more start-up time than this filter takes (tests/test_imports.py).  In float32, as the samples
    are: a 13-tap sum's rounding is far under the 1e-4 dB the tests hold."""
    taps = _ebu_taps(factor)
    count = data.shape[0]
    offset = (_EBU_TAPS - 1) // 2 // factor
    columns = [data] if data.ndim == 1 else [data[:, c] for c in range(data.shape[1])]
    out = np.zeros(max(0, count - 1), np.float32)
    if count < 2:
        return out
    term = np.empty(count, np.float32)
    for column in columns:
        samples = np.ascontiguousarray(column, dtype=np.float32)
        for phase in range(factor):
            phase_taps = taps[phase::factor]
            acc = np.zeros(count + phase_taps.shape[0] - 1, np.float32)
            for k, tap in enumerate(phase_taps):
                np.multiply(samples, tap, out=term)
                acc[k:k + count] += term
            y = np.abs(acc[offset:offset + count - 1], out=acc[offset:offset + count - 1])
            np.maximum(out, y, out=out)
    return out


class ShortInterpolatorReader:
    """Per-frame peaks of libebur128's interpolator (a frame's points: from it to the next frame, as
    the 8x reading counts them) of audio handed over in blocks, in order; silence (or *history*) before
    the first block, silence after the last."""

    def __init__(self, rate: int, channels: int, history: np.ndarray | None = None) -> None:
        self.factor = 4 if rate < 96000 else 2     # (from 192 kHz libebur128 reads the samples)
        self._tail = _before(history, _EBU_CONTEXT, (channels,) if channels > 1 else ())
        self._first = -_EBU_CONTEXT         # the frame index of self._tail's first frame
        self._done = 0                      # frames whose peaks are out
        self._received = 0                  # frames handed over
        # frames handed over past the last one whose peaks are out: the taps after it reach that far
        self.reach = -(-(_EBU_TAPS - 1) // (2 * self.factor)) + 1

    def push(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """The peaks of the frames that *x* (and the blocks before it) determine; with *last*, of all."""
        data = np.concatenate([self._tail, np.asarray(x, np.float32),
                               np.zeros((_EBU_CONTEXT * last, *self._tail.shape[1:]), np.float32)])
        f, count = self.factor, data.shape[0]
        within = _frame_points(data, f)          # frame i: its points in [i, i + 1)
        self._received += np.asarray(x).shape[0]
        # valid where no tap reaches past data
        stop = max(self._done, min(self._received, self._first + count - self.reach))
        start = self._done - self._first
        peaks = within[start:stop - self._first]
        self._done = stop
        self._tail = data[-_EBU_CONTEXT:].copy()
        self._first += count - _EBU_CONTEXT
        return peaks.astype(np.float32)


class PeakReader:
    """Per-frame true peak bounds (:func:`_peak_bounds`) of audio handed over in blocks, in order,
    at least libebur128's reading (:class:`ShortInterpolatorReader`); the highest frame of each
    *window* of frames carries the window's bound.  *history*: the signal before the first block
    (default: silence), for a reading that starts inside a signal (:func:`_span_true_peak`)."""

    def __init__(self, rate: int, channels: int, oversampling: int = OVERSAMPLING,
                 window: int = _BOUND_WINDOW, history: np.ndarray | None = None) -> None:
        self.factor, self.window = oversampling, window
        self._shape = (0,) if channels == 1 else (0, channels)
        self._sampler = Oversampler(rate, channels, oversampling, history)
        self._short = ShortInterpolatorReader(rate, channels, history) if oversampling > 1 and rate < 192000 \
            else None
        self._short_pending = np.zeros(0, np.float32)          # its peaks of frames not out yet
        self._unheard = np.zeros(self._shape, np.float32)      # frames not handed to it yet
        self._heard = 0                                        # frames handed to it
        self._pending = np.zeros(self._shape, np.float32)                # points of frames not complete yet
        self._before = np.zeros((1, *self._shape[1:]), np.float32)       # silence before the first frame
        self._frames = 0                                                   # frames read so far

    def push(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """The bounds of the frames that *x* (and the blocks before it) complete; with *last*, of all."""
        factor = self.factor
        up = self._sampler.push(x, last=last)
        up = np.concatenate([self._pending, up]) if self._pending.shape[0] else up
        if last:    # silence after the last frame
            up = np.concatenate([up, np.zeros((factor, *self._shape[1:]), np.float32)])
        usable = max(0, (up.shape[0] - 1) // factor) * factor      # one point after them is needed
        if usable == 0:
            self._pending = up.copy()
            self._hear(x, last)
            return np.zeros(0, np.float32)
        bounds = _peak_bounds(up[:usable], self._before, up[usable:usable + 1], factor, self._frames, self.window)
        self._before, self._pending = up[usable - 1:usable].copy(), up[usable:].copy()
        self._frames += bounds.shape[0]
        self._hear(x, last)
        return self._with_short(bounds)

    def _hear(self, x: np.ndarray, last: bool) -> None:
        """Hand libebur128's reader the frames it needs to read as far as the 8x reading has come (with
        *last*, all of them).  The 8x reading lags its input by its filter's half length, so the frames
        after are kept until a later push needs them: a reading of a short span (:func:`_span_true_peak`)
        hands over the filter's context after the span, which libebur128's short filter would read
        in vain.  Each frame's reading is the same however the frames are handed over."""
        if self._short is None:
            return
        x = np.asarray(x, np.float32)
        waiting = np.concatenate([self._unheard, x]) if self._unheard.shape[0] else x
        take = waiting.shape[0] if last else \
            min(waiting.shape[0], max(0, self._frames + self._short.reach - self._heard))
        if take or last:
            self._short_pending = np.concatenate([self._short_pending, self._short.push(waiting[:take], last=last)])
            self._heard += take
        self._unheard = waiting[take:].copy()      # the caller's block may change once handed over

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


_SHIFTED_MIN = 16     # windows up to this long: the minimum of shifted copies (see running_min)


def running_min(x: np.ndarray, size: int) -> np.ndarray:
    """``out[k] = min(x[k:k + size])`` for every full window (len(x) - size + 1 values).

    A short window (the limiter's, a few groups) as the minimum of its shifted copies, one pass each;
    a longer one by van Herk / Gil-Werman: minima accumulated forward and backward within blocks of
    *size*, three passes whatever the window, but each an accumulation along rows as short as the
    window, which NumPy runs row by row.  Written here rather than taken from scipy.ndimage's
    minimum_filter1d (same values: a minimum is exact) because importing scipy.ndimage costs a
    render more time than the limiter it serves (tests/test_imports.py keeps it out of a render)."""
    n = x.shape[0] - size + 1
    if n <= 0:
        return x[:0].copy()
    if size <= _SHIFTED_MIN:
        out = x[:n].copy()
        for k in range(1, size):
            np.minimum(out, x[k:k + n], out=out)
        return out
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
    smooth = ((csum[w:w + n] - csum[:n]) / w).astype(np.float32)    # the sum of each frame's w values
    return np.minimum(smooth, need)  # float rounding must never let a peak through


# ---------------------------------------------------------------- loudness

def block_count(frames: int, rate: int) -> int:
    """How many 400 ms gating blocks (100 ms apart) BS.1770 measures in *frames*, as pyloudnorm counts them."""
    return int(np.round((frames / rate - 0.4) / _SUB_SECONDS)) + 1


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


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.sosfilt(sos, x, axis=0, zi=zi)``, by the project's compiled loop where it was built
    (:func:`dialog_tts.finish.kweighting.sosfilt`: the same figures, without importing ``scipy.signal``)."""
    from dialog_tts.finish.kweighting import sosfilt as compiled_sosfilt

    return compiled_sosfilt(sos, x, zi)


def tail_frames(rate: int) -> int:
    """Frames of K-filter ring-out counted after a line (20 ms)."""
    return round(_TAIL * rate)


_LINE_CHUNK = 1 << 20     # frames of a source filtered at once by measure_placed (a multiple of _GROUP)


def _add_binned(out: np.ndarray, values: np.ndarray, offset: int, bounds: np.ndarray) -> None:
    """Add to ``out[k]`` the sum of *values* (frames offset.. of a longer run) that fall in
    ``bounds[k]:bounds[k + 1]`` (*bounds* increasing, from 0): np.add.reduceat, one chunk at a time."""
    end = offset + values.shape[0]
    k0 = int(np.searchsorted(bounds, offset, side="right")) - 1
    k1 = int(np.searchsorted(bounds, end, side="left"))
    starts = np.concatenate([[offset], bounds[k0 + 1:k1]]).astype(np.int64) - offset
    out[k0:k0 + starts.shape[0]] += np.add.reduceat(values, starts)


def measure_placed(samples: np.ndarray, rate: int, start: int) -> tuple[LineLevel, np.ndarray, np.ndarray]:
    """(level, K-weighted energy per group, sample peak per group) of one source placed at frame
    *start* of an unbounded mix: a mono line ``(n,)`` or a track ``(n, channels)`` (its channels'
    energies summed, as BS.1770 weighs left and right).  The level's gating blocks are counted from
    the source's own start (silence around it never counts; a source shorter than 400 ms is one block
    of its own length), its sub-block energies on the mix's grid; the group arrays cover the source
    and its 20 ms of ring-out.  Filtered and summed in chunks: a few MB beside the samples."""
    n = samples.shape[0]
    total = n + tail_frames(rate)
    long_line = n >= 0.4 * rate
    own = np.arange(block_count(n, rate) + 3) * round(_SUB_SECONDS * rate) if long_line else np.zeros(1, np.int64)
    own = own[own < n]
    own_sums = np.zeros(own.shape[0])
    sub_bounds = np.concatenate([[0], _inner_edges(start, total, rate)]).astype(np.int64)
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
        x = np.zeros((stop - pos, *samples.shape[1:]), np.float32)
        own_part = samples[pos:min(stop, n)]
        x[:own_part.shape[0]] = own_part
        x += np.float32(_DENORMAL_GUARD)
        y, state = sosfilt(sos, x, state)
        y *= y
        if y.ndim == 2:
            y = y.sum(axis=1)
        if pos < n:
            _add_binned(own_sums, y[:min(stop, n) - pos], pos, own)
            peaks.append(group_maxima(abs_max_channels(own_part), start + pos))
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
    return LineLevel(blocks, sub_block_of(start, rate), subs), energies.astype(np.float32), group_peaks


def _inner_edges(start: int, total: int, rate: int) -> np.ndarray:
    """The mix's sub-block edges after frame *start* and before *start* + *total*, counted from *start*."""
    edges = sub_block_edges_between(max(0, sub_block_of(start, rate) - 1), sub_block_of(start + total, rate) + 2, rate)
    return edges[(edges > start) & (edges < start + total)] - start


def placement(frames: int, rate: int, start: int) -> bytes:
    """All that :func:`measure_placed`'s figures for a source of *frames* frames depend on of its place
    *start* (beside its samples): where it starts in its group, and the mix's sub-block edges within its
    span, counted from it.  Two places with the same placement give the same figures, bit for bit, but
    for the level's *first* sub-block (:func:`sub_block_of` of the place)."""
    inner = _inner_edges(start, frames + tail_frames(rate), rate)
    return np.concatenate([[start % _GROUP], inner]).astype(np.int64).tobytes()


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


def _run_true_peak(x: np.ndarray, a: int, b: int, rate: int, code: int) -> np.ndarray:
    """True peak per frame of x[a:b], reading one channel where :func:`_channel_code` allows."""
    if code in (0, 1):
        tp = _span_true_peak(x[:, code], a, b, rate)
        return tp * np.float32(1.0 + 4 * _PROPORTIONAL)     # the other channel, within the residual
    return _span_true_peak(x, a, b, rate)


_SPAN_CONTEXT = 128       # frames read before a span (a multiple of _BOUND_WINDOW), and after it ...
_SPAN_AFTER = 512         # ... with what the resampler holds back at the end of a push (a few hundred)


def _span_true_peak(x: np.ndarray, a: int, b: int, rate: int) -> np.ndarray:
    """:func:`true_peak_per_frame` of frames a..b-1 of *x* (silence before and after it), read from
    the signal around them: the reader starts from the frames before them (its history) and reads
    on past them only as far as its filters need, so that only the frames near the span are oversampled."""
    n = x.shape[0]
    s0 = max(0, a - _SPAN_CONTEXT)
    history = np.ascontiguousarray(x[max(0, s0 - _HALF_TAPS):s0])
    reader = PeakReader(rate, 1 if x.ndim == 1 else x.shape[1], history=history)
    parts, got, at = [], 0, s0
    while got < b - s0 and at < n:
        end = min(n, max(b + _SPAN_AFTER + _HALF_TAPS, at + _SPAN_AFTER))
        part = reader.push(np.ascontiguousarray(x[at:end]), last=end >= n)
        parts.append(part)
        got, at = got + part.shape[0], end
    tp = np.concatenate(parts)[a - s0:b - s0]
    return np.maximum(tp, abs_max_channels(x[a:b]))


def _group_peaks(x: np.ndarray, rate: int,
                 candidate: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(peak of each group of frames, which of them are true peaks): groups that *candidate(sample
    peaks)* selects are oversampled; the others keep their sample peak (a lower bound)."""
    n = x.shape[0]
    peaks = _sample_group_peaks(x)
    check = candidate(peaks).copy()     # the caller's mask stays as it is
    if not check.any():
        return peaks, check

    def codes(segments: np.ndarray) -> np.ndarray:
        spans = [(max(0, int(s) * _TP_SEGMENT - _TP_MARGIN), min(n, (int(s) + 1) * _TP_SEGMENT + _TP_MARGIN))
                 for s in segments]
        return np.array([_channel_code(x[a:b]) for a, b in spans], dtype=np.int64)

    for first, last, code in _segment_runs(check, codes):   # oversampled with context
        a, b = first * _GROUP, min(n, (last + 1) * _GROUP)
        tp = _run_true_peak(x, a, b, rate, code)
        pad = -tp.shape[0] % _GROUP
        if pad:
            tp = np.concatenate([tp, np.zeros(pad, np.float32)])
        peaks[first:first + tp.shape[0] // _GROUP] = _max_every(tp, _GROUP)
        check[first:last + 1] = True      # the whole segment is measured now
    return peaks, check


GROUP = _GROUP


PEAK_STEP = 8     # frames a source's own true peaks are kept for (a quarter of a group)


def source_peaks(samples: np.ndarray, rate: int, tail: int) -> np.ndarray:
    """The true peak (a bound: :class:`PeakReader`, all channels) of each run of PEAK_STEP frames of
    *samples* followed by *tail* frames of silence, counted from its first frame: a source's own
    figures, the same wherever it is placed (:func:`placed_peaks`).  The readers are linear, so where
    sources overlap their sums bound the mix's.  Read block by block: a few MB beside the samples."""
    n, total, step = samples.shape[0], samples.shape[0] + tail, PEAK_STEP
    reader = PeakReader(rate, 1 if samples.ndim == 1 else samples.shape[1], window=step)   # each step a bound
    out = np.zeros(-(-total // step), np.float32)
    carry, done = np.zeros(0, np.float32), 0          # frames read but not yet a whole step; steps out
    for start in range(0, total, BLOCK):
        stop = min(total, start + BLOCK)
        block = np.ascontiguousarray(samples[start:min(stop, n)], dtype=np.float32)
        if stop > n:
            block = np.concatenate([block, np.zeros((stop - max(start, n), *samples.shape[1:]), np.float32)])
        got = reader.push(block, last=stop >= total)
        got = np.concatenate([carry, got]) if carry.shape[0] else got
        whole = got.shape[0] // step * step
        if whole:
            out[done:done + whole // step] = _max_every(got[:whole], step)
            done += whole // step
        carry = got[whole:]
    read = done * step + carry.shape[0]
    if read < total:     # the resampler's tail: the sample peaks
        rest = abs_max_channels(samples[read:n]) if read < n else np.zeros(0, np.float32)
        carry = np.concatenate([carry, rest, np.zeros(total - max(read, n), np.float32)])
    if carry.shape[0]:
        carry = np.concatenate([carry, np.zeros(-carry.shape[0] % step, np.float32)])
        out[done:] = _max_every(carry, step)[:out.shape[0] - done]
    return out


def placed_peaks(own: np.ndarray, start: int, groups: int) -> np.ndarray:
    """A source's :func:`source_peaks` on the mix's grid, placed at frame *start*: *groups* values from
    the group that holds *start*, each the largest of the source's steps that the group overlaps."""
    lead, step = start % _GROUP, PEAK_STEP
    per = _GROUP // step
    before = -(-lead // step)                        # steps of the first group before the source's first
    width = per + (lead % step != 0)                 # steps a group overlaps
    ext = np.zeros(per * groups + width, np.float32)
    m = min(own.shape[0], ext.shape[0] - before)
    ext[before:before + m] = own[:m]
    out = ext[0:per * groups:per].copy()
    for j in range(1, width):
        np.maximum(out, ext[j:j + per * groups:per], out=out)
    return out


def group_maxima(values: np.ndarray, start: int) -> np.ndarray:
    """The maximum of *values* (one per frame, from frame *start* of the mix) in each of the mix's
    groups of GROUP frames that they touch (the first group is ``start // GROUP``)."""
    lead = start % _GROUP
    padded = np.concatenate([np.zeros(lead, np.float32), values.astype(np.float32, copy=False)])
    pad = -padded.shape[0] % _GROUP
    if pad:
        padded = np.concatenate([padded, np.zeros(pad, np.float32)])
    return _max_every(padded, _GROUP) if padded.size else padded


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
    """The peak of each group of the mix's grid that *samples* (mono, or all channels) placed at frame *start* touch:
    the true peak (oversampled, with context) where *wanted*, the sample peak elsewhere."""
    lead = start % _GROUP
    x = np.concatenate([np.zeros((lead, *samples.shape[1:]), np.float32), samples]) if lead else samples
    peaks, _measured = _group_peaks(x, rate, lambda _sample_peaks: wanted[:-(-x.shape[0] // _GROUP)])
    return peaks


def frame_curve(group_gain: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Per-frame gain for frames start..stop-1 of *group_gain* (see :func:`_frame_curve`)."""
    return _frame_curve(group_gain, start, stop)


def _frame_curve(group_gain: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Per-frame gain for frames start..stop-1: linear between group starts (never above either end)."""
    g0, g1 = start // _GROUP, -(-stop // _GROUP) + 1
    values = group_gain[np.minimum(np.arange(g0, g1), group_gain.shape[0] - 1)]
    if values.shape[0] and values.min() == values.max():      # where the limiter left it: one gain
        return np.full(stop - start, values[0], np.float32)
    # np.interp's own arithmetic (float64: slope * (x - x0) + y0, the slope over one group), laid out
    # a group per row instead of searched for frame by frame: the same values, several times faster
    v = values.astype(np.float64)
    slopes = (v[1:] - v[:-1]) / float(_GROUP)
    rows = slopes[:, None] * np.arange(_GROUP, dtype=np.float64) + v[:-1, None]
    return rows.ravel()[start - g0 * _GROUP:stop - g0 * _GROUP].astype(np.float32)


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
    meter = StreamMeter(rate, 1 if x.ndim == 1 else x.shape[1], peaks=False)
    for start in range(0, x.shape[0], BLOCK):
        meter.add(x[start:start + BLOCK])
    return meter.loudness()


class StreamMeter:
    """BS.1770 integrated loudness and true peak of audio handed over in blocks, in order: the one meter.

    The K-weighting filter's state and the oversampler's run on from block to block; what is
    kept is one energy per 100 ms sub-block (BS.1770's gating needs them all: 8 bytes per
    100 ms, 5.8 MB for 20 hours), gated by :func:`loudness_of`.  The true peak is read 8x
    oversampled, as a bound (:class:`PeakReader`); ``peaks=False`` measures the loudness alone.
    """

    def __init__(self, rate: int, channels: int, *, peaks: bool = True) -> None:
        self.rate, self.channels, self.frames = rate, channels, 0
        self._sos = k_weighting_sos(rate)
        self._zi = np.zeros((self._sos.shape[0], 2, *((channels,) if channels > 1 else ())))
        self._done: list[np.ndarray] = []           # energies of the finished sub-blocks
        self._open, self._open_sum = 0, 0.0          # the sub-block the next frame falls in, and its energy so far
        self._up = PeakReader(rate, channels) if peaks else None
        self._peak = 0.0

    def add(self, block: np.ndarray) -> None:
        """Measure the next *block*, ``(n,)`` or ``(n, channels)``."""
        x = np.ascontiguousarray(block, dtype=np.float32)
        if x.shape[0]:
            self._add_energy(x)
            self._add_peak(x, last=False)
            self.frames += x.shape[0]

    def _add_energy(self, x: np.ndarray) -> None:
        y, self._zi = sosfilt(self._sos, x.astype(np.float64), self._zi)
        y *= y
        energy = y if y.ndim == 1 else y.sum(axis=1)     # BS.1770 channel weights: 1 (mono, left, right)
        pos, end = self.frames, self.frames + x.shape[0]
        count = int(x.shape[0] / (_SUB_SECONDS * self.rate - 1)) + 2     # more than the edges up to *end*
        starts = sub_block_edges_between(self._open + 1, self._open + 1 + count, self.rate)
        inner = starts[starts < end]
        sums = np.add.reduceat(energy, np.concatenate([[0], inner - pos]))
        sums[0] += self._open_sum
        if starts[inner.shape[0]] == end:                # the block ends where a sub-block ends
            self._done.append(sums)
            self._open, self._open_sum = self._open + inner.shape[0] + 1, 0.0
        else:
            self._done.append(sums[:-1])
            self._open, self._open_sum = self._open + inner.shape[0], float(sums[-1])

    def _add_peak(self, x: np.ndarray, last: bool) -> None:
        if self._up is None:
            return
        bounds = self._up.push(x, last=last)
        if bounds.size:
            self._peak = max(self._peak, float(bounds.max()))
        if x.size:
            self._peak = max(self._peak, float(x.max()), -float(x.min()))

    def loudness(self) -> float | None:
        """Integrated loudness (LUFS) of what was added; None if shorter than 400 ms."""
        if self.frames < 0.4 * self.rate:
            return None
        energies = np.concatenate([*self._done, [self._open_sum]])
        return loudness_of(energies[:, None], self.frames, self.rate)

    def result(self) -> tuple[float | None, float]:
        """(integrated loudness in LUFS, None if shorter than 400 ms; true peak in dBTP).  Call once, last."""
        self._add_peak(np.zeros((0,) if self.channels == 1 else (0, self.channels), np.float32), last=True)
        peak = 20.0 * math.log10(self._peak) + REPORT_ALLOWANCE_DB if self._peak > 0 else -math.inf
        return self.loudness(), peak


# ---------------------------------------------------------------- the gain search and the limiter's hold

def search_gain(loudness_at: Callable[[float], float], gain: float, top: float, target: float,
                tolerance: float = 0.05, max_rounds: int = 12) -> tuple[float, float]:
    """(gain in dB, loudness there): the gain whose limited result reaches *target*, by a secant search
    from *gain* kept inside a bracket (at most *top*).  Loudness grows with the gain, by less than 1 LU
    per dB once the limiter works: the slope is kept between 0.02 and 1."""
    high = top
    gain = min(gain, high)
    low, prev = gain - 1.0, None
    got = loudness_at(gain)
    for _ in range(max_rounds):
        if abs(got - target) <= tolerance:
            break
        low, high = (max(low, gain), high) if got < target else (low, min(high, gain))
        slope = 1.0 if prev is None or prev[0] == gain else (got - prev[1]) / (gain - prev[0])
        step = gain + (target - got) / min(1.0, max(0.02, slope))
        prev, gain = (gain, got), step if low < step < high else (low + high) / 2
        got = loudness_at(gain)
    return gain, got


def add_rows(energies: np.ndarray, first: int, rows: np.ndarray, weights: tuple[float, ...] = (1.0,)) -> None:
    """Add a source's sub-block energies *rows* into *energies* (rows, channels) from row *first*,
    weighted per channel (pan gains; 1 for a mono mix or a track's summed channels)."""
    rows = rows[:max(0, energies.shape[0] - first)]
    for c, weight in enumerate(weights):
        energies[first:first + rows.shape[0], c] += rows * weight ** 2


def _rows_at(first: int, rows: np.ndarray, frames: int, rate: int) -> np.ndarray:
    """The sub-block energies (rows, 1) of a result of *frames* frames holding *rows* from row *first*."""
    energies = np.zeros((block_count(frames, rate) + 3, 1))
    add_rows(energies, first, rows)
    return energies


def group_rows(g0: int, values: np.ndarray, rate: int) -> tuple[int, np.ndarray]:
    """(first row, per-row sums) of per-group *values* from group *g0*, gathered into the mix's
    sub-blocks (a group counts in the sub-block its first frame is in)."""
    return GroupRows(g0, values.shape[0], rate).sums(values)


class GroupRows:
    """Where *count* groups from group *g0* fall in the mix's sub-blocks (a group counts in the
    sub-block its first frame is in), for summing per-group values into them: found once for a source
    whose values are summed again and again (the gain search)."""

    def __init__(self, g0: int, count: int, rate: int) -> None:
        starts = (g0 + np.arange(count)) * _GROUP
        self.first = sub_block_of(int(starts[0]), rate)
        last = sub_block_of(int(starts[-1]), rate) + 2
        edges = sub_block_edges_between(self.first, last, rate)
        self.rows = np.searchsorted(edges, starts, side="right") - 1
        self.count = last - self.first

    def sums(self, values: np.ndarray) -> tuple[int, np.ndarray]:
        """(first row, per-row sums) of *values*, one a group."""
        return self.first, np.bincount(self.rows, weights=values, minlength=self.count)


_READ_GROUPS = (1 << 20) // _GROUP    # groups of a result whose true peaks are read at once
_READ_MARGIN = 8192                   # frames of context read around them


def read_groups(render: Callable[[int, int], np.ndarray], wanted: np.ndarray, rate: int,
                frames: int) -> np.ndarray:
    """The true peak of each *wanted* group of a result of *frames* frames that ``render(a, b)`` gives
    (0 elsewhere), rendered and read in chunks with context around them."""
    group, margin = _GROUP, _READ_MARGIN
    read = np.zeros(wanted.shape, np.float32)
    for k in np.flatnonzero(np.add.reduceat(wanted, np.arange(0, wanted.shape[0], _READ_GROUPS)) > 0):
        g_a, g_b = int(k) * _READ_GROUPS, min(wanted.shape[0], (int(k) + 1) * _READ_GROUPS)
        a, b = max(0, g_a * group - margin), min(frames, g_b * group + margin)     # on the group grid
        lo = g_a - a // group
        want = np.zeros(-(-b // group) - a // group, bool)
        want[lo:lo + g_b - g_a] = wanted[g_a:g_b]
        true = group_true_peaks(render(a, b), 0, want, rate)
        read[g_a:g_b] = np.where(wanted[g_a:g_b], true[lo:lo + g_b - g_a], np.float32(0.0))
    return read


def _under(render: Callable[[int, int, np.ndarray], np.ndarray], curve: np.ndarray) -> Callable[[int, int], np.ndarray]:
    return lambda a, b: render(a, b, curve)


def hold_ceiling(render: Callable[[int, int, np.ndarray], np.ndarray], peaks: np.ndarray, ceiling: float,
                 rate: int, frames: int, floor: float = 0.0,
                 known: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(the limiter's gain per group, each group's peak under it) for a result of *frames* frames with
    group peaks *peaks* (true peaks wherever a peak could come near the *ceiling*) that
    ``render(a, b, curve)`` gives under a gain curve.  The limited result is read again where the
    limiter moved the gain, and limited again where over (at most HOLD_ROUNDS times); groups that
    could be the highest yet (over *floor*, the highest known elsewhere) are read from the result too,
    except where *known* says their peak is already the result's true peak (where the limiter left them)."""
    first = ceiling * _HOLD_STEP     # a step under the ceiling: see _HOLD_STEP
    curve = limit_groups(peaks, first, rate) if float(peaks.max(initial=0.0)) > first else \
        np.ones(peaks.shape, np.float32)
    wanted = limited_groups(peaks, curve, 1.0, ceiling)
    read = np.zeros(peaks.shape, np.float32)
    estimate = peaks
    for round_ in range(HOLD_ROUNDS + 1):      # the last round only reads what the one before left
        rendered = _under(render, curve)
        if wanted.any():
            read = np.where(wanted, read_groups(rendered, wanted, rate, frames), np.float32(0.0))
        following = np.append(curve[1:], curve[-1:])
        estimate = np.where(wanted, read, peaks * np.maximum(curve, following))
        # groups that could be the highest yet are read from the result, and held too where over
        unread = ~wanted & (estimate * np.float32(_TP_HEADROOM) > max(floor, float(estimate.max(initial=0.0))))
        if known is not None:
            unread &= ~known
        if unread.any():
            read = np.where(unread, read_groups(rendered, unread, rate, frames), read)
            wanted = wanted | unread
            estimate = np.where(wanted, read, estimate)
        extra = relimit(read, wanted, ceiling, rate, round_) if round_ < HOLD_ROUNDS else None
        if extra is None:
            break
        curve = curve * extra
        wanted = wanted | (extra < np.float32(1.0))
    return curve, estimate


HOLD_ROUNDS = 4
# The limiter holds the peaks it reads a step (0.026 dB) under the ceiling, and each round of the hold a
# step lower than the one before.  Its gain changes raise the result's inter-sample peaks over the
# sources' bounds; on speech by less than a step, so the result read after the first round is under the
# ceiling and is not limited and read again (measured on the benchmark's hour: the CHANGELOG, issue 27).
_HOLD_STEP = 0.997


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
    return limit_groups(peaks, ceiling * _HOLD_STEP ** (round_ + 2), rate)


# ---------------------------------------------------------------- one buffer

@dataclass(frozen=True)
class Normalization:
    """What :func:`normalize_loudness` reached: LUFS and dBTP (None where not measured), and notes."""

    loudness: float | None = None
    true_peak: float | None = None
    notes: tuple[str, ...] = ()
    gain_db: float = 0.0          # the plain gain applied, before the limiter's


def normalize_loudness(x: np.ndarray, rate: int, target: float | None, ceiling_db: float = -1.0, *,
                       gain_db: float = 0.0, max_push_db: float = 12.0) -> Normalization:
    """Bring *x* (``(n,)`` or ``(n, channels)``) to *target* LUFS with its true peak at or below
    *ceiling_db*, in place: one source measured, searched and limited as the mixer does its lines
    (:func:`measure_placed`, :func:`search_gain`, :func:`hold_ceiling`).  With *target* None (or
    audio shorter than 400 ms, or silent), *x* gets the fixed gain *gain_db* and the limiter alone.
    The limiter may take up to *max_push_db* off the peaks; a target missed even then gets a note."""
    n, ceiling = x.shape[0], ceiling_gain(ceiling_db)
    level, energies, peaks = measure_placed(x, rate, 0)
    measured = loudness_of(_rows_at(level.first, level.subs, n, rate), n, rate) if n >= 0.4 * rate else -math.inf
    notes: tuple[str, ...] = ()
    if target is not None and not math.isfinite(measured):
        notes = ("audio shorter than 0.4 s: loudness not normalized" if n < 0.4 * rate
                 else "audio is silent: loudness not normalized",)
    fixed = target is None or not math.isfinite(measured)
    high = float(np.percentile(peaks[peaks > peaks.max() * 1e-3], _TOP_PERCENTILE)) if peaks.any() else 0.0
    top = (20.0 * math.log10(ceiling / high) if high > 0 else 0.0) + max_push_db
    reach = gain_db if fixed else top
    wanted = peaks * np.float32(_TP_HEADROOM * db_to_gain(reach)) > ceiling
    if wanted.any():
        true = group_true_peaks(x, 0, wanted, rate)
        np.maximum(peaks[:true.shape[0]], true, out=peaks[:true.shape[0]])

    def loudness_at(gain: float) -> float:
        g = db_to_gain(gain)
        curve = limit_groups(peaks * np.float32(g), ceiling, rate)
        summed = _rows_at(level.first, level.subs, n, rate)
        add_rows(summed, *group_rows(0, energies * (curve.astype(np.float64) ** 2 - 1.0), rate))
        return loudness_of(summed * (g * g), n, rate)

    got: float | None = None
    gain = gain_db
    if not fixed and target is not None:
        gain, got = search_gain(loudness_at, target - measured, top, target)
    if got is not None and target is not None and abs(got - target) > 0.1:
        notes = (f"loudness reached {got:.1f} LUFS, not {target:g}",)
    g = np.float32(db_to_gain(gain))

    def render(a: int, b: int, curve: np.ndarray) -> np.ndarray:
        out = x[a:b] * g
        c = frame_curve(curve, a, b)
        out *= c if out.ndim == 1 else c[:, None]
        return out

    curve, estimate = hold_ceiling(render, peaks[:-(-n // _GROUP)] * g, ceiling, rate, n)
    for a in range(0, n, BLOCK):
        x[a:a + BLOCK] = np.clip(render(a, min(n, a + BLOCK), curve), -1.0, 1.0)
    peak = float(estimate.max(initial=0.0))
    return Normalization(got, 20.0 * math.log10(peak) + REPORT_ALLOWANCE_DB if peak > 0 else None, notes, gain)
