"""The timeline: where every spoken line, pause and gap sits in the output.

Script events and synthesis outcomes in, positions out.  This is the only
place that computes positions: the mixer places clips where the timeline says,
and the report (and later subtitles, chapters, stems and the review page) read
the same entries.  It never touches samples: each line arrives with its length
in output frames (measured by the mixer's :func:`dialog_tts.mix.placed_frames`),
or with the seconds its silence stands for when its synthesis failed.

Rules: consecutive lines are ``gap`` seconds apart; a ``[pause]`` adds its
length where it stands (before the first line or after the last one too); a
line with no audible audio takes no place and no gap; a failed line kept with
``--keep-going`` is silence as long as the line would take, plus one gap.
Positions are kept in seconds while walking and rounded to frames only where a
line is placed, so that rounding never accumulates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Sequence, Union

from .script import Line, Pause
from .voice import Voice


class Kind(str, Enum):
    """What an entry of the timeline is."""

    LINE = "line"          # a spoken line, placed
    MISSING = "missing"    # a line whose synthesis failed, kept as silence (--keep-going)
    PAUSE = "pause"        # a [pause] from the script


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


Event = Union[Line, Pause]


def build(events: Sequence[Event], lines: Sequence[LineInput], *, sample_rate: int, gap: float) -> Timeline:
    """Place *events* (the script's, in order) given one :class:`LineInput` per Line event."""
    timeline = Timeline(sample_rate)
    cursor = 0.0            # seconds; rounded to frames only where something is placed
    placed_any = False
    inputs = iter(enumerate(lines))
    for event in events:
        start = round(cursor * sample_rate)
        if isinstance(event, Pause):
            timeline.entries.append(Entry(Kind.PAUSE, start, round(event.seconds * sample_rate), event.line_no))
            cursor += event.seconds
            continue
        index, item = next(inputs)
        if item.frames is None:
            seconds = item.missing_seconds + gap
            timeline.entries.append(_entry(Kind.MISSING, start, round(seconds * sample_rate), index, item))
            cursor += seconds
            continue
        if item.frames and placed_any:
            cursor += gap
            start = round(cursor * sample_rate)
        timeline.entries.append(_entry(Kind.LINE, start, item.frames, index, item))
        if item.frames:
            cursor = (start + item.frames) / sample_rate
            placed_any = True
    timeline.frames = round(cursor * sample_rate)
    return timeline


def _entry(kind: Kind, start: int, frames: int, index: int, item: LineInput) -> Entry:
    line = item.line
    return Entry(kind, start, frames, line.line_no, index, line.speaker, line.text, item.voice)
