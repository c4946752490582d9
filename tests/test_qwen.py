"""The qwen backend through the real qwen_tts loader and generate paths, on tiny random checkpoints (CPU)."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

pytest.importorskip("transformers")
import qwen_tiny  # noqa: E402
from dialog_tts import backends, synthesize_dialog  # noqa: E402
from dialog_tts.backends.qwen import QwenBackend  # noqa: E402
from dialog_tts.cli import main  # noqa: E402
from dialog_tts.errors import SynthesisError  # noqa: E402

TOKENS = 8
FRAMES = qwen_tiny.samples_for(TOKENS)   # samples each line comes out as


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """The three tiny checkpoints, built once for the session (no download)."""
    import torch
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("qwen")
    return {kind: qwen_tiny.build_tiny_checkpoint(root / kind, kind, max_new_tokens=TOKENS)
            for kind in qwen_tiny.KINDS}


class CountingQwen(QwenBackend):
    """The real qwen backend, counting model loads and prompt computations (shared by its views)."""

    speech = False   # the tiny random checkpoints make noise, not speech: the gate checks level and clipping

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.prompts: list[str] = []

    @property
    def prompt_calls(self) -> int:
        return len(self.prompts)

    def _load_model(self, model_id):
        self.loads.append(model_id)
        return super()._load_model(model_id)

    def _create_prompt(self, model_id, ref, ref_text):
        self.prompts.append(ref)
        return super()._create_prompt(model_id, ref, ref_text)


@pytest.fixture
def qwen():
    """A fresh counting qwen backend in the registry (no loaded models, no prompts in memory)."""
    made: list[QwenBackend] = []

    def factory():
        made.append(CountingQwen())
        return made[-1]
    backends.register("qwen", factory)
    yield made
    backends.unregister("qwen")


@pytest.fixture
def refs(tmp_path):
    """Two reference recordings for cloning."""
    paths = {}
    for name, seconds in (("guest", 2.0), ("host2", 1.5)):
        paths[name] = tmp_path / f"{name}.wav"
        sf.write(paths[name], qwen_tiny.chirp(seconds), 24000)
    return paths


def write_map(tmp_path, checkpoints, refs, extra: str = "") -> str:
    text = f"""\
