"""The engine's streamed run (issue 13, item 6): outcomes in job order as soon as they are ready,
within a bounded window, stopping cleanly when the consumer stops.

The fake backend is registered through the real registry; it never sleeps: a line that must
wait for another waits on a threading.Event, so every order below is forced, not timed.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable

import numpy as np
import pytest

from conftest import FakeBackend, registered, tone_clip
from dialog_tts.backends.base import VoiceInfo
from dialog_tts.errors import SynthesisError
from dialog_tts.script.voice import Voice
from dialog_tts.synth.cache import AudioCache
from dialog_tts.synth.engine import Engine, ProgressEvent, Source
from dialog_tts.synth.jobs import Job

WAIT = 10        # seconds an Event wait may take before the test fails (never reached when it passes)


class StreamBackend(FakeBackend):
    """Records each line's start and finish; a line in ``hold`` waits for that Event first."""

    name = "streamy"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.finished: list[str] = []
        self.batches: list[list[str]] = []
        self.hold: dict[str, threading.Event] = {}
        self.failing: set[str] = set()
        self.stuck: list[str] = []
        self.on_start: Callable[[str], None] = lambda text: None
        self._lock = threading.Lock()
        self._started: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self._done: defaultdict[str, threading.Event] = defaultdict(threading.Event)

    def started(self, text: str) -> threading.Event:
        with self._lock:
            return self._started[text]

    def done(self, text: str) -> threading.Event:
        with self._lock:
            return self._done[text]

    def resolve(self, voice):
        return voice

    def list_voices(self):
        return [VoiceInfo("v1")]

    def synthesize(self, text, voice):
        with self._lock:
            self.calls.append(text)
        self.on_start(text)
        self.started(text).set()
        gate = self.hold.get(text)
        if gate is not None and not gate.wait(WAIT):
            self.stuck.append(text)                  # the fixture fails the test
            raise SynthesisError(f"{text} was never released")
        with self._lock:
            self.finished.append(text)
        self.done(text).set()
        if text in self.failing:
            raise SynthesisError(f"cannot say {text!r}")
        return clip_for(text)


class BatchStreamBackend(StreamBackend):
    """The same, taking its lines four at a time (like a GPU model)."""

    batch_size = 4

    def synthesize_batch(self, texts, voices):
        self.batches.append(list(texts))
        return [self.synthesize(t, v) for t, v in zip(texts, voices)]


def clip_for(text: str):
    """A tone whose pitch and length encode the line, so an outcome can be matched to its job."""
    return tone_clip(200 + sum(map(ord, text)) % 400, 0.05 + 0.002 * len(text))


def registered_fake(inst: StreamBackend):
    yield from registered("streamy", inst)
    assert inst.stuck == [], "a line waited for an Event that was never set"


@pytest.fixture
def fake():
    yield from registered_fake(StreamBackend())


@pytest.fixture
def batch_fake():
    yield from registered_fake(BatchStreamBackend())


def jobs_of(texts: list[str]) -> list[Job]:
    return [Job(text, Voice("v1", backend="streamy"), "s.txt", i + 1, "A") for i, text in enumerate(texts)]


def lines(n: int) -> list[str]:
    return [f"Line {i}." for i in range(n)]


def index_of(text: str) -> int:
    return int(text.split()[1].rstrip("."))


def engine_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("dialog-tts")}


