"""Shared fixtures: a fake backend registered through the real registry."""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dialog_tts import backends
from dialog_tts.backends.base import Backend, VoiceInfo
from dialog_tts.errors import UnknownVoiceError
from dialog_tts.io.audio import Clip
from dialog_tts.script.voice import Voice

FAKE_RATE = 16000
FAKE_VOICES = {"low": 110.0, "mid": 160.0, "high": 230.0, "alto": 300.0}


class FakeBackend(Backend):
    """Base of the test fakes: they count calls in plain attributes, so a render's view is the fake itself.

    Their audio is tones, not speech: the quality gate checks only its level and clipping.
    """

    speech = False

    def bind(self, options, *, workers):
        self.parse_settings(options)
        return self


class ToneBackend(FakeBackend):
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


def registered(name, inst):
    """Register the fake *inst* as backend *name* for a fixture's lifetime (use with ``yield from``)."""
    backends.register(name, lambda: inst)
    try:
        yield inst
    finally:
        backends.unregister(name)


@pytest.fixture
def tone_backend():
    """A fresh ToneBackend registered as 'tone' for the duration of a test."""
    inst = ToneBackend()
    yield from registered("tone", inst)


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke the command line in a fresh working folder (the test's tmp_path)."""
    from click.testing import CliRunner

    from dialog_tts.cli import main

    monkeypatch.chdir(tmp_path)

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args])
    return invoke


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


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty cache: none touches the user's ~/.cache."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DIALOG_TTS_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def model_cache_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def private_model_cache(model_cache_folder, monkeypatch):
    """Derived model data (optimized ONNX graphs, hibari's G2P tables) go to one folder of this test session
    (made once, as on a user's machine), never to the user's ~/.cache."""
    monkeypatch.setenv("DIALOG_TTS_MODEL_CACHE", str(model_cache_folder))
    return model_cache_folder


@pytest.fixture(autouse=True)
def no_hibari_downloads(tmp_path_factory, monkeypatch):
    """hibari looks for downloaded voices in an empty folder: the offline default cast, whatever the machine has."""
    path = tmp_path_factory.mktemp("hibari")
    monkeypatch.setenv("HIBARI_HOME", str(path))
    return path


class FlakyBackend(FakeBackend):
    """A fake with a random delay per call (seeded), scripted failures and a concurrency count.

    ``failures[text]`` is a list of exceptions raised by the first calls for that
    text, in order; after they run out, the call succeeds.  The delay is slept
    on a threading.Event that tests may never set, so it is a real wait but
    tiny (at most ``max_delay`` seconds).
    """

    name = "flaky"
    base_wpm = 170.0

    def __init__(self, max_delay: float = 0.005, max_concurrency: int | None = None, seed: int = 1) -> None:
        super().__init__()
        import random

        self.random = random.Random(seed)
        self.max_delay = max_delay
        self.max_concurrency = max_concurrency  # type: ignore[misc]
        self.failures: dict[str, list[BaseException]] = {}
        self.calls: list[str] = []
        self.active = 0
        self.max_active = 0
        self._count = threading.Lock()
        self._event = threading.Event()

    def resolve(self, voice: Voice) -> Voice:
        return replace(voice, name=voice.name or "v1")

    def list_voices(self) -> list[VoiceInfo]:
        return [VoiceInfo("v1"), VoiceInfo("v2")]

    def palette(self) -> list[str]:
        return ["v1", "v2"]

    def synthesize(self, text: str, voice: Voice) -> Clip:
        with self._count:
            self.calls.append(text)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            delay = self.random.uniform(0, self.max_delay)
            queued = self.failures.get(text)
            error = queued.pop(0) if queued else None
        try:
            self._event.wait(delay)
            if error is not None:
                raise error
            # a tone whose pitch encodes the text, so results can be matched to lines
            freq = 200 + (sum(map(ord, text)) % 400)
            return tone_clip(freq * 2 ** (voice.pitch / 12), 0.2 + 0.01 * len(text))
        finally:
            with self._count:
                self.active -= 1


@pytest.fixture
def flaky():
    inst = FlakyBackend()
    yield from registered("flaky", inst)


@pytest.fixture
def edge_server(monkeypatch):
    """A local server speaking Edge's websocket protocol; the edge backend is pointed at it."""
    from dialog_tts.backends.edge import EdgeBackend
    from edge_server import EdgeServer, point_client_at

    server = EdgeServer().start()
    point_client_at(monkeypatch, server)                       # no proxies, clean client state
    # the server speaks tones, not speech: the quality gate checks only their level and clipping
    monkeypatch.setattr(EdgeBackend, "speech", False)
    monkeypatch.setenv("DIALOG_TTS_EDGE_URL", server.url)      # the backend's own way in
    yield server
    server.stop()


