"""A render's views of its backends, and its jobs' cache keys.

A view is a backend bound to one render's settings and worker count
(:meth:`Backend.bind`); a job's cache key is the backend's name and
fingerprint, the voice's synthesis fields and the text (:func:`cache.make_key`).
The engine looks every job up by these keys before it synthesizes anything,
and a dry run (``--dry-run``, :meth:`Renderer.plan`) needs nothing else: so
this module holds them, and a dry run loads neither the engine nor its
scheduler (``dialog-tts --dry-run`` is 4x a bare ``python -c pass`` at most,
issue 13).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from dialog_tts import backends
from dialog_tts.script.voice import Voice

if TYPE_CHECKING:
    from dialog_tts.synth.jobs import Job


class CacheLike(Protocol):
    """What a lookup needs of a cache (see :class:`dialog_tts.synth.cache.AudioCache`)."""

    def __contains__(self, key: str) -> bool: ...


class Keys:
    """One render's backend views (each bound for *workers* calls at once) and its jobs' cache keys."""

    def __init__(self, workers: int, backend_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.workers = workers
        self.backend_options = dict(backend_options or {})
        self._views: dict[str, backends.Backend] = {}
        self._fingerprints: dict[tuple[str, Voice], str] = {}
        self._lock = threading.Lock()

    def backend(self, name: str) -> backends.Backend:
        """The view of backend *name*: shared models, this render's settings."""
        with self._lock:
            view = self._views.get(name)
            if view is None:
                view = self._views[name] = self._bind(name, self.workers)
            return view

    def fit(self, names: Iterable[str], workers: int) -> None:
        """Bind the views of backends *names* for *workers* calls at once (see ``engine._fit_views``)."""
        with self._lock:
            for name in names:
                view = self._views.get(name)
                if view is None or view.workers != workers:
                    self._views[name] = self._bind(name, workers)

    def _bind(self, name: str, workers: int) -> backends.Backend:
        return backends.get_backend(name).bind(self.backend_options.get(name, {}), workers=workers)

    def cache_key(self, job: Job) -> str:
        """The key of *job*'s audio in the cache."""
        from dialog_tts.synth.cache import make_key

        backend = self.backend(job.voice.backend)
        fp_key = (backend.name, job.voice)
        fingerprint = self._fingerprints.get(fp_key)
        if fingerprint is None:
            fingerprint = self._fingerprints[fp_key] = backend.fingerprint(job.voice)
        return make_key(backend.name, fingerprint, job.voice.synthesis_fields(), job.text)

    def lookup(self, jobs: Sequence[Job], cache: CacheLike | None) -> list[bool]:
        """For each job, whether its audio is in *cache* (nothing is decoded)."""
        if cache is None:
            return [False] * len(jobs)
        keys = [self.cache_key(job) for job in jobs]
        peek = getattr(cache, "peek", None)     # AudioCache: without opening diskcache
        return list(peek(keys)) if peek is not None else [key in cache for key in keys]
