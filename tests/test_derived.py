"""Derived model data kept between runs (onnxruntime-optimized graphs), and hibari's G2P as the backends
make it.

Each is checked against what the package makes on its own (onnxruntime loading the original
model, hibari's own G2P, piper's own PiperVoice.load): same numbers, same phonemes, bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dialog_tts.backends import derived, hibari_g2p
from dialog_tts.backends.base import package_version
from dialog_tts.backends.hibari import HibariBackend, package_dir
from dialog_tts.backends.piper import PiperBackend, _bundled_paths

#: Text that exercises the G2P's paths: lexicon words, part-of-speech readings, numbers, money, dates,
#: titles, contractions, hyphens, capitals, out-of-vocabulary words and inline phonemes.
TEXTS = [
    "I read the book yesterday, and I will read it again; we live where they live.",
    "Dr. Patel paid $4.99 on March 3rd, 2024 at 10:30 p.m. and got 15% off.",
    "Mr. O'Brien's well-known colour theatre re-opened in the 1990s -- didn't it?",
    "NASA's CEO said the U.S. team isn't ready; Zxqwv blorpt glimmerfax!",
    "Honestly, believe it or not, the captain photographed three jars of honey behind the library.",
    "Say [tomato](/təmˈAtO/) the way she does, then record the record.",
    "\"Why not?\" she asked. (Nobody answered.) It's 7:45 — late.",
]


def ids_for(backend: HibariBackend) -> dict[str, np.ndarray]:
    vocab = json.loads((package_dir() / "assets" / "vocab.json").read_text(encoding="utf-8"))
    ids = [0, *[vocab[c] for c in "həlˈO ðˈɛɹ, ɪts mˈi." if c in vocab], 0]
    return {"ids": np.asarray([ids], np.int64), "speed": np.asarray([1.0], np.float32)}


def test_optimized_copy_runs_the_same_graph_and_is_made_once(model_cache_folder):
    import onnxruntime as ort

    backend = HibariBackend()
    model = backend.model_path("heart")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    reference = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    copy = derived.optimized_onnx(model, "test identity")
    assert copy is not None and copy.is_file() and model_cache_folder in copy.parents
    made = copy.stat().st_mtime_ns
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = derived.ort_session(model, "test identity", options)
    feed = ids_for(backend)
    for ours, theirs in zip(session.run(None, feed), reference.run(None, feed)):
        assert np.array_equal(ours, theirs)
    assert derived.optimized_onnx(model, "test identity") == copy and copy.stat().st_mtime_ns == made
    assert derived.optimized_onnx(model, "another identity") != copy       # a changed model: a new entry
    assert not [p for p in copy.parent.iterdir() if ".tmp" in p.name]      # written atomically, nothing left over


def test_a_damaged_copy_is_dropped_and_the_model_loaded(model_cache_folder):
    import onnxruntime as ort

    model = HibariBackend().model_path("heart")
    copy = derived.optimized_onnx(model, "damaged")
    assert copy is not None
    copy.write_bytes(b"not a model")
    session = derived.ort_session(model, "damaged", ort.SessionOptions())
    assert session.run(None, ids_for(HibariBackend()))[0].size
    assert not copy.exists()                                               # made again by the next run
    assert derived.optimized_onnx(model, "damaged") == copy and copy.stat().st_size > 1000


@pytest.mark.parametrize("where", ["under a file", "read-only"])
def test_a_cache_folder_that_cannot_be_written_means_the_usual_load(where, tmp_path, monkeypatch, mounts):
    import onnxruntime as ort

    folder = tmp_path / "models"
    folder.mkdir()
    if where == "under a file":
        (tmp_path / "file").write_text("x")
        folder = tmp_path / "file" / "models"
    else:
        mounts.read_only(folder)
    monkeypatch.setenv(derived.ENV_DIR, str(folder))
    model = HibariBackend().model_path("heart")
    assert derived.optimized_onnx(model, "x") is None
    assert derived.ort_session(model, "x", ort.SessionOptions()).run(None, ids_for(HibariBackend()))[0].size
    backend = HibariBackend()                       # the backend still speaks, the slow way
    clip = backend.synthesize("Hello there.", backend.resolve(backend_voice("heart")))
    assert clip.samples.size > 0


def backend_voice(name: str):
    from dialog_tts.script.voice import Voice

    return Voice(name, "hibari")


def test_entries_in_a_read_only_folder_are_still_used(tmp_path, monkeypatch, mounts):
    monkeypatch.setenv(derived.ENV_DIR, str(tmp_path / "models"))
    model = HibariBackend().model_path("heart")
    copy = derived.optimized_onnx(model, "read-only")
    assert copy is not None                                                          # made here
    mounts.read_only(tmp_path / "models")
    assert derived.optimized_onnx(model, "read-only") == copy


@pytest.mark.parametrize("british", [False, True])
def test_the_backends_g2p_is_hibaris_own(british):
    """The backends' G2P is hibari's G2P as its public constructor makes it: the same phonemes."""
    from hibari.g2p import G2P

    ours = hibari_g2p.lazy_g2p(package_dir(), package_version("hibari-tts"), british)
    assert isinstance(ours, G2P) and ours.british is british
    reference = G2P(british=british)
    for text in TEXTS:
        assert ours(text) == reference(text), text


def test_one_g2p_per_accent_is_shared_while_it_is_held():
    """Voices and backends that want the same accent get the same G2P (its tables are made once); the
    other accent gets its own; and once nothing holds a G2P it is let go."""
    import subprocess
    import sys

    us, also_us = hibari_g2p.make_g2p(False), hibari_g2p.make_g2p(False)
    gb = hibari_g2p.make_g2p(True)
    assert us is also_us and gb is not us and gb.british and not us.british
    assert hibari_g2p.lazy_g2p(package_dir(), package_version("hibari-tts"), False) is us
    # let go once nothing holds it (in a fresh interpreter: here other tests' backends may hold one)
    code = ("import gc, weakref; from dialog_tts.backends.hibari_g2p import make_g2p; g = make_g2p(False); "
            "held = weakref.ref(g); del g; gc.collect(); print(held() is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"]


def test_piper_from_its_optimized_copy_speaks_as_piper_does():
    """With its noise off, piper is deterministic: the backend's session (the optimized copy) and
    piper's own PiperVoice.load of the model give the same samples."""
    from piper import PiperVoice, SynthesisConfig

    model, config = _bundled_paths()
    backend = PiperBackend()
    backend.threads = 1
    ours = backend.session(str(model))
    theirs = PiperVoice.load(model, config)
    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    text = "The garden was quiet that evening. Nobody spoke of the letter again."
    a = np.concatenate([c.audio_float_array for c in ours.synthesize(text, quiet)])
    b = np.concatenate([c.audio_float_array for c in theirs.synthesize(text, quiet)])
    assert a.size > 22050 and np.array_equal(a, b)
    assert any(p.suffix == ".onnx" for p in (derived.folder() / "onnx").iterdir())


def test_cpu_identity_is_stable():
    assert derived.cpu_identity() == derived.cpu_identity() and len(derived.cpu_identity()) == 16
    assert Path(derived.entry_path("onnx", "m", ["a"], ".onnx")).parent == derived.folder() / "onnx"
