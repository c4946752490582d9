"""Voices: value parsers, voice specs, the YAML speaker map and casting (real registry)."""

from __future__ import annotations

import textwrap

import pytest

from dialog_tts import backends
from dialog_tts.errors import InputError, UnknownBackendError, UnknownVoiceError, VoiceSpecError
from dialog_tts.script.casting import auto_pans, cast
from dialog_tts.script.parse import parse_text
from dialog_tts.script.speakers import (
    SpeakerMap,
    load_speaker_map,
    parse_assignment,
    parse_spec_fields,
    voice_from_fields,
)
from dialog_tts.script.voice import MIX_KEYS, Rate, Voice, parse_db, parse_pan, parse_pitch, parse_rate


def piper_palette() -> list[str]:
    return backends.get_backend("piper").palette()


def default_voices(gender: str) -> list[tuple[str, str]]:
    """The default cast's voices of one sex (Kokoro's palette), in the order it picks them."""
    from dialog_tts.backends import kokoro

    return [("kokoro", n) for n in kokoro.palette_names() if kokoro.catalogue()[n].gender == gender]


#: The default cast for four speakers of unknown sex: a woman, a man, a woman, a man (Kokoro's palette).
OFFLINE_CAST = [default_voices("female")[0], default_voices("male")[0], default_voices("female")[1],
                default_voices("male")[1]]


def script_of(*names: str, path: str = "s.txt"):
    return parse_text("\n".join(f"{n}: Line {i}." for i, n in enumerate(names)), path=path)


