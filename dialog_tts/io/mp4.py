"""M4A and M4B (AAC in MP4) through PyAV, whose wheel ships FFmpeg and its AAC encoder.

Chapters go in with the audio (FFmpeg's MP4 muxer writes both a QuickTime
chapter track, which Apple's players read, and a Nero ``chpl`` box, which
mutagen and most others read); tags are added afterwards by
:mod:`dialog_tts.io.tags`.  The block writer (:mod:`dialog_tts.io.writers`) encodes
with these; the render's one encode loop decodes the file (:func:`decode_blocks`)
and encodes again under a lower ceiling while AAC's true peak is over it.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

from dialog_tts.errors import OutputError
from dialog_tts.finish.timeline import ChapterMark

FORMATS = {".m4a": "ipod", ".m4b": "ipod"}
DEFAULT_BITRATE = 128_000
_FRAME = 1024               # AAC frame


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


def encode_block(container: Any, stream: Any, block: np.ndarray) -> None:
    """Encode one block of samples, (n,) or (n, 2) (PyAV cuts it into AAC frames)."""
    import av

    planar = np.ascontiguousarray(block.T if block.ndim == 2 else block[None, :], dtype=np.float32)
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
