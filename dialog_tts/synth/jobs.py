"""Jobs: each script line with its speaker's cast voice becomes one engine job.

One line at a time, in one direction: the label's ``{...}`` voice override
replaces fields of the cast voice for that line; the line's known direction
tags become a :class:`~dialog_tts.script.directions.Delivery` that the backend maps onto
the voice (:meth:`Backend.apply_delivery`); the lexicon rewrites the listed
words the backend's way (:meth:`Backend.pronounce`).  A line none of these
touch keeps its cast voice and its text, and so its cache key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Mapping

from dialog_tts import backends
from dialog_tts.errors import DialogTTSError
from dialog_tts.script import directions as delivery_mod
from dialog_tts.script.lexicon import Lexicon
from dialog_tts.script.parse import Script
from dialog_tts.script.speakers import parse_spec_fields, voice_from_fields
from dialog_tts.script.voice import Voice

_SHAPING = ("rate", "pitch", "volume", "pan", "gain")


@dataclass(frozen=True)
class Job:
    """One line to synthesize, and where it came from (for messages)."""

    text: str
    voice: Voice
    path: str = "<script>"
    line_no: int = 0
    speaker: str = ""

    def where(self) -> str:
        words = self.text if len(self.text) <= 30 else self.text[:29].rstrip() + "…"
        return f"{self.path}:{self.line_no} {self.speaker} \"{words}\""

    def identity(self) -> str:
        """Two jobs with the same identity produce the same audio."""
        return json.dumps([self.voice.synthesis_fields(), self.text], sort_keys=True, ensure_ascii=False)


def override_voice(voice: Voice, spec: str, *, where: str = "voice override") -> Voice:
    """*voice* with the fields of a one-line override *spec* (``en-us+f3,rate=1.2x``), resolved.

    Naming a voice or a backend starts a new voice (the speaker's pan and gain
    stay unless given); otherwise the given keys replace the voice's own.
    """
    fields = parse_spec_fields(spec, where=where)
    given = voice_from_fields(fields, where=where)
    fresh = "voice" in fields or "backend" in fields
    base = Voice(name="", pan=voice.pan, gain=voice.gain) if fresh else voice
    shaping: dict[str, Any] = {k: getattr(given, k) for k in _SHAPING if k in fields}
    options = {**({} if fresh else dict(voice.options)), **dict(given.options)}
    merged = replace(base, name=given.name or base.name, backend=given.backend or ("" if fresh else voice.backend),
                     options=tuple(sorted(options.items())), **shaping)
    return backends.resolve_voice(merged, voice.backend)


def build(script: Script, cast: Mapping[str, Voice], lexicon: Lexicon | None = None) -> list[Job]:
    """One :class:`Job` per spoken line of *script*, in order."""
    overridden: dict[tuple[Voice, str], Voice] = {}
    jobs: list[Job] = []
    for line in script.lines:
        voice = cast[line.key]
        if line.override:
            key = (voice, line.override)
            if key not in overridden:
                where = f"voice override {{{line.override}}}"
                try:
                    overridden[key] = override_voice(voice, line.override, where=where)
                except DialogTTSError as exc:
                    raise exc.locate(where, script.path, line.line_no) from None
            voice = overridden[key]
        backend = backends.get_backend(voice.backend)
        delivery = delivery_mod.for_directions(line.directions)
        if delivery is not None:
            voice = backend.apply_delivery(voice, delivery)
        text = lexicon.apply(line.text, backend.pronounce) if lexicon else line.text
        jobs.append(Job(text, voice, script.path, line.line_no, line.speaker))
    return jobs
