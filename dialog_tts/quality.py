"""The quality gate's checks: is a synthesized take plausibly the line that was asked for?

Neural voices fail without an exception: they truncate, fall silent, loop,
clip, or hum.  Every take is measured here, cheaply, on its 10 ms frame
energies (one pass of NumPy over the samples):

``level``     the loudest 10 ms frame, dBFS: empty or near-silent audio fails;
``clipping``  the share of samples on flat tops (equal neighbours near the peak);
``duration``  the speech span (first to last sounding frame) against what the
              text predicts at the voice's rate: too short is a truncation,
              too long a loop or babble;
``pause``     the longest silence inside the speech span;
``steady``    the longest stretch whose frame energy hardly moves (speech
              rises and falls with every syllable; a tone or a hiss does not).

Each check gives its figure, its limit and pass or fail (a :class:`Check`);
a :class:`Verdict` holds them all.  The limits (:class:`Thresholds`) were
calibrated on the offline voices (piper joe and its palette, espeak's palette,
three rates) over the sample scripts and 300 varied lines: no clean take
fails (benchmark_enhanced.py --only quality shows the false-alarm rate).
The optional recognizer check lives in :mod:`dialog_tts.asr`.

These are written in NumPy rather than taken from a library because each is
a few vectorized lines over the frame energies, and the gate must cost at most
2 % of synthesis time (measured: see the benchmark).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:           # numpy is imported where takes are measured: the CLI's start-up never pays for it
    import numpy as np

    from .audio import Clip

FRAME = 0.010          # seconds per energy frame
_FLOOR_DB = -100.0
#: A frame is silent this far below the take's loudest frame (or below -60 dBFS).
_SILENCE_BELOW_PEAK_DB = 40.0
_SILENCE_DB = -60.0
#: The window (frames) over which the envelope's spread decides "steady".
_STEADY_WINDOW = 30
#: Names of the cheap checks, in report order.
CHEAP = ("level", "clipping", "duration", "pause", "steady")
#: The checks that assume speech (a backend with ``speech = False`` gets only the others).
SPEECH_ONLY = frozenset({"duration", "pause", "steady", "asr"})


@dataclass(frozen=True)
class Thresholds:
    """The limits of the checks; a take passes a check when its figure is inside."""

    min_level_db: float = -45.0        # loudest 10 ms frame, dBFS (plus the voice's own volume when negative)
    max_clipped: float = 0.002         # share of samples on flat tops
    min_duration: float = 0.5          # speech span / predicted, at least ...
    max_duration: float = 1.8          # ... and at most
    duration_slack: float = 0.6        # seconds of grace either way (short lines vary most)
    max_pause: float = 1.5             # seconds of silence inside the speech (divided by the voice's speed)
    max_steady: float = 1.0            # seconds of tone or noise without a speech envelope
    max_wer: float = 0.8               # word error rate of the recognizer check (--check asr)


@dataclass(frozen=True)
class Check:
    """One check's figure, its limit (as text) and whether the take passed it."""

    name: str
    passed: bool
    value: float
    limit: str
    unit: str = ""
    #: How far past the limit a failed figure is (0 when passed), to rank failed takes.
    excess: float = 0.0

    def describe(self) -> str:
        state = "ok" if self.passed else "FAILED"
        return f"{self.name} {self.value:.3g}{self.unit} ({self.limit}) {state}"

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "value": round(float(self.value), 4), "limit": self.limit}


