"""A local stand-in for Microsoft Edge's read-aloud websocket service, for tests.

It speaks the wire protocol the real ``edge_tts`` client (7.3.1) expects, answers with real
MP3 audio (24 kHz mono, 48 kbit/s CBR, no Xing/Info frame, like the service) and can inject
the failures the real service shows (HTTP 403/429/503 on the handshake, dropped connections,
stalls, malformed frames).  Plain classes and functions only, no pytest fixtures::

    server = EdgeServer(latency=0.05).start()
    point_client_at(monkeypatch, server)       # patches edge_tts.communicate.WSS_URL, proxies
    ...
    server.stop()

The audio for a request is a deterministic tone (see :func:`render`): a short lead silence,
then one tone segment per sentence (0.055 s per character at rate +0%, at least 0.3 s)
separated by gaps of silence, then a short tail.  The tone frequency depends on the text and
the voice (so lines played in the wrong order are detectable), the pitch shifts it, the
volume scales it and the rate shortens or lengthens it.  :func:`expected_audio` returns the
exact samples the server encodes; decoding what the client received with
:func:`decode_mp3` gives them back (lossily) after the 1105-sample MP3 delay is dropped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import functools
import io
import json
import re
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Union
from xml.sax.saxutils import escape, unescape

import numpy as np
import soundfile as sf
from aiohttp import WSCloseCode, WSMsgType, web

# --------------------------------------------------------------------------- constants

SAMPLE_RATE = 24_000
TICKS_PER_SECOND = 10_000_000
MP3_BITRATE = 48_000  # what the service sends ("audio-24khz-48kbitrate-mono-mp3")
MP3_FRAME_SAMPLES = 576  # MPEG-2 layer III at 24 kHz
MP3_FRAME_BYTES = 144  # 72 * 48000 / 24000, no padding at 24 kHz
ENCODER_DELAY = 1105  # samples of delay at the start of the decoded stream (LAME + decoder)
AUDIO_CHUNK_BYTES = 4096  # at most this much MP3 per binary websocket frame (whole MP3 frames)

SECONDS_PER_CHAR = 0.055
MIN_SENTENCE_SECONDS = 0.3
LEAD_SECONDS = 0.1
GAP_SECONDS = 0.15
TAIL_SECONDS = 0.1
RAMP_SECONDS = 0.01
BASE_AMPLITUDE = 0.5
MAX_AMPLITUDE = 0.9

PATH = "/consumer/speech/synthesize/readaloud/edge/v1"

HANDSHAKE_FAULTS = frozenset({"403_once", "403", "429", "503"})
STREAM_FAULTS = frozenset({"drop_before_audio", "drop_mid_stream", "stall", "malformed"})
FAULT_MODES = HANDSHAKE_FAULTS | STREAM_FAULTS

PROXY_ENV_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])(?:\s+|$)")
_LONG_VOICE = re.compile(r"^Microsoft Server Speech Text to Speech Voice \(([^,]+),\s*(.+)\)$")

# --------------------------------------------------------------------------- text / SSML


def split_sentences(text: str) -> list[str]:
    """Sentences as the server sees them: split after . ! ? 。！？ followed by space or end."""
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    parts = [p for p in parts if p]
    return parts or [text.strip()]


def short_voice_name(voice: str) -> str:
    """'Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)' -> 'en-US-AriaNeural'.

    Short names are returned unchanged (the client always sends the long form).
    """
    m = _LONG_VOICE.match(voice.strip())
    return f"{m.group(1).strip()}-{m.group(2).strip()}" if m else voice.strip()


def parse_frame(message: str) -> tuple[dict[str, str], str]:
    """Split a text frame 'K:V\\r\\nK:V\\r\\n\\r\\nbody' into (headers, body)."""
    head, _, body = message.partition("\r\n\r\n")
    headers: dict[str, str] = {}
    for line in head.split("\r\n"):
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip()] = value.strip()
    return headers, body


def parse_ssml(ssml: str) -> dict[str, str | None]:
    """voice / rate / pitch / volume / text (XML-unescaped) out of the client's SSML."""
    voice = re.search(r"<voice\s+name\s*=\s*(['\"])(.*?)\1", ssml, re.S)
    prosody = re.search(r"<prosody\b([^>]*)>(.*?)</prosody>", ssml, re.S)
    attrs: dict[str, str] = {}
    if prosody:
        for m in re.finditer(r"(\w+)\s*=\s*(['\"])(.*?)\2", prosody.group(1)):
            attrs[m.group(1)] = m.group(3)
        inner = prosody.group(2)
    else:
        body = re.search(r"<voice\b[^>]*>(.*?)</voice>", ssml, re.S)
        inner = body.group(1) if body else ""
    return {
        "voice": voice.group(2) if voice else None,
        "rate": attrs.get("rate"),
        "pitch": attrs.get("pitch"),
        "volume": attrs.get("volume"),
        "text": unescape(inner),
    }


