"""The dialog script format: text file in, :class:`Script` out.

Rules (README, "Script format"):

* ``Name: text`` starts a turn.  A name is 1-40 characters of letters (any
  script), digits, spaces and ``. ' - _``; names match case- and
  space-insensitively (``Lady Bracknell`` = ``lady  bracknell``).
* An indented line continues the previous turn; so does a non-indented line
  without a name once a turn has started.  Before the first turn such a line is
  an error.  Blank lines end nothing; ``#`` at the start of a line is a comment.
* ``[pause 800ms]`` / ``[pause 1.5s]`` inserts silence, on its own line or inside
  a turn.  Any other ``[...]`` is a stage direction: not spoken unless
  ``speak_directions`` is set.
* UTF-8 with or without BOM, LF or CRLF line ends.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from .errors import ScriptError

MAX_NAME_LENGTH = 40
_NAME_PUNCTUATION = frozenset(" .'-_")
_TURN = re.compile(r"^(?P<name>[^\s:#\[][^:]*?)\s*:(?P<text>.*)$")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_PAUSE = re.compile(r"^\s*pause\b(?P<arg>.*)$", re.IGNORECASE)
_PAUSE_VALUE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>ms|s)\s*$", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def speaker_key(name: str) -> str:
    """The form in which speaker names are compared: case-folded, no spaces."""
    return _SPACE.sub("", unicodedata.normalize("NFC", name)).casefold()


def is_valid_name(name: str) -> bool:
    """True when *name* may name a speaker (see the module docstring)."""
    if not name or len(name) > MAX_NAME_LENGTH or name != name.strip():
        return False
    for ch in name:
        if ch.isalnum() or ch in _NAME_PUNCTUATION:
            continue
        if unicodedata.category(ch).startswith("M"):  # combining marks of Indic scripts, etc.
            continue
        return False
    return True


@dataclass(frozen=True)
class Line:
    """One utterance: what *speaker* says, from line *line_no* of the script."""

    speaker: str
    text: str
    line_no: int

    @property
    def key(self) -> str:
        return speaker_key(self.speaker)


@dataclass(frozen=True)
class Pause:
    """Silence inserted by a ``[pause ...]`` directive."""

    seconds: float
    line_no: int


Event = Union[Line, Pause]


@dataclass
class Script:
    """A parsed script: utterances and pauses in the order they are heard."""

    events: list[Event]
    path: str = "<script>"
    speakers: dict[str, str] = field(default_factory=dict)  # key -> name as first written

    @property
    def lines(self) -> list[Line]:
        return [e for e in self.events if isinstance(e, Line)]

    def speaker_names(self) -> list[str]:
        return list(self.speakers.values())


def parse_pause(arg: str, *, path: str, line_no: int) -> float:
    m = _PAUSE_VALUE.match(arg)
    if not m:
        raise ScriptError(f"bad pause '[pause{arg}]': write it as [pause 800ms] or [pause 1.5s]",
                          path=path, line=line_no)
    value = float(m.group("num"))
    return value / 1000.0 if m.group("unit").lower() == "ms" else value


class _Builder:
    """Collects the pieces of the turn in progress and emits events."""

    def __init__(self, path: str, speak_directions: bool) -> None:
        self.path = path
        self.speak_directions = speak_directions
        self.events: list[Event] = []
        self.speakers: dict[str, str] = {}
        self.speaker: str | None = None
        self.parts: list[str] = []
        self.start_line = 0

    def start_turn(self, name: str, line_no: int) -> None:
        self.flush()
        key = speaker_key(name)
        self.speaker = self.speakers.setdefault(key, name)
        self.start_line = line_no

    def add_text(self, text: str, line_no: int) -> None:
        """Add *text* (which may hold directions) to the current turn."""
        pos = 0
        for m in _BRACKET.finditer(text):
            self._add_words(self._checked(text[pos:m.start()], line_no), line_no)
            inner = m.group(1)
            pause = _PAUSE.match(inner)
            if pause:
                seconds = parse_pause(pause.group("arg"), path=self.path, line_no=line_no)
                self.flush()
                self.events.append(Pause(seconds, line_no))
            elif self.speak_directions:
                self._add_words(inner, line_no)
            pos = m.end()
        self._add_words(self._checked(text[pos:], line_no), line_no)

    def _checked(self, words: str, line_no: int) -> str:
        """*words* (text between directions), which must hold no stray bracket."""
        if "[" in words or "]" in words:
            raise ScriptError(f"unbalanced bracket in {words.strip()!r}", path=self.path, line=line_no)
        return words

    def _add_words(self, words: str, line_no: int) -> None:
        words = words.strip()
        if not words:
            return
        if self.speaker is None:
            raise ScriptError("direction to speak before any 'Name:' turn; nobody to speak it",
                              path=self.path, line=line_no)
        if not self.parts:
            self.start_line = line_no
        self.parts.append(words)

    def flush(self) -> None:
        if self.parts and self.speaker is not None:
            self.events.append(Line(self.speaker, " ".join(self.parts), self.start_line))
        self.parts = []


def parse_text(text: str, *, path: str = "<script>", speak_directions: bool = False) -> Script:
    """Parse script *text* (already decoded) into a :class:`Script`."""
    builder = _Builder(path, speak_directions)
    for line_no, raw in enumerate(text.split("\n"), start=1):
        raw = raw.rstrip("\r")
        stripped = raw.strip()
        if not stripped or raw.startswith("#"):
            continue
        indented = raw[0].isspace()
        m = None if indented else _TURN.match(raw)
        if m and is_valid_name(m.group("name")):
            builder.start_turn(m.group("name"), line_no)
            builder.add_text(m.group("text"), line_no)
            continue
        if builder.speaker is None and not _is_directions_only(stripped):
            if m:
                raise ScriptError(f"invalid speaker name {m.group('name')!r}: use up to "
                                  f"{MAX_NAME_LENGTH} letters, digits, spaces and . ' - _",
                                  path=path, line=line_no)
            raise ScriptError(f"text before any turn; start the line with a speaker "
                              f"name, as in 'A: {stripped[:30]}'", path=path, line=line_no)
        builder.add_text(stripped, line_no)
    builder.flush()
    if not any(isinstance(e, Line) for e in builder.events):
        raise ScriptError("the script has no spoken lines (expected lines like 'A: Hello')", path=path)
    return Script(builder.events, path, builder.speakers)


def _is_directions_only(stripped: str) -> bool:
    return bool(stripped) and not _BRACKET.sub("", stripped).strip()


def decode(data: bytes, *, path: str = "<script>") -> str:
    """Decode script bytes: UTF-8 with or without BOM, anything else is an error."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ScriptError("the file is UTF-16; save it as UTF-8", path=path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ScriptError(f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
                          path=path, line=line) from None


def load(path: str | os.PathLike[str], *, speak_directions: bool = False) -> Script:
    """Read and parse the script at *path*."""
    shown = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise ScriptError("is a directory, not a script file", path=shown) from None
    except OSError as exc:
        raise ScriptError(f"cannot read script: {exc.strerror or exc}", path=shown) from None
    return parse_text(decode(data, path=shown), path=shown, speak_directions=speak_directions)
