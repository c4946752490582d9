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
5. never lets one line's failure stop the others: results and failures come
   back per job, in job order, and every success is cached as it arrives.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Protocol, Sequence

from . import backends
from .audio import Clip, pcm24
from .errors import DialogTTSError, SynthesisError
from .voice import Voice

log = logging.getLogger("dialog_tts")

ProgressCallback = Callable[[int, int, str], None]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Job:
    """One line to synthesize, and where it came from (for messages)."""

    text: str
    voice: Voice
    path: str = "<script>"
    line_no: int = 0
    speaker: str = ""

    def where(self) -> str:
        words = self.text if len(self.text) <= 30 else self.text[:29].rstrip() + "…"
        return f"{self.path}:{self.line_no} {self.speaker} \"{words}\""

    def identity(self) -> str:
        """Two jobs with the same identity produce the same audio."""
        return json.dumps([self.voice.synthesis_fields(), self.text], sort_keys=True, ensure_ascii=False)


class AudioCacheLike(Protocol):
    """What the engine needs of a cache (see :class:`dialog_tts.cache.AudioCache`)."""

    def get(self, key: str) -> Clip | None: ...
    def put(self, key: str, clip: Clip) -> None: ...
    def __contains__(self, key: str) -> bool: ...


@dataclass(frozen=True)
class Backoff:
    """Retry waits: ``initial * 2**n`` seconds (capped at ``maximum``) plus up to ``jitter``."""

    initial: float = 1.0
    maximum: float = 30.0
    jitter: float = 0.5


@dataclass
class Outcome:
    """What happened to one job."""

    clip: Clip | None = None
    source: str = "pending"      # "synthesized", "cache", "repeat" (same as an earlier job) or "failed"
    attempts: int = 0            # backend calls made for it (0 when cached)
    seconds: float = 0.0         # time spent in the backend, retries included
    error: BaseException | None = None


@dataclass
class Stats:
    lines: int = 0
    synthesized: int = 0
    cached: int = 0
    repeated: int = 0
    retries: int = 0
    failed: int = 0


class Progress(str):
    """The message given to progress callbacks: a str, with the run's counters as ``.stats``."""

    stats: Stats


@dataclass
class Failure:
    job: Job
    error: BaseException

    def __str__(self) -> str:
        return f"{self.job.where()}: {self.error}"


class SynthesisFailed(DialogTTSError):
    """Some lines could not be synthesized; the others were (and are cached)."""

    def __init__(self, failures: list[Failure], total: int) -> None:
        self.failures = failures
        lines = "\n".join(f"  {f}" for f in failures)
        super().__init__(f"{len(failures)} of {total} lines failed (the others are cached; "
                         f"run again to retry only these):\n{lines}")


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
    outcome: Outcome = field(default_factory=Outcome)


