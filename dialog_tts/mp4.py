"""M4A and M4B (AAC in MP4) through PyAV, whose wheel ships FFmpeg and its AAC encoder.

Chapters go in with the audio (FFmpeg's MP4 muxer writes both a QuickTime
chapter track, which Apple's players read, and a Nero ``chpl`` box, which
mutagen and most others read); tags are added afterwards by
:mod:`dialog_tts.tags`.  AAC can raise the true peak a little, so with a
ceiling the file is decoded, measured, and encoded again a little quieter until
it holds (at most a few rounds).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Sequence

import numpy as np

from .errors import InputError, OutputError
from .timeline import ChapterMark

FORMATS = {".m4a": "ipod", ".m4b": "ipod"}
DEFAULT_BITRATE = 128_000
_FRAME = 1024               # AAC frame
_ROUNDS = 4


def write(path: str | os.PathLike[str], samples: np.ndarray, rate: int, *, bitrate: int | None = None,
          chapters: Sequence[ChapterMark] = (), ceiling_db: float | None = None) -> float | None:
    """Encode *samples* to AAC in *path*; returns the true peak (dBTP) decoded, when *ceiling_db* is given."""
    scale = 1.0
    peak = None
    for _ in range(_ROUNDS):
        _encode(path, samples, rate, bitrate or DEFAULT_BITRATE, chapters, scale)
        if ceiling_db is None:
            return None
        peak = decoded_true_peak(path, rate)
        if peak <= ceiling_db:
            break
        scale *= 10 ** ((ceiling_db - peak - 0.05) / 20)
    return peak


def _encode(path: str | os.PathLike[str], samples: np.ndarray, rate: int, bitrate: int,
            chapters: Sequence[ChapterMark], scale: float) -> None:
    import av

    channels = 1 if samples.ndim == 1 else samples.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    try:
        container = av.open(os.fspath(path), "w", format="ipod")
    except (OSError, av.FFmpegError) as exc:
        raise OutputError(f"cannot write audio: {exc}", path=os.fspath(path)) from None
    with container:
        stream = container.add_stream("aac", rate=rate, layout=layout)
        stream.bit_rate = bitrate
        if chapters:
            tb = Fraction(1, rate)
            container.set_chapters([{"id": i + 1, "start": c.start, "end": c.end, "time_base": tb,
                                     "metadata": {"title": c.title}} for i, c in enumerate(chapters)])
        for start in range(0, samples.shape[0], 64 * _FRAME):
            block = samples[start:start + 64 * _FRAME]
            planar = np.ascontiguousarray((block.T if block.ndim == 2 else block[None, :]) * np.float32(scale),
                                          dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def decode(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """(samples (n,) or (n, 2), rate) of an M4A/M4B file, decoded with PyAV."""
    import av

    parts = []
    with av.open(os.fspath(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        for frame in container.decode(stream):
            parts.append(frame.to_ndarray())
    data = np.concatenate(parts, axis=1) if parts else np.zeros((1, 0), np.float32)
    return (data[0] if data.shape[0] == 1 else data.T).astype(np.float32), int(rate)


def decoded_true_peak(path: str | os.PathLike[str], rate: int) -> float:
    """The true peak (dBTP, 4x oversampled) of the file as a player decodes it."""
    from .loudness import true_peak_per_frame

    samples, got_rate = decode(path)
    peak = float(true_peak_per_frame(np.ascontiguousarray(samples), got_rate).max()) if samples.size else 0.0
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def parse_bitrate(text: str | int | None) -> int | None:
    """``96k``, ``128000`` or None → bits per second."""
    if text is None or isinstance(text, int):
        return text
    value = text.strip().lower()
    try:
        bits = int(float(value[:-1]) * 1000) if value.endswith("k") else int(value)
    except ValueError:
        raise InputError(f"bitrate {text!r}: write it as 96k or 96000") from None
    if not 16_000 <= bits <= 512_000:
        raise InputError(f"bitrate {text!r} is out of range (16k to 512k)")
    return bits
