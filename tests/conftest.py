"""Shared fixtures: a fake backend registered through the real registry."""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dialog_tts import backends
from dialog_tts.audio import Clip
from dialog_tts.backends.base import Backend, VoiceInfo
from dialog_tts.errors import UnknownVoiceError
from dialog_tts.voice import Voice

FAKE_RATE = 16000
FAKE_VOICES = {"low": 110.0, "mid": 160.0, "high": 230.0, "alto": 300.0}


class FakeBackend(Backend):
    """Base of the test fakes: they count calls in plain attributes, so a render's view is the fake itself."""

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


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty cache: none touches the user's ~/.cache."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DIALOG_TTS_CACHE_DIR", str(path))
    return path


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
    backends.register("flaky", lambda: inst)
    yield inst
    backends.unregister("flaky")


@pytest.fixture
def edge_server(monkeypatch):
    """A local server speaking Edge's websocket protocol; the edge backend is pointed at it."""
    from edge_server import EdgeServer, point_client_at

    server = EdgeServer().start()
    point_client_at(monkeypatch, server)                       # no proxies, clean client state
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