class Engine:
    """Synthesizes jobs over a thread pool, with a cache, retries and per-backend limits."""

    def __init__(self, workers: int = 4, *, cache: AudioCacheLike | None = None, retries: int = 2,
                 backoff: Backoff = Backoff(), sleep: Sleep = time.sleep,
                 progress: ProgressCallback | None = None,
                 backend_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if retries < 0:
            raise ValueError("retries must not be negative")
        self.workers = workers
        self.cache = cache
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self.progress = progress
        self.backend_options = dict(backend_options or {})
        self._backends: dict[str, backends.Backend] = {}
        self._limits: dict[str, threading.BoundedSemaphore] = {}
        self._fingerprints: dict[tuple[str, Voice], str] = {}
        self._lock = threading.Lock()

    def backend(self, name: str) -> backends.Backend:
        """This engine's view of backend *name*: shared models, this render's settings."""
        with self._lock:
            view = self._backends.get(name)
            if view is None:
                view = self._backends[name] = backends.get_backend(name).bind(
                    self.backend_options.get(name, {}), workers=self.workers)
            return view

    # ------------------------------------------------------------ keys and lookups
    def cache_key(self, job: Job) -> str:
        from .cache import make_key

        backend = self.backend(job.voice.backend)
        fp_key = (backend.name, job.voice)
        fingerprint = self._fingerprints.get(fp_key)
        if fingerprint is None:
            fingerprint = self._fingerprints[fp_key] = backend.fingerprint(job.voice)
        return make_key(backend.name, fingerprint, job.voice.synthesis_fields(), job.text)

    def lookup(self, jobs: Sequence[Job]) -> list[bool]:
        """For each job, whether its audio is in the cache (nothing is decoded)."""
        if self.cache is None:
            return [False] * len(jobs)
        return [self.cache_key(job) in self.cache for job in jobs]

    # ------------------------------------------------------------ the run
    def run(self, jobs: Sequence[Job]) -> EngineResult:
        """Synthesize every job; failures are collected in the result, not raised."""
        stats = Stats(lines=len(jobs))
        outcomes = [Outcome() for _ in jobs]
        units: dict[str, _Unit] = {}
        for i, job in enumerate(jobs):
            unit = units.get(job.identity())
            if unit is None:
                units[job.identity()] = _Unit(job, [i])
            else:
                unit.indices.append(i)
        state = _RunState(len(jobs), stats, self.progress)

        pending: list[_Unit] = []
        for unit in units.values():
            clip = None
            if self.cache is not None:
                unit.key = self.cache_key(unit.job)
                clip = self.cache.get(unit.key)
            if clip is not None:
                unit.outcome = Outcome(clip, "cache")
                self._finish(unit, outcomes, state)
            else:
                pending.append(unit)

        if pending:
            self._synthesize(pending, outcomes, state)
        failures = [Failure(jobs[i], o.error) for i, o in enumerate(outcomes) if o.error is not None]
        failures.sort(key=lambda f: (f.job.path, f.job.line_no))
        return EngineResult(outcomes, failures, stats)

    def _synthesize(self, pending: list[_Unit], outcomes: list[Outcome], state: "_RunState") -> None:
        from concurrent.futures import ThreadPoolExecutor

        singles: dict[str, list[_Unit]] = defaultdict(list)
        batched: dict[str, list[_Unit]] = defaultdict(list)
        for unit in pending:
            backend = self.backend(unit.job.voice.backend)
            (batched if backend.batch_size > 1 else singles)[backend.name].append(unit)
        for name, units in {**singles, **batched}.items():   # per-voice state first (clone prompts)
            self.backend(name).prepare([u.job.voice for u in units], self.cache)

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dialog-tts") as pool:
            futures = [pool.submit(self._run_batches, name, units, outcomes, state)
                       for name, units in batched.items()]
            # interleave backends so that one capped backend does not hold up the others
            queues = list(singles.values())
            while any(queues):
                for queue in queues:
                    if queue:
                        futures.append(pool.submit(self._run_single, queue.pop(0), outcomes, state))
            for future in futures:
                future.result()

    def _limit(self, backend: backends.Backend) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._limits.get(backend.name)
            if sem is None:
                cap = min(backend.max_concurrency or self.workers, self.workers)
                sem = self._limits[backend.name] = threading.BoundedSemaphore(cap)
            return sem

    def _retrying(self, backend: backends.Backend, state: "_RunState", where: str):  # type: ignore[no-untyped-def]
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

        def before_sleep(retry_state) -> None:  # type: ignore[no-untyped-def]
            state.add_retry()
            error = retry_state.outcome.exception()
            log.info("%s: %s; retrying in %.1f s", where, error, retry_state.next_action.sleep)

        return Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential_jitter(multiplier=self.backoff.initial, max=self.backoff.maximum,
                                         jitter=self.backoff.jitter),
            retry=retry_if_exception(backend.is_transient),
            sleep=self.sleep, reraise=True, before_sleep=before_sleep,
        )

    def _call(self, backend: backends.Backend, where: str, state: "_RunState", tally: "_Tally",
              fn: Callable[[], object]) -> object:
        """Run *fn* within the backend's limit, retrying transient errors; counts into *tally*."""
        result: object = None
        for attempt in self._retrying(backend, state, where):
            with attempt:
                tally.attempts += 1
                with self._limit(backend):
                    started = time.perf_counter()
                    try:
                        result = fn()
                    finally:
                        tally.seconds += time.perf_counter() - started
        return result

    def _run_single(self, unit: _Unit, outcomes: list[Outcome], state: "_RunState") -> None:
        backend = self.backend(unit.job.voice.backend)
        tally = _Tally()
        try:
            clip = self._call(backend, unit.job.where(), state, tally,
                              lambda: backend.synthesize(unit.job.text, unit.job.voice))
            if not isinstance(clip, Clip):
                raise SynthesisError(f"backend {backend.name!r} returned {type(clip).__name__}, not a Clip")
            unit.outcome = Outcome(pcm24(clip), "synthesized", tally.attempts, tally.seconds)
        except Exception as exc:  # noqa: BLE001 - one line must never take the others down
            unit.outcome = Outcome(None, "failed", tally.attempts, tally.seconds, _as_error(exc))
        self._store(unit)
        self._finish(unit, outcomes, state)

    def _run_batches(self, name: str, units: list[_Unit], outcomes: list[Outcome], state: "_RunState") -> None:
        """All of one batching backend's lines, on this one worker: grouped, bucketed, batched."""
        backend = self.backend(name)
        groups: dict[object, list[_Unit]] = defaultdict(list)
        for unit in units:
            groups[backend.batch_group(unit.job.voice)].append(unit)
        for group in groups.values():
            group.sort(key=lambda u: len(u.job.text))  # similar lengths pad least
            for start in range(0, len(group), backend.batch_size):
                self._run_batch(backend, group[start:start + backend.batch_size], outcomes, state)

    def _run_batch(self, backend: backends.Backend, batch: list[_Unit], outcomes: list[Outcome],
                   state: "_RunState") -> None:
        where = batch[0].job.where() if len(batch) == 1 else f"batch of {len(batch)} lines"
        tally = _Tally()
        try:
            clips = self._call(
                backend, where, state, tally,
                lambda: backend.synthesize_batch([u.job.text for u in batch], [u.job.voice for u in batch]))
            if not isinstance(clips, list) or len(clips) != len(batch):
                raise SynthesisError(f"backend {backend.name!r} returned the wrong number of clips")
        except Exception as exc:  # noqa: BLE001
            if len(batch) > 1:
                log.info("%s failed (%s); splitting it in halves", where, exc)
                half = len(batch) // 2
                self._run_batch(backend, batch[:half], outcomes, state)
                self._run_batch(backend, batch[half:], outcomes, state)
                return
            unit = batch[0]
            unit.outcome = Outcome(None, "failed", tally.attempts, tally.seconds, _as_error(exc))
            self._store(unit)
            self._finish(unit, outcomes, state)
            return
        for unit, clip in zip(batch, clips):
            unit.outcome = Outcome(pcm24(clip), "synthesized", tally.attempts, tally.seconds / len(batch))
            self._store(unit)
            self._finish(unit, outcomes, state)

    def _store(self, unit: _Unit) -> None:
        if self.cache is not None and unit.outcome.clip is not None:
            try:
                self.cache.put(unit.key or self.cache_key(unit.job), unit.outcome.clip)
            except Exception as exc:  # a full disk must not lose the line: it is still in this run
                log.warning("could not cache %s: %s", unit.job.where(), exc)

    def _finish(self, unit: _Unit, outcomes: list[Outcome], state: "_RunState") -> None:
        first, *repeats = unit.indices
        outcomes[first] = unit.outcome
        for i in repeats:
            outcomes[i] = replace(unit.outcome, source="repeat" if unit.outcome.clip is not None else "failed",
                                  attempts=0, seconds=0.0)
        state.done(unit, outcomes)


