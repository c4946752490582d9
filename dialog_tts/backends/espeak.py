"""espeak-ng: every language and variant of espeak-ng, offline and instant.

Uses the ``libespeak-ng.so`` and data that the ``espeakng-loader`` wheel ships,
through ctypes.  A voice is ``LANGUAGE[+VARIANT]``: ``en-us``, ``ko``,
``en-gb-x-rp+f3``, ``fr+Annie``.  The library is a process-wide singleton, so
every call holds one lock.  Pitch shifts use the same resampling trick as the
piper backend (rate compensated), so ``pitch=+2st`` means two semitones.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialog_tts.backends.base import Backend, VoiceInfo, package_version, shaped
from dialog_tts.errors import BackendUnavailableError, SynthesisError, UnknownVoiceError
from dialog_tts.script.directions import Delivery
from dialog_tts.script.lexicon import Entry
from dialog_tts.script.voice import Voice, close_matches

if TYPE_CHECKING:
    from dialog_tts.io.audio import Clip

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_PHONEMES = 0x100  # espeakPHONEMES: read [[ ]] as phoneme mnemonics
_RATE = 1
_DEFAULT_RATE = 175  # espeak's own rate setting at speed 1.0
_MIN_RATE, _MAX_RATE = 80, 450

_lib_lock = threading.RLock()  # espeak-ng is one global state per process
_lib: Any = None
_sample_rate = 0
_chunks: list[bytes] = []
_callback: Any = None


def _data_path() -> Path:
    try:
        import espeakng_loader
    except ImportError as exc:
        raise BackendUnavailableError("espeak-ng is not installed: pip install espeakng-loader") from exc
    return Path(espeakng_loader.get_data_path())


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
    base_wpm = 200.0  # words per minute measured on English prose at espeak's default rate setting

    def __init__(self) -> None:
        super().__init__()
        self._voices: dict[str, VoiceInfo] | None = None
        self._aliases: dict[str, str] | None = None
        self._variants: dict[str, str] | None = None

    # ------------------------------------------------------------ voices
    def _tables(self) -> tuple[dict[str, VoiceInfo], dict[str, str], dict[str, str]]:
        """(voices by file name, alias -> file name, variants by lower-case name).

        Read from the voice files of espeak-ng-data (``lang/**``).  A voice is
        selected by its file name (``en`` for ``gmw/en``, which speaks en-gb);
        the languages each file names (``language en-gb 2``) are aliases, and an
        alias shared by several voices goes to the lowest priority number, as
        in espeak-ng.
        """
        if self._voices is None:
            data = _data_path()
            voices: dict[str, VoiceInfo] = {}
            aliases: dict[str, tuple[int, str]] = {}
            for path in sorted((data / "lang").rglob("*")):
                if not path.is_file():
                    continue
                name, gender, languages = "", "", []
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    words = line.split()
                    if len(words) >= 2 and words[0] == "name":
                        name = " ".join(words[1:])
                    elif len(words) >= 2 and words[0] == "gender":
                        gender = words[1]
                    elif len(words) >= 2 and words[0] == "language":
                        priority = int(words[2]) if len(words) > 2 and words[2].isdigit() else 5
                        languages.append((words[1].lower(), priority))
                if not languages:
                    continue
                file_name = path.name.lower()
                voices[file_name] = VoiceInfo(file_name, languages[0][0], gender, name)
                for lang, priority in languages:
                    if lang not in aliases or priority < aliases[lang][0]:
                        aliases[lang] = (priority, file_name)
            for file_name in voices:  # a voice's own file name always means that voice
                aliases[file_name] = (-1, file_name)
            variants = {f.name.lower(): f.name for f in (data / "voices" / "!v").iterdir()}
            self._voices, self._aliases = voices, {k: v for k, (_, v) in aliases.items()}
            self._variants = variants
        assert self._aliases is not None and self._variants is not None
        return self._voices, self._aliases, self._variants

    def resolve(self, voice: Voice) -> Voice:
        voices, aliases, variants = self._tables()
        base, _, variant = (voice.name or "en-us").partition("+")
        primary = aliases.get(base.strip().lower().replace("_", "-"))
        if primary is None:
            hints = close_matches(base, list(voices))
            raise UnknownVoiceError(f"unknown espeak voice {base!r}" +
                                    (f" (did you mean {', '.join(hints)}?)" if hints else
                                     " (dialog-tts voices --backend espeak lists them)"))
        name = primary
        if variant:
            canon = variants.get(variant.strip().lower())
            if canon is None:
                hints = close_matches(variant, variants.values())
                raise UnknownVoiceError(f"unknown espeak variant {variant!r}" +
                                        (f" (did you mean {', '.join(hints)}?)" if hints else ""))
            name = f"{name}+{canon}"
        return replace(voice, name=name)

    def list_voices(self) -> list[VoiceInfo]:
        return sorted(self._tables()[0].values(), key=lambda v: v.name)

    def voice_gender(self, name: str) -> str:
        variant = name.partition("+")[2].strip().lower()
        if len(variant) == 2 and variant[0] in "fm" and variant[1].isdigit():
            return "female" if variant[0] == "f" else "male"
        return super().voice_gender(name) if not variant else ""

    def variants(self) -> list[str]:
        return sorted(self._tables()[2].values(), key=str.lower)

    def palette(self) -> list[str]:
        return ["en-us", "en-us+f3", "en-gb-x-rp+m3", "en-us+f1", "en+m7", "en-us+f5", "en-us+m1",
                "en-gb-x-rp+f2"]

    def recognizable(self, voice: Voice) -> bool:
        return False     # pocketsphinx does not understand formant speech: median WER 0.85 on clean takes

    def language(self, voice: Voice, text: str = "") -> str:
        info = self._tables()[0].get(voice.name.partition("+")[0])
        return info.language if info is not None else ""

    def fingerprint(self, voice: Voice) -> str:
        version = package_version("espeakng-loader")
        return f"espeakng-loader {version}"

    def apply_delivery(self, voice: Voice, delivery: Delivery) -> Voice:
        """Speed and volume (pitch shifts here are resampling: they change the timbre too)."""
        return shaped(voice, delivery, pitch=False)

    def pronounce(self, word: str, entry: Entry) -> str:
        """espeak's own phoneme mnemonics as ``[[ ... ]]``, else the respelling (espeak reads no IPA)."""
        return f"[[{entry.espeak}]]" if entry.espeak else entry.say or word

    # ------------------------------------------------------------ synthesis
    def synthesize(self, text: str, voice: Voice) -> Clip:
        from dialog_tts.io.audio import apply_gain_db, from_pcm16

        pitch_factor = 2.0 ** (voice.pitch / 12.0)
        setting = round(_DEFAULT_RATE * voice.speed(self.base_wpm) / pitch_factor)
        data = text.encode("utf-8")
        with _lib_lock:
            lib, rate = _library()
            if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise SynthesisError(f"espeak-ng could not select voice {voice.name!r}")
            lib.espeak_SetParameter(_RATE, max(_MIN_RATE, min(_MAX_RATE, setting)), 0)
            _chunks.clear()
            flags = _CHARS_UTF8 | _ENDPAUSE | (_PHONEMES if "[[" in text else 0)
            status = lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, flags, None, None)
            lib.espeak_Synchronize()
            pcm = b"".join(_chunks)
            _chunks.clear()
        if status != 0:
            raise SynthesisError(f"espeak-ng failed (status {status})")
        return apply_gain_db(from_pcm16(pcm, round(rate * pitch_factor)), voice.volume)
