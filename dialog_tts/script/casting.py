"""Casting: every speaker of a script gets a resolved :class:`Voice`.

A speaker's fields are the speaker map's ``defaults`` under its ``--voices``
spec, or else under its map entry.  The speaker's backend settles the keys it
owns (:attr:`Backend.path_keys` are relative to the map's folder;
:meth:`Backend.expand_fields` may refer to other speakers, as a Qwen blend
does).  Speakers left without a voice name get their backend's palette in order
of first appearance; speakers without a pan are spread across the stereo field.

Automatic casting knows sex: a speaker's ``gender`` (spec or map), else a title in
its name (``Lady``, ``Mr``: :data:`FEMALE_WORDS`, :data:`MALE_WORDS`), else its
first name (gender-guesser's table of given names; ``mostly_`` answers count)
picks a voice of that sex; a speaker of unknown sex gets a voice of the other sex
than the speaker before it, so consecutive speakers differ.  No voice is used
twice while the palette has an unused voice of the sex wanted; past that, the
voice used least is reused, and the speakers who share it are placed far apart
in the stereo field.  An ``accent`` (spec or map) picks voices of that accent,
and front matter ``language: en-GB`` prefers British voices.  Without a chosen
backend the palette is :data:`DEFAULT_CAST` (Kokoro's voices), or, where the
kokoro backend cannot load, :data:`FALLBACK_CAST` (said once).  Every speaker's
voice comes with the reason it was chosen.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Iterable, Mapping

from dialog_tts import backends
from dialog_tts.defaults import DEFAULT_BACKEND
from dialog_tts.errors import DialogTTSError, InputError, UnknownVoiceError
from dialog_tts.script.parse import Script, speaker_key
from dialog_tts.script.speakers import SpeakerMap, voice_from_fields
from dialog_tts.script.voice import Voice

log = logging.getLogger("dialog_tts")

#: Words in a speaker's name that hint at a woman (whole words, any case, a trailing dot ignored).
FEMALE_WORDS = frozenset("""mrs miss ms lady madam madame mme mlle mademoiselle dame queen princess duchess
    countess baroness empress marchioness aunt auntie grandma granny grandmother mother mum mom sister nun
    abbess mistress wife woman girl maid""".split())
#: Words in a speaker's name that hint at a man.
MALE_WORDS = frozenset("""mr mister sir lord king prince duke earl count baron emperor marquis marquess uncle
    grandpa grandfather father dad brother monk abbot husband man boy lad monsieur""".split())

#: Titles that tell no sex: skipped when looking for a speaker's first name ("Dr Emily Stone").
NEUTRAL_WORDS = frozenset("""dr doctor prof professor rev reverend fr captain capt col colonel major lt lieutenant
    sgt sergeant general gen admiral commander inspector detective officer constable judge justice saint st
    old young little big the""".split())

#: The automatic cast when no backend is chosen: kokoro's palette (:func:`_default_cast`).
DEFAULT_CAST_BACKEND = "kokoro"
#: The automatic cast where the kokoro backend cannot load: (backend, voice), the natural voices first.
#: Entries a backend does not offer now (a hibari voice not downloaded) are skipped.
FALLBACK_CAST: tuple[tuple[str, str], ...] = (
    ("hibari", "heart"), ("piper", "joe-light"),
    ("hibari", "kore"), ("hibari", "fenrir"), ("hibari", "emma"), ("hibari", "fable"),
    ("hibari", "heart-low"), ("piper", "joe-tenor"),
)
#: gender-guesser's answers, as a sex ("andy" and "unknown" tell none).
_GUESSED = {"female": "female", "mostly_female": "female", "male": "male", "mostly_male": "male"}


def gender_hint(name: str) -> tuple[str, str] | None:
    """(gender, word) from the first title or role word in a speaker's name, or None."""
    for word in re.findall(r"[^\W\d_]+", name):
        lowered = word.lower()
        if lowered in FEMALE_WORDS:
            return "female", word
        if lowered in MALE_WORDS:
            return "male", word
    return None


