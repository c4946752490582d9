"""The :class:`Backend` interface every synthesis backend implements."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Sequence

from ..audio import Clip
from ..voices import Voice


@lru_cache(maxsize=None)
def package_version(distribution: str) -> str:
    """The installed version of *distribution* ("?" if it is not installed), for cache fingerprints."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


@dataclass(frozen=True)
class VoiceInfo:
    """One entry of ``dialog-tts voices``."""

    name: str
    language: str = ""
    gender: str = ""
    description: str = ""


class Backend(ABC):
    """A text-to-speech engine behind the registry.

    Subclasses set the capability attributes and implement :meth:`synthesize`.
    Heavy imports belong inside methods, never at module level.  Instances are
    shared by the engine's worker threads: guard any non-thread-safe state.
    """

    name: ClassVar[str]
    #: Needs the network (the engine caps its concurrency and retries its hiccups).
    online: ClassVar[bool] = False
    #: Runs on a GPU: the engine gives it batches on one worker instead of threads.
    needs_gpu: ClassVar[bool] = False
    #: Most calls to run at once (None: as many as there are workers).
    max_concurrency: ClassVar[int | None] = None
    #: Lines per :meth:`synthesize_batch` call; 1 means no batching.
    batch_size: ClassVar[int] = 1
    #: Spec keys beyond the common ones that this backend accepts.
    extra_options: ClassVar[frozenset[str]] = frozenset()
    #: Speaking rate of the backend's voices at speed 1.0, for ``rate=WPM``.
    base_wpm: ClassVar[float] = 170.0
    #: Seconds one request may take (online backends); None: the backend's own default.
    timeout: float | None = None

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @abstractmethod
    def synthesize(self, text: str, voice: Voice) -> Clip:
        """Speak *text* with *voice* (already resolved by :meth:`resolve`)."""

    def synthesize_batch(self, texts: Sequence[str], voices: Sequence[Voice]) -> list[Clip]:
        """Speak several lines at once; backends that batch (GPUs) override this."""
        return [self.synthesize(t, v) for t, v in zip(texts, voices)]

    def configure(self, **settings: object) -> None:
        """Per-run settings (``timeout``, backend-specific ones); unknown ones are ignored."""
        if settings.get("timeout") is not None:
            self.timeout = float(settings["timeout"])  # type: ignore[arg-type]

    def names_itself(self, voice: Voice) -> bool:
        """True when *voice*'s options define it without a voice name (a cloned voice, say)."""
        return False

    def prepare(self, voices: Sequence[Voice], cache: object = None) -> None:
        """Called with the voices of the lines about to be synthesized, before any is.

        A backend computes per-voice state here (e.g. voice-clone prompts), and may
        store it in *cache* (``get_blob``/``put_blob``).  Failures should be kept and
        raised by the synthesis of that voice's lines, not raised here.
        """

    def batch_group(self, voice: Voice) -> object:
        """Lines whose voices share a group may go in one batch (e.g. the same model)."""
        return None

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
        except Exception:
            return False
        return True

    @abstractmethod
    def list_voices(self) -> list[VoiceInfo]:
        """Every voice this backend offers (must work offline where the backend does)."""

    def palette(self) -> list[str]:
        """Voices for automatic casting, most distinct first."""
        return []

    def fingerprint(self, voice: Voice) -> str:
        """Identity of the code and model behind *voice*, for the cache key."""
        return self.name

    def close(self) -> None:
        """Release models and connections."""
