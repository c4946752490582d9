"""The dialog script format: text file in, :class:`Script` out.

Rules (docs/script-format.md):

* ``Label: text`` starts a turn.  A label is a name, then optionally a
  ``(direction)`` and a ``{voice override}``, then a colon (not one between two
  digits, as in 10:30).  A name is 1-40 characters of letters (any script),
  digits, spaces and ``. , ' ’ - _ &``; names match case- and space-insensitively
  (``Lady Bracknell`` = ``lady  bracknell``).
* An unindented line whose first colon ends a label-like prefix within the
  first :data:`MAX_LABEL_LENGTH` characters is a label and must be a valid one
  (else an error naming the line): labels are never spoken.  Indent a
  continuation line that holds such a colon.
* An indented line continues the previous turn; so does a non-indented line
  without a label once a turn has started.  Before the first turn such a line is
  an error.  Blank lines end nothing; ``#`` at the start of a line is a comment,
  except ``## Title``, which starts a chapter.
* A front-matter block may open the file (dialog_tts.script.frontmatter): ``---``,
  ``key: value`` lines (title, artist, album, year, comment, cover), ``---``.
* ``[pause 800ms]`` / ``[pause 1.5s]`` inserts silence (at most
  :data:`MAX_PAUSE_SECONDS`), on its own line or inside a turn.  Any other
  ``[...]`` is a direction: not spoken unless ``speak_directions`` is set.  The
  directions of a turn (its label's parenthetical included) so far travel with
  each :class:`Line` it yields; the jobs step turns the known ones into delivery.
* UTF-8 with or without BOM, LF or CRLF line ends; at most 50 MB, from a regular file.
  A control character (NUL, ESC, a lone CR, ...; tab aside) anywhere is an error
  naming its line: it would cut or garble what is spoken.
* A spoken line holds at most :data:`MAX_LINE_CHARS` characters: a longer turn
  is split, at its lines' ends and then at sentence ends, into several lines of
  the same speaker; a single sentence longer than that is an error.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from dialog_tts.errors import ScriptError
from dialog_tts.script.textfiles import MAX_INPUT_BYTES, read_bytes

MAX_NAME_LENGTH = 40
#: A colon within this many characters of an unindented line's start may end a label.
MAX_LABEL_LENGTH = 100
#: The longest ``[pause ...]`` (seconds).
MAX_PAUSE_SECONDS = 60.0
#: The most characters one spoken line (one clip) says: about ten minutes of speech.
MAX_LINE_CHARS = 10_000
#: The most different directions one turn may hold (each of its lines carries them all).
MAX_TURN_DIRECTIONS = 100
_NAME_PUNCTUATION = frozenset(" .,'’-_&")
# A label: name, optional (direction), optional {override}, colon.  The name's class excludes
# every character that may follow it, so the match cannot backtrack; it only ever sees the
# first MAX_LABEL_LENGTH + 1 characters of a line (see _label).
_LABEL = re.compile(r"(?P<name>[^:(){}\[\]]*)(?:\((?P<direction>[^():{}]*)\)[ \t]*)?"
                    r"(?:\{(?P<override>[^{}:]*)\}[ \t]*)?:")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_PAUSE = re.compile(r"^\s*pause\b(?P<arg>.*)$", re.IGNORECASE)
_PAUSE_VALUE = re.compile(r"^\s*(?P<num>\d{1,9}(?:\.\d{1,9})?|\.\d{1,9})\s*(?P<unit>ms|s)\s*$", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
# What a label that _LABEL does not read looks like: a name, then from its first bracket on
# anything but a colon, ending with a closing bracket right before the colon ("B (x) (y):",
# "B [aside]:").  Such a line is a label, so it must be a valid one; never text to speak.
_LABEL_SHAPED = re.compile(r"[^:(){}\[\]]*[(\[{][^:]*[)\]}][ \t]*:")
# Control characters (tab, LF and a CR before LF aside): a NUL cuts what a backend speaks.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?![\r\n]|\Z)")
_LEADING_DIRECTIONS = re.compile(r"(?:\[[^\[\]]*\][ \t]*)+")
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？;])\s+")


def speaker_key(name: str) -> str:
    """The form in which speaker names are compared: case-folded, no spaces."""
    return _SPACE.sub("", unicodedata.normalize("NFC", name)).casefold()


def is_valid_name(name: str) -> bool:
    """True when *name* may name a speaker (see the module docstring)."""
    if not name or len(name) > MAX_NAME_LENGTH or name != name.strip():
        return False
    if not (name[0].isalnum() or unicodedata.category(name[0]).startswith("M")):
        return False
    for ch in name:
        if ch.isalnum() or ch in _NAME_PUNCTUATION:
            continue
        if unicodedata.category(ch).startswith("M"):  # combining marks of Indic scripts, etc.
            continue
        return False
    return True


def split_directions(text: str) -> list[str]:
    """``"aside, whispering"`` → ``["aside", "whispering"]`` (the directions one bracket holds)."""
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class Line:
    """One utterance: what *speaker* says, from line *line_no* of the script.

    *directions* are the turn's directions up to the end of this line (its label's
    parenthetical first), as written; *override* is the label's ``{...}`` voice
    override (a voice spec, unparsed), or "".
    """

    speaker: str
    text: str
    line_no: int
    directions: tuple[str, ...] = ()
    override: str = ""

    @property
    def key(self) -> str:
        return speaker_key(self.speaker)


@dataclass(frozen=True)
class Pause:
    """Silence inserted by a ``[pause ...]`` directive."""

    seconds: float
    line_no: int


@dataclass(frozen=True)
class Chapter:
    """A chapter mark (``## Title``): a new chapter starts with what follows."""

    title: str
    line_no: int


Event = Union[Line, Pause, Chapter]


@dataclass
class Script:
    """A parsed script: utterances, pauses and chapter marks in the order they are heard."""

    events: list[Event]
    path: str = "<script>"
    speakers: dict[str, str] = field(default_factory=dict)  # key -> name as first written
    meta: dict[str, str] = field(default_factory=dict)      # front matter: title, artist, ... (frontmatter.py)

    @property
    def lines(self) -> list[Line]:
        return [e for e in self.events if isinstance(e, Line)]

    def speaker_names(self) -> list[str]:
        return list(self.speakers.values())


def parse_pause(arg: str, *, path: str, line_no: int) -> float:
    m = _PAUSE_VALUE.match(arg)
    if not m:
        raise ScriptError(f"bad pause '[pause{arg[:40]}]': write it as [pause 800ms] or [pause 1.5s]",
                          path=path, line=line_no)
    value = float(m.group("num"))
    seconds = value / 1000.0 if m.group("unit").lower() == "ms" else value
    if seconds > MAX_PAUSE_SECONDS:
        raise ScriptError(f"pause of {seconds:g} s is longer than the most allowed, {MAX_PAUSE_SECONDS:g} s",
                          path=path, line=line_no)
    return seconds


@dataclass(frozen=True)
class Label:
    """A turn's label: the speaker's name, its (direction) and its {voice override}."""

    name: str
    directions: tuple[str, ...]
    override: str
    text: str                      # the rest of the line, after the colon


def _label(raw: str, *, path: str, line_no: int) -> Label | None:
    """The label an unindented line starts with; None if it has none; ScriptError if it is a bad one.

    Linear in the line's length: only the first MAX_LABEL_LENGTH + 1 characters are matched.
    """
    if raw[:1] in ("#", "[") or raw[:1].isspace():
        return None
    m = _LABEL.match(raw, 0, min(len(raw), MAX_LABEL_LENGTH + 1))
    if m is None:
        shaped = _LABEL_SHAPED.match(raw, 0, min(len(raw), MAX_LABEL_LENGTH + 1))
        if shaped is not None:
            label = shaped.group()[:-1].strip()
            raise ScriptError(f"cannot read the label {_shown(label)!r}: {_label_problem(label)}; a label is "
                              f"a name, then at most one (direction) and one {{voice override}}, in that order, "
                              f"then a colon (indent the line if it continues the previous turn)",
                              path=path, line=line_no)
        return None
    end = m.end()
    if raw[end - 2:end - 1].isdigit() and raw[end:end + 1].isdigit():   # 10:30, 3:1: not a label
        return None
    name = m.group("name").strip()
    if not is_valid_name(name):
        raise ScriptError(f"invalid speaker name {_shown(name)!r}: {_name_problem(name)}; a name is up to "
                          f"{MAX_NAME_LENGTH} letters, digits, spaces and . , ' - _ & (indent the line if it "
                          f"continues the previous turn)", path=path, line=line_no)
    direction = m.group("direction")
    if direction is not None and not direction.strip():
        raise ScriptError(f"empty direction '()' after speaker {name!r}", path=path, line=line_no)
    override = m.group("override")
    if override is not None and not override.strip():
        raise ScriptError(f"empty voice override '{{}}' after speaker {name!r}", path=path, line=line_no)
    return Label(name, tuple(split_directions(direction or "")), (override or "").strip(), raw[end:])


def _shown(text: str, width: int = 50) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _label_problem(label: str) -> str:
    """What is wrong with a label-shaped prefix that the label pattern does not read."""
    if "[" in label or "]" in label:
        return "a direction in a label goes in parentheses, as in 'B (aside):'"
    depth = 0
    for ch in label:
        depth += (ch in "({") - (ch in ")}")
        if depth > 1 or depth < 0:
            return "brackets inside brackets"
    if label.count("(") > 1:
        return "more than one (direction): give them in one, as in '(quietly, aside)'"
    if label.count("{") > 1:
        return "more than one {voice override}: give its settings in one, as in '{en-us+f3,rate=0.9x}'"
    if "{" in label and "(" in label and label.index("{") < label.index("("):
        return "the (direction) comes before the {voice override}"
    return "text between the brackets and the colon"


def _name_problem(name: str) -> str:
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"{len(name)} characters"
    bad = next((c for c in name if not (c.isalnum() or c in _NAME_PUNCTUATION
                                        or unicodedata.category(c).startswith("M"))), None)
    return f"{bad!r} is not allowed in a name" if bad else "a name starts with a letter or digit"


class _Builder:
    """Collects the pieces of the turn in progress and emits events."""

    def __init__(self, path: str, speak_directions: bool) -> None:
        self.path = path
        self.speak_directions = speak_directions
        self.events: list[Event] = []
        self.speakers: dict[str, str] = {}
        self.speaker: str | None = None
        self.directions: list[str] = []
        self.override = ""
        self.parts: list[tuple[str, int]] = []    # (words, line number)
        self.start_line = 0

    def start_turn(self, label: Label, line_no: int) -> None:
        self.flush()
        key = speaker_key(label.name)
        self.speaker = self.speakers.setdefault(key, label.name)
        self.directions = list(dict.fromkeys(label.directions))
        self.override = label.override
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
            else:
                if self.speaker is not None:
                    self._add_directions(split_directions(inner), line_no)
                if self.speak_directions:
                    self._add_words(inner, line_no)
            pos = m.end()
        self._add_words(self._checked(text[pos:], line_no), line_no)

    def _add_directions(self, directions: list[str], line_no: int) -> None:
        """Add the turn's new *directions*; each is kept once (delivery counts a tag once), and
        their number is bounded, since every line of the turn carries them all."""
        for direction in directions:
            if direction in self.directions:
                continue
            if len(self.directions) >= MAX_TURN_DIRECTIONS:
                raise ScriptError(f"more than {MAX_TURN_DIRECTIONS} different directions in one turn: start a "
                                  f"new turn ('Name: ...') now and then", path=self.path, line=line_no)
            self.directions.append(direction)

    def _checked(self, words: str, line_no: int) -> str:
        """*words* (text between directions), which must hold no stray bracket."""
        if "[" in words or "]" in words:
            shown = words.strip() if len(words.strip()) <= 60 else words.strip()[:59] + "…"
            raise ScriptError(f"unbalanced bracket in {shown!r}", path=self.path, line=line_no)
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
        self.parts.append((words, line_no))

    def flush(self) -> None:
        if self.parts and self.speaker is not None:
            directions = tuple(self.directions)
            if sum(len(words) + 1 for words, _ in self.parts) - 1 <= MAX_LINE_CHARS:
                chunks = [(" ".join(words for words, _ in self.parts), self.start_line)]
            else:
                chunks = self._split()
            for text, line_no in chunks:
                self.events.append(Line(self.speaker, text, line_no, directions, self.override))
        self.parts = []

    def _split(self) -> list[tuple[str, int]]:
        """The turn in progress as (text, line number) chunks of at most MAX_LINE_CHARS characters each.

        Split at the script's line ends, then at sentence ends (. ! ? … ;), the pieces packed
        back together in order up to the limit; a sentence longer than the limit is an error.
        """
        chunks: list[tuple[list[str], int, int]] = []   # (pieces, line number, characters)
        for words, line_no in self.parts:
            for sentence in _SENTENCE_END.split(words):
                if len(sentence) > MAX_LINE_CHARS:
                    raise ScriptError(f"a sentence of {len(sentence):,} characters is longer than one spoken "
                                      f"line may be ({MAX_LINE_CHARS:,} characters, about ten minutes of "
                                      f"speech): end its sentences with . ! or ? (a long turn is split "
                                      f"there) or break the text into several turns", path=self.path, line=line_no)
                if chunks and chunks[-1][2] + 1 + len(sentence) <= MAX_LINE_CHARS:
                    pieces, first, size = chunks[-1]
                    pieces.append(sentence)
                    chunks[-1] = (pieces, first, size + 1 + len(sentence))
                else:
                    chunks.append(([sentence], line_no, len(sentence)))
        return [(" ".join(pieces), first) for pieces, first, _size in chunks]


def parse_text(text: str, *, path: str = "<script>", speak_directions: bool = False) -> Script:
    """Parse script *text* (already decoded) into a :class:`Script`."""
    _check_controls(text, path=path)
    builder = _Builder(path, speak_directions)
    for line_no, raw in enumerate(text.split("\n"), start=1):
        raw = raw.rstrip("\r")
        stripped = raw.strip()
        if raw.startswith("## ") and stripped[3:].strip():
            builder.flush()
            builder.events.append(Chapter(stripped[3:].strip(), line_no))
            continue
        if not stripped or raw.startswith("#"):
            continue
        label = _label(raw, path=path, line_no=line_no)
        if label is None and raw.startswith("["):
            _no_label_after_directions(raw, path=path, line_no=line_no)
        if label is not None:
            builder.start_turn(label, line_no)
            builder.add_text(label.text, line_no)
            continue
        if builder.speaker is None and not _is_directions_only(stripped):
            shown = stripped[:30]
            raise ScriptError(f"text before any turn; start the line with a speaker "
                              f"name, as in 'A: {shown}'", path=path, line=line_no)
        builder.add_text(stripped, line_no)
    builder.flush()
    if not any(isinstance(e, Line) for e in builder.events):
        raise ScriptError("the script has no spoken lines (expected lines like 'A: Hello')", path=path)
    return Script(builder.events, path, builder.speakers)


def _no_label_after_directions(raw: str, *, path: str, line_no: int) -> None:
    """ScriptError if the unindented *raw*, after its leading ``[...]``, reads as a label: it would be spoken."""
    m = _LEADING_DIRECTIONS.match(raw)
    rest = raw[m.end():] if m else ""
    label = _label(rest, path=path, line_no=line_no) if rest else None
    if label is not None and m is not None:
        name, directions = _shown(label.name, 40), _shown(raw[:m.end()].strip(), 40)
        raise ScriptError(f"the label {name!r} comes after {directions}, so it would be spoken: a label starts "
                          f"its line (write '{name}: {directions} ...', or put {directions} on a line of its "
                          f"own)", path=path, line=line_no)


def _check_controls(text: str, *, path: str) -> None:
    """ScriptError naming the line and column of the first control character in *text*, if any."""
    m = _CONTROL.search(text)
    if m is None:
        return
    line = text.count("\n", 0, m.start()) + 1
    column = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    char = m.group()
    what = "carriage return" if char == "\r" else "control character"
    raise ScriptError(f"{what} {char!r} (U+{ord(char):04X}) at column {column}: a script holds no control "
                      f"characters, tab aside (they would cut or garble what is spoken); remove it",
                      path=path, line=line)


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
    """Read (a regular file, at most 50 MB; ``-``: stdin) and parse the script at *path*."""
    from dialog_tts.script import frontmatter

    stdin = os.fspath(path) == "-"
    shown = "<stdin>" if stdin else os.fspath(path)
    data = read_stdin(shown) if stdin else read_bytes(path, what="script", error=ScriptError)
    meta, body = frontmatter.split(decode(data, path=shown), path=shown, base=Path(path).parent)
    script = parse_text(body, path=shown, speak_directions=speak_directions)
    script.meta = meta
    return script


def read_stdin(shown: str) -> bytes:
    """The script on stdin, at most as large as a script file may be."""
    data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise ScriptError(f"script is larger than {MAX_INPUT_BYTES // 1000 ** 2} MB (the most dialog-tts reads)",
                          path=shown)
    return data
