"""Voice specs and the YAML speaker map: text in, spec fields out, every error located.

A voice spec is ``voice[,key=value...]`` with the keys ``backend``, ``gender``,
``accent`` (``british`` or ``american``), ``rate``, ``pitch``, ``volume``, ``pan``, ``gain``
and any option a backend declares.
A bare ``female`` or ``male`` in the voice position means any voice of that sex.
The speaker map is YAML: one entry per speaker (a mapping with the same keys
plus ``voice``, or a spec string) and an optional ``defaults:`` mapping.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from dialog_tts.errors import VoiceSpecError, excerpt
from dialog_tts.script import lexicon
from dialog_tts.script.lexicon import Lexicon
from dialog_tts.script.parse import speaker_key
from dialog_tts.script.textfiles import compose_yaml, read_text, yaml_error
from dialog_tts.script.voice import (
    GENDERS,
    Voice,
    parse_accent,
    parse_db,
    parse_gender,
    parse_pan,
    parse_pitch,
    parse_rate,
)


def voice_from_fields(fields: Mapping[str, Any], *, where: str, path: str | None = None,
                      line: int | None = None, field_lines: Mapping[str, int] | None = None) -> Voice:
    """Build a :class:`Voice` from spec fields; errors name *where* and *path:line*, the line of
    the bad key itself where *field_lines* knows it."""
    def fail(msg: str, key: str = "") -> VoiceSpecError:
        return VoiceSpecError(f"{where}: {msg}", path=path, line=(field_lines or {}).get(key, line))

    kwargs: dict[str, Any] = {}
    options: dict[str, Any] = {}
    name = fields.get("voice")
    if name is not None and str(name).strip().lower() in GENDERS:  # "female,pan=-0.3": any woman's voice
        if fields.get("gender") is not None and str(fields["gender"]).strip().lower() != str(name).strip().lower():
            raise fail(f"voice {str(name).strip()!r} contradicts gender {fields['gender']!r}")
        fields = {**fields, "gender": str(name).strip().lower()}
        name = None
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
            elif key == "gender":
                kwargs["gender"] = parse_gender(value)
            elif key == "accent":
                kwargs["accent"] = parse_accent(value)
            elif isinstance(value, (str, int, float, bool)):
                options[key] = value
            else:
                options[key] = _freeze(value)
        except ValueError as exc:
            raise fail(str(exc), key) from None
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
                raise VoiceSpecError(f"{where}: {excerpt(key)} given twice in {excerpt(spec, 80)}")
            fields[key] = value.strip()
            last_key = key
        elif i == 0:
            if part.strip():
                fields["voice"] = part.strip()
        elif last_key is not None:
            fields[last_key] = f"{fields[last_key]},{part}".strip()
        else:
            raise VoiceSpecError(f"{where}: cannot read {excerpt(part.strip())} in {excerpt(spec, 80)}; "
                                 f"write voice[,key=value...]")
    return fields


def parse_assignment(text: str) -> tuple[str, dict[str, str]]:
    """Parse one ``--voices`` value, ``NAME=SPEC``, into the name and its spec fields."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise VoiceSpecError(f"--voices {excerpt(text, 80)}: expected NAME=SPEC, as in A=\"joe,pan=-0.3\"")
    if len(spec) >= 2 and spec[0] == spec[-1] and spec[0] in "\"'":
        spec = spec[1:-1]
    where = f"--voices {name if len(name) <= 40 else excerpt(name)}"
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
    field_lines: dict[str, dict[str, int]] = field(default_factory=dict)  # key ("defaults" too) -> field -> line
    lexicon: Lexicon | None = None     # the map's ``lexicon:``, inline or from the file it names


def load_speaker_map(path: str | os.PathLike[str]) -> SpeakerMap:
    """Safe-load the speaker map at *path* (at most 50 MB); every error names the file and line."""
    import yaml  # only needed when a map is given

    shown = os.fspath(path)
    text = read_text(path, what="speaker map", error=VoiceSpecError)
    loader, root = compose_yaml(text, path=shown, error=VoiceSpecError)
    try:
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
            if name.lower() == "lexicon":
                result.lexicon = _map_lexicon(loader, value_node, shown)
                continue
            fields = _entry_fields(loader, value_node, name, shown)
            key = "defaults" if name.lower() == "defaults" else speaker_key(name)
            result.field_lines[key] = _field_lines(value_node, line)
            if key == "defaults":
                result.defaults, result.defaults_line = fields, line
                continue
            if key in result.entries:
                raise VoiceSpecError(f"speaker {excerpt(name)} is mapped twice", path=shown, line=line)
            result.entries[key] = (name, fields, line)
        return result
    except yaml.YAMLError as exc:
        raise yaml_error(exc, text, path=shown, error=VoiceSpecError) from None
    finally:
        loader.dispose()


def _map_lexicon(loader: Any, node: Any, path: str) -> Lexicon:
    """A speaker map's ``lexicon:``: a mapping of words, or a lexicon file relative to the map."""
    import yaml

    if isinstance(node, yaml.ScalarNode):
        return lexicon.load(os.path.join(os.path.dirname(path) or ".", os.path.expanduser(node.value)))
    return lexicon.from_node(loader, node, path=path)


def _field_lines(node: Any, line: int) -> dict[str, int]:
    """The line of each key of a mapping entry (a spec string's keys all sit on its one line)."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value).strip().lower(): k.start_mark.line + 1 for k, _v in node.value}


def _entry_fields(loader: Any, node: Any, name: str, path: str) -> dict[str, Any]:
    import yaml

    line = node.start_mark.line + 1
    value = loader.construct_object(node, deep=True)
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            return dict(parse_spec_fields(value, where=f"speaker {excerpt(name)}"))
        except VoiceSpecError as exc:
            raise exc.locate(path=path, line=line) from None
    if not isinstance(value, dict):
        raise VoiceSpecError(f"speaker {excerpt(name)}: expected a mapping or a voice spec string",
                             path=path, line=line)
    fields: dict[str, Any] = {}
    assert isinstance(node, yaml.MappingNode)
    for k_node, v_node in node.value:
        fields[str(k_node.value).strip().lower()] = loader.construct_object(v_node, deep=True)
    return fields


