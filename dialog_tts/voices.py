"""Voices: the :class:`Voice` model, voice specs, the YAML speaker map and casting.

A voice spec is ``voice[,key=value...]`` with the keys ``backend``, ``rate``,
``pitch``, ``volume``, ``pan``, ``gain`` and any option a backend declares.
The speaker map is YAML: one entry per speaker (a mapping with the same keys
plus ``voice``, or a spec string) and an optional ``defaults:`` mapping.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import DialogTTSError, InputError, UnknownVoiceError, VoiceSpecError
from .script import Script, speaker_key

#: Keys every backend understands; backends may accept more (``Backend.extra_options``).
COMMON_KEYS = ("voice", "backend", "rate", "pitch", "volume", "pan", "gain")
#: Keys that only change the mix; they never change what a backend synthesizes.
MIX_KEYS = frozenset({"pan", "gain"})

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_RATE_WPM = re.compile(rf"^(?P<v>{_NUMBER})\s*(?:wpm)?$", re.IGNORECASE)
_RATE_PCT = re.compile(rf"^(?P<v>[+-](?:\d+(?:\.\d*)?|\.\d+))\s*%$")
_RATE_X = re.compile(rf"^(?P<v>{_NUMBER})\s*x$", re.IGNORECASE)
_PITCH = re.compile(rf"^(?P<v>{_NUMBER})\s*(?:st)?$", re.IGNORECASE)
_DB = re.compile(rf"^(?P<v>{_NUMBER})\s*(?:db)?$", re.IGNORECASE)

MIN_WPM, MAX_WPM = 40.0, 600.0
MIN_FACTOR, MAX_FACTOR = 0.25, 4.0
MAX_PITCH_ST = 12.0


@dataclass(frozen=True)
class Rate:
    """Speaking rate: absolute words per minute or a factor of the voice's own rate."""

    wpm: float | None = None
    factor: float | None = None

    def speed(self, base_wpm: float) -> float:
        """Factor against the backend's natural rate of *base_wpm* words per minute."""
        return self.wpm / base_wpm if self.wpm is not None else float(self.factor or 1.0)

    def __str__(self) -> str:
        return f"{self.wpm:g}wpm" if self.wpm is not None else f"{self.factor:g}x"


@dataclass(frozen=True)
class Voice:
    """A voice as cast for one speaker: which backend, which voice, how it is shaped."""

    name: str
    backend: str | None = None
    rate: Rate | None = None
    pitch: float = 0.0          # semitones
    volume: float = 0.0         # dB, applied at synthesis
    pan: float | None = None    # -1 (left) .. +1 (right); None = automatic
    gain: float = 0.0           # dB, applied in the mix
    options: tuple[tuple[str, Any], ...] = ()  # backend-specific keys, sorted

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def speed(self, base_wpm: float) -> float:
        return self.rate.speed(base_wpm) if self.rate else 1.0

    def synthesis_fields(self) -> dict[str, Any]:
        """Everything that changes the synthesized audio (the cache key's voice part)."""
        return {
            "backend": self.backend, "name": self.name,
            "rate": str(self.rate) if self.rate else None,
            "pitch": self.pitch, "volume": self.volume,
            "options": {k: v for k, v in self.options},
        }

    def describe(self) -> str:
        parts = [self.name]
        if self.rate:
            parts.append(f"rate={self.rate}")
        if self.pitch:
            parts.append(f"pitch={self.pitch:+g}st")
        if self.volume:
            parts.append(f"volume={self.volume:+g}dB")
        if self.pan is not None:
            parts.append(f"pan={self.pan:+.2f}")
        if self.gain:
            parts.append(f"gain={self.gain:+g}dB")
        parts.extend(f"{k}={v}" for k, v in self.options)
        return f"{self.backend}:" + ",".join(parts)


# ---------------------------------------------------------------- value parsers

def _match(pattern: re.Pattern[str], value: Any) -> float | None:
    m = pattern.match(str(value).strip())
    return float(m.group("v")) if m else None


def parse_rate(value: Any) -> Rate:
    text = str(value).strip()
    if (v := _match(_RATE_PCT, text)) is not None:
        rate = Rate(factor=1.0 + v / 100.0)
    elif (v := _match(_RATE_X, text)) is not None:
        rate = Rate(factor=v)
    elif (v := _match(_RATE_WPM, text)) is not None and not text.startswith(("+", "-")):
        if not MIN_WPM <= v <= MAX_WPM:
            raise ValueError(f"rate {text!r} is out of range ({MIN_WPM:g}-{MAX_WPM:g} words per minute)")
        return Rate(wpm=v)
    else:
        raise ValueError(f"rate {text!r} is not words per minute (180), a percentage (+10%) "
                         f"or a factor (1.1x)")
    if not MIN_FACTOR <= rate.factor <= MAX_FACTOR:  # type: ignore[operator]
        raise ValueError(f"rate {text!r} is out of range ({MIN_FACTOR:g}x-{MAX_FACTOR:g}x)")
    return rate


