"""The block writer: the bytes of a whole-buffer write, every format, streams on a pipe, constant memory,
and the block-wise measurement of a written file.

References: files written whole by ``audio.quantize`` + ``audio.write`` / PyAV's AAC encoder; decoding by
soundfile and, independently of libsndfile, by PyAV (FFmpeg); loudness by pyloudnorm and by
``loudness.integrated_loudness`` / ``true_peak_db`` on the whole decoded buffer.
"""

from __future__ import annotations

import filecmp
import gc
import io
import os
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from dialog_tts.errors import InputError
from dialog_tts.finish import loudness
from dialog_tts.finish.timeline import ChapterMark
from dialog_tts.io import audio, mp4
from dialog_tts.io.writers import STREAMABLE, StreamMeter, measure_file, open_writer, wav_stream_header
from dialog_tts.render import specs

SIZES = (1, 4097, 12345, 65536, 777)     # blocks of uneven sizes, as a mixer might hand them


def signal(frames: int, channels: int, rate: int, seed: int = 1) -> np.ndarray:
    """Speech-like test audio: noise under a slow envelope, with a stretch of digital silence."""
    rng = np.random.default_rng(seed)
    shape = (frames,) if channels == 1 else (frames, channels)
    x = rng.standard_normal(shape).astype(np.float32) * np.float32(0.1)
    envelope = (0.55 + 0.45 * np.sin(np.arange(frames) * (2 * np.pi / rate))).astype(np.float32)
    x *= envelope if channels == 1 else envelope[:, None]
    x[frames // 5:frames // 5 + rate // 2] = 0
    return np.clip(x, -0.9, 0.9)


def blocks(x: np.ndarray, sizes=SIZES):
    start, i = 0, 0
    while start < x.shape[0]:
        yield x[start:start + sizes[i % len(sizes)]]
        start += sizes[i % len(sizes)]
        i += 1


def write_blocks(target, suffix, x, rate, **options):
    with open_writer(target, suffix, rate, 1 if x.ndim == 1 else x.shape[1], **options) as writer:
        for block in blocks(x):
            writer.write(block)
    assert writer.frames == x.shape[0]


def av_decode(data: bytes) -> tuple[np.ndarray, int]:
    """(samples (n,) or (n, channels), rate) as FFmpeg decodes *data*, whatever sample format it hands out."""
    import av

    parts = []
    with av.open(io.BytesIO(data)) as container:
        rate = container.streams.audio[0].rate
        for frame in container.decode(audio=0):
            channels = len(frame.layout.channels)
            values = frame.to_ndarray()
            parts.append(values.T if frame.format.is_planar else values.reshape(-1, channels))
    x = np.concatenate(parts)
    if x.dtype.kind == "i":                        # FFmpeg's FLAC and PCM decoders hand out the integers
        x = x / np.float32(1 << (8 * x.dtype.itemsize - 1))
    return (x[:, 0] if x.shape[1] == 1 else x).astype(np.float32), int(rate)


@pytest.mark.parametrize(("suffix", "depth"), [(".wav", 16), (".wav", 24), (".wav", None), (".flac", 16),
                                               (".flac", 24)])
def test_a_file_written_in_blocks_has_the_bytes_of_the_whole_buffer_written_at_once(tmp_path, suffix, depth):
    rate = 8000
    x = signal(audio.WRITE_BLOCK + 54321, 2, rate)      # quantize's own blocks end inside the mix
    whole = x.copy()
    if depth:
        audio.quantize(whole, depth)
    audio.write(tmp_path / f"whole{suffix}", whole, rate, "32f" if depth is None else str(depth))
    write_blocks(tmp_path / f"blocks{suffix}", suffix, x, rate, bit_depth=depth)
    if suffix == ".wav" and depth is None:      # libsndfile's PEAK chunk of a float WAV holds the second it was written
        assert without_peak_time(tmp_path / f"whole{suffix}") == without_peak_time(tmp_path / f"blocks{suffix}")
        return
    assert filecmp.cmp(tmp_path / f"whole{suffix}", tmp_path / f"blocks{suffix}", shallow=False)


def without_peak_time(path) -> bytes:
    """The file's bytes with the timestamp of its PEAK chunk (version, then timestamp, 4 bytes each) zeroed."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PEAK")
    assert at > 0
    data[at + 12:at + 16] = bytes(4)
    return bytes(data)


def aac_whole(path, x: np.ndarray, rate: int, chapters) -> None:
    """The reference: *x* encoded whole, as one frame, by PyAV's AAC encoder at the writer's bitrate."""
    from fractions import Fraction

    import av

    layout = "mono" if x.ndim == 1 else "stereo"
    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=rate, layout=layout)
        stream.bit_rate = mp4.DEFAULT_BITRATE
        if chapters:
            container.set_chapters([{"id": i + 1, "start": c.start, "end": c.end, "time_base": Fraction(1, rate),
                                     "metadata": {"title": c.title}} for i, c in enumerate(chapters)])
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T if x.ndim == 2 else x[None, :]),
                                           format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".m4b"])
def test_every_format_decodes_to_what_the_whole_buffer_write_gives(tmp_path, suffix, channels):
    rate = 22050                                     # not an Opus rate: .opus is resampled to 48 kHz
    x = signal(3 * rate + 123, channels, rate)
    chapters = [ChapterMark("One", 0, rate, 1), ChapterMark("Two", rate, x.shape[0], 3)] if suffix == ".m4b" else ()
    depth = 16 if suffix in specs.PCM_SUBTYPES else None
    write_blocks(tmp_path / f"blocks{suffix}", suffix, x, rate, chapters=chapters, bit_depth=depth)
    if suffix in mp4.FORMATS:
        aac_whole(tmp_path / f"whole{suffix}", x, rate, chapters)
        got, want = mp4.decode(tmp_path / f"blocks{suffix}"), mp4.decode(tmp_path / f"whole{suffix}")
        assert got[1] == rate and got[0].shape[0] >= x.shape[0]       # AAC adds its priming and padding
        np.testing.assert_array_equal(got[0], want[0])
        return
    whole, out_rate = (audio.resample(x, rate, 48000), 48000) if suffix == ".opus" else (x.copy(), rate)
    if suffix in specs.PCM_SUBTYPES:
        audio.quantize(whole, 16)
    audio.write(tmp_path / f"whole{suffix}", whole, out_rate)
    got, got_rate = sf.read(tmp_path / f"blocks{suffix}", dtype="float32")
    assert got_rate == out_rate and got.shape == whole.shape
    want = whole if suffix in specs.PCM_SUBTYPES else sf.read(tmp_path / f"whole{suffix}", dtype="float32")[0]
    np.testing.assert_array_equal(got, want)


def test_the_m4b_keeps_its_chapters(tmp_path):
    from mutagen.mp4 import MP4

    rate = 16000
    x = signal(4 * rate, 1, rate)
    marks = [ChapterMark("Opening", 0, 2 * rate, 1), ChapterMark("Close", 2 * rate, 4 * rate, 5)]
    write_blocks(tmp_path / "book.m4b", ".m4b", x, rate, chapters=marks)
    chapters = MP4(tmp_path / "book.m4b").chapters
    assert [c.title for c in chapters] == ["Opening", "Close"]
    assert [round(c.start, 3) for c in chapters] == [0.0, 2.0]


def test_wav_on_stdout_is_a_stream_of_unknown_length_that_decodes_to_the_samples(tmp_path):
    rate = 16000
    code = ("import sys, numpy as np\n"
            "from dialog_tts.io.writers import open_writer\n"
            "from test_blockwrite import blocks, signal\n"
            f"x = signal({5 * rate + 7}, 2, {rate})\n"
            f"with open_writer('-', '.wav', {rate}, 2, bit_depth=16) as w:\n"
            "    for b in blocks(x):\n"
            "        w.write(b)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])}
    data = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, env=env).stdout
    assert data[:44] == wav_stream_header(rate, 2, "PCM_16")
    assert data[4:8] == data[40:44] == b"\xff\xff\xff\xff"
    want = signal(5 * rate + 7, 2, rate)
    audio.quantize(want, 16)
    got, got_rate = sf.read(io.BytesIO(data), dtype="float32")
    assert got_rate == rate
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(av_decode(data)[0], want)


def piped(suffix: str, x: np.ndarray, rate: int, **options) -> bytes:
    """What the writer sends down a real pipe (read by a thread, as a consumer process would)."""
    read_end, write_end = os.pipe()
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(read_end, 1 << 16), b"")))
    reader.start()
    try:
        with os.fdopen(write_end, "wb") as stream:
            write_blocks(stream, suffix, x, rate, **options)
    finally:
        reader.join()
        os.close(read_end)
    return b"".join(chunks)


@pytest.mark.parametrize(("suffix", "depth"), [(".wav", 24), (".wav", None), (".flac", 16), (".flac", 24)])
def test_lossless_formats_stream_through_a_pipe_to_the_exact_samples(suffix, depth):
    rate = 24000
    x = signal(2 * rate + 5, 2, rate)
    want = x.copy()
    if depth:
        audio.quantize(want, depth)
    data = piped(suffix, x, rate, bit_depth=depth)
    got, got_rate = av_decode(data)
    assert got_rate == rate
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("suffix", [".ogg", ".opus", ".mp3"])
def test_lossy_formats_stream_through_a_pipe_to_what_the_file_holds(tmp_path, suffix):
    rate = 48000
    x = signal(2 * rate + 5, 2, rate)
    data = piped(suffix, x, rate)
    write_blocks(tmp_path / f"file{suffix}", suffix, x, rate)
    want, _ = av_decode((tmp_path / f"file{suffix}").read_bytes())
    got, got_rate = av_decode(data)
    assert got_rate == rate
    if suffix == ".mp3":     # a plain MP3 stream: no Xing frame tells the decoder to drop the codec delay
        assert data[:3] != b"ID3" and b"Xing" not in data[:512] and b"Info" not in data[:512]
        got = got[audio.MP3_STREAM_DELAY:audio.MP3_STREAM_DELAY + want.shape[0]]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("suffix", [".m4a", ".m4b"])
def test_mp4_to_a_pipe_is_a_usage_error_naming_the_formats_that_stream(suffix):
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb") as stream, pytest.raises(InputError) as err:
            open_writer(stream, suffix, 16000, 1)
    finally:
        os.close(read_end)
    assert err.value.exit_code == 2
    assert "cannot be streamed" in str(err.value) and all(s in str(err.value) for s in STREAMABLE)


def test_a_bit_depth_the_format_cannot_hold_is_a_usage_error(tmp_path):
    with pytest.raises(InputError, match="cannot hold float"):
        open_writer(tmp_path / "a.flac", ".flac", 16000, 1)
    with pytest.raises(InputError, match="bit depth applies to .wav and .flac"):
        open_writer(tmp_path / "a.mp3", ".mp3", 16000, 1, bit_depth=16)
    with pytest.raises(InputError, match="cannot write .aiff"):
        open_writer(tmp_path / "a.aiff", ".aiff", 16000, 1)


def peak_while_writing(path, suffix: str, minutes: int, depth: int | None) -> int:
    rate = 8000
    block = signal(rate, 1, rate)                    # one second, written again and again
    gc.collect()
    tracemalloc.start()
    try:
        with open_writer(path, suffix, rate, 1, bit_depth=depth) as writer:
            for _ in range(minutes * 60):
                writer.write(block)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# minutes at 8 kHz, short and three times as long; the slower encoders (AAC, Vorbis) get shorter files, still
# longer than Vorbis's block of audio.WRITE_BLOCK frames (131 s), and long enough that holding the extra
# samples (4 bytes each) would show as more than the 5 MB allowed
@pytest.mark.parametrize(("suffix", "depth", "minutes"), [(".wav", 16, 10), (".flac", 24, 10), (".ogg", None, 3),
                                                          (".m4b", None, 3)])
def test_writing_takes_the_same_memory_however_long_the_file(tmp_path, suffix, depth, minutes):
    short = peak_while_writing(tmp_path / f"short{suffix}", suffix, minutes, depth)
    long = peak_while_writing(tmp_path / f"long{suffix}", suffix, 3 * minutes, depth)
    assert long - short < 5_000_000, (short, long)
    assert long < 12_000_000, long                   # Vorbis's block of audio.WRITE_BLOCK frames is the most


def test_measuring_takes_the_same_memory_for_3_and_9_minutes(tmp_path):
    peak_while_writing(tmp_path / "warm.wav", ".wav", 1, 16)
    measure_file(tmp_path / "warm.wav")              # imports (scipy.signal, soxr) done before counting
    peaks = []
    for minutes in (3, 9):
        path = tmp_path / f"{minutes}.wav"
        peak_while_writing(path, ".wav", minutes, 16)
        gc.collect()
        tracemalloc.start()
        try:
            measure_file(path)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] - peaks[0] < 1_000_000, peaks    # the 6 minutes more are 11.5 MB as float32
    assert peaks[1] < 12_000_000, peaks              # a block of 65536 frames, oversampled 24x at 8 kHz


@pytest.mark.parametrize(("suffix", "rate", "channels"), [(".wav", 48000, 2), (".flac", 24000, 1), (".mp3", 44100, 2),
                                                          (".opus", 48000, 1), (".m4a", 22050, 2)])
def test_measure_file_reads_what_the_whole_decoded_buffer_reads(tmp_path, suffix, rate, channels):
    import pyloudnorm

    x = signal(7 * rate + 321, channels, rate) * np.float32(2.0)     # peaks near full scale: the limiter's case
    path = tmp_path / f"out{suffix}"
    write_blocks(path, suffix, x, rate, bit_depth=16 if suffix in specs.PCM_SUBTYPES else None)
    if suffix in mp4.FORMATS:
        samples, got_rate = mp4.decode(path)
    else:
        clip = audio.decode(path.read_bytes())
        samples, got_rate = clip.samples, clip.sample_rate
    lufs, peak = measure_file(path)
    assert lufs == pytest.approx(loudness.integrated_loudness(samples, got_rate), abs=0.01)
    assert lufs == pytest.approx(pyloudnorm.Meter(got_rate).integrated_loudness(samples.astype(np.float64)), abs=0.01)
    assert peak == pytest.approx(loudness.true_peak_db(samples, got_rate), abs=0.02)


@pytest.mark.parametrize("sizes", [(2400,), (1, 2399, 4800, 7), (65536,)])
def test_the_meter_gives_the_same_figures_however_the_audio_is_cut(sizes):
    rate = 24000                                     # 2400 frames: blocks that end exactly on a 100 ms edge
    x = signal(5 * rate + 1234, 2, rate)
    meter = StreamMeter(rate, 2)
    for block in blocks(x, sizes):
        meter.add(block)
    lufs, peak = meter.result()
    assert lufs == pytest.approx(loudness.integrated_loudness(x, rate), abs=1e-6)
    assert peak == pytest.approx(loudness.true_peak_db(x, rate), abs=0.02)


def test_the_meter_gives_no_loudness_under_400_ms():
    meter = StreamMeter(16000, 1)
    meter.add(signal(6000, 1, 16000))
    lufs, peak = meter.result()
    assert lufs is None and peak < 0


def test_a_wav_too_big_for_32_bit_sizes_is_written_as_rf64(tmp_path):
    """A plain WAV stops at 4 GiB (libsndfile stopped a 20-hour book at 12.4 hours, silently): a WAV
    announced beyond that is RF64, which soundfile and ffmpeg read back."""
    assert audio.container_for("WAV", "PCM_16", 2**29, 2) == "WAV"                # 2 GiB
    assert audio.container_for("WAV", "PCM_16", 20 * 3600 * 24000, 2) == "RF64"   # 6.9 GB
    assert audio.container_for("FLAC", "PCM_16", 20 * 3600 * 24000, 2) == "FLAC"
    x = signal(24000, 2, 24000)
    path = tmp_path / "book.wav"
    with open_writer(path, ".wav", 24000, 2, bit_depth=24, frames=20 * 3600 * 24000) as writer:
        writer.write(x)
    info = sf.info(path)
    assert info.format == "RF64" and info.frames == 24000
    assert np.abs(sf.read(path, dtype="float32")[0] - x).max() < 2 ** -22


@pytest.mark.parametrize("bits", [16, 24])
def test_the_quantizers_integers_are_its_rounded_samples_as_soundfile_takes_them(bits):
    """Quantizer.pcm (what the writers hand soundfile) gives pcm_block of the samples that quantize
    rounds, block after block, with silence left undithered; the block handed in is left as it is."""
    x = signal(3 * 24000 + 11, 2, 24000)
    x[1000:3000] = 0.0
    x[5000] = [1.5, -1.5]                     # clipped to the grid's ends
    want = x.copy()
    audio.quantize(want, bits)
    subtype = f"PCM_{bits}"
    quantizer, kept = audio.Quantizer(bits), x.copy()
    got = np.concatenate([quantizer.pcm(b) for b in blocks(x)])
    np.testing.assert_array_equal(x, kept)
    np.testing.assert_array_equal(got, audio.pcm_block(want, subtype))
    assert got.dtype == (np.int16 if bits == 16 else np.int32)
    top = 1 << (bits - 1)
    shift = 32 - bits if bits == 24 else 0
    assert not got[1000:3000].any()
    assert got[5000].tolist() == [(top - 1) << shift, -top << shift]


@pytest.mark.parametrize("channels", [1, 2])
def test_the_dither_is_numpys_32_bit_draws_however_the_blocks_are_cut(channels):
    """16-bit output adds TPDF dither from NumPy's ``integers(0, 2**32, dtype=uint32)`` draws of a
    generator seeded with 0 (the low 16 bits less the high 16 bits, over 65536), read in one run however
    the blocks are cut, odd lengths included (NumPy keeps half a raw draw for the next call)."""
    rng = np.random.default_rng(8)
    x = (0.2 * rng.standard_normal((24000, channels))).astype(np.float32)
    x = x[:, 0].copy() if channels == 1 else x
    x[100:900] = 0.0
    r = np.random.default_rng(0).integers(0, 1 << 32, size=x.shape, dtype=np.uint32).astype(np.int64)
    dither = ((r & 0xFFFF) - (r >> 16)).astype(np.float32) / np.float32(65536)
    dither[x == 0] = 0.0
    want = np.clip(np.rint(x * np.float32(32768) + dither), -32768, 32767).astype(np.int16)
    quantizer, parts, at = audio.Quantizer(16), [], 0
    for size in (1, 3, 2, 777, 4096, 5, 10**9):
        parts.append(quantizer.pcm(x[at:at + size]))
        at += size
    np.testing.assert_array_equal(np.concatenate(parts), want)


@pytest.mark.parametrize(("fmt", "subtype"), [("FLAC", "PCM_24"), ("WAV", "PCM_16"), ("OGG", "VORBIS"), ("MP3", None)])
def test_decoding_bytes_gives_what_soundfile_reads_from_them_and_leaves_no_descriptor(fmt, subtype):
    """audio.decode hands libsndfile FLAC and WAV as an in-memory file (memfd) rather than through Python
    calls: the samples, rate and sentence marks are soundfile's reading of the same bytes through a BytesIO,
    bit for bit, and no descriptor stays open."""
    rng = np.random.default_rng(5)
    samples = (rng.standard_normal(30000) * 0.1).astype(np.float32)
    if fmt == "FLAC":
        data = audio.encode_flac(audio.Clip(samples, 22050, (0, 1000, 12000)))
    else:
        buffer = io.BytesIO()
        sf.write(buffer, samples, 24000, format=fmt, subtype=subtype)
        data = buffer.getvalue()
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    clip = audio.decode(data)
    with sf.SoundFile(io.BytesIO(data)) as f:        # soundfile reading the bytes through Python calls
        expected, rate = f.read(dtype="float32"), f.samplerate
    assert clip.sample_rate == rate
    np.testing.assert_array_equal(clip.samples, expected)
    assert clip.marks == ((0, 1000, 12000) if fmt == "FLAC" else ())
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds


DECODE_UNDER_A_FILE_LIMIT = """
import io, resource, signal, sys
import numpy as np, soundfile as sf
from dialog_tts.io import audio
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
data = sys.stdin.buffer.read()
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))     # the in-memory file cannot hold the clip
clip = audio.decode(data)
with sf.SoundFile(io.BytesIO(data)) as f:
    expected = f.read(dtype="float32")
print(np.array_equal(clip.samples, expected), clip.marks)
"""


def test_a_clip_decodes_where_no_in_memory_file_can_hold_it():
    """Under a ``ulimit -f`` smaller than the clip, the memfd cannot be filled: decode reads the bytes
    through a BytesIO instead, with the same samples (in a child process, which the limit then binds)."""
    samples = (np.random.default_rng(6).standard_normal(40000) * 0.1).astype(np.float32)
    data = audio.encode_flac(audio.Clip(samples, 24000, (0, 5000)))
    assert len(data) > 4096
    done = subprocess.run([sys.executable, "-c", DECODE_UNDER_A_FILE_LIMIT], input=data, capture_output=True,
                          check=True, timeout=120)
    assert done.stdout.decode().split() == ["True", "(0,", "5000)"]
