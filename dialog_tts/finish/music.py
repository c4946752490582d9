"""Music under the dialog: a bed with sidechain ducking, and intro and outro clips.  Pure NumPy, no I/O.

The mixer takes them as tracks (:func:`pieces`), measured and limited with the lines.

The bed arrives as blocks (a reader in :mod:`dialog_tts.io.musicfiles` opens the file
and hands over blocks at the output rate and channel count), so that a bed of
any length costs one block of memory.  It is looped (each seam crossfaded with
equal-power ramps) or trimmed to the span the timeline's MUSIC entry gives,
faded in and out, and multiplied by a gain that dips by ``duck_db`` while
anyone speaks.  The ducking envelope comes from the timeline's spoken lines:
the duck starts ``attack`` seconds before a line and lifts over ``release``
seconds after it, both raised-cosine ramps in dB, so that the change is heard
as a fade and never as a click.  Between two lines closer than attack plus
release the bed stays down.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from dialog_tts.finish.timeline import Kind, Timeline
from dialog_tts.io.audio import Clip, resample

#: Opens the bed from its start: an iterator of float32 blocks at the output rate, shaped like the mix.
BlockSource = Callable[[], Iterator[np.ndarray]]
PIECE = 1 << 20      # frames of the bed the mixer takes as one track


@dataclass(frozen=True)
class Bed:
    """A music bed: where its blocks come from and how it sits under the speech."""

    blocks: BlockSource
    frames: int                  # frames of one pass at the output rate
    level_db: float = -12.0      # gain of the bed while nobody speaks
    duck_db: float = 12.0        # how much lower it goes while anyone speaks
    attack: float = 0.3          # seconds: the duck fades in before a line starts
    release: float = 0.8         # seconds: ... and lifts after it ends
    fade_in: float = 1.0         # seconds at the bed's start
    fade_out: float = 2.0        # seconds at the bed's end
    crossfade: float = 1.0       # seconds of each loop seam

    def __post_init__(self) -> None:
        if self.duck_db < 0 or min(self.attack, self.release, self.fade_in, self.fade_out, self.crossfade) < 0:
            raise ValueError("ducking depth, times and fades must not be negative")


@dataclass(frozen=True)
class Music:
    """Everything the mixer adds besides the lines: the bed, the intro and the outro (each optional)."""

    bed: Bed | None = None
    intro: Clip | None = None
    outro: Clip | None = None


def _ramp(x: np.ndarray) -> np.ndarray:
    """Raised cosine from 0 (x <= 0) to 1 (x >= 1): zero slope at both ends."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def duck_amount(spans: np.ndarray, start: int, stop: int, attack: int, release: int) -> np.ndarray:
    """How far ducked (0..1) each frame of start..stop-1 is, given speech *spans* (sorted (n, 2) frames)."""
    t = np.arange(start, stop, dtype=np.float64)
    amount = np.zeros(stop - start)
    if spans.shape[0] == 0:
        return amount
    first = int(np.searchsorted(spans[:, 1] + release, start, side="right"))
    last = int(np.searchsorted(spans[:, 0] - attack, stop, side="left"))
    for s, e in spans[first:last]:
        up = _ramp((t - (s - attack)) / attack) if attack else (t >= s).astype(np.float64)
        down = _ramp(((e + release) - t) / release) if release else (t < e).astype(np.float64)
        np.maximum(amount, np.minimum(up, down), out=amount)
    return amount


def bed_gain(bed: Bed, spans: np.ndarray, rate: int, span: tuple[int, int], start: int, stop: int) -> np.ndarray:
    """The bed's gain for output frames start..stop-1: level, ducking and the fades at *span*'s ends."""
    duck = duck_amount(spans, start, stop, round(bed.attack * rate), round(bed.release * rate))
    gain = np.power(10.0, (bed.level_db - bed.duck_db * duck) / 20.0)
    t = np.arange(start, stop, dtype=np.float64)
    fade_in, fade_out = round(bed.fade_in * rate), round(bed.fade_out * rate)
    if fade_in:
        gain *= _ramp((t - span[0] + 0.5) / fade_in)
    if fade_out:
        gain *= _ramp((span[1] - t - 0.5) / fade_out)
    return gain.astype(np.float32)


