"""Qwen3-TTS (``qwen-tts``): preset voices, voice cloning, voice design and blends.

A qwen voice is one of four kinds, told apart by its keys:

* preset: ``voice: Vivian`` (a CustomVoice speaker), optionally ``instruct: "warm, upbeat"``;
* clone: ``ref_audio: guest.wav`` with ``ref_text:`` (what the clip says; without it only
  the speaker embedding is used);
* design: ``design: "a calm elderly male narrator"``;
* blend: ``mix: {Guest: 0.6, Host2: 0.4}``, a weighted average of the speaker embeddings
  of other speakers' clone voices.

``model:`` picks a model id or a local directory (defaults: the 1.7B CustomVoice, Base
and VoiceDesign models) and ``language:`` the language (default: the model's "auto").

The engine schedules this backend's lines (``needs_gpu``, ``batch_size`` > 1): they are
grouped by model (:meth:`batch_group`), bucketed by length and generated in batches on
one worker.  This backend keeps at most ``models_in_memory`` models loaded (least
recently used unloaded first) and caches voice-clone prompts in memory and on disk.
torch and qwen_tts are imported only when a line is synthesized.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from dialog_tts.backends.base import (
    Backend,
    Setting,
    VoiceInfo,
    install_hint,
    int_in,
    missing_modules,
    package_version,
    with_take,
)
from dialog_tts.backends.qwen_prompts import ClonePrompts, Wanted
from dialog_tts.errors import BackendUnavailableError, DialogTTSError, SynthesisError, UnknownVoiceError, VoiceSpecError
from dialog_tts.script.directions import Delivery
from dialog_tts.script.textfiles import read_text
from dialog_tts.script.voice import Voice, close_matches

if TYPE_CHECKING:
    from dialog_tts.io.audio import Clip

log = logging.getLogger("dialog_tts")

DEFAULT_MODELS = {
    "custom_voice": "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice",
    "base": "Qwen/Qwen3-TTS-12Hz-1.7B-Base",
    "voice_design": "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign",
}
#: Qwen's language names -> language codes (for the recognizer check).
_LANGUAGE_CODES = {"english": "en", "chinese": "zh", "japanese": "ja", "korean": "ko", "german": "de",
                   "french": "fr", "russian": "ru", "portuguese": "pt", "spanish": "es", "italian": "it"}
PRESET_SPEAKERS = ["Vivian", "Serena", "Uncle_Fu", "Dylan", "Eric", "Ryan", "Aiden", "Ono_Anna", "Sohee"]
#: The presets' sexes, as Qwen3-TTS's model card describes them (for casting by gender).
PRESET_GENDERS = {"Vivian": "female", "Serena": "female", "Uncle_Fu": "male", "Dylan": "male", "Eric": "male",
                  "Ryan": "male", "Aiden": "male", "Ono_Anna": "female", "Sohee": "female"}
_KIND_KEYS = ("ref_audio", "design", "mix")


def voice_kind(voice: Voice) -> str:
    """custom_voice, base (clone or blend) or voice_design, from the voice's keys."""
    if voice.option("design") is not None:
        return "voice_design"
    if voice.option("ref_audio") is not None or voice.option("mix") is not None:
        return "base"
    return "custom_voice"


def _file_identity(path: str) -> list[Any]:
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


#: The folders of a local model whose files qwen-tts loads: the model's own and its speech tokenizer's.
_MODEL_FOLDERS = (".", "speech_tokenizer")
_MODEL_SUFFIXES = (".json", ".safetensors", ".bin")


def _model_identity(model: str) -> str:
    """A model id as given, or a local directory by its config and weight files' identity.

    Only the files qwen-tts loads count: those of the folder itself and of its
    ``speech_tokenizer`` folder, never a walk of the tree (``model: /`` is quick).
    """
    path = Path(model).expanduser()
    if not path.is_dir():
        return model
    parts = []
    for folder in _MODEL_FOLDERS:
        try:
            with os.scandir(path / folder) as entries:
                found = sorted((e.name, e) for e in entries if e.name.endswith(_MODEL_SUFFIXES))
            for name, entry in found:
                if entry.is_file():
                    st = entry.stat()
                    parts.append([f"{folder}/{name}", st.st_size, st.st_mtime_ns])
        except OSError:  # missing or unreadable: loading the model will say so
            continue
    return _sha256_hex(json.dumps([str(path.resolve()), parts]).encode())[:16]


def _sha256_hex(data: bytes) -> str:
    import hashlib  # here, not at the top: OpenSSL is not loaded for `dialog-tts voices`

    return hashlib.sha256(data).hexdigest()