@pytest.fixture
def write_map(tmp_path):
    def write(text: str, name: str = "voices.yaml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path
    return write


def map_error(path) -> VoiceSpecError:
    with pytest.raises(VoiceSpecError) as info:
        load_speaker_map(path)
    assert info.value.exit_code == 2
    return info.value


# ---------------------------------------------------------------- value parsers

@pytest.mark.parametrize("text, expected", [
    ("180", Rate(wpm=180)), ("180wpm", Rate(wpm=180)), (" 95.5 ", Rate(wpm=95.5)), (200, Rate(wpm=200)),
    ("40", Rate(wpm=40)), ("600", Rate(wpm=600)),
    ("+10%", Rate(factor=1.1)), ("-20%", Rate(factor=0.8)), ("1.1x", Rate(factor=1.1)),
    ("0.5X", Rate(factor=0.5)), ("4x", Rate(factor=4.0)), ("+0%", Rate(factor=1.0)),
])
def test_parse_rate(text, expected):
    rate = parse_rate(text)
    assert rate.wpm == (pytest.approx(expected.wpm) if expected.wpm is not None else None)
    assert rate.factor == (pytest.approx(expected.factor) if expected.factor is not None else None)


@pytest.mark.parametrize("text", ["fast", "10", "+500%", "0x", "", "10%", "-10", "601", "-100%", "5x",
                                  "0.2x", "nan", "1.1 x x"])
def test_parse_rate_rejects(text):
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def test_rate_speed_and_str():
    assert Rate(wpm=180).speed(180.0) == pytest.approx(1.0)
    assert Rate(wpm=90).speed(180.0) == pytest.approx(0.5)
    assert Rate(factor=1.25).speed(170.0) == pytest.approx(1.25)
    assert str(Rate(wpm=180)) == "180wpm" and str(Rate(factor=1.1)) == "1.1x"


@pytest.mark.parametrize("text, semitones", [
    ("+2st", 2.0), ("-1.5st", -1.5), ("3", 3.0), ("0", 0.0), ("12st", 12.0), ("-12", -12.0), (2.5, 2.5),
    ("+2 ST", 2.0),
])
def test_parse_pitch(text, semitones):
    assert parse_pitch(text) == pytest.approx(semitones)


@pytest.mark.parametrize("text", ["+13st", "high", "-12.5st", "2 semitones", ""])
def test_parse_pitch_rejects(text):
    with pytest.raises(ValueError, match="pitch"):
        parse_pitch(text)


@pytest.mark.parametrize("text, db", [("-3dB", -3.0), ("-3", -3.0), ("+6db", 6.0), ("0", 0.0), (-1.5, -1.5),
                                      ("-60dB", -60.0), ("24 dB", 24.0)])
@pytest.mark.parametrize("key", ["volume", "gain"])
def test_parse_db(text, db, key):
    assert parse_db(text, key) == pytest.approx(db)


@pytest.mark.parametrize("text", ["loud", "-61dB", "+25dB", "3 decibels", ""])
def test_parse_db_rejects_and_names_the_key(text):
    with pytest.raises(ValueError, match="gain"):
        parse_db(text, "gain")


@pytest.mark.parametrize("text, pan", [("-0.3", -0.3), ("+0.3", 0.3), ("1", 1.0), ("-1", -1.0), ("0", 0.0),
                                       (0.25, 0.25)])
def test_parse_pan(text, pan):
    assert parse_pan(text) == pytest.approx(pan)


@pytest.mark.parametrize("text", ["1.5", "left", "nan", "-inf", "inf", "", "-1.01"])
def test_parse_pan_rejects(text):
    with pytest.raises(ValueError, match="pan"):
        parse_pan(text)


# ---------------------------------------------------------------- specs and --voices

def test_parse_spec_fields_keeps_commas_inside_values_and_lowercases_keys():
    fields = parse_spec_fields(" joe , RATE=180, note=slowly, calmly, pan = -0.3", where="x")
    assert fields == {"voice": "joe", "rate": "180", "note": "slowly, calmly", "pan": "-0.3"}


def test_parse_spec_fields_strips_continued_values():
    fields = parse_spec_fields("joe, note=slowly, calmly , pan=-0.3", where="x")
    assert fields["note"] == "slowly, calmly"


@pytest.mark.parametrize("spec", ["joe, fast", "joe,,rate=180"])
def test_parse_spec_fields_rejects_a_bare_piece_after_the_voice(spec):
    with pytest.raises(VoiceSpecError, match="cannot read") as info:
        parse_spec_fields(spec, where="speaker 'A'")
    assert str(info.value).startswith("speaker 'A': ")


def test_parse_spec_fields_without_voice():
    assert parse_spec_fields("rate=+10%,pitch=-1st", where="x") == {"rate": "+10%", "pitch": "-1st"}
    assert parse_spec_fields("", where="x") == {}


@pytest.mark.parametrize("text, name, fields", [
    ('A="joe,rate=180,pan=-0.3"', "A", {"voice": "joe", "rate": "180", "pan": "-0.3"}),
    ("A='joe-deep'", "A", {"voice": "joe-deep"}),
    ("Dr. Who=en-gb-x-rp+f3,backend=espeak", "Dr. Who", {"voice": "en-gb-x-rp+f3", "backend": "espeak"}),
    (" Lady Bracknell = joe, pitch=+2st", "Lady Bracknell", {"voice": "joe", "pitch": "+2st"}),
    ("철수=ko,backend=espeak,volume=-3dB", "철수", {"voice": "ko", "backend": "espeak", "volume": "-3dB"}),
    ("B=rate=1.1x", "B", {"rate": "1.1x"}),
])
def test_parse_assignment(text, name, fields):
    assert parse_assignment(text) == (name, fields)


@pytest.mark.parametrize("text, match", [
    ("A", "NAME=SPEC"),
    ("=joe", "NAME=SPEC"),
    ("  =joe", "NAME=SPEC"),
    ("A=joe,pan=9", "pan"),
    ("A=joe,rate=,", "rate"),
    ("A=joe,rate=", "rate"),
    ("A=joe,pitch=high", "pitch"),
    ("A=joe,gain=loud", "gain"),
    ("A=joe,rate=180,rate=200", "given twice"),
    ("A=joe,Rate=180,RATE=200", "given twice"),
])
def test_parse_assignment_errors(text, match):
    with pytest.raises(VoiceSpecError, match=match) as info:
        parse_assignment(text)
    assert info.value.exit_code == 2


def test_parse_assignment_error_names_the_speaker():
    with pytest.raises(VoiceSpecError) as info:
        parse_assignment("Lady Bracknell=joe,pan=9")
    assert str(info.value).startswith("--voices Lady Bracknell: ")


def test_voice_from_fields():
    voice = voice_from_fields({"voice": " joe ", "backend": "PIPER", "rate": "+10%", "pitch": "-2st",
                               "volume": "-3dB", "gain": "2", "pan": "-0.5", "speaker": 3,
                               "noise_scale": 0.5, "extra": {"b": [1, 2], "a": 1}, "ignored": None},
                              where="w")
    assert voice.name == "joe" and voice.backend == "piper"
    assert voice.rate == Rate(factor=pytest.approx(1.1))
    assert (voice.pitch, voice.volume, voice.gain, voice.pan) == (-2.0, -3.0, 2.0, -0.5)
    assert voice.options == (("extra", (("a", 1), ("b", (1, 2)))), ("noise_scale", 0.5), ("speaker", 3))
    assert voice.option("speaker") == 3 and voice.option("nope", "d") == "d"
    hash(voice)  # frozen and hashable, nested options included


def test_voice_from_fields_error_carries_where_path_and_line():
    with pytest.raises(VoiceSpecError) as info:
        voice_from_fields({"voice": "joe", "pan": "2"}, where="speaker 'A'", path="m.yaml", line=7)
    assert str(info.value).startswith("m.yaml:7: speaker 'A': pan ")


def test_synthesis_fields_exclude_mix_keys():
    voice = Voice(name="joe", backend="piper", rate=Rate(wpm=180), pitch=2.0, volume=-3.0, pan=0.4, gain=-6.0,
                  options=(("speaker", 1),))
    fields = voice.synthesis_fields()
    assert MIX_KEYS == {"pan", "gain"}
    assert not MIX_KEYS & set(fields)
    assert fields == {"backend": "piper", "name": "joe", "rate": "180wpm", "pitch": 2.0, "volume": -3.0,
                      "options": {"speaker": 1}}
    # mix-only changes leave the synthesis key alone; anything else changes it
    assert Voice(name="joe", backend="piper", rate=Rate(wpm=180), pitch=2.0, volume=-3.0,
                 options=(("speaker", 1),)).synthesis_fields() == fields
    for changed in (dict(rate=Rate(factor=1.1)), dict(pitch=1.0), dict(volume=0.0), dict(name="joe-deep"),
                    dict(backend="espeak"), dict(options=())):
        other = Voice(**{**dict(name="joe", backend="piper", rate=Rate(wpm=180), pitch=2.0, volume=-3.0,
                                options=(("speaker", 1),)), **changed})
        assert other.synthesis_fields() != fields, changed


# ---------------------------------------------------------------- the YAML speaker map

GOOD_MAP = """\
    # speaker map
    defaults:
      rate: +10%
      volume: -2dB

    Lady  Bracknell:
      voice: joe-deep
      Pitch: -1st
      pan: -0.5
    Dr. Who: en-gb-x-rp+f3, backend=espeak
    NARRATOR: joe
    silent one:
    """


def test_load_speaker_map(write_map):
    path = write_map(GOOD_MAP)
    smap = load_speaker_map(path)
    assert isinstance(smap, SpeakerMap)
    assert smap.path == str(path)
    assert smap.defaults == {"rate": "+10%", "volume": "-2dB"}
    assert smap.defaults_line == 2
    assert smap.entries == {
        "ladybracknell": ("Lady  Bracknell", {"voice": "joe-deep", "pitch": "-1st", "pan": -0.5}, 6),
        "dr.who": ("Dr. Who", {"voice": "en-gb-x-rp+f3", "backend": "espeak"}, 10),
        "narrator": ("NARRATOR", {"voice": "joe"}, 11),
        "silentone": ("silent one", {}, 12),
    }


def test_cast_with_speaker_map(write_map):
    smap = load_speaker_map(write_map(GOOD_MAP))
    script = parse_text("narrator: Night.\nlady bracknell: A handbag?\nDR. WHO: Yes.\nJack: Hm.\nSilent One: ...")
    voices = cast(script, speaker_map=smap)
    assert list(voices) == ["narrator", "ladybracknell", "dr.who", "jack", "silentone"]
    lb = voices["ladybracknell"]
    assert (lb.backend, lb.name, lb.pitch, lb.pan, lb.volume) == ("piper", "joe-deep", -1.0, -0.5, -2.0)
    assert lb.rate == Rate(factor=pytest.approx(1.1))
    assert (voices["dr.who"].backend, voices["dr.who"].name) == ("espeak", "en-gb-x-rp+f3")
    assert (voices["narrator"].backend, voices["narrator"].name) == ("piper", "joe")
    # unmapped (and empty) entries: automatic voices from the default cast, defaults applied; Jack follows
    # Dr. Who's woman's voice, so he gets a man's, and Silent One a woman's after him
    assert [(voices[k].backend, voices[k].name) for k in ("jack", "silentone")] == [default_voices("male")[0],
                                                                                 default_voices("female")[0]]
    assert all(v.volume == -2.0 and v.rate == Rate(factor=pytest.approx(1.1)) for v in voices.values())


def test_empty_map_file(write_map):
    smap = load_speaker_map(write_map("# nothing yet\n"))
    assert smap.entries == {} and smap.defaults == {} and smap.defaults_line is None


def test_map_with_bom_is_read(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfA: joe\n")
    assert load_speaker_map(path).entries == {"a": ("A", {"voice": "joe"}, 1)}


@pytest.mark.parametrize("text, line, match", [
    ("A: joe\nB:\n  voice: joe\n   pan: 0.2\n", 4, "invalid YAML"),   # bad indent
    ("A: joe\nB: [joe\n", None, "invalid YAML"),                        # unclosed flow sequence
    ("A: joe\nA: joe-deep\n", 2, "mapped twice"),
    ("# map\nLady Bracknell: joe\nlady  bracknell: joe-deep\n", 3, "mapped twice"),
    ("A: joe\na: joe-deep\n", 2, "mapped twice"),
    ("\n- A: joe\n- B: joe\n", 2, "must be a mapping"),
    ("just a string\n", 1, "must be a mapping"),
    ("A: joe\nB:\n  - joe\n  - joe-deep\n", 3, "expected a mapping or a voice spec"),
    ("A: [joe, joe-deep]\n", 1, "expected a mapping or a voice spec"),
    ("A: 3\n", 1, "expected a mapping or a voice spec"),
])
def test_speaker_map_errors_name_file_and_line(write_map, text, line, match):
    path = write_map(text)
    err = map_error(path)
    assert match in err.message
    assert err.path == str(path)
    if line is not None:
        assert err.line == line
        assert str(err).startswith(f"{path}:{line}: ")
    else:
        assert str(err).startswith(f"{path}:")


def test_speaker_map_missing_file(tmp_path):
    path = tmp_path / "missing.yaml"
    err = map_error(path)
    assert "cannot read" in err.message
    assert str(err).startswith(f"{path}: ")


def test_speaker_map_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"Jos\xe9: joe\n")
    err = map_error(path)
    assert "UTF-8" in err.message and str(err).startswith(f"{path}")


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.mkdir", "!!python/object/new:os.mkdir",
                                 "!!python/name:os.mkdir"])