def parse_pitch(value: Any) -> float:
    v = _match(_PITCH, value)
    if v is None:
        raise ValueError(f"pitch {str(value)!r} is not in semitones, like +2st or -1.5st")
    if abs(v) > MAX_PITCH_ST:
        raise ValueError(f"pitch {str(value)!r} is out of range (-{MAX_PITCH_ST:g}st to +{MAX_PITCH_ST:g}st)")
    return v


def parse_db(value: Any, key: str) -> float:
    v = _match(_DB, value)
    if v is None:
        raise ValueError(f"{key} {str(value)!r} is not in decibels, like -3dB")
    if not -60.0 <= v <= 24.0:
        raise ValueError(f"{key} {str(value)!r} is out of range (-60dB to +24dB)")
    return v


def parse_pan(value: Any) -> float:
    try:
        v = float(str(value).strip())
    except ValueError:
        raise ValueError(f"pan {str(value)!r} is not a number from -1 (left) to +1 (right)") from None
    if not -1.0 <= v <= 1.0 or math.isnan(v):
        raise ValueError(f"pan {str(value)!r} is out of range (-1 left to +1 right)")
    return v


def voice_from_fields(fields: Mapping[str, Any], *, where: str, path: str | None = None,
                      line: int | None = None) -> Voice:
    """Build a :class:`Voice` from spec fields; errors name *where* (and *path:line*)."""
    def fail(msg: str) -> VoiceSpecError:
        return VoiceSpecError(f"{where}: {msg}", path=path, line=line)

    kwargs: dict[str, Any] = {}
    options: dict[str, Any] = {}
    name = fields.get("voice")
    for key, value in fields.items():
        if value is None or key == "voice":
            continue
        try:
            if key == "backend":
                kwargs["backend"] = str(value).strip().lower()
            elif key == "rate":
                kwargs["rate"] = parse_rate(value)
            elif key == "pitch":
                kwargs["pitch"] = parse_pitch(value)
            elif key in ("volume", "gain"):
                kwargs[key] = parse_db(value, key)
            elif key == "pan":
                kwargs["pan"] = parse_pan(value)
            elif isinstance(value, (str, int, float, bool)):
                options[key] = value
            else:
                options[key] = _freeze(value)
        except ValueError as exc:
            raise fail(str(exc)) from None
    return Voice(name=str(name).strip() if name is not None else "", options=tuple(sorted(options.items())),
                 **kwargs)


def _freeze(value: Any) -> Any:
    """Nested YAML values made hashable (mappings become sorted tuples)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def parse_spec_fields(spec: str, *, where: str) -> dict[str, str]:
    """Split ``voice,key=value,...`` into fields.

    A comma-separated piece without ``=`` continues the value before it
    (``instruct=warm, upbeat``); right after the voice name it is an error.
    """
    fields: dict[str, str] = {}
    last_key: str | None = None
    for i, part in enumerate(spec.strip().split(",")):
        if re.match(r"^\s*[A-Za-z_][\w-]*\s*=", part):
            key, _, value = part.partition("=")
            key = key.strip().lower()
            if key in fields:
                raise VoiceSpecError(f"{where}: {key!r} given twice in {spec!r}")
            fields[key] = value.strip()
            last_key = key
        elif i == 0:
            if part.strip():
                fields["voice"] = part.strip()
        elif last_key is not None:
            fields[last_key] = f"{fields[last_key]},{part}".strip()
        else:
            raise VoiceSpecError(f"{where}: cannot read {part.strip()!r} in {spec!r}; "
                                 f"write voice[,key=value...]")
    return fields


def parse_assignment(text: str) -> tuple[str, dict[str, str]]:
    """Parse one ``--voices`` value, ``NAME=SPEC``, into the name and its spec fields."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise VoiceSpecError(f"--voices {text!r}: expected NAME=SPEC, as in A=\"joe,pan=-0.3\"")
    if len(spec) >= 2 and spec[0] == spec[-1] and spec[0] in "\"'":
        spec = spec[1:-1]
    where = f"--voices {name}"
    fields = parse_spec_fields(spec, where=where)
    voice_from_fields(fields, where=where)  # validate values now, before any work
    return name, fields


