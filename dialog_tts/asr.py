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
#: Languages the bundled model recognizes (a voice's language must start with one of these).
LANGUAGES = ("en",)

_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_WORD = re.compile(r"[a-z']+|\d")


def require() -> None:
    """Fail before any synthesis when the extra is missing (a usage error naming it)."""
    try:
        import jiwer  # noqa: F401
        import pocketsphinx  # noqa: F401
    except ImportError as exc:
        raise InputError(f"--check asr needs {exc.name}: pip install 'dialog-tts[asr]'") from None


def recognizes(language: str) -> bool:
    """Whether the bundled model can check a voice speaking *language* ("" = unknown: no)."""
    return language.lower().replace("_", "-").startswith(LANGUAGES)


def normalize(text: str) -> str:
    """Lower case, punctuation dropped, digits spelled one by one (pocketsphinx's dictionary has no digits)."""
    words = _WORD.findall(text.lower().replace("’", "'"))
    return " ".join(_NUMBER_WORDS[int(w)] if w.isdigit() else w.strip("'") for w in words if w.strip("'"))


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
        reference = normalize(text)
        if not reference:
            return 0.0, heard
        return float(jiwer.wer(reference, normalize(heard) or "<nothing>")), heard
