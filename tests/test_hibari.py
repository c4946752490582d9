"""The hibari backend: heart offline, downloaded voices, missing ones refused before synthesis, voice shaping."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dialog_tts import backends
from dialog_tts.api import RenderOptions
from dialog_tts.backends.hibari import HibariBackend
from dialog_tts.cli import main
from dialog_tts.errors import UnknownVoiceError
from dialog_tts.script.voice import Voice, parse_rate
from measure import loud_regions, median_f0, rms_db

TEXT = "This sentence is long enough to measure how it is spoken."


def spoken_seconds(clip) -> float:
    regions = loud_regions(clip.samples, clip.sample_rate, threshold=0.01)
    return regions[-1][1] - regions[0][0]


@pytest.fixture(scope="module")
def hibari():
    return HibariBackend()


def speak(backend, **voice):
    return backend.synthesize(TEXT, backend.resolve(Voice(voice.pop("name", "heart"), "hibari", **voice)))


def test_heart_speaks_offline_and_deterministically(hibari):
    first, second = speak(hibari), speak(HibariBackend())       # a fresh instance: nothing shared
    assert first.sample_rate == 24000
    assert first.samples.tobytes() == second.samples.tobytes()
    assert 2.0 < first.frames / first.sample_rate < 6.0
    assert 165 < median_f0(first.samples, first.sample_rate) < 230      # a woman's voice


def test_heart_is_hibaris_own_output_bit_for_bit(hibari):
    """The backend loads heart from its optimized copy with the G2P tables read word by word
    (dialog_tts.backends.derived, hibari_g2p); hibari on its own gives the same samples."""
    from hibari import Hibari

    reference = Hibari(voice="heart", threads=1)
    for text in (TEXT, "Dr. Patel paid $4.99 on March 3rd. Really? Zxqwv said no!"):
        ours = hibari.synthesize(text, hibari.resolve(Voice("heart", "hibari")))
        theirs = np.concatenate(list(reference.stream(text, speed=1.0, seed=0)))
        assert ours.samples.tobytes() == theirs.tobytes()


def test_rate_pitch_and_volume_shape_the_voice(hibari):
    plain = speak(hibari)
    seconds = spoken_seconds(plain)
    fast = speak(hibari, rate=parse_rate("1.5x"))
    assert spoken_seconds(fast) == pytest.approx(seconds / 1.5, rel=0.15)
    up = speak(hibari, pitch=3.0)
    ratio = median_f0(up.samples, up.sample_rate) / median_f0(plain.samples, plain.sample_rate)
    # the clip is relabelled by exactly 3 semitones; hibari's intonation at the slower speed it is
    # synthesized at sits a little lower, so the measured shift is 2.4-3 semitones
    assert up.sample_rate == round(24000 * 2 ** (3 / 12))
    assert 2 ** (2.3 / 12) < ratio < 2 ** (3.3 / 12)
    assert spoken_seconds(up) == pytest.approx(seconds, rel=0.1)     # rate kept
    quiet = speak(hibari, volume=-6.0)
    assert rms_db(quiet.samples) - rms_db(plain.samples) == pytest.approx(-6.0, abs=0.01)


def test_heart_low_is_heart_two_semitones_down(hibari):
    low, plain = speak(hibari, name="heart-low"), speak(hibari)
    ratio = median_f0(plain.samples, plain.sample_rate) / median_f0(low.samples, low.sample_rate)
    assert 2 ** (1.5 / 12) < ratio < 2 ** (2.5 / 12)
    assert low.sample_rate == round(24000 * 2 ** (-2 / 12))
    assert hibari.voice_gender("heart-low") == "female"


def test_threads_setting_and_fingerprint(hibari):
    voice = hibari.resolve(Voice("heart", "hibari"))
    one, two = hibari.bind({}, workers=4), hibari.bind({"threads": "2"}, workers=4)
    assert (one.threads, two.threads) == (1, 2)
    fp = one.fingerprint(voice)
    assert "hibari-tts 0.2.1" in fp and "hibari.onnx sha256 5f70741d4e900f4e" in fp
    assert two.fingerprint(voice) != fp                    # onnxruntime's sums depend on the thread count
    assert RenderOptions(threads=3).backend_settings()["hibari"] == {"threads": 3}
    with pytest.raises(Exception, match="hibari.threads"):
        hibari.bind({"threads": "0"}, workers=1)


def test_missing_voice_is_a_usage_error_naming_how_to_get_it(no_hibari_downloads):
    with pytest.raises(UnknownVoiceError) as info:
        backends.resolve_voice(Voice("emma"))               # found by name, though piper is tried first
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "hibari voice 'emma' is not downloaded (7.9 MB)" in message
    assert "voice_path('emma')" in message
    assert "https://huggingface.co/" in message and str(no_hibari_downloads / "bf_emma.int8.onnx") in message


def test_missing_voice_fails_the_render_before_any_synthesis(tmp_path, write_script):
    script = write_script("A: Hello there.\nB: Hi.\n")
    out = tmp_path / "out.wav"
    result = CliRunner().invoke(main, ["-s", str(script), "-o", str(out), "--voices", "B=fenrir"])
    assert result.exit_code == 2
    assert "--voices B: hibari voice 'fenrir' is not downloaded (8.0 MB)" in result.output
    assert not out.exists()


def test_corrupt_download_is_refused(no_hibari_downloads):
    (no_hibari_downloads / "af_kore.int8.onnx").write_bytes(b"not a model")
    hibari = HibariBackend()
    assert hibari.state("kore") == "corrupt"
    with pytest.raises(UnknownVoiceError, match="does not match hibari's sha256"):
        hibari.resolve(Voice("kore"))


class EmmaIsHeart(HibariBackend):
    """hibari whose registry says emma's model is heart's file (the real one cannot be downloaded here)."""

    def registry(self):
        real = super().registry()
        heart = real["heart"]
        return {**real, "emma": {**real["emma"], "bytes": heart["bytes"], "sha256": heart["sha256"]}}


@pytest.fixture
def emma_downloaded(no_hibari_downloads):
    heart = Path(HibariBackend().model_path("heart"))
    shutil.copyfile(heart, no_hibari_downloads / "bf_emma.int8.onnx")
    backends.register("hibari", EmmaIsHeart)
    yield
    backends.unregister("hibari")


def test_downloaded_voice_is_listed_cast_and_rendered(emma_downloaded, tmp_path, write_script):
    listing = CliRunner().invoke(main, ["voices", "--backend", "hibari"])
    rows = {line.split()[1]: line for line in listing.output.splitlines()[1:]}
    assert "downloaded" in rows["emma"] and "not downloaded" not in rows["emma"]
    assert "not downloaded" in rows["fenrir"] and "8.0 MB" in rows["fenrir"]
    assert "in the package" in rows["heart"]
    script = write_script("Mrs Ayers: One.\nMiss Bell: Two.\nMiss Cole: Three.\n")
    plan = CliRunner().invoke(main, ["-s", str(script), "--dry-run", "--backend", "hibari"])
    assert "hibari:emma" in plan.output                    # the downloaded voice joins hibari's palette
    out = tmp_path / "emma.wav"
    result = CliRunner().invoke(main, ["-s", str(script), "-o", str(out), "--voices", "Mrs Ayers=emma"])
    assert result.exit_code == 0, result.output
    audio, _ = sf.read(out)
    assert np.abs(audio).max() > 0.05


def test_voices_lists_the_downloadable_voices_with_sizes():
    result = CliRunner().invoke(main, ["voices", "--backend", "hibari"])
    assert result.exit_code == 0
    rows = {line.split()[1]: line for line in result.output.splitlines()[1:]}
    assert set(rows) == {"heart", "fenrir", "emma", "fable", "kore", "heart-low"}
    for name in ("fenrir", "emma", "fable", "kore"):
        assert "not downloaded" in rows[name] and " MB" in rows[name]
    assert "female" in rows["heart"] and "male" in rows["fenrir"]


def test_pan_and_cached_render_are_bit_identical(tmp_path, write_script):
    script = write_script("A: Left, please.\nB: And right.\n")
    outs = [tmp_path / "one.wav", tmp_path / "two.wav"]
    for out, cache in zip(outs, ("--cache", "--no-cache")):
        result = CliRunner().invoke(main, ["-s", str(script), "-o", str(out), cache, "--backend", "hibari",
                                           "--voices", "A=heart,pan=-1", "B=heart-low,pan=1"])
        assert result.exit_code == 0, result.output
    assert outs[0].read_bytes() == outs[1].read_bytes()   # synthesized afresh: the same bytes
    audio, _ = sf.read(outs[0])
    first_half = audio[: len(audio) * 3 // 10]
    assert rms_db(first_half[:, 1]) < rms_db(first_half[:, 0]) - 40       # A is hard left


@pytest.mark.parametrize("env", [{"HIBARI_HOME": "/somewhere/hibari"}, {"HIBARI_HOME": "", "XDG_CACHE_HOME": "/x/cache"},
                                 {"HIBARI_HOME": None, "XDG_CACHE_HOME": None}])
def test_registry_and_folders_agree_with_hibaris_own(monkeypatch, env):
    """dialog-tts reads hibari's registry and cache folder without importing hibari.voices (start-up):
    the answers are hibari's own."""
    from hibari import voices as theirs

    from dialog_tts.backends import hibari as ours

    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    assert ours.cache_dir() == theirs.cache_dir()
    assert ours.voice_registry() == theirs.VOICES
    backend = HibariBackend()
    assert backend.model_path("heart") == Path(theirs.ASSETS) / theirs.VOICES["heart"]["file"]
    assert backend.model_path("emma") == Path(theirs.cache_dir()) / theirs.VOICES["emma"]["file"]


