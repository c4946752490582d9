"""The music bed: ducking depth and restore, click-free envelopes, loop seams, blocks read, bookends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from conftest import tone_clip
from dialog_tts.finish import clips as mix
from dialog_tts.finish import music
from dialog_tts.finish import timeline as tl
from dialog_tts.io import musicfiles as sources
from dialog_tts.io.audio import Clip
from dialog_tts.script.parse import Line, Pause
from dialog_tts.script.voice import Voice
from measure import rms_db

RATE = 16000


def sine_source(freq: float, seconds: float, rate: int = RATE, channels: int = 1, block: int = 4096):
    """A BlockSource of a sine of *seconds* (amplitude 0.5), in blocks of *block* frames."""
    t = np.arange(round(seconds * rate)) / rate
    x = (0.5 * np.sin(2 * math.pi * freq * t)).astype(np.float32)
    if channels == 2:
        x = np.stack([x, x], axis=1)

    def blocks():
        for i in range(0, x.shape[0], block):
            yield x[i:i + block]
    return blocks, x.shape[0]


def dialog_timeline(spec, rate=RATE, gap=0.25):
    """(timeline, clips) from [(speaker, seconds) | pause seconds]: tone lines at 300 Hz."""
    events, inputs, clips = [], [], []
    # no levelling: the bed is measured as the difference of two mixes, which needs the speech placed alike
    settings = mix.MixSettings(sample_rate=rate, channels=1, gap=gap, leveling="off")
    for n, item in enumerate(spec):
        if isinstance(item, float):
            events.append(Pause(item, n))
            continue
        speaker, seconds = item
        line = Line(speaker, f"line {n}", n)
        clip = tone_clip(300.0 + 50 * (speaker == "B"), seconds, rate)
        events.append(line)
        inputs.append(tl.LineInput(line, Voice("tone", "mid"), mix.placed_frames(clip, settings)))
        clips.append(clip)
    return tl.build(events, inputs, sample_rate=rate, gap=gap), clips, settings


def bed_only(timeline, clips, settings, bed):
    """The bed's contribution to the mix: the mix with music minus the mix without."""
    with_music = mix.mix_timeline(timeline, list(clips), settings, music=music.Music(bed)).samples
    without = mix.mix_timeline(timeline, list(clips), settings).samples
    return with_music.astype(np.float64) - without


