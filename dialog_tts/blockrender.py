"""A render mixed in blocks: the long-form and streaming side of :meth:`dialog_tts.api.Renderer.render`.

The same pipeline, one line at a time: the engine gives each line's outcome in order
(:meth:`Engine.stream`), the timeline places it (:class:`timeline.Builder`), the block mixer
analyses it (:class:`blockmix.BlockMix`) and the writer takes the mix in blocks
(:mod:`dialog_tts.blockwrite`).  Nothing holds the whole mix or every clip:

- a file output is written after the whole script is analysed (the gain needs every line);
- ``--out -`` (and :meth:`Renderer.stream`) gives out audio as soon as the first lines are
  mixed, with the gain predicted (:func:`blockmix.predicted_gain`).

Music, intro, outro and stems need the whole mix and use the whole-buffer mixer.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import blockmix, blockwrite, deliver, engine, mix, produce, tags
from .audio import Clip, is_lossy
from .errors import InputError, OutputError, SynthesisFailed
from .jobs import Job
from .outputs import atomic_path, copy_to_stdout
from .results import LineRecord
from .script import Line, Script
from .timeline import Builder, Kind, LineInput, Timeline, chapters

log = logging.getLogger("dialog_tts")

#: With --mix-in-blocks left to auto, a mix larger than this (float32 samples) is mixed in blocks.
WHOLE_MIX_LIMIT = 1 << 30


def _needs_whole(prod: produce.Production) -> list[str]:
    return [what for what, on in (("--music", prod.music), ("--intro", prod.intro), ("--outro", prod.outro),
                                  ("--stems", prod.stems)) if on]


def check_streamable(prod: produce.Production) -> None:
    """A usage error if the render cannot be streamed (it needs the whole mix)."""
    needs = _needs_whole(prod)
    if needs:
        raise InputError(f"a streamed render cannot use {needs[0]}: it needs the whole mix")


def wanted(options: Any, prod: produce.Production, out: Any, seconds: float,
           settings: mix.MixSettings) -> bool:
    """Whether this render is mixed in blocks: asked for, streamed to stdout, or too long to hold."""
    needs_whole = _needs_whole(prod)
    if out is not None and os.fspath(out) == produce.STDOUT and prod.review:
        needs_whole.append("--review")     # its page embeds the streamed audio: written whole
    if options.mix_in_blocks and needs_whole:
        raise InputError(f"--mix-in-blocks cannot be used with {needs_whole[0]}: it needs the whole mix")
    if needs_whole or options.mix_in_blocks is False:
        return False
    if options.mix_in_blocks or (out is not None and os.fspath(out) == produce.STDOUT):
        return True
    return seconds * settings.sample_rate * settings.channels * 4 > WHOLE_MIX_LIMIT


@dataclass
class Pass:
    """What the analysis of a render gathered, line by line."""

    timeline: Timeline | None = None
    records: list[LineRecord] = field(default_factory=list)
    failures: list[engine.Failure] = field(default_factory=list)
    boundaries: dict[int, list[float]] = field(default_factory=dict)
    stats: engine.Stats | None = None


def lines(eng: engine.Engine, parsed: Script, jobs: Sequence[Job], settings: mix.MixSettings,
          keep_going: bool, found: Pass, estimate: Any, *, streamed: bool = False
          ) -> Iterator[tuple[Any, np.ndarray]]:
    """(timeline entry, prepared samples) of each placed line in order, as the engine gives them;
    records, failures, sentence starts and finally the timeline go into *found*.  *streamed*: the
    first line is synthesized first, alone, and a failed line stops it (unless *keep_going*)."""
    builder = Builder(parsed.events, sample_rate=settings.sample_rate, gap=settings.gap)
    with eng.stream(jobs, ramp=streamed) as run:
        yield from _outcomes(run, builder, parsed, jobs, settings, keep_going, found, estimate,
                             streamed and not keep_going)
    found.failures = list(run.failures)
    found.stats = run.stats
    found.timeline = builder.finish()


def _outcomes(run: Any, builder: Builder, parsed: Script, jobs: Sequence[Job], settings: mix.MixSettings,
              keep_going: bool, found: Pass, estimate: Any, stop_on_failure: bool
              ) -> Iterator[tuple[Any, np.ndarray]]:
    failed = False
    for index, outcome in run:
        line, job = parsed.lines[index], jobs[index]
        found.records.append(record_of(line, job, outcome))
        clip, outcome.clip = outcome.clip, None
        if clip is None and stop_on_failure:
            raise SynthesisFailed([engine.Failure(job, outcome.error or RuntimeError("failed"))], len(jobs))
        if clip is None and keep_going:
            log.warning("%s: left silent (%s)", job.where(), outcome.error)
            builder.add(LineInput(line, job.voice, None, estimate(job)))
            continue
        failed = failed or clip is None
        if failed or clip is None:     # nothing more is mixed once a line failed (no output is written)
            builder.add(LineInput(line, job.voice, 0))
            continue
        yield from _placed(builder, line, job, clip, settings, found)


def _placed(builder: Builder, line: Line, job: Job, clip: Clip, settings: mix.MixSettings,
            found: Pass) -> Iterator[tuple[Any, np.ndarray]]:
    samples = mix.placed(clip, settings)
    entry = builder.add(LineInput(line, job.voice, samples.shape[0]))[-1]
    starts = mix.sentence_starts(clip, settings)
    if starts:
        found.boundaries[entry.index] = starts
    if entry.kind is Kind.LINE and entry.frames:
        yield entry, samples


def record_of(line: Line, job: Job, o: engine.Outcome) -> LineRecord:
    """The report record of one line: the line as written, its voice and its synthesis outcome."""
    return LineRecord(line.line_no, line.speaker, line.text, job.voice.backend, job.voice.name,
                      o.source == "cache", o.source, o.attempts, round(o.seconds, 4),
                      error=str(o.error) if o.error else None,
                      quality=o.quality.to_json() if o.quality is not None else None,
                      flags=o.quality.flags() if o.quality is not None else [],
                      warnings=o.quality.warnings() if o.quality is not None else [])


def write_file(out: Any, bm: blockmix.BlockMix, prod: produce.Production,
               render_settings: mix.MixSettings, settings: mix.MixSettings, parsed: Script,
               timeline: Timeline) -> produce.Written:
    """Write the block mix to *out* (a file), re-limiting lower while a lossy file's decoded peak is over."""
    marks = chapters(timeline) if prod.chapters else []
    written = produce.Written(chapters=marks)
    suffix = Path(out).suffix.lower()
    with atomic_path(out) as tmp:
        for _encode_round in range(deliver.MAX_ENCODES):
            _encode(tmp, suffix, bm, prod, settings, marks)
            if not is_lossy(out):
                break
            got, peak = blockwrite.measure_file(tmp)
            written.loudness, written.true_peak = got, peak
            if peak <= render_settings.true_peak:
                break
            bm.ceiling *= 10 ** (-(peak - render_settings.true_peak + 0.1) / 20)
        else:
            raise OutputError(f"the encoded file still peaks at {written.true_peak:+.2f} dBTP, over the "
                              f"{render_settings.true_peak:g} dBTP ceiling, after {deliver.MAX_ENCODES} encodes")
        tag_values = tags.Tags.merged(parsed.meta, prod.tags)
        in_mp4 = suffix in produce.mp4.FORMATS        # its chapters are written with its audio
        if tag_values or (marks and not in_mp4):
            tags.write(tmp, tag_values, [] if in_mp4 else marks, settings.sample_rate, fmt=suffix)
    return written


