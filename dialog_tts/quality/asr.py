"""The recognizer check (``--check asr``): does the take say the words of the line?

pocketsphinx (its wheel ships an en-US acoustic model, language model and
dictionary) transcribes the take at 16 kHz; jiwer gives the word error rate
against the line's text.  Both come with the ``asr`` extra and are imported
only here, when the check is asked for.  A decoder is not thread-safe, so each
thread borrows one from the process's few (:class:`Decoders`; each is slow to load, so they are kept).

Only the words the recognizer could have heard are counted (:func:`reference`):
a word outside its dictionary (``cmudict-en-us.dict``, the one its decoder
loads) cannot be recognized, and a name, though the dictionary may hold it
("Worthing", "Bracknell"), is one its language model all but never guesses, so
neither counts as an error, nor do the words the recognizer hears in its place.
A line with fewer than :data:`MIN_WORDS` counted words is not judged.

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

from dialog_tts.errors import InputError
from dialog_tts.io.audio import Clip, resample

RATE = 16000
#: Lines with fewer counted words are not judged: one misheard word of "No." is a word error rate of 1.
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
_CASED_WORD = re.compile(r"[A-Za-z']+|\d+")
#: Titles that make the capitalized words after them a name ("Lady Bracknell", "Mr. Worthing").
_TITLES = frozenset("mr mrs ms miss dr st sir lady lord rev canon hon captain colonel professor "
                    "mister missus doctor saint".split())

#: Decoder settings, chosen on clean takes of the default voices of varied lines: every other 10 ms frame
#: (``ds``), at most 2,000 HMMs and 10 words a frame, no second flat pass.  Much cheaper than
#: pocketsphinx's defaults for a slightly higher WER on clean takes, while takes of other words stay far
#: above the limit (tests/test_asr.py); benchmark_enhanced.py --only quality times the check.
DECODER = {"ds": 2, "fwdflat": False, "bestpath": True, "maxhmmpf": 2000, "maxwpf": 10}
#: Samples fed to the decoder at a time (0.25 s): each call holds the GIL this long at most.
CHUNK = RATE // 4


def require() -> None:
    """Fail before any synthesis when the extra is missing (a usage error naming it)."""
    from dialog_tts.backends.base import install_hint, missing_modules

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
    """Whether *text* has enough counted words (:func:`reference`) for its word error rate to mean something."""
    return sum(counted for _word, counted in reference(text)) >= MIN_WORDS


@functools.lru_cache(maxsize=1)
def dictionary() -> frozenset[str]:
    """The words of the recognizer's pronouncing dictionary (the file its decoder loads), lower-case."""
    from pocketsphinx import Config

    words = set()
    with open(Config()["dict"], encoding="utf-8", errors="replace") as lines:
        for line in lines:
            head = line.split(" ", 1)[0]
            words.add(head.split("(", 1)[0].lower())
    return frozenset(words)


def reference(text: str) -> list[tuple[str, bool]]:
    """*text*'s words as compared (:func:`words`; digits left out where it has any), each with whether
    it counts: a word the dictionary holds and not part of a name.  A name is a capitalized word that
    does not start a sentence ("I" aside), or a title followed by one; a word outside the dictionary
    (an unusual name, a coinage) cannot be heard as written either."""
    cased = text.replace("’", "'")
    tokens = list(_CASED_WORD.finditer(cased))
    known = _dictionary_or_none()
    out: list[tuple[str, bool]] = []
    sentence_start, end = True, 0
    previous = ""
    for i, match in enumerate(tokens):
        gap = cased[end:match.start()]
        if re.search(r"[.!?…:;\"“(\[]", gap) and not (gap.strip() == "." and previous in _SPOKEN):
            sentence_start = True
        end = match.end()
        raw = match.group().strip("'")
        if not raw:
            continue
        lower = raw.lower()
        word = _SPOKEN.get(lower, lower)
        following = tokens[i + 1].group().lstrip("'") if i + 1 < len(tokens) else ""
        capital = raw[0].isupper() and raw != "I"
        name = (capital and not sentence_start) or (lower in _TITLES and following[:1].isupper())
        counted = not name and (known is None or word in known or word.isdigit())
        out.append((word, counted))
        sentence_start, previous = False, lower
    if any(word.isdigit() for word, _counted in out):   # as comparable(): numbers left out of both sides
        out = [(word, counted) for word, counted in out if not word.isdigit() and word not in _NUMBER_WORDS]
    return out


def _dictionary_or_none() -> frozenset[str] | None:
    """The dictionary, or None where pocketsphinx is not installed (then every word is taken as known)."""
    try:
        return dictionary()
    except (ImportError, OSError, KeyError):
        return None


def score(text: str, heard: str) -> float:
    """The word error rate of *heard* against *text*'s counted words (:func:`reference`).

    The words are aligned as jiwer aligns them; an error on a word that does not count is no error,
    nor is a word heard beside one (the recognizer's try at a name: "brack nell").
    """
    import jiwer

    ref = reference(text)
    total = sum(counted for _word, counted in ref)
    if not total:
        return 0.0
    hyp = comparable(text, heard)[1]
    if not hyp:
        return 1.0
    counts = [counted for _word, counted in ref]
    errors = 0
    for chunk in jiwer.process_words(" ".join(w for w, _c in ref), hyp).alignments[0]:
        if chunk.type in ("substitute", "delete"):
            errors += sum(counts[chunk.ref_start_idx:chunk.ref_end_idx])
        elif chunk.type == "insert":
            beside = counts[max(0, chunk.ref_start_idx - 1):chunk.ref_start_idx + 1]
            if all(beside):
                errors += chunk.hyp_end_idx - chunk.hyp_start_idx
    return errors / total


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
    only cost their loading time and memory.  The decoders of a process
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
    from dialog_tts.backends.base import usable_cores

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
        """(WER of the take against *text*'s counted words, what was heard: :func:`score`)."""
        heard = self.transcribe(clip)
        return score(text, heard), heard