def test_speaker_map_is_safe_loaded(write_map, tmp_path, tag):
    target = tmp_path / "pwned"
    path = write_map(f"A: joe\nB: {tag} [{str(target)!r}]\n")
    err = map_error(path)
    assert "invalid YAML" in err.message
    assert err.line == 2
    assert not target.exists()


def test_speaker_map_python_object_in_key_is_rejected(write_map, tmp_path):
    target = tmp_path / "pwned"
    path = write_map(f"? !!python/object/apply:os.mkdir [{str(target)!r}]\n: joe\n")
    map_error(path)
    assert not target.exists()


@pytest.mark.parametrize("written", ["007", "No", "On", "1_000"])
def test_speaker_map_keeps_names_as_written(write_map, written):
    smap = load_speaker_map(write_map(f"{written}: joe-deep\n"))
    assert list(smap.entries.values()) == [(written, {"voice": "joe-deep"}, 1)]


def test_speaker_map_spec_string_error_names_file_and_line(write_map):
    path = write_map("A: joe\nB: joe, rate=180, rate=200\n")
    err = map_error(path)
    assert "given twice" in err.message
    assert str(err).startswith(f"{path}:2: ")


def test_bad_value_in_map_entry_is_reported_at_cast_with_file_and_line(write_map):
    path = write_map("A: joe\nB:\n  voice: joe-deep\n  pan: 9\n")
    smap = load_speaker_map(path)
    with pytest.raises(VoiceSpecError) as info:
        cast(script_of("A", "B"), speaker_map=smap)
    assert str(info.value).startswith(f"{path}:4: speaker 'B': pan ")     # the line of the bad key


