"""The :class:`Backend` interface every synthesis backend implements."""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

from dialog_tts.errors import DialogTTSError, InputError
from dialog_tts.script.directions import Delivery
from dialog_tts.script.lexicon import Entry
from dialog_tts.script.voice import MAX_FACTOR, MAX_PITCH_ST, MAX_WPM, MIN_FACTOR, MIN_WPM, Rate, Voice

if TYPE_CHECKING:  # numpy (through audio) only once audio is made: listing and casting stay light
    from dialog_tts.io.audio import Clip


@cache
def package_version(distribution: str) -> str:
    """The installed version of *distribution* ("?" if it is not installed), for cache fingerprints."""
    from dialog_tts.dists import version

    return version(distribution) or "?"


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system reports one (a container's
    cpuset, ``taskset``), else every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def install_hint(extra: str, package: Path | None = None) -> str:
    """The pip command that installs the optional packages of *extra* for this copy of dialog-tts.

    From a source checkout (run in place, or installed editable) that is
    ``pip install -e '.[extra]'`` (in the checkout; from elsewhere, its path instead
    of ``.``); for an installed package, ``pip install 'dialog-tts[extra]'`` (pip
    keeps the installed dialog-tts and adds the extra's packages).  *package* is the
    ``dialog_tts`` folder (default: this one).
    """
    root = (package or Path(__file__).resolve().parents[1]).parent
    if (root / "pyproject.toml").is_file():
        where = "." if Path.cwd().resolve() == root.resolve() else str(root)
        return f"pip install -e '{where}[{extra}]'"
    return f"pip install 'dialog-tts[{extra}]'"


def missing_modules(*modules: str) -> list[str]:
    """Which of *modules* cannot be imported, found without importing them (no heavy import)."""
    from importlib.util import find_spec

    missing = []
    for module in modules:
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module without a spec
            found = False
        if not found:
            missing.append(module)
    return missing


def with_take(voice: Voice, take: int) -> Voice:
    """*voice* with option ``take`` set (for :meth:`Backend.retake` of seeded backends); take 1 is *voice*."""
    if take <= 1:
        return voice
    options = tuple(sorted([*((k, v) for k, v in voice.options if k != "take"), ("take", take)]))
    return replace(voice, options=options)


@dataclass(frozen=True)
class VoiceInfo:
    """One entry of ``dialog-tts voices``."""

    name: str
    language: str = ""
    gender: str = ""
    description: str = ""


@dataclass(frozen=True)
class Setting:
    """A run setting a backend takes (``--backend-option NAME.KEY=VALUE``), stored on attribute *attr*."""

    attr: str
    parse: Callable[[Any], Any]
    help: str


def int_in(low: int, high: int) -> Callable[[Any], int]:
    """A parser of whole numbers from *low* to *high* (for :class:`Setting`)."""
    def parse(value: Any) -> int:
        text = str(value).strip()
        if not (text.isascii() and text.lstrip("+").isdigit()) or not low <= int(text) <= high:
            raise ValueError(f"{value!r} is not a whole number from {low} to {high}")
        return int(text)
    return parse


def float_in(low: float, high: float) -> Callable[[Any], float]:
    """A parser of numbers from *low* to *high* (for :class:`Setting`)."""
    def parse(value: Any) -> float:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if not low <= number <= high:  # also false for nan
            raise ValueError(f"{value!r} is out of range ({low:g} to {high:g})")
        return number
    return parse


def shaped(voice: Voice, delivery: Delivery, *, pitch: bool = True) -> Voice:
    """*voice* with *delivery*'s rate factor, volume (and pitch, unless not *pitch*), kept in range."""
    rate = voice.rate or Rate(factor=1.0)
    if rate.wpm is not None:
        rate = Rate(wpm=min(MAX_WPM, max(MIN_WPM, rate.wpm * delivery.rate)))
    else:
        rate = Rate(factor=min(MAX_FACTOR, max(MIN_FACTOR, (rate.factor or 1.0) * delivery.rate)))
    new_pitch = min(MAX_PITCH_ST, max(-MAX_PITCH_ST, voice.pitch + delivery.pitch)) if pitch else voice.pitch
    return replace(voice, rate=rate if rate != Rate(factor=1.0) else voice.rate, pitch=new_pitch,
                   volume=min(24.0, max(-60.0, voice.volume + delivery.volume)))


