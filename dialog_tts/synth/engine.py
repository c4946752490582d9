"""The engine: the only place with concurrency.

For a list of jobs (text + resolved voice + where it came from) the engine

1. synthesizes each distinct (text, synthesis settings) once per run;
2. looks every one up in the disk cache first, so a cached run loads no model;
3. sends the rest to a pool of ``workers`` threads, within each backend's
   ``max_concurrency``; a backend that batches (``batch_size`` > 1, e.g. a GPU
   model) gets its lines bucketed by length and grouped by ``batch_group``, in
   batches on one worker, and a failing batch is split in halves down to single
   lines so that one bad line fails alone;
4. retries errors the backend calls transient (tenacity, exponential backoff
   with jitter; the sleep is injectable), and fails permanent ones at once;
5. puts every take through the quality gate (:mod:`dialog_tts.quality.gate`), on the
   worker that made it, and retakes a line that fails a check (a new seed
   where the backend has one), keeping the first take that passes;
6. never lets one line's failure stop the others: results and failures come
   back per job, in job order, and every success is cached as it arrives.
7. or hands the outcomes out one by one (:meth:`Engine.stream`), in job order,
   each as soon as it and those before it are done, starting work at most a
   window of jobs ahead of the consumer (the scheduling: dialog_tts/synth/scheduling.py).

Each backend call is made through an executor (dialog_tts/synth/executors.py): in the
worker thread itself by default, or on a Ray cluster (``--executor ray``); all of
the above stays here, on the driver, whichever runs the calls.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from dialog_tts import backends
from dialog_tts.errors import DialogTTSError, QualityFailed, SynthesisError
from dialog_tts.quality.checks import Verdict
from dialog_tts.quality.gate import Gate, LineQuality, Take, best_take
from dialog_tts.script.voice import Voice
from dialog_tts.synth.cachekeys import Keys
from dialog_tts.synth.executors import Executor, ThreadExecutor
from dialog_tts.synth.jobs import Job

if TYPE_CHECKING:   # the scheduler (concurrent.futures) loads when lines run: a dry run never needs it
    from tenacity import RetryCallState, Retrying

    from dialog_tts.io.audio import Clip
    from dialog_tts.synth.scheduling import Lane

log = logging.getLogger("dialog_tts")

ProgressCallback = Callable[[int, int, str], None]
Sleep = Callable[[float], None]


class AudioCacheLike(Protocol):
    """What the engine needs of a cache (see :class:`dialog_tts.synth.cache.AudioCache`)."""

    def get_entry(self, key: str) -> tuple[Clip | None, dict[str, Any] | None]: ...
    def put(self, key: str, clip: Clip, checks: Mapping[str, Any] | None = None) -> None: ...
    def __contains__(self, key: str) -> bool: ...


@dataclass(frozen=True)
class Backoff:
    """Retry waits: ``initial * 2**n`` seconds (capped at ``maximum``) plus up to ``jitter``."""

    initial: float = 1.0
    maximum: float = 30.0
    jitter: float = 0.5


class Source(str, Enum):
    """Where a job's audio came from; the strings are the report's ``source`` values."""

    PENDING = "pending"
    SYNTHESIZED = "synthesized"
    CACHE = "cache"
    REPEAT = "repeat"          # the same audio as an earlier job of this run
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass
class Outcome:
    """What happened to one job."""

    clip: Clip | None = None
    source: Source = Source.PENDING
    attempts: int = 0            # backend calls made for it (0 when cached)
    seconds: float = 0.0         # time spent in the backend, retries and retakes included
    error: BaseException | None = None
    quality: LineQuality | None = None   # the gate's takes and checks (None: not checked, e.g. cached)


#: The counter of :class:`Stats` that each kind of outcome adds to.
_COUNTERS = {Source.SYNTHESIZED: "synthesized", Source.CACHE: "cached", Source.REPEAT: "repeated",
             Source.FAILED: "failed"}


@dataclass
class Stats:
    lines: int = 0
    synthesized: int = 0
    cached: int = 0
    repeated: int = 0
    retries: int = 0
    failed: int = 0
    retakes: int = 0             # takes made after a take failed the quality gate
    flagged: int = 0             # lines kept although no take passed (--keep-going)
    warned: int = 0              # lines kept with a warning: their best take failed only soft checks

    def count(self, source: Source) -> None:
        """Count one finished job of kind *source*."""
        name = _COUNTERS[source]
        setattr(self, name, getattr(self, name) + 1)

    def count_takes(self, quality: LineQuality | None) -> None:
        """Count one distinct line's retakes, and whether it was kept flagged."""
        if quality is not None:
            self.retakes += quality.retakes
            self.flagged += quality.flagged
            self.warned += quality.warned


