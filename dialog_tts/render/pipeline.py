"""A render: the pipeline of :meth:`dialog_tts.api.Renderer.render` and :meth:`Renderer.stream`.

One line at a time: the engine gives each line's outcome in order (:meth:`Engine.stream`), the
timeline places it (:class:`timeline.Builder`), the block mixer analyses it
(:class:`blockmix.BlockMix`) and the writers take the mix in blocks
(:mod:`dialog_tts.io.writers`).  Nothing holds the whole mix or every clip:

- a file output is written after the whole script is analysed (the gain needs every line),
  with its music (intro, outro, the ducked bed) and its stems;
- ``--out -`` in WAV (and :meth:`Renderer.stream`) gives out audio as soon as the first lines
  are mixed, with the gain predicted (:func:`blockmix.predicted_gain`); with music, stems or a
  review page the mix is analysed whole first, then given out.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from dialog_tts.errors import LoudnessError, OutputError, SynthesisFailed
from dialog_tts.finish import clips as mix
from dialog_tts.finish import mixer as blockmix
from dialog_tts.finish.ahead import ahead, mapped
from dialog_tts.finish.timeline import Builder, Kind, LineInput, Timeline, chapters
from dialog_tts.io import tags
from dialog_tts.io import writers as blockwrite
from dialog_tts.io.audio import Clip
from dialog_tts.io.outputs import atomic_path, copy_to_stdout
from dialog_tts.render import produce, specs
from dialog_tts.render.results import LineRecord
from dialog_tts.render.specs import is_lossy
from dialog_tts.script.parse import Line, Script
from dialog_tts.synth import engine
from dialog_tts.synth.jobs import Job

log = logging.getLogger("dialog_tts")

MAX_ENCODES = 4          # a lossy file is encoded at most this often to hold the ceiling decoded
_STEP_DB = 0.1           # extra room taken each time an encode came out over the ceiling


@dataclass
class Pass:
    """What the analysis of a render gathered, line by line."""

    timeline: Timeline | None = None
    records: list[LineRecord] = field(default_factory=list)
    failures: list[engine.Failure] = field(default_factory=list)
    boundaries: dict[int, list[float]] = field(default_factory=dict)
    stats: engine.Stats | None = None


class _Ran:
    """A run the engine already made (a batch's scripts scheduled together), handed out as a stream is."""

    def __init__(self, result: engine.EngineResult) -> None:
        self.result = result
        self.failures, self.stats = result.failures, result.stats

    def __iter__(self) -> Iterator[tuple[int, engine.Outcome]]:
        return iter(enumerate(self.result.outcomes))

    def __enter__(self) -> _Ran:
        return self

    def __exit__(self, *exc: object) -> None:
        self.result.outcomes.clear()


#: A line ready for the mixer: its timeline entry, its prepared samples, their own true peaks (or None)
Placed = tuple[Any, np.ndarray, "blockmix.Own | None"]


def lines(eng: engine.Engine, parsed: Script, jobs: Sequence[Job], settings: mix.MixSettings,
          keep_going: bool, found: Pass, estimate: Any, *, streamed: bool = False, offset: int = 0,
          ran: engine.EngineResult | None = None,
          own: Callable[[np.ndarray], blockmix.Own] | None = None) -> Iterator[Placed]:
    """(timeline entry, prepared samples, *own* of them or None) of each placed line in order, as the
    engine gives them (or *ran* holds them), placed *offset* frames later (after an intro); records,
    failures, sentence starts and finally the timeline (without its bookends) go into *found*.
    *streamed*: the first line is synthesized first, alone, and a failed line stops it (unless
    *keep_going*).  *own* (the mixer's :meth:`~blockmix.BlockMix.own`) is taken on the threads that
    prepare the lines."""
    builder = Builder(parsed.events, sample_rate=settings.sample_rate, gap=settings.gap)
    with (eng.stream(jobs, ramp=streamed) if ran is None else _Ran(ran)) as run:
        for entry, samples, owned in _outcomes(run, builder, parsed, jobs, settings, keep_going, found, estimate,
                                               streamed and not keep_going, own):
            yield replace(entry, start=entry.start + offset) if offset else entry, samples, owned
    found.failures = list(run.failures)
    found.stats = run.stats
    found.timeline = builder.finish()


@dataclass
class _Taken:
    """A line as the engine gave it: its clip, or None (failed: *silent* where it is left silent)."""

    line: Line
    job: Job
    clip: Clip | None
    silent: bool = False


def _outcomes(run: Any, builder: Builder, parsed: Script, jobs: Sequence[Job], settings: mix.MixSettings,
              keep_going: bool, found: Pass, estimate: Any, stop_on_failure: bool,
              own: Callable[[np.ndarray], blockmix.Own] | None) -> Iterator[Placed]:
    """The placed lines, in order.  Each clip is made ready for the mix (and *own* taken of it) on
    threads while the line before is measured (:func:`ahead.mapped`), except in a stream that stops on a
    failure (*stop_on_failure*), where each line is taken only once the one before is placed."""
    taken = _taken(run, parsed, jobs, keep_going, found, stop_on_failure)

    def prepare(t: _Taken) -> tuple[_Taken, np.ndarray | None, blockmix.Own | None]:
        samples = None if t.clip is None else mix.placed(t.clip, settings)
        return t, samples, None if samples is None or own is None else own(samples)
    for t, samples, owned in map(prepare, taken) if stop_on_failure else \
            mapped(prepare, taken, depth=2 * mix.READERS, threads=mix.READERS):
        if samples is None or t.clip is None:    # nothing more is mixed once a line failed (no output is written)
            builder.add(LineInput(t.line, t.job.voice, None, estimate(t.job)) if t.silent
                        else LineInput(t.line, t.job.voice, 0))
            continue
        entry = builder.add(LineInput(t.line, t.job.voice, samples.shape[0]))[-1]
        starts = mix.sentence_starts(t.clip, settings)
        if starts:
            found.boundaries[entry.index] = starts
        if entry.kind is Kind.LINE and entry.frames:
            yield entry, samples, owned


def _taken(run: Any, parsed: Script, jobs: Sequence[Job], keep_going: bool, found: Pass,
           stop_on_failure: bool) -> Iterator[_Taken]:
    """Each line as the engine gives it, its record kept; once a line failed (without *keep_going*), the
    ones after it come without their clips."""
    failed = False
    for index, outcome in run:
        line, job = parsed.lines[index], jobs[index]
        found.records.append(record_of(line, job, outcome))
        clip, outcome.clip = outcome.clip, None
        if clip is None and stop_on_failure:
            raise SynthesisFailed([engine.Failure(job, outcome.error or RuntimeError("failed"))], len(jobs))
        if clip is None and keep_going:
            log.warning("%s: left silent (%s)", job.where(), outcome.error)
            yield _Taken(line, job, None, silent=True)
            continue
        failed = failed or clip is None
        yield _Taken(line, job, None if failed else clip)


def record_of(line: Line, job: Job, o: engine.Outcome) -> LineRecord:
    """The report record of one line: the line as written, its voice and its synthesis outcome."""
    return LineRecord(line.line_no, line.speaker, line.text, job.voice.backend, job.voice.name,
                      o.source == "cache", o.source, o.attempts, round(o.seconds, 4),
                      error=str(o.error) if o.error else None,
                      quality=o.quality.to_json() if o.quality is not None else None,
                      flags=o.quality.flags() if o.quality is not None else [],
                      warnings=o.quality.warnings() if o.quality is not None else [])


def write_file(out: Any, bm: blockmix.BlockMix, prod: specs.Production, ceiling_db: float,
               settings: mix.MixSettings, parsed: Script, timeline: Timeline) -> produce.Written:
    """Write the block mix to *out* (a file) with its tags and chapters: the one loop that encodes
    until the ceiling (*ceiling_db*, the render's) holds.  A lossless file holds the samples the mixer
    measured; a lossy one is decoded and measured (an encoder adds inter-sample peaks), and while its
    true peak is over the ceiling the mix is limited again under a ceiling lowered by the overshoot,
    and encoded again.  The figures returned are the file's (lossy: as decoded)."""
    marks = chapters(timeline) if prod.chapters else []
    written = produce.Written(chapters=marks)
    suffix = Path(out).suffix.lower()
    with atomic_path(out) as tmp:
        for _encode_round in range(MAX_ENCODES):
            _encode(tmp, suffix, bm, prod, settings, marks)
            if not is_lossy(out):
                break
            written.loudness, written.true_peak = blockwrite.measure_file(tmp)
            if written.true_peak <= ceiling_db:
                break
            bm.ceiling *= 10 ** (-(written.true_peak - ceiling_db + _STEP_DB) / 20)
        else:
            raise OutputError(f"the encoded file still peaks at {written.true_peak:+.2f} dBTP, over the "
                              f"{ceiling_db:g} dBTP ceiling, after {MAX_ENCODES} encodes")
        tag_values = tags.Tags.merged(parsed.meta, prod.tags)
        in_mp4 = suffix in specs.MP4_FORMATS        # its chapters are written with its audio
        if tag_values or (marks and not in_mp4):
            tags.write(tmp, tag_values, [] if in_mp4 else marks, settings.sample_rate, fmt=suffix)
    return written


def _encode(path: str, suffix: str, bm: blockmix.BlockMix, prod: specs.Production, settings: mix.MixSettings,
            marks: list[Any]) -> None:
    with blockwrite.open_writer(path, suffix, settings.sample_rate, settings.channels,
                                bit_depth=settings.bit_depth, bitrate=specs.parse_bitrate(prod.bitrate),
                                chapters=marks, frames=bm.frames) as writer, closing(ahead(bm.blocks())) as blocks:
        for block in blocks:     # a failed write stops the mixer's thread (closing) before the writer closes
            writer.write(block)


def write_stems(bm: blockmix.BlockMix, prod: specs.Production, parsed: Script, out: Any) -> None:
    """One file per speaker (and ``music``), each as long as the mix, with the mix's gains, unlimited."""
    folder = Path(prod.stems or ".")
    folder.mkdir(parents=True, exist_ok=True)
    suffix = specs.stem_suffix(prod, out)
    stems: dict[str, list[Any]] = {name: [] for name in parsed.speakers.values()}
    for line in bm.lines:
        stems.setdefault(line.entry.speaker, []).append(line)
    if bm.tracks:
        stems["music"] = list(bm.tracks)
    depth = 16 if suffix in specs.PCM_SUBTYPES else None
    rate, channels = bm.settings.sample_rate, bm.settings.channels
    for name, sources in stems.items():
        path = specs.stem_path(folder, name, suffix)
        with atomic_path(path) as tmp, blockwrite.open_writer(tmp, suffix, rate, channels, bit_depth=depth,
                                                              frames=bm.frames) as writer, \
                closing(ahead(bm.stem(sources))) as blocks:
            for block in blocks:
                writer.write(block)


def stream_to(target: Any, suffix: str, blocks: Iterator[np.ndarray], settings: mix.MixSettings) -> None:
    """Write *blocks* to *target* (stdout's binary stream) as they come."""
    with blockwrite.open_writer(target, suffix, settings.sample_rate, settings.channels,
                                bit_depth=settings.bit_depth) as writer:
        for block in blocks:
            writer.write(block)
            writer.flush()


def stdout() -> Any:
    return sys.stdout.buffer


def conclude(dialog: Any, path: Any, timeline: Timeline, mixed: blockmix.Figures, written: produce.Written,
             out: Any, started: float) -> None:
    """Fill in *dialog* from the timeline (line positions), the mix's figures and the file's (warning
    the notes)."""
    for note in [*mixed.notes, *written.notes]:
        log.warning("%s: %s", path, note)
    rate = timeline.sample_rate
    for entry in timeline.lines:
        record = dialog.lines[entry.index]
        record.start, record.end = round(entry.start / rate, 4), round(entry.start / rate + entry.frames / rate, 4)
    dialog.path = Path(out) if out is not None else None
    dialog.duration = timeline.duration
    dialog.loudness, dialog.true_peak, dialog.notes = mixed.loudness, mixed.true_peak, mixed.notes
    totals = dialog.totals
    totals.duration = timeline.duration
    totals.wall_time = time.perf_counter() - started
    totals.real_time_factor = totals.wall_time / timeline.duration if timeline.duration else 0.0
    dialog.chapters = [{"title": c.title, "start": round(c.start / rate, 4), "end": round(c.end / rate, 4),
                        "line": c.source_line} for c in written.chapters]
    if written.true_peak is not None:   # the file's figures (lossy: as decoded)
        dialog.true_peak = written.true_peak
    if written.loudness is not None:
        dialog.loudness = written.loudness


def open_stream(renderer: Any, script: Any, check_outputs: Any) -> BlockRun:
    """*script*'s mix as it is made (:meth:`Renderer.stream`): an iterable of float32 blocks ((n,) mono
    or (n, 2) stereo; ``sample_rate`` and ``channels`` on it), the first as soon as the first lines are
    mixed (with music or stems: once every line is).  The loudness gain is predicted (levelled lines sit
    at -20 LUFS), not searched, where the blocks come as the lines do; a failed line stops it
    (:class:`SynthesisFailed`) unless ``keep_going``.  Its :class:`DialogResult` is its ``result`` once
    it has run out.  *check_outputs* is :func:`api.check_outputs` (the files it will write)."""
    prod = renderer.options.production()
    parsed, cast, jobs = renderer.prepare(script)
    extras = specs.extra_outputs(prod, parsed, None)
    check_outputs(renderer.options, script, None, extras, prod.stems)
    return BlockRun(renderer, parsed, cast, jobs, None, prod, renderer.settings, None, extras, time.perf_counter())


class BlockRun:
    """One render: :meth:`render` (a file, stdout, or nothing) or :meth:`stream` (blocks out)."""

    def __init__(self, renderer: Any, parsed: Script, cast: Any, jobs: list[Job], out: Any,
                 prod: specs.Production, settings: mix.MixSettings, key: str | None, extras: list[str],
                 started: float) -> None:
        self.renderer, self.parsed, self.cast, self.jobs = renderer, parsed, cast, jobs
        self.out, self.prod, self.settings, self.key, self.extras = out, prod, settings, key, extras
        self.started = started
        self.found = Pass()
        self.result: Any = None
        self.sample_rate, self.channels = settings.sample_rate, settings.channels
        self.bookends = produce.bookends(prod, settings)
        self.page_audio: bytes | None = None      # the review page's audio where the output is stdout

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.stream()

    def _lines(self, streamed: bool, own: Callable[[np.ndarray], blockmix.Own] | None = None) -> Iterator[Placed]:
        renderer = self.renderer
        return lines(renderer.engine, self.parsed, self.jobs, self.settings, renderer.options.keep_going,
                     self.found, renderer.estimated_seconds, streamed=streamed, offset=self.bookends.offset,
                     ran=renderer.take_ready(self.jobs), own=own)

    def render(self) -> Any:
        """Analyse every line, decide the gain, write the file (or only measure, *out* None)."""
        if self.out is not None and os.fspath(self.out) == specs.STDOUT:
            return self._to_stdout()
        return self._render_to(self.out)

    def _mixed(self, bm: blockmix.BlockMix) -> tuple[Any, Timeline, blockmix.Figures]:
        """Every line and the music into *bm*, the gain decided: (the report so far, the timeline, figures)."""
        for entry, samples, own in self._lines(streamed=False, own=bm.own):
            bm.add(entry, samples, own)
        dialog = self._dialog()
        assert self.found.timeline is not None
        timeline = self.bookends.frame(self.found.timeline)
        if self.bookends.music is not None:
            from dialog_tts.finish.music import pieces

            for start, samples in pieces(timeline, self.bookends.music, self.settings.channels):
                bm.add_track(start, samples)
        return dialog, timeline, self._located(lambda: bm.finish(timeline.frames))

    def _render_to(self, path: Any, *, embed: bool = False) -> Any:
        """Render into *path* (None: only measure); with *embed*, the review page holds the file's bytes."""
        folder = str(Path(path).resolve().parent) if path is not None else None
        with blockmix.BlockMix(self.settings, folder=folder, peaks=self._kept_peaks()) as bm:
            dialog, timeline, figures = self._mixed(bm)
            if path is not None:
                written = self._located(lambda: write_file(path, bm, self.prod, self.renderer.settings.true_peak,
                                                           self.settings, self.parsed, timeline))
                if embed:
                    self.page_audio = Path(path).read_bytes()
            else:
                written = produce.Written(chapters=chapters(timeline) if self.prod.chapters else [])
                for _block in ahead(bm.blocks()):
                    pass
            figures = bm.rendered(figures)
            if self.prod.stems:
                write_stems(bm, self.prod, self.parsed, self.out)
        return self._conclude(dialog, timeline, figures, written)

    def _kept_peaks(self) -> Any:
        """Where the mixer keeps its readings of the lines' true peaks: beside the audio cache (None without one)."""
        cache = self.renderer.cache
        return cache.peaks if cache is not None else None

    def _located(self, step: Any) -> Any:
        try:
            return step()
        except LoudnessError as exc:
            raise exc.locate(path=self.parsed.path) from None

    def _dialog(self) -> Any:
        """The report so far; a failed line (without --keep-going) fails the render here, nothing written."""
        from dataclasses import asdict

        from dialog_tts.render.results import DialogResult, Totals

        found, names = self.found, {self.parsed.speakers[k]: v.describe() for k, v in self.cast.items()}
        dialog = DialogResult(self.parsed.path, None, 0.0, self.settings.sample_rate, self.settings.channels,
                              found.records, names, Totals(**asdict(found.stats or engine.Stats())))
        if found.failures and not self.renderer.options.keep_going:
            dialog.totals.wall_time = time.perf_counter() - self.started
            self.renderer.write_report(dialog)
            raise SynthesisFailed(found.failures, len(self.jobs))
        return dialog

    def _conclude(self, dialog: Any, timeline: Timeline, figures: blockmix.Figures,
                  written: produce.Written) -> Any:
        from dialog_tts.io import review, subtitles
        from dialog_tts.render import uptodate
        prod = self.prod
        if prod.subtitles:
            review.write_text(prod.subtitles, subtitles.render(prod.subtitles, timeline, written.chapters,
                                                               self.found.boundaries))
        if prod.review:
            produce.write_review(prod, self.parsed, timeline, dialog.lines, written.chapters, self.out,
                                 self.page_audio)
        conclude(dialog, self.parsed.path, timeline, figures, written, self.out, self.started)
        stats = self.found.stats
        if self.key is not None and self.out is not None and not self.found.failures and stats and not stats.flagged:
            uptodate.remember(self.renderer.cache, self.out, self.key, dialog, self.extras)
        self.renderer.write_report(dialog)
        return dialog

    # ------------------------------------------------------------ streaming
    def _whole_first(self) -> bool:
        """Whether the mix is analysed whole before it is given out: music (the bed's end, the
        outro's place) and stems need every line."""
        prod = self.prod
        return bool(prod.music or prod.intro or prod.outro or prod.stems)

    def stream(self) -> Iterator[np.ndarray]:
        """The mix in blocks as the lines come (the gain predicted), or once every line is analysed (the
        gain searched; with music or stems); :attr:`result` once it has run out."""
        if self._whole_first():
            yield from self._streamed_whole()
            return
        with blockmix.BlockMix(self.settings, spill=False, peaks=self._kept_peaks()) as bm:
            yield from blockmix.stream(bm, self._ended(bm))
            dialog = self._dialog()
            timeline = self.found.timeline
            assert timeline is not None
            figures = bm.rendered(blockmix.Figures(timeline.frames, gain_db=bm.gain_db))
            if figures.loudness is not None and self.settings.lufs is not None and \
                    abs(figures.loudness - self.settings.lufs) > 0.1:
                figures.notes.append(f"streamed with a predicted gain: loudness {figures.loudness:.1f} LUFS, "
                                     f"not {self.settings.lufs:g}")
            written = produce.Written(chapters=chapters(timeline) if self.prod.chapters else [])
            self.result = self._conclude(dialog, timeline, figures, written)

    def _streamed_whole(self) -> Iterator[np.ndarray]:
        with blockmix.BlockMix(self.settings, peaks=self._kept_peaks()) as bm:
            dialog, timeline, figures = self._mixed(bm)
            yield from bm.blocks(blockmix.STREAM_BLOCK)
            figures = bm.rendered(figures)
            if self.prod.stems:
                write_stems(bm, self.prod, self.parsed, self.out)
        written = produce.Written(chapters=chapters(timeline) if self.prod.chapters else [])
        self.result = self._conclude(dialog, timeline, figures, written)

    def _ended(self, bm: blockmix.BlockMix) -> Iterator[tuple[Any, np.ndarray]]:
        for entry, samples, _own in self._lines(streamed=True):   # each line is read as it is mixed
            yield entry, samples
        assert self.found.timeline is not None
        bm.frames = self.found.timeline.frames

    def _to_stdout(self) -> Any:
        """WAV streams as it is mixed; another format (or a render with music, stems or a review page) is
        written to a temporary file, then copied (a FLAC or MP3 whose length its header cannot tell is one
        that libsndfile refuses to read; the review page embeds the audio)."""
        suffix = self.prod.stream_suffix()
        if suffix == ".wav" and not self._whole_first() and not self.prod.review:   # the page embeds the audio
            stream_to(stdout(), suffix, self.stream(), self.settings)
            return self.result
        with tempfile.TemporaryDirectory(prefix="dialog-tts-") as folder:
            path = os.path.join(folder, f"out{suffix}")
            dialog = self._render_to(path, embed=bool(self.prod.review))
            copy_to_stdout(path)
        return dialog
