"""Clips into the mix: each clip trimmed of silence, resampled, faded (:func:`prepare`), and the
in-memory face of the mixer (:func:`mix`, :func:`mix_timeline`, :func:`mix_stems`), which mixes
through the block mixer (:mod:`dialog_tts.finish.mixer`) and gathers its blocks into one array.

Each spoken clip is trimmed of leading and trailing silence (so the gap is the real silence
between voices), resampled to the output rate (soxr) and faded in and out over a few
milliseconds (joins never click).  Levelling, gains, pans, music, loudness and the true-peak
ceiling are the block mixer's; the result is rounded to the output's bit depth.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Iterator, Sequence, Union

import numpy as np

from dialog_tts.finish import music as music_mod
from dialog_tts.finish import timeline as timeline_mod
from dialog_tts.finish.ahead import mapped
from dialog_tts.finish.loudness import abs_max_channels
from dialog_tts.finish.mixer import BlockMix, Own, pan_gains
from dialog_tts.finish.timeline import Entry, Timeline
from dialog_tts.io.audio import Clip, db_to_gain, quantize, resample
from dialog_tts.render import specs
from dialog_tts.script.parse import Line, Pause
from dialog_tts.script.voice import Voice

__all__ = ["MixResult", "MixSettings", "Placement", "Silence", "fade_edges", "mix", "mix_stems", "mix_timeline",
           "pan_gains", "placed", "placed_frames", "prepare", "resampled_length", "sentence_starts", "trim",
           "trim_bounds"]

MixSettings = specs.MixSettings

log = logging.getLogger("dialog_tts")
#: Threads that make the lines ready for the mixer's analysis (prepared, their true peaks read) ahead of it
READERS = max(1, min(4, os.cpu_count() or 1))


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


@dataclass
class MixResult:
    samples: np.ndarray                 # float32, (n,) for mono or (n, 2) for stereo
    sample_rate: int
    spans: list[tuple[float, float]]    # (start, end) seconds of each Placement, in order
    loudness: float | None = None       # integrated LUFS of the result (None where not measured)
    true_peak: float | None = None      # dBTP of the result (None where not measured)
    gain_db: float = 0.0                # the loudness gain applied (before the limiter)
    line_gains: dict[int, float] = field(default_factory=dict)  # each line's gain (dB, levelling included)
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / self.sample_rate


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
    return placed(clip, settings, cut=False)


def placed(clip: Clip, settings: MixSettings, *, cut: bool = True) -> np.ndarray:
    """:func:`prepare` cut to :func:`placed_frames` (what the mix places), trimming once."""
    mono = clip.mono()
    start, stop = trim_bounds(mono, settings.trim_db, settings.trim_floor_db)
    out = resample(mono[start:stop], clip.sample_rate, settings.sample_rate)
    out = fade_edges(np.array(out, dtype=np.float32, copy=True), round(settings.fade * settings.sample_rate))
    return out[:resampled_length(stop - start, clip.sample_rate, settings.sample_rate)] if cut else out


def sentence_starts(clip: Clip, settings: MixSettings) -> list[float]:
    """Seconds from the clip's placed (trimmed) start to each of its sentences' starts, the first at 0.

    Empty when the backend gave no sentence marks; the subtitles then split by text length.
    """
    if not clip.marks:
        return []
    start, stop = trim_bounds(clip.mono() if clip.channels > 1 else clip.samples,
                              settings.trim_db, settings.trim_floor_db)
    inside = [(m - start) / clip.sample_rate for m in clip.marks if start < m < stop]
    return [0.0, *inside] if len(inside) == len(clip.marks) else []


def placed_frames(clip: Clip, settings: MixSettings) -> int:
    """How many output frames *clip* takes in the mix: trimmed of silence, at the output rate."""
    start, stop = trim_bounds(clip.mono() if clip.channels > 1 else clip.samples,
                              settings.trim_db, settings.trim_floor_db)
    return resampled_length(stop - start, clip.sample_rate, settings.sample_rate)


def mix_timeline(timeline: Timeline, clips: list[Clip | None], settings: MixSettings, *,
                 consume: bool = False, music: music_mod.Music | None = None) -> MixResult:
    """Place each line's clip where *timeline* says, level it, then normalize (or limit) the result:
    the block mixer's blocks, gathered into one array.

    ``clips[i]`` is the audio of the script's i-th line (the timeline entries' ``index``).  With
    ``consume=True`` each clip is replaced by None in *clips* as soon as it is analysed, so that a
    caller holding no other reference frees it.  *music* (bed, intro, outro) is added where the
    timeline's bookends say.  Raises :class:`~dialog_tts.errors.LoudnessError` when
    ``settings.lufs`` is out of reach under the ceiling (unless ``settings.allow_quieter``).
    """
    rate = settings.sample_rate
    with BlockMix(settings, spill=False) as bm:
        spans, silent = _add_lines(bm, timeline, clips, settings, consume)
        if music is not None:
            for start, samples in music_mod.pieces(timeline, music, settings.channels):
                bm.add_track(start, samples)
        figures = bm.finish(timeline.frames)
        out = _gathered(bm.blocks(), timeline.frames, settings.channels)
        figures = bm.rendered(figures)
    if settings.bit_depth is not None:
        quantize(out, settings.bit_depth)
        np.clip(out, -1.0, 1.0, out=out)
    notes = [f"{silent} clip(s) had no audible audio and were left out"] if silent else []
    return MixResult(out, rate, spans, figures.loudness, figures.true_peak, figures.gain_db, figures.line_gains,
                     notes + figures.notes)


def _add_lines(bm: BlockMix, timeline: Timeline, clips: list[Clip | None], settings: MixSettings,
               consume: bool) -> tuple[list[tuple[float, float]], int]:
    """Each line's prepared clip into *bm*; (spans in seconds, silent clips)."""
    rate = settings.sample_rate
    spans = []
    silent = 0
    for entry, samples, own in _ready(bm, timeline, clips, settings, consume):
        bm.add(entry, samples, own)
        spans.append((entry.start / rate, entry.start / rate + entry.frames / rate))
        silent += entry.frames == 0
    return spans, silent


