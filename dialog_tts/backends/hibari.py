"""Hibari: small offline neural voices (Kokoro-82M voices distilled to 7.9 MB ONNX models).

``heart`` (American English, female) is in the ``hibari-tts`` wheel and always
works offline.  ``fenrir``, ``emma``, ``fable`` and ``kore`` are one download
each into ``$HIBARI_HOME`` or ``~/.cache/hibari``; a voice that is not there
(or whose sha256 does not match hibari's registry) is a usage error when the
cast is resolved, before anything is synthesized, and the message says how to
get it.  dialog-tts never downloads.

Pitch works as in the piper backend: synthesize at ``speed / p`` and relabel the
clip's sample rate by ``p`` (the mixer's soxr resampler does the work), which
moves pitch and timbre together by ``p`` and keeps the speaking rate.  Derived
voices (``heart-low``) are ``heart`` shifted that way.  Output is deterministic:
hibari's noise has a fixed seed, and onnxruntime's sums depend on the thread
count, which is therefore part of the cache fingerprint (default 1 thread).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from dialog_tts.backends.base import Backend, Setting, VoiceInfo, int_in, package_version, shaped, with_take
from dialog_tts.errors import BackendUnavailableError, SynthesisError, UnknownVoiceError
from dialog_tts.script.directions import Delivery
from dialog_tts.script.lexicon import Entry
from dialog_tts.script.voice import Voice, close_matches

if TYPE_CHECKING:
    from dialog_tts.io.audio import Clip

BUNDLED = "heart"
#: Voices derived from a hibari voice: name -> (source voice, semitones).  Only those that
#: passed the suite's intelligibility and pitch bounds (tests/test_voice_quality.py).
DERIVED: dict[str, tuple[str, float]] = {"heart-low": ("heart", -2.0)}
SEED = 0                      # hibari's noise seed: fixed, so a line always sounds the same
MIN_SPEED, MAX_SPEED = 0.5, 2.0   # hibari's documented speed range (durations saturate beyond 2)


def package_dir() -> Path:
    """hibari's package folder, found without importing it."""
    spec = importlib.util.find_spec("hibari")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError("hibari is not installed: pip install hibari-tts")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def _hibari_voices() -> ModuleType:
    """hibari's own ``voices`` module (download URL, downloader), loaded from its file.

    Importing ``hibari`` runs its ``__init__``, which imports numpy and scipy: far too heavy
    for ``dialog-tts voices`` and for resolving a cast.  ``hibari/voices.py`` needs only
    the standard library, so it is loaded on its own, and only for a missing voice's message.
    """
    path = package_dir() / "voices.py"
    file_spec = importlib.util.spec_from_file_location("dialog_tts_hibari_voices", path)
    if file_spec is None or file_spec.loader is None:
        raise BackendUnavailableError(f"hibari's voice registry {path} cannot be loaded")
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=1)
def voice_registry() -> dict[str, dict[str, Any]]:
    """hibari's ``assets/voices.json``, read directly: loading ``hibari/voices.py`` imports
    urllib.request (http, ssl, email), a visible share of ``dialog-tts voices``."""
    import json

    with open(package_dir() / "assets" / "voices.json", encoding="utf-8") as f:
        voices: dict[str, dict[str, Any]] = json.load(f)
    return voices