def _model_config(model: str) -> dict[str, Any] | None:
    """A local model folder's config.json (None for a model id); VoiceSpecError if it is unusable."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return None
    config = folder / "config.json"
    if not config.is_file():
        raise VoiceSpecError(f"model {model!r} is a folder without config.json: give a Qwen3-TTS model "
                             f"folder or a model id such as {DEFAULT_MODELS['custom_voice']}")
    text = read_text(config, what="model config", error=VoiceSpecError)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VoiceSpecError(f"model config is not valid JSON ({exc.msg})", path=config, line=exc.lineno) from None
    if not isinstance(data, dict):
        raise VoiceSpecError(f"model config is a JSON {type(data).__name__}, not an object", path=config)
    return data


def speakers_of(model: str) -> list[str] | None:
    """Preset speakers of a model without loading it (None: cannot tell)."""
    if model == DEFAULT_MODELS["custom_voice"] or model.endswith("-CustomVoice"):
        return PRESET_SPEAKERS
    data = _model_config(model)
    if data is None:
        return None
    talker = data.get("talker_config")
    spk = (talker.get("spk_id") if isinstance(talker, dict) else None) or data.get("spk_id")
    if not isinstance(spk, dict):
        return None
    known = {s.lower(): s for s in PRESET_SPEAKERS}   # keep the documented spelling
    return [known.get(str(k).lower(), str(k)) for k in spk]


def delivered(voice: Voice, delivery: Delivery) -> Voice:
    """The delivery in words: added to a preset's ``instruct`` or a designed voice's description.

    A cloned voice takes no instruction: only the volume changes.
    """
    options = dict(voice.options)
    kind = voice_kind(voice)
    key = "instruct" if kind == "custom_voice" else "design" if kind == "voice_design" else None
    if key is not None and delivery.instruct:
        options[key] = "; ".join(str(p) for p in (options.get(key), delivery.instruct) if p)
    volume = min(24.0, max(-60.0, voice.volume + delivery.volume))
    return replace(voice, volume=volume, options=tuple(sorted(options.items())))


def _blend_references(mix: Any, speaker_fields: Any) -> dict[str, Any]:
    """Each speaker of a blend as its clone settings (ref_audio, ref_text) and weight."""
    if not isinstance(mix, Mapping) or not mix:
        raise VoiceSpecError("mix: give speakers and weights, e.g. mix: {Guest: 0.6, Host: 0.4}")
    out: dict[str, Any] = {}
    for other, weight in mix.items():
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise VoiceSpecError(f"mix: weight {weight!r} of {other!r} is not a number") from None
        if not w > 0:
            raise VoiceSpecError(f"mix: weight of {other!r} must be positive")
        fields = speaker_fields(str(other))
        if fields is None:
            raise VoiceSpecError(f"mix: no speaker {other!r} in the speaker map or --voices")
        if not fields.get("ref_audio"):
            raise VoiceSpecError(f"mix: speaker {other!r} is not a cloned voice (it has no ref_audio)")
        out[str(other)] = {"ref_audio": fields["ref_audio"], "ref_text": fields.get("ref_text"), "weight": w}
    return out


_NEEDED = ("torch", "qwen_tts", "transformers")
_TRUE = ("1", "true", "yes", "on")


def _missing_message(missing: str) -> str:
    return (f"the qwen backend needs qwen-tts ({missing} is missing): {install_hint('qwen')} "
            "(on a machine without CUDA, see the README's CPU set-up)")


def import_torch() -> Any:
    """torch, with qwen_tts imported (with torchaudio stood in for during that import where it cannot
    load: :mod:`dialog_tts.backends.qwen_compat`).

    qwen-tts prints a banner on stdout when imported: it goes to stderr, so that
    stdout keeps only what dialog-tts itself prints there.
    """
    from dialog_tts.backends.qwen_compat import import_qwen_tts

    try:
        with contextlib.redirect_stdout(sys.stderr):
            import torch

            import_qwen_tts()
    except ImportError as exc:
        raise BackendUnavailableError(_missing_message(str(exc.name))) from exc
    return torch


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def in_hub_cache(model_id: str) -> bool:
    """Whether *model_id* (a hub id) is in the local Hugging Face cache (no network is used)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # noqa: BLE001 - an id the hub library rejects is not in its cache
        return False
    return isinstance(found, str)


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """(whether the model hub's host takes a connection, its host), tried directly unless a proxy is set.

    The hub client itself retries a dead network for about a minute per file.
    """
    import socket
    from urllib.parse import urlsplit

    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True, host                     # only the proxy knows: let the client try
    try:
        port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
        socket.create_connection((host, port), timeout=timeout).close()
    except (OSError, ValueError):
        return False, host
    return True, host


