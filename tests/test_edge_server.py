"""Tests of the local Edge read-aloud server (tests/edge_server.py), driven by the real
``edge_tts`` client.  Everything runs on 127.0.0.1; nothing here reaches the network."""

from __future__ import annotations

import asyncio
import io
import logging
import random
import threading
import time

import aiohttp
import numpy as np
import pytest
import soundfile as sf

edge_tts = pytest.importorskip("edge_tts")
import edge_tts.communicate  # noqa: E402, F811
import edge_tts.exceptions  # noqa: E402

from edge_server import (  # noqa: E402
    ENCODER_DELAY,
    FAULT_MODES,
    MP3_BITRATE,
    MP3_FRAME_BYTES,
    MP3_FRAME_SAMPLES,
    SAMPLE_RATE,
    EdgeServer,
    decode_mp3,
    dominant_frequency,
    encode_mp3,
    encoded,
    expected_audio,
    mp3_bitrates,
    mp3_frames,
    point_client_at,
    render,
    split_sentences,
    strip_info_frame,
    ticks_to_samples,
    tone_frequency,
)

VOICE = "en-US-AriaNeural"
TEXT = "Hello there. How are you today? I am fine!"


@pytest.fixture
def server(monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    srv = EdgeServer().start()
    point_client_at(monkeypatch, srv)
    yield srv
    srv.stop()
    assert srv.errors == []
    assert srv.leftover_tasks == 0
    bad = [r for r in caplog.records if r.name.startswith(("asyncio", "aiohttp")) and r.levelno >= logging.ERROR]
    assert bad == [], [r.getMessage() for r in bad]


async def _collect(text, voice=VOICE, **kw):
    audio = bytearray()
    events = []
    order = []  # ("audio", cumulative bytes) / ("meta", event) in arrival order
    async for chunk in edge_tts.Communicate(text, voice, **kw).stream():
        if chunk["type"] == "audio":
            audio += chunk["data"]
        else:
            events.append(chunk)
            order.append((len(audio), chunk))
    return bytes(audio), events, order


def collect(text, voice=VOICE, timeout=5.0, **kw):
    return asyncio.run(asyncio.wait_for(_collect(text, voice, **kw), timeout))


# --------------------------------------------------------------------------- MP3 payloads


def test_server_mp3_is_raw_48kbps_cbr_without_info_frame():
    data = encode_mp3(expected_audio(TEXT, VOICE))
    frames = mp3_frames(data)
    assert frames and b"".join(frames) == data
    assert mp3_bitrates(data) == {MP3_BITRATE}
    assert {len(f) for f in frames} == {MP3_FRAME_BYTES}
    assert not any(b"Xing" in f or b"Info" in f for f in frames)
    y, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == SAMPLE_RATE and y.ndim == 1
    assert len(y) == len(frames) * MP3_FRAME_SAMPLES


def test_click_comes_out_1105_samples_late():
    x = np.zeros(SAMPLE_RATE, dtype=np.float32)
    x[5000] = 0.9
    y = decode_mp3(encode_mp3(x), drop_delay=False)
    assert int(np.argmax(np.abs(y))) == 5000 + ENCODER_DELAY
    assert int(np.argmax(np.abs(decode_mp3(encode_mp3(x))))) == 5000


def test_strip_info_frame_gives_edge_like_delay():
    # soundfile's default (VBR) MP3 starts with a Xing frame that tells the decoder to trim.
    x = np.zeros(SAMPLE_RATE, dtype=np.float32)
    x[5000] = 0.9
    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format="MP3")
    raw = buf.getvalue()
    assert b"Xing" in mp3_frames(raw)[0] or b"Info" in mp3_frames(raw)[0]
    y_raw, _ = sf.read(io.BytesIO(raw), dtype="float32")
    assert int(np.argmax(np.abs(y_raw))) == 5000  # the header makes the decoder trim
    stripped = strip_info_frame(raw)
    assert len(stripped) == len(raw) - len(mp3_frames(raw)[0])
    y, _ = sf.read(io.BytesIO(stripped), dtype="float32")
    assert int(np.argmax(np.abs(y))) == 5000 + ENCODER_DELAY