def test_bad_default_is_reported_at_defaults_line(write_map):
    path = write_map("A: joe\n\ndefaults:\n  rate: fast\n")
    smap = load_speaker_map(path)
    with pytest.raises(VoiceSpecError) as info:
        cast(script_of("B"), speaker_map=smap)
    assert str(info.value).startswith(f"{path}:4: ")                      # the defaults' rate line
    assert "rate 'fast'" in str(info.value)


# ---------------------------------------------------------------- auto_pans

def test_auto_pans_small_counts():
    assert auto_pans(0) == []
    assert auto_pans(1) == [0]
    assert auto_pans(2) == pytest.approx([-0.3, 0.3])
    assert auto_pans(3) == pytest.approx([-0.6, 0.0, 0.6])


@pytest.mark.parametrize("count", range(1, 13))
def test_auto_pans_symmetric_spread_and_in_range(count):
    pans = auto_pans(count)
    assert len(pans) == count
    assert all(-1.0 <= p <= 1.0 for p in pans)
    assert pans == sorted(pans)
    assert len(set(pans)) == count                         # distinct positions
    assert pans == pytest.approx([-p for p in reversed(pans)], abs=1e-12)
    assert sum(pans) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- casting with the real registry

def test_cast_automatic_voices_in_order_of_first_appearance():
    script = parse_text("C: one\nA: two\nc: three\nB: four")
    voices = cast(script)
    assert list(voices) == ["c", "a", "b"]
    assert [(v.backend, v.name) for v in voices.values()] == OFFLINE_CAST[:3]
    assert [v.pan for v in voices.values()] == pytest.approx(auto_pans(3))