def _encode(path: str, suffix: str, bm: blockmix.BlockMix, prod: produce.Production, settings: mix.MixSettings,
            marks: list[Any]) -> None:
    bm.peak = 0.0
    bm.taken.clear()
    with blockwrite.open_writer(path, suffix, settings.sample_rate, settings.channels,
                                bit_depth=settings.bit_depth, bitrate=produce.mp4.parse_bitrate(prod.bitrate),
                                chapters=marks, frames=bm.frames) as writer:
        for block in bm.blocks():
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


def conclude(dialog: Any, path: Any, timeline: Timeline, mixed: Any, written: Any, out: Any,
             started: float) -> None:
    """Fill in *dialog* from the timeline, the mix's figures and the file's (warning the notes)."""
    for note in [*mixed.notes, *written.notes]:
        log.warning("%s: %s", path, note)
    _finish(dialog, timeline, mixed, out, started)
    dialog.chapters = [{"title": c.title, "start": round(c.start / timeline.sample_rate, 4),
                        "end": round(c.end / timeline.sample_rate, 4), "line": c.source_line}
                       for c in written.chapters]
    if written.true_peak is not None:   # the file's figures (lossy: as decoded)
        dialog.true_peak = written.true_peak
    if written.loudness is not None:
        dialog.loudness = written.loudness


def _finish(dialog: Any, timeline: Timeline, mixed: Any, out: Any,
            started: float) -> None:
    """Fill in *dialog* from the timeline (line positions) and the mix (duration, loudness)."""
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


def open_stream(renderer: Any, script: Any, check_outputs: Any) -> BlockRun:
    """*script*'s mix as it is made (:meth:`Renderer.stream`): an iterable of float32 blocks ((n,) mono
    or (n, 2) stereo; ``sample_rate`` and ``channels`` on it), the first as soon as the first lines are
    mixed.  The loudness gain is predicted (levelled lines sit at -20 LUFS), not searched; a failed
    line stops it (:class:`SynthesisFailed`) unless ``keep_going``.  Its :class:`DialogResult` is its
    ``result`` once it has run out.  Music, intro, outro and stems need the whole mix.
    *check_outputs* is :func:`api.check_outputs` (the subtitles and review page it will write)."""
    prod = renderer.options.production()
    check_streamable(prod)
    parsed, cast, jobs = renderer.prepare(script)
    extras = [p for p in (prod.subtitles, prod.review) if p]
    check_outputs(renderer.options, script, None, extras, None)
    return BlockRun(renderer, parsed, cast, jobs, None, prod, renderer.settings, None, extras, time.perf_counter())


