"""The mixer: clips in, one finished NumPy buffer out.  Pure NumPy, no I/O.

Each spoken clip is trimmed of leading and trailing silence (so the gap is the
real silence between voices), resampled to the output rate (soxr), faded in
and out over a few milliseconds (joins never click), measured (K-weighted
loudness, dialog_tts.loudness.measure_line), levelled, given its gain and its
constant-power pan, and placed into one preallocated buffer.  Then the result is
normalized to an integrated loudness (ITU-R BS.1770) when a target is given, or
given one fixed gain, with its true peak held under a ceiling by a look-ahead
limiter either way (dialog_tts.loudness), and rounded to the output's bit depth.

Levelling brings every line (``line``, the default) or every speaker
(``speaker``) to one speech loudness before the mix, so that the limiter never has
to do it; ``off`` keeps each clip's level as synthesized.  A voice's ``gain`` is an
offset from that common level.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence, Union

import numpy as np

from . import loudness, specs
from . import music as music_mod
from . import timeline as timeline_mod
from .audio import Clip, db_to_gain, quantize, resample
from .errors import LoudnessError
from .loudness import abs_max_channels
from .script import Line, Pause, speaker_key
from .timeline import Entry, Timeline
from .voice import Voice

# defined in dialog_tts.specs (values, no NumPy); kept here for the modules that used them from here
BIT_DEPTHS = specs.BIT_DEPTHS
MixSettings = specs.MixSettings

log = logging.getLogger("dialog_tts")

_BLOCK = loudness.BLOCK  # frames per block when clipping the result
LEVEL_REFERENCE = -20.0      # LUFS lines are levelled to while mixing (the final gain moves them all)
_MAX_LEVEL_DB = 18.0         # levelling moves a line or a speaker by at most this much either way
COMPENSATE_ROUNDS = 4       # rounds of giving back what the limiter takes from some lines more than others
MAX_COMPENSATION_DB = 6.0   # ... at most this much


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
    """Place each line's clip where *timeline* says, level it, then normalize (or limit) the result.

    ``clips[i]`` is the audio of the script's i-th line (the timeline entries' ``index``).
    Memory stays near the size of the result: the buffer is allocated once (its
    pages become resident only as clips land in it) and normalization works in
    place.  With ``consume=True`` each clip is replaced by None in *clips* as soon
    as it is placed, so that a caller holding no other reference frees it.
    *music* (bed, intro, outro) is added where the timeline's bookends say, before
    the loudness is measured.
    Raises :class:`~dialog_tts.errors.LoudnessError` when ``settings.lufs`` is out of
    reach under the ceiling (unless ``settings.allow_quieter``).
    """
    total = timeline.frames
    out = np.zeros((total,) if settings.channels == 1 else (total, 2), dtype=np.float32)
    levels = _Levels(settings, total)
    spans, silent = _place_lines(out, timeline, clips, settings, consume=consume, levels=levels)
    levels.by_speaker(out)
    if music is not None:
        music_mod.add(out, timeline, music)
        levels.music = True
    result = MixResult(out, settings.sample_rate, spans)
    if silent:
        result.notes.append(f"{silent} clip(s) had no audible audio and were left out")
    _finish(result, settings, levels)
    result.line_gains = {entry.index: gain for entry, _level, gain in levels.lines}
    return result


def _place_lines(out: np.ndarray, timeline: Timeline, clips: list[Clip | None], settings: MixSettings, *,
                 consume: bool = False, speaker: str | None = None, levels: _Levels | None = None,
                 gains: dict[int, float] | None = None) -> tuple[list[tuple[float, float]], int]:
    """Place each line's clip (only *speaker*'s, when given) into *out*; (spans in seconds, silent clips).

    Each line is measured and levelled by *levels*, or placed with the gain the mix gave
    it (*gains*, by line index: :attr:`MixResult.line_gains`)."""
    spans = []
    silent = 0
    for entry in timeline.lines:
        if speaker is not None and entry.speaker != speaker:
            continue
        clip = clips[entry.index]
        assert clip is not None and entry.voice is not None
        if consume:
            clips[entry.index] = None
        samples = prepare(clip, settings)[:entry.frames]
        gain = levels.measure(entry, samples) if levels is not None else \
            (gains or {}).get(entry.index, entry.voice.gain)
        _place(out, samples, entry.start, entry.voice.pan or 0.0, gain, settings)
        spans.append((entry.start / settings.sample_rate,
                      entry.start / settings.sample_rate + entry.frames / settings.sample_rate))
        silent += entry.frames == 0
        del clip, samples
    return spans, silent


def mix_stems(timeline: Timeline, clips: list[Clip | None], settings: MixSettings, *, gain_db: float = 0.0,
              music: music_mod.Music | None = None, speakers: Sequence[str] | None = None,
              line_gains: dict[int, float] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """One stem per speaker (*speakers*, or those with lines in order of first line), then ``"music"``
    (with *music*): (name, samples).

    Each stem is the mix with only that speaker's lines (or only the music), placed
    by the same code and timeline with the gains the mix gave each line (*line_gains*,
    its :attr:`MixResult.line_gains`: levelling included), times the loudness gain the
    mix got (*gain_db*, its :attr:`MixResult.gain_db`): the stems sum to the mix before
    its limiter.  One stem is in memory at a time.
    """
    total = timeline.frames
    shape = (total,) if settings.channels == 1 else (total, 2)
    gain = np.float32(db_to_gain(gain_db))
    for speaker in speakers if speakers is not None else dict.fromkeys(e.speaker for e in timeline.lines):
        out = np.zeros(shape, dtype=np.float32)
        _place_lines(out, timeline, clips, settings, speaker=speaker, gains=line_gains)
        out *= gain
        yield speaker, out
        del out
    if music is not None:
        out = np.zeros(shape, dtype=np.float32)
        music_mod.add(out, timeline, music)
        out *= gain
        yield "music", out


class _Levels:
    """Each placed line's K-weighted measurement and gain, and the levelling decided from them."""

    def __init__(self, settings: MixSettings, frames: int) -> None:
        self.settings, self.frames = settings, frames
        self.edges = loudness.sub_block_edges(frames, settings.sample_rate)
        self.lines: list[tuple[Entry, loudness.LineLevel, float]] = []
        self.extra: dict[object, float] = {}   # per line or speaker: what it gets back of the limiter's take
        self.music = False                     # music was added: the mix's energies are not its lines' alone

    def measure(self, entry: Entry, samples: np.ndarray) -> float:
        """Measure one line about to be placed; the gain (dB) to place it with."""
        gain = entry.voice.gain if entry.voice is not None else 0.0
        if samples.shape[0] == 0:
            return gain
        level = loudness.measure_line(samples, self.settings.sample_rate, entry.start, self.edges, self.frames)
        if self.settings.leveling == "line":
            gain += level_gain(level.loudness - line_volume(entry))
        self.lines.append((entry, level, gain))
        return gain

    def by_speaker(self, out: np.ndarray) -> None:
        """With speaker levelling: bring each speaker's lines, together, to the common level (in place)."""
        if self.settings.leveling != "speaker":
            return
        speakers: dict[str, list[np.ndarray]] = {}
        for entry, level, _gain in self.lines:
            own = level.blocks / db_to_gain(line_volume(entry)) ** 2
            speakers.setdefault(speaker_key(entry.speaker), []).append(own)
        gains = {key: level_gain(loudness.gated_loudness(np.concatenate(blocks)))
                 for key, blocks in speakers.items()}
        for i, (entry, level, gain) in enumerate(self.lines):
            extra = gains[speaker_key(entry.speaker)]
            out[entry.start:entry.end] *= np.float32(db_to_gain(extra))
            self.lines[i] = (entry, level, gain + extra)

    def common_gain(self) -> float:
        """Without a target: the gain (dB) that gives the levelled speech the loudness it had unlevelled."""
        if self.settings.leveling == "off" or not self.lines:
            return 0.0
        before = [level.blocks * db_to_gain(entry.voice.gain if entry.voice else 0.0) ** 2
                  for entry, level, _gain in self.lines]
        after = [level.blocks * db_to_gain(gain) ** 2 for _entry, level, gain in self.lines]
        difference = loudness.gated_loudness(np.concatenate(before)) - loudness.gated_loudness(np.concatenate(after))
        return difference if math.isfinite(difference) else 0.0

    def compensate(self, normalizer: loudness.Normalizer, gain: float) -> bool:
        """Raise the lines (or speakers) the limiter takes more from than from the others, in place.

        The limiter takes most from the speech with the highest peaks, which undoes the
        levelling.  Each levelled line (or speaker) gets an extra gain that makes what comes
        out of the limiter level again: its loss beyond the average.  Raising a line makes
        the limiter take more from it, so this is repeated (the extra gain converges, as the
        loss grows by less than the gain).  False when within 0.05 dB (or no levelling)."""
        limited = normalizer.limited_energies(gain)
        if self.settings.leveling == "off" or limited is None:
            return False
        plain, limited = self.energies().sum(axis=1) * db_to_gain(gain) ** 2, limited.sum(axis=1)
        sums: dict[object, list[float]] = {}
        for i, (entry, level, _gain) in enumerate(self.lines):
            rows = slice(level.first, level.first + level.subs.shape[0])
            unit = sums.setdefault(self._unit(i, entry), [0.0, 0.0])
            unit[0] += float(plain[rows].sum())
            unit[1] += float(limited[rows].sum())
        wanted = compensation(sums, self.extra)
        if wanted is None:
            return False
        self.set_extra(normalizer, wanted)
        return True

    def set_extra(self, normalizer: loudness.Normalizer, wanted: dict[object, float]) -> None:
        """Give each line (or speaker) the extra gain *wanted* (dB), in the samples and in its gain."""
        for i, (entry, level, line_gain) in enumerate(self.lines):
            unit = self._unit(i, entry)
            step = wanted.get(unit, 0.0) - self.extra.get(unit, 0.0)
            if step:
                normalizer.gains.rescale(entry.start, entry.end, db_to_gain(step))
                self.lines[i] = (entry, level, line_gain + step)
        self.extra = wanted

    def _unit(self, i: int, entry: Entry) -> object:
        """What is levelled as one: the line, or its speaker."""
        return speaker_key(entry.speaker) if self.settings.leveling == "speaker" else i

    def energies(self) -> np.ndarray:
        """The K-weighted energy of every 100 ms sub-block of the mix, per channel, from its lines."""
        rows = self.edges.shape[0] - 1
        channels = self.settings.channels
        energies = np.zeros((rows, channels))
        for entry, level, gain in self.lines:
            pan = pan_gains(entry.voice.pan or 0.0) if channels == 2 and entry.voice is not None else (1.0,)
            subs = level.subs[:max(0, rows - level.first)] * db_to_gain(gain) ** 2
            for c, weight in enumerate(pan):
                energies[level.first:level.first + subs.shape[0], c] += subs * weight ** 2
        return energies


