"""Producing an episode: stems, chapters and tags, M4A/M4B, subtitles, streams, front matter, up to date."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from conftest import FAKE_RATE, FakeBackend, tone_clip
from dialog_tts import backends, synthesize_dialog
from dialog_tts.api import Renderer, RenderOptions
from dialog_tts.backends.base import VoiceInfo
from dialog_tts.cli import main
from dialog_tts.errors import ScriptError
from dialog_tts.finish import clips as mix
from dialog_tts.finish import music
from dialog_tts.finish import timeline as tl
from dialog_tts.script import parse as script_mod
from measure import loud_regions
from test_music import dialog_timeline, sine_source

RATE = 16000
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64

EPISODE = """---
title: Episode 1
artist: Night Shift
album: Late Stories
year: 2025
comment: made in a test
---
## Opening
A: Good evening.
B: Hello there, and welcome.
## The middle
A: This is the second part. It has two sentences.
[pause 500ms]
B: Goodbye.
"""


def render(script, out, **options):
    options.setdefault("backend", "tone")
    options.setdefault("sample_rate", RATE)
    return synthesize_dialog(script, out, **options)


@pytest.fixture
def bed_file(tmp_path):
    path = tmp_path / "bed.wav"
    t = np.arange(3 * 22050) / 22050
    sf.write(path, (0.3 * np.sin(2 * math.pi * 200 * t)).astype(np.float32), 22050)
    return path


# ---------------------------------------------------------------- stems

@pytest.mark.parametrize("channels", [1, 2])
def test_stems_sum_to_the_mix_and_are_silent_where_their_speaker_is(channels):
    base, clips, _ = dialog_timeline([("A", 1.0), ("B", 0.8), 0.5, ("A", 0.6), ("B", 1.2)])
    framed = tl.bookend(base, lead=RATE // 2, music=True)
    source, frames = sine_source(500.0, 4.0)
    bed = music.Music(music.Bed(source, frames, level_db=-10.0))
    # no levelling here: the mix before the limiter is made by a second mix (test_finishing.py checks
    # that levelled stems add up to the mix, with the gains the mix gave each line)
    plain = mix.MixSettings(sample_rate=RATE, channels=channels, gap=0.25, leveling="off")
    loud = mix.MixSettings(sample_rate=RATE, channels=channels, gap=0.25, lufs=-14.0, true_peak=-3.0,
                           leveling="off")
    before_limiter = mix.mix_timeline(framed, list(clips), plain, music=bed).samples
    mixed = mix.mix_timeline(framed, list(clips), loud, music=bed)
    stems = dict(mix.mix_stems(framed, list(clips), loud, gain_db=mixed.gain_db, music=bed))
    assert list(stems) == ["A", "B", "music"]
    total = sum(stems.values())
    expected = before_limiter * np.float32(10 ** (mixed.gain_db / 20))
    assert np.abs(total - expected).max() < 1e-4
    for name in ("A", "B"):
        stem = stems[name]
        assert stem.shape == mixed.samples.shape
        mask = np.zeros(stem.shape[0], bool)
        for entry in framed.lines:
            if entry.speaker == name:
                mask[entry.start:entry.end] = True
        assert np.abs(stem[~mask]).max() == 0.0             # silent where that speaker is not speaking
        assert np.abs(stem[mask]).max() > 0.1


def test_stems_through_the_cli(write_script, tone_backend, tmp_path, bed_file):
    script = write_script("A: Hello there.\nB: Hi.\nA: Bye now.\n")
    out = tmp_path / "scene.wav"
    result = CliRunner().invoke(main, ["-s", str(script), "--backend", "tone", "--stems", str(tmp_path / "stems"),
                                       "--music", str(bed_file), "-o", str(out)])
    assert result.exit_code == 0, result.output
    mixed, rate = sf.read(out)
    names = sorted(p.name for p in (tmp_path / "stems").iterdir())
    assert names == ["A.wav", "B.wav", "music.wav"]
    stems = [sf.read(tmp_path / "stems" / n)[0] for n in names]
    assert all(s.shape == mixed.shape for s in stems)
    assert np.abs(sum(stems) - mixed).max() < 3 / 32768          # 16-bit files: within rounding


# ---------------------------------------------------------------- script: chapters and front matter

def test_chapter_lines_and_front_matter(write_script):
    path = write_script(EPISODE)
    parsed = script_mod.load(path)
    assert parsed.meta == {"title": "Episode 1", "artist": "Night Shift", "album": "Late Stories",
                           "year": "2025", "comment": "made in a test"}
    chapters = [e for e in parsed.events if isinstance(e, script_mod.Chapter)]
    assert [(c.title, c.line_no) for c in chapters] == [("Opening", 8), ("The middle", 11)]
    assert [ln.line_no for ln in parsed.lines] == [9, 10, 12, 14]   # line numbers still match the file
    assert script_mod.parse_text("# a comment\nA: hi\n").events == [script_mod.Line("A", "hi", 2)]


def test_front_matter_errors_name_the_line(write_script):
    with pytest.raises(ScriptError, match=r"script.txt:3: front matter: unknown key 'colour'"):
        script_mod.load(write_script("---\ntitle: X\ncolour: red\n---\nA: hi\n"))
    with pytest.raises(ScriptError, match="never closed"):
        script_mod.load(write_script("---\ntitle: X\nA: hi\n"))


def test_chapter_positions_follow_the_lines(write_script, tone_backend, tmp_path):
    result = render(write_script(EPISODE), tmp_path / "e.wav", report=tmp_path / "r.json")
    lines = result.lines
    assert [(c["title"], c["start"]) for c in result.chapters] == [("Opening", 0.0), ("The middle", lines[2].start)]
    assert result.chapters[0]["end"] == result.chapters[1]["start"]
    assert result.chapters[1]["end"] == pytest.approx(result.duration, abs=1e-3)
    import json
    assert json.loads((tmp_path / "r.json").read_text())["chapters"][1]["title"] == "The middle"


# ---------------------------------------------------------------- tags and chapters read back

def _chapter_starts(result):
    return [round(c["start"], 3) for c in result.chapters]


def test_mp3_id3_tags_chapters_and_cover(write_script, tone_backend, tmp_path):
    from mutagen.id3 import ID3

    cover = tmp_path / "cover.png"
    cover.write_bytes(PNG)
    out = tmp_path / "e.mp3"
    result = render(write_script(EPISODE), out, title="Override", cover=cover)
    tags = ID3(out)
    assert str(tags["TIT2"]) == "Override" and str(tags["TPE1"]) == "Night Shift"
    assert str(tags["TALB"]) == "Late Stories" and str(tags["TDRC"]) == "2025"
    assert tags.getall("COMM")[0].text == ["made in a test"]
    assert tags.getall("APIC")[0].data == PNG
    chaps = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    assert [str(c.sub_frames["TIT2"]) for c in chaps] == ["Opening", "The middle"]
    assert [c.start_time / 1000 for c in chaps] == pytest.approx(_chapter_starts(result), abs=0.001)
    toc = tags.getall("CTOC")[0]
    assert toc.child_element_ids == [c.element_id for c in chaps]


@pytest.mark.parametrize("ext", [".flac", ".ogg"])
def test_vorbis_comments_and_chapters(write_script, tone_backend, tmp_path, ext):
    import mutagen

    out = tmp_path / f"e{ext}"
    result = render(write_script(EPISODE), out)
    tags = mutagen.File(out).tags
    assert tags["TITLE"] == ["Episode 1"] and tags["ARTIST"] == ["Night Shift"] and tags["DATE"] == ["2025"]
    assert tags["CHAPTER001NAME"] == ["Opening"] and tags["CHAPTER002NAME"] == ["The middle"]
    h, m, s = tags["CHAPTER002"][0].split(":")
    assert int(h) * 3600 + int(m) * 60 + float(s) == pytest.approx(_chapter_starts(result)[1], abs=0.001)


@pytest.mark.parametrize("ext", [".m4a", ".m4b"])
def test_mp4_atoms_and_chapters(write_script, tone_backend, tmp_path, ext):
    from mutagen.mp4 import MP4

    cover = tmp_path / "cover.png"
    cover.write_bytes(PNG)
    out = tmp_path / f"book{ext}"
    result = render(write_script(EPISODE), out, cover=cover, bitrate="96k")
    audio = MP4(out)
    assert audio.tags["\xa9nam"] == ["Episode 1"] and audio.tags["\xa9ART"] == ["Night Shift"]
    assert audio.tags["\xa9alb"] == ["Late Stories"] and audio.tags["\xa9day"] == ["2025"]
    assert bytes(audio.tags["covr"][0]) == PNG
    assert [c.title for c in audio.chapters] == ["Opening", "The middle"]
    assert [c.start for c in audio.chapters] == pytest.approx(_chapter_starts(result), abs=0.01)
    assert audio.info.length == pytest.approx(result.duration, abs=0.1)
    assert 60_000 < audio.info.bitrate < 130_000


def test_m4a_loudness_and_true_peak_hold_after_encoding(write_script, tone_backend, tmp_path):
    """Measured on the decoded AAC with independent references: pyloudnorm, and 4x oversampling with scipy."""
    import av
    import pyloudnorm
    from scipy.signal import resample_poly

    script = write_script("A: " + "Loud and clear words here. " * 6 + "\nB: " + "More speech follows now. " * 6 + "\n")
    out = tmp_path / "loud.m4a"
    result = render(script, out, lufs=-14.0, true_peak=-1.0, sample_rate=24000)
    with av.open(str(out)) as container:
        decoded = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1).T
    assert pyloudnorm.Meter(24000).integrated_loudness(decoded) == pytest.approx(-14.0, abs=0.5)
    over = resample_poly(decoded, 4, 1, axis=0)
    assert 20 * math.log10(np.abs(over).max()) <= -1.0 + 0.05
    assert result.true_peak is not None and result.true_peak <= -1.0


# ---------------------------------------------------------------- subtitles

def test_subtitle_cues_sit_on_the_speech_in_the_output(write_script, tone_backend, tmp_path):
    long_line = "This is the first sentence of a long line. " * 2 + "And here is the end of it all!"
    script = write_script(f"A: Good evening.\n[pause 400ms]\nB: {long_line}\nA: [laughs] Bye.\n")
    out, subs = tmp_path / "s.wav", tmp_path / "s.srt"
    render(script, out, subtitles=subs, stereo=False)
    samples, rate = sf.read(out)
    speech = loud_regions(samples, rate, threshold=0.01)
    cues = _parse_srt(subs.read_text())
    assert [c[2].split(":")[0] for c in cues] == ["A", "B", "B", "A"]     # the long line split in two
    assert "[laughs]" not in subs.read_text() and cues[3][2] == "A: Bye."
    by_line = [cues[0], (cues[1][0], cues[2][1], ""), cues[3]]
    assert len(speech) == 3
    for (start, end, _), (s0, s1) in zip(by_line, speech):
        assert abs(start - s0) <= 0.05 and abs(end - s1) <= 0.05
    assert cues[1][1] == cues[2][0] and cues[1][2].endswith("long line.")


def _parse_srt(text):
    def seconds(stamp):
        h, m, rest = stamp.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000
    cues = []
    for block in text.strip().split("\n\n"):
        _, times, words = block.split("\n", 2)
        a, b = times.split(" --> ")
        cues.append((seconds(a), seconds(b), words))
    return cues


def test_webvtt_voice_spans_and_chapters(write_script, tone_backend, tmp_path):
    script = write_script(EPISODE.replace("B: Goodbye.", "Lady <Bracknell>: x".replace("<", "").replace(">", "")
                                          + "\nLady Bracknell: A & B < C."))
    vtt = tmp_path / "e.vtt"
    render(script, tmp_path / "e.wav", subtitles=vtt)
    text = vtt.read_text()
    assert text.startswith("WEBVTT\n\nNOTE Chapters\n00:00:00.000 Opening\n")
    assert "<v Lady Bracknell>A &amp; B &lt; C.\n" in text
    assert "<v A>Good evening.\n" in text


# ---------------------------------------------------------------- streams

def test_stdout_and_stdin_streams(tmp_path, private_cache):
    """`-s - --out -` in a real pipe: the WAV on stdout is all there is, and a reader decodes it."""
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "DIALOG_TTS_CACHE_DIR": str(private_cache)}
    cli = [sys.executable, "-c", "from dialog_tts.cli import main; main()"]
    proc = subprocess.run([*cli, "-s", "-", "--backend", "espeak", "--out", "-"],
                          input=b"A: Hello from a pipe.\nB: And back again.\n", capture_output=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout[:4] == b"RIFF" and b"Wrote" in proc.stderr
    samples, rate = sf.read(io.BytesIO(proc.stdout))
    assert rate == 24000 and samples.shape[0] > rate and np.abs(samples).max() > 0.05
    flac = subprocess.run([*cli, "-s", "-", "--backend", "espeak", "--out", "-",
                           "--format", "flac", "-q"], input=b"A: Hello.\n", capture_output=True, env=env, timeout=120)
    assert flac.returncode == 0 and flac.stdout[:4] == b"fLaC" and flac.stderr == b""
    assert sf.read(io.BytesIO(flac.stdout))[0].shape[0] > 0


# ---------------------------------------------------------------- up to date

def test_music_and_tags_remix_without_resynthesis(write_script, tone_backend, tmp_path, bed_file):
    script = write_script(EPISODE)
    out, subs = tmp_path / "e.mp3", tmp_path / "e.vtt"
    first = render(script, out, music=bed_file, subtitles=subs)
    assert first.totals.synthesized == 4
    again = render(script, out, music=bed_file, subtitles=subs)
    assert again.totals.up_to_date
    changed_tag = render(script, out, music=bed_file, subtitles=subs, title="Another")
    assert not changed_tag.totals.up_to_date and changed_tag.totals.synthesized == 0
    louder = render(script, out, music=bed_file, subtitles=subs, title="Another", music_level=-6.0)
    assert not louder.totals.up_to_date and louder.totals.synthesized == 0
    t = np.arange(22050) / 22050
    sf.write(bed_file, (0.3 * np.sin(2 * math.pi * 300 * t)).astype(np.float32), 22050)   # new music
    new_bed = render(script, out, music=bed_file, subtitles=subs, title="Another", music_level=-6.0)
    assert not new_bed.totals.up_to_date and new_bed.totals.synthesized == 0
    subs.unlink()                                       # an extra output gone: rendered again
    redone = render(script, out, music=bed_file, subtitles=subs, title="Another", music_level=-6.0)
    assert not redone.totals.up_to_date and subs.exists()
    assert render(script, out, music=bed_file, subtitles=subs, title="Another", music_level=-6.0).totals.up_to_date
    assert len(tone_backend.calls) == 4


def test_missing_music_file_is_a_usage_error_before_synthesis(write_script, tone_backend, tmp_path):
    result = CliRunner().invoke(main, ["-s", str(write_script("A: hi\n")), "--backend", "tone",
                                       "--music", str(tmp_path / "none.flac"), "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 2 and "music file not found" in result.output
    assert tone_backend.calls == []


def test_renderer_accepts_the_production_options(write_script, tone_backend, tmp_path, bed_file):
    intro = tmp_path / "sting.wav"
    sf.write(intro, (0.2 * np.sin(2 * math.pi * 700 * np.arange(8000) / 8000)).astype(np.float32), 8000)
    options = RenderOptions(backend="tone", sample_rate=RATE, music=bed_file, intro=intro, outro=intro,
                            music_lead=0.5, lufs=-18.0)
    with Renderer(options) as renderer:
        result = renderer.render(write_script("A: Hello there.\nB: Hi.\n"), tmp_path / "o.wav")
    assert result.lines[0].start == pytest.approx(1.5, abs=1e-3)        # 1 s intro, then 0.5 s of music
    assert result.duration == pytest.approx(result.lines[1].end + 0.5 + 1.0, abs=1e-3)


class SentenceBackend(FakeBackend):
    """Speaks each sentence as a tone burst whose length ignores the text, and says where each starts."""

    name = "sentences"
    speech = False

    def resolve(self, voice):
        return replace(voice, name=voice.name or "s")

    def list_voices(self):
        return [VoiceInfo("s")]

    def palette(self):
        return ["s"]

    def synthesize(self, text, voice):
        from dialog_tts.io.audio import concat
        from dialog_tts.io.subtitles import sentences
        parts = []
        for i, _sentence in enumerate(sentences(text)):
            seconds = 0.3 if i == 0 else 1.5           # the short first sentence has the longer text
            burst = tone_clip(300 + 100 * i, seconds).samples
            parts.append(np.concatenate([burst, np.zeros(round(0.3 * FAKE_RATE), np.float32)]))
        return concat(parts, FAKE_RATE)


def test_long_lines_split_where_the_backend_says_its_sentences_start(write_script, tmp_path):
    backends.register("sentences", SentenceBackend)
    try:
        line = "A first sentence with very many more words in it than the next one will have. Short second one."
        script = write_script(f"A: {line}\n")
        for attempt in ("synthesized", "cached"):        # the cache keeps the sentence marks
            out, subs = tmp_path / f"{attempt}.wav", tmp_path / f"{attempt}.srt"
            result = render(script, out, subtitles=subs, backend="sentences", stereo=False,
                            cache_dir=tmp_path / "c", leveling="off", check="none")
            assert result.lines[0].source == ("synthesized" if attempt == "synthesized" else "cache")
            samples, rate = sf.read(out)
            speech = loud_regions(samples, rate, threshold=0.01)
            cues = _parse_srt(subs.read_text())
            assert len(speech) == 2 and len(cues) == 2
            # by text length the split would fall at 80 % of the line; the audio says 0.6 s in
            assert abs(cues[1][0] - speech[1][0]) <= 0.05 and abs(cues[0][0] - speech[0][0]) <= 0.05
    finally:
        backends.unregister("sentences")


def test_offline_backends_mark_their_sentences():
    from dialog_tts.script.voice import Voice
    text = "The first sentence. And the second one."
    for name, voice in (("piper", "joe"), ("hibari", "heart")):
        backend = backends.get_backend(name)
        clip = backend.synthesize(text, backend.resolve(Voice(voice, backend=name)))
        assert len(clip.marks) == 1 and 0.2 * clip.frames < clip.marks[0] < 0.8 * clip.frames, (name, clip.marks)
