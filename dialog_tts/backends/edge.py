"""Microsoft Edge's online neural voices, through the ``edge-tts`` client.

Voices are named in full (``ko-KR-SunHiNeural``) or short (``SunHi``, ``sunhi``,
``ko-KR-SunHi``); short names resolve through the voice table shipped in
``dialog_tts/data/edge_voices.json`` (the service's list needs the network).

Every request is bounded by a timeout (the client alone can wait forever on
a server that accepts and never answers).  Failures are classified: rate
limits (HTTP 429), server errors (5xx), connection errors, timeouts, streams
without audio and streams cut short are transient, and the engine retries
them; a rejected voice or parameter is permanent.  A stream cut short raises
nothing in the client, so the backend asks for sentence-boundary metadata and
checks that the audio covers the last sentence, and that the turn ended.

``DIALOG_TTS_EDGE_URL`` points the client at another endpoint (a proxy, a
stand-in, the tests' local server); the usual proxy variables
(``HTTPS_PROXY`` ...) are honoured by the client.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Mapping

from dialog_tts.backends.base import (
    Backend,
    Setting,
    VoiceInfo,
    float_in,
    install_hint,
    int_in,
    missing_modules,
    package_version,
    shaped,
)
from dialog_tts.errors import (
    BackendUnavailableError,
    InputError,
    SynthesisError,
    TransientSynthesisError,
    UnknownVoiceError,
    VoiceSpecError,
)
from dialog_tts.script.directions import Delivery
from dialog_tts.script.voice import Rate, Voice, close_matches

if TYPE_CHECKING:
    from dialog_tts.io.audio import Clip

log = logging.getLogger("dialog_tts")

ENV_URL = "DIALOG_TTS_EDGE_URL"
ENV_CONCURRENCY = "DIALOG_TTS_EDGE_CONCURRENCY"
SAMPLE_RATE = 24000
TICKS = 10_000_000                  # boundary offsets are in 100 ns ticks
RATE_RANGE = (-50, 100)             # percent, the span Edge's neural voices accept
VOLUME_RANGE = (-100, 100)          # percent
PITCH_RANGE = 0.5                   # at most ±50 % of the voice's typical pitch, in Hz
TYPICAL_F0 = {"Female": 210.0, "Male": 120.0}  # Hz, to turn semitones into Edge's +NHz
COVERAGE_TOLERANCE = 0.15           # seconds the audio may fall short of the last boundary
_FULL_NAME = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z]{2,10}){1,2}-[A-Za-z0-9]+Neural$")
_URL_QUERY = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s?#'\"]*)\?[^\s'\"]*")
_OBJECT_REPR = re.compile(r"\s*ssl:<[^<>]*>|<([\w.]+) object at 0x[0-9a-fA-F]+>")
_SCHEMES = ("ws", "wss")


def redact(text: str) -> str:
    """*text* with every URL's query (the service's token) cut, and no ``<... object at 0x...>``."""
    text = _URL_QUERY.sub(r"\1?…", text)
    return _OBJECT_REPR.sub(lambda m: f"<{m.group(1)}>" if m.group(1) else "", text)


def checked_url(url: str) -> str:
    """``$DIALOG_TTS_EDGE_URL`` checked (ws:// or wss://, a host, a port from 1 to 65535); InputError if not."""
    from urllib.parse import urlsplit

    shown = redact(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InputError(f"{ENV_URL}={shown!r}: {exc}; give a URL such as wss://host:port/path?token") from None
    if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
        raise InputError(f"{ENV_URL}={shown!r}: give a ws:// or wss:// URL with a host, "
                         "such as wss://host:port/path?token")
    if port == 0:
        raise InputError(f"{ENV_URL}={shown!r}: port 0 cannot be connected to")
    return url.strip()


@dataclass(frozen=True)
class EdgeVoice:
    name: str
    locale: str
    gender: str

    @property
    def short(self) -> str:
        return self.name[len(self.locale) + 1:].removesuffix("Neural")


@lru_cache(maxsize=1)
def voice_table() -> tuple[dict[str, Any], tuple[EdgeVoice, ...]]:
    """(the table's header fields, its voices), from the package data."""
    # next to this package's modules; importlib.resources would import tempfile, zipfile and bz2 (a visible
    # share of `dialog-tts voices`) to find a file that is always on disk
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "edge_voices.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    voices = tuple(EdgeVoice(v["name"], v["locale"], v["gender"]) for v in data["voices"])
    return {k: v for k, v in data.items() if k != "voices"}, voices


def percent(value: float) -> str:
    return f"{round(value):+d}%"


class EdgeBackend(Backend):
    name = "edge"
    online = True
    max_concurrency = 6          # the service bans bursts (rany2/edge-tts #21, #102)
    base_wpm = 150.0             # typical rate of Edge's neural voices at +0 % (an estimate)
    settings = {
        "timeout": Setting("timeout", float_in(0.1, 3600.0),
                           "seconds one request may take [default: 20 s + 0.1 s a character]"),
        "concurrency": Setting("max_concurrency", int_in(1, 64),
                               f"requests at once [default: ${ENV_CONCURRENCY} or 6]"),
    }
    #: Seconds allowed per request; None scales with the text (see :meth:`timeout_for`).
    timeout: float | None = None

    def __init__(self) -> None:
        self._url_lock = threading.Lock()
        self._warned: set[str] = set()      # voices warned about (shared by the views: warn once)
        self._warn_lock = threading.Lock()

    def check_available(self) -> None:
        """edge-tts and aiohttp installed, and ``$DIALOG_TTS_EDGE_URL`` (if set) a usable URL."""
        missing = missing_modules("edge_tts", "aiohttp")
        if missing:
            raise BackendUnavailableError(f"the edge backend needs edge-tts ({', '.join(missing)} missing): "
                                          f"{install_hint('edge')}")
        url = os.environ.get(ENV_URL)
        if url:
            checked_url(url)

    def bind(self, options: Mapping[str, Any], *, workers: int) -> Backend:
        """A render's view; the concurrency cap defaults to ``$DIALOG_TTS_EDGE_CONCURRENCY``."""
        env_cap = os.environ.get(ENV_CONCURRENCY)
        if env_cap and "concurrency" not in options:
            try:
                options = {**options, "concurrency": self.settings["concurrency"].parse(env_cap)}
            except ValueError:
                raise VoiceSpecError(f"{ENV_CONCURRENCY}={env_cap!r}: give a whole number of requests, "
                                     f"1 to 64") from None
        return super().bind(options, workers=workers)

    # ------------------------------------------------------------ voices
    def _lookup(self, name: str) -> EdgeVoice | None:
        _, table = voice_table()
        wanted = name.strip().lower().removesuffix("neural")
        exact = [v for v in table if v.name.lower().removesuffix("neural") == wanted]
        if exact:
            return exact[0]
        by_short = [v for v in table if v.short.lower() == wanted
                    or f"{v.locale}-{v.short}".lower() == wanted]
        if len(by_short) > 1:
            names = ", ".join(v.name for v in by_short)
            raise UnknownVoiceError(f"edge voice {name!r} is ambiguous: {names}; give the full name")
        return by_short[0] if by_short else None

    def resolve(self, voice: Voice) -> Voice:
        if not voice.name:
            voice = replace(voice, name=self.palette()[0])
        found = self._lookup(voice.name)
        if found is None:
            if _FULL_NAME.match(voice.name):
                header, _ = voice_table()
                with self._warn_lock:
                    warn = voice.name not in self._warned
                    self._warned.add(voice.name)
                if warn:
                    log.warning("edge voice %s is not in the voice table shipped with dialog-tts (%s); "
                                "trying it anyway", voice.name, header.get("retrieved", "?"))
                resolved = replace(voice, name=voice.name)
            else:
                _, table = voice_table()
                hints = close_matches(voice.name, [v.name for v in table] + [v.short for v in table])
                raise UnknownVoiceError(f"unknown edge voice {voice.name!r}" +
                                        (f" (close: {', '.join(hints)})" if hints else
                                         " (dialog-tts voices --backend edge lists them)"))
        else:
            resolved = replace(voice, name=found.name)
        self.prosody(resolved)  # values Edge would reject fail now, before any request
        return resolved

    def prosody(self, voice: Voice) -> dict[str, str]:
        """The voice's rate, pitch and volume in Edge's forms (``+10%``, ``+12Hz``, ``-29%``)."""
        rate = (voice.speed(self.base_wpm) - 1.0) * 100.0
        if not RATE_RANGE[0] <= round(rate) <= RATE_RANGE[1]:
            wpm = (self.base_wpm * (1 + RATE_RANGE[0] / 100), self.base_wpm * (1 + RATE_RANGE[1] / 100))
            raise VoiceSpecError(f"rate {voice.rate} is {percent(rate)} for Edge, which accepts "
                                 f"{RATE_RANGE[0]:+d}% to {RATE_RANGE[1]:+d}% (about {wpm[0]:.0f}-{wpm[1]:.0f} "
                                 f"words per minute)")
        found = self._lookup(voice.name)
        f0 = TYPICAL_F0.get(found.gender if found else "", 160.0)
        hz = f0 * (2.0 ** (voice.pitch / 12.0) - 1.0)
        if abs(hz) > PITCH_RANGE * f0:
            raise VoiceSpecError(f"pitch {voice.pitch:+g}st is {round(hz):+d}Hz for {voice.name}, beyond the "
                                 f"±{PITCH_RANGE * f0:.0f}Hz Edge accepts")
        volume = (10.0 ** (voice.volume / 20.0) - 1.0) * 100.0
        if not VOLUME_RANGE[0] <= round(volume) <= VOLUME_RANGE[1]:
            raise VoiceSpecError(f"volume {voice.volume:+g}dB is {percent(volume)} for Edge, which accepts "
                                 f"{VOLUME_RANGE[0]:+d}% to {VOLUME_RANGE[1]:+d}% (up to +6 dB)")
        return {"rate": percent(rate), "pitch": f"{round(hz):+d}Hz", "volume": percent(volume)}

    def apply_delivery(self, voice: Voice, delivery: Delivery) -> Voice:
        """Rate, volume and pitch as Edge prosody, kept within what Edge accepts."""
        shaped_voice = shaped(voice, delivery)
        speed = shaped_voice.speed(self.base_wpm)
        low, high = 1 + RATE_RANGE[0] / 100 + 0.005, 1 + RATE_RANGE[1] / 100 - 0.005
        if not low <= speed <= high:
            shaped_voice = replace(shaped_voice, rate=Rate(factor=round(min(high, max(low, speed)), 3)))
        max_up = 12.0 * math.log2(1.0 + PITCH_RANGE) - 0.05
        max_db = 20.0 * math.log10(1.0 + VOLUME_RANGE[1] / 100) - 0.05
        return replace(shaped_voice, pitch=min(max_up, shaped_voice.pitch), volume=min(max_db, shaped_voice.volume))

    def list_voices(self) -> list[VoiceInfo]:
        _, table = voice_table()
        return [VoiceInfo(v.name, v.locale, v.gender.lower(), f"short name {v.short}") for v in table]

    def palette(self) -> list[str]:
        _, table = voice_table()
        names = {v.name for v in table}
        wanted = ["en-US-AriaNeural", "en-US-GuyNeural", "en-US-JennyNeural", "en-US-AndrewNeural",
                  "en-US-EmmaNeural", "en-US-BrianNeural", "en-US-AvaNeural", "en-US-ChristopherNeural"]
        return [n for n in wanted if n in names]

    def retake(self, voice: Voice, take: int) -> Voice:
        return voice          # a new request is a new take (a stream cut short, say, comes back whole)

    def language(self, voice: Voice, text: str = "") -> str:
        return "-".join(voice.name.split("-")[:2])     # en-US-AriaNeural -> en-US

    def fingerprint(self, voice: Voice) -> str:
        version = package_version("edge-tts")
        return f"edge-tts {version}; {voice.name}"

    # ------------------------------------------------------------ synthesis
    def timeout_for(self, text: str) -> float:
        """Seconds one request may take: ``timeout`` if set, else 20 s plus 0.1 s per character."""
        return self.timeout if self.timeout is not None else 20.0 + 0.1 * len(text)

    def _client(self) -> Any:
        try:
            import edge_tts
            import edge_tts.communicate
        except ImportError as exc:
            raise BackendUnavailableError(f"the edge backend needs edge-tts: {install_hint('edge')}") from exc
        url = os.environ.get(ENV_URL)
        if url:
            url = checked_url(url)
            if "?" not in url:  # the client appends "&ConnectionId=..."
                url += "?"
            with self._url_lock:
                edge_tts.communicate.WSS_URL = url
        return edge_tts

    def synthesize(self, text: str, voice: Voice) -> Clip:
        import asyncio

        from dialog_tts.io.audio import decode_mp3

        edge_tts = self._client()
        try:
            communicate = edge_tts.Communicate(text, voice.name, boundary="SentenceBoundary",
                                               **self.prosody(voice))
        except ValueError as exc:  # the client's own checks of voice and parameters
            raise SynthesisError(f"edge rejected the request: {exc}") from None
        timeout = self.timeout_for(text)
        try:
            audio, spans = asyncio.run(asyncio.wait_for(_collect(communicate), timeout))
        except (asyncio.TimeoutError, TimeoutError):
            raise TransientSynthesisError(f"edge: no complete answer within {timeout:g} s") from None
        except Exception as exc:
            raise _classify(exc) from exc
        if not audio:
            raise TransientSynthesisError("edge: the stream closed before any audio")
        clip = decode_mp3(bytes(audio))
        state = getattr(communicate, "state", None)
        if isinstance(state, dict) and state.get("cumulative_audio_bytes", len(audio)) != len(audio):
            raise TransientSynthesisError(f"edge: the stream closed before the end of the turn "
                                          f"(audio cut short at {clip.duration:.2f} s)")
        end = max((e for _s, e in spans), default=0.0)
        if spans and clip.duration + COVERAGE_TOLERANCE < end:
            raise TransientSynthesisError(f"edge: audio cut short ({clip.duration:.2f} s of {end:.2f} s)")
        starts = sorted(round(s * clip.sample_rate) for s, _e in spans)[1:]   # where sentences 2, 3, ... start
        return replace(clip, marks=tuple(m for m in starts if 0 < m < clip.frames))


async def _collect(communicate: Any) -> tuple[bytearray, list[tuple[float, float]]]:
    """All audio bytes of a request, and where each sentence starts and ends (seconds)."""
    audio = bytearray()
    spans: list[tuple[float, float]] = []
    async for chunk in communicate.stream():
        if chunk["type"] == "audio":
            audio += chunk["data"]
        elif chunk["type"] == "SentenceBoundary":
            spans.append((chunk["offset"] / TICKS, (chunk["offset"] + chunk["duration"]) / TICKS))
    return audio, spans


def _classify(exc: BaseException) -> SynthesisError:
    """The client's and aiohttp's errors as transient or permanent SynthesisErrors (URLs' tokens cut)."""
    error = _classified(exc)
    error.message = redact(error.message)
    return error


def _classified(exc: BaseException) -> SynthesisError:
    import aiohttp
    from edge_tts import exceptions as edge_errors

    if isinstance(exc, aiohttp.WSServerHandshakeError):
        status = exc.status
        reason = {403: "403 Forbidden (after the client's clock-skew retry)", 429: "429 Too Many Requests"}.get(
            status, f"{status} {exc.message}".strip())
        if status in (403, 408, 425, 429) or status >= 500:
            return TransientSynthesisError(f"edge: HTTP {reason}")
        return SynthesisError(f"edge: HTTP {reason}")
    if isinstance(exc, aiohttp.ClientResponseError):
        if exc.status == 429 or exc.status >= 500:
            return TransientSynthesisError(f"edge: HTTP {exc.status} {exc.message}")
        return SynthesisError(f"edge: HTTP {exc.status} {exc.message}")
    if isinstance(exc, (aiohttp.ClientError, ConnectionError, OSError)):
        return TransientSynthesisError(f"edge: connection failed: {exc or type(exc).__name__}")
    if isinstance(exc, edge_errors.NoAudioReceived):
        return TransientSynthesisError("edge: the stream closed before any audio")
    if isinstance(exc, edge_errors.EdgeTTSException):
        return TransientSynthesisError(f"edge: malformed answer from the service: {exc}")
    return SynthesisError(f"edge: {type(exc).__name__}: {exc}")