class Backend(ABC):
    """A text-to-speech engine behind the registry.

    Subclasses set the capability attributes and implement :meth:`synthesize`.
    Heavy imports belong inside methods, never at module level.

    The registry holds one shared instance per backend (its loaded models live
    there); each render works with a view from :meth:`bind`, which shares those
    models and holds the render's own settings.  Views are used by the engine's
    worker threads at once: guard any non-thread-safe shared state.
    """

    name: ClassVar[str]
    #: Needs the network (``dialog-tts voices`` and messages say so).
    online: ClassVar[bool] = False
    #: Runs on a GPU (informational; the engine batches on ``batch_size``).
    needs_gpu: ClassVar[bool] = False
    #: Most calls to run at once (None: as many as there are workers); a setting may change it.
    max_concurrency: int | None = None
    #: Each call keeps :attr:`cpus_per_call` cores busy: on one machine, no more calls run at once than
    #: its cores hold (a cluster places them by their cores instead).
    cpu_bound: ClassVar[bool] = False
    #: Lines per :meth:`synthesize_batch` call; 1 means no batching.  The engine gives
    #: a batching backend its lines in batches, on one worker.
    batch_size: int = 1
    #: Spec keys beyond the common ones that this backend accepts.
    extra_options: ClassVar[frozenset[str]] = frozenset()
    #: Spec keys that name files: in a speaker map they are relative to the map's folder.
    path_keys: ClassVar[frozenset[str]] = frozenset()
    #: Run settings this backend takes, by key (``--backend-option NAME.KEY=VALUE``).
    settings: ClassVar[Mapping[str, Setting]] = {}
    #: Speaking rate of the backend's voices at speed 1.0, for ``rate=WPM``.
    base_wpm: ClassVar[float] = 170.0
    #: Lines the render synthesizes at once (set on a view by :meth:`bind`).
    workers: int = 1
    #: Its audio is speech (False for test tones): the quality gate's speech checks apply.
    speech: ClassVar[bool] = True

    def parse_settings(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """*options* checked against :attr:`settings`: attribute -> parsed value; InputError if bad."""
        parsed: dict[str, Any] = {}
        for key, value in options.items():
            setting = self.settings.get(key)
            if setting is None:
                known = ", ".join(sorted(self.settings)) or "none"
                raise InputError(f"backend option {self.name}.{key}: unknown (known: {known})")
            try:
                parsed[setting.attr] = setting.parse(value)
            except ValueError as exc:
                raise InputError(f"backend option {self.name}.{key}: {exc}") from None
        return parsed

    def bind(self, options: Mapping[str, Any], *, workers: int) -> Backend:
        """A view of this backend for one render: the models shared, the settings its own."""
        view = copy.copy(self)
        view.workers = workers
        for attr, value in self.parse_settings(options).items():
            setattr(view, attr, value)
        return view

    @property
    def cpus_per_call(self) -> int:
        """CPU cores one synthesis call keeps busy (what a Ray task of it asks for)."""
        return 1

    def portable_settings(self) -> dict[str, Any]:
        """This view's settings as ``--backend-option`` values, to build the same view in another
        process (a Ray worker): ``get_backend(name).bind(portable_settings(), workers=...)``."""
        values = {key: getattr(self, setting.attr, None) for key, setting in self.settings.items()}
        return {key: value for key, value in values.items() if value is not None}

    @abstractmethod
    def synthesize(self, text: str, voice: Voice) -> Clip:
        """Speak *text* with *voice* (already resolved by :meth:`resolve`)."""

    def synthesize_batch(self, texts: Sequence[str], voices: Sequence[Voice]) -> list[Clip]:
        """Speak several lines at once; backends that batch (GPUs) override this."""
        return [self.synthesize(t, v) for t, v in zip(texts, voices)]

    def expand_fields(self, fields: dict[str, Any],
                      speaker_fields: Callable[[str], dict[str, Any] | None]) -> dict[str, Any]:
        """A speaker's spec fields with the keys this backend owns settled (before parsing).

        *speaker_fields(name)* gives another speaker's fields (None: no such speaker),
        for voices defined by others (a blend).  Raise VoiceSpecError for bad fields.
        """
        return fields

    def names_itself(self, voice: Voice) -> bool:
        """True when *voice*'s options define it without a voice name (a cloned voice, say)."""
        return False

    def check_available(self) -> None:
        """Raise a DialogTTSError when this backend cannot run here at all (a missing package, a bad setting).

        Called once per render for each backend its cast uses, after casting and
        before any synthesis, so that such a problem is one error (exit 2), not one
        per line.  Must be quick: no model loading, no heavy import (see :func:`missing_modules`).
        """

    def prepare(self, voices: Sequence[Voice], cache: object = None) -> Mapping[Voice, BaseException] | None:
        """Called with the voices of the lines about to be synthesized, before any is.

        A backend computes per-voice state here (e.g. voice-clone prompts), and may
        store it in *cache* (``get_blob``/``put_blob``).  A voice's failure is kept and
        raised by the synthesis of that voice's lines, not raised here; return those
        failures by voice (``voices preload`` reports them).  Raise only for a failure
        that would fail every line alike (a model that cannot be loaded at all).
        """
        return None

    def batch_group(self, voice: Voice) -> object:
        """Lines whose voices share a group may go in one batch (e.g. the same model)."""
        return None

    def retake(self, voice: Voice, take: int) -> Voice | None:
        """The voice to synthesize take *take* (2, 3, ...) of a line with, after a take failed the quality gate.

        A stochastic backend returns *voice* with another seed (the same seed for
        the same take, so that a run is reproducible); one whose calls differ anyway
        (a service, unseeded noise) returns *voice*; a deterministic one returns
        None (the default): every take would sound the same, so none is made.
        """
        return None

    def language(self, voice: Voice, text: str = "") -> str:
        """The language *voice* speaks *text* in (``en-US``, ``ko``), or "" when unknown.

        The recognizer check (``--check asr``) skips lines in languages it cannot recognize.
        """
        return ""

    def recognizable(self, voice: Voice) -> bool:
        """Whether the recognizer check (pocketsphinx, en-US) understands *voice* reliably; False: it skips it."""
        return True

    def is_transient(self, error: BaseException) -> bool:
        """Whether *error* may go away if the call is tried again (the engine retries those)."""
        return bool(getattr(error, "transient", False))

    @abstractmethod
    def resolve(self, voice: Voice) -> Voice:
        """Return *voice* with its name in canonical form, or raise UnknownVoiceError.

        Must not load models: it runs for every speaker before any synthesis.
        """

    def knows(self, name: str) -> bool:
        """True when *name* is one of this backend's voices (for inferring a backend)."""
        try:
            self.resolve(Voice(name=name, backend=self.name))
        except (DialogTTSError, ValueError, OSError):
            return False
        return True

    @abstractmethod
    def list_voices(self) -> list[VoiceInfo]:
        """Every voice this backend offers (must work offline where the backend does)."""

    def palette(self) -> list[str]:
        """Voices for automatic casting, most distinct first."""
        return []

    def voice_gender(self, name: str) -> str:
        """``"female"``, ``"male"`` or ``""`` (unknown) for voice *name*, for casting by gender."""
        wanted = name.strip().lower()
        for info in self.list_voices():
            if info.name.lower() == wanted:
                return info.gender.lower() if info.gender.lower() in ("female", "male") else ""
        return ""

    def voice_accent(self, name: str) -> str:
        """``"british"``, ``"american"`` or ``""`` (unknown, or not English) for voice *name*, for casting."""
        return ""

    def fingerprint(self, voice: Voice) -> str:
        """Identity of the code and model behind *voice*, for the cache key."""
        return self.name

    def apply_delivery(self, voice: Voice, delivery: Delivery) -> Voice:
        """*voice* changed to speak one line with *delivery* (a ``[whispering]`` tag, say).

        The default scales the rate and adds the volume and pitch, within the
        voice's ranges.  A backend overrides it to use what it has (an
        instruction, its own limits).
        """
        return shaped(voice, delivery)

    def pronounce(self, word: str, entry: Entry) -> str:
        """What to put in the text for *word* (as written) of a lexicon *entry*.

        The default is the respelling, or the word itself when the entry has none.
        """
        return entry.say or word

    def close(self) -> None:
        """Release models and connections."""
