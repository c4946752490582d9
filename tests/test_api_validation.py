"""The API checks every option as the command line does (issue 26, items 18 and 19).

Each option of RenderOptions gets values of the wrong type, out of range, nan and inf; each must be a
usage error (InputError, exit 2) that names the option, raised before anything is synthesized or
written.  The command line's number options use the same rules (dialog_tts.render.validate.OPTIONS).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dialog_tts import api
from dialog_tts.api import (
    Renderer,
    RenderOptions,
    list_voices,
    plan_dialog,
    preload_voices,
    synthesize_batch,
    synthesize_dialog,
)
from dialog_tts.cli import CheckedNumber, main
from dialog_tts.errors import DialogTTSError, InputError
from dialog_tts.quality.checks import Thresholds
from dialog_tts.render import validate

NAN, INF = float("nan"), float("inf")
PATH_BAD = [5, "", b"x.txt", "a\x00b", 1.5]
FLAG_BAD = ["no", 1, 0, "False"]
TEXT_BAD = [123, 2025, b"x", ["x"], 1.5]

#: Option -> values it must refuse.  Every field of RenderOptions has a row (test below).
BAD: dict[str, list] = {
    "voices": [5, "A=tone", {"A": 5}, {1: "tone"}, [5], [("A",)], b"A=low"],
    "speaker_map": PATH_BAD,
    "lexicon": PATH_BAD,
    "backend": [5, b"tone"],
    "sample_rate": [24000.0, True, "24000", 10 ** 400, 7999, 192001, NAN, INF, None],
    "stereo": [*FLAG_BAD, None],
    "gap_ms": [NAN, INF, -INF, -1, 60_001, 10 ** 400, "250", True, None],
    "lufs": [NAN, -INF, 0.5, -71, "x", True],
    "true_peak": [NAN, INF, 0.5, -21, "-1", None],
    "leveling": ["loud", 1, None, "LINE"],
    "bit_depth": [24, "8", "32"],
    "allow_quieter": FLAG_BAD,
    "speak_directions": FLAG_BAD,
    "workers": [0, 65, 2.0, "4", NAN, True],
    "cache": FLAG_BAD,
    "cache_dir": PATH_BAD,
    "cache_size": [True, 1.5, "lots", 10 ** 30, -1, None, NAN],
    "retries": [-1, 11, NAN, 1.0],
    "keep_going": FLAG_BAD,
    "report": PATH_BAD,
    "force": FLAG_BAD,
    "executor": ["process", 1, None],
    "ray_address": [5, b"auto"],
    "backend_options": [{"espeak.x": 1}, "qwen.batch_size=8", 5, [5], {"qwen": {1: 2}}, {"qwen": ["batch_size"]},
                        {5: {"batch_size": 8}}],
    "timeout": [0, 0.05, NAN, INF, "3", 3601],
    "qwen_batch_size": [0, 257, 2.5, "8"],
    "qwen_models_in_memory": [0, 17, 1.0],
    "threads": [0, 257, "4", NAN],
    "music": PATH_BAD,
    "music_level": [NAN, 1e308, -INF, INF, "1", -61, 13, None],
    "duck": [INF, NAN, -1, 61, "12"],
    "duck_attack": [NAN, 6, -0.1, "0.3"],
    "duck_release": [NAN, -0.1, 11, INF],
    "music_lead": [1e9, "1", NAN, -1, 10 ** 400],
    "intro": PATH_BAD,
    "outro": PATH_BAD,
    "subtitles": PATH_BAD,
    "stems": PATH_BAD,
    "review": PATH_BAD,
    "chapters": FLAG_BAD,
    "bitrate": [True, 10 ** 9, 100, "lots", "infk", "nank", 1.5],
    "stream_format": ["aiff", 5, ".aiff"],
    "title": TEXT_BAD,
    "artist": TEXT_BAD,
    "album": TEXT_BAD,
    "year": TEXT_BAD,
    "comment": TEXT_BAD,
    "cover": PATH_BAD,
    "check": ["full", 1, None],
    "takes": [0, 11, 2.5, "3", NAN],
    "max_wer": [0, -0.5, NAN, 11, "0.5", INF],
    "thresholds": ["x", {"max_pause": 2.0}, Thresholds(max_pause=NAN), Thresholds(max_pause=INF),
                   Thresholds(min_level_db=3.0), Thresholds(max_clipped=-0.1), Thresholds(max_steady="1")],
    "strict": FLAG_BAD,
}

CASES = [(name, value) for name, values in BAD.items() for value in values
         if name in {f.name for f in fields(RenderOptions)}]


def names(option: str) -> tuple[str, ...]:
    """How a message may name *option*: as the API spells it, or in words (``cache size``)."""
    return option, option.replace("_", " ")


def test_every_option_has_a_rule_and_bad_values():
    options = {f.name for f in fields(RenderOptions)}
    assert options <= set(validate.OPTIONS), options - set(validate.OPTIONS)
    assert options <= set(BAD), options - set(BAD)


@pytest.mark.parametrize(("option", "value"), CASES, ids=[f"{n}={validate.shown(v)}" for n, v in CASES])
def test_a_bad_value_of_any_option_is_a_usage_error_naming_it(option, value, write_script, tone_backend, tmp_path):
    script = write_script("A: Hello there.\nB: Hi.\n")
    out = tmp_path / "o.wav"
    with pytest.raises(InputError) as caught:
        synthesize_dialog(script, out, **{"backend": "tone", option: value})
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert any(n in message for n in names(option)), message
    assert len(message.splitlines()) == 1 and len(message) < 300, message
    assert tone_backend.calls == [] and not out.exists()


#: One bad value of each option, set after the Renderer checked its options.
CHANGED = [(name, values[0]) for name, values in BAD.items() if name in {f.name for f in fields(RenderOptions)}]


@pytest.mark.parametrize(("option", "value"), CHANGED, ids=[f"{n}={validate.shown(v)}" for n, v in CHANGED])
def test_an_option_changed_after_the_renderer_checked_it_is_checked_again(option, value, write_script,
                                                                         tone_backend, tmp_path):
    script = write_script("A: Hello there.\nB: Hi.\n")
    out = tmp_path / "o.wav"
    with Renderer(RenderOptions(backend="tone")) as renderer:
        setattr(renderer.options, option, value)
        for step in (lambda: renderer.render(script, out), lambda: renderer.plan(script),
                     lambda: renderer.stream(script)):
            with pytest.raises(InputError) as caught:
                step()
            assert any(n in str(caught.value) for n in names(option)), str(caught.value)
    assert tone_backend.calls == [] and not out.exists()


@pytest.mark.parametrize(("option", "value"), [("music_level", NAN), ("music_level", 1e308), ("duck", INF),
                                               ("duck_release", NAN), ("music_lead", 1e9), ("music_lead", "1")])
def test_item_18_music_options_with_a_real_bed(option, value, write_script, tone_backend, tmp_path):
    """The attack's cases, with a bed given: refused before the bed is read or any line synthesized."""
    bed = tmp_path / "bed.wav"
    sf.write(bed, np.zeros((16000, 2), np.float32), 16000)
    out = tmp_path / "o.wav"
    with pytest.raises(InputError, match=f"^{option} "):
        synthesize_dialog(write_script("A: Hello.\n"), out, backend="tone", music=bed, **{option: value})
    assert tone_backend.calls == [] and not out.exists()