def _unloadable(model_id: str, reason: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"cannot load qwen model {model_id!r}: {reason.rstrip('.')}. Download it where there is a network "
        f"(huggingface-cli download {model_id} --local-dir DIR) and give the folder as model: DIR "
        "in the speaker map or --voices")


def load_model(model_id: str, warned_cpu: list[bool]) -> Any:
    """Qwen3TTSModel *model_id* on the GPU if there is one (else the CPU, with one warning a backend)."""
    torch = import_torch()
    from qwen_tts import Qwen3TTSModel

    if torch.cuda.is_available():
        device, dtype = "cuda:0", torch.bfloat16
    else:
        device, dtype = "cpu", torch.float32
        if not warned_cpu:
            log.warning("no CUDA GPU: running Qwen3-TTS on the CPU (slow)")
            warned_cpu.append(True)
    log.info("loading qwen model %s on %s", model_id, device)
    try:
        with contextlib.redirect_stdout(sys.stderr):    # keep stdout clean of the library's prints
            return Qwen3TTSModel.from_pretrained(model_id, device_map=device, dtype=dtype)
    except (OSError, ValueError) as exc:
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        if not Path(model_id).expanduser().exists():   # a hub id: not downloaded, and no hub to ask
            raise _unloadable(model_id, reason) from exc
        raise SynthesisError(f"cannot load qwen model {model_id!r}: {reason}") from exc