class _Reader:
    """Reads exact numbers of frames from an iterator of blocks, one block held at a time."""

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self.blocks = blocks
        self.rest: np.ndarray | None = None

    def pieces(self, n: int) -> Iterator[np.ndarray]:
        """Up to *n* frames, as the blocks come (fewer if the source ends)."""
        while n > 0:
            if self.rest is None or self.rest.shape[0] == 0:
                self.rest = next(self.blocks, None)
                if self.rest is None:
                    return
            piece, self.rest = self.rest[:n], self.rest[n:]
            n -= piece.shape[0]
            yield piece

    def take(self, n: int) -> np.ndarray | None:
        got = list(self.pieces(n))
        return np.concatenate(got) if got else None


def looped(bed: Bed, total: int, rate: int) -> Iterator[np.ndarray]:
    """The bed's blocks for *total* frames: trimmed, or looped with equal-power crossfaded seams."""
    frames = max(1, bed.frames)
    seam = 0 if frames >= total else min(round(bed.crossfade * rate), frames // 2)
    left = total
    reader = _Reader(bed.blocks())
    body = frames - seam                       # the first pass: all but its tail
    while left > 0:
        got = 0
        for piece in reader.pieces(min(body, left)):
            got += piece.shape[0]
            yield piece
        left -= got
        if left <= 0:
            return
        if got == 0 and seam == 0:
            raise ValueError("the music bed holds no audio")
        tail = reader.take(seam) if seam else None
        reader = _Reader(bed.blocks())
        if tail is not None:
            joined = _crossfade(tail, reader.take(tail.shape[0]))[:left]
            left -= joined.shape[0]
            yield joined
        body = frames - 2 * seam


def _crossfade(tail: np.ndarray, head: np.ndarray | None) -> np.ndarray:
    """Equal-power crossfade (cos/sin ramps: constant power for uncorrelated music) of *tail* into *head*."""
    if head is None:
        return tail
    n = min(tail.shape[0], head.shape[0])
    theta = (np.arange(n) + 0.5) / n * (math.pi / 2)
    fade_out, fade_in = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
    if tail.ndim == 2:
        fade_out, fade_in = fade_out[:, None], fade_in[:, None]
    return tail[:n] * fade_out + head[:n] * fade_in


def speech_spans(timeline: Timeline) -> np.ndarray:
    """(start, end) frames of every spoken line, sorted, as an (n, 2) array."""
    spans = [(e.start, e.end) for e in timeline.lines if e.frames]
    return np.array(spans, dtype=np.float64).reshape(-1, 2)


def pieces(timeline: Timeline, music: Music, channels: int,
           chunk: int = PIECE) -> Iterator[tuple[int, np.ndarray]]:
    """(first frame, samples in the mix's *channels*) of the intro, the outro and the ducked bed,
    where *timeline* places them, in timeline order; the bed in pieces of at most *chunk* frames
    (the mixer takes each as a track: memory stays one piece however long the bed)."""
    rate, ndim = timeline.sample_rate, 1 if channels == 1 else 2
    for entry in timeline.entries:
        clip = music.intro if entry.kind is Kind.INTRO else music.outro if entry.kind is Kind.OUTRO else None
        if clip is not None:
            yield entry.start, as_channels(resample(clip.samples, clip.sample_rate, rate), ndim)[:entry.frames]
        if entry.kind is Kind.MUSIC and music.bed is not None:
            yield from _bed_pieces(timeline, music.bed, (entry.start, entry.end), ndim, chunk)


def _bed_pieces(timeline: Timeline, bed: Bed, span: tuple[int, int], ndim: int,
                chunk: int) -> Iterator[tuple[int, np.ndarray]]:
    spans, rate = speech_spans(timeline), timeline.sample_rate
    pos = start = span[0]
    held: list[np.ndarray] = []
    for block in looped(bed, span[1] - span[0], rate):
        while block.shape[0]:
            n = min(block.shape[0], chunk - (pos - start))
            gain = bed_gain(bed, spans, rate, span, pos, pos + n)
            held.append(as_channels(block[:n], ndim) * (gain if ndim == 1 else gain[:, None]))
            block, pos = block[n:], pos + n
            if pos - start == chunk:
                yield start, np.concatenate(held)
                held, start = [], pos
    if held:
        yield start, np.concatenate(held)


def as_channels(samples: np.ndarray, ndim: int) -> np.ndarray:
    """*samples* as mono (ndim 1) or stereo (ndim 2): stereo is averaged, mono doubled."""
    if samples.ndim == ndim and (ndim == 1 or samples.shape[1] == 2):
        return samples
    mono = samples if samples.ndim == 1 else samples.mean(axis=1, dtype=np.float32)
    return mono if ndim == 1 else np.repeat(mono[:, None], 2, axis=1)