def render_many(*args, **kwargs):
    with Renderer(RenderOptions(backend="tone")) as renderer:
        return renderer.render_many(*args, **kwargs)


@pytest.mark.parametrize(("call", "named"), [
    (lambda s, t: Renderer("x"), "options"),
    (lambda s, t: Renderer({"lufs": -16}), "options"),
    (lambda s, t: Renderer(progress_callback=5), "progress_callback"),
    (lambda s, t: Renderer(on_progress="print"), "on_progress"),
    (lambda s, t: Renderer(sleep=1.0), "sleep"),
    (lambda s, t: synthesize_dialog(5, t / "o.wav", backend="tone"), "script"),
    (lambda s, t: synthesize_dialog("", t / "o.wav", backend="tone"), "script"),
    (lambda s, t: synthesize_dialog(s, 5, backend="tone"), "out"),
    (lambda s, t: synthesize_dialog(s, b"o.wav", backend="tone"), "out"),
    (lambda s, t: plan_dialog(None, backend="tone"), "script"),
    (lambda s, t: synthesize_batch(str(s), t / "out", backend="tone"), "scripts"),
    (lambda s, t: synthesize_batch(5, t / "out", backend="tone"), "scripts"),
    (lambda s, t: synthesize_batch([s, 5], t / "out", backend="tone"), "scripts"),
    (lambda s, t: synthesize_batch([s], t / "out", fmt=5, backend="tone"), "fmt"),
    (lambda s, t: synthesize_batch([s], 5, backend="tone"), "out_dir"),
    (lambda s, t: synthesize_batch([s], t / "out", backend="tone", gap_ms=NAN), "gap_ms"),
    (lambda s, t: render_many(str(s), t / "out"), "scripts"),
    (lambda s, t: render_many([s], t / "out", fmt=None), "fmt"),
    (lambda s, t: render_many([s], None), "out_dir"),
    (lambda s, t: preload_voices(5), "speaker_map"),
    (lambda s, t: preload_voices(s, cache_size="lots"), "cache size"),
    (lambda s, t: preload_voices(s, cache_dir=5), "cache_dir"),
    (lambda s, t: list_voices(5), "backend"),
])
def test_the_api_functions_arguments_are_checked_too(call, named, write_script, tone_backend, tmp_path):
    script = write_script("A: Hello.\n")
    with pytest.raises(DialogTTSError) as caught:
        call(script, tmp_path)
    assert caught.value.exit_code == 2 and named in str(caught.value), str(caught.value)
    assert tone_backend.calls == [] and not (tmp_path / "out").exists()


