"""Audio values and helpers: :class:`Clip`, resampling (soxr), codecs (soundfile).

Audio stays float32 in [-1, 1] with its sample rate attached until the final
write; nothing here knows about speakers or scripts.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from dialog_tts.errors import OutputError
from dialog_tts.io.outputs import atomic_path, check_outputs
from dialog_tts.render import specs

#: Rates libopus encodes; other rates are resampled to 48 kHz for .opus.
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
WRITE_BLOCK = 1 << 20  # frames per block when writing
_NEARLY_FULL = 1 << 20  # bytes: a write that failed with less free than this failed for want of space
# converted in NumPy (cheaper than libsndfile's own conversion): scale, and the shift into the container
_INT_SUBTYPES = {"PCM_16": (np.int16, 32768.0, 0), "PCM_24": (np.int32, float(1 << 23), 8)}


@dataclass(frozen=True)
class Clip:
    """Mono or stereo float32 samples, shape ``(n,)`` or ``(n, 2)``, with their rate.

    *marks* are the frames where the clip's second, third, ... sentence starts, where
    the backend told (piper and hibari speak sentence by sentence, Edge sends sentence
    boundaries); the subtitles split long lines there.  The cache keeps them.
    """

    samples: np.ndarray
    sample_rate: int
    marks: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.samples.dtype != np.float32:
            object.__setattr__(self, "samples", np.asarray(self.samples, dtype=np.float32))
        if self.samples.ndim not in (1, 2):
            raise ValueError(f"clip samples must be 1-D or 2-D, got shape {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {self.sample_rate}")

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[1])

    def mono(self) -> np.ndarray:
        return self.samples if self.samples.ndim == 1 else self.samples.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """*samples* at *rate* resampled to *target* Hz with soxr (high quality)."""
    if rate == target or samples.shape[0] == 0:
        return samples
    import soxr

    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32, copy=False)


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def apply_gain_db(clip: Clip, db: float) -> Clip:
    if not db:
        return clip
    return Clip(clip.samples * np.float32(db_to_gain(db)), clip.sample_rate, clip.marks)


def from_pcm16(data: bytes, sample_rate: int) -> Clip:
    """A mono Clip from little-endian signed 16-bit PCM bytes."""
    pcm = np.frombuffer(data, dtype="<i2")
    return Clip(pcm.astype(np.float32) / np.float32(32768.0), sample_rate)


def concat(parts: list[np.ndarray], sample_rate: int) -> Clip:
    """One Clip from consecutive chunks of float samples (an empty Clip for none)."""
    if not parts:
        return Clip(np.zeros(0, dtype=np.float32), sample_rate)
    starts = np.cumsum([len(p) for p in parts[:-1]], dtype=np.int64)
    return Clip(np.concatenate(parts).astype(np.float32, copy=False), sample_rate, tuple(int(s) for s in starts))


_PCM24 = float(1 << 23)
_MARKS = "dialog-tts sentence starts: "     # a cached clip's marks, in its FLAC comment


def pcm24(clip: Clip) -> Clip:
    """*clip* on the 24-bit grid (k / 2**23, clipped to [-1, 1)), which FLAC stores exactly.

    Every synthesized clip goes through this, so a line read back from the cache
    is bit-identical to the line as first synthesized.
    """
    # In float32, in place: scaling by a power of two is exact, and every k / 2**23 with |k| <= 2**23
    # is a float32, so this gives the float64 computation's very values (tests/test_outputs.py) with
    # one array instead of five.  Clipped first, so that no sample overflows when scaled.
    x = np.clip(clip.samples, -1.0, 1.0 - 1.0 / _PCM24)
    x *= np.float32(_PCM24)
    np.round(x, out=x)
    x /= np.float32(_PCM24)
    return Clip(x, clip.sample_rate, clip.marks)


def encode_flac(clip: Clip) -> bytes:
    """Compress *clip* as 24-bit FLAC (lossless for clips from :func:`pcm24`)."""
    import soundfile as sf

    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", clip.sample_rate, clip.channels, format="FLAC", subtype="PCM_24") as f:
        if clip.marks:
            f.comment = _MARKS + ",".join(map(str, clip.marks))
        f.write(pcm24(clip).samples)
    return buf.getvalue()


def decode(data: bytes) -> Clip:
    """Decode any format soundfile reads (FLAC, WAV, MP3, OGG) to a Clip."""
    import soundfile as sf

    with _readable(data) as source, sf.SoundFile(source, closefd=False) as f:
        samples = f.read(dtype="float32", always_2d=False)
        comment = f.comment if f.format == "FLAC" else ""
    marks = tuple(int(m) for m in comment[len(_MARKS):].split(",") if m) if comment.startswith(_MARKS) else ()
    return Clip(samples, int(f.samplerate), marks)


@contextlib.contextmanager
def _readable(data: bytes) -> Iterator[int | io.BytesIO]:
    """*data* as libsndfile can read it: an anonymous in-memory file's descriptor (Linux's memfd), which
    libsndfile reads itself; through a BytesIO it calls Python for every read, each call taking the GIL,
    so the engine's threads decoding cached lines wait on whatever holds it.  A BytesIO where there is no
    memfd.  Either way libsndfile decodes the same samples (tests/test_blockwrite.py)."""
    fd = _in_memory_file(data)
    if fd is None:
        yield io.BytesIO(data)
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _in_memory_file(data: bytes) -> int | None:
    """A memfd holding *data*, read from its start; None where none can be made or filled (not Linux, a
    sandbox without memfd, no descriptors left, a ``ulimit -f`` under the clip's size)."""
    fd = None
    try:
        fd = os.memfd_create("dialog-tts-clip", os.MFD_CLOEXEC)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
        return fd
    except (AttributeError, OSError):
        if fd is not None:
            os.close(fd)
        return None


#: Samples of encoder plus decoder delay at the start of an MP3 stream that has no
#: Xing/Info (LAME) frame telling the decoder to drop them, at 24 kHz: 576 + 529.
MP3_STREAM_DELAY = 1105


def decode_mp3(data: bytes) -> Clip:
    """Decode MP3 bytes; for a raw stream (no Xing/Info frame, as Edge sends) drop the codec delay.

    With a Xing/Info frame the decoder already returns exactly the encoded samples.
    """
    head = data[:512]
    tagged = b"Xing" in head or b"Info" in head
    clip = decode(_xing_size_fixed(data) if tagged else data)
    if tagged:
        return clip
    return Clip(clip.samples[MP3_STREAM_DELAY:], clip.sample_rate)


def _xing_size_fixed(data: bytes) -> bytes:
    """*data* with its Xing/Info frame's stream size set to the bytes actually there.

    A stream cut short (or a server that sends a tagged file in pieces) has a tag
    announcing more bytes than arrive; libmpg123, inside libsndfile, then prints
    "Xing stream size off by more than 1%" on the process's stderr, which no
    setting of soundfile turns off (and redirecting file descriptor 2 would hide
    other threads' messages too).  The tag is: "Xing" or "Info", 4 bytes of flags,
    then the frame count (flag 1) and the byte count (flag 2), big-endian.
    """
    at = max(data.find(b"Xing", 0, 512), data.find(b"Info", 0, 512))
    if at < 0 or len(data) < at + 16:
        return data
    flags = int.from_bytes(data[at + 4:at + 8], "big")
    if not flags & 2:
        return data
    field = at + 8 + (4 if flags & 1 else 0)
    start = data.find(b"\xff", 0, at)              # the tag's frame begins the stream
    actual = len(data) - max(start, 0)
    if int.from_bytes(data[field:field + 4], "big") == actual:
        return data
    return data[:field] + actual.to_bytes(4, "big") + data[field + 4:]


class Quantizer:
    """Rounds blocks of samples in place onto the *bits*-bit PCM grid (k / 2**(bits-1)), clipped to it.

    Reducing to 16 bits adds TPDF dither (the difference of two uniform values of one
    step), from a generator seeded with *seed* so that the output stays deterministic;
    digital silence (exact zeros) is left undithered, so pauses stay silent.  24 bits
    are rounded only: the clips' own precision (24-bit in the cache) is no finer.

    The generator runs on from one block to the next, and NumPy draws the same values
    however a run of draws is split into calls, so a buffer quantized in blocks of any
    sizes, in order, gets exactly the samples of one :func:`quantize` of the whole.
    """

    def __init__(self, bits: int, seed: int = 0) -> None:
        self.bits = bits
        self.scale = np.float32(1 << (bits - 1))
        self.rng = np.random.default_rng(seed) if bits == 16 else None
        self._scratch: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, block: np.ndarray) -> None:
        """Quantize *block* in place."""
        np.divide(self._grid(block), self.scale, out=block)

    def pcm(self, block: np.ndarray) -> np.ndarray:
        """*block* quantized as a call would, given as the integers that :func:`pcm_block` hands soundfile
        (int16; 24 bits: int32 shifted into the top bytes), *block* left as it is: the same bytes without
        the float grid made and read back."""
        grid = self._grid(block)
        if self.bits == 16:
            return grid.astype(np.int16)
        return np.left_shift(grid.astype(np.int32), 8)

    def _grid(self, block: np.ndarray) -> np.ndarray:
        """*block* on the integer grid (times 2**(bits-1)), dithered, rounded and clipped, as a new array."""
        scale = self.scale
        y = block * scale
        if self.rng is not None:
            y += self._dither(block)
        np.rint(y, out=y)
        np.clip(y, -scale, scale - 1, out=y)
        return y

    def _dither(self, block: np.ndarray) -> np.ndarray:
        """TPDF dither for *block*, zero where it is silent: two 16-bit uniforms in each 32-bit draw, low
        half minus high half (in int32: exact), in steps of 2**-16 (exact in float32).  Its working arrays
        are kept from one block to the next: fresh ones of a block's size cost a page fault a page."""
        n = block.size
        if self._scratch is None or self._scratch[0].size < n:
            self._scratch = (np.empty(n, np.int32), np.empty(n, np.float32))
        difference, dither = (a[:n].reshape(block.shape) for a in self._scratch)
        r = self._draws(n).reshape(block.shape)
        np.bitwise_and(r.view(np.int32), 0xFFFF, out=difference)
        np.right_shift(r, 16, out=r)
        np.subtract(difference, r.view(np.int32), out=difference)
        difference[block == 0] = 0
        np.multiply(difference, np.float32(1 / 65536), out=dither, dtype=np.float32, casting="unsafe")
        return dither

    def _draws(self, count: int) -> np.ndarray:
        """The next *count* values of ``rng.integers(0, 2**32, dtype=np.uint32)``, the same values, from
        the generator's raw 64-bit output: NumPy hands out each raw value as two 32-bit draws, low half
        first, and keeps an unused high half (``has_uint32``, ``uinteger`` in its state) for the next
        draw.  Read here as one array of raw values seen as 32-bit words, where ``integers`` makes a call
        through the generator's buffer for each draw (the tests hold the two to the same values)."""
        assert self.rng is not None
        generator = self.rng.bit_generator
        if sys.byteorder != "little" or count == 0:
            return self.rng.integers(0, 1 << 32, size=count, dtype=np.uint32)
        state = dict(generator.state)
        kept, head = state["has_uint32"], state["uinteger"]
        if kept:       # the half left over from the draw before comes first
            state["has_uint32"] = 0
            generator.state = state
        words = generator.random_raw((count - kept + 1) // 2).view(np.uint32)
        if (count - kept) % 2:      # the last raw value's high half is left over for the next draw
            state = dict(generator.state)
            state["has_uint32"], state["uinteger"] = 1, int(words[-1])
            generator.state = state
            words = words[:-1]
        return np.concatenate([np.array([head], np.uint32), words]) if kept else words


def quantize(samples: np.ndarray, bits: int, seed: int = 0) -> None:
    """Round *samples* in place onto the *bits*-bit PCM grid, in blocks (see :class:`Quantizer`)."""
    quantizer = Quantizer(bits, seed)
    for start in range(0, samples.shape[0], WRITE_BLOCK):
        quantizer(samples[start:start + WRITE_BLOCK])


def pcm_block(block: np.ndarray, subtype: str | None) -> np.ndarray:
    """*block* as soundfile should be handed it for *subtype*: int16, or int32 (24-bit, shifted into
    the top bytes) for PCM_16 and PCM_24, else the float samples themselves; integers already
    (:meth:`Quantizer.pcm`'s) as they are."""
    as_int = _INT_SUBTYPES.get(subtype or "")
    if as_int is None or block.dtype.kind == "i":
        return block
    dtype, scale, shift = as_int
    out = np.clip(np.rint(block * np.float32(scale)), -scale, scale - 1).astype(dtype)
    if shift:
        out <<= shift
    return out


def check_writable(path: str | os.PathLike[str]) -> None:
    """Fail early (before any synthesis) when *path* cannot be written (``-``: stdout, always; see outputs)."""
    if os.fspath(path) == "-":
        return
    specs.output_format(path)
    check_outputs([(path, "audio")], force=True)


def write(path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int,
          bit_depth: str | None = None) -> None:
    """Write *samples* to *path* atomically, in blocks, in the format of its extension.

    *bit_depth* ("16", "24" or "32f") picks the sample format of WAV and FLAC (16 if
    None).  Samples already on that PCM grid (:func:`quantize`) are written exactly."""
    import soundfile as sf

    fmt, subtype = specs.output_format(path, bit_depth)
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    fmt = container_for(fmt, subtype, samples.shape[0], channels)
    try:
        with atomic_path(path) as tmp:
            try:
                with sf.SoundFile(tmp, "w", samplerate=sample_rate, channels=channels, format=fmt,
                                  subtype=subtype) as f:
                    for start in range(0, samples.shape[0], WRITE_BLOCK):
                        f.write(pcm_block(samples[start:start + WRITE_BLOCK], subtype))
            except (OSError, sf.LibsndfileError) as exc:   # named while the partial file still takes its space
                raise OutputError(f"cannot write audio: {write_failure(exc, tmp)}", path=os.fspath(path)) from exc
    except OSError as exc:                                  # the temporary file, or the rename over *path*
        raise OutputError(f"cannot write audio: {write_failure(exc, path)}", path=os.fspath(path)) from exc


_WAV_LIMIT = 0xFFFFFFFF - (1 << 16)      # RIFF sizes are 32-bit: a WAV holds under 4 GiB (header room kept)
_SAMPLE_BYTES = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4}