class BlockRun:
    """One render mixed in blocks: :meth:`render` (a file, or nothing) or :meth:`stream` (blocks out)."""

    def __init__(self, renderer: Any, parsed: Script, cast: Any, jobs: list[Job], out: Any,
                 prod: produce.Production, settings: mix.MixSettings, key: str | None, extras: list[str],
                 started: float) -> None:
        self.renderer, self.parsed, self.cast, self.jobs = renderer, parsed, cast, jobs
        self.out, self.prod, self.settings, self.key, self.extras = out, prod, settings, key, extras
        self.started = started
        self.found = Pass()
        self.result: Any = None
        self.sample_rate, self.channels = settings.sample_rate, settings.channels

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.stream()

    def _lines(self, streamed: bool) -> Iterator[tuple[Any, np.ndarray]]:
        options = self.renderer.options
        return lines(self.renderer.engine, self.parsed, self.jobs, self.settings, options.keep_going, self.found,
                     self.renderer.estimated_seconds, streamed=streamed)

    def render(self) -> Any:
        """Analyse every line, decide the gain, write the file (or only measure, *out* None)."""
        if self.out is not None and os.fspath(self.out) == produce.STDOUT:
            return self._to_stdout()
        return self._render_to(self.out)

    def _render_to(self, path: Any) -> Any:
        folder = str(Path(path).resolve().parent) if path is not None else None
        with blockmix.BlockMix(self.settings, folder=folder) as bm:
            for entry, samples in self._lines(streamed=False):
                bm.add(entry, samples)
            dialog = self._dialog()
            timeline = self.found.timeline
            assert timeline is not None
            figures = self._located(lambda: bm.finish(timeline.frames))
            if path is not None:
                written = self._located(lambda: write_file(path, bm, self.prod, self.renderer.settings,
                                                           self.settings, self.parsed, timeline))
            else:
                written = produce.Written(chapters=chapters(timeline) if self.prod.chapters else [])
                for _block in bm.blocks():
                    pass
            figures = bm.rendered(figures)
        return self._conclude(dialog, timeline, figures, written)

    def _located(self, step: Any) -> Any:
        from .errors import LoudnessError
        try:
            return step()
        except LoudnessError as exc:
            raise exc.locate(path=self.parsed.path) from None

    def _dialog(self) -> Any:
        """The report so far; a failed line (without --keep-going) fails the render here, nothing written."""
        from dataclasses import asdict

        from .results import DialogResult, Totals

        found, names = self.found, {self.parsed.speakers[k]: v.describe() for k, v in self.cast.items()}
        dialog = DialogResult(self.parsed.path, None, 0.0, self.settings.sample_rate, self.settings.channels,
                              found.records, names, Totals(**asdict(found.stats or engine.Stats())))
        if found.failures and not self.renderer.options.keep_going:
            dialog.totals.wall_time = time.perf_counter() - self.started
            self.renderer.write_report(dialog)
            raise SynthesisFailed(found.failures, len(self.jobs))
        return dialog

    def _conclude(self, dialog: Any, timeline: Timeline, figures: blockmix.Figures, written: Any) -> Any:
        from . import review, subtitles, uptodate
        prod = self.prod
        if prod.subtitles:
            review.write_text(prod.subtitles, subtitles.render(prod.subtitles, timeline, written.chapters,
                                                               self.found.boundaries))
        if prod.review:
            produce.write_review(prod, self.parsed, timeline, dialog.lines, written.chapters, self.out, None)
        conclude(dialog, self.parsed.path, timeline, figures, written, self.out, self.started)
        stats = self.found.stats
        if self.key is not None and self.out is not None and not self.found.failures and stats and not stats.flagged:
            uptodate.remember(self.renderer.cache, self.out, self.key, dialog, self.extras)
        self.renderer.write_report(dialog)
        return dialog

    # ------------------------------------------------------------ streaming
    def stream(self) -> Iterator[np.ndarray]:
        """The mix in blocks as the lines come (the gain predicted); :attr:`result` once it has run out."""
        with blockmix.BlockMix(self.settings, spill=False) as bm:
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

    def _ended(self, bm: blockmix.BlockMix) -> Iterator[tuple[Any, np.ndarray]]:
        yield from self._lines(streamed=True)
        assert self.found.timeline is not None
        bm.frames = self.found.timeline.frames

    def _to_stdout(self) -> Any:
        """WAV streams as it is mixed; another format is written to a temporary file, then copied (a
        FLAC or MP3 whose length its header cannot tell is one that libsndfile refuses to read)."""
        suffix = self.prod.stream_suffix()
        if suffix == ".wav":
            stream_to(stdout(), suffix, self.stream(), self.settings)
            return self.result
        with tempfile.TemporaryDirectory(prefix="dialog-tts-") as folder:
            path = os.path.join(folder, f"out{suffix}")
            dialog = self._render_to(path)
            copy_to_stdout(path)
        return dialog
