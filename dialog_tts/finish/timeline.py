"""The timeline: where every spoken line, pause and gap sits in the output.

Script events and synthesis outcomes in, positions out.  This is the only
place that computes positions: the mixer places clips where the timeline says,
and the report (and later subtitles, chapters, stems and the review page) read
the same entries.  It never touches samples: each line arrives with its length
in output frames (measured by the mixer's :func:`dialog_tts.finish.clips.placed_frames`),
or with the seconds its silence stands for when its synthesis failed.

Rules: consecutive lines are ``gap`` seconds apart; a ``[pause]`` adds its
length where it stands (before the first line or after the last one too); a
line with no audible audio takes no place and no gap; a failed line kept with
``--keep-going`` is silence as long as the line would take, plus one gap.
Positions are kept in seconds while walking and rounded to frames only where a
line is placed, so that rounding never accumulates.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Sequence, Union

from dialog_tts.script.parse import Chapter, Line, Pause
from dialog_tts.script.voice import Voice


class Kind(str, Enum):
    """What an entry of the timeline is."""

    LINE = "line"          # a spoken line, placed
    MISSING = "missing"    # a line whose synthesis failed, kept as silence (--keep-going)
    PAUSE = "pause"        # a [pause] from the script
    CHAPTER = "chapter"    # a chapter mark (no length; text is its title)
    INTRO = "intro"        # the intro clip, before the dialog (bookend)
    OUTRO = "outro"        # the outro clip, after the dialog (bookend)
    MUSIC = "music"        # the span the music bed plays under (bookend)


@dataclass(frozen=True)
class LineInput:
    """What the timeline needs of one spoken line: who says what, and how long it lasts."""

    line: Line
    voice: Voice
    frames: int | None            # length in output frames; None when synthesis failed
    missing_seconds: float = 0.0  # for a failed line: how long it would have taken


@dataclass(frozen=True)
class Entry:
    """One placed thing: a line, a missing line or a pause, from *start* for *frames* frames."""

    kind: Kind
    start: int
    frames: int
    source_line: int
    index: int = -1               # for lines: the index of the line among the script's lines
    speaker: str = ""
    text: str = ""
    voice: Voice | None = None

    @property
    def end(self) -> int:
        return self.start + self.frames


@dataclass
class Timeline:
    """Every entry in order of time, at one sample rate, and the total length in frames."""

    sample_rate: int
    entries: list[Entry] = field(default_factory=list)
    frames: int = 0

    @property
    def lines(self) -> list[Entry]:
        """The spoken lines that were placed (failed lines are not among them)."""
        return [e for e in self.entries if e.kind is Kind.LINE]

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def seconds(self, frames: int) -> float:
        return frames / self.sample_rate


Event = Union[Line, Pause, Chapter]


def build(events: Sequence[Event], lines: Sequence[LineInput], *, sample_rate: int, gap: float) -> Timeline:
    """Place *events* (the script's, in order) given one :class:`LineInput` per Line event."""
    builder = Builder(events, sample_rate=sample_rate, gap=gap)
    for item in lines:
        builder.add(item)
    return builder.finish()


class Builder:
    """The timeline built line by line, as each line's length becomes known (a streamed render).

    :meth:`add` places the next line (and the pauses and chapters before it) and returns the
    entries placed; :meth:`finish` places what follows the last line and gives the timeline.
    """

    def __init__(self, events: Sequence[Event], *, sample_rate: int, gap: float) -> None:
        self.timeline = Timeline(sample_rate)
        self.rate, self.gap = sample_rate, gap
        self.cursor = 0.0            # seconds; rounded to frames only where something is placed
        self.placed_any = False
        self.index = 0
        self._events = iter(events)

    def add(self, item: LineInput) -> list[Entry]:
        """Place the next line, given its length; the entries placed up to and including it."""
        first = len(self.timeline.entries)
        for event in self._events:
            if not self._other(event):
                self._line(item)
                return self.timeline.entries[first:]
        raise ValueError("more lines than the script has")

    def finish(self) -> Timeline:
        """Place the events after the last line; the whole timeline."""
        for event in self._events:
            if not self._other(event):
                raise ValueError("fewer lines than the script has")
        self.timeline.frames = round(self.cursor * self.rate)
        return self.timeline

    def _other(self, event: Event) -> bool:
        """Place a chapter or pause; False for a line (the caller places it)."""
        start = round(self.cursor * self.rate)
        if isinstance(event, Chapter):
            self.timeline.entries.append(Entry(Kind.CHAPTER, start, 0, event.line_no, text=event.title))
            return True
        if isinstance(event, Pause):
            self.timeline.entries.append(Entry(Kind.PAUSE, start, round(event.seconds * self.rate), event.line_no))
            self.cursor += event.seconds
            return True
        return False

    def _line(self, item: LineInput) -> None:
        index, self.index = self.index, self.index + 1
        start = round(self.cursor * self.rate)
        if item.frames is None:
            seconds = item.missing_seconds + self.gap
            self.timeline.entries.append(_entry(Kind.MISSING, start, round(seconds * self.rate), index, item))
            self.cursor += seconds
            return
        if item.frames and self.placed_any:
            self.cursor += self.gap
            start = round(self.cursor * self.rate)
        self.timeline.entries.append(_entry(Kind.LINE, start, item.frames, index, item))
        if item.frames:
            self.cursor = (start + item.frames) / self.rate
            self.placed_any = True


def _entry(kind: Kind, start: int, frames: int, index: int, item: LineInput) -> Entry:
    line = item.line
    return Entry(kind, start, frames, line.line_no, index, line.speaker, line.text, item.voice)


def bookend(timeline: Timeline, *, intro: int = 0, outro: int = 0, lead: int = 0, music: bool = False) -> Timeline:
    """*timeline* with an intro clip of *intro* frames before it and an outro after it.

    The dialog starts *lead* frames after the intro ends, and the outro *lead*
    frames after the dialog.  With *music*, a MUSIC entry marks the bed's span:
    from *lead* frames before the intro's end (overlapping its tail) to *lead*
    frames into the outro (or the end).
    """
    if not (intro or outro or music):
        return timeline
    offset = intro + lead
    out = Timeline(timeline.sample_rate)
    if intro:
        out.entries.append(Entry(Kind.INTRO, 0, intro, 0))
    out.entries.extend(replace(e, start=e.start + offset) for e in timeline.entries)
    dialog_end = offset + timeline.frames
    outro_start = dialog_end + lead
    out.frames = outro_start + outro
    if outro:
        out.entries.append(Entry(Kind.OUTRO, outro_start, outro, 0))
    if music:
        start = max(0, intro - lead)
        out.entries.append(Entry(Kind.MUSIC, start, min(out.frames, outro_start + lead) - start, 0))
    return out


@dataclass(frozen=True)
class ChapterMark:
    """A chapter: its title and where it starts and ends, in output frames."""

    title: str
    start: int
    end: int
    source_line: int


def chapters(timeline: Timeline) -> list[ChapterMark]:
    """The chapter marks, each starting with the first thing placed after it (the first one at 0)."""
    entries = timeline.entries
    starts: list[tuple[str, int, int]] = []
    heard = False
    for i, entry in enumerate(entries):
        if entry.kind is Kind.CHAPTER:
            nxt = next((e for e in entries[i + 1:] if e.kind in (Kind.LINE, Kind.MISSING, Kind.PAUSE)), None)
            start = 0 if not heard else (nxt.start if nxt is not None else entry.start)
            starts.append((entry.text, start, entry.source_line))
        elif entry.kind in (Kind.LINE, Kind.MISSING, Kind.PAUSE) and entry.frames:
            heard = True
    return [ChapterMark(title, start, starts[i + 1][1] if i + 1 < len(starts) else timeline.frames, line)
            for i, (title, start, line) in enumerate(starts)]
