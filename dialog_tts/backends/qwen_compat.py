"""Make ``import qwen_tts`` work where the registry's torchaudio cannot load.

qwen-tts imports ``torchaudio.compliance.kaldi`` at import time, but only its
25 Hz speech tokenizer ever calls it; the 12 Hz models (every Qwen3-TTS model
dialog-tts uses) never do.  On a CPU-only machine with the CPU build of torch
there is no torchaudio that loads (the registry's wheels are CUDA builds pinned
to other torch versions), so where the real torchaudio is missing or fails to
import, this module registers small stand-in modules that raise if anything
actually calls into them.  Where the real torchaudio imports, nothing is done.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types

STUB_VERSION = "0.0.0+dialog-tts-stub"
_NAMES = ("torchaudio", "torchaudio.compliance", "torchaudio.compliance.kaldi")


def _unavailable(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("torchaudio is not installed (dialog-tts registered a stand-in so that qwen-tts imports); "
                       "the 25 Hz Qwen speech tokenizer needs the real torchaudio")


def _stub_attribute(name: str) -> object:
    if name.startswith("__"):
        raise AttributeError(name)
    return _unavailable


def ensure_torchaudio() -> bool:
    """Register stand-ins if torchaudio cannot be imported; True when stand-ins are in use."""
    existing = sys.modules.get("torchaudio")
    if existing is not None:
        return getattr(existing, "__version__", "") == STUB_VERSION
    try:
        import torchaudio  # noqa: F401
        return False
    except Exception:  # noqa: BLE001 - ImportError, or OSError from a CUDA build's missing libraries
        for name in _NAMES:
            sys.modules.pop(name, None)
    for name in _NAMES:
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=name != _NAMES[-1])
        module.__version__ = STUB_VERSION  # type: ignore[attr-defined]
        module.__path__ = []
        setattr(module, "__getattr__", _stub_attribute)  # noqa: B010 - a module-level __getattr__ (PEP 562)
        sys.modules[name] = module
    sys.modules["torchaudio"].compliance = sys.modules["torchaudio.compliance"]  # type: ignore[attr-defined]
    sys.modules["torchaudio.compliance"].kaldi = sys.modules["torchaudio.compliance.kaldi"]  # type: ignore[attr-defined]
    return True
