"""The mixer: clips in, one finished NumPy buffer out.  Pure NumPy, no I/O.

Each spoken clip is trimmed of leading and trailing silence (so the gap is the
real silence between voices), resampled to the output rate (soxr), faded in
and out over a few milliseconds (joins never click), given its gain and its
constant-power pan, and placed into one preallocated buffer.  Optionally the
result is normalized to an integrated loudness (ITU-R BS.1770) with its true
peak held under a ceiling by a look-ahead limiter (dialog_tts.loudness).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence, Union

import numpy as np

from . import loudness
from . import music as music_mod
from . import timeline as timeline_mod
from .audio import Clip, db_to_gain, resample
from .loudness import abs_max_channels
from .script import Line, Pause
from .timeline import Timeline
from .voice import Voice

log = logging.getLogger("dialog_tts")

_BLOCK = loudness.BLOCK  # frames per block when clipping the result


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
    gain_db: float = 0.0                # the loudness gain applied (before the limiter)
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
    level = abs_max_channels(samples)
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
                 consume: bool = False, music: music_mod.Music | None = None) -> MixResult:
    """Place each line's clip where *timeline* says, then (optionally) normalize loudness.

    ``clips[i]`` is the audio of the script's i-th line (the timeline entries' ``index``).
    Memory stays near the size of the result: the buffer is allocated once (its
    pages become resident only as clips land in it) and normalization works in
    place.  With ``consume=True`` each clip is replaced by None in *clips* as soon
    as it is placed, so that a caller holding no other reference frees it.
    *music* (bed, intro, outro) is added where the timeline's bookends say, before
    the loudness is measured.
    """
    total = timeline.frames
    out = np.zeros((total,) if settings.channels == 1 else (total, 2), dtype=np.float32)
    spans, silent = _place_lines(out, timeline, clips, settings, consume=consume)
    if music is not None:
        music_mod.add(out, timeline, music)
    result = MixResult(out, settings.sample_rate, spans)
    if silent:
        result.notes.append(f"{silent} clip(s) had no audible audio and were left out")
    if settings.lufs is not None:
        _normalize(result, settings.lufs, settings.true_peak)
    for block in range(0, total, _BLOCK):
        np.clip(out[block:block + _BLOCK], -1.0, 1.0, out=out[block:block + _BLOCK])
    return result


def _place_lines(out: np.ndarray, timeline: Timeline, clips: list[Clip | None], settings: MixSettings, *,
                 consume: bool = False, speaker: str | None = None) -> tuple[list[tuple[float, float]], int]:
    """Place each line's clip (only *speaker*'s, when given) into *out*; (spans in seconds, silent clips)."""
    spans = []
    silent = 0
    for entry in timeline.lines:
        if speaker is not None and entry.speaker != speaker:
            continue
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
    return spans, silent


def mix_stems(timeline: Timeline, clips: list[Clip | None], settings: MixSettings, *, gain_db: float = 0.0,
              music: music_mod.Music | None = None,
              speakers: Sequence[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """One stem per speaker (*speakers*, or those with lines in order of first line), then ``"music"``
    (with *music*): (name, samples).

    Each stem is the mix with only that speaker's lines (or only the music), placed
    by the same code and timeline, times the loudness gain the mix got (*gain_db*,
    its :attr:`MixResult.gain_db`): the stems sum to the mix before its limiter.
    One stem is in memory at a time.
    """
    total = timeline.frames
    shape = (total,) if settings.channels == 1 else (total, 2)
    gain = np.float32(db_to_gain(gain_db))
    for speaker in speakers if speakers is not None else dict.fromkeys(e.speaker for e in timeline.lines):
        out = np.zeros(shape, dtype=np.float32)
        _place_lines(out, timeline, clips, settings, speaker=speaker)
        out *= gain
        yield speaker, out
        del out
    if music is not None:
        out = np.zeros(shape, dtype=np.float32)
        music_mod.add(out, timeline, music)
        out *= gain
        yield "music", out


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


def _normalize(result: MixResult, target: float, ceiling_db: float) -> None:
    """Normalize *result*'s samples to *target* LUFS under *ceiling_db* dBTP in place, and record what it reached."""
    reached = loudness.normalize_loudness(result.samples, result.sample_rate, target, ceiling_db)
    result.loudness, result.true_peak = reached.loudness, reached.true_peak
    result.gain_db = reached.gain_db
    result.notes.extend(reached.notes)
