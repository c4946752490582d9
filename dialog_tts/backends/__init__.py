"""The backend registry: every backend is reached through here, by name.

Built-in backends are registered by module path and imported only when first
used; third-party ones come from the ``dialog_tts.backends`` entry-point group
(``name = "package.module:BackendClass"``).  :func:`register` adds one at run
time (tests register fakes this way).
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import replace
from typing import Callable

from dialog_tts.backends.base import Backend, Setting, VoiceInfo
from dialog_tts.defaults import DEFAULT_BACKEND
from dialog_tts.errors import DialogTTSError, UnknownBackendError, UnknownVoiceError, VoiceSpecError
from dialog_tts.script.voice import COMMON_KEYS, Voice, close_matches

__all__ = [
    "DEFAULT_BACKEND",
    "Backend",
    "Setting",
    "VoiceInfo",
    "available",
    "close_all",
    "get_backend",
    "new_backend",
    "register",
    "registered_factory",
    "rescan",
    "resolve_voice",
    "target",
    "unregister",
]

ENTRY_POINT_GROUP = "dialog_tts.backends"

_BUILTINS: dict[str, str] = {
    "piper": "dialog_tts.backends.piper:PiperBackend",
    "hibari": "dialog_tts.backends.hibari:HibariBackend",
    "espeak": "dialog_tts.backends.espeak:EspeakBackend",
    "kokoro": "dialog_tts.backends.kokoro:KokoroBackend",
    "edge": "dialog_tts.backends.edge:EdgeBackend",
    "qwen": "dialog_tts.backends.qwen:QwenBackend",
}
#: Plugins found in the ``dialog_tts.backends`` entry points (a built-in's name stays the built-in's).
_plugins: dict[str, str] = {}
_factories: dict[str, Callable[[], Backend]] = {}
_instances: dict[str, Backend] = {}
_lock = threading.RLock()
_entry_points_loaded = False


def register(name: str, factory: Callable[[], Backend]) -> None:
    """Register *factory* (a Backend class or callable) under *name*, replacing any other."""
    with _lock:
        _factories[name] = factory
        old = _instances.pop(name, None)
    if old is not None:
        old.close()


def registered_factory(name: str) -> Callable[[], Backend] | None:
    """The factory :func:`register` was given for *name* (None for built-ins and plugins)."""
    with _lock:
        return _factories.get(name)


def unregister(name: str) -> None:
    with _lock:
        _factories.pop(name, None)
        old = _instances.pop(name, None)
    if old is not None:
        old.close()


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    from dialog_tts.dists import entry_point_targets

    for name, value in entry_point_targets(ENTRY_POINT_GROUP).items():
        if name not in _BUILTINS:
            _plugins.setdefault(name, value)
    _entry_points_loaded = True


def rescan() -> None:
    """Forget the plugins found so far: the next lookup reads the installed packages' entry points
    again (after a plugin is installed or removed in a running process)."""
    global _entry_points_loaded
    from dialog_tts.dists import clear

    with _lock:
        clear()
        _plugins.clear()
        _entry_points_loaded = False


def target(name: str) -> str | None:
    """Where built-in or plugin backend *name* is imported from (``"module:Class"``); None for a
    name given to :func:`register` only, or not known."""
    with _lock:
        if name not in _BUILTINS and name not in _plugins:
            _load_entry_points()
        return _BUILTINS.get(name) or _plugins.get(name)


def available() -> list[str]:
    """Names of every registered backend, built-ins first."""
    with _lock:
        _load_entry_points()
        return list(dict.fromkeys([*_BUILTINS, *_plugins, *_factories]))


def _import(target: str) -> Callable[[], Backend]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _factory(name: str) -> Callable[[], Backend]:
    """What makes backend *name* (called under the lock)."""
    if name not in _factories and name not in _BUILTINS and name not in _plugins:
        _load_entry_points()  # scanning installed packages is slow: only for names not known yet
    factory = _factories.get(name)
    found = _BUILTINS.get(name) or _plugins.get(name)
    if factory is None and found is not None:
        factory = _import(found)
    if factory is None:
        raise UnknownBackendError(f"unknown backend {name!r} (available: {', '.join(available())})")
    return factory


def get_backend(name: str) -> Backend:
    """The shared instance of backend *name* (created on first use)."""
    with _lock:
        inst = _instances.get(name)
        if inst is not None:
            return inst
        inst = _instances[name] = _factory(name)()
        return inst


def new_backend(name: str) -> Backend:
    """A new instance of backend *name*, with models of its own: not the shared one that
    :func:`get_backend` gives (the caller closes it)."""
    with _lock:
        factory = _factory(name)
    return factory()


def close_all() -> None:
    """Close and forget every backend instance (their models are released)."""
    with _lock:
        olds = list(_instances.values())
        _instances.clear()
    for inst in olds:
        inst.close()


def resolve_voice(voice: Voice, default_backend: str = DEFAULT_BACKEND) -> Voice:
    """Settle *voice*'s backend and canonical name; the result always names its backend.

    Without ``backend=``, the default backend is tried first, then every other
    registered backend that knows the voice name (``en-gb-x-rp+f3`` is found in
    espeak).  Errors carry no location: the caller knows where the voice came from.
    """
    if voice.backend:
        backend = get_backend(voice.backend)
        return _checked(backend, replace(voice, backend=backend.name))
    backend = get_backend(default_backend)
    try:
        return _checked(backend, replace(voice, backend=backend.name))
    except UnknownVoiceError as first_error:
        for other in available():
            if other == default_backend:
                continue
            try:
                candidate = get_backend(other)
            except DialogTTSError:
                continue
            if candidate.knows(voice.name):
                return _checked(candidate, replace(voice, backend=candidate.name))
        hints = _elsewhere(voice.name, skip=default_backend)
        if hints:
            raise UnknownVoiceError(f"{first_error.message}; other backends have {', '.join(hints)} "
                                    f"(add backend=NAME, or give the full name)") from None
        raise first_error


def _elsewhere(name: str, *, skip: str, most: int = 5) -> list[str]:
    """Voices of other backends whose names look like *name*, as ``backend:voice`` (for a hint)."""
    hints: list[str] = []
    for other in available():
        if other == skip:
            continue
        try:
            names = [info.name for info in get_backend(other).list_voices()]
        except DialogTTSError:
            continue
        hints += [f"{other}:{n}" for n in close_matches(name, names)]
    return hints[:most]


def _checked(backend: Backend, voice: Voice) -> Voice:
    unknown = sorted({k for k, _ in voice.options} - backend.extra_options)
    if unknown:
        known = ", ".join(sorted({*COMMON_KEYS, *backend.extra_options}))
        raise VoiceSpecError(f"unknown option {unknown[0]!r} for backend {backend.name!r} (known: {known})")
    return backend.resolve(voice)