Host:  {{backend: qwen, voice: Vivian, instruct: "warm, upbeat", model: "{checkpoints['custom_voice']}"}}
Guest: {{backend: qwen, ref_audio: guest.wav, ref_text: "What the clip says.", model: "{checkpoints['base']}"}}
Host2: {{backend: qwen, ref_audio: host2.wav, model: "{checkpoints['base']}"}}
Narrator: {{backend: qwen, design: "a calm elderly male narrator with a deep voice", model: "{checkpoints['voice_design']}"}}
Duo: {{backend: qwen, mix: {{Guest: 0.6, Host2: 0.4}}, model: "{checkpoints['base']}"}}
{extra}"""
    path = tmp_path / "qwen.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


INTERVIEW = """\
Host: Welcome to the show.
Guest: Thanks for having me.
Narrator: The studio fell quiet.
Host: Let us begin.
Duo: We speak as one.
Guest: Thanks for having me.
Narrator: Then the questions came.
"""


def test_all_four_kinds_end_to_end_through_the_cli(checkpoints, refs, qwen, write_script, tmp_path):
    script = write_script(INTERVIEW, "interview.txt")
    speaker_map = write_map(tmp_path, checkpoints, refs)
    out = tmp_path / "interview.wav"
    result = CliRunner().invoke(main, ["--script", str(script), "--speaker-map", speaker_map, "--stereo",
                                       "--lufs", "-16", "--out", str(out), "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["voice"] for r in report["lines"]] == ["Vivian", "clone:guest.wav", "design", "Vivian", "blend",
                                                      "clone:guest.wav", "design"]
    assert report["totals"]["synthesized"] == 6 and report["totals"]["repeated"] == 1
    assert report["loudness"] == pytest.approx(-16, abs=0.1)
    data, rate = sf.read(out)
    assert rate == 24000 and data.shape[1] == 2
    for r in report["lines"]:                       # every line is audible
        assert np.abs(data[round(r["start"] * rate):round(r["end"] * rate)]).max() > 0.01
    backend = qwen[0]
    # grouped by model: each of the three models loaded exactly once, though the lines interleave
    assert sorted(backend.loads) == sorted(str(p) for p in checkpoints.values())
    assert backend.prompt_calls == 2                # guest and host2, once each (the blend reuses them)


def test_preset_batch_matches_single_lines(checkpoints, qwen):
    from dialog_tts.script.voice import Voice
    backend = backends.get_backend("qwen")
    model = str(checkpoints["custom_voice"])
    voices = [backend.resolve(Voice(n, backend="qwen", options=(("model", model),))) for n in ("vivian", "Ryan")]
    assert [v.name for v in voices] == ["Vivian", "Ryan"]  # canonical names from the checkpoint's table
    clips = backend.synthesize_batch(["Hello there.", "A second, longer line of text."], voices)
    assert [c.frames for c in clips] == [FRAMES, FRAMES] and all(c.sample_rate == 24000 for c in clips)
    assert not np.array_equal(clips[0].samples, clips[1].samples)
    assert backend.loads == [model]


def test_unknown_preset_speaker_is_a_usage_error(checkpoints, qwen, write_script, tmp_path):
    script = write_script("A: Hello.\n")
    result = CliRunner().invoke(main, ["-s", str(script), "--voices",
                                       f"A=Nobody,backend=qwen,model={checkpoints['custom_voice']}",
                                       "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 2 and "unknown qwen speaker 'Nobody'" in result.output


def test_model_lru_keeps_two_and_reloads_the_evicted(checkpoints, refs, qwen, write_script, tmp_path):
    speaker_map = write_map(tmp_path, checkpoints, refs)
    script = write_script(INTERVIEW)
    synthesize_dialog(script, None, speaker_map=speaker_map, cache=False)
    backend = qwen[0]
    assert len(backend.loads) == 3 and len(backend.loaded_models()) == 2     # at most two stay loaded
    evicted = (set(map(str, checkpoints.values())) - set(backend.loaded_models())).pop()
    synthesize_dialog(script, None, speaker_map=speaker_map, cache=False, qwen_models_in_memory=1)
    assert len(backend.loaded_models()) == 1
    assert backend.loads.count(evicted) == 2                                 # loaded again when needed


def test_clone_prompts_cached_across_lines_runs_and_invalidated_by_edits(checkpoints, refs, qwen, write_script,
                                                                          tmp_path):
    speaker_map = write_map(tmp_path, checkpoints, refs)
    script = write_script("Guest: One.\nGuest: Two.\nGuest: Three.\n")
    synthesize_dialog(script, None, speaker_map=speaker_map, cache_dir=tmp_path / "c")
    assert qwen[-1].prompt_calls == 1                       # one prompt for three lines
    backends.unregister("qwen")                             # a new process: nothing in memory
    backends.register("qwen", lambda: qwen.append(CountingQwen()) or qwen[-1])
    script.write_text("Guest: Four, a new line.\n", encoding="utf-8")
    synthesize_dialog(script, None, speaker_map=speaker_map, cache_dir=tmp_path / "c")
    assert qwen[-1].prompt_calls == 0                       # the prompt came from the disk cache
    before = os.stat(refs["guest"]).st_mtime_ns
    sf.write(refs["guest"], qwen_tiny.chirp(1.0), 24000)    # the reference recording changed
    os.utime(refs["guest"], ns=(before + 10**9, before + 10**9))   # a later mtime, without waiting
    script.write_text("Guest: Five, another new line.\n", encoding="utf-8")
    synthesize_dialog(script, None, speaker_map=speaker_map, cache_dir=tmp_path / "c")
    assert qwen[-1].prompt_calls == 1


def test_preload_fills_the_prompt_cache(checkpoints, refs, qwen, write_script, tmp_path):
    speaker_map = write_map(tmp_path, checkpoints, refs)
    result = CliRunner().invoke(main, ["voices", "preload", "--speaker-map", speaker_map,
                                       "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert qwen[-1].prompt_calls == 2 and "5 qwen" in result.output
    backends.unregister("qwen")
    backends.register("qwen", lambda: qwen.append(CountingQwen()) or qwen[-1])
    synthesize_dialog(write_script("Duo: Together.\nGuest: Alone.\n"), None, speaker_map=speaker_map,
                      cache_dir=tmp_path / "c")
    assert qwen[-1].prompt_calls == 0


def test_blend_is_the_weighted_average_of_the_embeddings(checkpoints, refs, qwen, write_script, tmp_path):
    speaker_map = write_map(tmp_path, checkpoints, refs)
    synthesize_dialog(write_script("Duo: Together.\nGuest: Alone.\nHost2: Me too.\n"), None,
                      speaker_map=speaker_map, cache=False)
    backend = qwen[0]
    from dialog_tts.script import casting, speakers
    from dialog_tts.script import parse as script_mod
    smap = speakers.load_speaker_map(speaker_map)
    cast = casting.cast(script_mod.parse_text("Duo: x\nGuest: y\nHost2: z\n"), speaker_map=smap)
    blend = backend.clone_prompt(cast["duo"])
    guest = backend.clone_prompt(cast["guest"])
    host2 = backend.clone_prompt(cast["host2"])
    expected = 0.6 * guest.ref_spk_embedding + 0.4 * host2.ref_spk_embedding
    assert np.allclose(blend.ref_spk_embedding.numpy(), expected.numpy(), atol=1e-6)
    assert blend.x_vector_only_mode and blend.ref_code is None


def test_mix_errors_name_the_map_line(checkpoints, refs, qwen, write_script, tmp_path):
    bad = write_map(tmp_path, checkpoints, refs, extra="Trio: {backend: qwen, mix: {Guest: 0.5, Nobody: 0.5}}\n")
    result = CliRunner().invoke(main, ["-s", str(write_script("Trio: Hi.\n")), "--speaker-map", bad,
                                       "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 2
    assert "qwen.yaml:6: speaker 'Trio': mix: no speaker 'Nobody'" in result.output
    bad = write_map(tmp_path, checkpoints, refs, extra="Trio: {backend: qwen, mix: {Host: 1}}\n")
    result = CliRunner().invoke(main, ["-s", str(write_script("Trio: Hi.\n")), "--speaker-map", bad,
                                       "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 2 and "speaker 'Host' is not a cloned voice" in result.output


class FailingQwen(CountingQwen):
    """The real qwen backend, except that a batch holding a line with FAIL raises (as on CUDA OOM)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def synthesize_batch(self, texts, voices):
        self.batches.append(len(texts))
        if any("FAIL" in t for t in texts):
            raise SynthesisError("qwen: CUDA out of memory on a batch")
        return super().synthesize_batch(texts, voices)


