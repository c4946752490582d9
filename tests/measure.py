"""Measurements the tests make on rendered audio (test-only helpers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SENTENCE_FILE = Path(__file__).with_name("voice_sentences.txt")


def sentences(section: str = "held-out") -> list[str]:
    """The sentences under ``[section]`` in voice_sentences.txt (comments and blank lines skipped)."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in SENTENCE_FILE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = found.setdefault(line[1:-1], [])
        elif line and not line.startswith("#"):
            current.append(line)
    return found[section]


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


def take_figures(x: np.ndarray, rate: int) -> dict[str, float]:
    """The quality gate's figures of a take, computed the plain way (a reference for dialog_tts.quality.checks).

    Frame by frame in float64 with Python loops where that is clearest: the
    loudest 10 ms frame (dBFS), the share of samples on flat tops near the peak,
    the span from the first sounding frame to the last, the longest silence
    inside it, and the longest stretch of sounding frames whose level's
    standard deviation over every 0.3 s window stays under 1.5 dB.
    """
    x = np.asarray(x, dtype=np.float64)
    size = round(rate * 0.01)
    count = len(x) // size
    db = np.array([10 * np.log10(max(np.mean(x[i * size:(i + 1) * size] ** 2), 1e-10)) for i in range(count)])
    peak_db = float(db.max()) if count else -100.0
    peak = float(np.abs(x).max()) if len(x) else 0.0
    flat = 0
    if peak >= 0.5:
        flat = sum(1 for i in range(1, len(x)) if abs(x[i]) >= 0.98 * peak and x[i] == x[i - 1])
    sounding = db > max(-60.0, peak_db - 40.0)
    on = np.flatnonzero(sounding)
    span = (on[-1] - on[0] + 1) * 0.01 if len(on) else 0.0
    pause = run = 0
    for s in sounding[on[0]:on[-1] + 1] if len(on) else []:
        run = 0 if s else run + 1
        pause = max(pause, run)
    steady_windows = [i for i in range(count - 29)
                      if sounding[i:i + 30].all() and np.std(db[i:i + 30]) < 1.5]
    longest = best = 0
    for i in range(count - 29):
        best = best + 1 if i in steady_windows else 0
        longest = max(longest, best)
    return {"peak_db": peak_db, "clipped": flat / len(x) if len(x) else 0.0, "span": span,
            "pause": pause * 0.01, "steady": (longest + 29) * 0.01 if longest else 0.0}


def ebur128_lufs(x: np.ndarray, rate: int) -> float:
    """libebur128's integrated loudness (pyebur128), the independent reference for the meter."""
    import pyebur128

    channels = 1 if x.ndim == 1 else x.shape[1]
    state = pyebur128.R128State(channels, rate, pyebur128.MeasurementMode.MODE_I)
    state.add_frames(np.ascontiguousarray(x, dtype=np.float64).ravel(), x.shape[0])
    return float(pyebur128.get_loudness_global(state))
