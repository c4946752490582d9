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
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

from . import specs
from .errors import OutputError
from .timeline import ChapterMark

# defined in dialog_tts.specs (values, no NumPy); kept here for the modules that used them from here
parse_bitrate = specs.parse_bitrate

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

    from .audio import write_failure

    channels = 1 if samples.ndim == 1 else samples.shape[1]
    container, stream = open_aac(path, rate, channels, bitrate=bitrate, chapters=chapters)
    try:
        with container:
            for start in range(0, samples.shape[0], 64 * _FRAME):
                encode_block(container, stream, samples[start:start + 64 * _FRAME], scale)
            finish(container, stream)
    except (OSError, av.FFmpegError) as exc:      # a full disk, a file too large: one line, as the others give
        raise OutputError(f"cannot write audio: {write_failure(exc, path)}", path=_shown(path)) from None


def open_aac(target: str | os.PathLike[str] | BinaryIO, rate: int, channels: int, *, bitrate: int,
             chapters: Sequence[ChapterMark] = ()) -> tuple[Any, Any]:
    """(container, stream): an MP4 file at *target* (a path or a seekable binary file) opened for AAC."""
    import av

    try:
        container = av.open(target if hasattr(target, "write") else os.fspath(target), "w", format="ipod")
    except (OSError, av.FFmpegError) as exc:
        raise OutputError(f"cannot write audio: {exc}", path=_shown(target)) from None
    stream = container.add_stream("aac", rate=rate, layout="mono" if channels == 1 else "stereo")
    stream.bit_rate = bitrate
    if chapters:
        tb = Fraction(1, rate)
        container.set_chapters([{"id": i + 1, "start": c.start, "end": c.end, "time_base": tb,
                                 "metadata": {"title": c.title}} for i, c in enumerate(chapters)])
    return container, stream


def encode_block(container: Any, stream: Any, block: np.ndarray, scale: float = 1.0) -> None:
    """Encode one block of samples, (n,) or (n, 2), times *scale* (PyAV cuts it into AAC frames)."""
    import av

    planar = np.ascontiguousarray((block.T if block.ndim == 2 else block[None, :]) * np.float32(scale),
                                  dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=stream.layout.name)
    frame.sample_rate = stream.rate
    for packet in stream.encode(frame):
        container.mux(packet)


def finish(container: Any, stream: Any) -> None:
    """Flush the encoder (the caller closes the container, which writes the index)."""
    for packet in stream.encode(None):
        container.mux(packet)


def _shown(target: object) -> str:
    return os.fspath(target) if isinstance(target, (str, os.PathLike)) else str(getattr(target, "name", "<stream>"))


def decode_blocks(path: str | os.PathLike[str], frames: int = 1 << 16) -> Iterator[tuple[np.ndarray, int]]:
    """(samples (n,) or (n, 2), rate) of an M4A/M4B file, decoded with PyAV, about *frames* frames at a time."""
    import av

    with av.open(os.fspath(path)) as container:
        stream = container.streams.audio[0]
        rate, parts, held = int(stream.rate), [], 0
        for frame in container.decode(stream):
            parts.append(frame.to_ndarray())
            held += parts[-1].shape[1]
            if held >= frames:
                yield _interleaved(parts), rate
                parts, held = [], 0
        if parts:
            yield _interleaved(parts), rate


def _interleaved(parts: list[np.ndarray]) -> np.ndarray:
    data = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    return np.ascontiguousarray(data[0] if data.shape[0] == 1 else data.T, dtype=np.float32)


def decode(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """(samples (n,) or (n, 2), rate) of an M4A/M4B file, decoded with PyAV."""
    import av

    blocks = list(decode_blocks(path))
    if blocks:
        return np.concatenate([b for b, _ in blocks]), blocks[0][1]
    with av.open(os.fspath(path)) as container:
        return np.zeros(0, np.float32), int(container.streams.audio[0].rate)


def decoded_true_peak(path: str | os.PathLike[str], rate: int) -> float:
    """The true peak (dBTP, 8x oversampled, as a bound) of the file as a player decodes it."""
    from .loudness import REPORT_ALLOWANCE_DB, true_peak_per_frame

    samples, got_rate = decode(path)
    peak = float(true_peak_per_frame(np.ascontiguousarray(samples), got_rate).max()) if samples.size else 0.0
    return 20 * math.log10(peak) + REPORT_ALLOWANCE_DB if peak > 0 else -math.inf