def test_piper_palette_is_the_measured_joe_variants():
    palette = piper_palette()
    assert palette == ["joe-light", "joe-tenor"]      # the others failed tests/test_voice_quality.py's bounds
    piper = backends.get_backend("piper")
    for name in ("joe", "joe-deep", "joe-high", "joe-bass", "joe-alto"):   # still voices one can name
        assert piper.resolve(Voice(name)).name == name


def test_default_cast_has_two_women_and_two_men_offline():
    voices = cast(script_of("S1", "S2", "S3", "S4"))
    assert [(v.backend, v.name) for v in voices.values()] == OFFLINE_CAST
    assert [v.gender for v in voices.values()] == ["female", "male", "female", "male"]


@pytest.mark.parametrize("backend", ["piper", "espeak"])
def test_backend_argument_casts_distinct_voices_from_its_palette(backend):
    palette = backends.get_backend(backend).palette()
    voices = cast(script_of(*[f"Speaker {i}" for i in range(len(palette))]), default_backend=backend)
    assert sorted(v.name for v in voices.values()) == sorted(palette)
    assert all(v.backend == backend for v in voices.values())


def test_cast_reuses_the_palette_past_its_end():
    palette = [("kokoro", n) for n in backends.get_backend("kokoro").palette()]
    voices = cast(script_of(*[f"S{i}" for i in range(len(palette) + 2)]))
    picked = [(v.backend, v.name) for v in voices.values()]
    assert sorted(picked[:len(palette)]) == sorted(palette)           # every voice once before any twice
    assert picked[len(palette):] == picked[:2]                         # then the ones used least, in order