def compensation(sums: dict[object, list[float]], extra: dict[object, float]) -> dict[object, float] | None:
    """The extra gain (dB) per line or speaker that gives back what the limiter takes from it beyond the
    average, from each one's [plain, limited] energies; None when every one is within 0.05 dB of *extra*
    (what it has) or nothing sounds.  Both mixers compensate with it."""
    total = [sum(u[0] for u in sums.values()), sum(u[1] for u in sums.values())]
    if not sums or min(total) <= 0:
        return None
    average = 10 * math.log10(total[0] / total[1])
    wanted = {k: max(-MAX_COMPENSATION_DB, min(MAX_COMPENSATION_DB, 10 * math.log10(a / b) - average))
              if a > 0 and b > 0 else 0.0 for k, (a, b) in sums.items()}
    if max(abs(wanted[k] - extra.get(k, 0.0)) for k in wanted) < 0.05:
        return None
    return wanted


def line_volume(entry: Entry) -> float:
    """The level (dB) the line was meant to have against its voice's others: its voice's ``volume``
    (a ``volume=`` in the spec, or a delivery such as ``[whispering]``), which levelling keeps."""
    return entry.voice.volume if entry.voice is not None else 0.0


def level_gain(measured: float) -> float:
    """The gain (dB) that brings a line or speaker measured at *measured* LUFS to the common level."""
    if not math.isfinite(measured):
        return 0.0
    return max(-_MAX_LEVEL_DB, min(_MAX_LEVEL_DB, LEVEL_REFERENCE - measured))


