"""Producing an episode from a render: the music, and every output besides the mix.

The renderer calls three hooks: :func:`arrange` (before the mix: reads the
intro and outro, opens the bed as a block reader, and adds the bookends to the
timeline), :func:`identity` (what of these decides the outputs' bytes, for the
up-to-date check) and :func:`write_outputs` (after the mix: the audio with its
tags and chapters, stems, subtitles and the review page).  Every output is
built from the same timeline.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import audio, deliver, mix, mp4, music, outputs, review, sources, specs, subtitles, tags
from .script import Script
from .timeline import ChapterMark, Timeline, bookend, chapters

# defined in dialog_tts.specs (values, no NumPy); kept here for the modules that used them from here
AUDIO_FORMATS = specs.AUDIO_FORMATS
STDOUT = specs.STDOUT
Production = specs.Production
_stem_suffix = specs.stem_suffix
extra_outputs = specs.extra_outputs
identity = specs.identity
stem_path = specs.stem_path

def arrange(timeline: Timeline, prod: Production, settings: mix.MixSettings) -> tuple[Timeline, music.Music | None]:
    """The timeline with intro, outro and the bed's span; the music to mix (None without any)."""
    if not (prod.music or prod.intro or prod.outro):
        return timeline, None
    rate = settings.sample_rate
    intro = sources.read_clip(prod.intro, "intro") if prod.intro else None
    outro = sources.read_clip(prod.outro, "outro") if prod.outro else None
    bed = None
    if prod.music:
        reader = sources.BlockReader(prod.music, rate, settings.channels)
        bed = music.Bed(reader, reader.frames, level_db=prod.music_level, duck_db=prod.duck,
                        attack=prod.duck_attack, release=prod.duck_release,
                        fade_in=prod.music_fade_in, fade_out=prod.music_fade_out)
    lead = round((prod.music_lead if prod.music else settings.gap) * rate)
    framed = bookend(timeline, intro=_frames(intro, rate), outro=_frames(outro, rate), lead=lead,
                     music=bed is not None)
    return framed, music.Music(bed, intro, outro)


def _frames(clip: audio.Clip | None, rate: int) -> int:
    return 0 if clip is None else mix.resampled_length(clip.frames, clip.sample_rate, rate)


@dataclass
class Written:
    """What :func:`write_outputs` reports back: the file's true peak and loudness, notes, the chapters."""

    true_peak: float | None = None
    chapters: list[ChapterMark] = field(default_factory=list)
    loudness: float | None = None           # the file's, where measured after writing (lossy: decoded)
    notes: list[str] = field(default_factory=list)


def sentence_boundaries(clips: Sequence[audio.Clip | None], settings: mix.MixSettings) -> dict[int, list[float]]:
    """Per line index, where its sentences start in its placed clip (seconds), for lines whose
    backend said where (see :attr:`audio.Clip.marks`)."""
    found = {}
    for index, clip in enumerate(clips):
        starts = mix.sentence_starts(clip, settings) if clip is not None else []
        if starts:
            found[index] = starts
    return found


def write_outputs(out: str | os.PathLike[str] | None, mixed: mix.MixResult, timeline: Timeline,
                  clips: list[audio.Clip | None], parsed: Script, records: Sequence[Any], prod: Production,
                  settings: mix.MixSettings, bed: music.Music | None, bit_depth: str | None = None,
                  boundaries: Mapping[int, Sequence[float]] | None = None) -> Written:
    """Write the audio (with tags and chapters), then the stems, subtitles and review page asked for.

    *settings* are the render's (the ceiling and target the file must keep); *bit_depth*
    the sample format of WAV and FLAC; *boundaries* where each line's sentences start (subtitles)."""
    marks = chapters(timeline) if prod.chapters else []
    written = Written(chapters=marks)
    page_audio: bytes | None = None
    if out is not None and os.fspath(out) == STDOUT:
        page_audio = _to_stdout(mixed, prod, settings, parsed, marks, written, bit_depth)
    elif out is not None:
        with audio.atomic_path(out) as tmp:
            _encode(tmp, Path(out).suffix.lower(), mixed, prod, settings, parsed, marks, written, bit_depth)
    if prod.stems:
        write_stems(prod, parsed, timeline, clips, settings, mixed, bed, out)
    if prod.subtitles:
        review.write_text(prod.subtitles, subtitles.render(prod.subtitles, timeline, marks, boundaries))
    if prod.review:
        write_review(prod, parsed, timeline, records, marks, out, page_audio)
    return written


def write_review(prod: Production, parsed: Script, timeline: Timeline, records: Sequence[Any],
                 marks: list[ChapterMark], out: str | os.PathLike[str] | None, page_audio: bytes | None) -> None:
    """The review page (:mod:`dialog_tts.review`), its audio the output file or *page_audio*."""
    assert prod.review is not None
    src = review.audio_source(prod.review, out, page_audio, prod.stream_suffix())
    title = tags.Tags.merged(parsed.meta, prod.tags).title or Path(parsed.path).stem
    text = review.page(title, src, review.line_items(timeline, records), marks, timeline.sample_rate)
    review.write_text(prod.review, text)


def _encode(path: str, suffix: str, mixed: mix.MixResult, prod: Production, settings: mix.MixSettings,
            parsed: Script, marks: list[ChapterMark], written: Written, bit_depth: str | None) -> None:
    """Write the mix to *path* in the format of *suffix*, then its tags; the file's figures into *written*."""
    if suffix in mp4.FORMATS:
        written.true_peak = mp4.write(path, mixed.samples, mixed.sample_rate, bitrate=mp4.parse_bitrate(prod.bitrate),
                                      chapters=marks, ceiling_db=settings.true_peak)
    else:
        figures = deliver.encode(path, mixed, settings, bit_depth)
        written.true_peak, written.loudness = figures.true_peak, figures.loudness
        written.notes.extend(figures.notes)
    tag_values = tags.Tags.merged(parsed.meta, prod.tags)
    if tag_values or marks:
        tags.write(path, tag_values, marks, mixed.sample_rate, fmt=suffix)


def _to_stdout(mixed: mix.MixResult, prod: Production, settings: mix.MixSettings, parsed: Script,
               marks: list[ChapterMark], written: Written, bit_depth: str | None) -> bytes | None:
    """Encode to a temporary file, then copy it to stdout (a pipe cannot be sought back to fix a header)."""
    suffix = prod.stream_suffix()
    with tempfile.TemporaryDirectory(prefix="dialog-tts-") as folder:
        path = os.path.join(folder, f"out{suffix}")
        _encode(path, suffix, mixed, prod, settings, parsed, marks, written, bit_depth)
        outputs.copy_to_stdout(path)
        return Path(path).read_bytes() if prod.review else None


def write_stems(prod: Production, parsed: Script, timeline: Timeline, clips: list[audio.Clip | None],
                settings: mix.MixSettings, mixed: mix.MixResult, bed: music.Music | None,
                out: str | os.PathLike[str] | None) -> None:
    """One file per speaker (and ``music``), each as long as the mix, with the mix's loudness gain."""
    folder = Path(prod.stems or ".")
    folder.mkdir(parents=True, exist_ok=True)
    suffix = _stem_suffix(prod, out)
    speakers = list(parsed.speakers.values())
    for name, samples in mix.mix_stems(timeline, clips, settings, gain_db=mixed.gain_db, music=bed, speakers=speakers,
                                       line_gains=mixed.line_gains):
        audio.write(stem_path(folder, name, suffix), samples, settings.sample_rate)
