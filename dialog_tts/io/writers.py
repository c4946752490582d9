"""Writing the finished mix block by block, in every output format, to a file or a stream, and
measuring a written file block by block: memory stays the same however long the mix.

:func:`open_writer` takes float32 blocks, ``(n,)`` mono or ``(n, 2)`` stereo, already limited
to the ceiling, in order:

- WAV, FLAC, Ogg Vorbis, Opus and MP3 go through one :class:`soundfile.SoundFile`, with the
  subtypes :func:`dialog_tts.io.audio.write` uses, so that a file written in blocks has the bytes
  of the same samples written whole (Ogg and Opus: the same decoded samples, as libsndfile gives
  every Ogg stream a random serial number).  16- and 24-bit output is rounded by one
  :class:`~dialog_tts.io.audio.Quantizer` that runs on from block to block: any split of a mix
  gives the bytes of :func:`~dialog_tts.io.audio.quantize` and :func:`~dialog_tts.io.audio.write` on
  the whole.  Opus at a rate libopus lacks is resampled to 48 kHz on the way (soxr, streaming).
- M4A and M4B (AAC in MP4) go through PyAV with their chapters (:mod:`dialog_tts.io.mp4`).

A target that cannot seek (stdout on a pipe) gets what players read from a pipe: WAV with its
sizes set to 0xFFFFFFFF ("unknown", as ffmpeg and sox write on a pipe), FLAC with its total
length and MD5 left unknown (as ``flac -`` writes), Ogg and Opus as always, MP3 without the
Xing frame (a plain MP3 stream).  M4A and M4B cannot stream: MP4 writes its index after the audio.

:func:`measure_file` decodes a written file in blocks and reads its integrated loudness and
true peak with the one meter, :class:`dialog_tts.finish.loudness.StreamMeter`.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence, Union

import numpy as np

from dialog_tts.errors import DialogTTSError, InputError, OutputError
from dialog_tts.finish.loudness import StreamMeter
from dialog_tts.finish.timeline import ChapterMark
from dialog_tts.io import audio, mp4, outputs
from dialog_tts.render import specs

Target = Union[str, os.PathLike, BinaryIO]
STDOUT = "-"
#: The formats that can be written to a stream that cannot seek (stdout on a pipe).
STREAMABLE = (".wav", ".flac", ".ogg", ".opus", ".mp3")
BLOCK = 1 << 16            # frames decoded at a time when measuring
_UNKNOWN = 0xFFFFFFFF      # a WAV chunk size that says "until the end of the stream"
_WAV_BITS = {"PCM_16": 16, "PCM_24": 24, "FLOAT": 32}


def open_writer(target: Target, suffix: str, rate: int, channels: int, *, bit_depth: int | None = None,
                bitrate: int | None = None, chapters: Sequence[ChapterMark] = (), seed: int = 0,
                frames: int | None = None) -> BlockWriter:
    """A writer of *target* (a path, a binary file, or ``-`` for stdout) in the format of *suffix*.

    *bit_depth* is 16 (TPDF-dithered with *seed*), 24, or None for float samples (WAV)
    and for the lossy formats; *frames*, where known, is how many frames will come (a WAV
    beyond 4 GiB is then written as RF64); *bitrate* (bits per second) and *chapters* are AAC's
    (M4A/M4B); the other encoders keep the settings :func:`audio.write` gives them.
    Raises :class:`InputError` for a format or bit depth the target cannot take.
    """
    suffix = ("" if suffix.startswith(".") else ".") + suffix.lower()
    if channels not in (1, 2) or rate <= 0:
        raise ValueError(f"cannot write {channels} channels at {rate} Hz (1 or 2 channels, a positive rate)")
    if isinstance(target, str) and target == STDOUT:
        target = sys.stdout.buffer
    stream = not isinstance(target, (str, os.PathLike)) and not _seekable(target)
    if suffix in mp4.FORMATS:
        if bit_depth is not None:
            raise InputError(f"{suffix} holds AAC: a bit depth applies to .wav and .flac", path=_shown(target))
        if stream:
            raise InputError(f"{suffix} cannot be streamed (MP4 writes its index after the audio): write a file, "
                             f"or stream one of {', '.join(STREAMABLE)}", path=_shown(target))
        return _AacWriter(target, rate, channels, bitrate or mp4.DEFAULT_BITRATE, chapters)
    fmt, subtype = _soundfile_format(suffix, bit_depth, target)
    if stream and suffix == ".wav":
        return _WavStream(target, rate, channels, subtype or "", seed)  # type: ignore[arg-type]
    if frames is not None:     # a file that a plain WAV's 32-bit sizes cannot hold is written as RF64
        fmt = audio.container_for(fmt, subtype, frames, channels)
    return _SoundfileWriter(target, suffix, rate, channels, (fmt, subtype), seed)


def _soundfile_format(suffix: str, bit_depth: int | None, target: Target) -> tuple[str, str | None]:
    if suffix not in specs.FORMATS:
        raise InputError(f"cannot write {suffix}: use one of {', '.join([*specs.FORMATS, *mp4.FORMATS])}",
                         path=_shown(target))
    fmt, subtype = specs.FORMATS[suffix]
    depths = specs.PCM_SUBTYPES.get(suffix)
    if depths is None:
        if bit_depth is not None:
            raise InputError(f"{suffix} is encoded from float samples: a bit depth applies to .wav and .flac",
                             path=_shown(target))
        return fmt, subtype
    key = "32f" if bit_depth is None else str(bit_depth)
    if key not in depths:
        held = "float" if bit_depth is None else f"{bit_depth}-bit"
        raise InputError(f"{suffix} cannot hold {held} samples (use {' or '.join(depths)})", path=_shown(target))
    return fmt, depths[key]


def _seekable(stream: Any) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _shown(target: object) -> str:
    if isinstance(target, (str, os.PathLike)):
        return os.fspath(target)
    return "<stdout>" if target is sys.stdout.buffer else str(getattr(target, "name", "<stream>"))


#: Frames quantized and handed to the encoder at once: a quarter of a render's blocks (2**20 frames).
#: Each NumPy pass over a piece lets go of the GIL and takes it back after, while the mixer makes the
#: next blocks on another thread (finish/ahead.py): few large pieces wait for it less often than many
#: small ones (docs/performance.md has the hour's figures).  The bytes are the same however a block is
#: cut (the dither's draws run on: see audio.Quantizer).
_PCM_PIECE = 1 << 18


class BlockWriter:
    """Writes blocks of float32 samples one after another; :meth:`close` (or the ``with`` block) finishes.

    ``frames`` counts the frames written so far (at the rate given, before any resampling).
    """

    _errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, target: Target, rate: int, channels: int, quantizer: audio.Quantizer | None = None) -> None:
        self.target, self.rate, self.channels, self.frames = target, rate, channels, 0
        self._quantizer = quantizer
        self._closed = False

    def write(self, block: np.ndarray) -> None:
        """Write the next *block*, ``(n,)`` for mono or ``(n, 2)`` for stereo (left as it is)."""
        x = np.asarray(block, dtype=np.float32)
        if x.shape[1:] != (() if self.channels == 1 else (self.channels,)):
            raise ValueError(f"a block of shape {x.shape} for {self.channels} channel(s)")
        if self._closed:
            raise ValueError("write to a closed writer")
        if not x.shape[0]:
            return
        with self._translated():
            if self._quantizer is None:
                self._write(x)
            else:     # PCM: the dithered integers, the block left as it is, in pieces (see _PCM_PIECE)
                for a in range(0, x.shape[0], _PCM_PIECE):
                    self._write(self._quantizer.pcm(x[a:a + _PCM_PIECE]))
        self.frames += x.shape[0]

    def close(self) -> None:
        """Finish the file (flush the encoder, fill in the header); a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        with self._translated():
            self._close()

    def flush(self) -> None:
        """Hand what the target (a file object) buffers on to it, as a stream's reader waits for it."""
        if not isinstance(self.target, (str, os.PathLike)):
            with self._translated():
                self.target.flush()

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if kind is None:
            self.close()
            return
        with contextlib.suppress(Exception):     # the error that ended the block is the one to tell
            self.close()

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except DialogTTSError:
            raise
        except self._errors as exc:     # the sink's own error first: libsndfile reports it as its own
            raise _failure(self._sink_error() or exc, self.target) from exc

    def _sink_error(self) -> OSError | None:
        return None

    def _write(self, block: np.ndarray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


def _failure(exc: BaseException, target: Target) -> OutputError:
    if isinstance(target, (str, os.PathLike)):
        reason = audio.write_failure(exc, target)     # type: ignore[arg-type]
    elif target is sys.stdout.buffer and isinstance(exc, OSError):
        return outputs.stdout_failure(exc)
    elif isinstance(exc, AssertionError):             # soundfile's check that libsndfile took every frame
        reason = "the output took only part of the audio (closed, or full)"
    else:
        reason = getattr(exc, "strerror", None) or str(exc)
    return OutputError(f"cannot write audio: {reason}", path=_shown(target))


def _quantizer(subtype: str | None, seed: int) -> audio.Quantizer | None:
    bits = {"PCM_16": 16, "PCM_24": 24}.get(subtype or "")
    return audio.Quantizer(bits, seed) if bits else None


class _SoundfileWriter(BlockWriter):
    """WAV, FLAC, Ogg Vorbis, Opus and MP3 through one soundfile.SoundFile."""

    def __init__(self, target: Target, suffix: str, rate: int, channels: int, fmt: tuple[str, str | None],
                 seed: int) -> None:
        import soundfile as sf

        super().__init__(target, rate, channels, _quantizer(fmt[1], seed))
        # AssertionError: soundfile's own check that libsndfile wrote every frame (a descriptor that failed)
        self._errors = (OSError, sf.SoundFileError, AssertionError)
        self._subtype = fmt[1]
        self._resampler = None
        out_rate = rate
        if suffix == ".opus" and rate not in audio.OPUS_RATES:
            import soxr

            self._resampler = soxr.ResampleStream(rate, 48000, channels, dtype="float32", quality="HQ")
            out_rate = 48000
        # libvorbis's output depends on how its input is cut (measured at 48 kHz: blocks of 32768 frames
        # or fewer change the decoded samples by up to 0.03), so Vorbis is handed audio.write's blocks
        self._rechunk = _Rechunker(audio.WRITE_BLOCK, channels) if fmt[1] == "VORBIS" else None
        self._sink = _sink(target, suffix)
        with self._translated():
            self._file = sf.SoundFile(self._sink, "w", samplerate=out_rate, channels=channels,
                                      format=fmt[0], subtype=fmt[1], closefd=False)
            self._check()

    def _check(self) -> None:
        if isinstance(self._sink, (_ForwardSink, _SeekableSink)):
            self._sink.check()

    def _sink_error(self) -> OSError | None:
        return getattr(getattr(self, "_sink", None), "error", None)

    def _write(self, block: np.ndarray) -> None:
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
        if self._rechunk is None:
            self._file.write(audio.pcm_block(block, self._subtype))
        else:
            for whole in self._rechunk.feed(block):
                self._file.write(whole)
        self._check()

    def _close(self) -> None:
        try:
            if self._resampler is not None:
                empty = np.zeros((0,) if self.channels == 1 else (0, self.channels), np.float32)
                self._file.write(self._resampler.resample_chunk(empty, last=True))
            if self._rechunk is not None and self._rechunk.fill:
                self._file.write(self._rechunk.rest())
        finally:
            self._file.close()
            if not isinstance(self.target, (str, os.PathLike)):
                self.target.flush()
        self._check()


class _Rechunker:
    """Blocks of any sizes in, blocks of exactly *size* frames out (one buffer, reused)."""

    def __init__(self, size: int, channels: int) -> None:
        self.buf = np.empty((size,) if channels == 1 else (size, channels), np.float32)
        self.fill = 0

    def feed(self, block: np.ndarray) -> Iterator[np.ndarray]:
        """The buffer each time it is full (use it before asking for the next)."""
        size = self.buf.shape[0]
        while block.shape[0]:
            n = min(block.shape[0], size - self.fill)
            self.buf[self.fill:self.fill + n] = block[:n]
            self.fill += n
            block = block[n:]
            if self.fill == size:
                self.fill = 0
                yield self.buf

    def rest(self) -> np.ndarray:
        return self.buf[:self.fill]


def _sink(target: Target, suffix: str) -> Any:
    """What soundfile writes to: the path, the file, or for a stream that cannot seek its descriptor
    (MP3) or a :class:`_ForwardSink`."""
    if isinstance(target, (str, os.PathLike)):
        return os.fspath(target)
    if _seekable(target):
        return _SeekableSink(target)
    if suffix == ".mp3":
        with contextlib.suppress(AttributeError, OSError, ValueError):
            fd = target.fileno()
            target.flush()
            return fd
    return _ForwardSink(target)


class _SeekableSink:
    """A file object that can seek, as soundfile's virtual file, its errors kept for the writer to raise.

    Raised inside libsndfile's callbacks, an error (a full disk, ``> /dev/full``) would be printed
    as "Exception ignored from cffi callback" and lost, and soundfile would then fail its own
    assert; here the writes after it are dropped and :meth:`check` raises it when libsndfile returns.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _guarded(self, op: Any, fallback: Any) -> Any:
        if self.error is None:
            try:
                return op()
            except OSError as exc:
                self.error = exc
        return fallback

    def tell(self) -> int:
        return int(self._guarded(self.raw.tell, 0))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return int(self._guarded(lambda: self.raw.seek(offset, whence), 0))

    def read(self, size: int = -1) -> bytes:
        return bytes(self._guarded(lambda: self.raw.read(size), b""))

    def write(self, data: bytes) -> int:
        self._guarded(lambda: outputs.write_all(self.raw, data), None)
        return len(data)


class _ForwardSink:
    """A stream that cannot seek, as soundfile's virtual file: writes at its end go through, and a
    format that seeks back at the end to fill in its header finds those writes dropped, so the
    stream keeps the header it started with (lengths unknown).

    Why not hand libsndfile the file descriptor: it refuses WAV on a pipe, and its FLAC writer,
    unable to seek back, appends the STREAMINFO fields it would fill in (27 bytes) after the last
    frame, where libsndfile's own reader then fails ("flac decoder lost sync"; measured with
    libsndfile 1.2.2).  MP3 does go to the descriptor (:func:`_sink`): told it writes a pipe,
    libsndfile leaves out the Xing frame it would otherwise write first, as silence, and fill in last.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.pos, self.end = raw, 0, 0
        self.error: OSError | None = None      # raised by the writer: from inside libsndfile it would be lost

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.pos = offset + (0 if whence == os.SEEK_SET else self.pos if whence == os.SEEK_CUR else self.end)
        return self.pos

    def read(self, size: int = -1) -> bytes:
        return b""

    def write(self, data: bytes) -> int:
        n = len(data)
        if self.pos + n > self.end and self.error is None:     # what lies past the end goes out
            skip = max(0, self.end - self.pos)
            try:
                outputs.write_all(self.raw, memoryview(data)[skip:])
            except OSError as exc:                    # a closed pipe: told after libsndfile returns
                self.error = exc
            self.end = self.pos + n
        self.pos += n
        return n


