"""``import hibari``, one thread at a time.

The hibari and kokoro backends' workers ask for hibari at once on their first lines, and importing it
from several threads together raced; :func:`import_hibari` takes one lock around the import.

hibari is imported as it is: its DSP takes ``scipy.fft`` (hibari's own choice, NumPy's FFT where scipy
is missing) through scipy's public package, so hibari's samples are the ones hibari makes on its own.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

_importing = threading.Lock()


def import_hibari() -> ModuleType:
    """``import hibari``, one call at a time (the backends' workers call it at once on their first lines)."""
    with _importing:
        return importlib.import_module("hibari")
