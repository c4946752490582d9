"""espeak-ng: every language and variant of espeak-ng, offline and instant.

Uses the ``libespeak-ng.so`` and data that the ``espeakng-loader`` wheel ships,
through ctypes.  A voice is ``LANGUAGE[+VARIANT]``: ``en-us``, ``ko``,
``en-gb-x-rp+f3``, ``fr+Annie``.  The library is a process-wide singleton, so
every call holds one lock.  Pitch shifts use the same resampling trick as the
piper backend (rate compensated), so ``pitch=+2st`` means two semitones.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import replace
from importlib import metadata
from typing import Any

from ..audio import Clip, apply_gain_db, from_pcm16
from ..errors import BackendUnavailableError, SynthesisError, UnknownVoiceError
from ..voices import Voice, close_matches
from .base import Backend, VoiceInfo

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE = 1
_MIN_RATE, _MAX_RATE = 80, 450
_GENDERS = {1: "male", 2: "female"}

_lib_lock = threading.RLock()  # espeak-ng is one global state per process
_lib: Any = None
_sample_rate = 0
_chunks: list[bytes] = []
_callback: Any = None


class _VoiceStruct(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte),
                ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte),
                ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


def _library() -> tuple[Any, int]:
    """Load and initialize libespeak-ng once (caller holds ``_lib_lock``)."""
    global _lib, _sample_rate, _callback
    if _lib is not None:
        return _lib, _sample_rate
    try:
        import espeakng_loader
    except ImportError as exc:
        raise BackendUnavailableError("espeak-ng is not installed: pip install espeakng-loader") from exc
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                 espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        raise BackendUnavailableError("espeak-ng failed to initialize its data")
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                     ctypes.c_void_p)

    def on_audio(wav: Any, count: int, _events: Any) -> int:
        if wav and count > 0:
            _chunks.append(ctypes.string_at(wav, count * 2))
        return 0

    _callback = callback_type(on_audio)  # keep a reference: C holds the pointer
    lib.espeak_SetSynthCallback(_callback)
    _lib, _sample_rate = lib, rate
    return lib, rate


class EspeakBackend(Backend):
    name = "espeak"
    base_wpm = 175.0

    def __init__(self) -> None:
        super().__init__()
        self._languages: dict[str, VoiceInfo] | None = None
        self._variants: dict[str, str] | None = None

    # ------------------------------------------------------------ voices
    def _tables(self) -> tuple[dict[str, VoiceInfo], dict[str, str]]:
        if self._languages is None or self._variants is None:
            import espeakng_loader

            with _lib_lock:
                lib, _ = _library()
                listing = lib.espeak_ListVoices(None)
            languages: dict[str, VoiceInfo] = {}
            i = 0
            while listing[i]:
                v = listing[i].contents
                i += 1
                identifier = v.identifier.decode()
                if identifier.startswith("mb/"):
                    continue  # MBROLA voices need data that is not installed
                lang = v.languages[1:].split(b"\0", 1)[0].decode()
                languages.setdefault(lang.lower(), VoiceInfo(lang, lang, _GENDERS.get(v.gender, ""),
                                                             v.name.decode()))
            variants_dir = os.path.join(espeakng_loader.get_data_path(), "voices", "!v")
            variants = {f.lower(): f for f in os.listdir(variants_dir)}
            self._languages, self._variants = languages, variants
        return self._languages, self._variants

    def resolve(self, voice: Voice) -> Voice:
        languages, variants = self._tables()
        base, _, variant = (voice.name or "en-us").partition("+")
        info = languages.get(base.strip().lower())
        if info is None:
            hints = close_matches(base, [v.name for v in languages.values()])
            raise UnknownVoiceError(f"unknown espeak voice {base!r}" +
                                    (f" (did you mean {', '.join(hints)}?)" if hints else
                                     " (dialog-tts voices --backend espeak lists them)"))
        name = info.name
        if variant:
            canon = variants.get(variant.strip().lower())
            if canon is None:
                hints = close_matches(variant, variants.values())
                raise UnknownVoiceError(f"unknown espeak variant {variant!r}" +
                                        (f" (did you mean {', '.join(hints)}?)" if hints else ""))
            name = f"{name}+{canon}"
        return replace(voice, name=name)

    def list_voices(self) -> list[VoiceInfo]:
        languages, variants = self._tables()
        return sorted(languages.values(), key=lambda v: v.name)

    def variants(self) -> list[str]:
        return sorted(self._tables()[1].values(), key=str.lower)

    def palette(self) -> list[str]:
        return ["en-us", "en-us+f3", "en-gb-x-rp+m3", "en-us+f1", "en-gb+m7", "en-us+f5", "en-us+m1",
                "en-gb-x-rp+f2"]

    def fingerprint(self, voice: Voice) -> str:
        try:
            version = metadata.version("espeakng-loader")
        except metadata.PackageNotFoundError:
            version = "?"
        return f"espeakng-loader {version}"

    # ------------------------------------------------------------ synthesis
    def synthesize(self, text: str, voice: Voice) -> Clip:
        pitch_factor = 2.0 ** (voice.pitch / 12.0)
        wpm = round(self.base_wpm * voice.speed(self.base_wpm) / pitch_factor)
        data = text.encode("utf-8")
        with _lib_lock:
            lib, rate = _library()
            if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise SynthesisError(f"espeak-ng could not select voice {voice.name!r}")
            lib.espeak_SetParameter(_RATE, max(_MIN_RATE, min(_MAX_RATE, wpm)), 0)
            _chunks.clear()
            status = lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
            lib.espeak_Synchronize()
            pcm = b"".join(_chunks)
            _chunks.clear()
        if status != 0:
            raise SynthesisError(f"espeak-ng failed (status {status})")
        return apply_gain_db(from_pcm16(pcm, round(rate * pitch_factor)), voice.volume)
