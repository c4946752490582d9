"""Executors without a cluster (issue 16): views that travel, the choice of executor, no ray unless asked."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from dialog_tts import backends
from dialog_tts.errors import InputError
from dialog_tts.synth.executors import ThreadExecutor, make_executor
from dialog_tts.synth.portable import ViewRef, view_of
from ray_fakes import DetBackend

SETTINGS = {
    "piper": {"threads": 3},
    "espeak": {},
    "hibari": {"threads": 2},
    "edge": {"timeout": 12.5, "concurrency": 2},
    "qwen": {"batch_size": 4, "models_in_memory": 1},
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_builtin_view_travels_as_name_and_settings(name):
    """Views hold locks and models (not picklable): a ViewRef is, and rebuilds the same settings."""
    view = backends.get_backend(name).bind(SETTINGS[name], workers=2)
    if name != "espeak":          # espeak's lock is its module's; the others' views hold locks (and models)
        with pytest.raises(TypeError, match="cannot pickle"):
            pickle.dumps(view)
    ref = pickle.loads(pickle.dumps(ViewRef.of(view)))
    assert ref.backend == name and ref.workers == 2 and ref.factory is None
    rebuilt = view_of(ref)
    for key, setting in view.settings.items():
        assert getattr(rebuilt, setting.attr) == getattr(view, setting.attr), key
    assert view_of(ref) is rebuilt                       # built once per process


def test_piper_view_pins_its_threads_and_asks_for_them():
    view = backends.get_backend("piper").bind({}, workers=64)   # threads from the cores: at least 1
    assert dict(ViewRef.of(view).settings) == {"threads": view.threads_per_call} and view.cpus_per_call >= 1
    assert backends.get_backend("piper").bind({"threads": 3}, workers=1).cpus_per_call == 3
    assert backends.get_backend("hibari").bind({"threads": 2}, workers=1).cpus_per_call == 2
    assert backends.get_backend("espeak").bind({}, workers=1).cpus_per_call == 1


def test_a_backend_registered_at_run_time_travels_with_its_factory():
    backends.register("det", DetBackend)
    try:
        view = backends.get_backend("det").bind({"latency": "0.5", "threads": "2"}, workers=3)
        ref = pickle.loads(pickle.dumps(ViewRef.of(view)))
        assert ref.factory is DetBackend and dict(ref.settings) == {"latency": 0.5, "threads": 2}
        backends.unregister("det")                           # a fresh worker knows nothing of it
        rebuilt = view_of(ref)
        assert (rebuilt.latency, rebuilt.threads, rebuilt.workers) == (0.5, 2, 3)
        assert backends.registered_factory("det") is DetBackend
    finally:
        backends.unregister("det")


def test_executor_choice():
    assert isinstance(make_executor("thread"), ThreadExecutor)
    with pytest.raises(InputError, match="unknown executor 'dask'.*thread, ray"):
        make_executor("dask")


def test_the_thread_executor_never_imports_ray(tmp_path):
    code = f"""
import json, sys
from dialog_tts import synthesize_dialog
open({str(tmp_path / 's.txt')!r}, 'w').write('A: Hello.\\nB: Hi.\\n')
synthesize_dialog({str(tmp_path / 's.txt')!r}, {str(tmp_path / 'o.wav')!r}, backend='espeak', cache=False)
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'ray')))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert (tmp_path / "o.wav").exists()