def cache_dir() -> str:
    """Where hibari keeps downloaded voices: ``hibari.voices.cache_dir()``, restated without its
    imports (tests/test_hibari.py checks that the two agree)."""
    import os
    import sys

    if os.environ.get("HIBARI_HOME"):
        return os.environ["HIBARI_HOME"]
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hibari")


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered while its size and mtime stay the same."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class HibariBackend(Backend):
    name = "hibari"
    base_wpm = 212.0  # heart's natural rate on English prose, measured (words / trimmed duration)
    settings: ClassVar[Mapping[str, Setting]] = {"threads": Setting("threads", int_in(1, 256),
                                   "onnxruntime threads per synthesis call (part of the cache key) [default: 1]")}
    #: onnxruntime threads per synthesis call; 1 (hibari's own default) runs far faster than real time
    threads: int = 1

    @property
    def cpus_per_call(self) -> int:
        return self.threads

    def __init__(self) -> None:
        self._models: dict[tuple[str, int], Any] = {}
        self._load_lock = threading.Lock()

    # ------------------------------------------------------------ the voice registry
    def registry(self) -> dict[str, dict[str, Any]]:
        """hibari's voices.json: name -> {language, gender, file, bytes, sha256, bundled, ...}."""
        return voice_registry()

    def model_path(self, name: str) -> Path:
        """Where voice *name*'s model is (in the package, or in hibari's cache folder)."""
        entry = self.registry()[name]
        folder = package_dir() / "assets" if entry.get("bundled") else Path(cache_dir())
        return folder / entry["file"]

    def state(self, name: str) -> str:
        """'bundled', 'downloaded', 'missing' or 'corrupt' (present, wrong sha256)."""
        entry = self.registry()[name]
        if entry.get("bundled"):
            return "bundled"
        path = self.model_path(name)
        try:
            stat = path.stat()
        except OSError:
            return "missing"
        ok = stat.st_size == entry["bytes"] and _sha256(str(path), stat.st_size, stat.st_mtime_ns) == entry["sha256"]
        return "downloaded" if ok else "corrupt"

    def _missing_message(self, name: str) -> str:
        entry, path = self.registry()[name], self.model_path(name)
        problem = ("does not match hibari's sha256; delete it and" if self.state(name) == "corrupt"
                   else f"is not downloaded ({entry['bytes'] / 1e6:.1f} MB);")
        return (f"hibari voice {name!r} {problem} fetch it on a machine with internet: "
                f"python -c \"from hibari.voices import voice_path; voice_path('{name}')\", "
                f"or download {_hibari_voices().BASE_URL}{entry['file']} to {path}")

    def _source(self, name: str) -> tuple[str, float]:
        """(hibari voice, semitones) for a voice name; UnknownVoiceError if it cannot be used now."""
        key = name.strip().lower()
        source, shift = DERIVED.get(key, (key, 0.0))
        registry = self.registry()
        if source not in registry:
            hints = close_matches(name, [*registry, *DERIVED])
            raise UnknownVoiceError(f"unknown hibari voice {name!r}" +
                                    (f" (did you mean {', '.join(hints)}?)" if hints else
                                     f" (voices: {', '.join([*registry, *DERIVED])})"))
        if self.state(source) not in ("bundled", "downloaded"):
            raise UnknownVoiceError(self._missing_message(source))
        return source, shift

    # ------------------------------------------------------------ Backend hooks
    def resolve(self, voice: Voice) -> Voice:
        name = (voice.name or BUNDLED).strip().lower()
        self._source(name)
        return replace(voice, name=name)

    def knows(self, name: str) -> bool:
        # every registry voice, present or not: resolving a missing one gives the message on how to get it
        key = name.strip().lower()
        return key in DERIVED or key in self.registry()

    def voice_gender(self, name: str) -> str:
        key = name.strip().lower()
        entry = self.registry().get(DERIVED.get(key, (key, 0.0))[0])
        return str(entry.get("gender", "")) if entry else ""

    def voice_accent(self, name: str) -> str:
        key = name.strip().lower()
        entry = self.registry().get(DERIVED.get(key, (key, 0.0))[0])
        return ("british" if entry.get("british") else "american") if entry else ""

    def list_voices(self) -> list[VoiceInfo]:
        infos = []
        for name, entry in self.registry().items():
            state = self.state(name)
            where = {"bundled": "in the package", "downloaded": "downloaded",
                     "corrupt": "present but its sha256 does not match: download it again"}.get(
                state, "not downloaded")
            infos.append(VoiceInfo(name, entry["language"], entry["gender"],
                                   f"{entry['accent']} (Kokoro {entry['kokoro']}), "
                                   f"{entry['bytes'] / 1e6:.1f} MB, {where}"))
        for name, (source, shift) in DERIVED.items():
            infos.append(VoiceInfo(name, self.registry()[source]["language"], self.voice_gender(name),
                                   f"{source}, {shift:+.1f} semitones"))
        return infos

    def palette(self) -> list[str]:
        """heart and its derived voices, then every downloaded voice."""
        derived = [n for n, (source, _) in DERIVED.items() if source == BUNDLED]
        downloaded = [n for n in self.registry() if self.state(n) == "downloaded"]
        return [BUNDLED, *derived, *downloaded]

    def fingerprint(self, voice: Voice) -> str:
        source, _ = self._source(voice.name)
        entry = self.registry()[source]
        return (f"hibari-tts {package_version('hibari-tts')}; {entry['file']} sha256 {entry['sha256'][:16]}; "
                f"threads {self.threads}; seed {SEED}")

    def retake(self, voice: Voice, take: int) -> Voice:
        return with_take(voice, take)        # take n: seed SEED + n - 1

    def language(self, voice: Voice, text: str = "") -> str:
        source, _ = self._source(voice.name)
        return str(self.registry()[source].get("language", ""))

    # ------------------------------------------------------------ synthesis
    def apply_delivery(self, voice: Voice, delivery: Delivery) -> Voice:
        """Speed and volume (hibari's pitch moves with a rate relabelling, which also changes the timbre)."""
        return shaped(voice, delivery, pitch=False)

    def pronounce(self, word: str, entry: Entry) -> str:
        """IPA phonemes inline, hibari's way (``[word](/phonemes/)``), else the respelling."""
        return f"[{word}](/{entry.phonemes}/)" if entry.phonemes else entry.say or word

    def _model_file(self, source: str) -> Path:
        """The voice's model, or its onnxruntime-optimized copy (the same graph, loaded in a third of the time)."""
        from dialog_tts.backends.derived import optimized_onnx

        path = self.model_path(source)
        stat = path.stat()
        identity = f"sha256 {self.registry()[source]['sha256']} {stat.st_size} {stat.st_mtime_ns}"
        return optimized_onnx(path, identity) or path

    def _load(self, source: str) -> Any:
        key = (source, self.threads)
        with self._load_lock:
            model = self._models.get(key)
            if model is None:
                from dialog_tts.backends.hibari_fft import import_hibari

                try:
                    Hibari = import_hibari().Hibari
                except ImportError as exc:
                    raise BackendUnavailableError(f"hibari is not installed ({exc.name}): "
                                                  f"pip install hibari-tts") from exc
                from dialog_tts.backends.hibari_g2p import lazy_g2p

                model = Hibari(voice=source, model=str(self._model_file(source)), threads=self.threads,
                               g2p=lazy_g2p(package_dir(), package_version("hibari-tts"),
                                            bool(self.registry()[source].get("british"))))
                model.phonemize("Hello.")  # builds the G2P now, once, under the lock
                self._models[key] = model
            return model

    def synthesize(self, text: str, voice: Voice) -> Clip:
        from dialog_tts.io.audio import apply_gain_db, concat

        source, shift = self._source(voice.name)
        model = self._load(source)
        pitch_factor = 2.0 ** ((shift + voice.pitch) / 12.0)
        speed = min(MAX_SPEED, max(MIN_SPEED, voice.speed(self.base_wpm) / pitch_factor))
        try:
            # one array per sentence (their join is exactly what model(text) returns), so the
            # clip knows where its sentences start
            parts = list(model.stream(text, speed=speed, seed=SEED + int(voice.option("take") or 1) - 1))
        except Exception as exc:  # hibari raises plain exceptions; keep the reason
            raise SynthesisError(f"hibari failed: {exc}") from exc
        rate = round(model.sample_rate * pitch_factor)
        return apply_gain_db(concat(parts, rate), voice.volume)

    def close(self) -> None:
        with self._load_lock:
            self._models.clear()

