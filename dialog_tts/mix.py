"""The mixer: clips in, one finished NumPy buffer out.  Pure NumPy, no I/O.

Each spoken clip is trimmed of leading and trailing silence (so the gap is the
real silence between voices), resampled to the output rate (soxr), faded in
and out over a few milliseconds (joins never click), given its gain and its
constant-power pan, and placed into one preallocated buffer.  Optionally the
result is normalized to an integrated loudness (pyloudnorm, ITU-R BS.1770)
with its true peak held under a ceiling by a look-ahead limiter.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import numpy as np

from . import timeline as timeline_mod
from .audio import Clip, db_to_gain, resample
from .script import Line, Pause
from .timeline import Timeline
from .voice import Voice

log = logging.getLogger("dialog_tts")

TRUE_PEAK_OVERSAMPLING = 4
_BLOCK = 1 << 16  # frames per block (a multiple of the limiter's group)


@dataclass(frozen=True)
class Placement:
    """A clip to place, with its mix-only settings."""

    clip: Clip
    pan: float = 0.0      # -1 left .. +1 right
    gain_db: float = 0.0


@dataclass(frozen=True)
class Silence:
    """Extra silence at this point (a ``[pause]``)."""

    seconds: float


Item = Union[Placement, Silence]


@dataclass(frozen=True)
class MixSettings:
    sample_rate: int = 24000
    channels: int = 2
    gap: float = 0.25              # seconds of silence between consecutive clips
    lufs: float | None = None      # integrated loudness target, LUFS
    true_peak: float = -1.0        # ceiling in dBTP, used with ``lufs``
    fade: float = 0.005            # seconds of fade at each clip edge
    trim_db: float = -45.0         # trim threshold, dB below the clip's peak
    trim_floor_db: float = -70.0   # ... but never below this absolute level

    def __post_init__(self) -> None:
        if self.channels not in (1, 2):
            raise ValueError("channels must be 1 or 2")
        if self.sample_rate < 8000 or self.sample_rate > 192000:
            raise ValueError("sample rate must be 8000-192000 Hz")
        if self.gap < 0:
            raise ValueError("gap must not be negative")


@dataclass
class MixResult:
    samples: np.ndarray                 # float32, (n,) for mono or (n, 2) for stereo
    sample_rate: int
    spans: list[tuple[float, float]]    # (start, end) seconds of each Placement, in order
    loudness: float | None = None       # integrated LUFS after normalization, when asked
    true_peak: float | None = None      # dBTP after normalization, when asked
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / self.sample_rate


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power pan law: left/right gains with L² + R² = 1."""
    theta = (max(-1.0, min(1.0, pan)) + 1.0) * math.pi / 4.0
    return math.cos(theta), math.sin(theta)


def trim(samples: np.ndarray, threshold_db: float = -45.0, floor_db: float = -70.0) -> np.ndarray:
    """*samples* without the leading and trailing part quieter than the threshold."""
    start, stop = trim_bounds(samples, threshold_db, floor_db)
    return samples[start:stop]


def fade_edges(samples: np.ndarray, length: int) -> np.ndarray:
    """Raised-cosine fade in and out of *length* samples, in place."""
    n = min(length, samples.shape[0] // 2)
    if n <= 0:
        return samples
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n, dtype=np.float32) + 0.5) / n)).astype(np.float32)
    if samples.ndim == 2:
        ramp = ramp[:, None]
    samples[:n] *= ramp
    samples[-n:] *= ramp[::-1]
    return samples


def resampled_length(frames: int, rate: int, target: int) -> int:
    """How many frames soxr returns for *frames* resampled from *rate* to *target* (exactly)."""
    return frames if rate == target else (2 * frames * target + rate) // (2 * rate)


def trim_bounds(samples: np.ndarray, threshold_db: float = -45.0, floor_db: float = -70.0) -> tuple[int, int]:
    """(start, stop) of *samples* without the leading and trailing part quieter than the threshold."""
    if samples.size == 0:
        return 0, 0
    level = _abs_max_channels(samples)
    threshold = max(float(level.max()) * db_to_gain(threshold_db), db_to_gain(floor_db))
    loud = np.flatnonzero(level > threshold)
    return (0, 0) if loud.size == 0 else (int(loud[0]), int(loud[-1]) + 1)


