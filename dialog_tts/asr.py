"""The recognizer check (``--check asr``): does the take say the words of the line?

pocketsphinx (its wheel ships an en-US acoustic model, language model and
dictionary) transcribes the take at 16 kHz; jiwer gives the word error rate
against the line's text.  Both come with the ``asr`` extra and are imported
only here, when the check is asked for.  A decoder is not thread-safe, so each
worker thread gets its own (made once, about 0.3 s).
"""

from __future__ import annotations

import re
import threading
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


class Recognizer:
    """pocketsphinx decoders, one per thread, over the bundled en-US model."""

    def __init__(self) -> None:
        require()
        self._local = threading.local()

    def _decoder(self) -> Any:
        decoder = getattr(self._local, "decoder", None)
        if decoder is None:
            from pocketsphinx import Decoder

            decoder = self._local.decoder = Decoder(samprate=RATE, loglevel="FATAL")
        return decoder

    def transcribe(self, clip: Clip) -> str:
        import numpy as np

        mono = resample(clip.mono(), clip.sample_rate, RATE)
        pcm = (np.clip(mono, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        decoder = self._decoder()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
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