@dataclass(frozen=True)
class ProgressEvent:
    """One distinct line finished: *done* of *total* jobs, which line (*message*), the counters so far."""

    done: int
    total: int
    message: str
    stats: Stats


ProgressListener = Callable[[ProgressEvent], None]


@dataclass
class Failure:
    job: Job
    error: BaseException

    def __str__(self) -> str:
        return f"{self.job.where()}: {self.error}"


@dataclass
class EngineResult:
    outcomes: list[Outcome]
    failures: list[Failure] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)

    @property
    def clips(self) -> list[Clip | None]:
        return [o.clip for o in self.outcomes]


@dataclass
class _Unit:
    """One distinct synthesis and the jobs that share it."""

    job: Job
    indices: list[int]
    key: str | None = None


@dataclass
class _Done:
    """What one piece of work hands back to the run loop: outcomes, and the retries it took."""

    results: list[tuple[_Unit, Outcome]]
    retries: int = 0


class _Stopped(SynthesisError):
    """The run was interrupted: no new backend call starts."""


class Engine:
    """Synthesizes jobs over a thread pool, with a cache, retries and per-backend limits.

    Only the thread that calls :meth:`run` touches the run's outcomes and counters and
    reports progress; the pool's workers return their results to it.  *progress* gets
    ``(done, total, message)``, *listener* a :class:`ProgressEvent` with the counters.
    """

    def __init__(self, workers: int = 4, *, cache: AudioCacheLike | None = None, retries: int = 2,
                 backoff: Backoff = Backoff(), sleep: Sleep = time.sleep,
                 progress: ProgressCallback | None = None, listener: ProgressListener | None = None,
                 backend_options: Mapping[str, Mapping[str, Any]] | None = None,
                 executor: Executor | None = None, gate: Gate | None = None, keys: Keys | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if retries < 0:
            raise ValueError("retries must not be negative")
        if keys is not None and (backend_options or keys.workers != workers):
            raise ValueError("keys come bound to their own settings and workers: give them or backend_options")
        self.workers = workers
        self.cache = cache
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.progress = progress
        self.listener = listener
        #: The backends' views and the jobs' cache keys (a Renderer's, shared with its dry runs).
        self.keys = keys if keys is not None else Keys(workers, backend_options)
        self.executor: Executor = executor or ThreadExecutor()
        self._slots = 0     # backend calls in flight at once: the executor's capacity, settled at the first run
        self.gate = gate if gate is not None and gate.enabled else None   # None: no checks, one take
        self._limits: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    @property
    def slots(self) -> int:
        """Backend calls in flight at once: the executor's capacity, settled on first use (a run's start)."""
        if not self._slots:
            self._slots = self.executor.capacity(self.workers)
        return self._slots

    def backend(self, name: str) -> backends.Backend:
        """This engine's view of backend *name*: shared models, this render's settings."""
        return self.keys.backend(name)

    def emit(self, event: ProgressEvent) -> None:
        """Tell the progress callback and the listener (on the thread that runs the engine)."""
        if self.progress is not None:
            self.progress(event.done, event.total, event.message)
        if self.listener is not None:
            self.listener(event)

    # ------------------------------------------------------------ keys and lookups
    def cache_key(self, job: Job) -> str:
        return self.keys.cache_key(job)

    def lookup(self, jobs: Sequence[Job]) -> list[bool]:
        """For each job, whether its audio is in the cache (nothing is decoded)."""
        return self.keys.lookup(jobs, self.cache)

    # ------------------------------------------------------------ the run
    def run(self, jobs: Sequence[Job]) -> EngineResult:
        """Synthesize every job; failures are collected in the result, not raised.

        An interrupt (KeyboardInterrupt) cancels the lines not yet started, lets the
        ones in flight finish (and be cached), and propagates.
        """
        return self._execute(_Run(jobs, self.emit))

    def run_groups(self, groups: Sequence[Sequence[Job]], on_group: Callable[[int, EngineResult], None]) -> None:
        """Several scripts' jobs run as one; *on_group(i, result)* when ``groups[i]`` is done (:class:`_Groups`)."""
        self._execute(_Run([job for group in groups for job in group], self.emit, _Groups(groups, on_group)))

    def stream(self, jobs: Sequence[Job], *, window: int | None = None, ramp: bool = False) -> Stream:
        """Synthesize *jobs* as :meth:`run` does, handing out ``(index, outcome)`` in job order as they are ready.

        Each job's outcome comes as soon as it and every job before it are done, so the
        first lines can be played (or written) while later ones are synthesized.  At most
        *window* jobs (default: four per worker, at least 16) are started beyond the last
        one handed out, earliest first: a long script's audio is never all held at once
        (a repeated line's outcome shares its first occurrence's clip until handed out).
        Failures come in their place, as failed outcomes.  Nothing starts before the first
        ``next``; stopping early (:meth:`Stream.close`, a ``with`` block, Ctrl-C) works as
        an interrupt of :meth:`run`.  Every executor streams: the calls are made from the
        engine's threads whether they run there or on a Ray cluster.  With *ramp* the first
        job starts alone, so that it comes as soon as it can (a stream being listened to),
        and the window then grows with each outcome handed out.
        """
        if window is not None and window < 1:
            raise ValueError("window must be at least 1")
        run = _Run(jobs, self.emit)
        return Stream(run, self._streamed(run, window, ramp))

    def _execute(self, run: _Run) -> EngineResult:
        from dialog_tts.synth.scheduling import steps, worker_pool

        cached, pending = _split(_units(run.jobs), self.cache, self.cache_key)
        _fit_views(self, pending)
        if cached or pending:
            lanes = _Lanes(self, partial(self._new_lane, stop=run.stop))
            lanes.add(pending, cached)     # the syntheses start first; cache reads go beside them
            # Ctrl-C (or a progress callback that raised): nothing new starts, the lines in
            # flight finish and are cached by their workers, and the interrupt goes on up.
            with worker_pool(self.slots, run.stop) as pool:
                for _ in steps(pool, lanes.queue, self.slots, run.collect):
                    pass
        return run.result()

    def _streamed(self, run: _Run, window: int | None,
                  ramp: bool = False) -> Generator[tuple[int, Outcome], None, None]:
        """The work of :meth:`Engine.stream`: a generator, so nothing starts before the first ``next``."""
        units = _units(run.jobs)           # in order of first appearance: admitted earliest first
        lanes = _Lanes(self, partial(self._new_lane, stop=run.stop))
        admitted = 0
        split = _splitter(self, units, ramp)

        def admit(limit: int) -> None:     # the lines whose first job is below *limit* may start
            nonlocal admitted
            start = admitted
            while admitted < len(units) and units[admitted].indices[0] < limit:
                admitted += 1
            if admitted > start:
                cached, pending = split(units[start:admitted])
                lanes.add(pending, cached, whole=False)

        def take(index: int) -> Outcome | None:
            outcome = run.outcomes[index]
            if outcome.source is Source.PENDING:
                return None
            run.outcomes[index] = replace(outcome, clip=None)   # the run keeps counters and errors, not audio
            return outcome

        from dialog_tts.synth.scheduling import in_order, steps, worker_pool

        with worker_pool(self.slots, run.stop) as pool:
            rounds = steps(pool, lanes.queue, self.slots, run.collect)
            yield from in_order(len(run.jobs), window or max(4 * self.slots, 16), admit, rounds, take, ramp=ramp)

    def _read(self, unit: _Unit, stop: threading.Event) -> _Done:
        """A cached line, decoded in the pool (beside the syntheses); synthesized if the entry went bad.

        With the gate on, the cached take is judged again by this render's checks, from the figures
        kept with it (a check not run on it before, the recognizer's, runs now on the cached audio);
        one that this render's checks would not keep is synthesized again.
        """
        cache = self.cache
        clip, known = cache.get_entry(unit.key) if cache is not None and unit.key is not None else (None, None)
        if clip is None:
            return self._run_single(unit, stop)
        if self.gate is None:
            return _Done([(unit, Outcome(clip, Source.CACHE))])
        job = unit.job
        verdict = self.gate.judge(clip, job.text, job.voice, self.backend(job.voice.backend), known)
        if not self.gate.accepts(verdict):
            log.info("%s: the cached take fails this render's checks (%s); synthesizing it again",
                     job.where(), verdict.describe())
            return self._run_single(unit, stop)
        number = known.get("take") if isinstance(known, dict) else None
        take = Take(number if isinstance(number, int) and not isinstance(number, bool) else 1, verdict)
        if _checks(take) != known:          # a check not run before: kept with the take from now on
            self._cache_put(unit, clip, take)
        quality = LineQuality((take,), take.number, warned=not verdict.passed, cached=True)
        return _Done([(unit, Outcome(clip, Source.CACHE, quality=quality))])

    def _cache_put(self, unit: _Unit, clip: Clip, take: Take | None) -> None:
        """Cache *clip*, with what the checks measured on it (*take*'s verdict)."""
        if self.cache is None:
            return
        try:
            self.cache.put(unit.key or self.cache_key(unit.job), clip, _checks(take) if take is not None else None)
        except Exception as exc:  # noqa: BLE001 - a failed write must not lose the line: it is in this run
            log.warning("could not cache %s: %s", unit.job.where(), exc)

    def _limit(self, backend: backends.Backend) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._limits.get(backend.name)
            if sem is None:
                cap = self.executor.calls(backend, self.slots)
                sem = self._limits[backend.name] = threading.BoundedSemaphore(cap)
            return sem

    def _call(self, backend: backends.Backend, where: str, tally: _Tally, stop: threading.Event,
              fn: Callable[[], object]) -> object:
        """Run *fn* within the backend's limit, retrying transient errors; counts into *tally*."""
        result: object = None
        for attempt in _retrying(self, backend, tally, where, stop):
            with attempt:
                if stop.is_set():
                    raise _Stopped("interrupted")
                tally.attempts += 1
                with self._limit(backend):
                    started = time.perf_counter()
                    try:
                        result = fn()
                    finally:
                        tally.seconds += time.perf_counter() - started
        return result

    def _run_single(self, unit: _Unit, stop: threading.Event) -> _Done:
        backend = self.backend(unit.job.voice.backend)
        tally = _Tally()

        def speak(texts: list[str], voices: list[Voice]) -> list[Clip]:
            return self.executor.call(backend, texts, voices, batch=False)

        try:
            outcome = self._takes(backend, [unit], speak, tally, stop)[0]
        except Exception as exc:  # noqa: BLE001 - one line must never take the others down
            outcome = Outcome(None, Source.FAILED, tally.attempts, tally.seconds, _as_error(exc))
        self._store(unit, outcome)
        return _Done([(unit, outcome)], tally.retries)

    def _run_batch(self, backend: backends.Backend, batch: list[_Unit], stop: threading.Event) -> _Done:
        """One batch; a failing batch is split in halves down to single lines."""
        where = batch[0].job.where() if len(batch) == 1 else f"batch of {len(batch)} lines"
        tally = _Tally()
        try:
            results = list(zip(batch, self._takes(backend, batch, partial(self.executor.call, backend, batch=True),
                                                  tally, stop)))
        except Exception as exc:  # noqa: BLE001
            if len(batch) > 1 and not isinstance(exc, _Stopped):
                log.info("%s failed (%s); splitting it in halves", where, exc)
                half = len(batch) // 2
                first, second = (self._run_batch(backend, part, stop) for part in (batch[:half], batch[half:]))
                return _Done(first.results + second.results, tally.retries + first.retries + second.retries)
            results = [(unit, Outcome(None, Source.FAILED, tally.attempts, tally.seconds, _as_error(exc)))
                       for unit in batch]
        for unit, outcome in results:
            self._store(unit, outcome)
        return _Done(results, tally.retries)

    def _takes(self, backend: backends.Backend, units: list[_Unit], speak: _Speak, tally: _Tally,
               stop: threading.Event) -> list[Outcome]:
        """*units* synthesized (one call of *speak*), each take judged by the gate, failing ones retaken.

        Take 1 is each line's own voice; take *n* is the voice ``backend.retake`` gives
        (None: the backend cannot make a different take).  Errors of the first call go
        up (the caller splits a batch); a retake that fails ends the retakes.
        """
        where = units[0].job.where() if len(units) == 1 else f"batch of {len(units)} lines"
        strict = self.gate is not None and self.gate.settings.strict
        lines = [_Takes(unit, strict) for unit in units]
        voices: list[Voice | None] = [u.job.voice for u in units]
        for take in range(1, (self.gate.takes if self.gate is not None else 1) + 1):
            todo = [(line, voice) for line, voice in zip(lines, voices) if voice is not None]
            if not todo:
                break
            started = tally.seconds
            texts, take_voices = [line.unit.job.text for line, _v in todo], [v for _line, v in todo]
            try:
                clips = _checked_clips(backend, len(todo), self._call(
                    backend, where if take == 1 else f"{where}, take {take}", tally, stop,
                    partial(speak, texts, take_voices)))
            except Exception as exc:
                if take == 1 or isinstance(exc, _Stopped):
                    raise
                log.info("%s: take %d failed (%s); keeping the takes made", where, take, _as_error(exc))
                break
            each = (tally.seconds - started) / len(todo)
            for (line, voice), clip in zip(todo, clips):
                verdict = self.gate.judge(clip, line.unit.job.text, voice, backend) if self.gate else None
                line.add(take, clip, verdict, each)
            voices = [None if line.done else backend.retake(line.unit.job.voice, take + 1) for line in lines]
        keep = self.gate is not None and self.gate.settings.keep_flagged
        return [line.outcome(tally, keep) for line in lines]

    def _new_lane(self, name: str | None, stop: threading.Event) -> Lane[_Unit, _Done]:
        """The lane of work for backend *name*'s lines (None: the cache reads)."""
        from dialog_tts.synth.scheduling import Lane

        if name is None:
            return Lane(self.workers, _one_each, lambda units: partial(self._read, units[0], stop))
        backend = self.backend(name)
        if backend.batch_size > 1:
            return Lane(self.executor.lanes(backend), partial(_batches, backend),
                        lambda units: partial(self._run_batch, backend, units, stop), full=backend.batch_size)
        return Lane(self.executor.calls(backend, self.slots), _one_each,
                    lambda units: partial(self._run_single, units[0], stop))

    def _store(self, unit: _Unit, outcome: Outcome) -> None:
        if outcome.quality is not None and outcome.quality.flagged:
            return                       # a take no check passed is not what the cache should hold
        if outcome.clip is not None:
            self._cache_put(unit, outcome.clip, outcome.quality.kept_take if outcome.quality is not None else None)


def _checks(take: Take) -> dict[str, Any]:
    """What the cache keeps with a take: its number and what its checks measured."""
    return {**take.verdict.record(), "take": take.number}


def _retrying(engine: Engine, backend: backends.Backend, tally: _Tally, where: str,
              stop: threading.Event) -> Retrying:
    """Tenacity's loop for one call: transient errors retried with backoff, none after an interrupt."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

    def before_sleep(retry_state: RetryCallState) -> None:
        tally.retries += 1
        error = retry_state.outcome.exception() if retry_state.outcome is not None else None
        wait = retry_state.next_action.sleep if retry_state.next_action is not None else 0.0
        log.info("%s: %s; retrying in %.1f s", where, error, wait)

    def pause(seconds: float) -> None:
        if engine.sleep is time.sleep:
            stop.wait(seconds)           # an interrupt ends the wait at once
        else:
            engine.sleep(seconds)

    return Retrying(
        stop=stop_after_attempt(engine.retries + 1),
        wait=wait_exponential_jitter(multiplier=engine.backoff.initial, max=engine.backoff.maximum,
                                     jitter=engine.backoff.jitter),
        retry=retry_if_exception(backend.is_transient),
        sleep=pause, reraise=True, before_sleep=before_sleep,
    )


def _units(jobs: Sequence[Job]) -> list[_Unit]:
    """The distinct syntheses among *jobs*, in order of first appearance."""
    units: dict[str, _Unit] = {}
    for i, job in enumerate(jobs):
        unit = units.get(job.identity())
        if unit is None:
            units[job.identity()] = _Unit(job, [i])
        else:
            unit.indices.append(i)
    return list(units.values())


def _split(units: list[_Unit], cache: AudioCacheLike | None,
           key_of: Callable[[Job], str]) -> tuple[list[_Unit], list[_Unit]]:
    """(units whose audio is in *cache*, units to synthesize): keys looked up, nothing decoded."""
    if cache is None:
        return [], units
    cached: list[_Unit] = []
    pending: list[_Unit] = []
    for unit in units:
        unit.key = key_of(unit.job)
        (cached if unit.key in cache else pending).append(unit)
    return cached, pending


def _splitter(engine: Engine, units: list[_Unit],
              ramp: bool) -> Callable[[list[_Unit]], tuple[list[_Unit], list[_Unit]]]:
    """How a stream splits the units it admits into (cached, to synthesize): looked up as they are
    admitted (*ramp*: a stream being listened to starts at once), or all first, the views fitted to
    the run's lines to synthesize, as :meth:`Engine.run` does."""
    if ramp:
        return lambda batch: _split(batch, engine.cache, engine.cache_key)
    cached, pending = _split(units, engine.cache, engine.cache_key)
    _fit_views(engine, pending)
    found = {id(unit) for unit in cached}
    return lambda batch: ([u for u in batch if id(u) in found], [u for u in batch if id(u) not in found])


def _fit_views(engine: Engine, pending: Sequence[_Unit]) -> None:
    """Bind the backends this run synthesizes with for the calls that can run at once.

    A backend shares the cores among the calls running together (piper: cores /
    workers onnxruntime threads each).  A run with fewer lines to synthesize than
    workers, the usual re-render after an edit, runs fewer calls, so each gets the
    cores the idle workers would have had (benchmark_enhanced.py --only edit times
    the edited line).  (Which view makes a line does not
    change its cache key: a setting that changes the audio, like hibari's threads, is
    set, not derived from the workers.)  Only in this machine's threads: on a Ray
    cluster a call's threads are the CPUs its task asks for, and one call asking for
    every core of this machine might fit no node, so the views keep the render's workers.
    """
    if not pending or engine.executor.name != "thread":
        return
    engine.keys.fit({unit.job.voice.backend for unit in pending}, min(engine.workers, len(pending)))


def _batches(backend: backends.Backend, units: list[_Unit]) -> list[list[_Unit]]:
    """A batching backend's lines: grouped (``batch_group``), sorted by length, cut into batches."""
    groups: dict[object, list[_Unit]] = defaultdict(list)
    for unit in units:
        groups[backend.batch_group(unit.job.voice)].append(unit)
    batches = []
    for group in groups.values():
        group.sort(key=lambda u: len(u.job.text))  # similar lengths pad least
        batches += [group[start:start + backend.batch_size] for start in range(0, len(group), backend.batch_size)]
    return batches


_Speak = Callable[[list[str], list[Voice]], "list[Clip]"]


def _checked_clips(backend: backends.Backend, count: int, clips: object) -> list[Clip]:
    """The backend's answer, checked, on the 24-bit grid the cache stores exactly."""
    from dialog_tts.io.audio import Clip, pcm24

    if not isinstance(clips, list) or len(clips) != count:
        raise SynthesisError(f"backend {backend.name!r} returned the wrong number of clips")
    for clip in clips:
        if not isinstance(clip, Clip):
            raise SynthesisError(f"backend {backend.name!r} returned {type(clip).__name__}, not a Clip")
    return [pcm24(clip) for clip in clips]


class _Takes:
    """One line's takes so far (kept: the best clip only)."""

    def __init__(self, unit: _Unit, strict: bool = False) -> None:
        self.unit = unit
        self.strict = strict               # --strict: a take that failed softly is no better than any other
        self.takes: list[Take] = []
        self.clip: Clip | None = None      # the best take's
        self.done = False                  # a take passed (or there is no gate)
        self.seconds = 0.0                 # backend time of its takes (its share of a batch's)

    def add(self, number: int, clip: Clip, verdict: Verdict | None, seconds: float) -> None:
        self.seconds += seconds
        if verdict is None:                # no gate: the take is the line
            self.clip, self.done = clip, True
            return
        self.takes.append(Take(number, verdict, seconds))
        if best_take(self.takes, self.strict).number == number:
            self.clip = clip
        self.done = verdict.passed

    def outcome(self, tally: _Tally, keep_flagged: bool) -> Outcome:
        seconds = self.seconds
        if not self.takes:
            return Outcome(self.clip, Source.SYNTHESIZED, tally.attempts, seconds)
        best = best_take(self.takes, self.strict)
        acceptable = best.verdict.acceptable(self.strict)
        quality = LineQuality(tuple(self.takes), best.number, flagged=not acceptable and keep_flagged,
                              warned=acceptable and not best.verdict.passed)
        if acceptable or keep_flagged:
            return Outcome(self.clip, Source.SYNTHESIZED, tally.attempts, seconds, quality=quality)
        error = QualityFailed(f"no take passed the quality gate ({len(self.takes)} taken; "
                              f"best, take {best.number}: {best.verdict.describe()})")
        return Outcome(None, Source.FAILED, tally.attempts, seconds, error, quality)


@dataclass
class _Tally:
    attempts: int = 0
    seconds: float = 0.0
    retries: int = 0


def _as_error(exc: BaseException) -> BaseException:
    """Backend exceptions as DialogTTSError (their own when they are one)."""
    if isinstance(exc, DialogTTSError):
        return exc
    return SynthesisError(f"{type(exc).__name__}: {exc}")


class _Run:
    """One run's outcomes, counters and progress: used only by the thread that called :meth:`Engine.run`."""

    def __init__(self, jobs: Sequence[Job], emit: Callable[[ProgressEvent], None],
                 groups: _Groups | None = None) -> None:
        self.jobs = jobs
        self.emit = emit
        self.groups = groups
        self.outcomes = [Outcome() for _ in jobs]
        self.stats = Stats(lines=len(jobs))
        self.done = 0
        self.stop = threading.Event()    # set on an interrupt: workers start no new backend call

    def collect(self, done: _Done) -> None:
        self.stats.retries += done.retries
        for unit, outcome in done.results:
            self.finish(unit, outcome)

    def finish(self, unit: _Unit, outcome: Outcome) -> None:
        first, *repeats = unit.indices
        self.outcomes[first] = outcome
        for i in repeats:
            self.outcomes[i] = replace(outcome, source=Source.REPEAT if outcome.clip is not None else Source.FAILED,
                                       attempts=0, seconds=0.0)
        for i in unit.indices:
            self.stats.count(self.outcomes[i].source)
        self.stats.count_takes(outcome.quality)
        self.done += len(unit.indices)
        if outcome.source is Source.CACHE:
            detail = "cached"
        elif outcome.source is Source.FAILED:
            detail = f"failed: {outcome.error}"
        else:
            detail = f"synthesized in {outcome.seconds:.2f} s" + (
                f" ({outcome.attempts} attempts)" if outcome.attempts > 1 else "")
            if outcome.quality is not None and outcome.quality.retakes:
                detail += f", take {outcome.quality.kept} of {len(outcome.quality.takes)} kept"
        log.info("%s: %s", unit.job.where(), detail)
        if outcome.quality is not None and outcome.quality.flagged:
            log.warning("%s: kept, flagged: no take passed the checks (%s)", unit.job.where(),
                        "; ".join(outcome.quality.flags()))
        elif outcome.quality is not None and outcome.quality.warned:
            log.warning("%s: kept with a warning: it failed only soft checks (%s)%s", unit.job.where(),
                        "; ".join(outcome.quality.warnings()), " (cached)" if outcome.quality.cached else "")
        self.emit(ProgressEvent(self.done, len(self.jobs), unit.job.where(), replace(self.stats)))
        if self.groups is not None:
            self.groups.finished(unit.indices, self)

    def result(self) -> EngineResult:
        failures = [Failure(self.jobs[i], o.error) for i, o in enumerate(self.outcomes) if o.error is not None]
        failures.sort(key=lambda f: (f.job.path, f.job.line_no))
        return EngineResult(self.outcomes, failures, self.stats)


class _Groups:
    """Which scripts of a :meth:`Engine.run_groups` run are done: each one's result, once, when it is.

    Their jobs run as one (one schedule, one deduplication); *on_group(i, result)* is called on
    the run loop's thread as soon as every job of ``groups[i]`` is done (an empty group at once).
    *on_group* should catch its own errors: one it raises stops the run, as an interrupt does.
    """

    def __init__(self, groups: Sequence[Sequence[Job]], on_group: Callable[[int, EngineResult], None]) -> None:
        self.on_group = on_group
        for i, group in enumerate(groups):
            if not group:
                on_group(i, EngineResult([]))
        self.starts: list[int] = []
        self.sizes = [len(group) for group in groups]
        self.left: list[int] = []
        self.owner: list[int] = []          # job index -> group index
        for i, group in enumerate(groups):
            self.starts.append(len(self.owner))
            self.left.append(len(group))
            self.owner += [i] * len(group)

    def finished(self, indices: list[int], run: _Run) -> None:
        done = []
        for index in indices:
            group = self.owner[index]
            self.left[group] -= 1
            if self.left[group] == 0:
                done.append(group)
        for group in done:
            start = self.starts[group]
            outcomes = run.outcomes[start:start + self.sizes[group]]
            stats = Stats(lines=len(outcomes))
            for outcome in outcomes:
                stats.count(outcome.source)
                stats.retries += max(0, outcome.attempts - 1)
            failures = [Failure(run.jobs[start + i], o.error) for i, o in enumerate(outcomes) if o.error is not None]
            self.on_group(group, EngineResult(outcomes, failures, stats))


class _Lanes:
    """A run's lanes of work, one per backend and one for cache reads, filled as its lines are admitted:
    all at once by :meth:`Engine.run`, a window at a time by :meth:`Engine.stream`.

    A batching backend's lines go in batches (as many at once as the executor has
    lanes), others one by one within the backend's ``max_concurrency``; a backend's
    voices are prepared (clone prompts) before its first lines with them are queued.
    """

    def __init__(self, engine: Engine, new_lane: Callable[[str | None], Lane[_Unit, _Done]]) -> None:
        self.engine = engine
        self.new_lane = new_lane
        self.queue: deque[Lane[_Unit, _Done]] = deque()
        self._by_name: dict[str | None, Lane[_Unit, _Done]] = {}     # None: the cache reads
        self._prepared: set[tuple[str, Voice]] = set()

    def add(self, pending: list[_Unit], cached: Sequence[_Unit] = (), *, whole: bool = True) -> None:
        """Queue *pending* to be synthesized and *cached* to be read; *whole*: no partial batch held back."""
        singles: dict[str, list[_Unit]] = defaultdict(list)
        batched: dict[str, list[_Unit]] = defaultdict(list)
        for unit in pending:
            backend = self.engine.backend(unit.job.voice.backend)
            (batched if backend.batch_size > 1 else singles)[backend.name].append(unit)
        for name, units in {**singles, **batched}.items():   # per-voice state first (clone prompts)
            self._prepare(name, units)
        for name, units in [*batched.items(), *singles.items()]:
            self._lane(name).add(units, whole=whole)
        if cached:
            self._lane(None).add(list(cached), whole=whole)

    def _prepare(self, name: str, units: list[_Unit]) -> None:
        engine = self.engine
        voices = [u.job.voice for u in units if (name, u.job.voice) not in self._prepared]
        if voices:
            engine.executor.prepare(engine.backend(name), voices, engine.cache)
            self._prepared.update((name, voice) for voice in voices)

    def _lane(self, name: str | None) -> Lane[_Unit, _Done]:
        lane = self._by_name.get(name)
        if lane is None:
            lane = self._by_name[name] = self.new_lane(name)
            self.queue.append(lane)
        return lane

def _one_each(units: list[_Unit]) -> list[list[_Unit]]:
    return [[unit] for unit in units]


class Stream:
    """What :meth:`Engine.stream` returns: an iterator of ``(index, outcome)``, in job order.

    ``stats`` and ``failures`` are the run's so far, final once the iterator is exhausted.
    To stop early, :meth:`close` it or use it in a ``with`` block: the lines not started
    are cancelled, those in flight finish (and are cached), and no worker thread is left.
    """

    def __init__(self, run: _Run, outcomes: Generator[tuple[int, Outcome], None, None]) -> None:
        self._run = run
        self._outcomes = outcomes

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> tuple[int, Outcome]:
        return next(self._outcomes)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._outcomes.close()

    @property
    def stats(self) -> Stats:
        return self._run.stats

    @property
    def failures(self) -> list[Failure]:
        return self._run.result().failures