def test_ducking_depth_during_speech_and_restore_between_lines():
    base, clips, settings = dialog_timeline([("A", 2.0), 3.0, ("B", 2.0)])
    framed = tl.bookend(base, lead=RATE, music=True)
    source, frames = sine_source(1000.0, 20.0)
    bed = music.Bed(source, frames, level_db=-6.0, duck_db=12.0, attack=0.2, release=0.5,
                    fade_in=0.5, fade_out=0.5)
    contribution = bed_only(framed, clips, settings, bed)
    reference = rms_db(0.5 * np.sin(2 * math.pi * 1000.0 * np.arange(RATE) / RATE))
    a, b = framed.lines
    mid_a = contribution[a.start + RATE // 2:a.end - RATE // 2]
    between = contribution[a.end + RATE:b.start - RATE]        # 3 s pause: the bed is back up
    assert rms_db(mid_a) - reference == pytest.approx(-18.0, abs=0.5)
    assert rms_db(between) - reference == pytest.approx(-6.0, abs=0.5)


def test_close_lines_keep_the_bed_down():
    base, clips, settings = dialog_timeline([("A", 1.0), ("B", 1.0)], gap=0.25)
    framed = tl.bookend(base, lead=RATE, music=True)
    source, frames = sine_source(1000.0, 10.0)
    bed = music.Bed(source, frames, level_db=0.0, duck_db=12.0, attack=0.3, release=0.8)
    contribution = bed_only(framed, clips, settings, bed)
    a, b = framed.lines
    gap = contribution[a.end:b.start]
    assert rms_db(gap) - rms_db(0.5 * np.sin(2 * math.pi * 1000.0 * np.arange(RATE) / RATE)) < -10.0


def test_envelope_is_click_free():
    spans = np.array([[8000, 24000], [28000, 40000], [90000, 100000]], dtype=np.float64)
    source, frames = sine_source(100.0, 10.0)
    bed = music.Bed(source, frames, level_db=0.0, duck_db=20.0, attack=0.05, release=0.1,
                    fade_in=0.2, fade_out=0.2)
    gain = music.bed_gain(bed, spans, RATE, (0, 120000), 0, 120000).astype(np.float64)
    # the steepest a raised cosine of 20 dB over the attack can be, in linear gain (at gain 1):
    # d/dt 10^(dB/20) = ln(10)/20 * gain * dB/dt, and dB/dt peaks at pi/2 * 20 dB / attack
    bound = math.log(10) / 20 * 20.0 * math.pi / 2 / (0.05 * RATE)
    steps = np.abs(np.diff(gain))
    assert steps.max() <= bound * 1.01
    hard = music.Bed(source, frames, level_db=0.0, duck_db=20.0, attack=0.0, release=0.0)
    hard_gain = music.bed_gain(hard, spans, RATE, (0, 120000), 0, 120000)
    assert np.abs(np.diff(hard_gain)).max() > 0.5          # what the smooth envelope avoids


@pytest.mark.parametrize("channels", [1, 2])
def test_loop_seams_are_continuous(channels):
    seconds = 1.013                                         # not a whole number of cycles: a hard loop jumps
    source, frames = sine_source(441.0, seconds, channels=channels, block=1000)
    bed = music.Bed(source, frames, crossfade=0.1)
    looped = np.concatenate(list(music.looped(bed, 5 * RATE, RATE)))
    assert looped.shape[0] == 5 * RATE
    natural = 0.5 * 2 * math.pi * 441.0 / RATE              # the sine's own largest step
    x = looped if channels == 1 else looped[:, 0]
    assert np.abs(np.diff(x)).max() < natural * 1.6
    hard = music.Bed(source, frames, crossfade=0.0)
    y = np.concatenate(list(music.looped(hard, 5 * RATE, RATE)))
    y = y if channels == 1 else y[:, 0]
    assert np.abs(np.diff(y)).max() > natural * 3        # without the crossfade the seam clicks


def test_bed_longer_than_the_dialog_is_trimmed_and_faded():
    base, clips, settings = dialog_timeline([("A", 1.0)])
    framed = tl.bookend(base, lead=RATE // 2, music=True)
    source, frames = sine_source(1000.0, 30.0)
    bed = music.Bed(source, frames, level_db=0.0, duck_db=0.0, fade_in=0.25, fade_out=0.25)
    contribution = bed_only(framed, clips, settings, bed)
    assert contribution.shape[0] == framed.frames
    assert abs(contribution[0]) < 1e-4 and abs(contribution[-1]) < 1e-3     # faded in and out


def test_bed_is_read_in_blocks(tmp_path):
    """A long bed costs one block of memory: it is read in blocks of a bounded size, looped from the file."""
    path = tmp_path / "bed.flac"
    rate = 8000
    t = np.arange(60 * rate) / rate                         # 60 s at 8 kHz, mixed at 16 kHz
    sf.write(path, (0.3 * np.sin(2 * math.pi * 220 * t)).astype(np.float32), rate)
    reader = sources.BlockReader(path, RATE, 1, block=4096)
    assert reader.frames == 60 * RATE
    base, clips, settings = dialog_timeline([("A", 1.0), 150.0, ("B", 1.0)])   # about 2.5 minutes
    framed = tl.bookend(base, lead=RATE, music=True)
    bed = music.Bed(reader, reader.frames)
    out = mix.mix_timeline(framed, clips, settings, music=music.Music(bed))
    assert out.samples.shape[0] == framed.frames
    passes = math.ceil(framed.frames / reader.frames)        # 3 passes over the file
    assert reader.largest_block == 4096
    per_pass = math.ceil(60 * rate / 4096)
    assert per_pass * (passes - 1) < reader.blocks_read <= per_pass * passes + passes
    assert rms_db(out.samples[framed.lines[0].end + 5 * RATE:framed.lines[1].start - 5 * RATE]) > -30


def test_bed_file_at_another_rate_and_in_stereo(tmp_path):
    path = tmp_path / "bed.wav"
    t = np.arange(44100 * 2) / 44100
    x = (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
    sf.write(path, np.stack([x, x], axis=1), 44100)
    reader = sources.BlockReader(path, 24000, 2, block=10000)
    got = np.concatenate(list(reader()))
    assert got.shape == (reader.frames, 2) or abs(got.shape[0] - reader.frames) <= 2
    assert rms_db(got[2400:-2400, 0]) == pytest.approx(rms_db(x), abs=0.1)
    mono = np.concatenate(list(sources.BlockReader(path, 24000, 1)()))
    assert mono.ndim == 1


def test_intro_and_outro_bookend_the_dialog():
    base, clips, settings = dialog_timeline([("A", 1.0)])
    intro, outro = tone_clip(800.0, 0.5, RATE), tone_clip(900.0, 0.75, RATE)
    framed = tl.bookend(base, intro=8000, outro=12000, lead=4000)
    kinds = [e.kind for e in framed.entries]
    assert kinds == [tl.Kind.INTRO, tl.Kind.LINE, tl.Kind.OUTRO]
    line = framed.lines[0]
    assert line.start == 8000 + 4000
    assert framed.entries[-1].start == line.end + 4000 and framed.frames == line.end + 4000 + 12000
    out = mix.mix_timeline(framed, clips, settings, music=music.Music(None, intro, outro)).samples
    assert rms_db(out[:8000]) == pytest.approx(rms_db(intro.samples), abs=0.1)
    assert rms_db(out[-12000:]) == pytest.approx(rms_db(outro.samples), abs=0.1)
    assert np.abs(out[8000:line.start]).max() == 0.0


def test_music_counts_in_the_loudness(tmp_path):
    base, clips, settings = dialog_timeline([("A", 2.0), 2.0, ("B", 2.0)])
    framed = tl.bookend(base, lead=RATE, music=True)
    loud = mix.MixSettings(sample_rate=RATE, channels=1, gap=0.25, lufs=-20.0)
    source, frames = sine_source(1000.0, 20.0)
    bed = music.Bed(source, frames, level_db=0.0, duck_db=6.0)
    import pyloudnorm

    with_music = mix.mix_timeline(framed, list(clips), loud, music=music.Music(bed))
    without = mix.mix_timeline(framed, list(clips), loud)
    meter = pyloudnorm.Meter(RATE)
    assert meter.integrated_loudness(with_music.samples) == pytest.approx(-20.0, abs=0.2)
    assert with_music.gain_db < without.gain_db - 0.5     # the bed made the whole louder before the gain


def test_clip_values():
    clip = Clip(np.zeros(10, np.float32), RATE)
    assert music.Music(None, clip).intro is clip
    with pytest.raises(ValueError):
        music.Bed(lambda: iter(()), 10, duck_db=-1.0)
