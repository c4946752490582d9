"""The quality gate's checks: is a synthesized take plausibly the line that was asked for?

Neural voices fail without an exception: they truncate, fall silent, loop,
clip, or hum.  Every take is measured here, cheaply (:func:`measure`): its
10 ms frame energies and peaks in one pass over the samples, the few frames
near the peak again for clipping, then the frame energies alone:

``level``     the loudest 10 ms frame, dBFS: empty or near-silent audio fails;
``clipping``  the share of samples on flat tops (equal neighbours near the peak);
``duration``  the speech span (first to last sounding frame) against what the
              text predicts at the voice's rate, its punctuation's pauses
              included: too short is a truncation, too long a loop or babble;
``pause``     the longest silence inside the speech span, against what the
              text's longest pause (an ellipsis, a dash) allows;
``steady``    the longest stretch whose frame energy hardly moves (speech
              rises and falls with every syllable; a tone or a hiss does not).

Each check gives its figure, its limit and pass or fail (a :class:`Check`);
a :class:`Verdict` holds them all.  ``pause`` and a too long ``duration`` are
*soft*: a real reading may be slower than the text predicts (a voice that
dwells on an ellipsis), so a take that fails them by a little (up to
:attr:`Thresholds.hard_pause` times the pause limit, and a span up to
:attr:`Thresholds.max_loop` times the prediction) fails softly, and the gate
keeps it with a warning where no take does better.  Every other failure is
hard: silence, clipping, truncation, a tone, a loop, the recognizer far off.  The limits (:class:`Thresholds`) were
calibrated on the offline voices (piper joe and its palette, espeak's palette,
three rates) over the sample scripts and 300 varied lines: no clean take
fails (benchmark_enhanced.py --only quality shows the false-alarm rate).
The optional recognizer check lives in :mod:`dialog_tts.quality.asr`.

No library computes these figures, so they are written here, twice: in one
compiled pass (:mod:`dialog_tts._takecheck`, built from ``_takecheck.c`` where
the install finds a C compiler) and in NumPy (:func:`measure_numpy`, used
where it was not built; the tests hold both to the same frame-by-frame
reference).  The gate aims at 2 % of synthesis time at most; on espeak, the
fastest backend, the NumPy version's forty calls a take miss that aim and the
compiled pass meets it (benchmark_enhanced.py --only quality measures both).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:           # numpy is imported where takes are measured: the CLI's start-up never pays for it
    from collections.abc import Iterable

    import numpy as np

    from dialog_tts.io.audio import Clip

FRAME = 0.010          # seconds per energy frame
_FLOOR_DB = -100.0
#: A frame is silent this far below the take's loudest frame (or below -60 dBFS).
_SILENCE_BELOW_PEAK_DB = 40.0
_SILENCE_DB = -60.0
#: The window (frames) over which the envelope's spread decides "steady".
_STEADY_WINDOW = 30
#: ... and the spread (standard deviation, dB) below which a window is steady.
_STEADY_SPREAD_DB = 1.5
#: Samples a block for the peak search of the clipping check.
_BLOCK = 1024
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
    max_loop: float = 3.0              # span / predicted above which a long take fails hard (a loop)
    hard_pause: float = 2.0            # pause / its limit above which a long pause fails hard


class Check(NamedTuple):
    """One check's figure, its limit (as text) and whether the take passed it.

    A named tuple rather than a frozen dataclass: five are made for every take,
    and a tuple is cheaper to make.
    """

    name: str
    passed: bool
    value: float
    limit: str
    unit: str = ""
    #: How far past the limit a failed figure is (0 when passed), to rank failed takes.
    excess: float = 0.0
    #: A failure within the soft margin (a slow reading, a long pause): kept with a warning unless --strict.
    soft: bool = False

    def describe(self) -> str:
        state = "ok" if self.passed else "failed (soft)" if self.soft else "FAILED"
        return f"{self.name} {self.value:.3g}{self.unit} ({self.limit}) {state}"

    def to_json(self) -> dict[str, Any]:
        out = {"passed": self.passed, "value": round(float(self.value), 4), "limit": self.limit}
        if self.soft:
            out["soft"] = True
        return out


class Verdict:
    """Every check of one take.

    :func:`check_take` makes one from the take's figures (a :class:`Judged`):
    it knows pass or fail at once, and makes its :class:`Check` records (their
    limits written out) when first asked for them.  The engine needs only pass
    or fail until it reports, and the records, made right after a synthesis,
    were a large share of the checks' time on espeak (benchmark_enhanced.py
    --only quality).
    """

    __slots__ = ("_checks", "_judged", "_passed", "asr", "figures", "notes")

    def __init__(self, checks: Iterable[Check] = (), notes: Iterable[str] = (), *,
                 figures: Figures | None = None, asr: tuple[float, str] | None = None,
                 judged: Judged | None = None) -> None:
        if judged is not None:          # the checks are made from *judged* when first asked for
            self._checks: tuple[Check, ...] | None = None
            self._passed = judged.passed()
        else:
            self._checks = tuple(checks)
            self._passed = all(c.passed for c in self._checks)
        self._judged = judged
        self.notes = tuple(notes)
        #: What the checks read off the take (None: not measured), and the recognizer's (WER, heard).
        self.figures = figures
        self.asr = asr

    @classmethod
    def of(cls, judged: Judged) -> Verdict:
        """The verdict on a take from its figures; its checks are made when first asked for."""
        return cls(figures=judged.figures, judged=judged)

    @property
    def checks(self) -> tuple[Check, ...]:
        if self._checks is None:
            assert self._judged is not None
            self._checks = self._judged.checks()       # the same records whichever thread makes them
        return self._checks

    @property
    def passed(self) -> bool:
        return self._passed

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def hard_failed(self) -> list[Check]:
        """The checks failed beyond their soft margin (a take with none may be kept, with a warning)."""
        return [c for c in self.checks if not c.passed and not c.soft]

    def acceptable(self, strict: bool = False) -> bool:
        """Whether the take may be kept: it passed, or (not *strict*) failed only softly."""
        return self._passed or (not strict and not self.hard_failed)

    def record(self) -> dict[str, Any]:
        """What the checks measured, as the cache keeps it with the take (:meth:`Gate.judge` reads it back)."""
        out: dict[str, Any] = {}
        if self.figures is not None:
            out["figures"] = [float(v) for v in self.figures]     # JSON keeps a float exactly
        if self.asr is not None:
            out["asr"] = [float(self.asr[0]), self.asr[1]]
        return out

    @property
    def badness(self) -> float:
        """0 for a take that passed; else how far past its limits it is (ranks failed takes)."""
        return sum(1.0 + c.excess for c in self.failed)

    def describe(self) -> str:
        return "; ".join(c.describe() for c in (self.failed or self.checks))

    def to_json(self) -> dict[str, Any]:
        return {c.name: c.to_json() for c in self.checks}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Verdict) and (self.checks, self.notes) == (other.checks, other.notes)

    def __hash__(self) -> int:
        return hash((self.checks, self.notes))

    def __repr__(self) -> str:
        return f"Verdict(checks={self.checks!r}, notes={self.notes!r})"


# ---------------------------------------------------------------- what the text predicts

@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """Token, vowel-group, CJK/Hangul and symbol patterns for non-ASCII text, compiled on first use:
    compiling the CJK ranges at import would cost every start-up (issue 13's `--dry-run` budget)."""
    return (re.compile(r"[^\W_]+", re.UNICODE),
            re.compile(r"[aeiouyàáâäæãåāèéêëēėęìíîïīįòóôöœøōõùúûüūÿ]+", re.IGNORECASE),
            re.compile(r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"),
            re.compile(r"[$€£%&+=@#]"))


#: English syllables per word on average (the backends' rates are in words per minute).
SYLLABLES_PER_WORD = 1.45

# ASCII text, read as bytes with bytes.translate (cheaper than the regular expressions above and
# than str.translate): each character as v(owel), c(onsonant), d(igit) or a space.
_ASCII_VOWELS = "aeiouyAEIOUY"
_ASCII_KINDS = ["v" if c in _ASCII_VOWELS else "c" if c.isalpha() else "d" if c.isdigit() else " "
                for c in map(chr, range(128))]
_KINDS = "".join(_ASCII_KINDS).ljust(256).encode("ascii")
_VOWEL_RUNS = "".join(k if k == "v" else " " for k in _ASCII_KINDS).ljust(256).encode("ascii")
_SYMBOLS = b"$%&+=@#"


def spoken_words(text: str) -> float:
    """How many average words *text* takes to say (syllables / 1.45; digits and symbols spelled out).

    Latin-script words count their vowel groups; digits count about a word
    each ("1987" is "nineteen eighty-seven"); a CJK or Hangul character counts
    as a syllable; other scripts count one word per token.
    """
    if not text.isascii():
        tokens, _vowels, _wide, symbols_pattern = _patterns()
        syllables = sum(_token_syllables(token) for token in tokens.findall(text))
        return (syllables + 1.45 * len(symbols_pattern.findall(text))) / SYLLABLES_PER_WORD
    data = text.encode("ascii")
    syllables = float(len(data.translate(_VOWEL_RUNS).split()))     # every token's vowel groups
    for token in data.translate(_KINDS).split():
        if b"v" not in token:                                      # a token without: "Mr", "t", "1987"
            syllables += 1.0 if b"c" in token else 1.45 * len(token)
    symbols = len(data) - len(data.translate(None, _SYMBOLS))
    return (syllables + 1.45 * symbols) / SYLLABLES_PER_WORD


def _token_syllables(token: str) -> float:
    _tokens, vowels, wide_pattern, _symbols = _patterns()
    wide = len(wide_pattern.findall(token))
    if wide:
        return wide
    if token.isdigit():
        return 1.45 * len(token)
    if token.isascii() or vowels.search(token):
        return max(1, len(vowels.findall(token)))
    return SYLLABLES_PER_WORD * max(1.0, len(token) / 5.0)


def expected_seconds(text: str, wpm: float) -> float:
    """The speech span *text* should take at *wpm* words per minute (its words alone: see :func:`pauses`)."""
    return spoken_words(text) * 60.0 / wpm


#: Seconds of silence a reader may leave at each kind of punctuation inside a line, at the voice's own
#: rate (slower voices, longer pauses).  An ellipsis or a dash asks for a pause, or a trailing off.
PAUSE_SECONDS = {"ellipsis": 0.8, "dash": 0.8, "end": 0.35, "colon": 0.25, "comma": 0.1}


@functools.cache
def _pause_pattern() -> re.Pattern[str]:
    """Pause marks: an ellipsis (``...``, ``. . .``, ``…``), a dash (``—``, ``–``, ``--``, a spaced
    hyphen), a sentence end, a colon or semicolon, a comma; compiled on first use."""
    return re.compile(r"(?P<ellipsis>\.(?:[ \t]*\.)+|…)|(?P<dash>[—–―]|-{2,}|(?<=\s)-(?=\s|$)|(?<=\w)-(?=\s|$))"
                      r"|(?P<end>[.!?])|(?P<colon>[;:])|(?P<comma>,)")


def pauses(text: str) -> tuple[float, float]:
    """(all the pauses, the longest single one) that *text*'s punctuation asks for, in seconds at a
    voice's own rate; only between words (a mark at the line's start or end leaves no gap inside the
    speech).  Marks with nothing but spaces between them make one pause: ``Oh! . . . by the way`` is a
    sentence end and an ellipsis, one long pause."""
    total = longest = run = 0.0
    last_end = -1
    for mark in _pause_pattern().finditer(text):
        start, end = mark.span()
        if not _has_word(text, 0, start) or not _has_word(text, end, len(text)):
            continue
        if mark.lastgroup == "end" and text[start] == "." and _abbreviation(text, start):
            continue
        weight = PAUSE_SECONDS[mark.lastgroup or "comma"]
        run = run + weight if last_end >= 0 and not text[last_end:start].strip() else weight
        last_end = end
        total += weight
        longest = max(longest, run)
    return total, longest


#: Words whose full stop ends no sentence ("Mr. Worthing"), lower-case.
_ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr rev hon col capt gen lt prof sgt mt vs etc".split())


def _abbreviation(text: str, dot: int) -> bool:
    """Whether the full stop at *dot* ends an abbreviation or an initial ("Mr.", "J. P.")."""
    word = text[:dot].rsplit(None, 1)[-1] if text[:dot].strip() else ""
    word = word.lstrip("\"'([“‘")
    return word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper())


def _has_word(text: str, start: int, end: int) -> bool:
    return any(c.isalnum() for c in text[start:end])


# ---------------------------------------------------------------- the measurements
#
# The NumPy version (measure_numpy).  The gate runs on the worker right after
# each synthesis.  What it costs is
# the passes over the samples and the number of NumPy calls: each call has a
# fixed cost whatever its size, as much as the frame energies of dozens of
# frames.  So a take is read twice (the frames' sums of squares; the blocks'
# maxima and minima for clipping) and the rest is a dozen calls on the frame
# sums (benchmark_enhanced.py --only quality for the times).


def frame_energy(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mean square of each 10 ms frame (mono float samples; a tail shorter than a frame is left out)."""
    import numpy as np

    size = max(1, round(rate * FRAME))
    return _frame_sums(samples, size) / np.float32(size)


def _frame_sums(samples: np.ndarray, size: int) -> np.ndarray:
    """Sum of squares of each frame of *size* samples: a row-wise dot product, no squared copy."""
    import numpy as np

    count = samples.shape[0] // size
    frames = samples[:count * size].reshape(count, size)
    return np.einsum("ij,ij->i", frames, frames)


def frame_db(samples: np.ndarray, rate: int) -> np.ndarray:
    """Energy of each 10 ms frame, dBFS (mono float samples)."""
    import numpy as np

    return (10.0 * np.log10(np.maximum(frame_energy(samples, rate), 1e-10))).astype(np.float32)


def longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in *mask*."""
    import numpy as np

    if not mask.any():
        return 0
    edges = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((ends - starts).max())


def clipped_share(samples: np.ndarray) -> float:
    """Share of samples on flat tops: equal to the one before and within 2 % of the peak (at least 0.5).

    The peak comes from the maxima and minima of blocks of ``_BLOCK`` samples;
    only the blocks that reach within 2 % of it (one or two in a clean take)
    are compared sample by sample.
    """
    import numpy as np

    n = samples.shape[0]
    if n < 3:
        return 0.0
    starts = np.arange(0, n, _BLOCK)
    highs, lows = np.maximum.reduceat(samples, starts), np.minimum.reduceat(samples, starts)
    near = 0.98 * max(float(np.maximum.reduce(highs)), -float(np.minimum.reduce(lows)))
    if near < 0.49:
        return 0.0
    flat = 0
    for block in ((highs >= near) | (lows <= -near)).nonzero()[0].tolist():
        run = samples[max(0, block * _BLOCK - 1):(block + 1) * _BLOCK]       # with the sample before
        flat += int(np.count_nonzero((run[1:] == run[:-1]) & (np.abs(run[1:]) >= near)))
    return flat / n


@functools.lru_cache(maxsize=4)
def _alternating(capacity: int) -> np.ndarray:
    """Two rows of *capacity* values, 0 then +1000, -1000, ... (read-only; copied for each take)."""
    import numpy as np

    rows = np.zeros((2, capacity))
    rows[:, 1::2], rows[:, 2::2] = 1e3, -1e3
    rows.flags.writeable = False
    return rows


def steady_seconds(sums: np.ndarray, sounding: np.ndarray) -> float:
    """Longest stretch of sounding frames whose energy stays within a few dB (a tone, a hiss).

    Speech energy swings by 10 dB or more within every 0.3 s (syllables); a
    sustained tone or noise stays within about 1 dB.  The spread is the
    standard deviation of the frames' levels over a sliding 0.3 s window,
    from running sums of the levels and of their squares (two rows, one
    cumulative sum).  Silent frames are set to +1000 and -1000 bels in turn,
    so a window that holds one is never steady.  *sums*: the frames' energies
    (any scale).
    """
    import numpy as np

    n, count = _STEADY_WINDOW, sums.shape[0]
    if count < n:
        return 0.0
    run = _alternating(1 << max(12, count.bit_length()))[:, :count + 1].copy()
    np.log10(sums, out=run[0, 1:], where=sounding)                 # bels
    np.square(run[0], out=run[1])
    np.cumsum(run, axis=1, out=run)
    windows = run[:, n:] - run[:, :-n]                             # each window's sum, sum of squares
    spread = windows[1]
    spread *= n
    spread -= np.square(windows[0], out=windows[0])                 # n^2 * variance
    steady = spread < (_STEADY_SPREAD_DB / 10.0 * n) ** 2
    if not np.count_nonzero(steady):
        return 0.0
    return (longest_run(steady) + n - 1) * FRAME


class Figures(NamedTuple):
    """What the checks read off one take."""

    peak_db: float       # the loudest 10 ms frame, dBFS
    clipped: float       # share of samples on flat tops
    span: float          # seconds from the first sounding frame to the last
    pause: float         # seconds of the longest silence inside the span
    steady: float        # seconds of the longest steady stretch


@functools.cache
def compiled() -> Any:
    """The compiled pass (:mod:`dialog_tts._takecheck`), or None where the install could not build it."""
    try:
        from dialog_tts import _takecheck
    except ImportError:
        return None
    return _takecheck


def measure(samples: np.ndarray, rate: int, speech: bool = True) -> Figures:
    """The figures of a take (mono float samples); *speech* False: level and clipping only.

    One compiled pass where the install built :mod:`dialog_tts._takecheck`
    (a C compiler at install time), else :func:`measure_numpy`: the same
    figures, three to five times slower right after a synthesis.
    """
    fast = compiled()
    if fast is not None:
        try:
            return Figures._make(fast.measure(samples, max(1, round(rate * FRAME)), speech))
        except TypeError:                   # not contiguous 1-D float32 samples: NumPy reads any layout
            pass
    return measure_numpy(samples, rate, speech)


def measure_numpy(samples: np.ndarray, rate: int, speech: bool = True) -> Figures:
    """:func:`measure` in NumPy: two passes over the samples, then a dozen calls on the frame energies."""
    import numpy as np

    size = max(1, round(rate * FRAME))
    sums = _frame_sums(samples, size)
    loudest = float(np.maximum.reduce(sums)) / size if sums.shape[0] else 0.0
    peak_db = 10.0 * math.log10(loudest) if loudest > 1e-10 else _FLOOR_DB
    clipped = clipped_share(samples)
    if not speech or not sums.shape[0]:
        return Figures(peak_db, clipped, 0.0, 0.0, 0.0)
    sounding = sums > size * 10.0 ** (max(_SILENCE_DB, peak_db - _SILENCE_BELOW_PEAK_DB) / 10.0)
    on = sounding.nonzero()[0]
    if on.shape[0] < 2:
        return Figures(peak_db, clipped, on.shape[0] * FRAME, 0.0, 0.0)
    gap = int(np.maximum.reduce(on[1:] - on[:-1])) - 1
    span = int(on[-1] - on[0] + 1) * FRAME
    return Figures(peak_db, clipped, span, gap * FRAME, steady_seconds(sums, sounding))


# ---------------------------------------------------------------- the checks

def check_take(clip: Clip, text: str, *, wpm: float, speed: float = 1.0, volume_db: float = 0.0,
               speech: bool = True, thresholds: Thresholds = Thresholds(),
               figures: Figures | None = None) -> Verdict:
    """The cheap checks of one take of *text*, spoken at *wpm* words per minute.

    *speed* is the voice's rate factor (pauses scale with it), *volume_db* its
    own volume (a quiet voice may be quiet); *speech* False checks only level
    and clipping (for backends whose output is not speech).  *figures*: the
    take's figures as measured before (a cached take's), else they are measured.
    """
    figures = measure(clip.mono(), clip.sample_rate, speech) if figures is None else figures
    if not speech:
        return Verdict.of(Judged(figures, 0.0, speed, volume_db, speech, thresholds))
    total, longest = pauses(text)
    return Verdict.of(Judged(figures, expected_seconds(text, wpm * speed), speed, volume_db, speech, thresholds,
                             total / speed, longest / speed))


class Judged(NamedTuple):
    """What the checks of one take are made from: its figures, its text's predicted span, the voice, the limits."""

    figures: Figures
    predicted: float     # seconds the text's words should take at the voice's rate (0 when not speech)
    speed: float         # the voice's rate factor: pauses scale with it
    volume_db: float     # the voice's own volume: a quiet voice may be quiet
    speech: bool         # False: level and clipping only
    thresholds: Thresholds
    pauses: float = 0.0  # seconds of pause the text's punctuation asks for, in all (at the voice's rate)
    longest: float = 0.0  # ... and at its longest single pause

    def bounds(self) -> tuple[float, float, float, float, float]:
        """The least level (dBFS), the most clipped (%), the least and most span and the longest pause (s).

        The least span is the words' alone (a voice may skip a pause), the most counts the pauses too.
        """
        t, predicted = self.thresholds, self.predicted
        return (t.min_level_db + min(0.0, self.volume_db), t.max_clipped * 100.0,
                max(0.0, t.min_duration * predicted - t.duration_slack),
                t.max_duration * (predicted + self.pauses) + t.duration_slack,
                t.max_pause / min(self.speed, 1.0) + self.longest)

    def passed(self) -> bool:
        """Whether every check passes: the comparisons of :meth:`checks`, without making the records."""
        f, (level, clipped, low, high, pause) = self.figures, self.bounds()
        if f.peak_db < level or f.clipped * 100.0 > clipped:
            return False
        return not self.speech or not (f.span < low or f.span > high or f.pause > pause
                                       or f.steady > self.thresholds.max_steady)

    def checks(self) -> tuple[Check, ...]:
        f, (level, clipped, low, high, pause) = self.figures, self.bounds()
        checks = (_limit_check("level", f.peak_db, low=level, unit=" dBFS", scale=10.0),
                  _limit_check("clipping", f.clipped * 100.0, high=clipped, unit=" %", scale=clipped))
        if not self.speech:
            return checks
        t = self.thresholds
        duration = _duration_check(f.span, self.predicted + self.pauses, low, high)
        if not duration.passed and f.span > high:         # slow, not a loop: soft
            duration = duration._replace(soft=f.span <= t.max_loop * (self.predicted + self.pauses)
                                         + t.duration_slack)
        pause_check = _limit_check("pause", f.pause, high=pause, unit=" s", scale=1.0)
        if not pause_check.passed:
            pause_check = pause_check._replace(soft=f.pause <= t.hard_pause * pause)
        return (*checks, duration, pause_check,
                _limit_check("steady", f.steady, high=t.max_steady, unit=" s", scale=1.0))


def _limit_check(name: str, value: float, *, low: float | None = None, high: float | None = None,
                 unit: str = "", scale: float = 1.0) -> Check:
    if low is not None and value < low:
        return Check(name, False, value, _limit_text("at least", low, unit), unit, (low - value) / scale)
    if high is not None and value > high:
        return Check(name, False, value, _limit_text("at most", high, unit), unit, (value - high) / scale)
    limit = _limit_text("at least", low, unit) if low is not None else _limit_text("at most", high, unit)
    return Check(name, True, value, limit, unit)


@functools.lru_cache(maxsize=256)
def _limit_text(bound: str, value: float | None, unit: str) -> str:
    """"at most 1.5 s": the same few limits on every take, formatted once."""
    return f"{bound} {value:g}{unit}"


def _duration_check(span: float, predicted: float, low: float, high: float) -> Check:
    """Speech span against the prediction (*low* to *high* seconds, with a few tenths of grace): a ratio."""
    ratio = span / predicted if predicted > 0 else 1.0
    limit = f"{low:.2f}-{high:.2f} s for a predicted {predicted:.2f} s"
    if span < low:
        return Check("duration", False, ratio, limit, "x", (low - span) / max(low, 0.1))
    if span > high:
        return Check("duration", False, ratio, limit, "x", (span - high) / high)
    return Check("duration", True, ratio, limit, "x")
