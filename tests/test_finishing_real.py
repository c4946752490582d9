"""Finishing on real voices (piper and espeak, offline): the two test renders of issue 12.

- a 40-line, 3-speaker scene rendered by piper and espeak;
- a long play: 9 espeak speakers, 72 lines, about 3.5 minutes of audio (as long as CI time
  allows: it renders in a few seconds).

Measured independently: each speaker's integrated loudness with libebur128 (pyebur128) over
that speaker's spans, true peaks oversampled with scipy.signal.resample_poly to 192 kHz.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import soundfile as sf

from dialog_tts import synthesize_dialog
from test_finishing import ebur128_lufs, oversampled_peak_db, speaker_loudness

pytestmark = pytest.mark.slow

WORDS = ("the studio is quiet tonight and the lights are low we talk about radio weather music old friends "
         "a long drive home the city sleeps somebody calls in with a story about the sea and a lighthouse "
         "keeper who never left his post sharp consonants like tick tock kettle static crackle peak spikes "
         "yes no perhaps").split()


def lines(speakers: list[str], count: int, seed: int) -> str:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 16))).capitalize()
        out.append(f"{speakers[i % len(speakers)]}: {text}{rng.choice('.!?.')}")
    return "\n".join(out) + "\n"


SCENE_VOICES = {"A": "joe", "B": "en-us+f3,backend=espeak", "C": "en-gb-x-rp+m3,backend=espeak"}
PLAY_SPEAKERS = [f"S{i}" for i in range(9)]
PLAY_VOICES = {s: f"{v},backend=espeak" for s, v in zip(PLAY_SPEAKERS, [
    "en-us", "en-us+f3", "en-gb-x-rp+m3", "en-us+m7", "en-gb+f5", "en-us+Annie", "en-gb-scotland+m2",
    "en-us+f2", "en-029+m5"])}


def spread(levels: dict[str, float]) -> float:
    return max(levels.values()) - min(levels.values())


def limiter_reductions(limited: np.ndarray, reference: np.ndarray, rate: int, result) -> np.ndarray:
    """dB taken off each 100 ms speech block of each line: its level against the line's untouched
    blocks (the reference is the same render without a target, held under 0 dBTP only)."""
    n, out = int(0.1 * rate), []
    for line in result.lines:
        a = round(line.start * rate)
        k = (round(line.end * rate) - a) // n
        if k < 2:
            continue
        def rms(x: np.ndarray) -> np.ndarray:
            return np.sqrt((x[a:a + k * n].reshape(k, n, -1) ** 2).mean(axis=(1, 2)))
        ref, got = rms(reference), rms(limited)
        speech = ref > ref.max() * 0.01                  # blocks within 40 dB of the line's loudest
        ratio = 20 * np.log10(got[speech] / ref[speech])
        out.append(ratio.max() - ratio)
    return np.concatenate(out)


def test_scene_piper_and_espeak(write_script, tmp_path):
    script = write_script(lines(list(SCENE_VOICES), 40, seed=3))
    plain = synthesize_dialog(script, tmp_path / "plain.wav", voices=SCENE_VOICES, true_peak=0.0)
    x0, rate = sf.read(tmp_path / "plain.wav", dtype="float64")
    assert spread(speaker_loudness(x0, rate, plain)) <= 0.5
    natural = synthesize_dialog(script, tmp_path / "off.wav", voices=SCENE_VOICES, leveling="off")
    assert natural.duration == pytest.approx(plain.duration, abs=1e-3)      # levelling moves no line
    result = synthesize_dialog(script, tmp_path / "m16.wav", voices=SCENE_VOICES, lufs=-16.0)
    x, rate = sf.read(tmp_path / "m16.wav", dtype="float64")
    assert spread(speaker_loudness(x, rate, result)) <= 0.5
    assert ebur128_lufs(x, rate) == pytest.approx(-16.0, abs=0.5)
    assert oversampled_peak_db(x, rate) <= -1.0
    taken = limiter_reductions(x, x0, rate, result)
    assert taken.size > 500 and np.mean(taken <= 2.0) >= 0.95


def test_long_play_many_espeak_speakers(write_script, tmp_path):
    script = write_script(lines(PLAY_SPEAKERS, 72, seed=9))
    for options in ({}, {"lufs": -16.0}):
        result = synthesize_dialog(script, tmp_path / "play.flac", voices=PLAY_VOICES, **options)
        x, rate = sf.read(tmp_path / "play.flac", dtype="float64")
        assert result.duration > 180
        assert spread(speaker_loudness(x, rate, result)) <= 0.5, options
        assert oversampled_peak_db(x, rate) <= -1.0
