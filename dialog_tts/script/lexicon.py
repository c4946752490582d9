"""Pronunciation lexicon: words mapped to a respelling or to phonemes.

Given as ``--lexicon names.yaml`` or as ``lexicon:`` in a speaker map (a mapping,
or the path of a lexicon file relative to the map)::

    Siobhan: Shiv-awn                         # a respelling
    Saoirse: {phonemes: "ˈsɪɚʃə"}             # IPA phonemes (piper, hibari)
    Nguyen: {say: Win, phonemes: "wˈɪn", espeak: "w'In"}

Matching is whole-word and case-insensitive.  Each backend says the entry its
own way (:meth:`Backend.pronounce <dialog_tts.backends.base.Backend.pronounce>`):
piper ``[[ phonemes ]]``, espeak ``[[ espeak mnemonics ]]``, Edge and Qwen the
respelling.  Only the lines an entry touches change, so only those lines change
their cache key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from dialog_tts.errors import VoiceSpecError, excerpt
from dialog_tts.script.textfiles import compose_yaml, read_text

MAX_WORD_LENGTH = 100
MAX_VALUE_LENGTH = 300
_KEYS = ("say", "phonemes", "espeak")
#: How much of a word a message quotes: the file may not be a lexicon at all (/etc/shadow).
_SHOWN = 20


@dataclass(frozen=True)
class Entry:
    """How to say one word: a respelling, IPA phonemes, espeak phoneme mnemonics (any may be empty)."""

    say: str = ""
    phonemes: str = ""
    espeak: str = ""


class Lexicon:
    """Words (case-insensitive, whole words) and their entries."""

    def __init__(self, entries: Mapping[str, Entry] | None = None) -> None:
        self.entries: dict[str, Entry] = {word.lower(): e for word, e in (entries or {}).items()}
        words = sorted(self.entries, key=len, reverse=True)      # longest first: "New York" before "New"
        self._pattern = (re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)", re.IGNORECASE)
                         if words else None)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def merged(self, other: Lexicon) -> Lexicon:
        """This lexicon with *other*'s entries added (they win on the same word)."""
        return Lexicon({**self.entries, **other.entries})

    def apply(self, text: str, pronounce: Callable[[str, Entry], str]) -> str:
        """*text* with every listed word replaced by ``pronounce(word as written, entry)``."""
        if self._pattern is None:
            return text

        def replace(m: re.Match[str]) -> str:
            entry = self.entries.get(m.group(0).lower())
            return pronounce(m.group(0), entry) if entry is not None else m.group(0)

        return self._pattern.sub(replace, text)


def _entry(word: str, value: Any, *, path: str, line: int | None) -> Entry:
    def fail(msg: str) -> VoiceSpecError:
        return VoiceSpecError(f"lexicon word {excerpt(word, _SHOWN)}: {msg}", path=path, line=line)

    if not word.strip() or len(word) > MAX_WORD_LENGTH or word != word.strip():
        raise fail(f"a word is 1 to {MAX_WORD_LENGTH} characters, without leading or trailing spaces")
    if isinstance(value, str):
        value = {"say": value}
    if not isinstance(value, Mapping):
        raise fail("give a respelling (Siobhan: Shiv-awn) or a mapping ({phonemes: \"ʃɪˈvɔːn\"})")
    unknown = sorted(str(k) for k in value if k not in _KEYS)
    if unknown:
        raise fail(f"unknown key {excerpt(unknown[0], _SHOWN)} (known: {', '.join(_KEYS)})")
    fields: dict[str, str] = {}
    for key in _KEYS:
        text = value.get(key)
        if text is None:
            continue
        text = " ".join(str(text).split())
        if not text or len(text) > MAX_VALUE_LENGTH or any(c in text for c in "[]{}"):
            raise fail(f"{key} must be 1 to {MAX_VALUE_LENGTH} characters without brackets or braces")
        fields[key] = text
    if not fields:
        raise fail("the entry says nothing: give say, phonemes or espeak")
    return Entry(**fields)


def from_node(loader: Any, node: Any, *, path: str) -> Lexicon:
    """A lexicon from a composed YAML mapping node (in a lexicon file or a speaker map)."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise VoiceSpecError("a lexicon is a mapping of words to respellings or phonemes",
                             path=path, line=node.start_mark.line + 1)
    entries: dict[str, Entry] = {}
    seen: set[str] = set()
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise VoiceSpecError("lexicon words must be plain text", path=path, line=line)
        word = str(key_node.value)
        if word.lower() in seen:
            raise VoiceSpecError(f"lexicon word {excerpt(word, _SHOWN)} is listed twice", path=path, line=line)
        seen.add(word.lower())
        try:
            value = loader.construct_object(value_node, deep=True)
        except yaml.YAMLError as exc:
            raise VoiceSpecError(f"lexicon word {excerpt(word, _SHOWN)}: {exc}".splitlines()[0], path=path,
                                 line=line) from None
        entries[word] = _entry(word, value, path=path, line=line)
    return Lexicon(entries)


def load(path: str | os.PathLike[str]) -> Lexicon:
    """Read the lexicon file at *path* (YAML, at most 50 MB)."""
    shown = os.fspath(path)
    text = read_text(path, what="lexicon", error=VoiceSpecError)
    loader, root = compose_yaml(text, path=shown, error=VoiceSpecError)
    try:
        return Lexicon() if root is None else from_node(loader, root, path=shown)
    finally:
        loader.dispose()