def test_cast_skips_palette_voices_already_named():
    women, men = default_voices("female"), default_voices("male")
    voices = cast(script_of("A", "B", "C"), overrides=[("B", {"voice": women[0][1].upper()})])
    assert [voices[k].name for k in "abc"] == [women[1][1], women[0][1], men[0][1]]  # A: the first unused voice


def test_voices_override_replaces_the_map_entry_but_defaults_apply(write_map):
    smap = load_speaker_map(write_map("""\
        defaults:
          rate: 1.1x
          gain: -1
        A:
          voice: joe-deep
          pitch: +3st
          pan: 0.9
        B: joe-bass
        """))
    name, fields = parse_assignment("a=joe-high,volume=-4dB")
    voices = cast(script_of("A", "B"), speaker_map=smap, overrides=[(name, fields)])
    a, b = voices["a"], voices["b"]
    assert (a.name, a.volume, a.gain, a.pitch) == ("joe-high", -4.0, -1.0, 0.0)   # map entry's pitch gone
    assert a.rate == Rate(factor=pytest.approx(1.1))
    assert (b.name, b.gain) == ("joe-bass", -1.0)
    assert b.rate == Rate(factor=pytest.approx(1.1))
    assert [a.pan, b.pan] == pytest.approx([-0.3, 0.3])  # the map's pan went with its entry


def test_voice_known_only_to_espeak_is_cast_to_espeak():
    voices = cast(script_of("A", "B"), overrides=[parse_assignment("A=en-gb-x-rp+f3")])
    assert (voices["a"].backend, voices["a"].name) == ("espeak", "en-gb-x-rp+f3")
    assert (voices["b"].backend, voices["b"].name) == default_voices("male")[0]   # a man after her


@pytest.mark.parametrize("spec, error, match", [
    ("Lady Bracknell=nosuchvoice", UnknownVoiceError, "unknown piper voice 'nosuchvoice'"),
    ("Lady Bracknell=joe,backend=nosuch", UnknownBackendError, "unknown backend 'nosuch'"),
    ("Lady Bracknell=en-us+nosuch,backend=espeak", UnknownVoiceError, "unknown espeak variant 'nosuch'"),
    ("Lady Bracknell=en+nosuch,backend=espeak", UnknownVoiceError, "unknown espeak"),
    ("Lady Bracknell=xx-nowhere,backend=espeak", UnknownVoiceError, "unknown espeak voice"),
])
def test_cast_unknown_voice_or_backend_names_the_speaker(spec, error, match):
    with pytest.raises(error, match=match) as info:
        cast(script_of("Lady Bracknell"), overrides=[parse_assignment(spec)])
    assert info.value.exit_code == 2
    assert "--voices Lady Bracknell" in str(info.value)


def test_cast_unknown_voice_in_map_names_speaker_file_and_line(write_map):
    path = write_map("A: joe\nDr. Who: joe-nosuch\n")
    with pytest.raises(UnknownVoiceError) as info:
        cast(script_of("A", "Dr. Who"), speaker_map=load_speaker_map(path))
    assert str(info.value).startswith(f"{path}:2: speaker 'Dr. Who': unknown piper voice")


def test_cast_unknown_backend_without_voice_names_the_speaker():
    with pytest.raises(UnknownBackendError) as info:
        cast(script_of("A"), overrides=[parse_assignment("A=backend=nosuch")])
    assert "--voices A" in str(info.value)