@dataclass
class _Tally:
    attempts: int = 0
    seconds: float = 0.0


def _as_error(exc: BaseException) -> BaseException:
    """Backend exceptions as DialogTTSError (their own when they are one)."""
    if isinstance(exc, DialogTTSError):
        return exc
    return SynthesisError(f"{type(exc).__name__}: {exc}")


class _RunState:
    """Counters and progress reporting, shared by the worker threads."""

    def __init__(self, total: int, stats: Stats, progress: ProgressCallback | None) -> None:
        self.total = total
        self.stats = stats
        self.progress = progress
        self.count = 0
        self.lock = threading.Lock()

    def add_retry(self) -> None:
        with self.lock:
            self.stats.retries += 1

    def done(self, unit: _Unit, outcomes: list[Outcome]) -> None:
        with self.lock:
            for i in unit.indices:
                source = outcomes[i].source
                if source == "failed":
                    self.stats.failed += 1
                elif source == "cache":
                    self.stats.cached += 1
                elif source == "repeat":
                    self.stats.repeated += 1
                else:
                    self.stats.synthesized += 1
            self.count += len(unit.indices)
            o = unit.outcome
            detail = {"cache": "cached", "failed": f"failed: {o.error}"}.get(
                o.source, f"synthesized in {o.seconds:.2f} s" + (f" ({o.attempts} attempts)" if o.attempts > 1 else ""))
            log.info("%s: %s", unit.job.where(), detail)
            if self.progress is not None:
                message = Progress(unit.job.where())
                message.stats = replace(self.stats)
                self.progress(self.count, self.total, message)
