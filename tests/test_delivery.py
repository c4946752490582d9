"""Delivery per line (direction tags), one-line voice overrides and the pronunciation lexicon."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from dialog_tts import backends, synthesize_dialog
from dialog_tts.api import Renderer, RenderOptions
from dialog_tts.cli import main
from dialog_tts.errors import InputError, VoiceSpecError
from dialog_tts.script.directions import TAGS, Delivery, for_directions, tag_of
from dialog_tts.script.lexicon import Entry, Lexicon
from dialog_tts.script.lexicon import load as load_lexicon
from dialog_tts.script.parse import parse_text
from dialog_tts.script.voice import Rate, Voice
from dialog_tts.synth.jobs import build, override_voice
from measure import rms_db

# ---------------------------------------------------------------- the tag table


def test_known_tags_and_their_spellings():
    assert tag_of("Whispering") == tag_of("whispers") == tag_of(" whispered ") == "whispering"
    assert tag_of("quietly") == "softly" and tag_of("laughs") is None and tag_of("aside") is None
    assert {"whispering", "shouting", "softly", "slowly", "quickly", "sadly", "excitedly"} <= set(TAGS)


def test_directions_combine_known_tags_once_and_ignore_the_rest():
    assert for_directions(["aside", "laughs"]) is None
    d = for_directions(["slowly", "softly", "Slowly", "aside"])
    assert d == Delivery(0.8 * 0.95, -5.0, 0.0, "speak slowly and deliberately; speak softly and gently")


# ---------------------------------------------------------------- each backend's mapping

def test_default_hook_scales_rate_and_adds_volume_and_pitch(tone_backend):
    voice = Voice("mid", "tone", rate=Rate(wpm=180), volume=-2.0)
    shaped = tone_backend.apply_delivery(voice, Delivery(0.5, -70.0, 20.0))
    assert shaped.rate == Rate(wpm=90) and shaped.volume == -60.0 and shaped.pitch == 12.0   # clamped
    assert tone_backend.apply_delivery(Voice("mid", "tone"), TAGS["quickly"]).rate == Rate(factor=1.25)


@pytest.mark.parametrize("name", ["piper", "espeak"])
def test_piper_and_espeak_change_speed_and_volume_not_pitch(name):
    voice = Voice("x", name, pitch=1.0)
    shaped = backends.get_backend(name).apply_delivery(voice, TAGS["shouting"])
    assert shaped.rate == Rate(factor=1.05) and shaped.volume == 5.0 and shaped.pitch == 1.0


def test_edge_maps_delivery_to_prosody_within_its_limits():
    edge = backends.get_backend("edge")
    voice = edge.resolve(Voice("en-US-AriaNeural", "edge", rate=Rate(factor=1.9), volume=4.0))
    shaped = edge.apply_delivery(voice, TAGS["shouting"] + TAGS["excitedly"])
    prosody = edge.prosody(shaped)                 # would raise if outside what Edge accepts
    assert prosody["rate"] in ("+99%", "+100%") and prosody["volume"] in ("+99%", "+98%") and prosody["pitch"].startswith("+")
    whisper = edge.prosody(edge.apply_delivery(edge.resolve(Voice("en-US-AriaNeural", "edge")), TAGS["whispering"]))
    assert whisper == {"rate": "-10%", "pitch": "+0Hz", "volume": "-68%"}


def test_qwen_gets_an_instruction_for_presets_and_designs_and_only_volume_for_clones(tmp_path):
    qwen = backends.get_backend("qwen")
    preset = Voice("Vivian", "qwen", options=(("instruct", "warm"),))
    assert qwen.apply_delivery(preset, TAGS["sadly"]).option("instruct") == "warm; sound sad and downcast"
    assert qwen.apply_delivery(Voice("Vivian", "qwen"), TAGS["slowly"]).option("instruct") == \
        "speak slowly and deliberately"
    design = Voice("design", "qwen", options=(("design", "an old man"),))
    assert qwen.apply_delivery(design, TAGS["angrily"]).option("design") == "an old man; sound angry"
    clone = Voice("clone:x.wav", "qwen", options=(("ref_audio", "x.wav"),))
    shaped = qwen.apply_delivery(clone, TAGS["whispering"])
    assert shaped.options == clone.options and shaped.volume == -10.0 and shaped.rate is None


# ---------------------------------------------------------------- end to end, with the cache

TAGGED = "A: Plain words here.\nB: [whispering] Secret words here.\nA (quickly): Fast words here.\n"


def test_a_tag_changes_only_its_line_and_only_its_cache_key(tone_backend, write_script, tmp_path):
    plain = write_script(TAGGED.replace("[whispering] ", "").replace(" (quickly)", ""), "plain.txt")
    tagged = write_script(TAGGED, "tagged.txt")
    options = dict(backend="tone", voices={"A": "low", "B": "high"}, stereo=False, sample_rate=16000, gap_ms=0)
    first = synthesize_dialog(plain, tmp_path / "p.wav", **options)
    second = synthesize_dialog(tagged, tmp_path / "t.wav", **options)
    assert (second.totals.synthesized, second.totals.cached) == (2, 1)
    assert [r.source for r in second.lines] == ["cache", "synthesized", "synthesized"]
    # the tone fake speaks 50 ms a character at the voice's speed: 0.9x and 1.25x
    assert (second.lines[1].end - second.lines[1].start) / (first.lines[1].end - first.lines[1].start) == \
        pytest.approx(1 / 0.9, rel=0.01)
    assert (second.lines[2].end - second.lines[2].start) / (first.lines[2].end - first.lines[2].start) == \
        pytest.approx(1 / 1.25, rel=0.01)


@pytest.mark.slow
def test_whispering_is_10_db_quieter_on_a_real_backend(write_script, tmp_path):
    import soundfile as sf

    script = write_script("A: The rain in Spain stays mainly in the plain.\n"
                          "A: [whispering] The rain in Spain stays mainly in the plain.\n")
    result = synthesize_dialog(script, tmp_path / "w.wav", voices={"A": "en-us,backend=espeak"}, stereo=False,
                               cache=False)
    data, rate = sf.read(tmp_path / "w.wav", dtype="float32")
    plain, whisper = (data[round(r.start * rate):round(r.end * rate)] for r in result.lines)
    assert rms_db(whisper) - rms_db(plain) == pytest.approx(-10.0, abs=1.0)
    assert len(whisper) / len(plain) == pytest.approx(1 / 0.9, rel=0.08)


def test_other_brackets_stay_unspoken_and_change_nothing(tone_backend, write_script):
    plain = synthesize_dialog(write_script("A: Hello there."), None, backend="tone")
    staged = synthesize_dialog(write_script("A: [laughs] Hello there. [beat]", "b.txt"), None, backend="tone")
    assert staged.lines[0].text == "Hello there." and staged.lines[0].source == "cache"
    assert plain.lines[0].source == "synthesized"


# ---------------------------------------------------------------- one-line voice override

def test_override_replaces_fields_for_that_line_only(tone_backend, write_script):
    script = write_script("A: One.\nA {high,pitch=+1st}: Two.\nA {rate=2x}: Three.\nA: Four.")
    result = synthesize_dialog(script, None, backend="tone", voices={"A": "low,pan=-0.5"})
    assert [r.voice for r in result.lines] == ["low", "high", "low", "low"]
    # the lines run on 4 workers at once: the calls' order is the threads', not the script's
    assert sorted(tone_backend.calls) == sorted([("One.", "low"), ("Two.", "high"), ("Three.", "low"), ("Four.", "low")])
    assert [r.source for r in result.lines].count("synthesized") == 4


def test_override_with_another_backend_keeps_the_speakers_pan():
    cast = Voice("joe", "piper", pan=-0.4, gain=-1.0, options=(("speaker", 0),))
    voice = override_voice(cast, "en-us+f3")
    assert (voice.backend, voice.name, voice.pan, voice.gain, voice.options) == ("espeak", "en-us+f3", -0.4, -1.0, ())
    assert override_voice(cast, "rate=1.2x").options == (("speaker", 0),)


@pytest.mark.parametrize("label, match", [
    ("A {nosuchvoice}", "d.txt:2: voice override {nosuchvoice}: unknown"),
    ("A {rate=fast}", "d.txt:2: voice override {rate=fast}: rate 'fast'"),
    ("A {colour=red}", "d.txt:2: voice override {colour=red}: unknown option 'colour'"),
])
def test_a_bad_override_is_a_usage_error_naming_the_line(tone_backend, label, match):
    script = parse_text(f"A: One.\n{label}: Two.", path="d.txt")
    with pytest.raises(InputError) as info:
        build(script, {"a": Voice("low", "tone")})
    assert str(info.value).startswith(match)


def test_a_bad_override_exits_2_before_synthesis(tone_backend, write_script, tmp_path):
    script = write_script("A: One.\nA {nosuchvoice}: Two.")
    result = CliRunner().invoke(main, ["-s", str(script), "--backend", "tone", "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 2 and "script.txt:2: voice override" in result.output
    assert tone_backend.calls == []


# ---------------------------------------------------------------- lexicon

def test_whole_word_case_insensitive_matching():
    lex = Lexicon({"Siobhan": Entry(say="Shiv-awn"), "New York": Entry(say="Noo York"), "New": Entry(say="Gnu")})
    say = lambda word, entry: entry.say  # noqa: E731
    assert lex.apply("SIOBHAN met siobhan's friend Siobhans in New York, new to it.", say) == \
        "Shiv-awn met Shiv-awn's friend Siobhans in Noo York, Gnu to it."


def test_each_backend_says_an_entry_its_own_way():
    full = Entry(say="Shiv-awn", phonemes="ʃɪˈvɔːn", espeak="S@v'O:n")
    only_ipa = Entry(phonemes="ʃɪˈvɔːn")
    expected = {"piper": ("[[ ʃɪˈvɔːn ]]", "[[ ʃɪˈvɔːn ]]"), "espeak": ("[[S@v'O:n]]", "Siobhan"),
                "edge": ("Shiv-awn", "Siobhan"), "qwen": ("Shiv-awn", "Siobhan"),
                "hibari": ("[Siobhan](/ʃɪˈvɔːn/)", "[Siobhan](/ʃɪˈvɔːn/)")}
    for name, (with_all, with_ipa) in expected.items():
        backend = backends.get_backend(name)
        assert (backend.pronounce("Siobhan", full), backend.pronounce("Siobhan", only_ipa)) == (with_all, with_ipa)


LEXICON = "Siobhan: Shiv-awn\nNiamh: {say: Neev, phonemes: \"niːv\"}\n"
NAMES = "A: Siobhan is here.\nB: Niamh is here.\nA: Nobody else.\nB: Hello, SIOBHAN.\n"


def test_editing_the_lexicon_resynthesizes_exactly_the_lines_it_touches(tone_backend, write_script, tmp_path):
    script = write_script(NAMES)
    lexicon = tmp_path / "names.yaml"
    lexicon.write_text(LEXICON, encoding="utf-8")
    options = dict(backend="tone", lexicon=lexicon, cache_dir=tmp_path / "c")
    first = synthesize_dialog(script, tmp_path / "a.wav", **options)
    assert first.totals.synthesized == 4
    # the lines go to the backend on the engine's workers, in whatever order they finish taking them
    assert sorted(t for t, _ in tone_backend.calls) == sorted(["Shiv-awn is here.", "Neev is here.", "Nobody else.",
                                                               "Hello, Shiv-awn."])
    lexicon.write_text(LEXICON.replace("Shiv-awn", "Shi-vawn"), encoding="utf-8")
    second = synthesize_dialog(script, tmp_path / "a.wav", **options)
    assert (second.totals.synthesized, second.totals.cached) == (2, 2)
    assert [r.line for r in second.lines if r.source == "synthesized"] == [1, 4]


def test_speaker_map_lexicon_inline_or_as_a_file_and_the_option_wins(tone_backend, write_script, tmp_path):
    (tmp_path / "names.yaml").write_text("Niamh: Neev\n", encoding="utf-8")
    inline = tmp_path / "inline.yaml"
    inline.write_text("A: low\nlexicon:\n  Siobhan: Shiv-awn\n  Niamh: Nee-av\n", encoding="utf-8")
    by_file = tmp_path / "byfile.yaml"
    by_file.write_text("lexicon: names.yaml\n", encoding="utf-8")
    script = write_script(NAMES)
    def texts(**kw):
        """What the backend was asked to say; the report keeps the lines as written."""
        tone_backend.calls.clear()
        result = Renderer(RenderOptions(backend="tone", cache=False, **kw)).render(script, None)
        assert [r.text for r in result.lines][:2] == ["Siobhan is here.", "Niamh is here."]
        return {t for t, _ in tone_backend.calls}     # the engine's workers take the lines in any order
    assert texts(speaker_map=inline) == {"Shiv-awn is here.", "Nee-av is here.", "Nobody else.", "Hello, Shiv-awn."}
    assert texts(speaker_map=by_file) == {"Siobhan is here.", "Neev is here.", "Nobody else.", "Hello, SIOBHAN."}
    assert texts(speaker_map=inline, lexicon=tmp_path / "names.yaml") == {
        "Shiv-awn is here.", "Neev is here.", "Nobody else.", "Hello, Shiv-awn."}


@pytest.mark.parametrize("text, line, match", [
    ("Siobhan: 'x[bad]'\n", 1, "without brackets"),
    ("Siobhan: {sound: x}\n", 1, "unknown key 'sound'"),
    ("ok: fine\nSiobhan: [1, 2]\n", 2, "give a respelling"),
    ("Siobhan: x\nsiobhan: y\n", 2, "listed twice"),
    ("- a\n- b\n", 1, "mapping of words"),
])
def test_bad_lexicon_entries_are_located_errors(tmp_path, text, line, match):
    path = tmp_path / "lex.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VoiceSpecError, match=match) as info:
        load_lexicon(path)
    assert info.value.line == line and str(info.value).startswith(f"{path}:{line}: ")


@pytest.mark.slow
def test_piper_speaks_raw_phonemes_and_espeak_its_mnemonics():
    """The hooks' output is what the engines read: a phoneme block is not spelled out letter by letter."""
    piper = backends.get_backend("piper")
    joe = piper.resolve(Voice("joe", "piper"))
    block = piper.synthesize("Say [[ ʃɪˈvɔːn ]] now.", joe).duration
    spelled = piper.synthesize("Say ʃ ɪ v ɔ n now.", joe).duration
    assert block < spelled
    espeak = backends.get_backend("espeak")
    en = espeak.resolve(Voice("en-us", "espeak"))
    samples = espeak.synthesize("Say [[S@v'O:n]] now.", en).samples
    literal = espeak.synthesize("Say S at v apostrophe O colon n now.", en).samples
    assert len(samples) < 0.7 * len(literal) and np.abs(samples).max() > 0.05


def test_hibari_speaks_lexicon_phonemes_inline():
    """The inline phonemes reach hibari: the same line sounds different with and without the entry."""
    hibari = backends.get_backend("hibari")
    voice = hibari.resolve(Voice("heart", backend="hibari"))
    plain = hibari.synthesize("Say Siobhan now.", voice)
    spoken = hibari.synthesize(hibari.pronounce("Siobhan", Entry(phonemes="ʃɪˈvɔːn")).join(["Say ", " now."]), voice)
    assert plain.frames != spoken.frames
    whisper = hibari.apply_delivery(voice, Delivery(rate=0.9, volume=-10.0, pitch=3.0))
    assert whisper.pitch == 0.0 and whisper.volume == -10.0          # speed and volume only
