"""The engine: the only place with concurrency.

Jobs (text + resolved voice + where they came from) go to a thread pool; each
distinct (text, synthesis settings) is synthesized once; a backend's
``max_concurrency`` caps how many of its calls run at once; results come back
in job order whatever order they finish in.  One job's failure never stops the
others: failures are collected and reported together.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import backends
from .audio import Clip
from .errors import DialogTTSError, SynthesisError
from .voices import Voice

ProgressCallback = Callable[[int, int, str], None]


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


@dataclass
class Failure:
    job: Job
    error: BaseException

    def __str__(self) -> str:
        return f"{self.job.where()}: {self.error}"


class SynthesisFailed(DialogTTSError):
    """Some lines could not be synthesized; the others were."""

    def __init__(self, failures: list[Failure], total: int) -> None:
        self.failures = failures
        lines = "\n".join(f"  {f}" for f in failures)
        super().__init__(f"{len(failures)} of {total} lines failed:\n{lines}")


@dataclass
class EngineResult:
    clips: list[Clip | None]                 # per job, None where it failed
    failures: list[Failure] = field(default_factory=list)
    calls: int = 0                           # backend calls made (distinct jobs)


class Engine:
    """Synthesizes jobs over a thread pool within each backend's limits."""

    def __init__(self, workers: int = 4, progress: ProgressCallback | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.progress = progress
        self._limits: dict[str, threading.Semaphore] = {}

    def _limit(self, backend: backends.Backend) -> threading.Semaphore:
        cap = backend.max_concurrency or self.workers
        return self._limits.setdefault(backend.name, threading.BoundedSemaphore(min(cap, self.workers)))

    def run(self, jobs: Sequence[Job]) -> EngineResult:
        """Synthesize every job; failures are collected in the result, not raised."""
        unique: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            unique.setdefault(job.identity(), []).append(i)
        clips: list[Clip | None] = [None] * len(jobs)
        failures: list[Failure] = []
        done = 0
        lock = threading.Lock()

        def work(indices: list[int]) -> None:
            nonlocal done
            job = jobs[indices[0]]
            clip: Clip | None = None
            error: BaseException | None = None
            try:
                backend = backends.get_backend(job.voice.backend or backends.DEFAULT_BACKEND)
                with self._limit(backend):
                    clip = backend.synthesize(job.text, job.voice)
            except DialogTTSError as exc:
                error = exc
            except Exception as exc:  # a backend bug must not take the other lines down
                error = SynthesisError(f"{type(exc).__name__}: {exc}")
            with lock:
                for i in indices:
                    clips[i] = clip
                if error is not None:
                    failures.append(Failure(job, error))
                done += len(indices)
                if self.progress:
                    self.progress(done, len(jobs), job.where())

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dialog-tts") as pool:
            for future in [pool.submit(work, idx) for idx in unique.values()]:
                future.result()
        failures.sort(key=lambda f: f.job.line_no)
        return EngineResult(clips, failures, calls=len(unique))
