"""Edge voices without the network: the shipped table, short names, parameter mapping, rejected values."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from dialog_tts import backends
from dialog_tts.backends.edge import EdgeBackend, voice_table
from dialog_tts.cli import main
from dialog_tts.errors import UnknownVoiceError, VoiceSpecError
from dialog_tts.script.speakers import parse_assignment, voice_from_fields
from dialog_tts.script.voice import Voice, parse_rate

REQUIRED = ["ko-KR", "en-US", "en-GB", "en-AU", "en-IN", "ja-JP", "zh-CN", "de-DE", "fr-FR", "es-ES", "es-MX",
            "it-IT", "pt-BR"]


@pytest.fixture
def edge():
    return EdgeBackend()


def test_table_covers_the_required_locales_and_says_where_it_came_from():
    header, table = voice_table()
    assert "github.com" in header["source"] and re.match(r"^\d{4}-\d{2}-\d{2}$", header["retrieved"])
    names = [v.name for v in table]
    assert len(names) == len(set(names)) > 300
    locales = {v.locale for v in table}
    assert set(REQUIRED) <= locales
    for v in table:
        assert v.name.startswith(v.locale + "-") and v.name.endswith("Neural") and v.gender in ("Female", "Male")
    for name in ["ko-KR-SunHiNeural", "ko-KR-InJoonNeural", "en-US-AriaNeural", "en-US-GuyNeural",
                 "ja-JP-NanamiNeural", "zh-CN-XiaoxiaoNeural", "de-DE-KatjaNeural", "pt-BR-FranciscaNeural"]:
        assert name in names


@pytest.mark.parametrize("given, full", [
    ("ko-KR-SunHiNeural", "ko-KR-SunHiNeural"), ("SunHi", "ko-KR-SunHiNeural"), ("sunhi", "ko-KR-SunHiNeural"),
    ("ko-KR-SunHi", "ko-KR-SunHiNeural"), ("SUNHINEURAL", "ko-KR-SunHiNeural"), ("InJoon", "ko-KR-InJoonNeural"),
    ("Andrew", "en-US-AndrewNeural"), ("AndrewMultilingual", "en-US-AndrewMultilingualNeural"),
    ("iu-Latn-CA-Siqiniq", "iu-Latn-CA-SiqiniqNeural"), ("zh-CN-liaoning-Xiaobei", "zh-CN-liaoning-XiaobeiNeural"),
])
def test_short_and_full_names_resolve(edge, given, full):
    assert edge.resolve(Voice(given, backend="edge")).name == full


def test_ambiguous_short_name_lists_the_candidates(edge):
    with pytest.raises(UnknownVoiceError) as err:
        edge.resolve(Voice("Siqiniq", backend="edge"))
    assert "ambiguous" in str(err.value)
    assert "iu-Cans-CA-SiqiniqNeural" in str(err.value) and "iu-Latn-CA-SiqiniqNeural" in str(err.value)
    assert err.value.exit_code == 2


def test_unknown_short_name_lists_close_matches(edge):
    with pytest.raises(UnknownVoiceError) as err:
        edge.resolve(Voice("SunHee", backend="edge"))
    assert "SunHi" in str(err.value) and err.value.exit_code == 2


def test_full_name_missing_from_the_table_is_tried_with_a_warning(edge, caplog):
    with caplog.at_level("WARNING", logger="dialog_tts"):
        assert edge.resolve(Voice("en-US-BrandNewNeural", backend="edge")).name == "en-US-BrandNewNeural"
    assert "not in the voice table" in caplog.text


def test_voices_without_backend_find_edge_by_name():
    voice = backends.resolve_voice(voice_from_fields(parse_assignment("A=SunHi,rate=180")[1], where="A"))
    assert (voice.backend, voice.name) == ("edge", "ko-KR-SunHiNeural")


@pytest.mark.parametrize("fields, expected", [
    ({}, {"rate": "+0%", "pitch": "+0Hz", "volume": "+0%"}),
    ({"rate": "180"}, {"rate": "+20%"}),                # 180 wpm over Edge's typical 150 wpm
    ({"rate": "120"}, {"rate": "-20%"}),
    ({"rate": "+15%"}, {"rate": "+15%"}),
    ({"rate": "1.25x"}, {"rate": "+25%"}),
    ({"pitch": "+2st"}, {"pitch": "+26Hz"}),           # a female voice: 210 Hz * (2^(2/12) - 1)
    ({"pitch": "-3st"}, {"pitch": "-33Hz"}),
    ({"volume": "-3dB"}, {"volume": "-29%"}),
    ({"volume": "+6dB"}, {"volume": "+100%"}),
])
def test_parameter_mapping(edge, fields, expected):
    voice = edge.resolve(voice_from_fields({"voice": "SunHi", **fields}, where="A"))
    got = edge.prosody(voice)
    assert {k: got[k] for k in expected} == expected
    for key, pattern in (("rate", r"^[+-]\d+%$"), ("volume", r"^[+-]\d+%$"), ("pitch", r"^[+-]\d+Hz$")):
        assert re.match(pattern, got[key])            # the forms edge_tts accepts


def test_pitch_of_a_male_voice_uses_its_own_range(edge):
    voice = edge.resolve(Voice("InJoon", backend="edge", pitch=2.0))
    assert edge.prosody(voice)["pitch"] == "+15Hz"    # 120 Hz * (2^(2/12) - 1)


@pytest.mark.parametrize("spec, message", [
    ("A=SunHi,rate=320", "rate 320wpm is +113%"),
    ("A=SunHi,rate=60", "accepts -50% to +100%"),
    ("A=SunHi,rate=0.3x", "rate 0.3x is -70%"),
    ("A=SunHi,pitch=+12st", "beyond the ±105Hz Edge accepts"),
    ("A=SunHi,volume=+12dB", "volume +12dB is +298%"),
])
def test_values_edge_rejects_are_usage_errors_before_any_request(spec, message, write_script, tmp_path, monkeypatch):
    monkeypatch.setenv("DIALOG_TTS_EDGE_URL", "ws://127.0.0.1:9/never?")   # nothing listens: must not be reached
    script = write_script("A: 안녕하세요.\n")
    result = CliRunner().invoke(main, ["-s", str(script), "--voices", spec, "--backend", "edge",
                                       "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.wav").exists()


def test_rate_within_range_passes(edge):
    edge.resolve(Voice("SunHi", backend="edge", rate=parse_rate("299")))  # +99 %


def test_voices_command_lists_the_edge_table():
    runner = CliRunner()
    result = runner.invoke(main, ["voices", "--backend", "edge", "--locale", "ko-KR"])
    assert result.exit_code == 0
    rows = [line.split()[1] for line in result.stdout.splitlines()[1:]]
    assert rows == ["ko-KR-HyunsuMultilingualNeural", "ko-KR-InJoonNeural", "ko-KR-SunHiNeural"]
    result = runner.invoke(main, ["voices", "--backend", "edge", "--locale", "ko", "--gender", "female"])
    assert [line.split()[1] for line in result.stdout.splitlines()[1:]] == ["ko-KR-SunHiNeural"]


def test_concurrency_cap_default_and_override(monkeypatch):
    edge = EdgeBackend()
    assert edge.bind({}, workers=8).max_concurrency == 6
    monkeypatch.setenv("DIALOG_TTS_EDGE_CONCURRENCY", "2")
    assert edge.bind({}, workers=8).max_concurrency == 2
    assert edge.bind({"concurrency": "3"}, workers=8).max_concurrency == 3   # the option wins
    assert edge.max_concurrency == 6                                        # the shared instance is untouched
    for bad in ("lots", "\u00b2", "0"):                                      # ² passes str.isdigit()
        monkeypatch.setenv("DIALOG_TTS_EDGE_CONCURRENCY", bad)
        with pytest.raises(VoiceSpecError):
            edge.bind({}, workers=8)
