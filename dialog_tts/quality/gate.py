"""The quality gate of a render: which checks run on every take, how many takes a line gets.

The engine calls :meth:`Gate.judge` on each take it synthesizes (on the worker
thread that made it, so the checks, the recognizer's included, run alongside
the other lines' synthesis) and keeps the first take that passes, or, when
none does, the least bad one (:func:`best_take`).  The recognizer hears only
the takes that pass the cheap checks (softly failed ones included).

A line whose best take failed only soft checks (a long pause, a slow reading:
:mod:`dialog_tts.quality.checks`) is kept with a warning: a real reading is not a
failed render.  With ``strict`` every failure is hard.  A cached take's
figures and recognizer result are kept with it (:meth:`Verdict.record`), so a
re-render judges it again without measuring or hearing it twice, and a check
asked for later (``asr`` after ``basic``) hears the cached take.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dialog_tts.errors import InputError
from dialog_tts.quality.checks import SPEECH_ONLY, Check, Figures, Thresholds, Verdict, check_take

if TYPE_CHECKING:
    from dialog_tts.backends import Backend
    from dialog_tts.io.audio import Clip
    from dialog_tts.quality.asr import Recognizer
    from dialog_tts.script.voice import Voice

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
    strict: bool = False            # --strict: every check is hard (no line is kept with a warning)

    def __post_init__(self) -> None:
        if not isinstance(self.strict, bool):
            raise InputError(f"strict {self.strict!r}: give True or False")
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
    warned: bool = False        # no take passed, the kept one failed only soft checks: kept, with a warning
    cached: bool = False        # the kept take came from the cache (judged again, not synthesized)

    @property
    def kept_take(self) -> Take:
        return next(t for t in self.takes if t.number == self.kept)

    @property
    def retakes(self) -> int:
        return len(self.takes) - 1

    def flags(self) -> list[str]:
        """What a flagged line failed, as text (nothing for a line that passed)."""
        return [c.describe() for c in self.kept_take.verdict.failed] if self.flagged else []

    def warnings(self) -> list[str]:
        """What a line kept with a warning failed softly, as text (nothing for other lines)."""
        return [c.describe() for c in self.kept_take.verdict.failed] if self.warned else []

    def to_json(self) -> dict[str, Any]:
        kept = self.kept_take
        out: dict[str, Any] = {"passed": kept.verdict.passed, "flagged": self.flagged, "warned": self.warned,
                               "kept_take": self.kept, "checks": kept.verdict.to_json(),
                               "takes": [t.to_json() for t in self.takes]}
        if self.cached:
            out["cached"] = True
        for note in kept.verdict.notes:          # "heard: ...": what the recognizer heard
            key, _, value = note.partition(": ")
            out[key] = value
        return out


def best_take(takes: list[Take], strict: bool = False) -> Take:
    """The take to keep: the first that passed, else the least bad of those that failed only softly
    (not *strict*), else the least bad (the earlier on a tie)."""
    for take in takes:
        if take.verdict.passed:
            return take
    return min(takes, key=lambda t: (not t.verdict.acceptable(strict), t.verdict.badness, t.number))


class Gate:
    """Judges takes for one render; thread-safe (the recognizer lends each thread a decoder)."""

    def __init__(self, settings: GateSettings | None = None) -> None:
        self.settings = settings or GateSettings()
        self.recognizer: Recognizer | None = None
        if self.settings.check == "asr":
            from dialog_tts.quality.asr import Recognizer

            self.recognizer = Recognizer()
        self._told: set[str] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.settings.check != "none"

    @property
    def takes(self) -> int:
        return self.settings.takes if self.enabled else 1

    def accepts(self, verdict: Verdict) -> bool:
        """Whether a take with *verdict* may be kept: it passed, or failed only softly (not ``strict``)."""
        return verdict.acceptable(self.settings.strict)

    def judge(self, clip: Clip, text: str, voice: Voice, backend: Backend,
              known: Mapping[str, Any] | None = None) -> Verdict:
        """Every check of this render on one take of *text*.

        *known*: what the checks measured on this take before (:meth:`Verdict.record`, kept with a
        cached take): its figures are judged against this render's limits without measuring the take
        again, and the recognizer's result is reused; a check not run before runs now.
        """
        if not self.enabled:
            return Verdict()
        figures = _known_figures(known)
        verdict = check_take(clip, text, wpm=backend.base_wpm, speed=voice.speed(backend.base_wpm),
                             volume_db=voice.volume, speech=backend.speech, thresholds=self.settings.thresholds,
                             figures=figures)
        if self.recognizer is None or not backend.speech or not self.accepts(verdict):
            return verdict              # a take the cheap checks failed is retaken anyway: no need to hear it
        language = backend.language(voice, text)
        from dialog_tts.quality.asr import judged, recognizes

        if not backend.recognizable(voice) or not recognizes(language):
            self._tell_once(backend.name, language if backend.recognizable(voice) else None, voice.name)
            return verdict
        if not judged(text):
            return verdict
        heard_before = _known_asr(known)
        wer, heard = heard_before if heard_before is not None else self.recognizer.word_error_rate(clip, text)
        limit = self.settings.thresholds.max_wer
        check = Check("asr", wer <= limit, wer, f"at most {limit:g} WER", "", max(0.0, wer - limit) / limit)
        return Verdict((*verdict.checks, check), (f"heard: {heard}",), figures=verdict.figures, asr=(wer, heard))

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


def _known_figures(known: Mapping[str, Any] | None) -> Figures | None:
    """The figures of a cached take's record, or None where it has none (or not well formed)."""
    values = known.get("figures") if isinstance(known, Mapping) else None
    if not isinstance(values, list) or len(values) != len(Figures._fields):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return None
    return Figures(*(float(v) for v in values))


def _known_asr(known: Mapping[str, Any] | None) -> tuple[float, str] | None:
    """The recognizer's (WER, heard) of a cached take's record, or None."""
    value = known.get("asr") if isinstance(known, Mapping) else None
    if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (int, float))
            and not isinstance(value[0], bool) and math.isfinite(value[0]) and isinstance(value[1], str)):
        return float(value[0]), value[1]
    return None


__all__ = ["LEVELS", "SPEECH_ONLY", "Gate", "GateSettings", "LineQuality", "Take", "best_take"]
