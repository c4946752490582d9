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
from typing import Sequence, Union

import numpy as np

from .audio import Clip, db_to_gain, resample

log = logging.getLogger("dialog_tts")

TRUE_PEAK_OVERSAMPLING = 4
_BLOCK = 1 << 16


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
    if samples.size == 0:
        return samples
    level = np.abs(samples) if samples.ndim == 1 else np.abs(samples).max(axis=1)
    peak = float(level.max())
    threshold = max(peak * db_to_gain(threshold_db), db_to_gain(floor_db))
    loud = np.flatnonzero(level > threshold)
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0]:loud[-1] + 1]


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


def prepare(clip: Clip, settings: MixSettings) -> np.ndarray:
    """One clip as it goes into the mix: mono, trimmed, resampled, faded (a new array)."""
    mono = trim(clip.mono(), settings.trim_db, settings.trim_floor_db)
    out = resample(mono, clip.sample_rate, settings.sample_rate)
    out = np.array(out, dtype=np.float32, copy=True)
    return fade_edges(out, round(settings.fade * settings.sample_rate))


def layout(items: Sequence[Item], lengths: Sequence[int], settings: MixSettings) -> tuple[list[int], int]:
    """Start frame of each Placement and the total length, from clip lengths in frames.

    Consecutive clips are ``gap`` apart; a Silence adds its length at its place
    (before the first clip or after the last one too).  A clip with no audio
    left after trimming takes no place and no gap.
    """
    rate = settings.sample_rate
    starts: list[int] = []
    cursor = 0.0          # in seconds, rounded to frames only at placement
    placed_any = False
    clip_index = 0
    for item in items:
        if isinstance(item, Silence):
            cursor += item.seconds
            continue
        if lengths[clip_index] == 0:
            starts.append(round(cursor * rate))
            clip_index += 1
            continue
        if placed_any:
            cursor += settings.gap
        start = round(cursor * rate)
        starts.append(start)
        cursor = (start + lengths[clip_index]) / rate
        clip_index += 1
        placed_any = True
    return starts, round(cursor * rate)


def mix(items: Sequence[Item], settings: MixSettings = MixSettings()) -> MixResult:
    """Assemble *items* into one buffer and (optionally) normalize its loudness."""
    placements = [it for it in items if isinstance(it, Placement)]
    prepared = [prepare(p.clip, settings) for p in placements]
    starts, total = layout(items, [len(x) for x in prepared], settings)
    shape = (total,) if settings.channels == 1 else (total, 2)
    out = np.zeros(shape, dtype=np.float32)
    spans = []
    silent = sum(1 for x in prepared if x.shape[0] == 0)
    for placement, samples, start in zip(placements, prepared, starts):
        end = start + samples.shape[0]
        gain = db_to_gain(placement.gain_db)
        if settings.channels == 1:
            out[start:end] += samples * np.float32(gain)
        else:
            left, right = pan_gains(placement.pan)
            out[start:end, 0] += samples * np.float32(gain * left)
            out[start:end, 1] += samples * np.float32(gain * right)
        spans.append((start / settings.sample_rate, end / settings.sample_rate))
    del prepared
    result = MixResult(out, settings.sample_rate, spans)
    if silent:
        result.notes.append(f"{silent} clip(s) had no audible audio and were left out")
    if settings.lufs is not None:
        normalize_loudness(result, settings.lufs, settings.true_peak)
    np.clip(out, -1.0, 1.0, out=out)
    return result


# ---------------------------------------------------------------- loudness

def integrated_loudness(samples: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4 via pyloudnorm)."""
    import pyloudnorm

    return float(pyloudnorm.Meter(rate).integrated_loudness(samples))


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
        level = np.abs(up[:usable])
        if level.ndim == 2:
            level = level.max(axis=1)
        block = level.reshape(-1, oversampling).max(axis=1)
        n = min(block.shape[0], frames - filled)
        peaks[filled:filled + n] = block[:n]
        filled += n
        pending = up[usable:]
    if filled < frames:  # the resampler's tail: fall back to the sample peaks
        tail = np.abs(samples[filled:])
        peaks[filled:] = tail if tail.ndim == 1 else tail.max(axis=1)
    return np.maximum(peaks, np.abs(samples) if samples.ndim == 1 else np.abs(samples).max(axis=1))


def true_peak_db(samples: np.ndarray, rate: int) -> float:
    peak = float(true_peak_per_frame(samples, rate).max()) if samples.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


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


def normalize_loudness(result: MixResult, target: float, ceiling_db: float = -1.0,
                       tolerance: float = 0.05, max_rounds: int = 12, max_push_db: float = 24.0) -> None:
    """Bring *result* to *target* LUFS with its true peak at or below *ceiling_db*, in place.

    A plain gain reaches the target; where that pushes the true peak over the
    ceiling, a look-ahead limiter holds the peaks, and the gain is raised
    further until the limited signal meets the target too.  Loudness grows
    monotonically with the gain but by less than 1 dB per dB once the limiter
    works, so the gain is found by a secant search kept inside a bracket.
    """
    x, rate = result.samples, result.sample_rate
    if x.shape[0] < 0.4 * rate:  # pyloudnorm needs one whole 400 ms block
        result.notes.append("audio shorter than 0.4 s: loudness not normalized")
        return
    measured = integrated_loudness(x, rate)
    if not math.isfinite(measured):
        result.notes.append("audio is silent: loudness not normalized")
        return
    peaks = true_peak_per_frame(x, rate)
    ceiling = db_to_gain(ceiling_db - 0.02)

    def curve_for(gain_db: float) -> np.ndarray:
        g = db_to_gain(gain_db)
        return limiter_gain(peaks * np.float32(g), ceiling, rate) * np.float32(g)

    def loudness_at(gain_db: float) -> float:
        c = curve_for(gain_db)
        return integrated_loudness(x * (c if x.ndim == 1 else c[:, None]), rate)

    plain = target - measured
    low, high = plain - 1.0, plain + max_push_db   # loudness(low) < target <= loudness(high) unless unreachable
    gain, got = plain, loudness_at(plain)
    prev: tuple[float, float] | None = None
    for _ in range(max_rounds):
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
    curve = curve_for(gain)
    if x.ndim == 1:
        x *= curve
    else:
        x *= curve[:, None]
    result.loudness = got  # measured on exactly this curve in the last round
    result.true_peak = true_peak_db(x, rate)
    if abs(result.loudness - target) > 0.1:
        result.notes.append(f"loudness reached {result.loudness:.1f} LUFS, not {target:g}: holding the "
                            f"true peak under {ceiling_db:g} dBTP would take more than {max_push_db:g} dB "
                            f"of limiting")