def prepare(clip: Clip, settings: MixSettings) -> np.ndarray:
    """One clip as it goes into the mix: mono, trimmed, resampled, faded (a new array)."""
    mono = clip.mono()
    start, stop = trim_bounds(mono, settings.trim_db, settings.trim_floor_db)
    out = resample(mono[start:stop], clip.sample_rate, settings.sample_rate)
    out = np.array(out, dtype=np.float32, copy=True)
    return fade_edges(out, round(settings.fade * settings.sample_rate))


def placed_frames(clip: Clip, settings: MixSettings) -> int:
    """How many output frames *clip* takes in the mix: trimmed of silence, at the output rate."""
    start, stop = trim_bounds(clip.mono() if clip.channels > 1 else clip.samples,
                              settings.trim_db, settings.trim_floor_db)
    return resampled_length(stop - start, clip.sample_rate, settings.sample_rate)


def mix_timeline(timeline: Timeline, clips: list[Clip | None], settings: MixSettings, *,
                 consume: bool = False) -> MixResult:
    """Place each line's clip where *timeline* says, then (optionally) normalize loudness.

    ``clips[i]`` is the audio of the script's i-th line (the timeline entries' ``index``).
    Memory stays near the size of the result: the buffer is allocated once (its
    pages become resident only as clips land in it) and normalization works in
    place.  With ``consume=True`` each clip is replaced by None in *clips* as soon
    as it is placed, so that a caller holding no other reference frees it.
    """
    total = timeline.frames
    out = np.zeros((total,) if settings.channels == 1 else (total, 2), dtype=np.float32)
    spans = []
    silent = 0
    for entry in timeline.lines:
        clip = clips[entry.index]
        assert clip is not None and entry.voice is not None
        if consume:
            clips[entry.index] = None
        _place(out, prepare(clip, settings)[:entry.frames], entry.start, entry.voice.pan or 0.0,
               entry.voice.gain, settings)
        spans.append((entry.start / settings.sample_rate,
                      entry.start / settings.sample_rate + entry.frames / settings.sample_rate))
        silent += entry.frames == 0
        del clip
    result = MixResult(out, settings.sample_rate, spans)
    if silent:
        result.notes.append(f"{silent} clip(s) had no audible audio and were left out")
    if settings.lufs is not None:
        normalize_loudness(result, settings.lufs, settings.true_peak)
    for block in range(0, total, _BLOCK):
        np.clip(out[block:block + _BLOCK], -1.0, 1.0, out=out[block:block + _BLOCK])
    return result


def _place(out: np.ndarray, samples: np.ndarray, start: int, pan: float, gain_db: float,
           settings: MixSettings) -> None:
    """Add *samples* into *out* at frame *start*, with gain and (in stereo) constant-power pan."""
    end = start + samples.shape[0]
    gain = db_to_gain(gain_db)
    if settings.channels == 1:
        out[start:end] += samples * np.float32(gain)
    else:
        left, right = pan_gains(pan)
        out[start:end, 0] += samples * np.float32(gain * left)
        out[start:end, 1] += samples * np.float32(gain * right)


def mix(items: list[Item], settings: MixSettings = MixSettings(), *, consume: bool = False) -> MixResult:
    """Assemble a list of :class:`Placement` and :class:`Silence` items (a convenience over
    :func:`mix_timeline`: each Placement is a line, each Silence a pause, in order)."""
    events: list[timeline_mod.Event] = []
    inputs: list[timeline_mod.LineInput] = []
    clips: list[Clip | None] = []
    for i, item in enumerate(items):
        if isinstance(item, Silence):
            events.append(Pause(item.seconds, 0))
            continue
        if consume:
            items[i] = None  # type: ignore[call-overload]  # the clips list holds the only reference now
        line = Line("", "", 0)
        events.append(line)
        inputs.append(timeline_mod.LineInput(line, Voice("", pan=item.pan, gain=item.gain_db),
                                             placed_frames(item.clip, settings)))
        clips.append(item.clip)
    timeline = timeline_mod.build(events, inputs, sample_rate=settings.sample_rate, gap=settings.gap)
    return mix_timeline(timeline, clips, settings, consume=consume)


