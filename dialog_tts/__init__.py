"""dialog-tts: turn a multi-speaker dialog script into one finished audio file.

    >>> from dialog_tts import synthesize_dialog
    >>> result = synthesize_dialog("samples/dialog.txt", "dialog.wav", voices={"A": "joe,pan=-0.3"})

The public names are imported lazily so that ``import dialog_tts`` (and
``dialog-tts --help``) stay fast; NumPy and the backends load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from dialog_tts.errors import (
    BackendUnavailableError,
    DialogTTSError,
    InputError,
    LoudnessError,
    OutputError,
    QualityFailed,
    ScriptError,
    SynthesisError,
    SynthesisFailed,
    TransientSynthesisError,
    UnknownBackendError,
    UnknownVoiceError,
    VoiceSpecError,
)

_LAZY = {
    "synthesize_dialog": "api", "batch": "api", "synthesize_batch": "api", "plan_dialog": "api",
    "Renderer": "api", "RenderOptions": "api", "AudioStream": "api", "list_voices": "api",
    "DialogResult": "api", "LineRecord": "api", "BatchResult": "api",
    "Script": "script.parse", "Line": "script.parse", "Pause": "script.parse",
    "Voice": "script.voice", "Clip": "io.audio",
}

__all__ = [*_LAZY,  # noqa: PLE0604 - the lazy names are strings too
           "DialogTTSError", "InputError", "ScriptError", "VoiceSpecError", "UnknownBackendError",
           "UnknownVoiceError", "BackendUnavailableError", "SynthesisError", "SynthesisFailed",
           "TransientSynthesisError", "QualityFailed", "LoudnessError",
           "OutputError", "__version__"]


__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dialog_tts' has no attribute {name!r}")
