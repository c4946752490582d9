"""Where the engine's backend calls run: threads of this process, or a Ray cluster.

The engine (dialog_tts/synth/engine.py) owns every rule of a run: deduplication, the cache
(on the driver: a cached line never reaches an executor), per-backend caps, batching,
retries with backoff, failure isolation, progress and the report.  An executor only
runs one unit of work at a time for it: "synthesize these lines with this backend
view", one line or one batch, and says how much it can run at once.

``thread`` (the default) calls the view in the engine's worker thread.  ``ray``
(:mod:`dialog_tts.synth.ray_executor`, imported only when asked for) sends the call to a
Ray cluster; a view travels there as a :class:`~dialog_tts.synth.portable.ViewRef` (backend
name and settings), because views hold locks and loaded models, and is rebuilt on the
worker through the registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

from dialog_tts.backends.base import usable_cores
from dialog_tts.errors import InputError
from dialog_tts.synth.portable import run_call

if TYPE_CHECKING:
    from dialog_tts.backends.base import Backend
    from dialog_tts.script.voice import Voice

#: The executors ``--executor`` takes.
EXECUTORS = ("thread", "ray")


class Executor(Protocol):
    """What the engine needs of an executor."""

    name: str

    def capacity(self, workers: int) -> int:
        """Backend calls the engine keeps in flight at once (``workers``: the render's setting)."""

    def lanes(self, view: Backend) -> int:
        """Batches of a batching backend that may run at once."""

    def calls(self, view: Backend, slots: int) -> int:
        """Calls of *view* that may run at once, of the engine's *slots*."""

    def prepare(self, view: Backend, voices: Sequence[Voice], cache: object) -> None:
        """Per-voice state before synthesis (see :meth:`Backend.prepare`)."""

    def call(self, view: Backend, texts: Sequence[str], voices: Sequence[Voice], *, batch: bool) -> list[Any]:
        """Synthesize *texts*: one :meth:`~Backend.synthesize` call, or with *batch* one
        :meth:`~Backend.synthesize_batch`; returns what the backend returned, as a list."""

    def close(self) -> None:
        """Release what the executor holds (a cluster connection, actors)."""


class ThreadExecutor:
    """The backend calls run in the engine's own worker threads."""

    name = "thread"

    def capacity(self, workers: int) -> int:
        return workers

    def lanes(self, view: Backend) -> int:
        return 1        # one batch at a time: a GPU model's forward pass is not thread-safe

    def calls(self, view: Backend, slots: int) -> int:
        """The backend's cap; a backend whose calls keep cores busy (``cpu_bound``) runs no more of them
        than this machine's cores hold, because more calls than cores only slow each other down."""
        cap = min(view.max_concurrency or slots, slots)
        if view.cpu_bound:
            cap = min(cap, max(1, usable_cores() // max(1, view.cpus_per_call)))
        return cap

    def prepare(self, view: Backend, voices: Sequence[Voice], cache: object) -> None:
        view.prepare(voices, cache)

    def call(self, view: Backend, texts: Sequence[str], voices: Sequence[Voice], *, batch: bool) -> list[Any]:
        return run_call(view, texts, voices, batch=batch)

    def close(self) -> None:
        pass


def make_executor(name: str, *, address: str | None = None) -> Executor:
    """The executor called *name* (``thread`` or ``ray``); InputError for others or a missing ray."""
    if name == "thread":
        return ThreadExecutor()
    if name == "ray":
        from importlib.util import find_spec

        if find_spec("ray") is None:
            raise InputError("--executor ray needs Ray: pip install 'dialog-tts[ray]'")
        from dialog_tts.synth.ray_executor import RayExecutor

        return RayExecutor(address)
    raise InputError(f"unknown executor {name!r} (executors: {', '.join(EXECUTORS)})")
