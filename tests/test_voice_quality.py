"""The automatic voices, measured: intelligible to an offline recognizer, women's and men's pitch, distinct.

Every voice of the default palettes (the offline default cast, and hibari's and piper's
palettes) speaks the same eight ordinary sentences.  pocketsphinx (16 kHz, its bundled
en-US model) transcribes them and jiwer scores the word error rate; ``median_f0``
measures the pitch.  Piper's voices draw random noise inside the model, so the test
seeds onnxruntime and loads a fresh piper backend per voice to measure the same audio
every run (hibari has a fixed seed of its own).

The WER bound is 1.5 × the best voice's, with the best taken as at least 10 %: on these
eight sentences (72 words) the best voices score 2-4 errors, so 1.5 × that would compare
single words; over 24 such sentences every natural voice here scored 3-11 %.  The
voices this bound guards against score 40-100 %.
"""

from __future__ import annotations

import itertools

import jiwer
import numpy as np
import pytest

from dialog_tts import backends, casting
from dialog_tts.voice import Voice
from measure import Recognizer, median_f0, words

SENTENCES = [
    "The weather will be warm and sunny all week.",
    "Please call your mother before the train leaves.",
    "We found the old map under the kitchen table.",
    "Nobody expected the meeting to end so early.",
    "He bought three apples and a loaf of bread.",
    "The children were playing in the garden after school.",
    "I think we should start the show with the news.",
    "She wrote a long letter to her brother in London.",
]
WER_FLOOR = 0.10
WOMEN_ABOVE_HZ, MEN_BELOW_HZ = 165.0, 140.0
MIN_PITCH_RATIO = 1.08


def palette_voices() -> list[tuple[str, str]]:
    """(backend, voice) of every voice the automatic cast may pick here, in a fixed order."""
    found = [*casting._default_cast()]
    for name in ("hibari", "piper"):
        found += [(name, voice) for voice in backends.get_backend(name).palette()]
    return list(dict.fromkeys(found))


def measure(backend_name: str, voice_name: str) -> dict:
    """Synthesize the sentences with a fresh backend instance: WER, median F0, sex."""
    import onnxruntime

    onnxruntime.set_seed(0)     # piper's noise: the same audio every run
    factory = backends._import(backends._BUILTINS[backend_name])
    backend = factory()
    voice = backend.resolve(Voice(voice_name, backend_name))
    recognize = Recognizer()
    heard, spoken = [], []
    for text in SENTENCES:
        clip = backend.synthesize(text, voice)
        heard.append(words(recognize(clip.samples, clip.sample_rate)))
        spoken.append(clip)
    backend.close()
    rate = spoken[0].sample_rate
    f0 = median_f0(np.concatenate([c.samples for c in spoken[:4]]), rate)
    return {"voice": f"{backend_name}:{voice_name}", "gender": backend.voice_gender(voice_name),
            "f0": f0, "wer": jiwer.wer([words(t) for t in SENTENCES], heard)}


@pytest.fixture(scope="module")
def table():
    return [measure(b, v) for b, v in palette_voices()]


@pytest.mark.slow
def test_default_palettes_hold_two_women_and_two_men(table):
    genders = [row["gender"] for row in table]
    assert genders.count("female") >= 2 and genders.count("male") >= 2, table


@pytest.mark.slow
def test_every_palette_voice_is_intelligible(table):
    best = min(row["wer"] for row in table)
    bound = 1.5 * max(best, WER_FLOOR)
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
