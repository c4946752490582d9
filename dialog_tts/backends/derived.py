"""Model data a backend derives on every start, kept between runs in the user cache.

Each start of piper or hibari used to redo work whose result never changes for a given model
and package: onnxruntime's graph optimization of the ``.onnx`` file (most of a session's load time)
and the joining of Kokoro's model from its parts.  This module keeps such results in
``$DIALOG_TTS_MODEL_CACHE`` or the user cache folder (``~/.cache/dialog-tts-models`` on Linux),
separate from the audio cache.

* An entry's file name carries a key over everything it was derived from (package versions, the
  source file's identity, this machine's CPU where the result depends on it), so a changed model,
  package or machine makes a new entry and the old one is never read again.
* Entries are written to a temporary file beside their place and renamed into it (atomic: a
  reader sees a whole entry or none; two processes writing one at once both succeed).
* Nothing here is required: a folder that cannot be made or written, or an entry that cannot be
  read, means the backend does what it did before (the slow path), with a debug log line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger("dialog_tts")

ENV_DIR = "DIALOG_TTS_MODEL_CACHE"
_FORMAT = 1          # bump when what an entry holds changes
_CPU = ["CPUExecutionProvider"]


def folder() -> Path:
    """``$DIALOG_TTS_MODEL_CACHE``, else the user cache folder's ``dialog-tts-models``."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dialog-tts-models", appauthor=False))


def entry_path(kind: str, stem: str, parts: Sequence[object], suffix: str) -> Path:
    """Where the entry derived from *parts* (versions, identities) lives: ``kind/stem-<key>suffix``."""
    key = hashlib.sha256(json.dumps([_FORMAT, kind, *map(str, parts)]).encode()).hexdigest()[:24]
    return folder() / kind / f"{stem}-{key}{suffix}"


@contextlib.contextmanager
def writing(path: Path) -> Iterator[Path]:
    """A temporary file beside *path* to write; renamed onto *path* when the block ends without error."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(name)
        os.chmod(name, 0o644)   # mkstemp's 0600 would keep a shared $DIALOG_TTS_MODEL_CACHE to one user
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


@lru_cache(maxsize=1)
def cpu_identity() -> str:
    """The machine type and, on Linux, the CPU's model and feature flags: onnxruntime's fully
    optimized graphs may hold kernels and layouts chosen for this CPU."""
    import platform

    found = {"machine": platform.machine()}
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name.strip() in ("model name", "flags", "Features", "CPU part") and name.strip() not in found:
                found[name.strip()] = value.strip()
            if not line.strip() and len(found) > 1:   # the first processor's block is enough
                break
    return hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:16]


def optimized_onnx(model: Path, identity: str) -> Path | None:
    """The onnxruntime-optimized copy of *model* (saved on first use), or None where there cannot be one.

    *identity* names the model's content (its sha256, or its path, size and modification time).
    The copy holds the graph exactly as onnxruntime optimizes it at its default level
    (``ORT_ENABLE_ALL``) for this CPU, so a session that loads it with optimization off runs the
    same graph as one that loads *model* (checked bit for bit in tests/test_derived.py).
    """
    import onnxruntime as ort

    path = entry_path("onnx", model.stem, [ort.__version__, cpu_identity(), identity], ".onnx")
    if path.is_file():
        return path
    try:
        with writing(path) as tmp:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.optimized_model_filepath = str(tmp)
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            options.log_severity_level = 3   # its warning: the graph suits this machine only (its key says so)
            ort.InferenceSession(str(model), sess_options=options, providers=_CPU)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors derive from Exception only; any failure: slow path
        log.debug("no optimized copy of %s kept (%s)", model, exc)
        return None
    return path


def ort_session(model: Path, identity: str, options: Any) -> Any:
    """An onnxruntime session of *model* with *options*, loaded from its optimized copy where there is one."""
    import onnxruntime as ort

    copy = optimized_onnx(model, identity)
    if copy is not None:
        level = options.graph_optimization_level
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(copy), sess_options=options, providers=_CPU)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors: a damaged copy, dropped (made again next run)
            log.debug("the optimized copy %s of %s did not load (%s); removed", copy, model, exc)
            with contextlib.suppress(OSError):
                copy.unlink()
        options.graph_optimization_level = level
    return ort.InferenceSession(str(model), sess_options=options, providers=_CPU)