# ---------------------------------------------------------------- speaker map

@dataclass
class SpeakerMap:
    """The YAML speaker map: defaults plus per-speaker fields, with source lines."""

    path: str
    defaults: dict[str, Any] = field(default_factory=dict)
    defaults_line: int | None = None
    entries: dict[str, tuple[str, dict[str, Any], int]] = field(default_factory=dict)  # key -> name, fields, line


def load_speaker_map(path: str | os.PathLike[str]) -> SpeakerMap:
    """Safe-load the speaker map at *path*; every error names the file and line."""
    import yaml  # only needed when a map is given

    shown = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise VoiceSpecError("speaker map is not valid UTF-8", path=shown) from None
    except OSError as exc:
        raise VoiceSpecError(f"cannot read speaker map: {exc.strerror or exc}", path=shown) from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return SpeakerMap(shown)
        if not isinstance(root, yaml.MappingNode):
            raise VoiceSpecError("speaker map must be a mapping of speaker names to voices",
                                 path=shown, line=root.start_mark.line + 1)
        result = SpeakerMap(shown)
        for key_node, value_node in root.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise VoiceSpecError("speaker names must be plain text", path=shown, line=line)
            name = key_node.value.strip()  # as written: YAML 1.1 would read `No:` as False, `007:` as 7
            fields = _entry_fields(loader, value_node, name, shown)
            if name.lower() == "defaults":
                result.defaults, result.defaults_line = fields, line
                continue
            key = speaker_key(name)
            if key in result.entries:
                raise VoiceSpecError(f"speaker {name!r} is mapped twice", path=shown, line=line)
            result.entries[key] = (name, fields, line)
        return result
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise VoiceSpecError(f"invalid YAML: {exc.problem or exc.context}", path=shown,
                             line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise VoiceSpecError(f"invalid YAML: {exc}", path=shown) from None
    finally:
        loader.dispose()


def _entry_fields(loader: Any, node: Any, name: str, path: str) -> dict[str, Any]:
    import yaml

    line = node.start_mark.line + 1
    value = loader.construct_object(node, deep=True)
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            return dict(parse_spec_fields(value, where=f"speaker {name!r}"))
        except VoiceSpecError as exc:
            raise exc.locate(path=path, line=line) from None
    if not isinstance(value, dict):
        raise VoiceSpecError(f"speaker {name!r}: expected a mapping or a voice spec string",
                             path=path, line=line)
    fields: dict[str, Any] = {}
    assert isinstance(node, yaml.MappingNode)
    for k_node, v_node in node.value:
        fields[str(k_node.value).strip().lower()] = loader.construct_object(v_node, deep=True)
    return fields


# ---------------------------------------------------------------- casting

def auto_pans(count: int) -> list[float]:
    """Pan positions for *count* speakers spread across the stereo field."""
    if count <= 1:
        return [0.0] * count
    width = min(0.6, 0.3 * (count - 1))
    return [-width + 2 * width * i / (count - 1) for i in range(count)]


def cast(script: Script, *, speaker_map: SpeakerMap | None = None,
         overrides: Iterable[tuple[str, Mapping[str, Any]]] = (),
         default_backend: str = "piper") -> dict[str, Voice]:
    """Give every speaker of *script* a resolved voice; returns speaker key -> Voice.

    A speaker's fields are the map's ``defaults`` under its ``--voices`` spec, or
    else under its map entry.  Speakers left without a voice name get the
    palette of their backend (the default backend unless a field names one) in
    order of first appearance; speakers with no pan are spread across the
    stereo field.
    """
    from . import backends

    known = script.speakers
    inline: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for name, fields in overrides:
        key = speaker_key(name)
        if key not in known:
            raise InputError(f"--voices {name}: no speaker {name!r} in the script "
                             f"(speakers: {', '.join(known.values())})", path=script.path)
        inline[key] = (name, fields)

    defaults = _with_paths(speaker_map.defaults, speaker_map.path) if speaker_map else {}

    def fields_of(key: str) -> tuple[_Source, dict[str, Any]] | None:
        """A speaker's own fields (before defaults), from --voices or the map, with where they came from."""
        if key in inline:
            return _Source(f"--voices {inline[key][0]}"), dict(inline[key][1])
        if speaker_map is not None and key in speaker_map.entries:
            mapped, entry, line = speaker_map.entries[key]
            return _Source(f"speaker {mapped!r}", speaker_map.path, line), _with_paths(entry, speaker_map.path)
        return None

    voices: dict[str, Voice] = {}
    palettes: dict[str, list[str]] = {}
    used = set()
    pending: list[tuple[str, Voice, _Source]] = []
    for key, name in known.items():
        found = fields_of(key)
        if found is None:
            src, fields = _Source(f"speaker {name!r}", speaker_map and speaker_map.path,
                                  speaker_map and speaker_map.defaults_line), {}
        else:
            src, fields = found
        merged = {**defaults, **fields}
        if merged.get("mix") is not None:
            merged["mix"] = _blend_references(merged["mix"], defaults, fields_of, src)
        voice = voice_from_fields(merged, where=src.where, path=src.path, line=src.line)
        if voice.name or _names_itself(voice, src):
            voice = backends.resolve_voice(voice, default_backend, where=src.where, path=src.path,
                                           line=src.line)
            voices[key] = voice
            used.add((voice.backend, voice.name))
        else:
            pending.append((key, voice, src))

    for key, partial, src in pending:  # automatic casting, in order of first appearance
        backend_name = partial.backend or default_backend
        if backend_name not in palettes:
            try:
                palette = backends.get_backend(backend_name).palette()
            except DialogTTSError as exc:
                raise exc.locate(src.where, src.path, src.line) from None
            palettes[backend_name] = [n for n in palette if (backend_name, n) not in used] or list(palette)
        queue = palettes[backend_name]
        if not queue:
            raise UnknownVoiceError(f"{src.where}: backend {backend_name!r} has no automatic voices; "
                                    f"name one, as in --voices {known[key]}=VOICE", path=src.path, line=src.line)
        chosen = queue.pop(0)
        queue.append(chosen)  # more speakers than palette voices: reuse in turn
        voices[key] = backends.resolve_voice(replace(partial, name=chosen, backend=backend_name),
                                             default_backend, where=src.where, path=src.path, line=src.line)

    ordered = {key: voices[key] for key in known}
    unpanned = [k for k, v in ordered.items() if v.pan is None]
    for key, pan in zip(unpanned, auto_pans(len(unpanned))):
        ordered[key] = replace(ordered[key], pan=pan)
    return ordered


def _names_itself(voice: Voice, src: "_Source") -> bool:
    """A voice its backend defines without a name (a cloned or designed voice)."""
    from . import backends

    if not voice.backend or not voice.options:
        return False
    try:
        return backends.get_backend(voice.backend).names_itself(voice)
    except DialogTTSError as exc:
        raise exc.locate(src.where, src.path, src.line) from None


#: Spec keys that name files; in a speaker map they are relative to the map's folder.
PATH_KEYS = ("ref_audio",)


def _with_paths(fields: Mapping[str, Any], map_path: str) -> dict[str, Any]:
    out = dict(fields)
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
            out[key] = os.path.join(os.path.dirname(map_path) or ".", value)
    return out


def _blend_references(mix: Any, defaults: Mapping[str, Any], fields_of: Any, src: "_Source") -> dict[str, Any]:
    """``mix: {Guest: 0.6, Host2: 0.4}`` → each named speaker's clone settings with its weight."""
    def fail(msg: str) -> VoiceSpecError:
        return VoiceSpecError(f"{src.where}: mix: {msg}", path=src.path, line=src.line)

    if not isinstance(mix, Mapping) or not mix:
        raise fail("give speakers and weights, e.g. mix: {Guest: 0.6, Host: 0.4}")
    out: dict[str, Any] = {}
    for other, weight in mix.items():
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise fail(f"weight {weight!r} of {other!r} is not a number") from None
        if not w > 0:
            raise fail(f"weight of {other!r} must be positive")
        found = fields_of(speaker_key(str(other)))
        if found is None:
            raise fail(f"no speaker {other!r} in the speaker map or --voices")
        fields = {**defaults, **found[1]}
        if not fields.get("ref_audio"):
            raise fail(f"speaker {other!r} is not a cloned voice (it has no ref_audio)")
        out[str(other)] = {"ref_audio": fields["ref_audio"], "ref_text": fields.get("ref_text"), "weight": w}
    return out


@dataclass(frozen=True)
class _Source:
    """Where a speaker's voice fields came from, for error messages."""

    where: str
    path: str | None = None
    line: int | None = None


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Up to *n* candidates that look like *name* (for "did you mean" hints)."""
    import difflib

    cands = list(candidates)
    lowered = {c.lower(): c for c in cands}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    contains = [c for c in cands if name.lower() in c.lower() and c.lower() not in hits]
    return ([lowered[h] for h in hits] + contains)[:n]
