"""Measurements the tests make on rendered audio (test-only helpers)."""

from __future__ import annotations

import numpy as np


def median_f0(x: np.ndarray, rate: int, fmin: float = 50.0, fmax: float = 400.0) -> float:
    """Median fundamental frequency of the voiced frames of *x* (normalized autocorrelation)."""
    x = np.asarray(x, dtype=np.float64)
    n, hop = int(0.04 * rate), int(0.01 * rate)
    lo, hi = int(rate / fmax), int(rate / fmin)
    gate = 0.02 * np.abs(x).max()
    f0 = []
    for start in range(0, len(x) - n - hi, hop):
        frame = x[start:start + n + hi]
        a = frame[:n]
        energy_a = a @ a
        if np.sqrt(energy_a / n) < gate:
            continue
        # windows of the frame at every lag, as rows: correlation of each with the first
        lagged = np.lib.stride_tricks.sliding_window_view(frame, n)[lo:hi]
        corr = lagged @ a / np.sqrt(energy_a * np.einsum("ij,ij->i", lagged, lagged) + 1e-12)
        k = int(np.argmax(corr))
        if corr[k] > 0.6:
            f0.append(rate / (lo + k))
    return float(np.median(f0)) if f0 else float("nan")


def rms_db(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    value = np.sqrt(np.mean(x * x)) if x.size else 0.0
    return 20 * np.log10(value) if value > 0 else -np.inf


def loud_regions(x: np.ndarray, rate: int, threshold: float = 1e-3) -> list[tuple[float, float]]:
    """(start, end) seconds of the runs where |x| exceeds *threshold* (gaps < 20 ms bridged)."""
    level = np.abs(x) if x.ndim == 1 else np.abs(x).max(axis=1)
    idx = np.flatnonzero(level > threshold)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > int(0.02 * rate))
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return [(s / rate, e / rate) for s, e in zip(starts, ends)]


class Recognizer:
    """pocketsphinx with its bundled en-US model, at 16 kHz: text from speech, for word error rates.

    One decoder per instance (loading the model takes about a second); utterances are
    decoded whole (``full_utt``), so each is independent of the ones before it.
    """

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=16000, loglevel="FATAL")

    def __call__(self, samples: np.ndarray, rate: int) -> str:
        import soxr

        x = soxr.resample(np.asarray(samples, dtype=np.float32), rate, 16000)
        pcm = (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def words(text: str) -> str:
    """Lower-case words without punctuation, for comparing a transcript with its text."""
    import re

    return " ".join(re.sub(r"[^\w' ]", " ", text.lower()).split())