def _percent(value: str | None) -> float:
    if not value:
        return 0.0
    m = re.fullmatch(r"\s*([+-]?\d+(?:\.\d+)?)\s*%\s*", value)
    return float(m.group(1)) if m else 0.0


def rate_factor(rate: str | None) -> float:
    """'+20%' -> 1.2 (speech is 1.2x faster, so durations are divided by it)."""
    return max(0.1, 1.0 + _percent(rate) / 100.0)


def volume_factor(volume: str | None) -> float:
    """'-10%' -> 0.9."""
    return max(0.0, 1.0 + _percent(volume) / 100.0)


def tone_frequency(text: str, voice: str, pitch: str | None = "+0Hz") -> float:
    """Tone frequency (Hz) of a request: 200..690 Hz from crc32(voice, text), plus the pitch.

    ``voice`` may be short ('en-US-AriaNeural') or the long form the client sends.
    Pitch '+5Hz' adds 5 Hz, '+10%' multiplies by 1.1, '+2st' shifts by semitones.
    """
    key = f"{short_voice_name(voice)}\x00{text}".encode()
    f = 200.0 + 10.0 * (zlib.crc32(key) % 50)
    p = (pitch or "").strip()
    if m := re.fullmatch(r"([+-]?\d+(?:\.\d+)?)Hz", p):
        f += float(m.group(1))
    elif m := re.fullmatch(r"([+-]?\d+(?:\.\d+)?)%", p):
        f *= 1.0 + float(m.group(1)) / 100.0
    elif m := re.fullmatch(r"([+-]?\d+(?:\.\d+)?)st", p):
        f *= 2.0 ** (float(m.group(1)) / 12.0)
    return max(50.0, f)


def samples_to_ticks(n: int) -> int:
    return n * TICKS_PER_SECOND // SAMPLE_RATE


def ticks_to_samples(ticks: int) -> int:
    return round(ticks * SAMPLE_RATE / TICKS_PER_SECOND)


# --------------------------------------------------------------------------- audio plan


@dataclass(frozen=True)
class SentencePlan:
    """One sentence of a request: where its tone lies in the source samples."""

    text: str
    start: int  # first sample of the tone (source samples, 24 kHz)
    length: int  # samples of tone

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def offset_ticks(self) -> int:  # = SentenceBoundary Offset the server sends
        return samples_to_ticks(self.start)

    @property
    def duration_ticks(self) -> int:  # = SentenceBoundary Duration the server sends
        return samples_to_ticks(self.length)