# ---------------------------------------------------------------- hibari imported as it is

FFT_PROBE = """
import hashlib, json, sys
{first}
from dialog_tts.backends.hibari import HibariBackend
from dialog_tts.script.voice import Voice
backend = HibariBackend()
clip = backend.synthesize({text!r}, backend.resolve(Voice("heart", "hibari")))
import hibari.dsp, scipy, scipy.fft
print(json.dumps({{"sha": hashlib.sha256(clip.samples.tobytes()).hexdigest(), "backend": hibari.dsp.FFT_BACKEND,
                  "real_fft": scipy.fft.__name__ == "scipy.fft" and scipy.fft.__spec__.parent == "scipy.fft"
                              and scipy.fft.__file__.startswith(scipy.__path__[0])}}))
"""


def _probe(first: str) -> dict:
    import json
    import subprocess
    import sys

    code = FFT_PROBE.format(first=first, text=TEXT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_hibari_is_imported_as_it_is_and_sounds_the_same():
    """In a fresh interpreter the backend imports hibari as it is: its DSP takes scipy's own scipy.fft
    (no stand-in module), and heart's samples are bit-identical to those made with scipy.fft imported
    before hibari."""
    alone, after_scipy = _probe(""), _probe("import scipy.fft")
    assert alone["backend"] == after_scipy["backend"] == "scipy"
    assert alone["real_fft"] and after_scipy["real_fft"]
    assert alone["sha"] == after_scipy["sha"]


IMPORT_PROBE = """
import json, threading
from dialog_tts.backends.hibari_fft import import_hibari
got, errors, start = [], [], threading.Barrier(8)
def worker():
    start.wait()
    try:
        got.append(import_hibari())
    except BaseException as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=worker) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"errors": errors, "modules": len({id(m) for m in got}), "ready": all(callable(m.Hibari) for m in got)}))
"""


def test_eight_workers_importing_hibari_at_once_all_get_it_whole():
    """The backends' workers ask for hibari together on their first lines: every one gets the same,
    fully imported module, without an error."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"errors": [], "modules": 1, "ready": True}