def assert_is(outcome, text: str) -> None:
    expected = clip_for(text)
    assert outcome.clip is not None and outcome.clip.samples.shape == expected.samples.shape
    np.testing.assert_allclose(outcome.clip.samples, expected.samples, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ order

def test_outcomes_come_in_job_order_though_lines_finish_out_of_order(fake):
    distinct = [f"Line {i}." + " la" * i for i in range(48)]
    texts = list(distinct)
    for k in range(12):                      # repeats of earlier lines, spread through the script
        texts.insert(5 * k + 4, distinct[3 * k])
    for k in range(0, 48, 4):                # every fourth line finishes after the third one after it
        fake.hold[distinct[k]] = fake.done(distinct[k + 3])
    jobs = jobs_of(texts)

    got = list(Engine(4).stream(jobs))

    assert [i for i, _ in got] == list(range(60))
    for (i, outcome), job in zip(got, jobs):
        assert_is(outcome, job.text)
    assert [o.source for _, o in got].count(Source.REPEAT) == 12
    assert Counter(fake.calls) == Counter(distinct)            # each distinct line once
    assert fake.finished != sorted(fake.finished, key=distinct.index)   # they did finish out of order


def test_the_first_line_comes_while_the_last_is_still_being_synthesized(fake):
    texts = lines(12)
    release = threading.Event()
    fake.hold["Line 0."] = fake.started("Line 11.")   # line 0 is done only once line 11 has started...
    fake.hold["Line 11."] = release                   # ...and line 11 waits until the test says so

    with Engine(4).stream(jobs_of(texts)) as stream:
        index, first = next(stream)
        assert index == 0 and first.source is Source.SYNTHESIZED
        assert "Line 11." in fake.calls and "Line 11." not in fake.finished
        release.set()
        rest = list(stream)
    assert [i for i, _ in rest] == list(range(1, 12))
    assert all(o.source is Source.SYNTHESIZED for _, o in rest)


@pytest.mark.parametrize("window", [5, 8])
def test_no_more_than_window_lines_start_ahead_of_the_consumer(fake, window):
    position = [0]                   # jobs the consumer has received
    ahead: list[int] = []            # at each start: the jobs from the consumer's position to this one
    fake.on_start = lambda text: ahead.append(index_of(text) - position[0] + 1)
    fake.hold["Line 0."] = fake.started(f"Line {window - 1}.")   # the window fills before line 0 is done

    for index, outcome in Engine(4).stream(jobs_of(lines(60)), window=window):
        assert outcome.clip is not None
        position[0] = index + 1

    assert len(ahead) == 60
    assert max(ahead) == window


def test_a_batching_backend_streams_in_batches_within_the_window(batch_fake):
    texts = [f"Line {i}." + " la" * (i % 7) for i in range(40)]
    position = [0]
    ahead: list[int] = []
    batch_fake.on_start = lambda text: ahead.append(index_of(text) - position[0] + 1)

    for index, outcome in Engine(4).stream(jobs_of(texts), window=8):
        assert_is(outcome, texts[index])
        assert index == position[0]
        position[0] = index + 1

    assert Counter(batch_fake.calls) == Counter(texts)
    assert len(batch_fake.batches[0]) == 4 and max(map(len, batch_fake.batches)) == 4
    assert max(ahead) <= 8


# ------------------------------------------------------------------ cache, failures, counters

def test_cached_lines_stream_while_a_new_line_is_still_being_synthesized(fake, tmp_path):
    texts = lines(20)
    release = threading.Event()
    with AudioCache(tmp_path / "cache") as cache:
        Engine(4, cache=cache).run(jobs_of(texts[:10]))
        fake.hold["Line 10."] = release

        with Engine(4, cache=cache).stream(jobs_of(texts)) as stream:
            first = [next(stream) for _ in range(10)]
            assert [o.source for _, o in first] == [Source.CACHE] * 10
            assert "Line 10." not in fake.finished
            release.set()
            rest = list(stream)
    for index, outcome in first + rest:
        assert_is(outcome, texts[index])
    assert [o.source for _, o in rest] == [Source.SYNTHESIZED] * 10
    assert Counter(fake.calls) == Counter(texts)      # the cached ten were not synthesized again


def test_failures_come_in_their_place_and_the_counters_match_a_run(fake):
    texts = lines(30)
    texts[20] = texts[3]                                  # a repeat of a failing line
    texts[25] = texts[4]                                  # and of a good one
    fake.failing = {"Line 3.", "Line 17."}
    jobs = jobs_of(texts)
    events: list[ProgressEvent] = []
    run_events: list[ProgressEvent] = []

    stream = Engine(4, listener=events.append).stream(jobs)
    got = list(stream)
    result = Engine(4, listener=run_events.append).run(jobs)

    assert [i for i, _ in got] == list(range(30))
    failed = [i for i, o in got if o.source is Source.FAILED]
    assert failed == [3, 17, 20]
    assert all("cannot say" in str(got[i][1].error) for i in failed)
    assert [o.source for _, o in got] == [o.source for o in result.outcomes]
    assert stream.stats == result.stats
    assert stream.stats.failed == 3 and stream.stats.repeated == 1 and stream.stats.synthesized == 26
    assert [str(f) for f in stream.failures] == [str(f) for f in result.failures]
    assert len(events) == len(run_events) == 28                 # one event per distinct line, as in run
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert events[-1].done == events[-1].total == 30 and events[-1].stats == run_events[-1].stats


def test_nothing_to_do_and_a_bad_window():
    assert list(Engine(2).stream([])) == []
    with pytest.raises(ValueError, match="window"):
        Engine(2).stream([], window=0)


# ------------------------------------------------------------------ stopping early

@pytest.mark.parametrize("how", ["close", "with", "raise", "drop"])
def test_a_consumer_that_stops_early_cancels_the_rest(fake, tmp_path, how):
    before = engine_threads()
    jobs = jobs_of(lines(60))
    with AudioCache(tmp_path / "cache") as cache:
        engine = Engine(2, cache=cache)
        if how == "close":
            stream = engine.stream(jobs, window=6)
            assert [next(stream)[0] for _ in range(3)] == [0, 1, 2]
            stream.close()
            with pytest.raises(StopIteration):
                next(stream)
        elif how == "with":
            with engine.stream(jobs, window=6) as stream:
                for index, _ in stream:
                    if index == 2:
                        break
        elif how == "raise":
            with pytest.raises(RuntimeError, match="consumer"), engine.stream(jobs, window=6) as stream:
                for index, _ in stream:
                    if index == 2:
                        raise RuntimeError("the consumer gave up")
        else:                       # a plain loop that breaks: the dropped generator is closed
            for index, _ in engine.stream(jobs, window=6):
                if index == 2:
                    break

        assert engine_threads() <= before                       # every worker joined
        assert fake.calls and max(map(index_of, fake.calls)) < 3 + 6
        cached = engine.lookup(jobs)
        assert all(cached[index_of(text)] for text in fake.calls)   # the lines in flight finished, were cached


def test_ctrl_c_inside_a_stream_stops_it(fake):
    before = engine_threads()

    def progress(done, total, message):
        if done == 5:
            raise KeyboardInterrupt
    stream = Engine(2, progress=progress).stream(jobs_of(lines(60)), window=10)
    with pytest.raises(KeyboardInterrupt):
        list(stream)
    assert engine_threads() <= before
    assert len(fake.calls) <= 5 + 2 and stream.stats.lines == 60
