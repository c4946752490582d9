"""The mixer: every render is mixed here, in blocks, a book of any length in constant memory.

Its unit is the source, not the mix: a **line** (a mono clip, placed with its gain and pan) or a
**track** (audio already in the mix's channels: the intro, the outro, the music bed with its
ducking, or a whole buffer given to :func:`loudness.normalize_loudness`).

- **Analysis** (:meth:`BlockMix.add`, :meth:`BlockMix.add_track`, as each source arrives): a
  line is levelled from its own K-weighted measurement (:func:`loudness.measure_placed`), and
  each source's K-weighted energy and peak are summed per group of :data:`loudness.GROUP` frames
  on the mix's grid.  K-weighting is linear, so the sources' energies, placed with their gains
  and pans, are the mix's gated loudness (exactly, where sources do not overlap; the filter's
  20 ms ring-out is counted).  A source's true peaks are read once, on its own
  (:func:`loudness.source_peaks`, :meth:`BlockMix.own`: thread-safe, so callers take it on
  the threads that prepare the lines), and kept in the audio cache keyed by its samples (a
  :class:`PeakStore`), so a re-render reads none of them again; placed on the mix's grid they
  bound its true peak group by group.  The store also keeps the source's measurement and group
  peaks with where it was placed (:func:`loudness.placement`): a re-render that places it alike
  reads them back.  The samples and the group figures go to a temporary spill file (unlinked at
  once, so nothing is ever left behind); memory keeps a few numbers a source.
- **Gain** (:meth:`BlockMix.finish`): with a target, the secant search (:func:`loudness.search_gain`)
  for the gain whose limited result reaches it.  The limiter's take at a gain is read from the
  group figures: each limited group's energy times the square of its limiter gain.  Without a
  target, the common gain that gives the levelled speech the loudness it had unlevelled.
- **Render** (:meth:`BlockMix.blocks`): sources are read back and mixed island by island
  (sources closer than the limiter's reach form one island), each island limited by the
  look-ahead limiter from its sources' group true peaks and read again where the limiter
  worked or sources overlap (:func:`loudness.hold_ceiling`), and the result comes out in blocks,
  in order.
  :meth:`BlockMix.stem` gives the mix of some sources alone, with the mix's gains, unlimited.

:func:`stream` does all three in one pass for ``--out -`` and :meth:`Renderer.stream`: the
gain is predicted rather than searched (levelled lines sit at -20 LUFS, so the target's gain
is known before the first line), and each island is emitted as soon as the next line shows
that nothing more will join it.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from dataclasses import dataclass, field, replace
from typing import IO, BinaryIO, Callable, Iterable, Iterator, Protocol, cast

import numpy as np
from blake3 import blake3

from dialog_tts.errors import LoudnessError, OutputError
from dialog_tts.finish import loudness
from dialog_tts.finish.timeline import Entry, Kind
from dialog_tts.io.audio import db_to_gain
from dialog_tts.render.specs import MixSettings
from dialog_tts.script.parse import speaker_key

STREAM_BLOCK = 4800 * 4            # frames per block out of a stream (0.8 s at 24 kHz)
_FILE_BLOCK = 1 << 20             # frames per block out of a render (audio.WRITE_BLOCK: the same dither)
_BIN_FIRST, _BIN_STEP = -200.0, 0.01
PEAK_BINS = np.arange(_BIN_FIRST, 40.0, _BIN_STEP)   # dB: the edges of the histogram of group peaks
_TOP_PERCENTILE = 99.5             # the largest gain is counted from this percentile of the sources' peaks
_MAX_PUSH_DB = 12.0               # ... with the limiter taking at most this much off those peaks
_RENDER_CHUNK = 1 << 18           # frames of an island mixed at once (a multiple of loudness.GROUP)
_WINDOW = 1 << 16                 # groups of an island limited at once (about 87 s at 24 kHz)
_WINDOW_MARGIN = 2048             # groups on either side of a window that its limiter and hold also read
PEAKS_VERSION = "2"               # names the figures kept in a PeakStore: a new reading needs a new one
SPOOL = 8 << 20                   # bytes of spilled sources held in memory before they go to a file
LEVEL_REFERENCE = -20.0           # LUFS lines are levelled to while mixing (the final gain moves them all)
_MAX_LEVEL_DB = 18.0              # levelling moves a line or a speaker by at most this much either way
COMPENSATE_ROUNDS = 4             # rounds of giving back what the limiter takes from some lines more than others
MAX_COMPENSATION_DB = 6.0         # ... at most this much


class PeakStore(Protocol):
    """Where a source's own true peaks are kept between renders (the audio cache: :class:`AudioCache`)."""

    def get_blob(self, key: str) -> bytes | None: ...

    def put_blob(self, key: str, data: bytes) -> None: ...


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power pan law: left/right gains with L² + R² = 1."""
    theta = (max(-1.0, min(1.0, pan)) + 1.0) * math.pi / 4.0
    return math.cos(theta), math.sin(theta)


def line_volume(entry: Entry) -> float:
    """The level (dB) the line was meant to have against its voice's others: its voice's ``volume``
    (a ``volume=`` in the spec, or a delivery such as ``[whispering]``), which levelling keeps."""
    return entry.voice.volume if entry.voice is not None else 0.0


def level_gain(measured: float) -> float:
    """The gain (dB) that brings a line or speaker measured at *measured* LUFS to the common level."""
    if not math.isfinite(measured):
        return 0.0
    return max(-_MAX_LEVEL_DB, min(_MAX_LEVEL_DB, LEVEL_REFERENCE - measured))


def compensation(sums: dict[object, list[float]], extra: dict[object, float]) -> dict[object, float] | None:
    """The extra gain (dB) per line or speaker that gives back what the limiter takes from it beyond the
    average, from each one's [plain, limited] energies; None when every one is within 0.05 dB of *extra*
    (what it has) or nothing sounds."""
    total = [sum(u[0] for u in sums.values()), sum(u[1] for u in sums.values())]
    if not sums or min(total) <= 0:
        return None
    average = 10 * math.log10(total[0] / total[1])
    wanted = {k: max(-MAX_COMPENSATION_DB, min(MAX_COMPENSATION_DB, 10 * math.log10(a / b) - average))
              if a > 0 and b > 0 else 0.0 for k, (a, b) in sums.items()}
    if max(abs(wanted[k] - extra.get(k, 0.0)) for k in wanted) < 0.05:
        return None
    return wanted


class Spill:
    """A temporary file that float32 arrays are appended to once and read back from.

    It is held in memory up to :data:`SPOOL` bytes (a short render never touches the disk), then
    moved to a file that is unlinked as soon as it is created (``tempfile.SpooledTemporaryFile``),
    so an interrupted or crashed render leaves nothing behind."""

    def __init__(self, folder: str | None = None) -> None:
        self._folder = folder or tempfile.gettempdir()
        with self._failing():
            self._file: IO[bytes] = tempfile.SpooledTemporaryFile(SPOOL, prefix=".dialog-tts-spill-", dir=folder)
        self._end = 0

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """An OSError (a full disk, a file too large) as one OutputError naming the folder."""
        try:
            yield
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise OutputError(f"cannot write the mix's temporary file here: {reason}", path=self._folder) from None

    def put(self, array: np.ndarray) -> int:
        """Append *array* (float32); its offset in items."""
        data = np.ascontiguousarray(array, dtype=np.float32)
        with self._failing():
            if self._end + data.nbytes > SPOOL:     # to the file first: the spool would hold a copy of *array*
                cast("tempfile.SpooledTemporaryFile[bytes]", self._file).rollover()
            self._file.seek(self._end)
            self._file.write(data.data.cast("B"))     # no bytes copy of a long line
        offset, self._end = self._end // 4, self._end + data.nbytes
        return offset

    def get(self, offset: int, count: int) -> np.ndarray:
        """*count* float32 items from *offset*."""
        out = np.empty(count, np.float32)
        with self._failing():
            self._file.seek(offset * 4)
            got = cast(BinaryIO, self._file).readinto(out.data.cast("B"))     # type: ignore[attr-defined]
            if got != out.nbytes:
                raise OSError(f"the spill file ended early ({got} of {out.nbytes} bytes)")
        return out

    def close(self) -> None:
        self._file.close()


@dataclass
class _Line:
    """What the block mixer keeps of a source (a line or a track) between analysis and render."""

    entry: Entry
    gain_db: float            # levelled
    weights: tuple[float, ...]  # per channel: pan gains (a line in stereo) or 1 (mono, or a track)
    level: loudness.LineLevel
    peak: float               # the highest group true peak (linear, unit gain)
    g0: int                   # its first group on the mix's grid
    groups: int               # its groups (ring-out included)
    width: int = 1            # channels of its samples (a track in a stereo mix: 2)
    at: int = -1              # where its samples are in the spill (-1: held in *held*)
    held: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None   # samples, group peaks, group energies

    @property
    def gain(self) -> float:
        return db_to_gain(self.gain_db)

    @property
    def top_weight(self) -> float:
        return max(self.weights)

    @property
    def track(self) -> bool:
        return self.entry.voice is None


@dataclass(frozen=True)
class Own:
    """A source's own true peaks, one per :data:`loudness.PEAK_STEP` frames, and what the mixer's store
    keeps for its samples (under *key*; None where there is no store, or nothing whole is kept):
    :meth:`BlockMix.own`."""

    peaks: np.ndarray
    key: str | None = None
    kept: _Kept | None = None


@dataclass
class Figures:
    """What a mix reached: its length, loudness and true peak, the gains, notes."""

    frames: int
    loudness: float | None = None
    true_peak: float | None = None
    gain_db: float = 0.0
    line_gains: dict[int, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def binned(values: np.ndarray) -> np.ndarray:
    """``np.histogram(values, PEAK_BINS)[0]``, the same counts (the last bin holding its right edge, values
    outside the edges left out).  Each value's bin is the last edge at or under it: guessed from the edges'
    even spacing, then moved to the edge that the comparisons with the edges themselves give (the edges of
    ``np.arange`` are not exactly even, and the guess can be one off near an edge).  np.histogram sorts the
    values and searches each of the 24,000 edges in them, and a binary search of each value in the edges
    takes 15 steps of scattered reads; this takes two."""
    edges = PEAK_BINS
    values = np.asarray(values).ravel()
    values = values[(values >= edges[0]) & (values <= edges[-1])].astype(np.float64)
    top = edges.shape[0] - 1
    at = np.clip(np.floor((values - _BIN_FIRST) / _BIN_STEP), 0, top).astype(np.int64)
    for _step in range(2):       # each step moves a guess by at most one edge, towards the right one
        at -= edges[at] > values
        after = np.minimum(at + 1, top)
        at += (after > at) & (edges[after] <= values)
    np.minimum(at, top - 1, out=at)
    return np.bincount(at, minlength=top)


class BlockMix:
    """A mix built source by source: :meth:`add` each line in timeline order and :meth:`add_track`
    the music, then :meth:`finish` (the gain), then :meth:`blocks` (the audio, in order) and
    :meth:`stem` (some sources alone).  See the module's docstring."""

    def __init__(self, settings: MixSettings, *, folder: str | None = None, spill: bool = True,
                 peaks: PeakStore | None = None) -> None:
        self.settings = settings
        self.store = peaks        # keeps each source's own true peaks, so a re-render reads none again
        self.rate = settings.sample_rate
        self.lines: list[_Line] = []
        self.tracks: list[_Line] = []
        self.spill = Spill(folder) if spill else None
        self.ceiling = loudness.ceiling_gain(settings.true_peak)
        self.reach = loudness.limiter_reach(self.rate)
        self.gain_db = 0.0
        self.frames = 0
        self.peak = 0.0          # the highest true peak rendered (linear), from the sources' group peaks
        self.taken: list[tuple[int, np.ndarray, tuple[float, ...]]] = []   # what the limiter took, by rows
        self.histogram = np.zeros(PEAK_BINS.shape[0] - 1, np.int64)   # the placed sources' group peaks, in dB

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()

    def __enter__(self) -> BlockMix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sources(self) -> list[_Line]:
        """The lines, then the tracks (positions in this list key the search's readings)."""
        return self.lines + self.tracks

    # ------------------------------------------------------------ analysis
    def add(self, entry: Entry, samples: np.ndarray, own: Own | None = None) -> _Line | None:
        """Analyse the next placed line (its prepared mono samples, as :func:`mix.prepare` gives them);
        *own*: :meth:`own` of these samples, where it was taken already (on another thread)."""
        if samples.shape[0] == 0 or entry.voice is None:
            return None
        line, peaks = self._analysed(entry, samples, entry.voice.gain, self._weights(entry), own)
        if self.settings.leveling == "line":
            line.gain_db += level_gain(line.level.loudness - line_volume(entry))
        self._count_peaks(line, peaks)
        self.lines.append(line)
        return line

    def add_track(self, start: int, samples: np.ndarray) -> _Line | None:
        """Analyse a track: audio in the mix's channels (``(n,)`` mono, ``(n, 2)`` stereo) from frame
        *start*, mixed at unit gain, never levelled (the intro, the outro, a piece of the music bed)."""
        if samples.shape[0] == 0:
            return None
        if samples.shape[1:] != (() if self.settings.channels == 1 else (2,)):
            raise ValueError(f"a track of shape {samples.shape} for {self.settings.channels} channel(s)")
        track, peaks = self._analysed(Entry(Kind.MUSIC, start, samples.shape[0], 0), samples, 0.0, (1.0,))
        self._count_peaks(track, peaks)
        self.tracks.append(track)
        return track

    def _analysed(self, entry: Entry, samples: np.ndarray, gain_db: float,
                  weights: tuple[float, ...], own: Own | None = None) -> tuple[_Line, np.ndarray]:
        level, energies, peaks = self._readings(samples, entry.start, own or self.own(samples))
        width = 1 if samples.ndim == 1 else samples.shape[1]
        line = _Line(entry, gain_db, weights, level, float(peaks.max()), entry.start // loudness.GROUP,
                     energies.shape[0], width)
        if self.spill is not None:
            line.at = self.spill.put(samples)
            self.spill.put(peaks)
            self.spill.put(energies)
        else:
            line.held = (samples, peaks, energies)
        return line, peaks

    def own(self, samples: np.ndarray) -> Own:
        """A source's own true peaks, wherever it is placed (:func:`loudness.source_peaks`), and what the
        store keeps for these samples (keyed by their digest), read from it where it has them.  It
        touches nothing of this mix but the store (which locks), so the sources' readings, the costly
        part of the analysis, can be taken on several threads, ahead of :meth:`add`: the same figures."""
        tail = loudness.tail_frames(self.rate)
        steps = -(-(samples.shape[0] + tail) // loudness.PEAK_STEP)
        key, kept = None, None
        if self.store is not None:     # BLAKE3, not SHA-256: see uptodate._identity
            digest = blake3(f"{PEAKS_VERSION}:{self.rate}:{samples.shape}".encode())
            digest.update(np.ascontiguousarray(samples, dtype=np.float32).view(np.uint8).data)
            key = "peaks:" + digest.hexdigest()
            kept = _Kept.read(self.store.get_blob(key), steps)
        peaks = kept.own if kept is not None else loudness.source_peaks(samples, self.rate, tail)
        return Own(peaks, key, kept)

    def _readings(self, samples: np.ndarray, start: int,
                  own: Own) -> tuple[loudness.LineLevel, np.ndarray, np.ndarray]:
        """(level, group energies, group peaks) of a source placed at frame *start*: its K-weighted
        measurement (:func:`loudness.measure_placed`), each group's peak raised to the source's own true
        peaks (*own*, :meth:`own`).  Where the store keeps these samples' figures from a render that
        placed them alike (:func:`loudness.placement`), those; what is read now is kept there.  In
        chunks: a source of any length costs a few MB beside its samples."""
        place = loudness.placement(samples.shape[0], self.rate, start)
        kept = own.kept
        if kept is not None and kept.place == place:
            return loudness.LineLevel(kept.blocks, loudness.sub_block_of(start, self.rate), kept.subs), \
                kept.energies, kept.peaks
        level, energies, peaks = loudness.measure_placed(samples, self.rate, start)
        np.maximum(peaks, loudness.placed_peaks(own.peaks, start, peaks.shape[0]), out=peaks)
        if self.store is not None and own.key is not None:
            self.store.put_blob(own.key, _Kept(own.peaks, place, level.blocks, level.subs, energies, peaks).data())
        return level, energies, peaks

    def _count_peaks(self, line: _Line, peaks: np.ndarray) -> None:
        with np.errstate(divide="ignore"):
            db = 20.0 * np.log10(peaks[peaks > 0] * (line.gain * line.top_weight))
        self.histogram += binned(db)

    def top_peak(self) -> float:
        """The 99.5th percentile of the sounding groups' peaks (within 60 dB of the highest), from a
        histogram kept as sources arrive (0.01 dB)."""
        filled = np.flatnonzero(self.histogram)
        if not filled.size:
            return 0.0
        sounding = self.histogram[max(0, filled[-1] - 6000):]
        rank = np.searchsorted(np.cumsum(sounding), _TOP_PERCENTILE / 100 * sounding.sum())
        return db_to_gain(float(PEAK_BINS[max(0, filled[-1] - 6000) + rank + 1]))

    def _weights(self, entry: Entry) -> tuple[float, ...]:
        return pan_gains(entry.voice.pan or 0.0) if self.settings.channels == 2 and entry.voice else (1.0,)

    def parts(self, line: _Line) -> tuple[np.ndarray, np.ndarray]:
        """(group true peaks, group energies) of *line*, from memory or the spill."""
        if line.held is not None:
            parts = line.held[1], line.held[2]
        else:
            assert self.spill is not None
            n, g = line.entry.frames * line.width, line.groups
            data = self.spill.get(line.at + n, 2 * g)
            parts = data[:g], data[g:]
        return parts

    def samples(self, line: _Line, a: int, b: int) -> np.ndarray:
        """Frames a..b-1 of *line* (clipped to it), from memory or the spill."""
        a, b = max(0, a), max(0, min(line.entry.frames, b))
        shape = () if line.width == 1 else (line.width,)
        if b <= a:
            return np.zeros((0, *shape), np.float32)
        if line.held is not None:
            return line.held[0][a:b]
        assert self.spill is not None
        return self.spill.get(line.at + a * line.width, (b - a) * line.width).reshape(-1, *shape)

    # ------------------------------------------------------------ gain
    def finish(self, frames: int) -> Figures:
        """Decide the gain for a mix of *frames* frames (speaker levelling, target or common gain)."""
        self.frames = frames
        self._level_speakers()
        target = self.settings.lufs
        figures = Figures(frames)
        search = _Search(self, target, self._common_gain())
        if not self.sources or frames < 0.4 * self.rate or not math.isfinite(search.measured):
            self.gain_db = self._common_gain()
            if target is not None:
                figures.notes.append("audio shorter than 0.4 s: loudness not normalized" if frames < 0.4 * self.rate
                                     else "audio is silent: loudness not normalized")
        else:
            self.gain_db, figures.loudness = _decide(search)
            if figures.loudness is not None and target is not None and abs(figures.loudness - target) > 0.1:
                figures.notes.append(f"loudness reached {figures.loudness:.1f} LUFS, not {target:g}")
        figures.gain_db = self.gain_db
        figures.line_gains = {line.entry.index: line.gain_db for line in self.lines}
        return figures

    def _level_speakers(self) -> None:
        if self.settings.leveling != "speaker":
            return
        blocks: dict[str, list[np.ndarray]] = {}
        for line in self.lines:
            blocks.setdefault(speaker_key(line.entry.speaker), []).append(
                line.level.blocks / db_to_gain(line_volume(line.entry)) ** 2)
        gains = {key: level_gain(loudness.gated_loudness(np.concatenate(b))) for key, b in blocks.items()}
        for line in self.lines:
            line.gain_db += gains[speaker_key(line.entry.speaker)]

    def _common_gain(self) -> float:
        """Without a target: the gain that gives the levelled speech the loudness it had unlevelled."""
        if self.settings.leveling == "off" or not self.lines:
            return 0.0
        before = [ln.level.blocks * db_to_gain(ln.entry.voice.gain if ln.entry.voice else 0.0) ** 2
                  for ln in self.lines]
        after = [ln.level.blocks * ln.gain ** 2 for ln in self.lines]
        difference = loudness.gated_loudness(np.concatenate(before)) - loudness.gated_loudness(np.concatenate(after))
        return difference if math.isfinite(difference) else 0.0

    def energies(self) -> np.ndarray:
        """The K-weighted energy of every 100 ms sub-block of the mix, per channel, at unit mix gain."""
        energies = np.zeros((loudness.block_count(self.frames, self.rate) + 3, self.settings.channels))
        for line in self.sources:
            loudness.add_rows(energies, line.level.first, line.level.subs * line.gain ** 2, line.weights)
        return energies

    # ------------------------------------------------------------ render
    def blocks(self, block: int | None = None) -> Iterator[np.ndarray]:
        """The mix, in order, in blocks of *block* frames (the last one shorter), limited and clipped."""
        self.peak = 0.0
        self.taken.clear()
        out = _Out(self.settings.channels, block or _FILE_BLOCK)
        yield from _render(self, _ordered(self.sources), out, self.frames)

    def stem(self, sources: Iterable[_Line], block: int | None = None) -> Iterator[np.ndarray]:
        """*sources* alone, as long as the mix, with the gains the mix gave them and its gain, not
        limited (the stems of a mix sum to it before its limiter), clipped, in blocks."""
        out = _Out(self.settings.channels, block or _FILE_BLOCK)
        yield from _render(self, _ordered(sources), out, self.frames, limit=False)

    def rendered(self, figures: Figures) -> Figures:
        """*figures* with the loudness and true peak of what :meth:`blocks` (or :func:`stream`) gave:
        the sources' energies less what the limiter took, and their group peaks under its gain."""
        energies = self.energies()
        for first, rows, weights in self.taken:
            loudness.add_rows(energies, first, rows, weights)
        g = db_to_gain(self.gain_db)
        long_enough = self.sources and self.frames >= 0.4 * self.rate
        measured = loudness.loudness_of(energies * g * g, self.frames, self.rate) if long_enough else -math.inf
        # audio too short or silent to measure is reported as such: neither figure
        figures.loudness = measured if math.isfinite(measured) else None
        figures.true_peak = 20.0 * math.log10(self.peak) + loudness.REPORT_ALLOWANCE_DB \
            if self.peak > 0 and figures.loudness is not None else None
        return figures


def _ordered(sources: Iterable[_Line]) -> list[_Line]:
    return sorted(sources, key=lambda line: line.g0)


class _Search:
    """The gain (dB) whose limited mix reaches the target (or the fixed gain without one), and
    the extra gain per line (or speaker) that gives back what the limiter takes from it beyond
    the average."""

    def __init__(self, mix: BlockMix, target: float | None, fixed: float) -> None:
        self.mix, self.target, self.fixed = mix, target, fixed
        self.base = mix.energies()
        self.measured = loudness.loudness_of(self.base, mix.frames, mix.rate)
        high = mix.top_peak()
        self.top = (20 * math.log10(mix.ceiling / high) if high > 0 else 0.0) + _MAX_PUSH_DB
        self.taken: dict[int, float] = {}      # per source (by position): energy the limiter took, last reading
        self.rows: dict[int, loudness.GroupRows] = {}    # per source (by position): its groups' sub-blocks
        self.extra: dict[object, float] = {}

    def run(self) -> tuple[float, float | None]:
        """(gain, loudness there): the target's (:func:`loudness.search_gain`), or the fixed gain."""
        if self.target is None or not math.isfinite(self.measured):
            return self.fixed, None
        return loudness.search_gain(self.loudness_at, self.target - self.measured, self.top, self.target)

    def reached(self, gain: float, got: float | None) -> tuple[float, float | None]:
        """*gain*, or the largest one where the target is out of reach (a LoudnessError unless allowed)."""
        if self.target is None or got is None or got >= self.target - loudness.SHORTFALL_LU:
            return gain, got
        loudest = self.loudness_at(self.top)
        if not self.mix.settings.allow_quieter:
            raise LoudnessError(f"loudness target {self.target:g} LUFS is out of reach: holding the true peak "
                                f"under {self.mix.settings.true_peak:g} dBTP allows at most {loudest:.1f} LUFS "
                                f"(ask for {math.floor(loudest * 10) / 10:g} LUFS or less, "
                                f"or allow a quieter result with --allow-quieter)")
        return self.top, loudest

    def loudness_at(self, gain_db: float) -> float:
        """The mix's loudness at *gain_db*, with what the limiter takes from each source."""
        mix, g = self.mix, db_to_gain(gain_db)
        energies = self.base.copy()
        self.taken = {}
        for i, line in enumerate(mix.sources):
            factor = line.gain * line.top_weight * g
            if line.peak * factor <= mix.ceiling:
                continue
            peaks, group_energy = mix.parts(line)
            curve = _limit(peaks * np.float32(factor), mix.ceiling, mix.rate, mix.reach)
            taken = group_energy * (curve.astype(np.float64) ** 2 - 1.0)
            if i not in self.rows:
                self.rows[i] = loudness.GroupRows(line.g0, taken.shape[0], mix.rate)
            first, rows = self.rows[i].sums(taken)
            rows *= line.gain ** 2
            self.taken[i] = float(rows.sum())
            loudness.add_rows(energies, first, rows, line.weights)
        return loudness.loudness_of(energies * g * g, mix.frames, mix.rate)

    def compensate(self, gain_db: float) -> bool:
        """Raise the lines (or speakers) the limiter takes more from than from the others; False when
        every one is within 0.05 dB of what it has (or nothing is levelled)."""
        mix = self.mix
        if mix.settings.leveling == "off":
            return False
        self.loudness_at(gain_db)
        sums: dict[object, list[float]] = {}
        for i, line in enumerate(mix.lines):
            plain = float(line.level.subs.sum()) * line.gain ** 2
            unit = sums.setdefault(self._unit(i, line), [0.0, 0.0])
            unit[0] += plain
            unit[1] += plain + self.taken.get(i, 0.0)
        wanted = compensation(sums, self.extra)
        if wanted is None:
            return False
        self.set_extra(wanted)
        return True

    def set_extra(self, wanted: dict[object, float]) -> None:
        """Give each line (or speaker) the extra gain *wanted* (dB)."""
        for i, line in enumerate(self.mix.lines):
            unit = self._unit(i, line)
            line.gain_db += wanted.get(unit, 0.0) - self.extra.get(unit, 0.0)
        self.extra = dict(wanted)
        self.base = self.mix.energies()
        self.measured = loudness.loudness_of(self.base, self.mix.frames, self.mix.rate)

    def _unit(self, i: int, line: _Line) -> object:
        return speaker_key(line.entry.speaker) if self.mix.settings.leveling == "speaker" else i


def _decide(search: _Search) -> tuple[float, float | None]:
    """The gain, with the limiter's take given back to the lines it takes most from (at most four
    rounds; the target first; not with music, whose level is its own)."""
    gain, got = search.run()
    target = search.target
    for _ in range(COMPENSATE_ROUNDS if not search.mix.tracks else 0):
        kept = dict(search.extra)
        if not search.compensate(gain):
            break
        before, (gain, got) = got, search.run()
        if got is not None and before is not None and target is not None and got < min(target, before) - 0.05:
            search.set_extra(kept)          # at the limiter's limit, levelling gives way
            gain, got = search.run()
            break
    return search.reached(gain, got)


def _limit(peaks: np.ndarray, ceiling: float, rate: int, reach: int) -> np.ndarray:
    """The limiter's gain per group for *peaks* alone (silence around them), as long as *peaks*."""
    if peaks.size == 0 or float(peaks.max()) <= ceiling:
        return np.ones(peaks.shape, np.float32)
    pad = np.zeros(reach, np.float32)
    return loudness.limit_groups(np.concatenate([pad, peaks, pad]), ceiling, rate)[reach:reach + peaks.shape[0]]


class _Out:
    """Frames out in order, in blocks of *size* frames."""

    def __init__(self, channels: int, size: int) -> None:
        self.channels, self.size = channels, size
        self.parts: list[np.ndarray] = []
        self.pending = 0
        self.position = 0      # frames given out or pending

    def silence(self, frames: int) -> Iterator[np.ndarray]:
        while frames > 0:
            n = min(frames, self.size - self.pending)
            yield from self.put(np.zeros((n,) if self.channels == 1 else (n, 2), np.float32))
            frames -= n

    def put(self, frames: np.ndarray) -> Iterator[np.ndarray]:
        while frames.shape[0]:
            n = min(frames.shape[0], self.size - self.pending)
            self.parts.append(frames[:n])
            self.pending += n
            self.position += n
            frames = frames[n:]
            if self.pending == self.size:
                yield from self.flush()

    def flush(self) -> Iterator[np.ndarray]:
        if self.pending:
            block = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
            self.parts, self.pending = [], 0
            yield np.clip(block, -1.0, 1.0, out=block if block.flags.writeable else None)


def islands(lines: Iterable[_Line], reach: int) -> Iterator[list[_Line]]:
    """Sources grouped into islands: consecutive sources whose groups come within *reach* of each other."""
    island: list[_Line] = []
    end = -1
    for line in lines:
        if island and line.g0 - reach > end + reach:
            yield island
            island, end = [], -1
        island.append(line)
        end = max(end, line.g0 + line.groups)
    if island:
        yield island


@dataclass
class _Kept:
    """What a store keeps of a source (see :meth:`BlockMix._readings`): its own true peaks, then where
    it was placed and the figures read there."""

    own: np.ndarray         # float32, one per PEAK_STEP frames
    place: bytes            # loudness.placement
    blocks: np.ndarray      # float64: the level's gating blocks
    subs: np.ndarray        # float64: the level's sub-block energies
    energies: np.ndarray    # float32, one per group
    peaks: np.ndarray       # float32, one per group

    _TYPES = (np.float32, np.int64, np.float64, np.float64, np.float32, np.float32)

    def data(self) -> bytes:
        parts: list[np.ndarray] = [np.ascontiguousarray(self.own, np.float32), np.frombuffer(self.place, np.int64),
                 np.ascontiguousarray(self.blocks, np.float64), np.ascontiguousarray(self.subs, np.float64),
                 np.ascontiguousarray(self.energies, np.float32), np.ascontiguousarray(self.peaks, np.float32)]
        head = np.array([p.shape[0] for p in parts], np.int64)
        return b"".join([head.tobytes(), *(p.tobytes() for p in parts)])

    @classmethod
    def read(cls, data: bytes | None, steps: int) -> _Kept | None:
        """What *data* holds, if it is whole and holds *steps* own peaks (else None: read again)."""
        head_size = 8 * len(cls._TYPES)
        if data is None or len(data) < head_size:
            return None
        counts = np.frombuffer(data, np.int64, len(cls._TYPES))
        sizes = [int(n) * np.dtype(t).itemsize for n, t in zip(counts, cls._TYPES)]
        if counts[0] != steps or (counts < 0).any() or head_size + sum(sizes) != len(data):
            return None
        buffer, at, parts = bytearray(data), head_size, []
        for size, kind in zip(sizes, cls._TYPES):
            parts.append(np.frombuffer(buffer, kind, size // np.dtype(kind).itemsize, at))
            at += size
        return cls(parts[0], parts[1].tobytes(), *parts[2:])


def _render(mix: BlockMix, lines: Iterable[_Line], out: _Out, frames: int, *,
            limit: bool = True) -> Iterator[np.ndarray]:
    """Mix *lines* island by island into *out* and give out its blocks, then silence up to *frames*."""
    for island in islands(lines, mix.reach):
        yield from _emit(mix, island, out, frames, limit=limit)
    yield from out.silence(frames - out.position)
    yield from out.flush()


def _emit(mix: BlockMix, island: list[_Line], out: _Out, frames: int | None = None, *,
          limit: bool = True, release: bool = False) -> Iterator[np.ndarray]:
    """One island into *out* (cut at *frames*, the mix's end, where known), limited (or, without
    *limit*, at the mix's gain) a window at a time and mixed a chunk at a time; with *release*, its
    sources' samples are let go once placed (a stream)."""
    ga, groups = _span(mix, island)
    placed = _Placed(mix, island, ga)
    first = ga * loudness.GROUP
    skip = max(0, out.position - first)    # islands never overlap: only the first one can start before 0
    yield from out.silence(first + skip - out.position)
    # past its last source an island is silence: where the mix's end is not known yet, it stops there
    end = frames if frames is not None else max(line.entry.end for line in island)
    stop = min(groups * loudness.GROUP, max(skip, end - first))
    for w0 in range(0, groups, _WINDOW):
        w1 = min(groups, w0 + _WINDOW)
        a0, a1 = max(skip, w0 * loudness.GROUP), min(stop, w1 * loudness.GROUP)
        if a1 <= a0:
            continue
        render = _window(mix, placed, w0, w1) if limit else placed.at_gain(db_to_gain(mix.gain_db))
        for a in range(a0, a1, _RENDER_CHUNK):
            yield from out.put(render(a, min(a1, a + _RENDER_CHUNK)))
    if release:
        for line in island:
            line.held = None


def _span(mix: BlockMix, island: list[_Line]) -> tuple[int, int]:
    """(first group, groups) of an island: from the limiter's reach before its sources to after them."""
    ga = max(0, island[0].g0 - mix.reach)
    return ga, max(ln.g0 + ln.groups for ln in island) + mix.reach - ga


class _Placed:
    """An island's sources, placed from its first group *ga*: their audio, frames at a time."""

    def __init__(self, mix: BlockMix, island: list[_Line], ga: int) -> None:
        self.mix, self.island, self.ga = mix, island, ga
        origin = ga * loudness.GROUP
        self.starts = np.array([line.entry.start - origin for line in island], np.int64)
        self.ends = self.starts + np.array([line.entry.frames for line in island], np.int64)
        self.g0 = np.array([line.g0 - ga for line in island], np.int64)        # groups, ring-out included
        self.g1 = self.g0 + np.array([line.groups for line in island], np.int64)

    def touching(self, lo: int, hi: int) -> np.ndarray:
        """The sources whose groups reach into groups lo..hi-1 (from the island's first)."""
        return np.flatnonzero((self.g0 < hi) & (self.g1 > lo))

    def mixed(self, a: int, b: int, curve: np.ndarray, lo: int = 0) -> np.ndarray:
        """Frames a..b-1 of the sources with their gains and pans, times the per-group gain *curve*
        (its first value: group *lo*; interpolated between groups)."""
        mix = self.mix
        buffer = np.zeros((b - a,) if mix.settings.channels == 1 else (b - a, 2), np.float32)
        for i in np.flatnonzero((self.starts < b) & (self.ends > a)):
            line, start = self.island[i], int(self.starts[i])
            samples = mix.samples(line, a - start, b - start)
            at = max(0, start - a)
            if line.width > 1:
                buffer[at:at + samples.shape[0]] += samples * np.float32(line.gain)
                continue
            for c, weight in enumerate(line.weights):
                target = buffer[at:at + samples.shape[0]] if buffer.ndim == 1 else \
                    buffer[at:at + samples.shape[0], c]
                target += samples * np.float32(line.gain * weight)
        shift = lo * loudness.GROUP
        frame_gain = loudness.frame_curve(curve, a - shift, b - shift)
        buffer *= frame_gain if buffer.ndim == 1 else frame_gain[:, None]
        return buffer

    def at_gain(self, gain: float) -> Callable[[int, int], np.ndarray]:
        """``render(a, b)``: frames a..b-1 at the constant *gain*, not limited."""
        def render(a: int, b: int) -> np.ndarray:
            lo = a // loudness.GROUP
            curve = np.full(-(-b // loudness.GROUP) - lo + 1, np.float32(gain), np.float32)
            return self.mixed(a, b, curve, lo)
        return render


def _window(mix: BlockMix, placed: _Placed, w0: int, w1: int) -> Callable[[int, int], np.ndarray]:
    """``render(a, b)`` of an island's groups w0..w1-1 (frames from its first), limited: the limiter and
    its hold (:func:`loudness.hold_ceiling`) work on these groups and a margin on either side wider
    than they reach, so that no array as long as the island (or a source in it) is ever made."""
    group, g = loudness.GROUP, db_to_gain(mix.gain_db)
    lo = max(0, w0 - _WINDOW_MARGIN)
    hi = min(int(placed.g1.max()) + mix.reach, w1 + _WINDOW_MARGIN)
    peaks = np.zeros(hi - lo, np.float32)
    sources = [(placed.island[i], int(placed.g0[i])) for i in placed.touching(lo, hi)]
    covered = np.zeros(hi - lo, np.int32)      # how many sources sound in each group
    parts = [mix.parts(line) for line, _at in sources]
    for (line, at), (line_peaks, _energy) in zip(sources, parts):
        j0, j1 = max(0, lo - at), min(line_peaks.shape[0], hi - at)
        peaks[at + j0 - lo:at + j1 - lo] += line_peaks[j0:j1] * np.float32(line.gain * line.top_weight * g)
        covered[at + j0 - lo:at + j1 - lo] += line_peaks[j0:j1] > 0

    last = LastRender()

    def render(a: int, b: int, curve: np.ndarray) -> np.ndarray:
        mixed = placed.mixed(a + lo * group, b + lo * group, curve * np.float32(g), lo)
        last.keep(curve, a + lo * group, mixed)
        return mixed

    # a group with one source has its true peak already; where sources overlap, their summed peaks are a
    # bound, and the groups that could be the highest yet are read from the result for the report
    curve, estimate = loudness.hold_ceiling(render, peaks, mix.ceiling, mix.rate, (hi - lo) * group, mix.peak,
                                            known=covered <= 1)
    mix.peak = max(mix.peak, float(estimate[w0 - lo:w1 - lo].max(initial=0.0)))
    for (line, at), (_peaks, energy) in zip(sources, parts):
        j0, j1 = max(0, w0 - at), min(energy.shape[0], w1 - at)     # the source's groups in the window
        if j1 <= j0:
            continue
        taken = energy[j0:j1] * (curve[at + j0 - lo:at + j1 - lo].astype(np.float64) ** 2 - 1.0)
        if taken.any():
            first, rows = loudness.group_rows(line.g0 + j0, taken, mix.rate)
            mix.taken.append((first, rows * line.gain ** 2, line.weights))
    scaled = curve * np.float32(g)

    def limited(a: int, b: int) -> np.ndarray:
        kept = last.part(curve, a, b)
        return kept if kept is not None else placed.mixed(a, b, scaled, lo)
    return limited


class LastRender:
    """The last frames an island's hold read (:func:`loudness.hold_ceiling`), kept with the gain curve
    they were mixed under: where the hold ends with that curve, the window's output is those frames
    (the same values mixed again) rather than a second mix of them."""

    def __init__(self) -> None:
        self.curve: np.ndarray | None = None
        self.start = 0
        self.frames = np.zeros(0, np.float32)

    def keep(self, curve: np.ndarray, start: int, frames: np.ndarray) -> None:
        self.curve, self.start, self.frames = curve, start, frames

    def part(self, curve: np.ndarray, a: int, b: int) -> np.ndarray | None:
        """Frames a..b-1 (from the island's first) where they were read under *curve* itself, else None."""
        if curve is not self.curve or a < self.start or b > self.start + self.frames.shape[0]:
            return None
        return self.frames[a - self.start:b - self.start]


def predicted_gain(settings: MixSettings, first: _Line | None) -> float:
    """The gain of a streamed mix, decided before it is heard: levelled lines sit at LEVEL_REFERENCE
    LUFS, so a target's gain is known; without levelling it is read from the first line."""
    if settings.lufs is None:
        return 0.0
    if settings.leveling != "off":
        return settings.lufs - LEVEL_REFERENCE
    return settings.lufs - first.level.loudness if first is not None and math.isfinite(first.level.loudness) else 0.0


def stream(mix: BlockMix, lines: Iterable[tuple[Entry, np.ndarray]], *,
           block: int = STREAM_BLOCK) -> Iterator[np.ndarray]:
    """Mix *lines* ((entry, prepared samples), in timeline order) as they come, in blocks of *block*
    frames: each island is limited and given out as soon as the next line starts beyond its reach.

    The gain is :func:`predicted_gain`; the caller sets ``mix.frames`` (the timeline's end) before
    the iterator runs out, and the last block ends there."""
    if mix.settings.leveling == "speaker":    # a speaker's level needs all its lines: a stream levels each line
        mix.settings = replace(mix.settings, leveling="line")
    out = _Out(mix.settings.channels, block)
    island: list[_Line] = []
    end = -1
    # with gaps wider than the limiter's reach on both sides, no later line can join an island: each
    # line goes out as soon as it is mixed (else an island waits for the next line's start)
    apart = mix.settings.gap * mix.rate > (2 * mix.reach + 2) * loudness.GROUP
    for entry, samples in lines:
        line = mix.add(entry, samples)
        if line is None:
            continue
        if len(mix.lines) == 1:
            mix.gain_db = predicted_gain(mix.settings, line)
        if island and line.g0 - mix.reach > end + mix.reach:
            yield from _emit(mix, island, out, release=True)
            island, end = [], -1
        island.append(line)
        end = max(end, line.g0 + line.groups)
        if apart:
            yield from _emit(mix, island, out, release=True)
            island, end = [], -1
    if island:
        yield from _emit(mix, island, out, mix.frames or None, release=True)
    yield from out.silence(mix.frames - out.position)
    yield from out.flush()
