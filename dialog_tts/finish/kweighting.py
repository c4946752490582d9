"""The loudness meter's K-weighting biquads: the project's own compiled loop, or scipy's public function;
and the loaders of the same module's two passes for the true-peak reader, its bounds and libebur128's
interpolator's peaks (NumPy's where it is not built).

The K-weighting filter is a cascade of second-order sections run over every
sample the meter reads.  Where the install built :mod:`dialog_tts._takecheck`
(``setup.py``; it is optional), its ``biquads`` loop runs them; elsewhere
``scipy.signal.sosfilt`` does.  Both do the same arithmetic in the same order
(transposed direct form II, in the samples' own precision), so the figures are
the same either way (``tests/test_compiled.py``).  The compiled loop spares a
render the import of ``scipy.signal``, which is far slower than the filtering
itself.

Nothing here loads or calls another package's private modules or attributes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np


def _compiled(name: str) -> Callable[..., Any] | None:
    """The extension's function *name*, or None where the install did not build the extension (or built an
    older one, without it)."""
    try:
        module = importlib.import_module("dialog_tts._takecheck")
    except ImportError:
        return None
    function: Callable[..., Any] | None = getattr(module, name, None)
    return function


@lru_cache(maxsize=1)
def biquads_loop() -> Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None:
    """``dialog_tts._takecheck.biquads``, or None where the install did not build it (or built an older one).

    ``biquads(sos, x, zi)`` filters each row of *x* (signals, n) through *sos* (sections, 6) in place,
    with the state *zi* (signals, sections, 2) carried in and updated: one dtype, float32 or float64, all
    C-contiguous, none sharing memory.
    """
    return _compiled("biquads")


@lru_cache(maxsize=1)
def peak_bounds_loop() -> Callable[..., bool] | None:
    """``dialog_tts._takecheck.peak_bounds``, or None where the install did not build it (or built an older
    one): ``peak_bounds(up, before, after, factor, lead, window, out)`` writes the true-peak reader's bounds
    (:func:`dialog_tts.finish.loudness._peak_bounds_numpy`'s figures, bit for bit) into *out* and returns
    True, or returns False where it met a NaN (the caller then takes NumPy's figures)."""
    return _compiled("peak_bounds")


@lru_cache(maxsize=1)
def frame_points_loop() -> Callable[..., bool] | None:
    """``dialog_tts._takecheck.frame_points``, or None where the install did not build it (or built an older
    one): ``frame_points(data, taps, factor, offset, out)`` writes the peaks of libebur128's interpolator
    (:func:`dialog_tts.finish.loudness._frame_points_numpy`'s figures, bit for bit) into *out* and returns
    True, or returns False where it met a NaN (the caller then takes NumPy's figures)."""
    return _compiled("frame_points")


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.sosfilt(sos, x, axis=0, zi=zi)`` for *x* of shape ``(n,)`` or ``(n, channels)``.

    Returns the filtered signal (x's dtype, or sos's where wider) and the final state, shaped as scipy
    shapes it, ``(sections, 2)`` or ``(sections, 2, channels)``.  *x* and *zi* are left alone.  The
    compiled loop (:func:`biquads_loop`) runs float32 and float64; other dtypes, and installs without
    the loop, go to ``scipy.signal.sosfilt``.
    """
    sos = np.asarray(sos)
    x = np.asarray(x)
    if sos.ndim != 2 or sos.shape[1] != 6 or sos.shape[0] < 1:
        raise ValueError(f"sos must have shape (sections, 6), not {sos.shape}")
    if not np.all(sos[:, 3] == 1.0):
        raise ValueError("sos[:, 3] (each section's a0) must be 1")
    if x.ndim not in (1, 2):
        raise ValueError(f"x must have shape (n,) or (n, channels), not {x.shape}")
    dtype = np.result_type(sos, x, *(() if zi is None else (zi,)))
    sections = sos.shape[0]
    state_shape = (sections, 2, *x.shape[1:])
    state = np.zeros(state_shape, dtype) if zi is None else np.asarray(zi, dtype)
    if state.shape != state_shape:
        raise ValueError(f"zi must have shape {state_shape}, not {state.shape}")
    loop = biquads_loop()
    if loop is None or dtype not in (np.float32, np.float64):
        from scipy.signal import sosfilt as public

        y, final = public(sos, x, axis=0, zi=state)
        return y, final
    signals = np.array(np.moveaxis(x.reshape(x.shape[0], -1), 0, -1), dtype, order="C")     # (channels, n)
    flat = np.array(np.moveaxis(state.reshape(sections, 2, -1), -1, 0), order="C")   # (channels, sections, 2)
    loop(np.ascontiguousarray(sos, dtype), signals, flat)
    y = np.moveaxis(signals, -1, 0).reshape(x.shape)
    return y, np.moveaxis(flat, 0, -1).reshape(state_shape)