@dataclass(frozen=True)
class Verdict:
    """Every check of one take."""

    checks: tuple[Check, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def badness(self) -> float:
        """0 for a take that passed; else how far past its limits it is (ranks failed takes)."""
        return sum(1.0 + c.excess for c in self.failed)

    def describe(self) -> str:
        return "; ".join(c.describe() for c in (self.failed or self.checks))

    def to_json(self) -> dict[str, Any]:
        return {c.name: c.to_json() for c in self.checks}


# ---------------------------------------------------------------- what the text predicts

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_VOWELS = re.compile(r"[aeiouyàáâäæãåāèéêëēėęìíîïīįòóôöœøōõùúûüūÿ]+", re.IGNORECASE)
_WIDE = re.compile(r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_SYMBOLS = re.compile(r"[$€£%&+=@#]")
#: English syllables per word on average (the backends' rates are in words per minute).
SYLLABLES_PER_WORD = 1.45


def spoken_words(text: str) -> float:
    """How many average words *text* takes to say (syllables / 1.45; digits and symbols spelled out).

    Latin-script words count their vowel groups; digits count about a word
    each ("1987" is "nineteen eighty-seven"); a CJK or Hangul character counts
    as a syllable; other scripts count one word per token.
    """
    syllables = 0.0
    for token in _TOKEN.findall(text):
        wide = len(_WIDE.findall(token))
        if wide:
            syllables += wide
        elif token.isdigit():
            syllables += 1.45 * len(token)
        elif token.isascii() or _VOWELS.search(token):
            syllables += max(1, len(_VOWELS.findall(token)))
        else:
            syllables += SYLLABLES_PER_WORD * max(1.0, len(token) / 5.0)
    syllables += 1.45 * len(_SYMBOLS.findall(text))
    return syllables / SYLLABLES_PER_WORD


def expected_seconds(text: str, wpm: float) -> float:
    """The speech span *text* should take at *wpm* words per minute."""
    return spoken_words(text) * 60.0 / wpm


# ---------------------------------------------------------------- the measurements

def frame_db(samples: np.ndarray, rate: int) -> np.ndarray:
    """Energy of each 10 ms frame, dBFS (mono float samples)."""
    import numpy as np

    size = max(1, round(rate * FRAME))
    count = samples.shape[0] // size
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    frames = samples[:count * size].reshape(count, size)
    energy = np.einsum("ij,ij->i", frames, frames) / size   # sum of squares without a squared copy
    return (10.0 * np.log10(np.maximum(energy, 1e-10))).astype(np.float32)


def longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in *mask*."""
    import numpy as np

    if not mask.any():
        return 0
    edges = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((ends - starts).max())


def clipped_share(samples: np.ndarray) -> float:
    """Share of samples on flat tops: equal to a neighbour and within 2 % of the peak (at least 0.5)."""
    import numpy as np

    if samples.shape[0] < 3:
        return 0.0
    peak = float(np.abs(samples).max())
    if peak < 0.5:
        return 0.0
    high = np.abs(samples) >= 0.98 * peak
    flat = high[1:] & (samples[1:] == samples[:-1])
    return float(np.count_nonzero(flat)) / samples.shape[0]


def steady_seconds(db: np.ndarray, sounding: np.ndarray) -> float:
    """Longest stretch of sounding frames whose energy stays within a few dB (a tone, a hiss).

    Speech energy swings by 10 dB or more within every 0.3 s (syllables); a
    sustained tone or noise stays within about 1 dB.  The spread is the
    standard deviation over a sliding 0.3 s window, from running sums.
    """
    import numpy as np

    n = _STEADY_WINDOW
    if db.shape[0] < n:
        return 0.0
    x = db.astype(np.float64)
    c1, c2 = np.cumsum(np.concatenate(([0.0], x))), np.cumsum(np.concatenate(([0.0], x * x)))
    mean = (c1[n:] - c1[:-n]) / n
    spread = np.sqrt(np.maximum((c2[n:] - c2[:-n]) / n - mean * mean, 0.0))
    on = np.cumsum(np.concatenate(([0], sounding.view(np.int8))))
    steady = (spread < 1.5) & ((on[n:] - on[:-n]) == n)
    if not steady.any():
        return 0.0
    return (longest_run(steady) + n - 1) * FRAME


# ---------------------------------------------------------------- the checks

def check_take(clip: Clip, text: str, *, wpm: float, speed: float = 1.0, volume_db: float = 0.0,
               speech: bool = True, thresholds: Thresholds = Thresholds()) -> Verdict:
    """The cheap checks of one take of *text*, spoken at *wpm* words per minute.

    *speed* is the voice's rate factor (pauses scale with it), *volume_db* its
    own volume (a quiet voice may be quiet); *speech* False checks only level
    and clipping (for backends whose output is not speech).
    """
    import numpy as np

    t = thresholds
    x = clip.mono()
    db = frame_db(x, clip.sample_rate)
    peak_db = float(db.max()) if db.size else _FLOOR_DB
    min_level = t.min_level_db + min(0.0, volume_db)
    checks = [_limit_check("level", peak_db, low=min_level, unit=" dBFS", scale=10.0)]
    checks.append(_limit_check("clipping", clipped_share(x) * 100.0, high=t.max_clipped * 100.0, unit=" %",
                               scale=t.max_clipped * 100.0))
    if not speech:
        return Verdict(tuple(checks))
    sounding = db > max(_SILENCE_DB, peak_db - _SILENCE_BELOW_PEAK_DB)
    on = np.flatnonzero(sounding)
    span = (on[-1] - on[0] + 1) * FRAME if on.size else 0.0
    predicted = expected_seconds(text, wpm * speed)
    checks.append(_duration_check(span, predicted, t))
    inside = ~sounding[on[0]:on[-1] + 1] if on.size else np.zeros(0, dtype=bool)
    checks.append(_limit_check("pause", longest_run(inside) * FRAME, high=t.max_pause / min(speed, 1.0),
                               unit=" s", scale=1.0))
    checks.append(_limit_check("steady", steady_seconds(db, sounding), high=t.max_steady, unit=" s", scale=1.0))
    return Verdict(tuple(checks))


def _limit_check(name: str, value: float, *, low: float | None = None, high: float | None = None,
                 unit: str = "", scale: float = 1.0) -> Check:
    if low is not None and value < low:
        return Check(name, False, value, f"at least {low:g}{unit}", unit, (low - value) / scale)
    if high is not None and value > high:
        return Check(name, False, value, f"at most {high:g}{unit}", unit, (value - high) / scale)
    limit = f"at least {low:g}{unit}" if low is not None else f"at most {high:g}{unit}"
    return Check(name, True, value, limit, unit)


def _duration_check(span: float, predicted: float, t: Thresholds) -> Check:
    """Speech span against the prediction: a ratio, with a few tenths of a second of grace."""
    low = max(0.0, t.min_duration * predicted - t.duration_slack)
    high = t.max_duration * predicted + t.duration_slack
    ratio = span / predicted if predicted > 0 else 1.0
    limit = f"{low:.2f}-{high:.2f} s for a predicted {predicted:.2f} s"
    if span < low:
        return Check("duration", False, ratio, limit, "x", (low - span) / max(low, 0.1))
    if span > high:
        return Check("duration", False, ratio, limit, "x", (span - high) / high)
    return Check("duration", True, ratio, limit, "x")
