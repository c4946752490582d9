"""``import qwen_tts`` where the registry's torchaudio cannot load, without leaving a stand-in behind.

qwen-tts imports ``torchaudio.compliance.kaldi`` when it is imported, but only its 25 Hz speech
tokenizer ever calls it; the 12 Hz models (every Qwen3-TTS model dialog-tts uses) never do.  On a
CPU-only machine with the CPU build of torch no torchaudio loads (the registry's wheels are CUDA
builds pinned to other torch versions).  So, where the real torchaudio is missing or fails to import,
:func:`import_qwen_tts` registers small stand-in modules for ``torchaudio``,
``torchaudio.compliance`` and ``torchaudio.compliance.kaldi`` for the import of qwen_tts only, and
takes them out of ``sys.modules`` as soon as it is done: afterwards ``import torchaudio`` fails as it
would have without qwen, and ``importlib.util.find_spec("torchaudio")`` finds nothing.  qwen's 25 Hz
module keeps its reference to the kaldi stand-in, which raises if anything calls into it.  Where the
real torchaudio imports, nothing stands in for it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager

STUB_VERSION = "0.0.0+dialog-tts-stub"
_NAMES = ("torchaudio", "torchaudio.compliance", "torchaudio.compliance.kaldi")
_lock = threading.Lock()


def _unavailable(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("torchaudio is not installed (dialog-tts stood in for it while qwen-tts was imported); "
                       "the 25 Hz Qwen speech tokenizer needs the real torchaudio")


def _stub_attribute(name: str) -> object:
    if name.startswith("__"):
        raise AttributeError(name)
    return _unavailable


def _torchaudio_imports() -> bool:
    """Whether the real torchaudio is loaded or loads now."""
    if sys.modules.get("torchaudio") is not None:
        return True
    try:
        import torchaudio  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or OSError from a CUDA build's missing libraries
        return False
    return True


def _stand_ins() -> dict[str, types.ModuleType]:
    """The three stand-in modules, linked as a package's submodules are (with ``__spec__`` and
    ``__version__``: transformers asks ``importlib.util.find_spec`` and the version)."""
    modules = {}
    for name in _NAMES:
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=name != _NAMES[-1])
        module.__version__ = STUB_VERSION  # type: ignore[attr-defined]
        module.__path__ = []
        setattr(module, "__getattr__", _stub_attribute)  # noqa: B010 - a module-level __getattr__ (PEP 562)
        modules[name] = module
    modules["torchaudio"].compliance = modules["torchaudio.compliance"]  # type: ignore[attr-defined]
    modules["torchaudio.compliance"].kaldi = modules["torchaudio.compliance.kaldi"]  # type: ignore[attr-defined]
    return modules


@contextmanager
def _standing_in() -> Iterator[bool]:
    """For the block: stand-ins where torchaudio cannot be imported (yields whether they are in place),
    out of ``sys.modules`` again when it ends, however it ends."""
    if _torchaudio_imports():
        yield False
        return
    for name in _NAMES:                  # what a failed import of the real one left half-made
        sys.modules.pop(name, None)
    stand_ins = _stand_ins()
    sys.modules.update(stand_ins)
    try:
        yield True
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def import_qwen_tts() -> types.ModuleType:
    """``import qwen_tts``; its first import with the torchaudio stand-ins where they are needed (for the
    import only).  One first import at a time.  Raises ImportError where qwen_tts (or what it needs)
    is missing."""
    with _lock:
        if "qwen_tts" not in sys.modules:
            with _standing_in():
                return importlib.import_module("qwen_tts")
    return importlib.import_module("qwen_tts")
