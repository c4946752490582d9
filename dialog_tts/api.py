"""The Python API: one call from a script to a finished audio file.

The flow goes one way: script → cast → jobs → engine → clips → mix → write.
The command line is a thin layer over :func:`synthesize_dialog`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

from . import audio, backends, engine, mix, script as script_mod, voices as voices_mod
from .errors import InputError
from .script import Line, Pause, Script

log = logging.getLogger("dialog_tts")

#: ``{"A": "joe,pan=-0.3"}``, ``{"A": {"voice": "joe"}}``, ``["A=joe,pan=-0.3"]`` or parsed ``(name, fields)`` pairs.
VoicesArg = Union[Mapping[str, Union[str, Mapping[str, Any]]], Iterable[Union[str, tuple[str, Mapping[str, Any]]]], None]


@dataclass
class LineRecord:
    """What happened to one spoken line."""

    line_no: int
    speaker: str
    text: str
    voice: str
    backend: str
    start: float | None = None   # seconds into the output
    end: float | None = None
    error: str | None = None


@dataclass
class DialogResult:
    path: Path | None
    duration: float
    sample_rate: int
    channels: int
    lines: list[LineRecord]
    voices: dict[str, str]                 # speaker -> voice description
    loudness: float | None = None
    true_peak: float | None = None
    wall_time: float = 0.0
    notes: list[str] = field(default_factory=list)


def _overrides(voices: VoicesArg) -> list[tuple[str, Mapping[str, Any]]]:
    if voices is None:
        return []
    if isinstance(voices, Mapping):
        out = []
        for name, spec in voices.items():
            if isinstance(spec, Mapping):
                fields = {str(k).lower(): v for k, v in spec.items()}
                voices_mod.voice_from_fields(fields, where=f"voices[{name!r}]")
                out.append((str(name), fields))
            else:
                out.append(voices_mod.parse_assignment(f"{name}={spec}"))
        return out
    return [v if isinstance(v, tuple) else voices_mod.parse_assignment(v) for v in voices]


def load_script(script: Union[str, os.PathLike[str], Script], *, speak_directions: bool = False) -> Script:
    if isinstance(script, Script):
        return script
    return script_mod.load(script, speak_directions=speak_directions)


def synthesize_dialog(
    script: Union[str, os.PathLike[str], Script],
    out: Union[str, os.PathLike[str], None] = None,
    *,
    voices: VoicesArg = None,
    speaker_map: Union[str, os.PathLike[str], None] = None,
    backend: str = backends.DEFAULT_BACKEND,
    sample_rate: int = 24000,
    stereo: bool = True,
    gap_ms: float = 250.0,
    lufs: float | None = None,
    true_peak: float = -1.0,
    speak_directions: bool = False,
    workers: int = 4,
    progress_callback: engine.ProgressCallback | None = None,
) -> DialogResult:
    """Render *script* (a path or a parsed :class:`Script`) to *out*.

    *voices* maps speaker names to voice specs (``{"A": "joe,pan=-0.3"}``) or is
    a list of ``"NAME=SPEC"`` strings; they override *speaker_map* (a YAML path).
    With ``out=None`` nothing is written and the mixed audio is still measured.
    Raises :class:`~dialog_tts.errors.DialogTTSError` subclasses on bad input
    (``exit_code`` 2) and :class:`~dialog_tts.engine.SynthesisFailed` when lines fail.
    """
    started = time.perf_counter()
    if out is not None:
        audio.check_writable(out)
    settings = _settings(sample_rate, stereo, gap_ms, lufs, true_peak)
    parsed = load_script(script, speak_directions=speak_directions)
    smap = voices_mod.load_speaker_map(speaker_map) if speaker_map is not None else None
    cast = voices_mod.cast(parsed, speaker_map=smap, overrides=_overrides(voices), default_backend=backend)

    spoken = parsed.lines
    jobs = [engine.Job(line.text, cast[line.key], parsed.path, line.line_no, line.speaker) for line in spoken]
    result = engine.Engine(workers=workers, progress=progress_callback).run(jobs)
    if result.failures:
        raise engine.SynthesisFailed(result.failures, len(jobs))

    items: list[mix.Item] = []
    clip_iter = iter(result.clips)
    for event in parsed.events:
        if isinstance(event, Pause):
            items.append(mix.Silence(event.seconds))
        else:
            voice = cast[event.key]
            clip = next(clip_iter)
            assert clip is not None
            items.append(mix.Placement(clip, pan=voice.pan or 0.0, gain_db=voice.gain))
    mixed = mix.mix(items, settings)
    for note in mixed.notes:
        log.warning(note)
    if out is not None:
        audio.write(out, mixed.samples, mixed.sample_rate)

    records = [LineRecord(line.line_no, line.speaker, line.text, cast[line.key].name,
                          cast[line.key].backend or "", start, end)
               for line, (start, end) in zip(spoken, mixed.spans)]
    return DialogResult(
        path=Path(out) if out is not None else None,
        duration=mixed.duration, sample_rate=mixed.sample_rate, channels=settings.channels,
        lines=records, voices={parsed.speakers[k]: v.describe() for k, v in cast.items()},
        loudness=mixed.loudness, true_peak=mixed.true_peak,
        wall_time=time.perf_counter() - started, notes=mixed.notes,
    )


def _settings(sample_rate: int, stereo: bool, gap_ms: float, lufs: float | None,
              true_peak: float) -> mix.MixSettings:
    if not 8000 <= sample_rate <= 192000:
        raise InputError(f"sample rate {sample_rate} is out of range (8000-192000 Hz)")
    if gap_ms < 0:
        raise InputError(f"gap {gap_ms:g} ms must not be negative")
    if lufs is not None and not -70.0 <= lufs <= 0.0:
        raise InputError(f"loudness target {lufs:g} LUFS is out of range (-70 to 0)")
    if not -20.0 <= true_peak <= 0.0:
        raise InputError(f"true-peak ceiling {true_peak:g} dBTP is out of range (-20 to 0)")
    return mix.MixSettings(sample_rate=sample_rate, channels=2 if stereo else 1, gap=gap_ms / 1000.0,
                           lufs=lufs, true_peak=true_peak)


def list_voices(backend: str | None = None) -> dict[str, list[backends.VoiceInfo]]:
    """Every registered backend's voices (or one backend's), by backend name."""
    names = [backend] if backend else backends.available()
    return {name: backends.get_backend(name).list_voices() for name in names}


__all__ = ["synthesize_dialog", "DialogResult", "LineRecord", "load_script", "list_voices",
           "Line", "Script"]