def test_cast_unknown_default_backend_in_map_names_file_and_line(write_map):
    path = write_map("defaults:\n  backend: nosuch\n")
    with pytest.raises(UnknownBackendError) as info:
        cast(script_of("A"), speaker_map=load_speaker_map(path))
    assert str(info.value).startswith(f"{path}:1: ")


def test_cast_override_for_unknown_speaker_is_an_input_error():
    with pytest.raises(InputError, match="no speaker 'Zed'") as info:
        cast(script_of("A", "B"), overrides=[("Zed", {"voice": "joe"})])
    assert info.value.exit_code == 2
    assert "A, B" in str(info.value)
    assert str(info.value).startswith("s.txt: ")


def test_cast_override_matches_names_case_and_space_insensitively():
    voices = cast(script_of("Lady Bracknell"), overrides=[parse_assignment("LADYBRACKNELL=joe-alto")])
    assert voices["ladybracknell"].name == "joe-alto"


def test_explicit_pans_kept_others_spread():
    script = script_of("A", "B", "C", "D")
    voices = cast(script, overrides=[parse_assignment("B=joe,pan=-0.9"), parse_assignment("D=rate=+10%,pan=1")])
    assert voices["b"].pan == -0.9 and voices["d"].pan == 1.0
    assert [voices["a"].pan, voices["c"].pan] == pytest.approx(auto_pans(2))
    # automatic voices in order of appearance, each of the other sex than the speaker before
    women, men = default_voices("female"), default_voices("male")
    assert [voices[k].name for k in "abcd"] == [women[0][1], "joe", women[1][1], men[0][1]]


def test_single_speaker_is_centred():
    assert cast(script_of("Solo"))["solo"].pan == 0.0


def test_defaults_backend_espeak_casts_from_the_espeak_palette(write_map):
    smap = load_speaker_map(write_map("defaults: {backend: espeak}\nC: {voice: joe, backend: piper}\n"))
    voices = cast(script_of("A", "B", "C", "D"), speaker_map=smap)
    espeak_palette = backends.get_backend("espeak").palette()
    assert espeak_palette[:3] == ["en-us", "en-us+f3", "en-gb-x-rp+m3"]
    # D follows C's man's voice, so it gets espeak's next woman's voice
    assert [(voices[k].backend, voices[k].name) for k in "abd"] == [("espeak", "en-us"), ("espeak", "en-us+f3"),
                                                                   ("espeak", "en-us+f1")]
    assert (voices["c"].backend, voices["c"].name) == ("piper", "joe")


def test_defaults_backend_applies_to_mapped_voices_too(write_map):
    path = write_map("defaults: {backend: espeak}\nC: joe\n")
    with pytest.raises(UnknownVoiceError, match="unknown espeak voice 'joe'") as info:
        cast(script_of("C"), speaker_map=load_speaker_map(path))
    assert str(info.value).startswith(f"{path}:2: speaker 'C': ")


def test_default_backend_argument_selects_the_palette():
    voices = cast(script_of("A", "B"), default_backend="espeak")
    assert [(v.backend, v.name) for v in voices.values()] == [("espeak", "en-us"), ("espeak", "en-us+f3")]


@pytest.mark.parametrize("name, canonical", [
    ("EN-US+F3", "en-us+f3"), ("en-us", "en-us"), ("ko", "ko"), ("Ko", "ko"), ("en-gb-x-rp+m3", "en-gb-x-rp+m3"),
    ("fr-FR", "fr"), ("Fr-Fr+ANNIE", "fr+Annie"), ("en-gb", "en"), ("zh", "cmn"), ("en_US", "en-us"),
])
def test_espeak_resolves_case_insensitively(name, canonical):
    voice = backends.resolve_voice(Voice(name=name, backend="espeak"))
    assert (voice.backend, voice.name) == ("espeak", canonical)


def test_korean_speaker_with_korean_espeak_voice():
    voices = cast(parse_text("철수: 안녕하세요."), overrides=[parse_assignment("철수=ko,backend=espeak")])
    assert (voices["철수"].backend, voices["철수"].name) == ("espeak", "ko")