def _ready(bm: BlockMix, timeline: Timeline, clips: list[Clip | None], settings: MixSettings,
           consume: bool) -> Iterator[tuple[Entry, np.ndarray, Own]]:
    """Each line's prepared clip with its own true peaks (:meth:`BlockMix.own`), in order, made on
    :data:`READERS` threads ahead of the caller, which adds them (the same figures on any number)."""
    def ready(entry: Entry) -> tuple[Entry, np.ndarray, Own]:
        clip = clips[entry.index]
        assert clip is not None and entry.voice is not None
        if consume:
            clips[entry.index] = None
        samples = prepare(clip, settings)[:entry.frames]
        return entry, samples, bm.own(samples)
    return mapped(ready, timeline.lines, depth=2 * READERS, threads=READERS)


def _gathered(blocks: Iterator[np.ndarray], frames: int, channels: int) -> np.ndarray:
    """The *frames* frames of *blocks* in one array, each block copied in as it comes (never the blocks
    and the whole array held at once, nor two whole arrays)."""
    out = np.empty((frames,) if channels == 1 else (frames, 2), np.float32)
    at = 0
    for block in blocks:
        out[at:at + block.shape[0]] = block
        at += block.shape[0]
    if at != frames:
        raise AssertionError(f"the mixer gave {at} frames of {frames}")
    return out


def mix_stems(timeline: Timeline, clips: list[Clip | None], settings: MixSettings, *, gain_db: float = 0.0,
              music: music_mod.Music | None = None, speakers: Sequence[str] | None = None,
              line_gains: dict[int, float] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """One stem per speaker (*speakers*, or those with lines in order of first line), then ``"music"``
    (with *music*): (name, samples), from the block mixer's :meth:`~blockmix.BlockMix.stem`.

    Each stem is the mix with only that speaker's lines (or only the music), placed by the same
    code and timeline with the gains the mix gave each line (*line_gains*, its
    :attr:`MixResult.line_gains`: levelling included; a voice's gain where not given), times the
    loudness gain the mix got (*gain_db*): the stems sum to the mix before its limiter.
    """
    with BlockMix(settings, spill=False) as bm:
        by_speaker: dict[str, list] = {}
        for entry, samples, own in _ready(bm, timeline, clips, settings, False):
            assert entry.voice is not None
            line = bm.add(entry, samples, own)
            by_speaker.setdefault(entry.speaker, [])
            if line is not None:
                line.gain_db = (line_gains or {}).get(entry.index, entry.voice.gain)
                by_speaker[entry.speaker].append(line)
        if music is not None:
            for start, samples in music_mod.pieces(timeline, music, settings.channels):
                bm.add_track(start, samples)
        bm.gain_db, bm.frames = gain_db, timeline.frames
        for speaker in speakers if speakers is not None else list(by_speaker):
            yield speaker, _gathered(bm.stem(by_speaker.get(speaker, [])), timeline.frames, settings.channels)
        if music is not None:
            yield "music", _gathered(bm.stem(bm.tracks), timeline.frames, settings.channels)


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