def test_a_failing_batch_is_split_down_to_the_bad_line(checkpoints, write_script, tmp_path):
    inst = FailingQwen()
    backends.register("qwen", lambda: inst)
    try:
        model = checkpoints["custom_voice"]
        lines = "".join(f"A: Line number {i}{' FAIL' if i == 5 else ''}.\n" for i in range(8))
        result = synthesize_dialog(write_script(lines), tmp_path / "o.wav", keep_going=True, retries=0,
                                   voices={"A": f"Vivian,backend=qwen,model={model}"}, qwen_batch_size=8)
    finally:
        backends.unregister("qwen")
    assert inst.batches == [8, 4, 4, 2, 2, 1, 1]      # 8 → halves → quarters → the single bad line
    failed = [r for r in result.lines if r.source == "failed"]
    assert [r.line for r in failed] == [6] and result.totals.synthesized == 7
    assert inst.loads == [str(model)]


def test_without_qwen_tts_the_error_names_the_install(monkeypatch, qwen):
    import sys
    monkeypatch.setitem(sys.modules, "qwen_tts", None)
    from dialog_tts.backends.base import install_hint
    from dialog_tts.errors import BackendUnavailableError
    from dialog_tts.script.voice import Voice
    with pytest.raises(BackendUnavailableError, match=re.escape(install_hint("qwen"))):
        backends.get_backend("qwen").synthesize("hi", Voice("Vivian", backend="qwen"))


def test_cli_import_does_not_load_torch():
    import subprocess
    import sys
    code = "import sys, dialog_tts.cli, dialog_tts.backends.qwen; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ}).stdout.strip() == "False"


def test_shipped_qwen_map_casts_all_four_kinds():
    """config/qwen.yaml with samples/interview.txt: casting only (no model is loaded)."""
    from pathlib import Path

    from dialog_tts.backends.qwen import voice_kind
    from dialog_tts.script import casting, speakers
    from dialog_tts.script import parse as script_mod
    root = Path(__file__).resolve().parents[1]
    smap = speakers.load_speaker_map(root / "config" / "qwen.yaml")
    cast = casting.cast(script_mod.load(root / "samples" / "interview.txt"), speaker_map=smap)
    kinds = {key: (voice_kind(v), v.name) for key, v in cast.items()}
    assert kinds == {"narrator": ("voice_design", "design"), "host": ("custom_voice", "Vivian"),
                     "guest": ("base", "clone:guest.flac"), "duo": ("base", "blend")}
    assert Path(cast["guest"].option("ref_audio")).is_file()
    weights = {name: dict(fields)["weight"] for name, fields in cast["duo"].option("mix")}
    assert weights == {"Guest": 0.6, "Host2": 0.4}


# ------------------------------------------------------------------ issue 11, items 18 and 19

def _closed_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TEN = "".join(f"A: Line number {i}.\n" for i in range(10))


