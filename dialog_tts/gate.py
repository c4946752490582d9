"""The quality gate of a render: which checks run on every take, how many takes a line gets.

The engine calls :meth:`Gate.judge` on each take it synthesizes (on the worker
thread that made it, so the checks, the recognizer's included, run alongside
the other lines' synthesis) and keeps the first take that passes, or, when
none does, the least bad one (:func:`best_take`).  The recognizer hears only
the takes that pass the cheap checks.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .quality import SPEECH_ONLY, Check, Thresholds, Verdict, check_take

if TYPE_CHECKING:
    from .asr import Recognizer
    from .audio import Clip
    from .backends import Backend
    from .voice import Voice

log = logging.getLogger("dialog_tts")

#: ``--check`` values: none, the cheap checks (the default), or those plus the recognizer.
LEVELS = ("none", "basic", "asr")
MAX_TAKES = 10


@dataclass(frozen=True)
class GateSettings:
    """A render's quality-gate settings (from :class:`~dialog_tts.api.RenderOptions`)."""

    check: str = "basic"
    takes: int = 3
    thresholds: Thresholds = field(default_factory=Thresholds)
    keep_flagged: bool = False      # --keep-going: a line no take of which passed is kept, flagged

    def __post_init__(self) -> None:
        if self.check not in LEVELS:
            raise InputError(f"--check {self.check!r}: choose one of {', '.join(LEVELS)}")
        if not 1 <= self.takes <= MAX_TAKES:
            raise InputError(f"--takes {self.takes}: give 1 to {MAX_TAKES}")
        if not 0.0 < self.thresholds.max_wer <= 10.0:
            raise InputError(f"--max-wer {self.thresholds.max_wer:g}: give a word error rate above 0, like 0.6")


@dataclass(frozen=True)
class Take:
    """One synthesized take of a line and what the gate made of it."""

    number: int
    verdict: Verdict
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"take": self.number, "passed": self.verdict.passed, "seconds": round(self.seconds, 4),
                "failed": [c.name for c in self.verdict.failed]}


@dataclass(frozen=True)
class LineQuality:
    """The gate's record of one line: the takes made this run, which was kept, whether it is flagged."""

    takes: tuple[Take, ...]
    kept: int
    flagged: bool = False       # no take passed; kept anyway (--keep-going)

    @property
    def kept_take(self) -> Take:
        return next(t for t in self.takes if t.number == self.kept)

    @property
    def retakes(self) -> int:
        return len(self.takes) - 1

    def flags(self) -> list[str]:
        """What a flagged line failed, as text (nothing for a line that passed)."""
        return [c.describe() for c in self.kept_take.verdict.failed] if self.flagged else []

    def to_json(self) -> dict[str, Any]:
        kept = self.kept_take
        out: dict[str, Any] = {"passed": kept.verdict.passed, "flagged": self.flagged, "kept_take": self.kept,
                               "checks": kept.verdict.to_json(), "takes": [t.to_json() for t in self.takes]}
        for note in kept.verdict.notes:          # "heard: ...": what the recognizer heard
            key, _, value = note.partition(": ")
            out[key] = value
        return out


def best_take(takes: list[Take]) -> Take:
    """The take to keep: the first that passed, else the least bad (the earlier on a tie)."""
    for take in takes:
        if take.verdict.passed:
            return take
    return min(takes, key=lambda t: (t.verdict.badness, t.number))


class Gate:
    """Judges takes for one render; thread-safe (the recognizer lends each thread a decoder)."""

    def __init__(self, settings: GateSettings | None = None) -> None:
        self.settings = settings or GateSettings()
        self.recognizer: Recognizer | None = None
        if self.settings.check == "asr":
            from .asr import Recognizer

            self.recognizer = Recognizer()
        self._told: set[str] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.settings.check != "none"

    @property
    def takes(self) -> int:
        return self.settings.takes if self.enabled else 1

    def judge(self, clip: Clip, text: str, voice: Voice, backend: Backend) -> Verdict:
        """Every check of this render on one take of *text*."""
        if not self.enabled:
            return Verdict()
        verdict = check_take(clip, text, wpm=backend.base_wpm, speed=voice.speed(backend.base_wpm),
                             volume_db=voice.volume, speech=backend.speech, thresholds=self.settings.thresholds)
        if self.recognizer is None or not backend.speech or not verdict.passed:
            return verdict              # a take the cheap checks failed is retaken anyway: no need to hear it
        language = backend.language(voice, text)
        from .asr import judged, recognizes

        if not backend.recognizable(voice) or not recognizes(language):
            self._tell_once(backend.name, language if backend.recognizable(voice) else None, voice.name)
            return verdict
        if not judged(text):
            return verdict
        wer, heard = self.recognizer.word_error_rate(clip, text)
        limit = self.settings.thresholds.max_wer
        check = Check("asr", wer <= limit, wer, f"at most {limit:g} WER", "", max(0.0, wer - limit) / limit)
        return Verdict((*verdict.checks, check), (f"heard: {heard}",))

    def _tell_once(self, backend: str, language: str | None, voice: str) -> None:
        """Say once per run which voices the recognizer check skips, and why (*language* None: the voice)."""
        if language is None:
            what, why = f"{backend} voice {voice}", "it does not understand this voice reliably"
        else:
            what = f"{backend} voices in {language}" if language else f"{backend} voices of unknown language"
            why = "it recognizes only English"
        with self._lock:
            if what in self._told:
                return
            self._told.add(what)
        log.warning("the recognizer check skips %s (%s)", what, why)


__all__ = ["LEVELS", "SPEECH_ONLY", "Gate", "GateSettings", "LineQuality", "Take", "best_take"]
