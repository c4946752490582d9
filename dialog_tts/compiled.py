"""A compiled module of an installed package, loaded from its file without importing the package.

scipy's Python packages cost far more to import than the compiled loops this
tool calls in them (scipy 1.17, measured here): ``scipy.signal`` 0.75 s for
its ``sosfilt`` loop (16 ms alone), ``scipy.fft`` 0.15 to 0.26 s for
pocketfft (about 1 ms alone).  Loading the extension module from its file,
under its own dotted name, gives the very code the package would call (so
results are bit-identical), and puts it in ``sys.modules`` where the package
finds it if it is imported later (an extension module is loaded once per
process).
"""

from __future__ import annotations

import sys
from types import ModuleType


def load_extension(name: str, attribute: str) -> ModuleType | None:
    """The extension module *name* (``"scipy.signal._sosfilt"``) if it has *attribute*, else None.

    None where the package is not installed or a release has moved or changed the
    module; the caller then uses the package's public function.
    """
    import importlib.machinery
    import importlib.util
    import sysconfig
    from pathlib import Path

    top, *inner = name.split(".")
    if not inner:
        return None
    try:
        loaded = sys.modules.get(name)
        if loaded is None:
            spec = importlib.util.find_spec(top)
            folder = Path(next(iter(spec.submodule_search_locations or ()))) if spec else None
            path = folder.joinpath(*inner[:-1], inner[-1] + sysconfig.get_config_var("EXT_SUFFIX")) if folder else None
            if path is None or not path.is_file():
                return None
            loader = importlib.machinery.ExtensionFileLoader(name, str(path))
            module_spec = importlib.util.spec_from_file_location(name, path, loader=loader)
            if module_spec is None:
                return None
            loaded = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = loaded                  # once per process: the package finds it there too
            loader.exec_module(loaded)
        getattr(loaded, attribute)
    except (ImportError, AttributeError, OSError, StopIteration):
        if sys.modules.get(name) is not None and not hasattr(sys.modules[name], attribute):
            del sys.modules[name]                       # half loaded: the package must import it afresh
        return None
    return loaded
