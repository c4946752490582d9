"""Hostile or absurd input is a one-line usage error (exit 2) before any synthesis (issue 11, items 4-9)."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from dialog_tts import synthesize_dialog
from dialog_tts.api import MAX_WORKERS, RenderOptions
from dialog_tts.cli import main
from dialog_tts.errors import InputError, VoiceSpecError
from dialog_tts.script.speakers import load_speaker_map
from dialog_tts.script.textfiles import MAX_INPUT_BYTES, MAX_YAML_NODES, read_bytes
from dialog_tts.synth.cache import parse_size


def cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, "\n".join(lines)


@pytest.fixture
def script(write_script):
    return write_script("A: Hello.\nB: Hi.\n")


# ---------------------------------------------------------------- 4: bounded reads, regular files only

@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_as_script_or_speaker_map_is_refused_unread(device, script, tone_backend):
    code, out = cli("-s", device, "--dry-run", "--backend", "tone")
    assert code == 2 and out == f"Error: {device}: is a device: a script must be a regular file"
    code, out = cli("-s", script, "--speaker-map", device, "--dry-run", "--backend", "tone")
    assert code == 2 and out == f"Error: {device}: is a device: a speaker map must be a regular file"


def test_a_fifo_without_a_writer_is_refused_not_waited_on(tmp_path, script, tone_backend):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for option in ("-s", "--speaker-map", "--lexicon"):
        args = ["-s", fifo] if option == "-s" else ["-s", script, option, fifo]
        code, out = cli(*args, "--dry-run", "--backend", "tone")
        assert code == 2 and out.startswith(f"Error: {fifo}: is a FIFO: a ") and out.endswith("must be a regular file")


def test_a_file_over_the_limit_is_refused(tmp_path, tone_backend):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.write(b"A: hi\n")
        f.truncate(MAX_INPUT_BYTES + 1)          # sparse: nothing is written to disk
    code, out = cli("-s", big, "--dry-run", "--backend", "tone")
    assert code == 2 and out == f"Error: {big}: script is larger than 50 MB (the most dialog-tts reads)"
    assert read_bytes(big, what="x", limit=MAX_INPUT_BYTES + 1)[:6] == b"A: hi\n"


# ---------------------------------------------------------------- 5: YAML alias bombs

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def test_an_alias_bomb_in_a_speaker_map_is_refused(tmp_path, script, tone_backend):
    path = tmp_path / "bomb.yaml"
    path.write_text("A:\n  voice: low\n  backend: tone\n" + BOMB)
    assert len(path.read_bytes()) < 1000
    code, out = cli("-s", script, "--speaker-map", path, "--dry-run", "--backend", "tone")
    assert code == 2 and f"more than {MAX_YAML_NODES} values" in out and out.startswith(f"Error: {path}:1: ")


def test_an_alias_bomb_in_a_lexicon_is_refused(tmp_path, script, tone_backend):
    path = tmp_path / "lex.yaml"
    path.write_text(BOMB)
    code, out = cli("-s", script, "--lexicon", path, "--dry-run", "--backend", "tone")
    assert code == 2 and "alias bomb" in out


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("A: &a [*a]\n")
    with pytest.raises(VoiceSpecError, match="more than"):
        load_speaker_map(path)


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &base {voice: low, rate: 180}\nA: {<<: *base, pan: -0.3}\nB: *base\n")
    smap = load_speaker_map(path)
    assert smap.entries["a"][1] == {"voice": "low", "rate": 180, "pan": -0.3}
    assert smap.entries["b"][1] == {"voice": "low", "rate": 180}


# ---------------------------------------------------------------- 7: absurd values

@pytest.mark.parametrize("args, message", [
    (["--gap-ms", "inf"], "'--gap-ms': inf is out of range (0 to 60000 ms)"),
    (["--gap-ms", "nan"], "'--gap-ms': nan is out of range (0 to 60000 ms)"),
    (["--gap-ms", "1e12"], "'--gap-ms': 1000000000000.0 is out of range (0 to 60000 ms)"),
    (["--cache-size", "10000000000T"], "cache size '10000000000T' is out of range (0 to 1 PB)"),
    (["--cache-size", "9" * 400], "is out of range (0 to 1 PB)"),
])
def test_absurd_options_are_usage_errors(args, message, script, tone_backend):
    code, out = cli("-s", script, "--backend", "tone", "--dry-run", *args)
    last = out.splitlines()[-1]       # a number option refused by its Click type comes after Click's usage line
    assert code == 2 and last.startswith("Error: ") and last.endswith(message)


@pytest.mark.parametrize("pause", ["[pause 99999999999s]", "[pause " + "1" * 300 + "s]", "[pause 3600s]"])
def test_absurd_pauses_are_usage_errors_before_synthesis(pause, write_script, tone_backend, tmp_path):
    path = write_script(f"A: Hello.\n{pause}\nB: Hi.\n")
    code, out = cli("-s", path, "--backend", "tone", "-o", tmp_path / "o.wav")
    assert code == 2 and out.startswith(f"Error: {path}:2: ") and tone_backend.calls == []


@pytest.mark.parametrize("options, match", [
    ({"sample_rate": 24000.0}, "sample_rate 24000.0 is not a whole number"),
    ({"sample_rate": True}, "sample_rate True is not a whole number"),
    ({"workers": 10 ** 6}, f"workers 1000000 is out of range \\(1 to {MAX_WORKERS}\\)"),
    ({"workers": 2.0}, "workers 2.0 is not a whole number"),
    ({"retries": 10 ** 6}, "retries 1000000 is out of range"),
    ({"gap_ms": float("nan")}, "gap_ms nan is out of range"),
    ({"lufs": float("-inf")}, "lufs -inf is out of range"),
    ({"true_peak": float("nan")}, "true_peak nan is out of range"),
    ({"cache_size": 10 ** 30}, "out of range"),
])
def test_absurd_api_options_are_input_errors_before_synthesis(options, match, script, tone_backend):
    with pytest.raises(InputError, match=match):
        synthesize_dialog(script, None, backend="tone", **options)
    assert tone_backend.calls == []


def test_the_limits_themselves_are_accepted():
    RenderOptions(gap_ms=60_000, workers=MAX_WORKERS, retries=10, sample_rate=192000).mix_settings()
    assert parse_size("1000TB") == 1000 ** 5


# ---------------------------------------------------------------- 8: YAML reader errors

def test_a_control_character_in_a_speaker_map_is_one_located_line(tmp_path, script, tone_backend):
    path = tmp_path / "m.yaml"
    path.write_bytes(b"A: en-us\x07\n")
    code, out = cli("-s", script, "--speaker-map", path, "--dry-run", "--backend", "tone")
    assert code == 2 and out == f"Error: {path}:1: invalid YAML: unacceptable character '\\x07' (U+0007)"


def test_a_syntax_error_in_a_speaker_map_is_one_located_line(tmp_path, script, tone_backend):
    path = tmp_path / "m.yaml"
    path.write_text("A: low\nB: [unclosed\n")
    code, out = cli("-s", script, "--speaker-map", path, "--dry-run", "--backend", "tone")
    assert code == 2 and out.startswith(f"Error: {path}:3: invalid YAML: ") and "\n" not in out


# ---------------------------------------------------------------- 9: qwen model folders

@pytest.mark.parametrize("config, match", [
    ("{not json", "model config is not valid JSON"),
    ("[1, 2]", "model config is a JSON list, not an object"),
])
def test_a_malformed_qwen_model_config_is_one_line(config, match, tmp_path, script):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(config)
    for spec in (f"Vivian,backend=qwen,model={model}", f"backend=qwen,design=calm,model={model}"):
        code, out = cli("-s", script, "--voices", f"A={spec}", "--voices", "B=Serena,backend=qwen", "--dry-run")
        assert code == 2 and match in out and str(model / "config.json") in out and "\n" not in out


def test_qwen_model_root_is_an_error_not_a_walk(script):
    code, out = cli("-s", script, "--voices", "A=Vivian,backend=qwen,model=/", "B=Serena,backend=qwen", "--dry-run")
    assert code == 2 and "is a folder without config.json" in out


def test_qwen_model_identity_reads_only_the_files_qwen_loads(tmp_path):
    from dialog_tts.backends.qwen import _model_identity

    model = tmp_path / "model"
    (model / "speech_tokenizer").mkdir(parents=True)
    (model / "deep" / "er").mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"a": 1}))
    (model / "speech_tokenizer" / "config.json").write_text("{}")
    before = _model_identity(str(model))
    (model / "deep" / "er" / "other.json").write_text("{}")      # not loaded by qwen: no change
    assert _model_identity(str(model)) == before
    (model / "speech_tokenizer" / "config.json").write_text('{"b": 2}')
    assert _model_identity(str(model)) != before