@dataclass(frozen=True, eq=False)
class Rendering:
    """What the server encodes for one request (``samples`` is read-only float32)."""

    text: str
    voice: str
    rate: str
    pitch: str
    volume: str
    frequency: float
    amplitude: float
    sentences: tuple[SentencePlan, ...]
    samples: np.ndarray

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@functools.lru_cache(maxsize=512)
def render(
    text: str,
    voice: str,
    rate: str = "+0%",
    pitch: str = "+0Hz",
    volume: str = "+0%",
) -> Rendering:
    """The deterministic audio the server makes for a request (cached).

    Layout: LEAD_SECONDS silence, then per sentence a tone of
    max(MIN_SENTENCE_SECONDS, SECONDS_PER_CHAR * len(sentence)) / rate_factor(rate) seconds
    (10 ms raised-cosine ramps), GAP_SECONDS of silence between sentences, TAIL_SECONDS at
    the end.  Amplitude BASE_AMPLITUDE * volume_factor(volume) (at most MAX_AMPLITUDE).
    """
    sr = SAMPLE_RATE
    speed = rate_factor(rate)
    freq = tone_frequency(text, voice, pitch)
    amp = min(MAX_AMPLITUDE, BASE_AMPLITUDE * volume_factor(volume))
    lead, gap, tail = (round(s * sr) for s in (LEAD_SECONDS, GAP_SECONDS, TAIL_SECONDS))

    plans: list[SentencePlan] = []
    pos = lead
    for i, sentence in enumerate(split_sentences(text)):
        if i:
            pos += gap
        seconds = max(MIN_SENTENCE_SECONDS, SECONDS_PER_CHAR * len(sentence)) / speed
        n = max(1, round(seconds * sr))
        plans.append(SentencePlan(sentence, pos, n))
        pos += n
    samples = np.zeros(pos + tail, dtype=np.float64)
    ramp_len = round(RAMP_SECONDS * sr)
    for p in plans:
        t = np.arange(p.length) / sr
        tone = amp * np.sin(2.0 * np.pi * freq * t)
        r = min(ramp_len, p.length // 2)
        if r > 0:
            env = 0.5 - 0.5 * np.cos(np.pi * np.arange(r) / r)
            tone[:r] *= env
            tone[p.length - r :] *= env[::-1]
        samples[p.start : p.end] = tone
    out = samples.astype(np.float32)
    out.flags.writeable = False
    return Rendering(text, voice, rate, pitch, volume, freq, amp, tuple(plans), out)


def expected_audio(
    text: str,
    voice: str,
    rate: str = "+0%",
    pitch: str = "+0Hz",
    volume: str = "+0%",
) -> np.ndarray:
    """Exact float32 samples (24 kHz mono) the server encodes for this request (a copy)."""
    return render(text, voice, rate, pitch, volume).samples.copy()


# --------------------------------------------------------------------------- MP3


def _frame_length(header: bytes) -> tuple[int, int] | None:
    """(frame bytes, bitrate bps) of the MPEG audio frame starting with ``header``, or None."""
    if len(header) < 4:
        return None
    h = int.from_bytes(header[:4], "big")
    if (h >> 21) & 0x7FF != 0x7FF:
        return None
    version = (h >> 19) & 3  # 0: MPEG-2.5, 2: MPEG-2, 3: MPEG-1
    layer = (h >> 17) & 3  # 1: layer III
    br_index = (h >> 12) & 15
    sr_index = (h >> 10) & 3
    padding = (h >> 9) & 1
    if version == 1 or layer != 1 or br_index in (0, 15) or sr_index == 3:
        return None
    if version == 3:
        bitrates = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
        rates = (44100, 48000, 32000)
        coef = 144
    else:
        bitrates = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
        rates = (22050, 24000, 16000) if version == 2 else (11025, 12000, 8000)
        coef = 72
    bitrate = bitrates[br_index] * 1000
    return coef * bitrate // rates[sr_index] + padding, bitrate


def mp3_frames(data: bytes) -> list[bytes]:
    """Split an MP3 byte stream into its MPEG frames (skips a leading ID3v2 tag)."""
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        pos = 10 + size
    frames = []
    while pos < len(data):
        info = _frame_length(data[pos : pos + 4])
        if info is None:
            if data[pos : pos + 3] == b"TAG":  # ID3v1 tag at the end
                break
            raise ValueError(f"no MPEG frame header at byte {pos}")
        size, _ = info
        frames.append(data[pos : pos + size])
        pos += size
    return frames


def mp3_bitrates(data: bytes) -> set[int]:
    """The set of bitrates (bps) of the frames of an MP3 stream."""
    return {_frame_length(f[:4])[1] for f in mp3_frames(data)}  # type: ignore[index]


def strip_info_frame(data: bytes) -> bytes:
    """Drop ID3 tags and a leading Xing/Info (LAME) frame: a raw frame stream like Edge's."""
    frames = mp3_frames(data)
    if frames and (b"Xing" in frames[0] or b"Info" in frames[0]):
        frames = frames[1:]
    return b"".join(frames)


def encode_mp3(samples: np.ndarray) -> bytes:
    """24 kHz mono float samples -> raw 48 kbit/s CBR MP3 frames, no Xing/Info frame.

    Decoding the result with ``sf.read`` gives ENCODER_DELAY (1105) samples of delay first.
    """
    buf = io.BytesIO()
    # compression_level 0.75 with CONSTANT bitrate is LAME at 48 kbit/s for 24 kHz mono in
    # libsndfile 1.2.2.  At that bitrate LAME writes no Info frame; strip one if it does.
    sf.write(
        buf,
        np.asarray(samples, dtype=np.float32),
        SAMPLE_RATE,
        format="MP3",
        compression_level=0.75,
        bitrate_mode="CONSTANT",
    )
    return strip_info_frame(buf.getvalue())


def decode_mp3(data: bytes, drop_delay: bool = True) -> np.ndarray:
    """Decode MP3 bytes (as received by the client) to float32; drop the 1105-sample delay."""
    y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    assert sr == SAMPLE_RATE, sr
    if y.ndim > 1:
        y = y.mean(axis=1)
    return y[ENCODER_DELAY:] if drop_delay else y


@functools.lru_cache(maxsize=256)
def encoded(
    text: str,
    voice: str,
    rate: str = "+0%",
    pitch: str = "+0Hz",
    volume: str = "+0%",
) -> tuple[Rendering, tuple[bytes, ...], tuple[int, ...]]:
    """(rendering, MP3 frames, cuts) for a request, as the server sends it (cached).

    Sentence ``i`` is sent as ``frames[cuts[i]:cuts[i + 1]]`` (``cuts[0] == 0``,
    ``cuts[-1] == len(frames)``): each cut is the frame boundary nearest the middle of the
    silence before the sentence, in decoded (delayed) samples.
    """
    r = render(text, voice, rate, pitch, volume)
    frames = tuple(mp3_frames(encode_mp3(r.samples)))
    cuts = [0]
    for prev, cur in zip(r.sentences, r.sentences[1:]):
        middle = (prev.end + cur.start) / 2 + ENCODER_DELAY
        cuts.append(min(len(frames), max(cuts[-1], round(middle / MP3_FRAME_SAMPLES))))
    cuts.append(len(frames))
    return r, frames, tuple(cuts)


def chunk_frames(frames: Iterable[bytes], limit: int = AUDIO_CHUNK_BYTES) -> list[bytes]:
    """Pack whole MP3 frames into payloads of at most ``limit`` bytes (at least one frame)."""
    chunks: list[bytes] = []
    cur = b""
    for f in frames:
        if cur and len(cur) + len(f) > limit:
            chunks.append(cur)
            cur = b""
        cur += f
    if cur:
        chunks.append(cur)
    return chunks


# --------------------------------------------------------------------------- wire format


def text_message(request_id: str, path: str, body: str) -> str:
    return (
        f"X-RequestId:{request_id}\r\n"
        "Content-Type:application/json; charset=utf-8\r\n"
        f"Path:{path}\r\n\r\n"
        f"{body}"
    )


def audio_message(request_id: str, stream_id: str, payload: bytes, content_type: bool = True) -> bytes:
    """Binary frame: 2-byte big-endian header length + header (ends in CRLF) + MP3 bytes."""
    header = (
        f"X-RequestId:{request_id}\r\n"
        + ("Content-Type:audio/mpeg\r\n" if content_type else "")
        + f"X-StreamId:{stream_id}\r\n"
        "Path:audio\r\n"
    ).encode("ascii")
    return len(header).to_bytes(2, "big") + header + payload


def boundary_metadata(kind: str, offset: int, duration: int, text: str) -> str:
    data = {
        "Offset": offset,
        "Duration": duration,
        "text": {"Text": escape(text), "Length": len(text), "BoundaryType": kind},
    }
    return json.dumps({"Metadata": [{"Type": kind, "Data": data}]}, ensure_ascii=False)


def _metadata_for(sentence: SentencePlan, kind: str) -> list[str]:
    if kind == "SentenceBoundary":
        return [boundary_metadata(kind, sentence.offset_ticks, sentence.duration_ticks, sentence.text)]
    # WordBoundary: the sentence's tone is shared among its words by character count.
    words = sentence.text.split() or [sentence.text]
    total = sum(len(w) for w in words) or 1
    out, pos = [], sentence.start
    for w in words:
        n = round(sentence.length * len(w) / total)
        out.append(boundary_metadata(kind, samples_to_ticks(pos), samples_to_ticks(n), w))
        pos += n
    return out


# --------------------------------------------------------------------------- server


@dataclass
class EdgeRequest:
    """One connection to the server (a 403'd handshake and its retry are two of these)."""

    index: int  # 0-based connection order
    connection_id: str | None  # ConnectionId query parameter the client sent
    query: dict[str, str]
    fault: str | None = None  # fault mode applied (None = normal)
    text: str | None = None  # XML-unescaped text (None if rejected at the handshake)
    voice: str | None = None  # as sent: 'Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)'
    short_voice: str | None = None  # 'en-US-AriaNeural'
    rate: str | None = None  # exactly as sent, e.g. '+20%'
    pitch: str | None = None  # e.g. '+5Hz'
    volume: str | None = None  # e.g. '-10%'
    request_id: str | None = None  # X-RequestId of the ssml frame (echoed in the answer)
    boundary: str | None = None  # 'SentenceBoundary' or 'WordBoundary' (from speech.config)
    output_format: str | None = None
    ssml: str | None = None
    started: float = field(default_factory=time.monotonic)  # handshake arrived
    answered: float | None = None  # turn.start sent (after the latency)
    finished: float | None = None  # answer done (turn.end sent, dropped, ...)
    audio_bytes: int = 0  # MP3 bytes sent
    completed: bool = False  # turn.end was sent
    # 'pending', 'ok', 'rejected' (HTTP error), 'fault' (ws-level fault done), 'stalled',
    # 'unknown_voice', 'client_gone', 'cancelled' (by stop()), 'error'
    status: str = "pending"


_UNSET = object()


class EdgeServer:
    """Local Edge read-aloud websocket server on 127.0.0.1, run in a background thread.

    Args:
        latency: seconds (float) or ``callable(text) -> seconds`` to wait before answering
            each request (asyncio.sleep, after the SSML arrives; MP3 encoding overlaps it).
        faults: initial FIFO list of fault modes (see FAULT_MODES; None = normal), one
            consumed per connection, at the handshake.
        fault_for: ``callable(request_index, text) -> mode or None``, consulted for
            connections when ``faults`` is empty.  It is first called at the handshake
            with ``text=None`` (the text is not known yet): a mode returned there is
            applied.  If it returned None it is called once more with the text when the
            SSML has arrived; only websocket-level modes (STREAM_FAULTS) can be applied
            then (a handshake mode returned with a text is recorded in ``errors`` and the
            connection is closed without audio).
        voices: optional collection of short voice names; a request for another voice gets
            turn.start/response and then a close without audio (NoAudioReceived), like the
            service does for unknown voices.
    """

    def __init__(
        self,
        latency: Union[float, Callable[[str], float]] = 0.0,
        faults: Iterable[str | None] | None = None,
        fault_for: Callable[[int, str | None], str | None] | None = None,
        voices: Iterable[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.latency = latency
        self.faults: list[str | None] = list(faults or [])
        for mode in self.faults:
            _check_mode(mode)
        self.fault_for = fault_for
        self.voices = set(voices) if voices is not None else None
        self.host = host
        self.port: int | None = None
        self._lock = threading.Lock()
        self._requests: list[EdgeRequest] = []
        self._errors: list[str] = []
        self._active = 0
        self._max_concurrent = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stopping = False
        self._startup_error: BaseException | None = None
        self.leftover_tasks = 0  # tasks stop() had to cancel after the web runner's cleanup

    # ---------------------------------------------------------------- public state

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("EdgeServer is not started")
        return f"ws://{self.host}:{self.port}{PATH}?TrustedClientToken=test"

    @property
    def requests(self) -> list[EdgeRequest]:
        """Snapshot (a new list) of all connections so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        """Internal server errors (should stay empty)."""
        with self._lock:
            return list(self._errors)

    @property
    def max_concurrent(self) -> int:
        """Most requests being answered at once (from SSML received to answer finished)."""
        with self._lock:
            return self._max_concurrent

    @property
    def active(self) -> int:
        with self._lock:
            return self._active

    def served_texts(self) -> list[str]:
        """Texts of the requests answered completely (turn.end sent), in arrival order."""
        return [r.text for r in self.requests if r.completed and r.text is not None]

    def reset(self) -> None:
        """Forget requests, errors and max_concurrent; clear pending faults."""
        with self._lock:
            self._requests.clear()
            self._errors.clear()
            self._max_concurrent = self._active
            self.faults.clear()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> EdgeServer:
        if self._thread is not None:
            raise RuntimeError("EdgeServer already started")
        self._stopping = False
        self._executor = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="EdgeServer-mp3")
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="EdgeServer", daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._startup_error is not None:
            err = self._startup_error
            self._thread.join(5)
            self._thread = None
            self._executor.shutdown(wait=True)
            raise RuntimeError("EdgeServer failed to start") from err
        return self

    def stop(self) -> None:
        """Cancel pending handlers (stalls included), close the server, end the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            if loop.is_running():
                fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
                fut.result(timeout=10)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
            self._thread = None
            self._executor = None
            self.port = None

    def __enter__(self) -> EdgeServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup())
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self._startup_error = e
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _setup(self) -> None:
        app = web.Application()
        app.router.add_get(PATH, self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]     # (host, port) of the site's one socket

    async def _shutdown(self) -> None:
        self._stopping = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        me = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not me]
        self.leftover_tasks = len(others)
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    # ---------------------------------------------------------------- handling

    def _error(self, rec: EdgeRequest | None, message: str) -> None:
        with self._lock:
            self._errors.append(message if rec is None else f"request {rec.index}: {message}")

    def _ask_fault_for(self, rec: EdgeRequest, text: str | None) -> str | None:
        if self.fault_for is None:
            return None
        try:
            return self.fault_for(rec.index, text)
        except Exception as e:  # noqa: BLE001
            self._error(rec, f"fault_for raised {e!r}")
            return None

    def _latency_for(self, rec: EdgeRequest, text: str) -> float:
        try:
            value = self.latency(text) if callable(self.latency) else self.latency
            return max(0.0, float(value or 0.0))
        except Exception as e:  # noqa: BLE001
            self._error(rec, f"latency raised {e!r}")
            return 0.0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            rec = EdgeRequest(len(self._requests), request.query.get("ConnectionId"), dict(request.query))
            self._requests.append(rec)
            mode: Any = self.faults.pop(0) if self.faults else _UNSET
        ask_again = False
        if mode is _UNSET:
            mode = self._ask_fault_for(rec, None)
            ask_again = mode is None and self.fault_for is not None
        if mode is not None and mode not in FAULT_MODES:
            self._error(rec, f"unknown fault mode {mode!r}")
            rec.fault, rec.status, rec.finished = mode, "error", time.monotonic()
            return web.Response(status=500, text=f"unknown fault mode {mode!r}")
        if mode in HANDSHAKE_FAULTS:
            status = 403 if mode.startswith("403") else int(mode)
            rec.fault, rec.status, rec.finished = mode, "rejected", time.monotonic()
            headers = {"Date": email.utils.formatdate(usegmt=True)}
            if status == 429:
                headers["Retry-After"] = "1"
            return web.Response(status=status, text=f"{status} from EdgeServer", headers=headers)

        ws = web.WebSocketResponse(compress=True, timeout=1.0)
        if not ws.can_prepare(request).ok:
            rec.status, rec.finished = "error", time.monotonic()
            return web.Response(status=400, text="websocket expected")
        await ws.prepare(request)
        inner = asyncio.ensure_future(self._serve(ws, rec, mode, ask_again))
        self._tasks.add(inner)
        try:
            await inner
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not inner.cancelled() or (me is not None and me.cancelling()):
                raise
            rec.status = "cancelled"
        finally:
            self._tasks.discard(inner)
            if rec.finished is None:
                rec.finished = time.monotonic()
        if not ws.closed:
            try:
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), 0.5)
            except (asyncio.TimeoutError, ConnectionError):
                pass
        return ws

    async def _serve(self, ws: web.WebSocketResponse, rec: EdgeRequest, mode: str | None, ask_again: bool) -> None:
        # 1. speech.config, then ssml
        ssml_headers: dict[str, str] | None = None
        ssml = ""
        while ssml_headers is None:
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                rec.status = "client_gone"
                return
            if msg.type != WSMsgType.TEXT:
                continue
            headers, body = parse_frame(msg.data)
            path = headers.get("Path")
            if path == "speech.config":
                try:
                    options = json.loads(body)["context"]["synthesis"]["audio"]
                    meta = options.get("metadataoptions", {})
                    word = str(meta.get("wordBoundaryEnabled", "false")).lower() == "true"
                    rec.boundary = "WordBoundary" if word else "SentenceBoundary"
                    rec.output_format = options.get("outputFormat")
                except (ValueError, KeyError, TypeError, AttributeError) as e:
                    self._error(rec, f"bad speech.config: {e!r}")
            elif path == "ssml":
                ssml_headers, ssml = headers, body
            else:
                self._error(rec, f"unexpected text frame path {path!r}")

        parsed = parse_ssml(ssml)
        text = parsed["text"] or ""
        rec.ssml, rec.text, rec.voice = ssml, text, parsed["voice"]
        rec.short_voice = short_voice_name(parsed["voice"] or "")
        rec.rate, rec.pitch, rec.volume = parsed["rate"], parsed["pitch"], parsed["volume"]
        rec.request_id = ssml_headers.get("X-RequestId")
        rec.boundary = rec.boundary or "SentenceBoundary"
        if ask_again:
            mode = self._ask_fault_for(rec, text)
            if mode is not None and mode not in STREAM_FAULTS:
                self._error(rec, f"fault_for returned {mode!r} after the handshake")
                rec.fault, rec.status = mode, "error"
                return
        rec.fault = mode

        with self._lock:
            self._active += 1
            self._max_concurrent = max(self._max_concurrent, self._active)
        try:
            done = await self._answer(ws, rec, mode, text)
        except ConnectionError:
            rec.status = "client_gone"
            done = False
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            self._error(rec, f"handler failed: {e!r}")
            rec.status = "error"
            done = False
        finally:
            rec.finished = time.monotonic()
            with self._lock:
                self._active -= 1
        if done:  # wait for the client to hang up, as the service does
            async for _ in ws:
                pass

    async def _answer(self, ws: web.WebSocketResponse, rec: EdgeRequest, mode: str | None, text: str) -> bool:
        """Send the answer; True if the connection is left open for the client to close."""
        if mode == "stall":
            rec.status = "stalled"
            async for _ in ws:  # never answer; ends when the client goes away or on stop()
                pass
            return False

        voice = rec.short_voice or ""
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(
            self._executor,
            encoded,
            text,
            voice,
            rec.rate or "+0%",
            rec.pitch or "+0Hz",
            rec.volume or "+0%",
        )
        try:
            delay = self._latency_for(rec, text)
            if delay > 0:
                await asyncio.sleep(delay)
            rendering, frames, cuts = await job
        finally:
            if not job.done():
                job.cancel()

        rid = rec.request_id or uuid.uuid4().hex
        sid = uuid.uuid4().hex.upper()
        rec.answered = time.monotonic()
        await ws.send_str(text_message(rid, "turn.start", json.dumps({"context": {"serviceTag": sid.lower()}})))
        await ws.send_str(
            text_message(
                rid,
                "response",
                json.dumps({"context": {"serviceTag": sid.lower()}, "audio": {"type": "inline", "streamId": sid}}),
            )
        )
        if mode == "drop_before_audio" or (self.voices is not None and voice not in self.voices):
            rec.status = "fault" if mode else "unknown_voice"
            await ws.close()
            return False
        if mode == "malformed":
            bogus = b"X-RequestId:" + rid.encode() + b"\r\nPath:audio\r\n"
            await ws.send_bytes((len(bogus) + 1000).to_bytes(2, "big") + bogus)
            rec.status = "fault"
            return True

        limit = max(1, len(frames) // 2) if mode == "drop_mid_stream" else len(frames)
        sent = 0
        for i, sentence in enumerate(rendering.sentences):
            if sent >= limit:
                break
            for meta in _metadata_for(sentence, rec.boundary or "SentenceBoundary"):
                await ws.send_str(text_message(rid, "audio.metadata", meta))
            group = frames[cuts[i] : cuts[i + 1]][: limit - sent]
            for payload in chunk_frames(group):
                await ws.send_bytes(audio_message(rid, sid, payload))
                rec.audio_bytes += len(payload)
            sent += len(group)
        if mode == "drop_mid_stream":
            rec.status = "fault"
            await ws.close()
            return False
        await ws.send_bytes(audio_message(rid, sid, b"", content_type=False))  # end of stream
        await ws.send_str(text_message(rid, "turn.end", "{}"))
        rec.completed, rec.status = True, "ok"
        return True


def _check_mode(mode: str | None) -> None:
    if mode is not None and mode not in FAULT_MODES:
        raise ValueError(f"unknown fault mode {mode!r}; expected one of {sorted(FAULT_MODES)} or None")


# --------------------------------------------------------------------------- client helpers


def point_client_at(monkeypatch: Any, server_or_url: Union[EdgeServer, str]) -> None:
    """Make the real edge_tts client talk to the local server (use from a test/fixture).

    Patches ``edge_tts.communicate.WSS_URL``, removes the proxy environment variables (the
    client uses ``trust_env=True``) and resets edge_tts's DRM clock skew (which a 403 moves).
    """
    import edge_tts.communicate
    import edge_tts.drm

    url = server_or_url.url if isinstance(server_or_url, EdgeServer) else server_or_url
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", url)
    for name in PROXY_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(edge_tts.drm.DRM, "clock_skew_seconds", 0.0)


def dominant_frequency(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Frequency (Hz) of the strongest FFT bin (Hann window, zero-padded to >= 1 s)."""
    x = np.asarray(samples, dtype=np.float64)
    n = max(len(x), sample_rate) * 4
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    return float(np.argmax(spec) * sample_rate / n)


__all__ = [
    "AUDIO_CHUNK_BYTES",
    "ENCODER_DELAY",
    "FAULT_MODES",
    "HANDSHAKE_FAULTS",
    "MP3_BITRATE",
    "MP3_FRAME_BYTES",
    "MP3_FRAME_SAMPLES",
    "PATH",
    "SAMPLE_RATE",
    "STREAM_FAULTS",
    "TICKS_PER_SECOND",
    "EdgeRequest",
    "EdgeServer",
    "Rendering",
    "SentencePlan",
    "decode_mp3",
    "dominant_frequency",
    "encode_mp3",
    "encoded",
    "expected_audio",
    "mp3_bitrates",
    "mp3_frames",
    "point_client_at",
    "render",
    "samples_to_ticks",
    "short_voice_name",
    "split_sentences",
    "strip_info_frame",
    "ticks_to_samples",
    "tone_frequency",
]
