"""Property-based fuzzing of everything a user types: scripts, speaker maps, voice specs and render options.

Any exception other than a DialogTTSError fails a property, and so does a result
out of proportion to a small input (sizes are asserted, never wall-clock time).
Inputs are kept small and example counts bounded, so the whole file runs in
well under a minute; ``deadline=None`` because a loaded CI machine is slow, not wrong.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialog_tts.api import RenderOptions
from dialog_tts.errors import DialogTTSError
from dialog_tts.script import parse as script_mod
from dialog_tts.script import speakers

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_TEXT = 400

# Text that hits the script format's edges: speaker labels, colons, brackets, pauses, comments, controls.
_PIECES = st.sampled_from([
    "A", "B", "Dr. Who", "Lady Bracknell", ":", ": ", "[", "]", "(", ")", "pause", "[pause 1s]", "[pause 500ms]",
    "[pause ", "s]", "ms]", "#", "\n", "\r\n", "\t", " ", "  ", "---", "[chapter One]", "Hello there.", "1e9",
    "nan", "inf", "-1", "0", "3600", "99999999999", "\x00", "\x1b[2J", "\ufeff", "é", "철수", "\u200b", "\\", '"', "'", "=", ",",
])
SCRIPT_TEXT = st.one_of(
    st.lists(_PIECES, max_size=60).map("".join),
    st.text(max_size=MAX_TEXT),
)


def _bounded(value: float, limit: float) -> bool:
    return math.isfinite(value) and 0 <= value <= limit


@FUZZ
@given(SCRIPT_TEXT)
def test_script_parser_raises_only_its_own_errors_and_stays_small(text):
    try:
        parsed = script_mod.parse_text(text)
    except DialogTTSError:
        return
    lines = parsed.lines
    assert len(parsed.events) <= text.count("\n") + text.count("\r") + 1
    assert sum(len(line.text) for line in lines) <= len(text)
    assert len(parsed.speakers) <= max(1, len(lines))
    for line in lines:
        assert line.text.strip() and line.line_no >= 1


@FUZZ
@given(st.builds("A: hi\n[pause {}{}]\n".format,
                 st.one_of(st.integers(0, 10**300).map(str), st.floats().map(repr), st.text("0123456789.e+-", max_size=12)),
                 st.sampled_from(["s", "ms", " s", "sec", ""])))
def test_script_pauses_are_finite_and_bounded(text):
    try:
        parsed = script_mod.parse_text(text)
    except DialogTTSError:
        return
    pauses = [e for e in parsed.events if isinstance(e, script_mod.Pause)]
    assert all(_bounded(p.seconds, 60) for p in pauses)          # the documented limit


# ------------------------------------------------------------------ speaker maps

_KEYS = st.sampled_from(["voice", "backend", "rate", "pitch", "volume", "pan", "gain", "instruct", "model",
                         "Voice", "PAN", "defaults", "mix", "ref_audio", "speaker", ""])
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["joe", "joe-deep", "en-us+f3", "espeak", "piper", "edge", "qwen", "tone", "+10%", "1.5x",
                     "180wpm", "-3dB", "+2st", "0.3", "-1", "1", "nan", "inf"]),
)
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)), max_leaves=8)
_ENTRY = st.one_of(_SCALARS, st.dictionaries(_KEYS, _VALUES, max_size=5), st.lists(_VALUES, max_size=3))
_MAPS = st.dictionaries(st.one_of(st.sampled_from(["A", "B", "Narrator", "defaults", "Dr. Who"]),
                                  st.text(max_size=12)),
                        _ENTRY, max_size=5)
#: Characters YAML's reader accepts (control characters are tested on their own below).
_YAML_CHARS = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufeff\ufffe\uffff") | \
    st.sampled_from("\n\t")
MAP_TEXT = st.one_of(
    _MAPS.map(lambda m: yaml.safe_dump(m, allow_unicode=True)),
    st.text(_YAML_CHARS, max_size=MAX_TEXT),
    st.lists(st.sampled_from(["A: joe\n", "B: {voice: joe, pan: 0.5}\n", "defaults: {rate: 1.1x}\n", "&a [1]\n",
                              "*a\n", "- x\n", ": :\n", "A: [", "!!python/object:os.system\n", "\t", "%YAML 1.1\n",
                              "---\n", "A: joe, pan=0.3\n", "? A\n"]), max_size=12).map("".join),
)


@FUZZ
@given(MAP_TEXT)
def test_speaker_map_raises_only_its_own_errors_and_stays_small(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "map.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            smap = speakers.load_speaker_map(path)
        except DialogTTSError:
            return
    assert len(smap.entries) <= max(1, len(text))


@FUZZ
@given(st.text(st.characters(whitelist_categories=("Cc",)), min_size=1, max_size=4).map(lambda c: f"A: joe{c}\n"))
def test_speaker_map_with_control_characters_is_a_located_error(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "map.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            speakers.load_speaker_map(path)
        except DialogTTSError:
            return


# ------------------------------------------------------------------ voice specs

_SPEC = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(["A", "B", "=", ",", "joe", "rate", "pitch", "pan", "gain", "volume", "backend",
                              "=1", "=-1", "=nan", "=inf", "=1e309", "=+5st", "=120wpm", "=2x", "=+10%", "=-3dB",
                              " ", "instruct=warm", "edge", "qwen", "\x00", "é"]), max_size=20).map("".join),
)


@FUZZ
@given(_SPEC)
def test_voice_assignments_raise_only_their_own_errors(text):
    try:
        name, fields = speakers.parse_assignment(text)
        voice = speakers.voice_from_fields(fields, where=f"--voices {name}")
    except DialogTTSError:
        return
    assert len(voice.describe()) <= 4 * len(text) + 64
    if voice.pan is not None:
        assert -1.0 <= voice.pan <= 1.0
    assert math.isfinite(voice.pitch) and math.isfinite(voice.volume) and math.isfinite(voice.gain)


@FUZZ
@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_voice_fields_raise_only_their_own_errors(fields):
    try:
        voice = speakers.voice_from_fields(fields, where="speaker 'A'")
    except DialogTTSError:
        return
    assert len(voice.options) <= len(fields)
    hash(voice)                                     # a cast voice is a dictionary key in the engine


# ------------------------------------------------------------------ render options

_NUMBERS = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True))
_BACKEND_OPTIONS = st.lists(st.one_of(
    st.text(max_size=30),
    st.builds(lambda b, k, v: f"{b}.{k}={v}", st.sampled_from(["edge", "qwen", "piper", "espeak", "nope"]),
              st.sampled_from(["timeout", "concurrency", "batch_size", "models_in_memory", "threads", "x"]),
              st.one_of(st.text(max_size=8), _NUMBERS.map(str), st.sampled_from(["²", "1e3", "0x10", "+4"]))),
), max_size=4)


@FUZZ
@given(sample_rate=_NUMBERS, gap_ms=_NUMBERS, lufs=st.one_of(st.none(), _NUMBERS), true_peak=_NUMBERS,
       workers=_NUMBERS, retries=_NUMBERS)
def test_mix_settings_raise_only_their_own_errors(sample_rate, gap_ms, lufs, true_peak, workers, retries):
    options = RenderOptions(sample_rate=sample_rate, gap_ms=gap_ms, lufs=lufs, true_peak=true_peak,
                            workers=workers, retries=retries)
    try:
        options.mix_settings()
    except DialogTTSError:
        return


@FUZZ
@given(sample_rate=_NUMBERS, gap_ms=_NUMBERS, workers=_NUMBERS)
def test_accepted_mix_settings_are_finite_and_bounded(sample_rate, gap_ms, workers):
    options = RenderOptions(sample_rate=sample_rate, gap_ms=gap_ms, workers=workers)
    try:
        mix = options.mix_settings()
    except DialogTTSError:
        return
    assert isinstance(mix.sample_rate, int) and 8000 <= mix.sample_rate <= 192000
    assert _bounded(mix.gap, 60)                                   # the documented limits
    assert isinstance(options.workers, int) and 1 <= options.workers <= 64


@FUZZ
@given(_BACKEND_OPTIONS, st.one_of(st.none(), _NUMBERS), st.one_of(st.none(), _NUMBERS))
def test_backend_settings_raise_only_their_own_errors(backend_options, timeout, threads):
    options = RenderOptions(backend_options=backend_options, timeout=timeout, threads=threads)
    try:
        settings_ = options.backend_settings()
    except DialogTTSError:
        return
    from dialog_tts import backends
    assert set(settings_) <= set(backends.available())


@pytest.mark.parametrize("value", ["²", "١٢", "1e3", " 7 "])
def test_whole_number_settings_take_ascii_digits_only(value):
    from dialog_tts.backends.base import int_in
    parse = int_in(1, 64)
    if value.strip().isascii() and value.strip().isdigit():
        assert parse(value) == int(value)
    else:
        with pytest.raises(ValueError):
            parse(value)