@pytest.mark.parametrize("name", ["fr+Annie", "fr"])
def test_espeak_accepts_documented_language_codes(name):
    assert backends.resolve_voice(Voice(name=name, backend="espeak")).backend == "espeak"


@pytest.mark.parametrize("name", ["en+nosuch", "en-us+nosuch", "nosuchlang", "en-us+m99"])
def test_espeak_rejects_unknown_voices(name):
    with pytest.raises(UnknownVoiceError):
        backends.resolve_voice(Voice(name=name, backend="espeak"))


def test_espeak_knows_but_piper_does_not():
    assert backends.get_backend("espeak").knows("en-gb-x-rp+f3")
    assert not backends.get_backend("piper").knows("en-gb-x-rp+f3")
    assert backends.get_backend("piper").knows("JOE-Deep")


def test_piper_accepts_onnx_path_with_config(tmp_path):
    model = tmp_path / "my-voice.onnx"
    model.write_bytes(b"not a real model: resolve must not load it")
    (tmp_path / "my-voice.onnx.json").write_text('{"num_speakers": 4}', encoding="utf-8")
    voice = backends.resolve_voice(Voice(name=str(model)))
    assert (voice.backend, voice.name) == ("piper", str(model.resolve()))
    voices = cast(script_of("A"), overrides=[("A", {"voice": str(model), "speaker": "2"})])
    assert voices["a"].name == str(model.resolve()) and voices["a"].option("speaker") == "2"
    with pytest.raises(VoiceSpecError, match="has 4 speakers"):             # its config says how many
        cast(script_of("A"), overrides=[("A", {"voice": str(model), "speaker": "4"})])


@pytest.mark.parametrize("setup, match", [
    ("missing", "not found"),
    ("no-config", "no config"),
])
def test_piper_rejects_bad_onnx_paths(tmp_path, setup, match):
    model = tmp_path / "v.onnx"
    if setup == "no-config":
        model.write_bytes(b"x")
    with pytest.raises(UnknownVoiceError, match=match) as info:
        cast(script_of("A"), overrides=[("A", {"voice": str(model), "backend": "piper"})])
    assert "--voices A" in str(info.value)


def test_piper_speaker_option_must_be_a_number():
    with pytest.raises(VoiceSpecError, match="speaker"):
        cast(script_of("A"), overrides=[parse_assignment("A=joe,speaker=alice")])


@pytest.mark.parametrize("spec, backend", [("A=joe,instruct=hi", "piper"),
                                           ("A=en-us,backend=espeak,noise_scale=0.5", "espeak")])
def test_unknown_option_for_backend_lists_known_keys(spec, backend):
    assignment = parse_assignment(spec)   # options are checked against the backend only at cast
    with pytest.raises(VoiceSpecError, match=f"unknown option .* for backend '{backend}'") as info:
        cast(script_of("A"), overrides=[assignment])
    message = str(info.value)
    assert message.startswith("--voices A: ")
    known = message.split("known: ", 1)[1]
    for key in ("backend", "rate", "pitch", "volume", "pan", "gain"):
        assert key in known
    if backend == "piper":
        assert "noise_scale" in known and "speaker" in known


def test_piper_options_are_kept_on_the_voice():
    voices = cast(script_of("A"), overrides=[parse_assignment("A=joe,noise_scale=0.4,speaker=0")])
    assert voices["a"].options == (("noise_scale", "0.4"), ("speaker", "0"))
    assert voices["a"].synthesis_fields()["options"] == {"noise_scale": "0.4", "speaker": "0"}


def test_cast_voice_describe_round_trip():
    voices = cast(script_of("A"), overrides=[parse_assignment("A=joe-deep,rate=180,pitch=+2st,pan=-0.5")])
    assert voices["a"].describe() == "piper:joe-deep,rate=180wpm,pitch=+2st,pan=-0.50"