# ---------------------------------------------------------------- loudness

def _abs_max_channels(x: np.ndarray) -> np.ndarray:
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
    for start in range(0, frames, _BLOCK):
        chunk = np.ascontiguousarray(samples[start:start + _BLOCK])
        up = stream.resample_chunk(chunk, last=start + _BLOCK >= frames)
        up = np.concatenate([pending, up]) if pending.shape[0] else up
        usable = (up.shape[0] // oversampling) * oversampling
        block = _max_every(_abs_max_channels(up[:usable]), oversampling)
        n = min(block.shape[0], frames - filled)
        peaks[filled:filled + n] = block[:n]
        filled += n
        pending = up[usable:]
    if filled < frames:  # the resampler's tail: fall back to the sample peaks
        peaks[filled:] = _abs_max_channels(samples[filled:])
    return np.maximum(peaks, _abs_max_channels(samples))


def limiter_gain(peaks: np.ndarray, ceiling: float, rate: int, attack: float = 0.005,
                 hold: float = 0.05) -> np.ndarray:
    """Smooth gain per frame that keeps ``peaks * gain`` at or below *ceiling*.

    The gain needed at each frame is taken as the minimum over a window reaching
    ``attack`` ahead and ``hold`` behind, then averaged over ``attack``: the
    average of values that are all at most the need at a peak is itself at most
    that need, so every peak is held, and the gain moves without steps.
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


class _Loudness:
    """BS.1770 integrated loudness from K-weighted sub-block energies (pyloudnorm's filters and gating)."""

    def __init__(self, x: np.ndarray, rate: int) -> None:
        import pyloudnorm
        from scipy.signal import tf2sos

        meter = pyloudnorm.Meter(rate)
        self.sos = np.concatenate([tf2sos(f.b, f.a) for f in meter._filters.values()])
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
            end = min(stop, pos + _BLOCK)
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


def _group_peaks(x: np.ndarray, rate: int, candidate: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(peak of each group of frames, which of them are true peaks): groups that *candidate(sample
    peaks)* selects are oversampled; the others keep their sample peak (a lower bound)."""
    n = x.shape[0]
    groups = -(-n // _GROUP)
    peaks = np.empty(groups, dtype=np.float32)
    for start in range(0, n, _BLOCK):          # sample peaks, block by block (_BLOCK is a multiple of _GROUP)
        block = _abs_max_channels(x[start:start + _BLOCK])
        pad = -block.shape[0] % _GROUP
        if pad:
            block = np.concatenate([block, np.zeros(pad, np.float32)])
        peaks[start // _GROUP:start // _GROUP + block.shape[0] // _GROUP] = _max_every(block, _GROUP)
    check = candidate(peaks)
    if not check.any():
        return peaks, check
    # whole segments holding any candidate group, consecutive ones joined, oversampled with context
    per = _TP_SEGMENT // _GROUP
    segments = np.flatnonzero(np.add.reduceat(check, np.arange(0, groups, per)) > 0)
    longest = (1 << 20) // _TP_SEGMENT                           # segments joined: at most 2**20 frames at once
    breaks = np.flatnonzero((np.diff(segments) > 1) | (np.arange(1, segments.size) % longest == 0))
    for first_seg, last_seg in zip(np.concatenate([[segments[0]], segments[breaks + 1]]),
                                   np.concatenate([segments[breaks], [segments[-1]]])):
        first, last = int(first_seg) * per, min(groups, (int(last_seg) + 1) * per) - 1
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


def normalize_loudness(result: MixResult, target: float, ceiling_db: float = -1.0,
                       tolerance: float = 0.05, max_rounds: int = 12, max_push_db: float = 12.0) -> None:
    """Bring *result* to *target* LUFS with its true peak at or below *ceiling_db*, in place.

    A plain gain reaches the target; where that pushes the true peak over the
    ceiling, a look-ahead limiter holds the peaks, and the gain is raised
    further (at most *max_push_db*) until the limited signal meets the target
    too.  Loudness grows monotonically with the gain but by less than 1 dB per dB
    once the limiter works, so the gain is found by a secant search kept inside a
    bracket.
    """
    x, rate = result.samples, result.sample_rate
    if x.shape[0] < 0.4 * rate:  # one whole 400 ms block is needed
        result.notes.append("audio shorter than 0.4 s: loudness not normalized")
        return
    meter = _Loudness(x, rate)
    measured = meter.loudness(meter.base)
    if not math.isfinite(measured):
        result.notes.append("audio is silent: loudness not normalized")
        return
    ceiling = db_to_gain(ceiling_db - 0.02)
    plain = target - measured
    reach = min(3.0, max_push_db)      # true peaks are measured where a gain up to plain + reach could matter

    def measure_peaks(reach_db: float) -> np.ndarray:
        g = db_to_gain(plain + reach_db)
        return _group_peaks(x, rate, lambda sample_peaks: sample_peaks * (_TP_HEADROOM * g) > ceiling)

    peaks, measured_tp = measure_peaks(reach)
    attack, hold = 0.005, 0.05

    def group_gain(gain_db: float) -> np.ndarray:
        """Gain per group (limiter included) at a gain of *gain_db*; hold spans at least one group."""
        g = db_to_gain(gain_db)
        limit = limiter_gain(peaks * np.float32(g), ceiling, rate / _GROUP, attack=attack,
                             hold=max(hold, 1.5 * _GROUP / rate))
        return limit * np.float32(g)

    def loudness_at(gain_db: float) -> float:
        g = db_to_gain(gain_db)
        curve = group_gain(gain_db)
        energies = meter.base * (g * g)
        limited = np.flatnonzero(curve < np.float32(g) * np.float32(0.99999))
        if limited.size:  # filter the limited regions again, from just before to just after
            subs = np.unique(np.searchsorted(meter.edges, limited * _GROUP, side="right") - 1)
            subs = np.unique(np.clip(np.concatenate([subs, subs + 1]), 0, meter.blocks + 2))
            runs = np.split(subs, np.flatnonzero(np.diff(subs) > 1) + 1)
            for run in runs:
                first, last = int(run[0]), int(run[-1]) + 1
                energies[first:last] = meter.energies(first, last, lambda a, b: _frame_curve(curve, a, b))
        return meter.loudness(energies)

    low, high = plain - 1.0, plain + max_push_db
    gain, got = plain, loudness_at(plain)
    prev: tuple[float, float] | None = None
    for _ in range(max_rounds):
        if gain > plain + reach and reach < max_push_db:   # beyond what was measured: measure further
            reach = max_push_db
            peaks, measured_tp = measure_peaks(reach)
            got = loudness_at(gain)
        if abs(got - target) <= tolerance:
            break
        if got < target:
            low = max(low, gain)
        else:
            high = min(high, gain)
        slope = 1.0 if prev is None or prev[0] == gain else (got - prev[1]) / (gain - prev[0])
        step = (target - got) / min(1.0, max(0.02, slope))
        prev = (gain, got)
        gain = gain + step
        if not low < gain < high:  # the secant step left the bracket: bisect instead
            gain = (low + high) / 2
        got = loudness_at(gain)
    curve = group_gain(gain)
    for start in range(0, x.shape[0], _BLOCK):   # apply in place, block by block
        stop = min(x.shape[0], start + _BLOCK)
        c = _frame_curve(curve, start, stop)
        x[start:stop] *= c if x.ndim == 1 else c[:, None]
    result.loudness = got  # measured on exactly this curve in the last round
    result.true_peak = _final_true_peak(x, rate, peaks, measured_tp, curve)
    if abs(result.loudness - target) > 0.1:
        result.notes.append(f"loudness reached {result.loudness:.1f} LUFS, not {target:g}: holding the "
                            f"true peak under {ceiling_db:g} dBTP would take more than {max_push_db:g} dB "
                            f"of limiting")
