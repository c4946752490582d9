"""Shared fixtures: a fake backend registered through the real registry."""

from __future__ import annotations

import math
import threading
from dataclasses import replace

import numpy as np
import pytest

from dialog_tts import backends
from dialog_tts.audio import Clip
from dialog_tts.backends.base import Backend, VoiceInfo
from dialog_tts.errors import UnknownVoiceError
from dialog_tts.voices import Voice

FAKE_RATE = 16000
FAKE_VOICES = {"low": 110.0, "mid": 160.0, "high": 230.0, "alto": 300.0}


class ToneBackend(Backend):
    """Speaks every line as a tone: 50 ms per character at the voice's pitch.

    Deterministic and instant, so mixing and casting can be tested exactly.
    Counts its calls (and the most it saw at once) for the engine tests.
    """

    name = "tone"
    base_wpm = 170.0

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self._active = 0
        self.max_active = 0
        self._count_lock = threading.Lock()

    def resolve(self, voice: Voice) -> Voice:
        if (voice.name or "mid") not in FAKE_VOICES:
            raise UnknownVoiceError(f"unknown tone voice {voice.name!r}")
        return replace(voice, name=voice.name or "mid")

    def list_voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(n, "xx", "", f"{f:g} Hz tone") for n, f in FAKE_VOICES.items()]

    def palette(self) -> list[str]:
        return list(FAKE_VOICES)

    def synthesize(self, text: str, voice: Voice) -> Clip:
        with self._count_lock:
            self.calls.append((text, voice.name))
            self._active += 1
            self.max_active = max(self.max_active, self._active)
        try:
            return tone_clip(FAKE_VOICES[voice.name] * 2 ** (voice.pitch / 12),
                             0.05 * len(text) / voice.speed(self.base_wpm))
        finally:
            with self._count_lock:
                self._active -= 1


def tone_clip(freq: float, seconds: float, rate: int = FAKE_RATE, amp: float = 0.5) -> Clip:
    t = np.arange(round(seconds * rate)) / rate
    return Clip((amp * np.sin(2 * math.pi * freq * t)).astype(np.float32), rate)


@pytest.fixture
def tone_backend():
    """A fresh ToneBackend registered as 'tone' for the duration of a test."""
    inst = ToneBackend()
    backends.register("tone", lambda: inst)
    yield inst
    backends.unregister("tone")


@pytest.fixture
def write_script(tmp_path):
    """Write script text (str, or bytes as-is) to a file and return its path."""
    def write(text, name="script.txt"):
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path
    return write
