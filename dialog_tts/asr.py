"""The recognizer check (``--check asr``): does the take say the words of the line?

pocketsphinx (its wheel ships an en-US acoustic model, language model and
dictionary) transcribes the take at 16 kHz; jiwer gives the word error rate
against the line's text.  Both come with the ``asr`` extra and are imported
only here, when the check is asked for.  A decoder is not thread-safe, so each
thread borrows one from the process's few (:class:`Decoders`; one takes 0.3 s to load).

pocketsphinx holds the GIL while it decodes, so a take is fed to it a quarter
of a second at a time: between two pieces the other workers' threads run, and
the recognizer decodes beside their synthesis instead of stopping it (one call
for a whole take held every other thread for as long as it took).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .audio import Clip, resample
from .errors import InputError

RATE = 16000
#: Lines with fewer words are not judged: one misheard word of "No." is a word error rate of 1.
MIN_WORDS = 3
#: Languages the bundled model recognizes (a voice's language must start with one of these).
LANGUAGES = ("en",)

#: Words a number may be spoken with.  A voice says "1987" as "nineteen eighty-seven" or "one
#: thousand nine hundred ...", so where the text has digits, they and these words are left out of the
#: comparison rather than guessed.
_NUMBER_WORDS = frozenset(
    "zero oh one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred "
    "thousand million billion and point first second third fourth fifth sixth seventh eighth ninth tenth "
    "twelfth thirteenth twentieth thirtieth th st nd rd percent dollars dollar euros euro cents".split())
_WORD = re.compile(r"[a-z']+|\d+")

#: Decoder settings, measured on 96 clean takes of the default voices (piper joe-light and joe-tenor,
#: hibari heart and heart-low) of varied lines: every other 10 ms frame (``ds``), at most 2,000 HMMs
#: and 10 words a frame, no second flat pass.  2.1x faster than pocketsphinx's defaults (0.057 against
#: 0.122 of real time, on one core); mean WER 0.22 against 0.18 (median 0.19 against 0.14), takes of
#: other words still far above the limit (tests/test_asr.py).
DECODER = {"ds": 2, "fwdflat": False, "bestpath": True, "maxhmmpf": 2000, "maxwpf": 10}
#: Samples fed to the decoder at a time (0.25 s): each call holds the GIL this long at most.
CHUNK = RATE // 4


def require() -> None:
    """Fail before any synthesis when the extra is missing (a usage error naming it)."""
    from .backends.base import install_hint, missing_modules

    missing = missing_modules("pocketsphinx", "jiwer")
    if missing:
        raise InputError(f"--check asr needs {', '.join(missing)}: {install_hint('asr')}")


def recognizes(language: str) -> bool:
    """Whether the bundled model can check a voice speaking *language* ("" = unknown: no)."""
    return language.lower().replace("_", "-").startswith(LANGUAGES)


#: Abbreviations as the recognizer's dictionary spells what is said.
_SPOKEN = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "vs": "versus"}


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped, common abbreviations spelled out (digits kept as tokens)."""
    found = (w.strip("'") for w in _WORD.findall(text.lower().replace("’", "'")))
    return [_SPOKEN.get(w, w) for w in found if w]


def judged(text: str) -> bool:
    """Whether *text* has enough words (numbers left out) for its word error rate to mean something."""
    return len(comparable(text, "")[0].split()) >= MIN_WORDS


def comparable(reference: str, heard: str) -> tuple[str, str]:
    """The text and the transcript as compared: where the text has digits, numbers are left out of both."""
    ref, hyp = words(reference), words(heard)
    if any(w.isdigit() for w in ref):
        ref = [w for w in ref if not w.isdigit()]
        hyp = [w for w in hyp if w not in _NUMBER_WORDS]
    return " ".join(ref), " ".join(hyp)


class Decoders:
    """Loaded pocketsphinx decoders, lent to one thread at a time (a decoder is not thread-safe).

    At most one per core: the recognizer is CPU-bound, so more decoders would
    only cost their loading (0.3 s each) and memory.  The decoders of a process
    are shared by its renders, as the backends' loaded models are.
    """

    def __init__(self, limit: int) -> None:
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(limit)

    @contextmanager
    def lend(self) -> Iterator[Any]:
        with self._slots:
            with self._lock:
                decoder = self._idle.pop() if self._idle else None
            if decoder is None:
                from pocketsphinx import Decoder

                decoder = Decoder(samprate=RATE, loglevel="FATAL", **DECODER)
            try:
                yield decoder
            finally:
                with self._lock:
                    self._idle.append(decoder)


@functools.lru_cache(maxsize=1)
def decoders() -> Decoders:
    """The process's decoders (one per core this process may run on)."""
    from .backends.base import usable_cores

    return Decoders(usable_cores())


class Recognizer:
    """Transcribes takes with the process's pocketsphinx decoders (the bundled en-US model)."""

    def __init__(self) -> None:
        require()
        self._decoders = decoders()

    def transcribe(self, clip: Clip) -> str:
        import numpy as np

        mono = resample(clip.mono(), clip.sample_rate, RATE)
        data = memoryview((np.clip(mono, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())
        with self._decoders.lend() as decoder:
            decoder.start_utt()
            for start in range(0, len(data), 2 * CHUNK):        # the GIL is free between pieces
                decoder.process_raw(data[start:start + 2 * CHUNK], False, False)
            decoder.end_utt()
            hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def word_error_rate(self, clip: Clip, text: str) -> tuple[float, str]:
        """(WER of the take against *text*, what was heard)."""
        import jiwer

        heard = self.transcribe(clip)
        reference, hypothesis = comparable(text, heard)
        if not reference:
            return 0.0, heard
        return float(jiwer.wer(reference, hypothesis or "<nothing>")), heard