class _WavStream(BlockWriter):
    """WAV on a stream that cannot seek: a header whose sizes say "until the end", then the samples.

    Written here, as libsndfile refuses WAV on a pipe ("this file format does not support pipe
    write"), and on a file object that cannot seek writes a second header after the samples.
    """

    def __init__(self, target: BinaryIO, rate: int, channels: int, subtype: str, seed: int) -> None:
        super().__init__(target, rate, channels, _quantizer(subtype, seed))
        self._subtype, self._out = subtype, target
        with self._translated():
            outputs.write_all(target, wav_stream_header(rate, channels, subtype))

    def _write(self, block: np.ndarray) -> None:
        pcm = audio.pcm_block(block, self._subtype)
        if self._subtype == "PCM_24":                # int32 shifted left by 8: its top three bytes
            data = pcm.astype("<i4").view(np.uint8).reshape(-1, 4)[:, 1:]
        else:
            data = pcm.astype("<i2" if self._subtype == "PCM_16" else "<f4")
        outputs.write_all(self._out, data.tobytes())

    def _close(self) -> None:
        self._out.flush()
        outputs.check_taken(self._out)


def wav_stream_header(rate: int, channels: int, subtype: str) -> bytes:
    """A 44-byte WAV header for a stream of unknown length (RIFF and data sizes 0xFFFFFFFF)."""
    bits = _WAV_BITS[subtype]
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 3 if subtype == "FLOAT" else 1, channels, rate, rate * align, align, bits)
    return (b"RIFF" + struct.pack("<I", _UNKNOWN) + b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", _UNKNOWN))


class _AacWriter(BlockWriter):
    """M4A and M4B: AAC in MP4 through PyAV, chapters included (see :mod:`dialog_tts.io.mp4`)."""

    def __init__(self, target: Target, rate: int, channels: int, bitrate: int,
                 chapters: Sequence[ChapterMark]) -> None:
        import av

        super().__init__(target, rate, channels)
        self._errors = (OSError, av.FFmpegError)
        self._container, self._stream = mp4.open_aac(target, rate, channels, bitrate=bitrate, chapters=chapters)

    def _write(self, block: np.ndarray) -> None:
        mp4.encode_block(self._container, self._stream, block)

    def _close(self) -> None:
        try:
            mp4.finish(self._container, self._stream)
        finally:
            self._container.close()


# ---------------------------------------------------------------- measuring a written file

def measure_file(path: str | os.PathLike[str]) -> tuple[float | None, float]:
    """(integrated loudness LUFS or None, true peak dBTP) of the audio file at *path*, decoded in blocks
    (soundfile; PyAV for M4A/M4B), as a player decodes it."""
    meter: StreamMeter | None = None
    errors: tuple[type[BaseException], ...] = (OSError, RuntimeError)     # LibsndfileError is a RuntimeError
    if Path(path).suffix.lower() in mp4.FORMATS:
        import av

        errors = (*errors, av.FFmpegError)
    try:
        for block, rate in _decoded_blocks(path):
            if meter is None:
                meter = StreamMeter(rate, 1 if block.ndim == 1 else block.shape[1])
            meter.add(block)
    except errors as exc:
        raise OutputError(f"cannot read back the written audio: {exc}", path=os.fspath(path)) from exc
    return meter.result() if meter is not None else (None, -math.inf)


def _decoded_blocks(path: str | os.PathLike[str]) -> Iterator[tuple[np.ndarray, int]]:
    if Path(path).suffix.lower() in mp4.FORMATS:
        yield from mp4.decode_blocks(path, BLOCK)
        return
    import soundfile as sf

    with sf.SoundFile(os.fspath(path)) as f:
        for block in f.blocks(BLOCK, dtype="float32"):
            yield block, int(f.samplerate)