@pytest.fixture
def mounts(tmp_path):
    """Small file systems for disk-full and read-only tests (root only; skipped elsewhere).

    ``mounts.tmpfs(size)`` mounts a tmpfs of that size; ``mounts.read_only(path)`` makes *path*
    read-only (a read-only bind mount as root, file modes otherwise).  All undone afterwards.
    """
    import os
    import stat
    import subprocess

    done: list[tuple[str, Path]] = []

    def run(*args: str) -> None:
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"`{' '.join(args)}` is not permitted here ({result.stderr.strip()}): needs root")

    class Mounts:
        def tmpfs(self, size: str, name: str = "tmpfs") -> Path:
            path = tmp_path / name
            path.mkdir()
            run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
            done.append(("umount", path))
            return path

        def read_only(self, path: Path) -> None:
            if os.geteuid() == 0:   # root writes through file modes: only a read-only mount stops it
                run("mount", "--bind", str(path), str(path))
                done.append(("umount", path))
                run("mount", "-o", "remount,ro,bind", str(path))
            else:
                for item in [path, *path.rglob("*")]:
                    item.chmod(item.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
                done.append(("chmod", path))
    yield Mounts()
    import gc

    gc.collect()    # sqlite connections of a failed open hold the mount busy until collected
    for action, path in reversed(done):
        if action == "umount":
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        else:
            for item in [path, *path.rglob("*")]:
                item.chmod(item.stat().st_mode | stat.S_IWUSR)


def speech_like(text: str, wpm: float = 170.0, rate: int = FAKE_RATE, seed: int = 0) -> np.ndarray:
    """A signal with speech's envelope: a 120 Hz buzz in syllables (1.45 a word), gaps between words.

    As long as the quality gate predicts for *text* at *wpm*; *seed* varies the buzz (another take).
    """
    from dialog_tts.quality.checks import spoken_words

    rng = np.random.default_rng(seed)
    syllables = max(1, round(spoken_words(text) * 1.45))
    syllable = 60.0 / wpm / 1.45
    parts = [np.zeros(int(0.05 * rate), np.float32)]
    for i in range(syllables):
        n = int(syllable * rate * 0.8)
        t = np.arange(n) / rate
        f0 = 120.0 * (1 + 0.1 * rng.standard_normal())
        buzz = sum(np.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 6))
        parts.append((0.25 * np.hanning(n) * buzz).astype(np.float32))
        parts.append(np.zeros(int(syllable * rate * 0.2), np.float32))
    return np.concatenate(parts)


class GlitchyBackend(FakeBackend):
    """Speaks speech-like audio, but fails in the way ``plan[text]`` says on the first takes.

    ``plan[text]`` lists one fault per take ("truncate", "silence", "loop", "clip",
    "tone", "gap", "pause", or "clean"); takes past the list are clean.  Seeded by the take, as a
    stochastic backend with seeds would be: take *n* always sounds the same.
    """

    name = "glitchy"
    speech = True
    base_wpm = 170.0

    def __init__(self) -> None:
        super().__init__()
        self.plan: dict[str, list[str]] = {}
        self.calls: list[tuple[str, int]] = []
        self.lang = "en-US"
        self._calls_lock = threading.Lock()

    def resolve(self, voice: Voice) -> Voice:
        return replace(voice, name=voice.name or "g1")

    def list_voices(self) -> list[VoiceInfo]:
        return [VoiceInfo("g1", "en-US"), VoiceInfo("g2", "en-US")]

    def palette(self) -> list[str]:
        return ["g1", "g2"]

    def retake(self, voice: Voice, take: int) -> Voice:
        from dialog_tts.backends.base import with_take

        return with_take(voice, take)

    def language(self, voice: Voice, text: str = "") -> str:
        return self.lang

    def synthesize(self, text: str, voice: Voice) -> Clip:
        take = int(voice.option("take") or 1)
        with self._calls_lock:
            self.calls.append((text, take))
        faults = self.plan.get(text, [])
        fault = faults[take - 1] if take <= len(faults) else "clean"
        x = speech_like(text, self.base_wpm * voice.speed(self.base_wpm), seed=take * 7919 + len(text))
        return Clip(glitch(x, fault), FAKE_RATE)


def glitch(x: np.ndarray, fault: str) -> np.ndarray:
    """*x* spoiled in one of the ways neural voices fail."""
    if fault == "truncate":
        return x[: len(x) // 5]
    if fault == "silence":
        return np.zeros_like(x)
    if fault == "loop":
        return np.concatenate([x] * 4)
    if fault == "clip":
        return np.clip(x * 8.0, -1.0, 1.0).astype(np.float32)
    if fault == "tone":
        t = np.arange(len(x)) / FAKE_RATE
        return np.concatenate([x, (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)])
    if fault == "gap":
        return np.concatenate([x[: len(x) // 2], np.zeros(4 * FAKE_RATE, np.float32), x[len(x) // 2:]])
    if fault == "pause":        # a long pause, not a broken take: a soft failure of the pause check
        return np.concatenate([x[: len(x) // 2], np.zeros(5 * FAKE_RATE // 2, np.float32), x[len(x) // 2:]])
    assert fault == "clean", fault
    return x


@pytest.fixture
def glitchy():
    inst = GlitchyBackend()
    yield from registered("glitchy", inst)