def container_for(fmt: str, subtype: str | None, frames: int, channels: int) -> str:
    """*fmt*, or RF64 (WAV with 64-bit sizes, EBU Tech 3306) where a WAV of *frames* frames would pass
    4 GiB: libsndfile stops writing a plain WAV there without an error (a 20-hour book ended at 12.4 h)."""
    if fmt == "WAV" and frames * channels * _SAMPLE_BYTES.get(subtype or "", 4) > _WAV_LIMIT:
        return "RF64"
    return fmt


def write_failure(exc: Exception, path: str | os.PathLike[str]) -> str:
    """Why writing *path* failed, in words.

    libsndfile reports a full disk as "System error." and nothing more (measured on a
    64 kB tmpfs: ``LibsndfileError(2)``), so a write that fails with the file system
    (nearly) full is named for what it is.
    """
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    try:
        if shutil.disk_usage(os.path.dirname(os.path.realpath(path))).free < _NEARLY_FULL:
            return os.strerror(errno.ENOSPC)
        if _at_size_limit(path):
            return os.strerror(errno.EFBIG)
    except OSError:
        pass
    return str(exc)


def _at_size_limit(path: str | os.PathLike[str]) -> bool:
    """Whether *path* has grown to the largest file this process may write (``ulimit -f``)."""
    try:
        import resource
    except ImportError:     # not POSIX
        return False
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    return soft != resource.RLIM_INFINITY and os.stat(path).st_size + _NEARLY_FULL >= soft
