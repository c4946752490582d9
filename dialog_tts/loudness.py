"""Loudness and true peak: pure NumPy (with SciPy filters and soxr oversampling), no I/O.

- K-weighting and integrated loudness as ITU-R BS.1770 defines them, measured from
  the energies of 100 ms sub-blocks so that a long mix is never copied;
- the true peak of every frame (the signal oversampled 4x);
- a look-ahead limiter, and :func:`normalize_loudness`, which brings a buffer to a
  loudness target with its true peak under a ceiling, in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .audio import db_to_gain

TRUE_PEAK_OVERSAMPLING = 4
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
_TP_MARGIN = 256          # frames of context around an oversampled segment
_TP_SEGMENT = 16384       # true peaks are oversampled in whole segments of this many frames
_TP_HEADROOM = 2.0        # a true peak is assumed at most 2x (6 dB) over the sample peak
_ATTACK = 0.005           # limiter look-ahead, seconds
_HOLD = 0.05              # limiter hold, seconds

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


def true_peak_per_frame(samples: np.ndarray, rate: int, oversampling: int = TRUE_PEAK_OVERSAMPLING) -> np.ndarray:
    """For each frame, the highest absolute value of the 4× oversampled signal (all channels)."""
    import soxr

    frames = samples.shape[0]
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    stream = soxr.ResampleStream(rate, rate * oversampling, channels, dtype="float32", quality="HQ")
    peaks = np.empty(frames, dtype=np.float32)
    filled = 0
    pending = np.zeros((0,) if channels == 1 else (0, channels), dtype=np.float32)
    for start in range(0, frames, BLOCK):
        chunk = np.ascontiguousarray(samples[start:start + BLOCK])
        up = stream.resample_chunk(chunk, last=start + BLOCK >= frames)
        up = np.concatenate([pending, up]) if pending.shape[0] else up
        usable = (up.shape[0] // oversampling) * oversampling
        block = _max_every(abs_max_channels(up[:usable]), oversampling)
        n = min(block.shape[0], frames - filled)
        peaks[filled:filled + n] = block[:n]
        filled += n
        pending = up[usable:]
    if filled < frames:  # the resampler's tail: fall back to the sample peaks
        peaks[filled:] = abs_max_channels(samples[filled:])
    return np.maximum(peaks, abs_max_channels(samples))


def limiter_gain(peaks: np.ndarray, ceiling: float, rate: float, attack: float = _ATTACK,
                 hold: float = _HOLD) -> np.ndarray:
    """Smooth gain per frame that keeps ``peaks * gain`` at or below *ceiling*.

    The gain needed at each frame is taken as the minimum over a window reaching
    ``attack`` ahead and ``hold`` behind, then averaged over ``attack``: the
    average of values that are all at most the need at a peak is itself at most
    that need, so every peak is held, and the gain moves without steps.
    *rate* is frames per second (a float where a frame is a group of samples).
    """
    from scipy.ndimage import minimum_filter1d

    need = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12)).astype(np.float32)
    n = need.shape[0]
    if n == 0 or float(need.min()) >= 1.0:
        return need
    w = max(1, round(attack * rate))
    h = max(0, round(hold * rate))
    size = h + w
    # window_min[k] = min(need[k-h .. k+w-1]): a forward window over a padded copy
    padded = np.concatenate([np.ones(h, np.float32), need, np.ones(w - 1, np.float32)])
    window_min = minimum_filter1d(padded, size=size, mode="nearest")[size // 2:size // 2 + n]
    csum = np.concatenate([np.zeros(1, dtype=np.float64), np.cumsum(window_min, dtype=np.float64)])
    idx = np.arange(n)
    lo = np.maximum(idx - w + 1, 0)
    smooth = ((csum[idx + 1] - csum[lo]) / (idx + 1 - lo)).astype(np.float32)
    return np.minimum(smooth, need)  # float rounding must never let a peak through


# ---------------------------------------------------------------- loudness

class _Loudness:
    """BS.1770 integrated loudness from K-weighted sub-block energies (pyloudnorm's block counting and gating)."""

    def __init__(self, x: np.ndarray, rate: int) -> None:
        self.sos = k_weighting_sos(rate)
        self.x, self.rate = x, rate
        n = x.shape[0]
        self.blocks = int(np.round((n / rate - 0.4) / _SUB_SECONDS)) + 1     # as pyloudnorm counts them
        self.edges = np.minimum((np.arange(self.blocks + 4) * _SUB_SECONDS * rate).astype(np.int64), n)
        self.base = self.energies(0, self.blocks + 3)                       # unit gain

    def energies(self, first: int, last: int, gain: Callable[[int, int], np.ndarray] | None = None) -> np.ndarray:
        """Sum of squared K-weighted samples per channel of sub-blocks first..last-1 (x times *gain*)."""
        from scipy.signal import sosfilt

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
            y, zi = sosfilt(self.sos, chunk, axis=0, zi=zi)
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
        with np.errstate(divide="ignore"):
            block_loudness = -0.691 + 10.0 * np.log10(z.sum(axis=1))
        gated = block_loudness >= -70.0
        if not gated.any():
            return -math.inf
        relative = -0.691 + 10.0 * np.log10(z[gated].mean(axis=0).sum()) - 10.0
        gated &= block_loudness > relative
        if not gated.any():
            return -math.inf
        return float(-0.691 + 10.0 * np.log10(z[gated].mean(axis=0).sum()))


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


def _segment_runs(check: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) group of each run of whole segments that hold a group in *check*.

    Consecutive segments are joined, up to 2**20 frames at once."""
    groups = check.shape[0]
    per = _TP_SEGMENT // _GROUP
    segments = np.flatnonzero(np.add.reduceat(check, np.arange(0, groups, per)) > 0)
    longest = (1 << 20) // _TP_SEGMENT
    breaks = np.flatnonzero((np.diff(segments) > 1) | (np.arange(1, segments.size) % longest == 0))
    return [(int(a) * per, min(groups, (int(b) + 1) * per) - 1)
            for a, b in zip(np.concatenate([[segments[0]], segments[breaks + 1]]),
                            np.concatenate([segments[breaks], [segments[-1]]]))]


def _group_peaks(x: np.ndarray, rate: int,
                 candidate: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(peak of each group of frames, which of them are true peaks): groups that *candidate(sample
    peaks)* selects are oversampled; the others keep their sample peak (a lower bound)."""
    n = x.shape[0]
    peaks = _sample_group_peaks(x)
    check = candidate(peaks)
    if not check.any():
        return peaks, check
    for first, last in _segment_runs(check):   # oversampled with context
        a, b = first * _GROUP, min(n, (last + 1) * _GROUP)
        lo, hi = max(0, a - _TP_MARGIN), min(n, b + _TP_MARGIN)
        tp = true_peak_per_frame(np.ascontiguousarray(x[lo:hi]), rate)[a - lo:b - lo]
        pad = -tp.shape[0] % _GROUP
        if pad:
            tp = np.concatenate([tp, np.zeros(pad, np.float32)])
        peaks[first:first + tp.shape[0] // _GROUP] = _max_every(tp, _GROUP)
        check[first:last + 1] = True      # the whole segment is measured now
    return peaks, check


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
    """The true peak (dBTP) of the normalized *x*, measuring again only where it is not yet known.

    A group whose true peak was measured before the gain keeps it times the largest gain
    applied to it (the gain moves slowly and linearly across a group).  Other groups are
    oversampled now only if their bound (sample peak, times the headroom, times the gain)
    could exceed that.
    """
    upper = np.maximum(curve, np.append(curve[1:], curve[-1:]))
    known = float((peaks * upper)[measured].max()) if measured.any() else 0.0
    could_exceed = ~measured & (peaks * upper * np.float32(_TP_HEADROOM) > known)
    if could_exceed.any():
        again, _ = _group_peaks(x, rate, lambda _sample_peaks: could_exceed)
        known = max(known, float(again[could_exceed].max()))
    return 20.0 * math.log10(known) if known > 0 else -math.inf


# ---------------------------------------------------------------- normalization

class _LimitedGain:
    """Loudness of *x* under a gain with the limiter holding its true peaks under *ceiling*.

    True peaks are measured where a gain of up to ``plain + reach`` dB could bring them
    near the ceiling; :meth:`reach_further` measures up to *max_push_db* when the
    search goes beyond that.
    """

    def __init__(self, meter: _Loudness, plain: float, ceiling: float, max_push_db: float) -> None:
        self.meter, self.x, self.rate = meter, meter.x, meter.rate
        self.plain, self.ceiling, self.max_push_db = plain, ceiling, max_push_db
        self.reach = min(3.0, max_push_db)
        self.peaks, self.measured = self._measure_peaks()

    def _measure_peaks(self) -> tuple[np.ndarray, np.ndarray]:
        g = db_to_gain(self.plain + self.reach)
        ceiling = self.ceiling
        return _group_peaks(self.x, self.rate, lambda sample_peaks: sample_peaks * (_TP_HEADROOM * g) > ceiling)

    def reach_further(self, gain_db: float) -> bool:
        """Measure true peaks for the largest push once *gain_db* is beyond the reach; True if it did."""
        if gain_db > self.plain + self.reach and self.reach < self.max_push_db:
            self.reach = self.max_push_db
            self.peaks, self.measured = self._measure_peaks()
            return True
        return False

    def group_gain(self, gain_db: float) -> np.ndarray:
        """Gain per group (limiter included) at a gain of *gain_db*; hold spans at least one group."""
        g = db_to_gain(gain_db)
        limit = limiter_gain(self.peaks * np.float32(g), self.ceiling, self.rate / _GROUP, attack=_ATTACK,
                             hold=max(_HOLD, 1.5 * _GROUP / self.rate))
        return limit * np.float32(g)

    def loudness_at(self, gain_db: float) -> float:
        """Integrated loudness (LUFS) of *x* times the limited gain of *gain_db*."""
        g = db_to_gain(gain_db)
        curve = self.group_gain(gain_db)
        energies = self.meter.base * (g * g)
        limited = np.flatnonzero(curve < np.float32(g) * np.float32(0.99999))
        if limited.size:  # filter the limited regions again, from just before to just after
            self._refilter(energies, limited, curve)
        return self.meter.loudness(energies)

    def _refilter(self, energies: np.ndarray, limited: np.ndarray, curve: np.ndarray) -> None:
        """Measure again, in *energies*, the sub-blocks around the *limited* groups under *curve*."""
        meter = self.meter
        subs = np.unique(np.searchsorted(meter.edges, limited * _GROUP, side="right") - 1)
        subs = np.unique(np.clip(np.concatenate([subs, subs + 1]), 0, meter.blocks + 2))
        for run in np.split(subs, np.flatnonzero(np.diff(subs) > 1) + 1):
            first, last = int(run[0]), int(run[-1]) + 1
            energies[first:last] = meter.energies(first, last, lambda a, b: _frame_curve(curve, a, b))


def _secant_gain(gain: float, got: float, prev: tuple[float, float] | None, target: float) -> float:
    """The next gain of the secant search; the slope is kept between 0.02 and 1 LU per dB."""
    slope = 1.0 if prev is None or prev[0] == gain else (got - prev[1]) / (gain - prev[0])
    return gain + (target - got) / min(1.0, max(0.02, slope))


def _search(gains: _LimitedGain, target: float, tolerance: float, max_rounds: int) -> tuple[float, float]:
    """(gain in dB, loudness reached there): a secant search for *target*, kept inside a bracket."""
    low, high = gains.plain - 1.0, gains.plain + gains.max_push_db
    gain, got = gains.plain, gains.loudness_at(gains.plain)
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
    """What :func:`normalize_loudness` reached: LUFS and dBTP (None when it left the audio as is), and notes."""

    loudness: float | None = None
    true_peak: float | None = None
    notes: tuple[str, ...] = ()
    gain_db: float = 0.0          # the plain gain applied, before the limiter's


def normalize_loudness(x: np.ndarray, rate: int, target: float, ceiling_db: float = -1.0,
                       tolerance: float = 0.05, max_rounds: int = 12, max_push_db: float = 12.0) -> Normalization:
    """Bring *x* to *target* LUFS with its true peak at or below *ceiling_db*, in place.

    A plain gain reaches the target; where that pushes the true peak over the
    ceiling, a look-ahead limiter holds the peaks, and the gain is raised
    further (at most *max_push_db*) until the limited signal meets the target
    too.  Loudness grows monotonically with the gain but by less than 1 dB per dB
    once the limiter works, so the gain is found by a secant search kept inside a
    bracket.
    """
    if x.shape[0] < 0.4 * rate:  # one whole 400 ms block is needed
        return Normalization(notes=("audio shorter than 0.4 s: loudness not normalized",))
    meter = _Loudness(x, rate)
    measured = meter.loudness(meter.base)
    if not math.isfinite(measured):
        return Normalization(notes=("audio is silent: loudness not normalized",))
    gains = _LimitedGain(meter, target - measured, db_to_gain(ceiling_db - 0.02), max_push_db)
    gain, got = _search(gains, target, tolerance, max_rounds)
    curve = gains.group_gain(gain)
    _apply_curve(x, curve)
    true_peak = _final_true_peak(x, rate, gains.peaks, gains.measured, curve)
    notes: tuple[str, ...] = ()
    if abs(got - target) > 0.1:   # got was measured on exactly this curve in the last round
        notes = (f"loudness reached {got:.1f} LUFS, not {target:g}: holding the true peak under "
                 f"{ceiling_db:g} dBTP would take more than {max_push_db:g} dB of limiting",)
    return Normalization(got, true_peak, notes, gain)
