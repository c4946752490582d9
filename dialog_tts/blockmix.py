"""Mixing in blocks: a book-length render in constant memory, and a render that streams as it goes.

The whole-buffer mixer (:mod:`dialog_tts.mix`) holds the mix as one float32 array: 0.69 GB an
hour at 24 kHz stereo, 13.8 GB for a 20-hour book.  This mixer never holds it.  Its unit is the
line, not the mix:

- **Analysis** (:meth:`BlockMix.add`, as each line arrives in order): the line is prepared as
  the mixer prepares it, levelled from its own K-weighted measurement
  (:func:`loudness.measure_line`), and its K-weighted energy and true peak (oversampled to
  192 kHz or more) are summed per group of :data:`loudness.GROUP` frames on the mix's grid.
  K-weighting is linear, so the lines' energies, placed on the timeline with their gains and
  pans, are the mix's gated loudness (exactly, where lines do not overlap; the filter's 20 ms
  ring-out is counted).  The samples and the group figures go to a temporary spill file
  (unlinked at once, so nothing is ever left behind); memory keeps a few numbers a line.
- **Gain** (:meth:`BlockMix.finish`): with a target, a secant search for the gain whose
  limited result reaches it.  The limiter's take at a gain is read from the group figures:
  each limited group's energy times the square of its limiter gain.  Without a target, the
  common gain that gives the levelled speech the loudness it had unlevelled.
- **Render** (:meth:`BlockMix.blocks`): lines are read back and mixed island by island (lines
  closer than the limiter's reach form one island), each island limited with the same
  look-ahead limiter as the whole-buffer mixer (:func:`loudness.limit_groups`) from its
  lines' group true peaks, and the result comes out in blocks, in order.

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
from typing import IO, BinaryIO, Callable, Iterable, Iterator, cast

import numpy as np

from . import loudness
from . import mix as mix_module
from .audio import db_to_gain
from .errors import LoudnessError, OutputError
from .mix import LEVEL_REFERENCE, MixSettings, level_gain, line_volume, pan_gains
from .script import speaker_key
from .timeline import Entry

STREAM_BLOCK = 4800 * 4            # frames per block out of a stream (0.8 s at 24 kHz)
_FILE_BLOCK = 1 << 20             # frames per block out of a long render (audio.WRITE_BLOCK: the same dither)
_BINS = np.arange(-200.0, 40.0, 0.01)   # dB: the histogram of group peaks
_COMPENSATE_ROUNDS = mix_module.COMPENSATE_ROUNDS
_REACH = db_to_gain(3.0)          # true peaks are read for up to 3 dB more gain than asked (then again)
_TOP_PERCENTILE = 99.5             # the largest gain is counted from this percentile of the lines' peaks
_RENDER_CHUNK = 1 << 18           # frames of an island mixed at once (a multiple of loudness.GROUP)
_MEASURE_GROUPS = (1 << 20) // loudness.GROUP   # groups of a line whose true peaks are read at once
_MEASURE_MARGIN = 8192            # frames of context read around them (more than loudness reads around its own)


class Spill:
    """A temporary file that float32 arrays are appended to once and read back from.

    It is unlinked as soon as it is created (``tempfile.TemporaryFile``), so an interrupted
    or crashed render leaves nothing behind."""

    def __init__(self, folder: str | None = None) -> None:
        self._folder = folder or tempfile.gettempdir()
        with self._failing():
            self._file: IO[bytes] = tempfile.TemporaryFile(prefix=".dialog-tts-spill-", dir=folder)
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
            self._file.seek(self._end)
            self._file.write(data.data.cast("B"))     # no bytes copy of a long line
        offset, self._end = self._end // 4, self._end + data.nbytes
        return offset

    def set(self, offset: int, array: np.ndarray) -> None:
        """Overwrite items from *offset* with *array* (float32)."""
        with self._failing():
            self._file.seek(offset * 4)
            self._file.write(np.ascontiguousarray(array, dtype=np.float32).data.cast("B"))

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
    """What the block mixer keeps of a line between analysis and render."""

    entry: Entry
    gain_db: float            # levelled
    weights: tuple[float, ...]  # per channel: pan gains (stereo) or 1 (mono)
    level: loudness.LineLevel
    peak: float               # the highest group peak known (linear, unit gain): true peaks where measured
    g0: int                   # its first group on the mix's grid
    groups: int               # its groups (ring-out included)
    at: int = -1              # where its samples are in the spill (-1: held in *held*)
    measured: float = 0.0     # its group peaks are true peaks wherever a gain up to this could bring them
                              # near the ceiling (sample peaks, a lower bound, elsewhere)
    held: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None   # samples, group peaks, group energies

    @property
    def gain(self) -> float:
        return db_to_gain(self.gain_db)

    @property
    def top_weight(self) -> float:
        return max(self.weights)


@dataclass
class Figures:
    """What the block mix reached: as :class:`mix.MixResult` says it, without the samples."""

    frames: int
    loudness: float | None = None
    true_peak: float | None = None
    gain_db: float = 0.0
    line_gains: dict[int, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class BlockMix:
    """A mix built line by line: :meth:`add` each line in timeline order, then :meth:`finish`
    (the gain), then :meth:`blocks` (the audio, in order).  See the module's docstring."""

    def __init__(self, settings: MixSettings, *, folder: str | None = None, spill: bool = True) -> None:
        self.settings = settings
        self.rate = settings.sample_rate
        self.lines: list[_Line] = []
        self.spill = Spill(folder) if spill else None
        self.ceiling = loudness.ceiling_gain(settings.true_peak)
        self.reach = loudness.limiter_reach(self.rate)
        self.gain_db = 0.0
        self.frames = 0
        self.peak = 0.0          # the highest true peak rendered (linear), from the lines' group peaks
        self.taken: list[tuple[int, np.ndarray, tuple[float, ...]]] = []   # what the limiter took, by rows
        self.histogram = np.zeros(_BINS.shape[0] - 1, np.int64)   # the placed lines' group peaks, in dB

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()

    def __enter__(self) -> BlockMix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ analysis
    def add(self, entry: Entry, samples: np.ndarray) -> _Line | None:
        """Analyse the next placed line (its prepared samples, as :func:`mix.prepare` gives them)."""
        if samples.shape[0] == 0 or entry.voice is None:
            return None
        # in chunks: a line of any length costs a few MB beside its samples (true peaks are read when needed)
        level, energies, peaks = loudness.measure_placed_line(samples, self.rate, entry.start)
        gain = entry.voice.gain
        if self.settings.leveling == "line":
            gain += level_gain(level.loudness - line_volume(entry))
        line = _Line(entry, gain, self._weights(entry), level, float(peaks.max()), entry.start // loudness.GROUP,
                     energies.shape[0])
        self._count_peaks(peaks, line.gain * line.top_weight)
        if self.spill is not None:
            line.at = self.spill.put(samples)
            self.spill.put(peaks)
            self.spill.put(energies)
        else:
            line.held = (samples, peaks, energies)
        self.lines.append(line)
        return line

    def _count_peaks(self, peaks: np.ndarray, gain: float) -> None:
        with np.errstate(divide="ignore"):
            db = 20.0 * np.log10(peaks[peaks > 0] * gain)
        self.histogram += np.histogram(db, _BINS)[0]

    def top_peak(self) -> float:
        """The 99.5th percentile of the sounding groups' peaks (within 60 dB of the highest), as the
        whole-buffer limiter counts its largest push, from a histogram kept as lines arrive (0.01 dB)."""
        filled = np.flatnonzero(self.histogram)
        if not filled.size:
            return 0.0
        sounding = self.histogram[max(0, filled[-1] - 6000):]
        rank = np.searchsorted(np.cumsum(sounding), _TOP_PERCENTILE / 100 * sounding.sum())
        return db_to_gain(float(_BINS[max(0, filled[-1] - 6000) + rank + 1]))

    def _weights(self, entry: Entry) -> tuple[float, ...]:
        return pan_gains(entry.voice.pan or 0.0) if self.settings.channels == 2 and entry.voice else (1.0,)

    def parts(self, line: _Line, factor: float | None = None,
              reach: float = _REACH) -> tuple[np.ndarray, np.ndarray]:
        """(group peaks, group energies) of *line*, from memory or the spill; with *factor* (the
        gain its peaks will be multiplied by), its peaks are true peaks wherever that could bring
        them near the ceiling (:meth:`_measure`)."""
        if line.held is not None:
            parts = line.held[1], line.held[2]
        else:
            assert self.spill is not None
            n, g = line.entry.frames, line.groups
            data = self.spill.get(line.at + n, 2 * g)
            parts = data[:g], data[g:]
        if factor is not None and self.unsure(line, factor):
            self._measure(line, parts[0], factor * reach)
        return parts

    def samples(self, line: _Line, a: int, b: int) -> np.ndarray:
        """Samples a..b-1 of *line* (clipped to it), from memory or the spill."""
        a, b = max(0, a), max(0, min(line.entry.frames, b))
        if b <= a:
            return np.zeros(0, np.float32)
        if line.held is not None:
            return line.held[0][a:b]
        assert self.spill is not None
        return self.spill.get(line.at + a, max(0, b - a))

    def unsure(self, line: _Line, factor: float) -> bool:
        """Whether *line*'s peaks times *factor* could reach the ceiling without their true peaks read yet."""
        return factor > line.measured and line.peak * loudness.TP_HEADROOM * factor > self.ceiling

    def _measure(self, line: _Line, peaks: np.ndarray, reach: float) -> None:
        """Read the true peaks of the groups that a gain up to *reach* could bring near the ceiling (in
        place, and in the spill).  Oversampling every line cost 40 % of a render: most groups of
        levelled speech stay more than 6 dB (the headroom) under the ceiling.  The search reads 3 dB
        further than the gain it tries, so that its next tries need not read again."""
        wanted = peaks * np.float32(loudness.TP_HEADROOM * reach) > self.ceiling
        start, n, group = line.entry.start, line.entry.frames, loudness.GROUP
        margin = _MEASURE_MARGIN
        # in chunks on the mix's group grid, each read with context around it: bounded memory for any line
        for g in np.flatnonzero(np.add.reduceat(wanted, np.arange(0, wanted.shape[0], _MEASURE_GROUPS)) > 0):
            g_a, g_b = int(g) * _MEASURE_GROUPS, min(wanted.shape[0], (int(g) + 1) * _MEASURE_GROUPS)
            a = max(0, (line.g0 + g_a) * group - start - margin)          # line frames read
            b = min(n, (line.g0 + g_b) * group - start + margin)
            if b <= a:
                continue
            w0 = (start + a) // group - line.g0                               # the window's first group
            window = self.samples(line, a, b)
            w_groups = -(-((start + a) % group + window.shape[0]) // group)
            want = np.zeros(w_groups, bool)
            lo, hi = max(g_a, w0), min(g_b, w0 + w_groups)
            want[lo - w0:hi - w0] = wanted[lo:hi]
            true = loudness.group_true_peaks(window, start + a, want, self.rate)
            np.maximum(peaks[lo:hi], true[lo - w0:hi - w0], out=peaks[lo:hi])
        line.peak, line.measured = float(peaks.max()), reach
        if line.held is None and self.spill is not None:
            self.spill.set(line.at + n, peaks)

    # ------------------------------------------------------------ gain
    def finish(self, frames: int) -> Figures:
        """Decide the gain for a mix of *frames* frames (speaker levelling, target or common gain)."""
        self.frames = frames
        self._level_speakers()
        target = self.settings.lufs
        figures = Figures(frames)
        if not self.lines or frames < 0.4 * self.rate:
            self.gain_db = self._common_gain()
            if target is not None:
                figures.notes.append("audio shorter than 0.4 s: loudness not normalized" if self.lines
                                     else "audio is silent: loudness not normalized")
        else:
            self.gain_db, figures.loudness = _decide(_Search(self, target, self._common_gain()))
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
        rows = loudness.block_count(self.frames, self.rate) + 3
        energies = np.zeros((rows, self.settings.channels))
        for line in self.lines:
            _add_rows(energies, line.level.first, line.level.subs * line.gain ** 2, line.weights)
        return energies

    # ------------------------------------------------------------ render
    def blocks(self, block: int | None = None) -> Iterator[np.ndarray]:
        """The mix, in order, in blocks of *block* frames (the last one shorter), limited and clipped."""
        out = _Out(self.settings.channels, block or _FILE_BLOCK)
        yield from _render(self, self.lines, out, self.frames)

    def rendered(self, figures: Figures) -> Figures:
        """*figures* with the loudness and true peak of what :meth:`blocks` (or :func:`stream`) gave:
        the lines' energies less what the limiter took, and the lines' group peaks under its gain."""
        energies = self.energies()
        for first, rows, weights in self.taken:
            _add_rows(energies, first, rows, weights)
        g = db_to_gain(self.gain_db)
        measured = loudness.loudness_of(energies * g * g, self.frames, self.rate) if self.lines else -math.inf
        figures.loudness = measured if math.isfinite(measured) else None
        figures.true_peak = 20.0 * math.log10(self.peak) + loudness.REPORT_ALLOWANCE_DB if self.peak > 0 else None
        return figures


def _add_rows(energies: np.ndarray, first: int, subs: np.ndarray, weights: tuple[float, ...]) -> None:
    """Add a line's sub-block energies *subs* from row *first*, weighted per channel."""
    subs = subs[:max(0, energies.shape[0] - first)]
    for c, weight in enumerate(weights):
        energies[first:first + subs.shape[0], c] += subs * weight ** 2


class _Search:
    """The gain (dB) whose limited mix reaches the target (or the fixed gain without one), and
    the extra gain per line (or speaker) that gives back what the limiter takes from it beyond
    the average, as the whole-buffer mixer does (:meth:`mix._Levels.compensate`)."""

    def __init__(self, mix: BlockMix, target: float | None, fixed: float) -> None:
        self.mix, self.target, self.fixed = mix, target, fixed
        self.base = mix.energies()
        self.measured = loudness.loudness_of(self.base, mix.frames, mix.rate)
        high = mix.top_peak()
        self.top = (20 * math.log10(mix.ceiling / high) if high > 0 else 0.0) + 12.0
        self.taken: dict[int, float] = {}      # per line (by position): energy the limiter took, last reading
        self.extra: dict[object, float] = {}

    def run(self) -> tuple[float, float | None]:
        """(gain, loudness there): the target's, found by a secant search kept inside a bracket."""
        target = self.target
        if target is None or not math.isfinite(self.measured):
            return self.fixed, None
        high = self.top
        gain = min(target - self.measured, high)
        low, prev = gain - 1.0, None
        got = self.loudness_at(gain)
        for _ in range(12):
            if abs(got - target) <= 0.05:
                break
            low, high = (max(low, gain), high) if got < target else (low, min(high, gain))
            slope = 1.0 if prev is None or prev[0] == gain else (got - prev[1]) / (gain - prev[0])
            step = gain + (target - got) / min(1.0, max(0.02, slope))
            prev, gain = (gain, got), step if low < step < high else (low + high) / 2
            got = self.loudness_at(gain)
        return gain, got

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
        """The mix's loudness at *gain_db*, with what the limiter takes from each line."""
        mix, g = self.mix, db_to_gain(gain_db)
        energies = self.base.copy()
        self.taken = {}
        for i, line in enumerate(mix.lines):
            factor = line.gain * line.top_weight * g
            if line.peak * factor <= mix.ceiling and not mix.unsure(line, factor):
                continue
            peaks, group_energy = mix.parts(line, factor)
            curve = _limit(peaks * np.float32(factor), mix.ceiling, mix.rate, mix.reach)
            taken = group_energy * (curve.astype(np.float64) ** 2 - 1.0)
            first, rows = _group_rows(line, taken, mix.rate)
            self.taken[i] = float(rows.sum())
            _add_rows(energies, first, rows, line.weights)
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
        wanted = mix_module.compensation(sums, self.extra)
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
    """The gain, with the limiter's take given back to the lines it takes most from (as
    :func:`mix._finish` does: at most four rounds; the target first)."""
    gain, got = search.run()
    target = search.target
    for _ in range(_COMPENSATE_ROUNDS):
        kept = dict(search.extra)
        if not search.compensate(gain):
            break
        before, (gain, got) = got, search.run()
        if got is not None and before is not None and target is not None and got < min(target, before) - 0.05:
            search.set_extra(kept)          # at the limiter's limit, levelling gives way
            gain, got = search.run()
            break
    return search.reached(gain, got)


def _group_rows(line: _Line, values: np.ndarray, rate: int) -> tuple[int, np.ndarray]:
    """(first row, per-row sums) of per-group *values* of *line*, gathered into the mix's sub-blocks
    (a group counts in the sub-block its first frame is in), times the line's gain squared."""
    starts = (line.g0 + np.arange(values.shape[0])) * loudness.GROUP
    first = loudness.sub_block_of(int(starts[0]), rate)
    last = loudness.sub_block_of(int(starts[-1]), rate) + 2
    edges = loudness.sub_block_edges_between(first, last, rate)
    rows = np.searchsorted(edges, starts, side="right") - 1
    return first, np.bincount(rows, weights=values, minlength=last - first) * line.gain ** 2


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
    """Lines grouped into islands: consecutive lines whose groups come within *reach* of each other."""
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


def _render(mix: BlockMix, lines: Iterable[_Line], out: _Out, frames: int) -> Iterator[np.ndarray]:
    """Mix *lines* island by island into *out* and give out its blocks, then silence up to *frames*."""
    for island in islands(lines, mix.reach):
        yield from _emit(mix, island, out, frames)
    yield from out.silence(frames - out.position)
    yield from out.flush()


def _emit(mix: BlockMix, island: list[_Line], out: _Out, frames: int | None = None) -> Iterator[np.ndarray]:
    """One island into *out* (cut at *frames*, the mix's end, where known), mixed a chunk at a time."""
    first, length, render = _island(mix, island)
    skip = max(0, out.position - first)    # islands never overlap: only the first one can start before 0
    yield from out.silence(first + skip - out.position)
    # past its last line an island is silence: where the mix's end is not known yet, it stops there
    end = frames if frames is not None else max(line.entry.end for line in island)
    stop = min(length, max(skip, end - first))
    for a in range(skip, stop, _RENDER_CHUNK):
        yield from out.put(render(a, min(stop, a + _RENDER_CHUNK)))
    for line in island:
        line.held = None          # streamed lines are released once placed


def _island(mix: BlockMix, island: list[_Line]) -> tuple[int, int, Callable[[int, int], np.ndarray]]:
    """(first frame, frames, render) of one island, from a group before its lines to a group after:
    ``render(a, b)`` gives its limited audio a..b-1 (frames from the first), so that no buffer as
    long as the island (or a line in it) is ever made."""
    group, g = loudness.GROUP, db_to_gain(mix.gain_db)
    ga = max(0, island[0].g0 - mix.reach)
    gb = max(ln.g0 + ln.groups for ln in island) + mix.reach
    peaks = np.zeros(gb - ga, np.float32)
    parts = [mix.parts(line, line.gain * line.top_weight * g, reach=1.0) for line in island]   # the final gain
    for line, (line_peaks, _energy) in zip(island, parts):
        at = line.g0 - ga
        peaks[at:at + line_peaks.shape[0]] += line_peaks * np.float32(line.gain * line.top_weight * g)
    curve = loudness.limit_groups(peaks, mix.ceiling, mix.rate) if float(peaks.max()) > mix.ceiling else \
        np.ones(peaks.shape, np.float32)
    origin = ga * group
    shape = [curve * np.float32(g)]          # the gain per group that render applies (held again below)

    def render(a: int, b: int) -> np.ndarray:
        buffer = np.zeros((b - a,) if mix.settings.channels == 1 else (b - a, 2), np.float32)
        for line in island:
            start = line.entry.start - origin
            samples = mix.samples(line, a - start, b - start)
            if not samples.shape[0]:
                continue
            at = max(0, start - a)
            for c, weight in enumerate(line.weights):
                target = buffer[at:at + samples.shape[0]] if buffer.ndim == 1 else \
                    buffer[at:at + samples.shape[0], c]
                target += samples * np.float32(line.gain * weight)
        frame_gain = loudness.frame_curve(shape[0], a, b)
        buffer *= frame_gain if buffer.ndim == 1 else frame_gain[:, None]
        return buffer

    # the limited result is read again where the limiter moved the gain, and limited again where over
    wanted = loudness.limited_groups(peaks, curve, 1.0, mix.ceiling)
    read = np.zeros(peaks.shape, np.float32)
    for round_ in range(loudness.HOLD_ROUNDS):
        if not wanted.any():
            break
        read = _read_groups(render, wanted, mix.rate, (gb - ga) * group)
        extra = loudness.relimit(read, wanted, mix.ceiling, mix.rate, round_)
        if extra is None:
            break
        curve = curve * extra
        shape[0] = curve * np.float32(g)
        wanted = wanted | (extra < np.float32(1.0))
    following = np.append(curve[1:], curve[-1:])
    estimate = np.where(wanted, read, peaks * np.maximum(curve, following))
    # for the report: groups that could be the highest yet are read from the result (where no gain brought
    # them near the ceiling, their peaks are sample peaks: lower bounds)
    unread = ~wanted & (estimate * np.float32(loudness.TP_HEADROOM) > max(mix.peak, float(estimate.max())))
    if unread.any():
        estimate = np.maximum(estimate, _read_groups(render, unread, mix.rate, (gb - ga) * group))
    mix.peak = max(mix.peak, float(estimate.max()))
    for line, (_peaks, energy) in zip(island, parts):
        at = line.g0 - ga
        taken = energy * (curve[at:at + energy.shape[0]].astype(np.float64) ** 2 - 1.0)
        if taken.any():
            mix.taken.append((*_group_rows(line, taken, mix.rate), line.weights))
    return origin, (gb - ga) * group, render


def _read_groups(render: Callable[[int, int], np.ndarray], wanted: np.ndarray, rate: int,
                 frames: int) -> np.ndarray:
    """The true peak of each *wanted* group of an island (0 elsewhere), rendered and read in chunks
    with context around them."""
    group, margin = loudness.GROUP, _MEASURE_MARGIN
    read = np.zeros(wanted.shape, np.float32)
    for k in np.flatnonzero(np.add.reduceat(wanted, np.arange(0, wanted.shape[0], _MEASURE_GROUPS)) > 0):
        g_a, g_b = int(k) * _MEASURE_GROUPS, min(wanted.shape[0], (int(k) + 1) * _MEASURE_GROUPS)
        a, b = max(0, g_a * group - margin), min(frames, g_b * group + margin)     # on the group grid
        lo = g_a - a // group
        want = np.zeros(-(-b // group) - a // group, bool)
        want[lo:lo + g_b - g_a] = wanted[g_a:g_b]
        true = loudness.group_true_peaks(render(a, b), 0, want, rate)
        read[g_a:g_b] = np.where(wanted[g_a:g_b], true[lo:lo + g_b - g_a], np.float32(0.0))
    return read


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
            yield from _emit(mix, island, out)
            island, end = [], -1
        island.append(line)
        end = max(end, line.g0 + line.groups)
        if apart:
            yield from _emit(mix, island, out)
            island, end = [], -1
    if island:
        yield from _emit(mix, island, out, mix.frames or None)
    yield from out.silence(mix.frames - out.position)
    yield from out.flush()