@pytest.mark.parametrize("env, reason", [
    ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
    ({"HF_ENDPOINT": "https://127.0.0.1:{port}"}, "127.0.0.1 cannot be reached"),
])
def test_a_hub_model_without_network_fails_once_before_synthesis(env, reason, qwen, monkeypatch, write_script,
                                                                   tmp_path):
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(port=_closed_port()))
    model = "nobody/Not-Downloaded-CustomVoice"            # a hub id, not a folder, not in the HF cache
    result = CliRunner().invoke(main, ["-s", str(write_script(TEN)), "--voices", f"A=Vivian,backend=qwen,model={model}",
                                       "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 2
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, result.output                 # once, not once per line
    assert f"cannot load qwen model '{model}'" in errors[0] and reason in errors[0]
    assert "model: DIR" in errors[0] and "run again" not in result.output
    assert qwen[0].loads == []                             # not one hub request


def test_a_model_that_fails_to_load_is_tried_once_for_all_its_lines(qwen, write_script, tmp_path):
    empty = tmp_path / "broken-model"                    # a config, but no weights: fails to load
    empty.mkdir()
    (empty / "config.json").write_text("{}", encoding="utf-8")
    result = synthesize_dialog(write_script(TEN), None, voices={"A": f"Vivian,backend=qwen,model={empty}"},
                               keep_going=True, cache=False, qwen_batch_size=2)
    assert result.totals.failed == 10
    assert qwen[0].loads == [str(empty)]                   # not once per batch and per split half
    errors = {r.error for r in result.lines}
    assert len(errors) == 1 and errors.pop().startswith(f"cannot load qwen model '{empty}': ")


def test_qwen_tts_banner_stays_off_stdout():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    code = "from dialog_tts.backends.qwen import import_torch; import_torch()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "flash-attn" in done.stderr                      # the banner is still there, on stderr


STAND_IN_PROBE = """
import importlib.util, json, sys
from dialog_tts.backends.qwen import import_torch
import_torch()
import qwen_tts.core.tokenizer_25hz.vq.speech_vq as vq
try:
    vq.kaldi.fbank()
    called = "ran"
except Exception as exc:
    called = type(exc).__name__ + ": " + str(exc)
left = sorted(m for m in sys.modules if m.split(".")[0] == "torchaudio")
spec = importlib.util.find_spec("torchaudio")
try:
    import torchaudio
    later = torchaudio.__file__
except ImportError:
    later = None
import_torch()                      # once qwen_tts is imported, nothing stands in again
again = sorted(m for m in sys.modules if m.split(".")[0] == "torchaudio")
print(json.dumps({"left": left, "spec": spec is not None, "called": called, "later": later, "again": again,
                  "kaldi_file": getattr(vq.kaldi, "__file__", None)}))
"""


def _stand_in_probe(pythonpath: str) -> dict:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", STAND_IN_PROBE], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": pythonpath}, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_torchaudio_stand_in_does_not_outlive_the_qwen_import():
    """Without a torchaudio that loads, qwen_tts still imports; afterwards no torchaudio module is left
    in sys.modules, none is found, ``import torchaudio`` fails as it would have, and the 25 Hz
    tokenizer's kaldi (the stand-in qwen_tts kept) raises, naming torchaudio."""
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("torchaudio") is not None:
        pytest.skip("a real torchaudio is installed here")
    result = _stand_in_probe(str(Path(__file__).resolve().parents[1]))
    assert result["left"] == [] and result["again"] == [] and not result["spec"] and result["later"] is None
    assert result["called"].startswith("RuntimeError: torchaudio is not installed")


def test_a_torchaudio_that_loads_is_used_as_it_is(tmp_path):
    """Where torchaudio imports (a stand-in package on the path plays it here), qwen_tts gets it: nothing
    stands in for it, and it stays loaded."""
    from pathlib import Path

    package = tmp_path / "torchaudio"
    (package / "compliance").mkdir(parents=True)
    (package / "__init__.py").write_text("__version__ = '2.13.0'\nfrom . import compliance\n", encoding="utf-8")
    (package / "compliance" / "__init__.py").write_text("from . import kaldi\n", encoding="utf-8")
    (package / "compliance" / "kaldi.py").write_text("def fbank(*args, **kwargs):\n    return 'fbank'\n",
                                                      encoding="utf-8")
    result = _stand_in_probe(os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[1])]))
    assert result["called"] == "ran" and result["kaldi_file"] == str(package / "compliance" / "kaldi.py")
    assert result["left"] == result["again"] == ["torchaudio", "torchaudio.compliance", "torchaudio.compliance.kaldi"]
    assert result["later"] == str(package / "__init__.py")


def test_preload_fails_when_a_clone_prompt_fails(checkpoints, refs, qwen, tmp_path):
    (tmp_path / "guest.wav").write_text("not a recording\n", encoding="utf-8")
    speaker_map = write_map(tmp_path, checkpoints, refs)
    result = CliRunner().invoke(main, ["voices", "preload", "--speaker-map", speaker_map,
                                       "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert "Prepared" not in result.output
    assert "2 of 5 voices could not be prepared" in result.output
    assert "  Guest (qwen:clone:guest.wav): voice-clone prompt for" in result.output
    assert "  Duo (qwen:blend): voice-clone prompt for" in result.output