def test_the_ranges_ends_and_the_defaults_are_accepted(write_script, tone_backend, tmp_path):
    RenderOptions().check_all()
    ends = {"sample_rate": 192000, "gap_ms": 60_000, "lufs": -70, "true_peak": 0, "workers": 64, "retries": 0,
            "timeout": 0.1, "qwen_batch_size": 256, "qwen_models_in_memory": 16, "threads": 1, "music_level": 12,
            "duck": 0, "duck_attack": 5, "duck_release": 10, "music_lead": 60, "takes": 10, "max_wer": 10,
            "cache_size": 0, "bitrate": 16_000, "stream_format": ".opus", "check": "ASR", "bit_depth": "32f",
            "voices": {"A": {"voice": "low"}}, "backend_options": ["tone.x=1"],
            "thresholds": Thresholds(max_pause=3.0), "year": "2025", "cover": Path("c.png"), "stereo": False}
    RenderOptions(**ends).check_all()
    RenderOptions(lufs=np.float32(-16), workers=np.int64(2), music_lead=0).check_all()   # NumPy numbers
    # and a render with options of every kind goes through
    result = synthesize_dialog(write_script("A: Hello.\nB: Hi.\n"), tmp_path / "o.wav", backend="tone",
                               voices=[("A", {"voice": "low"}), "B=high"], gap_ms=0, stereo=False, title="T",
                               year="2025", takes=1, cache=False)
    assert result.channels == 1 and (tmp_path / "o.wav").exists()


#: The command line's number options, each with the rule the API checks it by.
FLAGS = {p.name: p for p in main.params if isinstance(p.type, CheckedNumber)}


def test_every_number_option_of_the_cli_uses_the_apis_rule():
    numbers = {name for name, rule in validate.OPTIONS.items() if isinstance(rule, validate.Number)}
    assert set(FLAGS) == numbers
    for name, param in FLAGS.items():
        assert param.type.rule is validate.OPTIONS[name]


@pytest.mark.parametrize("option", sorted(FLAGS))
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_the_cli_refuses_what_the_api_refuses(option, value, write_script, tone_backend):
    flag = FLAGS[option].opts[0]
    rule = validate.OPTIONS[option]
    assert isinstance(rule, validate.Number)
    result = CliRunner().invoke(main, ["-s", str(write_script("A: Hello.\n")), "--backend", "tone", "--dry-run",
                                       flag, value])
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code == 2 and "Traceback" not in result.output
    if rule.whole:
        assert last == f"Error: Invalid value for '{flag}': {value!r} is not a valid integer.", last
    else:
        shown = "inf" if value == "1e400" else value
        assert last == f"Error: Invalid value for '{flag}': {shown} is out of range ({rule.describe()})", last
    with pytest.raises(InputError, match=f"^{option} "):
        RenderOptions(**{option: float(value)}).check_all()
    assert tone_backend.calls == []


def test_limits_are_the_apis_own():
    assert (api.MAX_GAP_MS, api.MAX_WORKERS, api.MAX_RETRIES) == (60_000.0, 64, 10)
    assert validate.shown(10 ** 5000) == "<int too long to show>" and len(validate.shown("x" * 10_000)) == 40
