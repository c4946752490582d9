"""Backend views that travel to other processes (Ray workers), and the one call a unit of work makes.

A view (:meth:`Backend.bind`) holds locks and loaded models, which do not pickle;
what travels is a :class:`ViewRef`: the backend's name, the view's settings
(:meth:`Backend.portable_settings`) and, for a backend registered at run time, its
factory.  The worker builds the same view through its own registry, once per
process, so its models stay loaded from one call to the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    from dialog_tts.backends.base import Backend
    from dialog_tts.io.audio import Clip
    from dialog_tts.script.voice import Voice


def run_call(view: Backend, texts: Sequence[str], voices: Sequence[Voice], *, batch: bool) -> list[Any]:
    """The one backend call of a unit of work (the same wherever it runs)."""
    if batch:
        return list(view.synthesize_batch(list(texts), list(voices)))
    return [view.synthesize(texts[0], voices[0])]


@dataclass(frozen=True)
class ViewRef:
    """A backend view as it travels to another process: rebuilt there by :func:`view_of`.

    *factory* is the backend's factory when it was registered at run time
    (:func:`dialog_tts.backends.register`, e.g. a plugin class or a test fake): it
    travels by reference, so its module must be importable on the workers.
    """

    backend: str
    settings: tuple[tuple[str, Any], ...]
    workers: int
    factory: Callable[[], Backend] | None = None

    @classmethod
    def of(cls, view: Backend) -> ViewRef:
        from dialog_tts import backends

        return cls(view.name, tuple(sorted(view.portable_settings().items())), view.workers,
                   backends.registered_factory(view.name))


_views: dict[ViewRef, Backend] = {}


def view_of(ref: ViewRef) -> Backend:
    """The view *ref* describes, built once per process (its models shared through the registry)."""
    view = _views.get(ref)
    if view is None:
        from dialog_tts import backends

        if ref.factory is not None and backends.registered_factory(ref.backend) is not ref.factory:
            backends.register(ref.backend, ref.factory)
        view = _views[ref] = backends.get_backend(ref.backend).bind(dict(ref.settings), workers=ref.workers)
    return view


def run_ref(ref: ViewRef, texts: Sequence[str], voices: Sequence[Voice], batch: bool) -> list[Clip]:
    """A unit of work on a cluster worker: the view rebuilt from *ref*, then the call."""
    return run_call(view_of(ref), texts, voices, batch=batch)
