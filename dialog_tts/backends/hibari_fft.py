"""``import hibari`` without importing ``scipy.fft``: the same transforms, 150 ms sooner.

hibari's DSP (``hibari/dsp.py``) does ``import scipy.fft`` for two calls, ``rfft``
and ``irfft``.  With scipy 1.17 that import took 0.15 to 0.26 s here, most of the
first line of every render with a hibari voice (its array-API layer clones
NumPy's namespace, which loads ``numpy.f2py`` and ``numpy.testing``, and it
imports ``scipy.special``); ``import hibari`` then took 170 to 230 ms, and 31 to
58 ms without it.  The transforms are pocketfft's compiled module, which loads
in about a millisecond (:func:`dialog_tts.compiled.load_extension`).

So while hibari is imported, ``scipy.fft`` in ``sys.modules`` is a stand-in
(:class:`StandIn`) whose ``rfft``/``irfft`` call that module with the arguments
scipy.fft's default backend passes it, so hibari's audio is bit-identical
(``tests/test_hibari.py``).  Anything else asked of the stand-in (another
argument, another function) is handed to the real ``scipy.fft``, imported then;
after the import the stand-in leaves ``sys.modules``, so any later
``import scipy.fft`` gets the real package.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType
from typing import Any

_POCKETFFT = "scipy.fft._pocketfft.pypocketfft"
_lock = threading.Lock()
_importing = threading.Lock()


def real_fft() -> ModuleType:
    """The real ``scipy.fft`` (the stand-in taken out of ``sys.modules`` first)."""
    with _lock:
        if isinstance(sys.modules.get("scipy.fft"), StandIn):
            del sys.modules["scipy.fft"]
    return importlib.import_module("scipy.fft")


def _plain(x: Any, kind: str, axis: int) -> bool:
    """Whether scipy.fft would hand *x* to pocketfft as it is: a native, aligned float (``f``) or complex
    (``c``) NumPy array of single or double precision, non-empty along *axis*."""
    dtype = getattr(x, "dtype", None)
    sizes = (4, 8) if kind == "f" else (8, 16)
    return (dtype is not None and type(x).__module__ == "numpy" and dtype.kind == kind and dtype.isnative
            and dtype.itemsize in sizes and x.flags.aligned and -x.ndim <= axis < x.ndim and x.shape[axis] > 0)


class StandIn(ModuleType):
    """``scipy.fft`` for hibari: ``rfft`` and ``irfft`` on pocketfft, everything else from the real module."""

    def __init__(self, pocketfft: ModuleType) -> None:
        super().__init__("scipy.fft", "hibari's transforms on pocketfft (dialog_tts.backends.hibari_fft)")
        self._pocketfft = pocketfft

    def rfft(self, x: Any, n: int | None = None, axis: int = -1, norm: str | None = None,
             overwrite_x: bool = False, workers: int | None = None, *, plan: Any = None) -> Any:
        if n is None and norm is None and workers is None and plan is None and _plain(x, "f", axis):
            return self._pocketfft.r2c(x, (axis,), True, 0, None, 1)     # forward, unnormalized, one thread
        return real_fft().rfft(x, n, axis, norm, overwrite_x, workers, plan=plan)

    def irfft(self, x: Any, n: int | None = None, axis: int = -1, norm: str | None = None,
              overwrite_x: bool = False, workers: int | None = None, *, plan: Any = None) -> Any:
        if (n is not None and norm is None and workers is None and plan is None and _plain(x, "c", axis)
                and x.shape[axis] == n // 2 + 1):
            return self._pocketfft.c2r(x, (axis,), n, False, 2, None, 1)  # backward, scaled by 1/n, one thread
        return real_fft().irfft(x, n, axis, norm, overwrite_x, workers, plan=plan)

    def __getattr__(self, name: str) -> Any:
        return getattr(real_fft(), name)


def import_hibari() -> ModuleType:
    """``import hibari``, with the stand-in as ``scipy.fft`` unless scipy.fft (or hibari) is already loaded
    or pocketfft's module cannot be loaded alone.  One call at a time: backends' workers call it at once on
    their first lines, and the extension's path comes from ``sysconfig``, which is not thread-safe to set up."""
    with _importing:
        return _import_hibari()


def _import_hibari() -> ModuleType:
    from ..compiled import load_extension

    if "hibari.dsp" in sys.modules or "scipy.fft" in sys.modules:
        return importlib.import_module("hibari")
    pocketfft = load_extension(_POCKETFFT, "c2r")
    if pocketfft is None:
        return importlib.import_module("hibari")
    stand_in = StandIn(pocketfft)
    with _lock:
        sys.modules.setdefault("scipy.fft", stand_in)
    try:
        return importlib.import_module("hibari")
    finally:
        with _lock:
            if sys.modules.get("scipy.fft") is stand_in:
                del sys.modules["scipy.fft"]
