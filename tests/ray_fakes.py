"""Deterministic fake backends that Ray workers can import (tests/test_ray.py, benchmark_enhanced.py).

They are registered by class (``backends.register("det", DetBackend)``), so the
class travels to the workers by reference and each worker builds its own instance
through the registry.  Everything a test wants to see from a worker goes to files
named by the backend's run settings (``--backend-option det.log=...``), which a
worker receives with the view: the calls (text, node, process), the batches and
model loads of the batching fake, a marker of the one worker that killed itself.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dialog_tts.backends.base import Backend, Setting, VoiceInfo, float_in, int_in
from dialog_tts.errors import SynthesisError, TransientSynthesisError, UnknownVoiceError
from dialog_tts.io.audio import Clip
from dialog_tts.script.voice import Voice

RATE = 16000
VOICES = {"low": 120.0, "mid": 180.0, "high": 260.0}


def node_id() -> str:
    """The Ray node this process runs on ("local" outside Ray)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return "local"


def cpus() -> float:
    """The CPUs Ray gave this task (0 outside Ray)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        try:
            return ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
        except AssertionError:         # the driver (a thread-pool render in a test connected to Ray)
            pass
    return 0.0


def text_clip(text: str, voice: Voice) -> Clip:
    """The fake's audio: a tone whose pitch and length follow the text and voice (same in every process)."""
    freq = VOICES[voice.name] * (1 + (zlib.crc32(text.encode()) % 200) / 400)
    t = np.arange(round(RATE * (0.1 + 0.01 * len(text)))) / RATE
    return Clip((0.4 * np.sin(2 * math.pi * freq * t)).astype(np.float32), RATE)


def append(path: str | None, *fields: object) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write("\t".join(map(str, fields)) + "\n")


class DetBackend(Backend):
    """Deterministic, instant; its settings make it log, fail, hold or die where a test wants."""

    name = "det"
    base_wpm = 170.0
    speech = False      # tones: the quality gate checks only their level and clipping
    settings = {
        "log": Setting("log", str, "append 'call, text, node, pid' per call to this file"),
        "kill": Setting("kill", str, "marker file: the first call of a line with 'die' in it creates it "
                                     "and kills its own process"),
        "hold": Setting("hold", str, "a node id: calls on that node wait (up to 'latency' or 60 s)"),
        "fail_once": Setting("fail_once", str, "a folder: each line with 'flaky' in it fails once (transient)"),
        "exclusive": Setting("exclusive", str, "a file held during each call; a call finding it held logs 'overlap'"),
        "latency": Setting("latency", float_in(0, 10), "seconds each call waits on an event (no CPU, no GIL)"),
        "concurrency": Setting("max_concurrency", int_in(1, 64), "calls at once"),
        "threads": Setting("threads", int_in(1, 64), "CPU cores a call uses (what a Ray task asks for)"),
    }
    log: str | None = None
    kill: str | None = None
    hold: str | None = None
    fail_once: str | None = None
    exclusive: str | None = None
    latency: float = 0.0
    threads: int = 1

    @property
    def cpus_per_call(self) -> int:
        return self.threads

    def resolve(self, voice: Voice) -> Voice:
        name = voice.name or "mid"
        if name not in VOICES:
            raise UnknownVoiceError(f"unknown det voice {name!r}")
        return replace(voice, name=name)

    def list_voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(n) for n in VOICES]

    def palette(self) -> list[str]:
        return list(VOICES)

    def synthesize(self, text: str, voice: Voice) -> Clip:
        self._misbehave(text)
        append(self.log, "call", text, node_id(), os.getpid(), cpus())
        return text_clip(text, voice)

    def _misbehave(self, text: str) -> None:
        if self.kill and "die" in text and _create(self.kill):
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fail_once and "flaky" in text and _create(Path(self.fail_once) / f"{zlib.crc32(text.encode())}"):
            raise TransientSynthesisError("busy, try again")
        if "BAD" in text:
            raise SynthesisError("the fake rejects this line")
        if self.hold and node_id() == self.hold:
            append(self.log, "held", text, node_id(), os.getpid())
            threading.Event().wait(self.latency or 60)
        elif self.latency:
            threading.Event().wait(self.latency)
        if self.exclusive:
            if not _create(self.exclusive):
                append(self.log, "overlap", text, node_id(), os.getpid())
                return
            try:
                threading.Event().wait(0.02)
            finally:
                os.remove(self.exclusive)


class BatchDetBackend(DetBackend):
    """The deterministic fake as a batching (GPU-like) backend: voice name = model, loaded once per process."""

    name = "batchdet"
    needs_gpu = True
    batch_size = 4

    def __init__(self) -> None:
        self._loaded: set[str] = set()       # shared by the views: the "models" this process holds

    def batch_group(self, voice: Voice) -> object:
        return voice.name

    def synthesize(self, text: str, voice: Voice) -> Clip:
        return self.synthesize_batch([text], [voice])[0]

    def synthesize_batch(self, texts: Sequence[str], voices: Sequence[Voice]) -> list[Clip]:
        models = {v.name for v in voices}
        if len(models) != 1:
            raise SynthesisError(f"a batch must use one model, got {sorted(models)}")
        model = models.pop()
        if model not in self._loaded:
            self._loaded.add(model)
            append(self.log, "load", model, node_id(), os.getpid())
        for text in texts:
            self._misbehave(text)
        append(self.log, "batch", "|".join(texts), node_id(), os.getpid(), model)
        return [text_clip(t, v) for t, v in zip(texts, voices)]


def _create(path: Any) -> bool:
    """Create *path* if it does not exist; True if this call created it."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def read_log(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
