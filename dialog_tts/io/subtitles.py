"""Subtitles from the timeline: SRT and WebVTT.

One cue per spoken line, from the first to the last audible sample of its
clip as placed in the output (the timeline's positions are those of the
trimmed clips, so cues sit on the speech).  A line longer than ``max_chars``
is split at sentence boundaries into several cues; each cue's share of the
line's time follows the audio where the backend told where its sentences
start (``boundaries``: seconds into the clip), and the text's length
otherwise.  Failed lines and pauses make no cue; stage directions were never
part of a line's text.  WebVTT cues carry the speaker as a voice span
(``<v Lady Bracknell>``) and the file opens with a NOTE listing the chapters;
SRT cues start with ``Speaker:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from dialog_tts.finish.timeline import ChapterMark, Timeline
from dialog_tts.render import specs

MAX_CHARS = 84          # two subtitle rows of 42 characters
_SENTENCE = re.compile(r"(?<=[.!?…。！？])\s+")
FORMATS = specs.SUBTITLE_FORMATS


@dataclass(frozen=True)
class Cue:
    start: float          # seconds
    end: float
    speaker: str
    text: str
    source_line: int


def sentences(text: str) -> list[str]:
    """*text* split after ., !, ? or … followed by a space."""
    return [s for s in _SENTENCE.split(text.strip()) if s]


def group(parts: list[str], max_chars: int) -> list[list[int]]:
    """Indices of consecutive sentences joined into cues of at most *max_chars* (a longer sentence alone)."""
    groups: list[list[int]] = []
    size = 0
    for i, part in enumerate(parts):
        if groups and size + 1 + len(part) <= max_chars:
            groups[-1].append(i)
            size += 1 + len(part)
        else:
            groups.append([i])
            size = len(part)
    return groups


def cues(timeline: Timeline, *, max_chars: int = MAX_CHARS,
         boundaries: Mapping[int, Sequence[float]] | None = None) -> list[Cue]:
    """Cues for every placed line; *boundaries*: per line index, sentence start times (s) in its clip."""
    rate = timeline.sample_rate
    out: list[Cue] = []
    for entry in timeline.lines:
        if not entry.frames:
            continue
        start, end = entry.start / rate, entry.end / rate
        parts = sentences(entry.text) or [entry.text]
        chosen = group(parts, max_chars) if len(entry.text) > max_chars else [list(range(len(parts)))]
        times = _sentence_times(parts, start, end, (boundaries or {}).get(entry.index))
        for ids in chosen:
            a, b = times[ids[0]][0], times[ids[-1]][1]
            out.append(Cue(a, b, entry.speaker, " ".join(parts[i] for i in ids), entry.source_line))
    return out


def _sentence_times(parts: list[str], start: float, end: float,
                    given: Sequence[float] | None) -> list[tuple[float, float]]:
    """(start, end) seconds of each sentence: from the backend's boundaries, else by length of text."""
    if given is not None and len(given) == len(parts):
        starts = [min(end, max(start, start + t)) for t in given]
        starts[0] = start
    else:
        total = sum(len(p) for p in parts) or 1
        starts, pos = [], start
        for p in parts:
            starts.append(pos)
            pos += (end - start) * len(p) / total
    return [(s, starts[i + 1] if i + 1 < len(starts) else end) for i, s in enumerate(starts)]


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _note_text(text: str) -> str:
    """*text* fit for a WebVTT NOTE block: one line, never ``-->`` (which would make the line a cue's timing)."""
    return " ".join(text.split()).replace("-->", "-- >")


def srt(items: Sequence[Cue]) -> str:
    blocks = [f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{c.speaker}: {c.text}\n"
              for i, c in enumerate(items, start=1)]
    return "\n".join(blocks)


def vtt(items: Sequence[Cue], chapters: Sequence[ChapterMark] = (), rate: int = 1) -> str:
    head = ["WEBVTT", ""]
    if chapters:
        head += ["NOTE Chapters"] + [f"{_clock(c.start / rate, '.')} {_note_text(c.title)}" for c in chapters] + [""]
    blocks = [f"{i}\n{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n<v {_escape(c.speaker)}>{_escape(c.text)}\n"
              for i, c in enumerate(items, start=1)]
    return "\n".join(head) + "\n" + "\n".join(blocks)


def render(path: str | Path, timeline: Timeline, chapters: Sequence[ChapterMark] = (),
           boundaries: Mapping[int, Sequence[float]] | None = None) -> str:
    """The text of the subtitles file *path* (SRT or WebVTT, from its extension)."""
    items = cues(timeline, boundaries=boundaries)
    if Path(path).suffix.lower() == ".srt":
        return srt(items)
    return vtt(items, chapters, timeline.sample_rate)