@lru_cache(maxsize=1)
def _name_table() -> dict[str, str]:
    """gender-guesser's answer for each name in its table that tells a sex (lowercase name: female,
    mostly_female, male or mostly_male).  Worked out once per gender-guesser version and kept in the
    model cache (:mod:`dialog_tts.backends.derived`): gender-guesser parses its whole name file on
    every start, which costs a cached re-render more than the rest of its casting."""
    import contextlib
    import json
    from importlib.metadata import version

    from dialog_tts.backends import derived

    path = derived.entry_path("names", "gender-guesser", [version("gender-guesser")], ".json")
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads(path.read_text(encoding="utf-8")))
    from gender_guesser.detector import Detector

    detector = Detector(case_sensitive=False)
    table = {name: detector.get_gender(name) for name in detector.names}
    table = {name: gender for name, gender in table.items() if gender in _GUESSED}
    with contextlib.suppress(OSError), derived.writing(path) as tmp:
        tmp.write_text(json.dumps(table, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return table


def name_hint(name: str) -> tuple[str, str] | None:
    """(gender, first name) from the first word of *name* that is not a title, by gender-guesser's table.

    After a title, a single word is taken for a surname ("Captain Reed", "Dr Watson") and tells nothing.
    """
    words = re.findall(r"[^\W\d_]+", name)
    rest = [w for w in words if w.lower() not in FEMALE_WORDS | MALE_WORDS | NEUTRAL_WORDS]
    if not rest or len(rest[0]) < 2 or (len(rest) == 1 and len(words) > 1):
        return None
    gender = _GUESSED.get(_name_table().get(rest[0].lower(), ""))
    return (gender, rest[0]) if gender else None


def language_accent(language: str) -> str:
    """The accent front matter's ``language`` asks for: ``en-GB`` british, ``en-US`` american, else ""."""
    tag = language.strip().lower().replace("_", "-")
    return {"en-gb": "british", "en-uk": "british", "en-us": "american"}.get(tag, "")


class Cast(dict[str, Voice]):
    """Speaker key -> resolved voice, with :attr:`why`: speaker key -> why that voice was chosen."""

    def __init__(self, voices: Mapping[str, Voice] = (), why: Mapping[str, str] = ()) -> None:  # type: ignore[assignment]
        super().__init__(voices)
        self.why: dict[str, str] = dict(why)


@dataclass(frozen=True)
class Source:
    """Where a speaker's voice fields came from, for error messages."""

    where: str
    path: str | None = None
    line: int | None = None
    label: str = ""     # for the cast's reasons: "--voices", "speaker map line 4"

    def locate(self, exc: DialogTTSError) -> DialogTTSError:
        return exc.locate(self.where, self.path, self.line)


def auto_pans(count: int) -> list[float]:
    """Pan positions for *count* speakers spread across the stereo field."""
    if count <= 1:
        return [0.0] * count
    width = min(0.6, 0.3 * (count - 1))
    return [-width + 2 * width * i / (count - 1) for i in range(count)]


def _with_paths(fields: Mapping[str, Any], map_path: str | None, keys: Iterable[str]) -> dict[str, Any]:
    """*fields* with the file-naming *keys* made relative to the map's folder."""
    out = dict(fields)
    if map_path is None:
        return out
    for key in keys:
        value = out.get(key)
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
            out[key] = os.path.join(os.path.dirname(map_path) or ".", value)
    return out


class _Fields:
    """Each speaker's merged fields: map defaults, then the map entry or the ``--voices`` spec."""

    def __init__(self, script: Script, speaker_map: SpeakerMap | None,
                 overrides: Iterable[tuple[str, Mapping[str, Any]]], default_backend: str | None) -> None:
        self.script, self.map, self.default_backend = script, speaker_map, default_backend
        self.inline: dict[str, tuple[str, Mapping[str, Any]]] = {}
        for name, fields in overrides:
            key = speaker_key(name)
            if key not in script.speakers:
                raise InputError(f"--voices {name}: no speaker {name!r} in the script "
                                 f"(speakers: {', '.join(script.speakers.values())})", path=script.path)
            self.inline[key] = (name, fields)

    def own(self, key: str) -> tuple[Source, Mapping[str, Any], str | None] | None:
        """A speaker's own fields (before defaults), where they came from, and the map they are relative to."""
        if key in self.inline:
            return Source(f"--voices {self.inline[key][0]}", label="--voices"), self.inline[key][1], None
        if self.map is not None and key in self.map.entries:
            mapped, entry, line = self.map.entries[key]
            return Source(f"speaker {mapped!r}", self.map.path, line, f"speaker map line {line}"), entry, self.map.path
        return None

    def lines(self, key: str) -> dict[str, int]:
        """The map line of each of a speaker's fields (its entry's over the defaults'); none for --voices."""
        if self.map is None or key in self.inline:
            return {}
        return {**self.map.field_lines.get("defaults", {}), **self.map.field_lines.get(key, {})}

    def check_absent(self) -> None:
        """The map's entries for speakers not in this script are checked too (a shared map stays valid)."""
        if self.map is None:
            return
        for key, (name, _entry, line) in self.map.entries.items():
            if key not in self.script.speakers:
                voice_from_fields(self.merged(key), where=f"speaker {name!r}", path=self.map.path, line=line,
                                  field_lines=self.lines(key))

    def source(self, key: str) -> Source:
        found = self.own(key)
        if found is not None:
            return found[0]
        smap = self.map
        label = f"speaker map defaults, line {smap.defaults_line}" if smap is not None and smap.defaults else ""
        return Source(f"speaker {self.script.speakers.get(key, key)!r}", smap.path if smap else None,
                      smap.defaults_line if smap else None, label)

    def merged(self, key: str) -> dict[str, Any]:
        """Defaults plus the speaker's own fields, with the backend's file paths settled."""
        found = self.own(key)
        defaults = self.map.defaults if self.map is not None else {}
        own = found[1] if found is not None else {}
        name = own.get("backend") or defaults.get("backend") or self.default_backend or DEFAULT_BACKEND
        keys = backends.get_backend(str(name).strip().lower()).path_keys
        map_path = self.map.path if self.map is not None else None
        merged = {**_with_paths(defaults, map_path, keys),
                  **_with_paths(own, found[2] if found is not None else None, keys)}
        return merged

    def other(self, name: str) -> dict[str, Any] | None:
        """Another speaker's fields, for a voice defined by others; None if it has none of its own."""
        key = speaker_key(name)
        return self.merged(key) if self.own(key) is not None else None

    def expanded(self, key: str) -> dict[str, Any]:
        """The speaker's fields after its backend's :meth:`Backend.expand_fields` hook."""
        fields = self.merged(key)
        name = str(fields.get("backend") or self.default_backend or DEFAULT_BACKEND).strip().lower()
        return backends.get_backend(name).expand_fields(fields, self.other)




def cast(script: Script, *, speaker_map: SpeakerMap | None = None,
         overrides: Iterable[tuple[str, Mapping[str, Any]]] = (),
         default_backend: str | None = None) -> Cast:
    """Give every speaker of *script* a resolved voice; returns speaker key -> Voice, with the reasons.

    *default_backend* is the backend of voices that name none, and the palette of speakers
    that name no voice; None (no backend chosen) resolves names with :data:`DEFAULT_BACKEND`
    first and casts from :data:`DEFAULT_CAST_BACKEND`'s palette.
    """
    fields = _Fields(script, speaker_map, overrides, default_backend)
    voices = Cast()
    pending: list[tuple[str, Voice, Source]] = []
    for key in script.speakers:
        src = fields.source(key)
        try:
            voice = voice_from_fields(fields.expanded(key), where=src.where, path=src.path, line=src.line,
                                      field_lines=fields.lines(key))
            backend = voice.backend or default_backend    # the one place an unnamed backend is settled
            if voice.name or backends.get_backend(backend or DEFAULT_BACKEND).names_itself(voice):
                resolved = backends.resolve_voice(voice, backend or DEFAULT_BACKEND)
                gender = backends.get_backend(resolved.backend).voice_gender(resolved.name) or voice.gender
                voices[key] = replace(resolved, gender=gender)
                voices.why[key] = src.label or "named"
            else:
                pending.append((key, replace(voice, backend=backend or ""), src))
        except DialogTTSError as exc:
            raise src.locate(exc) from None
    _Automatic(script, voices, prefer_accent=language_accent(script.meta.get("language", ""))).cast_all(pending)
    fields.check_absent()
    ordered = Cast({key: voices[key] for key in script.speakers}, voices.why)
    _place(ordered)
    return ordered


def _place(voices: Cast) -> None:
    """Pans for the speakers without one: spread across the stereo field in order of appearance.

    A speaker who reuses a voice (the palette ran out) moves to the side of the field farthest
    from the voice's other users, so that the two are told apart by place as well.
    """
    unpanned = [k for k, v in voices.items() if v.pan is None]
    pans = dict(zip(unpanned, auto_pans(len(unpanned))))
    width = max((abs(p) for p in pans.values()), default=0.0) or 0.6
    placed: dict[tuple[str, str], list[float]] = {}
    for key, voice in voices.items():
        users = placed.setdefault((voice.backend, voice.name), [])
        if key in pans and users:
            spots = (pans[key], -width, width)
            pans[key] = max(spots, key=lambda spot: min(abs(spot - other) for other in users))
        users.append(pans.get(key, voice.pan or 0.0))
    for key, pan in pans.items():
        voices[key] = replace(voices[key], pan=pan)


@dataclass
class _Entry:
    backend: str
    name: str
    gender: str
    accent: str
    order: int
    uses: int = 0


@dataclass
class _Automatic:
    """Voices from a palette for the speakers that name none, in order of appearance."""

    script: Script
    voices: Cast
    prefer_accent: str = ""
    palettes: dict[str, list[_Entry]] = field(default_factory=dict)
    _keys: list[str] = field(default_factory=list)     # the speakers in order of appearance (made once:
    _order: dict[str, int] = field(default_factory=dict)   # a lookup per speaker, linear in the speakers)

    def palette(self, backend: str) -> list[_Entry]:
        """The entries of *backend*'s palette ("" = the default cast), with voices named already counted."""
        if backend not in self.palettes:
            pairs = _default_cast() if not backend else [(backend, n) for n in backends.get_backend(backend).palette()]
            entries = [_Entry(b, n, backends.get_backend(b).voice_gender(n), backends.get_backend(b).voice_accent(n),
                              i) for i, (b, n) in enumerate(pairs)]
            named: dict[tuple[str, str], int] = {}
            for v in self.voices.values():
                named[(v.backend, v.name)] = named.get((v.backend, v.name), 0) + 1
            for entry in entries:
                entry.uses = named.get((entry.backend, entry.name), 0)
            self.palettes[backend] = entries
        return self.palettes[backend]

    def index(self, key: str) -> int:
        """Where speaker *key* first appears among the script's speakers (0 = first)."""
        if not self._order:
            self._keys.extend(self.script.speakers)
            self._order.update((k, i) for i, k in enumerate(self._keys))
        return self._order[key]

    def previous_gender(self, key: str) -> str:
        index = self.index(key)
        previous = self.voices.get(self._keys[index - 1]) if index else None
        return previous.gender if previous is not None else ""

    def cast_all(self, pending: list[tuple[str, Voice, Source]]) -> None:
        for key, partial, src in pending:
            try:
                entry, why = self.pick(key, partial, src)
                voice = backends.resolve_voice(replace(partial, backend=entry.backend, name=entry.name), entry.backend)
                self.voices[key] = replace(voice, gender=entry.gender, accent=partial.accent)
                self.voices.why[key] = why
            except DialogTTSError as exc:
                raise src.locate(exc) from None

    def wanted_gender(self, key: str, partial: Voice, src: Source) -> tuple[str, str]:
        """(sex, because): asked for, else from a title, else from the first name; ("", "") if none tells."""
        if partial.gender:
            return partial.gender, src.label
        name = self.script.speakers[key]
        if (hint := gender_hint(name)) is not None:
            return hint[0], f"title {hint[1]!r}"
        if (guess := name_hint(name)) is not None:
            return guess[0], f"first name {guess[1]!r}"
        return "", ""

    def pick(self, key: str, partial: Voice, src: Source) -> tuple[_Entry, str]:
        """The palette entry for one speaker, and why."""
        entries = self.palette(partial.backend)
        where = f"{partial.backend}'s palette" if partial.backend else "default cast"
        if not entries:
            raise UnknownVoiceError(f"backend {partial.backend!r} has no automatic voices; "
                                    f"name one, as in --voices {self.script.speakers[key]}=VOICE")
        accent = partial.accent
        if accent:
            entries = [e for e in entries if e.accent == accent] or entries
        prefer = accent or self.prefer_accent
        wanted, because = self.wanted_gender(key, partial, src)
        if wanted:
            matching = [e for e in entries if e.gender == wanted]
            chosen = min(matching or entries, key=lambda e: (e.uses, bool(prefer) and e.accent != prefer, e.order))
            note = (f"no {wanted} voice there" if not matching else
                    f"first unused {wanted} voice" if not chosen.uses else
                    f"every {wanted} voice taken: the one used least, reused")
            why = f"{wanted} ({because}); {where}, {note}"
        else:
            previous = self.previous_gender(key)
            other = {"female": "male", "male": "female"}.get(previous, "")
            chosen = min(entries, key=lambda e: (e.uses, bool(other) and e.gender != other,
                                                 bool(prefer) and e.accent != prefer, e.order))
            first = self.index(key) == 0
            why = f"{where}, " + ("first voice" if first else "next distinct voice") + (
                f" after a {previous} one" if other else "")
            if chosen.uses:
                why += " (every voice taken: the one used least, reused)"
        if prefer and chosen.accent == prefer and not accent:
            why += f", {prefer} (language {self.script.meta.get('language', '')})"
        elif accent:
            why += f", {accent} accent" + ("" if chosen.accent == accent else f" (none there: {chosen.accent})")
        chosen.uses += 1
        return chosen, why


_fallback_said = False


def _default_cast() -> list[tuple[str, str]]:
    """Kokoro's palette; where the kokoro backend cannot load, :data:`FALLBACK_CAST` less what is not
    available now (said once per process, in one line)."""
    global _fallback_said
    try:
        kokoro = backends.get_backend(DEFAULT_CAST_BACKEND)
        kokoro.check_available()
        return [(DEFAULT_CAST_BACKEND, n) for n in kokoro.palette()]
    except DialogTTSError as exc:
        if not _fallback_said:
            log.warning("the default voices (kokoro) cannot load, so hibari's and piper's are cast instead: %s",
                        exc.message)
            _fallback_said = True
    offered: dict[str, list[str]] = {}
    for backend, _ in FALLBACK_CAST:
        if backend not in offered:
            try:
                offered[backend] = backends.get_backend(backend).palette()
            except DialogTTSError:
                offered[backend] = []
    return [(b, n) for b, n in FALLBACK_CAST if n in offered[b]]