def test_render_is_deterministic_and_depends_on_text_voice_and_prosody():
    a = expected_audio(TEXT, VOICE)
    assert np.array_equal(a, expected_audio(TEXT, VOICE))
    assert a.dtype == np.float32
    # long voice form (what the client sends) gives the same audio
    long_voice = "Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)"
    assert np.array_equal(a, expected_audio(TEXT, long_voice))
    freqs = {tone_frequency(f"Line number {i}.", VOICE) for i in range(10)}
    assert len(freqs) >= 6
    voices = ["en-US-AriaNeural", "en-US-GuyNeural", "de-DE-KatjaNeural", "fr-FR-DeniseNeural"]
    assert len({tone_frequency(TEXT, v) for v in voices}) >= 3
    assert tone_frequency(TEXT, VOICE, "+5Hz") == tone_frequency(TEXT, VOICE) + 5
    r = render(TEXT, VOICE)
    assert [s.text for s in r.sentences] == ["Hello there.", "How are you today?", "I am fine!"]
    for s in r.sentences:
        assert s.length == round(max(0.3, 0.055 * len(s.text)) * SAMPLE_RATE)
    fast = render(TEXT, VOICE, rate="+20%")
    assert [s.length for s in fast.sentences] == [round(s.length / 1.2) for s in r.sentences]
    quiet = render(TEXT, VOICE, volume="-10%")
    assert quiet.amplitude == pytest.approx(0.9 * r.amplitude)


def test_split_sentences():
    assert split_sentences("One. Two! Three? Four") == ["One.", "Two!", "Three?", "Four"]
    assert split_sentences("3.14 is pi.") == ["3.14 is pi."]
    assert split_sentences("你好。 再见！") == ["你好。", "再见！"]
    assert split_sentences("No end") == ["No end"]


# --------------------------------------------------------------------------- normal requests


def test_normal_request_audio_matches_expected(server):
    audio, events, _ = collect(TEXT)
    expected = expected_audio(TEXT, VOICE)
    y = decode_mp3(audio)
    # decoded length = whole frames; the extra is less than one frame
    assert 0 <= len(y) - len(expected) < MP3_FRAME_SAMPLES
    y = y[: len(expected)]
    assert dominant_frequency(y) == pytest.approx(tone_frequency(TEXT, VOICE), abs=2.0)
    err = y - expected
    snr = 10 * np.log10(np.sum(expected.astype(np.float64) ** 2) / np.sum(err.astype(np.float64) ** 2))
    assert snr > 15
    _, frames, _ = encoded(TEXT, VOICE)
    assert audio == b"".join(frames)
    (req,) = server.requests
    assert req.text == TEXT and req.short_voice == VOICE and req.completed and req.status == "ok"
    assert req.voice == "Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)"
    assert req.fault is None and req.audio_bytes == len(audio)
    assert req.connection_id and req.query["ConnectionId"] == req.connection_id
    assert "Sec-MS-GEC" in req.query
    assert req.output_format == "audio-24khz-48kbitrate-mono-mp3"
    assert server.served_texts() == [TEXT]


