"""Producing an episode from a render: the music and its bookends, and the review page.

The render (:mod:`dialog_tts.render.pipeline`) asks :func:`bookends` before its first line (the
intro, outro and bed are read, and the dialog's lines start after the intro), frames the
timeline with them once the last line is placed, and writes the review page with
:func:`write_review`.  Every output is built from the same timeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dialog_tts.finish import clips as mix
from dialog_tts.finish import music
from dialog_tts.finish.timeline import ChapterMark, Timeline, bookend
from dialog_tts.io import audio, review, tags
from dialog_tts.io import musicfiles as sources
from dialog_tts.render import specs
from dialog_tts.script.parse import Script


@dataclass(frozen=True)
class Bookends:
    """The music of a render (None without any) and the frames the timeline gives its bookends."""

    music: music.Music | None = None
    intro: int = 0
    outro: int = 0
    lead: int = 0

    @property
    def offset(self) -> int:
        """Frames before the dialog's first frame: the intro and the lead after it."""
        return self.intro + self.lead if self.music is not None else 0

    def frame(self, timeline: Timeline) -> Timeline:
        """*timeline* with the intro, the outro and the bed's span."""
        if self.music is None:
            return timeline
        return bookend(timeline, intro=self.intro, outro=self.outro, lead=self.lead,
                       music=self.music.bed is not None)


def bookends(prod: specs.Production, settings: specs.MixSettings) -> Bookends:
    """Read the intro and outro, open the bed as a block reader."""
    if not (prod.music or prod.intro or prod.outro):
        return Bookends()
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
    return Bookends(music.Music(bed, intro, outro), _frames(intro, rate), _frames(outro, rate), lead)


def _frames(clip: audio.Clip | None, rate: int) -> int:
    return 0 if clip is None else mix.resampled_length(clip.frames, clip.sample_rate, rate)


@dataclass
class Written:
    """What writing the audio reports back: the file's true peak and loudness, notes, the chapters."""

    true_peak: float | None = None
    chapters: list[ChapterMark] = field(default_factory=list)
    loudness: float | None = None           # the file's, where measured after writing (lossy: decoded)
    notes: list[str] = field(default_factory=list)


def write_review(prod: specs.Production, parsed: Script, timeline: Timeline, records: Sequence[Any],
                 marks: list[ChapterMark], out: str | os.PathLike[str] | None, page_audio: bytes | None) -> None:
    """The review page (:mod:`dialog_tts.io.review`), its audio the output file or *page_audio*."""
    assert prod.review is not None
    src = review.audio_source(prod.review, out, page_audio, prod.stream_suffix())
    title = tags.Tags.merged(parsed.meta, prod.tags).title or Path(parsed.path).stem
    text = review.page(title, src, review.line_items(timeline, records), marks, timeline.sample_rate)
    review.write_text(prod.review, text)