def local_or_cached(model_id: str) -> bool:
    """True for a folder or a downloaded hub model; False for one still to download; error if it can't be."""
    if Path(model_id).expanduser().exists() or in_hub_cache(model_id):
        return True
    if hub_offline():
        raise _unloadable(model_id, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    reachable, host = hub_reachable()
    if not reachable:
        raise _unloadable(model_id, f"it is not in the local Hugging Face cache and {host} cannot be reached")
    return False


class ModelCache:
    """Loaded models by id, least recently used unloaded first (shared by a backend's views)."""

    def __init__(self, load: Callable[[str], Any]) -> None:
        self._load = load
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._failed: dict[str, Exception] = {}    # a model that failed to load fails at once after
        self._lock = threading.RLock()

    def get(self, model_id: str, keep: int) -> Any:
        """The model *model_id*, loaded if needed; at most *keep* stay loaded."""
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
            if model_id in self._failed:
                raise self._failed[model_id]
            try:
                self._models[model_id] = self._load(model_id)
            except DialogTTSError as exc:  # permanent: not tried again for every line
                self._failed[model_id] = exc
                raise
            while len(self._models) > max(1, keep):
                old_id, old = self._models.popitem(last=False)
                log.info("unloading qwen model %s", old_id)
                del old
                self._release()
            return self._models[model_id]

    def _release(self) -> None:
        import gc

        gc.collect()
        torch = import_torch()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def forget_failures(self) -> None:
        """Let models that failed to load be tried again (each render starts afresh)."""
        with self._lock:
            self._failed.clear()

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._failed.clear()


def spoken_language(voice: Voice, text: str) -> str:
    """The language code of what *voice* says: its ``language:``, or with "auto" English for ASCII text."""
    given = str(voice.option("language") or "auto").lower()
    if given == "auto":                  # the model detects it from the text
        return "en" if text.isascii() else ""
    return _LANGUAGE_CODES.get(given, given)


class QwenBackend(Backend):
    name = "qwen"
    needs_gpu = True
    batch_size = 8
    extra_options = frozenset({"instruct", "ref_audio", "ref_text", "design", "mix", "model", "language"})
    path_keys = frozenset({"ref_audio"})
    base_wpm = 150.0
    settings = {
        "batch_size": Setting("batch_size", int_in(1, 256), "lines per batch [default: 8]"),
        "models_in_memory": Setting("models_in_memory", int_in(1, 16),
                                    "models kept loaded, least recently used unloaded first [default: 2]"),
    }
    #: At most this many models stay loaded; the least recently used is unloaded first.
    models_in_memory = 2

    def __init__(self) -> None:
        self._models = ModelCache(self._load_model)
        self._clone = ClonePrompts(self._create_prompt, import_torch)
        self._warned_cpu: list[bool] = []           # shared by every view: warn once

    # ------------------------------------------------------------ voices
    def expand_fields(self, fields: dict[str, Any], speaker_fields: Any) -> dict[str, Any]:
        """``mix: {Guest: 0.6, Host2: 0.4}`` → each named speaker's clone settings with its weight."""
        if fields.get("mix") is None:
            return fields
        return {**fields, "mix": _blend_references(fields["mix"], speaker_fields)}

    def names_itself(self, voice: Voice) -> bool:
        return any(voice.option(k) is not None for k in _KIND_KEYS)

    def model_for(self, voice: Voice) -> str:
        return str(voice.option("model") or DEFAULT_MODELS[voice_kind(voice)])

    def batch_group(self, voice: Voice) -> object:
        return self.model_for(voice)

    def resolve(self, voice: Voice) -> Voice:
        if voice.rate is not None or voice.pitch:
            raise VoiceSpecError("qwen voices take no rate or pitch; describe the delivery with instruct "
                                 "(e.g. instruct: \"speak slowly, in a low voice\")")
        kind = voice_kind(voice)
        given = [k for k in _KIND_KEYS if voice.option(k) is not None]
        if len(given) > 1:
            raise VoiceSpecError("a qwen voice is one of: ref_audio (clone), design, mix (blend); "
                                 f"got {', '.join(given)}")
        model = self.model_for(voice)
        if kind != "custom_voice":
            _model_config(model)   # a local folder must hold a readable config, for every kind
        if kind == "custom_voice":
            name = voice.name or PRESET_SPEAKERS[0]
            speakers = speakers_of(model)
            if speakers is not None:
                match = {s.lower(): s for s in speakers}.get(name.lower())
                if match is None:
                    hints = close_matches(name, speakers)
                    raise UnknownVoiceError(f"unknown qwen speaker {name!r} for {model} "
                                            f"(speakers: {', '.join(hints or speakers)})")
                name = match
            return replace(voice, name=name)
        if kind == "voice_design":
            design = str(voice.option("design")).strip()
            if not design:
                raise VoiceSpecError("design: describe the voice, e.g. design: \"a calm elderly male narrator\"")
            return replace(voice, name=voice.name or "design")
        if voice.option("ref_audio") is not None:
            ref = str(voice.option("ref_audio"))
            if not os.path.isfile(ref):
                raise UnknownVoiceError(f"ref_audio {ref!r} not found")
            return replace(voice, name=voice.name or f"clone:{Path(ref).name}")
        blend = voice.option("mix")
        if not blend or not all(isinstance(p, tuple) and len(p) == 2 for p in blend):
            raise VoiceSpecError("mix: give speakers and weights, e.g. mix: {Guest: 0.6, Host: 0.4}")
        return replace(voice, name=voice.name or "blend")

    def apply_delivery(self, voice: Voice, delivery: Delivery) -> Voice:
        return delivered(voice, delivery)

    def list_voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(s, "multilingual", PRESET_GENDERS[s], "Qwen3-TTS CustomVoice preset")
                for s in PRESET_SPEAKERS]

    def palette(self) -> list[str]:
        return list(PRESET_SPEAKERS)

    def fingerprint(self, voice: Voice) -> str:
        version = package_version("qwen-tts")
        refs = [_file_identity(r) for r, _text, _w in self._references(voice) if os.path.isfile(r)]
        return json.dumps([f"qwen-tts {version}", _model_identity(self.model_for(voice)), refs])

    # ------------------------------------------------------------ models

    def model(self, model_id: str) -> Any:
        """The loaded model for *model_id*, loading it (and unloading the least recently used) if needed."""
        return self._models.get(model_id, self.models_in_memory)

    def _load_model(self, model_id: str) -> Any:
        return load_model(model_id, self._warned_cpu)

    def check_available(self) -> None:
        """torch, transformers and qwen-tts installed (found without importing them)."""
        missing = missing_modules(*_NEEDED)
        if missing:
            raise BackendUnavailableError(_missing_message(", ".join(missing)))

    def loaded_models(self) -> list[str]:
        return self._models.loaded()

    # ------------------------------------------------------------ clone prompts
    def _references(self, voice: Voice) -> list[tuple[str, str | None, float]]:
        """(ref_audio, ref_text, weight) of a clone (one) or a blend (several)."""
        if voice.option("ref_audio") is not None:
            return [(str(voice.option("ref_audio")), voice.option("ref_text"), 1.0)]
        refs = []
        for _speaker, fields in voice.option("mix") or ():
            spec = dict(fields)
            refs.append((str(spec.get("ref_audio")), spec.get("ref_text"), float(spec.get("weight", 1.0))))
        return refs

    def _wanted(self, voice: Voice) -> list[tuple[Wanted, float]]:
        """Each prompt *voice* needs, with its weight in a blend."""
        model_id = self.model_for(voice)
        identity = _model_identity(model_id)
        out = []
        for ref, ref_text, weight in self._references(voice):
            key = _sha256_hex(json.dumps(["qwen-prompt", identity, _file_identity(ref), ref_text]).encode())
            out.append(((key, model_id, ref, ref_text), weight))
        return out

    def prepare(self, voices: Sequence[Voice], cache: Any = None) -> dict[Voice, BaseException]:
        """Check the models (one that cannot be had raises, once), then make every clone and blend prompt.

        A hub model not downloaded yet is loaded here: that is its download, so an
        unreachable hub is one error before any synthesis.  Returns the failed prompts by voice.
        """
        self._models.forget_failures()
        for model_id in sorted({self.model_for(v) for v in voices}):
            if not local_or_cached(model_id):
                self.model(model_id)
        clones = dict.fromkeys(v for v in voices if voice_kind(v) == "base")
        self._clone.prepare([wanted for voice in clones for wanted, _w in self._wanted(voice)], cache)
        errors = {voice: self._clone.error([wanted for wanted, _w in self._wanted(voice)]) for voice in clones}
        return {voice: error for voice, error in errors.items() if error is not None}

    def _create_prompt(self, model_id: str, ref: str, ref_text: str | None) -> Any:
        """A voice-clone prompt computed by the model (the expensive step the caches avoid)."""
        samples = self._clone.reference_audio(ref, _file_identity(ref))
        return self.model(model_id).create_voice_clone_prompt(ref_audio=samples, ref_text=ref_text,
                                                              x_vector_only_mode=not ref_text)[0]

    def clone_prompt(self, voice: Voice) -> Any:
        """The voice-clone prompt that *voice* is spoken with: its reference's, or a ``mix`` blend of several."""
        parts = [(wanted[0], self._clone.get(wanted), weight) for wanted, weight in self._wanted(voice)]
        return parts[0][1] if voice.option("mix") is None else self._clone.blend(parts)

    def retake(self, voice: Voice, take: int) -> Voice:
        return with_take(voice, take)    # the take number joins the sampling seed

    def language(self, voice: Voice, text: str = "") -> str:
        return spoken_language(voice, text)

    # ------------------------------------------------------------ synthesis
    def synthesize(self, text: str, voice: Voice) -> Clip:
        return self.synthesize_batch([text], [voice])[0]

    def synthesize_batch(self, texts: Sequence[str], voices: Sequence[Voice]) -> list[Clip]:
        models = {self.model_for(v) for v in voices}
        if len(models) != 1:
            raise SynthesisError(f"a qwen batch must use one model, got {sorted(models)}")
        model_id = models.pop()
        kinds = {voice_kind(v) for v in voices}
        if len(kinds) != 1:
            raise SynthesisError(f"a qwen batch must use one kind of voice, got {sorted(kinds)}")
        kind = kinds.pop()
        from dialog_tts.io.audio import Clip, apply_gain_db

        torch = import_torch()
        model = self.model(model_id)
        languages = [v.option("language") or "auto" for v in voices]
        takes = [int(v.option("take") or 1) for v in voices]
        seed_text = "\n".join(texts) + ("" if max(takes) == 1 else f"\ntakes {takes}")
        torch.manual_seed(int(_sha256_hex(seed_text.encode())[:8], 16))
        try:
            if kind == "custom_voice":
                wavs, rate = model.generate_custom_voice(list(texts), speaker=[v.name for v in voices],
                                                         language=languages,
                                                         instruct=[v.option("instruct") or "" for v in voices])
            elif kind == "voice_design":
                designs = [str(v.option("design")) for v in voices]
                wavs, rate = model.generate_voice_design(list(texts), instruct=designs,
                                                         language=languages)
            else:
                prompts = [self.clone_prompt(v) for v in voices]
                wavs, rate = model.generate_voice_clone(list(texts), language=languages, voice_clone_prompt=prompts)
        except torch.cuda.OutOfMemoryError as exc:  # the engine splits the batch in halves
            raise SynthesisError(f"qwen: CUDA out of memory on a batch of {len(texts)}") from exc
        except ValueError as exc:
            raise SynthesisError(f"qwen: {exc}") from exc
        return [apply_gain_db(Clip(w, int(rate)), v.volume) for w, v in zip(wavs, voices)]

    def close(self) -> None:
        self._models.clear()