def _finish(result: MixResult, settings: MixSettings, levels: _Levels) -> None:
    """Normalize (or, without a target, give the common gain and limit) and round *result*, in place."""
    out = result.samples
    from_lines = bool(levels.lines) and not levels.music
    normalizer = loudness.Normalizer(out, result.sample_rate, settings.lufs, settings.true_peak,
                                     gain_db=levels.common_gain(),
                                     energies=levels.energies() if from_lines else None)
    gain, got = normalizer.search()
    for _ in range(COMPENSATE_ROUNDS if normalizer.gains.meter is not None and from_lines else 0):
        kept = dict(levels.extra)
        if not levels.compensate(normalizer, gain):
            break
        normalizer.set_energies(levels.energies())
        before, (gain, got) = got, normalizer.search()
        if got is not None and before is not None and got < min(settings.lufs or 0.0, before) - 0.05:
            levels.set_extra(normalizer, kept)       # the target first: at the limiter's limit, levelling gives way
            normalizer.set_energies(levels.energies())
            gain, got = normalizer.search()
            break
    reached = normalizer.finish(gain, got, settings.allow_quieter)
    if reached.loudest is not None:
        raise LoudnessError(f"loudness target {settings.lufs:g} LUFS is out of reach: {reached.notes[0]} "
                            f"(ask for {math.floor(reached.loudest * 10) / 10:g} LUFS or less, "
                            f"or allow a quieter result with --allow-quieter)")
    result.loudness, result.true_peak, result.gain_db = reached.loudness, reached.true_peak, reached.gain_db
    result.notes.extend(reached.notes)
    if settings.bit_depth is not None:
        quantize(out, settings.bit_depth)
    for block in range(0, out.shape[0], _BLOCK):
        np.clip(out[block:block + _BLOCK], -1.0, 1.0, out=out[block:block + _BLOCK])


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