def test_sentence_boundaries_match_audio_and_byte_stream(server):
    audio, events, order = collect(TEXT)
    plan = render(TEXT, VOICE)
    assert [e["type"] for e in events] == ["SentenceBoundary"] * 3
    assert [e["text"] for e in events] == [s.text for s in plan.sentences]
    assert [e["offset"] for e in events] == [s.offset_ticks for s in plan.sentences]
    assert [e["duration"] for e in events] == [s.duration_ticks for s in plan.sentences]
    y = decode_mp3(audio)
    amp = plan.amplitude
    prev_end = 0
    for (bytes_before, event), s in zip(order, plan.sentences):
        start = ticks_to_samples(event["offset"])
        assert abs(start - s.start) <= 1
        # the tone really starts there in the decoded audio (within one MP3 frame)
        seg = np.abs(y[prev_end:])
        onset = prev_end + int(np.argmax(seg > 0.3 * amp))
        assert abs(onset - start) < MP3_FRAME_SAMPLES
        end = start + ticks_to_samples(event["duration"])
        assert np.max(np.abs(y[end + 300 : end + 1500])) < 0.1 * amp  # silence after it
        # the metadata arrives just before that sentence's frames: the bytes already
        # received decode to the silence before the sentence
        assert bytes_before % MP3_FRAME_BYTES == 0
        decoded_pos = max(0, bytes_before // MP3_FRAME_BYTES * MP3_FRAME_SAMPLES - ENCODER_DELAY)
        assert prev_end <= decoded_pos <= start
        prev_end = end


def test_word_boundaries(server):
    _, events, _ = collect("Hello big world.", boundary="WordBoundary")
    assert [e["type"] for e in events] == ["WordBoundary"] * 3
    assert [e["text"] for e in events] == ["Hello", "big", "world."]
    offsets = [e["offset"] for e in events]
    assert offsets == sorted(offsets)
    assert server.requests[0].boundary == "WordBoundary"


def test_escaped_text_roundtrips(server):
    text = "Tom & Jerry <3 said 'hi'."
    _, events, _ = collect(text)
    assert server.requests[0].text == text
    assert [e["text"] for e in events] == [text]


def test_prosody_strings_recorded_and_applied(server):
    audio, _, _ = collect(TEXT, rate="+20%", pitch="+5Hz", volume="-10%")
    (req,) = server.requests
    assert (req.rate, req.pitch, req.volume) == ("+20%", "+5Hz", "-10%")
    expected = expected_audio(TEXT, VOICE, rate="+20%", pitch="+5Hz", volume="-10%")
    assert len(expected) < len(expected_audio(TEXT, VOICE))
    y = decode_mp3(audio)
    assert 0 <= len(y) - len(expected) < MP3_FRAME_SAMPLES
    assert dominant_frequency(y) == pytest.approx(tone_frequency(TEXT, VOICE) + 5, abs=2.0)
    peak = np.percentile(np.abs(y), 99.5)
    assert peak == pytest.approx(0.45, rel=0.1)


def test_stream_sync_works(server):
    chunks = list(edge_tts.Communicate("Sync works.", VOICE).stream_sync())
    audio = b"".join(c["data"] for c in chunks if c["type"] == "audio")
    assert audio == b"".join(encoded("Sync works.", VOICE)[1])


def test_unknown_voice_gets_no_audio(monkeypatch):
    with EdgeServer(voices={"en-US-GuyNeural"}) as srv:
        point_client_at(monkeypatch, srv)
        with pytest.raises(edge_tts.exceptions.NoAudioReceived):
            collect("Hi.")
        assert collect("Hi.", voice="en-US-GuyNeural")[0]
        assert [r.status for r in srv.requests] == ["unknown_voice", "ok"]


# --------------------------------------------------------------------------- latency / concurrency


def test_latency_delays_the_answer(monkeypatch):
    with EdgeServer(latency=lambda text: 0.08 if "slow" in text else 0.0) as srv:
        point_client_at(monkeypatch, srv)
        t0 = time.monotonic()
        collect("A slow line.")
        slow = time.monotonic() - t0
        t0 = time.monotonic()
        collect("A quick line.")
        quick = time.monotonic() - t0
        a, b = srv.requests
        assert slow >= 0.08
        assert a.answered - a.started >= 0.08
        assert b.answered - b.started < 0.05
        assert quick < slow


def test_concurrency_is_counted(monkeypatch):
    with EdgeServer(latency=0.06) as srv:
        point_client_at(monkeypatch, srv)
        texts = [f"Line number {i}." for i in range(5)]

        async def main():
            return await asyncio.gather(*(_collect(t) for t in texts))

        results = asyncio.run(asyncio.wait_for(main(), 5))
        assert srv.max_concurrent > 1
        assert srv.active == 0
        assert sorted(srv.served_texts()) == sorted(texts)
        for t, (audio, _, _) in zip(texts, results):
            assert audio == b"".join(encoded(t, VOICE)[1])
            assert dominant_frequency(decode_mp3(audio)) == pytest.approx(tone_frequency(t, VOICE), abs=2.0)


# --------------------------------------------------------------------------- faults


def test_403_once_is_retried_by_the_client(server):
    server.faults.append("403_once")
    audio, _, _ = collect(TEXT)
    assert audio == b"".join(encoded(TEXT, VOICE)[1])
    first, second = server.requests
    assert (first.fault, first.status, first.text) == ("403_once", "rejected", None)
    assert (second.fault, second.status, second.text) == (None, "ok", TEXT)


def test_403_twice_raises(server):
    server.faults.extend(["403_once", "403_once"])
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        collect(TEXT)
    assert info.value.status == 403
    assert info.value.headers.get("Date")
    assert len(server.requests) == 2


@pytest.mark.parametrize("mode,status", [("429", 429), ("503", 503)])
def test_http_errors_on_handshake(server, mode, status):
    server.faults.append(mode)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        collect(TEXT)
    assert info.value.status == status
    assert len(server.requests) == 1  # no retry
    assert server.requests[0].status == "rejected"
    # the next request is normal again
    assert collect(TEXT)[0]


def test_drop_before_audio(server):
    server.faults.append("drop_before_audio")
    with pytest.raises(edge_tts.exceptions.NoAudioReceived):
        collect(TEXT)
    (req,) = server.requests
    assert req.fault == "drop_before_audio" and req.text == TEXT and not req.completed


def test_drop_mid_stream_cuts_audio_silently(server):
    server.faults.append("drop_mid_stream")
    audio, events, _ = collect(TEXT)  # no exception: the real client does not notice
    _, frames, _ = encoded(TEXT, VOICE)
    assert audio == b"".join(frames[: len(frames) // 2])
    assert 0 < len(events) < 3
    assert len(decode_mp3(audio)) < len(expected_audio(TEXT, VOICE)) * 0.6
    (req,) = server.requests
    assert req.fault == "drop_mid_stream" and not req.completed and req.status == "fault"


def test_stall_hangs_the_client(server):
    server.faults.append("stall")
    t0 = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        collect(TEXT, timeout=0.5)
    assert time.monotonic() - t0 < 2
    (req,) = server.requests
    assert req.fault == "stall" and req.text == TEXT


def test_malformed_frame(server):
    server.faults.append("malformed")
    with pytest.raises(edge_tts.exceptions.UnexpectedResponse):
        collect(TEXT)
    assert server.requests[0].fault == "malformed"


def test_faults_are_consumed_in_order(server):
    server.faults.extend(["429", None, "drop_before_audio"])
    outcomes = []
    for i in range(4):
        try:
            collect(f"Line {i}.")
            outcomes.append("ok")
        except aiohttp.WSServerHandshakeError as e:
            outcomes.append(e.status)
        except edge_tts.exceptions.NoAudioReceived:
            outcomes.append("no audio")
    assert outcomes == [429, "ok", "no audio", "ok"]
    assert [r.fault for r in server.requests] == ["429", None, "drop_before_audio", None]


def test_fault_for_seeded_plan(monkeypatch):
    calls = []

    def plan(index, text):
        calls.append((index, text))
        if text is None:
            return "503" if index == 1 else None
        return "drop_before_audio" if "bad" in text else None

    with EdgeServer(fault_for=plan) as srv:
        point_client_at(monkeypatch, srv)
        assert collect("good one.")[0]
        with pytest.raises(aiohttp.WSServerHandshakeError):
            collect("good two.")
        with pytest.raises(edge_tts.exceptions.NoAudioReceived):
            collect("a bad one.")
        assert [r.fault for r in srv.requests] == [None, "503", "drop_before_audio"]
        assert calls == [(0, None), (0, "good one."), (1, None), (2, None), (2, "a bad one.")]
        assert srv.errors == []

    rng = random.Random(7)
    modes = [rng.choice([None, "429", "drop_mid_stream"]) for _ in range(6)]
    with EdgeServer(fault_for=lambda i, t: modes[i] if t is None else None) as srv:
        point_client_at(monkeypatch, srv)
        for i in range(6):
            try:
                collect(f"Line {i}.")
            except aiohttp.WSServerHandshakeError:
                pass
        assert [r.fault for r in srv.requests] == modes


def test_unknown_fault_mode_rejected():
    with pytest.raises(ValueError):
        EdgeServer(faults=["explode"])
    assert FAULT_MODES == {"403_once", "403", "429", "503", "drop_before_audio", "drop_mid_stream", "stall", "malformed"}


# --------------------------------------------------------------------------- lifecycle


def test_stop_cancels_stalled_handler_with_client_connected():
    srv = EdgeServer(faults=["stall"]).start()
    url = srv.url + "&ConnectionId=x"
    got = []

    async def client(connected, release):
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.send_str(
                "X-Timestamp:now\r\nContent-Type:application/json\r\nPath:speech.config\r\n\r\n"
                '{"context":{"synthesis":{"audio":{"metadataoptions":{},"outputFormat":"x"}}}}'
            )
            await ws.send_str(
                "X-RequestId:abc\r\nContent-Type:application/ssml+xml\r\nPath:ssml\r\n\r\n"
                "<speak><voice name='en-US-AriaNeural'><prosody pitch='+0Hz' rate='+0%' volume='+0%'>"
                "Stalled.</prosody></voice></speak>"
            )
            connected.set()
            msg = await ws.receive(timeout=3)
            got.append(msg.type)

    async def main():
        connected = asyncio.Event()
        task = asyncio.create_task(client(connected, None))
        await asyncio.wait_for(connected.wait(), 2)
        for _ in range(100):
            if srv.active:
                break
            await asyncio.sleep(0.005)
        t0 = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, srv.stop)
        stop_time = time.monotonic() - t0
        await asyncio.wait_for(task, 3)
        return stop_time

    stop_time = asyncio.run(main())
    assert stop_time < 1.5
    assert got and got[0] in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    (req,) = srv.requests
    assert req.status == "cancelled" and req.text == "Stalled."
    assert srv.leftover_tasks == 0 and srv.errors == []
    assert not any(t.name.startswith("EdgeServer") for t in threading.enumerate())


def test_start_stop_leaves_no_threads():
    before = set(threading.enumerate())
    srv = EdgeServer()
    with srv:
        assert srv.url.startswith("ws://127.0.0.1:") and "?" in srv.url
        assert srv.url.endswith("/consumer/speech/synthesize/readaloud/edge/v1?TrustedClientToken=test")
    assert set(threading.enumerate()) <= before
    srv.stop()  # idempotent
    with pytest.raises(RuntimeError):
        srv.url
