"""Reading music files: the bed in blocks, intro and outro clips whole.

The bed can be as long as the dialog (hours), so it is never read whole:
:class:`BlockReader` opens it with soundfile, reads ``block`` frames at a time,
resamples each block with a streaming soxr resampler to the output rate and
matches the output's channels.  Calling the reader opens the file afresh, which
is how the mixer loops it.  Any format and rate soundfile reads will do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dialog_tts.errors import InputError
from dialog_tts.finish.clips import resampled_length
from dialog_tts.io.audio import Clip

BLOCK = 1 << 16  # frames read from the file at a time


class BlockReader:
    """A music file as blocks of float32 at *rate* Hz with *channels* channels; call it to read from the start.

    ``blocks_read`` and ``largest_block`` count what was read (the memory tests use them).
    """

    def __init__(self, path: str | os.PathLike[str], rate: int, channels: int, block: int = BLOCK) -> None:
        import soundfile as sf

        self.path, self.rate, self.channels, self.block = Path(path), rate, channels, block
        try:
            info = sf.info(os.fspath(path))
        except (OSError, sf.LibsndfileError, RuntimeError) as exc:
            raise InputError(f"cannot read the music file: {exc}", path=os.fspath(path)) from None
        if info.frames <= 0:
            raise InputError("the music file holds no audio", path=os.fspath(path))
        self.source_rate = int(info.samplerate)
        self.frames = resampled_length(int(info.frames), self.source_rate, rate)
        self.blocks_read = 0
        self.largest_block = 0

    def __call__(self) -> Iterator[np.ndarray]:
        import soundfile as sf
        import soxr

        stream = None
        if self.source_rate != self.rate:
            stream = soxr.ResampleStream(self.source_rate, self.rate, self.channels, dtype="float32", quality="HQ")
        with sf.SoundFile(os.fspath(self.path)) as f:
            while True:
                data = f.read(self.block, dtype="float32", always_2d=True)
                last = data.shape[0] < self.block
                self.blocks_read += 1
                self.largest_block = max(self.largest_block, data.shape[0])
                block = _channels(data, self.channels)
                if stream is not None:
                    block = stream.resample_chunk(block, last=last)
                if block.shape[0]:
                    yield block
                if last:
                    return


def _channels(data: np.ndarray, channels: int) -> np.ndarray:
    """(n, c) samples as mono (n,) or stereo (n, 2)."""
    if data.shape[1] == channels == 2:
        return data
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(mono) if channels == 1 else np.repeat(mono[:, None], 2, axis=1)


def read_clip(path: str | os.PathLike[str], what: str) -> Clip:
    """A short clip (intro, outro) read whole, at its own rate."""
    import soundfile as sf

    try:
        samples, rate = sf.read(os.fspath(path), dtype="float32", always_2d=False)
    except (OSError, sf.LibsndfileError, RuntimeError) as exc:
        raise InputError(f"cannot read the {what} file: {exc}", path=os.fspath(path)) from None
    if samples.ndim == 2 and samples.shape[1] > 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    return Clip(samples, int(rate))


