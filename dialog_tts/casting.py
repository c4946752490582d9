"""Casting: every speaker of a script gets a resolved :class:`Voice`.

A speaker's fields are the speaker map's ``defaults`` under its ``--voices``
spec, or else under its map entry.  The speaker's backend settles the keys it
owns (:attr:`Backend.path_keys` are relative to the map's folder;
:meth:`Backend.expand_fields` may refer to other speakers, as a Qwen blend
does).  Speakers left without a voice name get their backend's palette in order
of first appearance; speakers without a pan are spread across the stereo field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from . import backends
from .errors import DialogTTSError, InputError, UnknownVoiceError
from .script import Script, speaker_key
from .speakers import SpeakerMap, voice_from_fields
from .voice import DEFAULT_BACKEND, Voice


@dataclass(frozen=True)
class Source:
    """Where a speaker's voice fields came from, for error messages."""

    where: str
    path: str | None = None
    line: int | None = None

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
                 overrides: Iterable[tuple[str, Mapping[str, Any]]], default_backend: str) -> None:
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
            return Source(f"--voices {self.inline[key][0]}"), self.inline[key][1], None
        if self.map is not None and key in self.map.entries:
            mapped, entry, line = self.map.entries[key]
            return Source(f"speaker {mapped!r}", self.map.path, line), entry, self.map.path
        return None

    def source(self, key: str) -> Source:
        found = self.own(key)
        if found is not None:
            return found[0]
        smap = self.map
        return Source(f"speaker {self.script.speakers.get(key, key)!r}", smap.path if smap else None,
                      smap.defaults_line if smap else None)

    def merged(self, key: str) -> dict[str, Any]:
        """Defaults plus the speaker's own fields, with the backend's file paths settled."""
        found = self.own(key)
        defaults = self.map.defaults if self.map is not None else {}
        own = found[1] if found is not None else {}
        name = own.get("backend") or defaults.get("backend") or self.default_backend
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
        name = str(fields.get("backend") or self.default_backend).strip().lower()
        return backends.get_backend(name).expand_fields(fields, self.other)


def cast(script: Script, *, speaker_map: SpeakerMap | None = None,
         overrides: Iterable[tuple[str, Mapping[str, Any]]] = (),
         default_backend: str = DEFAULT_BACKEND) -> dict[str, Voice]:
    """Give every speaker of *script* a resolved voice; returns speaker key -> Voice."""
    fields = _Fields(script, speaker_map, overrides, default_backend)
    voices: dict[str, Voice] = {}
    pending: list[tuple[str, Voice, Source]] = []
    for key in script.speakers:
        src = fields.source(key)
        try:
            voice = voice_from_fields(fields.expanded(key), where=src.where, path=src.path, line=src.line)
            backend = voice.backend or default_backend     # the one place an unnamed backend is settled
            if voice.name or backends.get_backend(backend).names_itself(voice):
                voices[key] = backends.resolve_voice(voice, default_backend)
            else:
                pending.append((key, replace(voice, backend=backend), src))
        except DialogTTSError as exc:
            raise src.locate(exc) from None
    _cast_automatic(pending, voices, script)
    ordered = {key: voices[key] for key in script.speakers}
    unpanned = [k for k, v in ordered.items() if v.pan is None]
    for key, pan in zip(unpanned, auto_pans(len(unpanned))):
        ordered[key] = replace(ordered[key], pan=pan)
    return ordered


def _cast_automatic(pending: list[tuple[str, Voice, Source]], voices: dict[str, Voice], script: Script) -> None:
    """Voices from each backend's palette for the speakers that name none, in order of appearance."""
    used = {(v.backend, v.name) for v in voices.values()}
    palettes: dict[str, list[str]] = {}
    for key, partial, src in pending:
        try:
            if partial.backend not in palettes:
                palette = backends.get_backend(partial.backend).palette()
                palettes[partial.backend] = [n for n in palette if (partial.backend, n) not in used] or list(palette)
            queue = palettes[partial.backend]
            if not queue:
                raise UnknownVoiceError(f"backend {partial.backend!r} has no automatic voices; "
                                        f"name one, as in --voices {script.speakers[key]}=VOICE")
            chosen = queue.pop(0)
            queue.append(chosen)  # more speakers than palette voices: reuse in turn
            voices[key] = backends.resolve_voice(replace(partial, name=chosen), partial.backend)
        except DialogTTSError as exc:
            raise src.locate(exc) from None
