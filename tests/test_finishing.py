"""Finishing, checked on the files as written: levelling, the true-peak ceiling (lossless and lossy),
loudness targets met or failed, no overs without a target, bit depth and dither.

Every figure is measured independently of the code under test: loudness with libebur128
(pyebur128), true peak by oversampling with scipy.signal.resample_poly to at least 192 kHz
(8x, 12x at 16 kHz, 9x at 22.05 kHz).  The material is made to need heavy limiting: plosive
clicks and hissing consonants far above the vowels, and voices 20 dB apart.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pyebur128
import pytest
import soundfile as sf
from click.testing import CliRunner
from scipy.signal import butter, resample_poly, sosfilt

from conftest import FakeBackend
from dialog_tts import backends, synthesize_dialog
from dialog_tts.backends.base import VoiceInfo
from dialog_tts.cli import main
from dialog_tts.errors import LoudnessError
from dialog_tts.finish.clips import MixSettings, Placement, mix, trim
from dialog_tts.io.audio import Clip
from dialog_tts.script.voice import Voice

RATES = [16000, 22050, 24000, 44100, 48000]
TARGETS = [-23.0, -18.0, -14.0, -10.0]
#: voice -> (level of the vowels, dB; how loud the consonants are against them, dB)
HARD_VOICES = {"soft": (-32.0, 14.0), "plain": (-20.0, 12.0), "hot": (-12.0, 10.0)}
HARD_RATE = 22050
HISS = butter(4, [3000, 7000], btype="bandpass", fs=HARD_RATE, output="sos")


def hard_speech(text: str, level_db: float, consonants_db: float, rate: int = HARD_RATE) -> np.ndarray:
    """Syllables (voiced harmonics) with a plosive click and a hiss in each, seeded by *text*."""
    rng = np.random.default_rng(sum(map(ord, text)))
    x = np.zeros(round(rate * (0.25 + 0.12 * len(text.split()) + 0.3)))
    pos = round(0.05 * rate)
    while pos < x.size - round(0.3 * rate):
        n = round(rate * rng.uniform(0.12, 0.22))
        t = np.arange(n) / rate
        f0 = rng.uniform(100, 240)
        voiced = sum(np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6)) / h for h in range(1, 8))
        x[pos:pos + n] += np.sin(np.pi * t / t[-1]) ** 2 * voiced * 10 ** (level_db / 20)
        loud = 10 ** ((level_db + consonants_db) / 20)
        x[pos:pos + 12] += loud * np.hanning(12) * rng.choice([-1, 1])                 # the plosive
        if rng.random() < 0.3:
            hiss = sosfilt(HISS, rng.standard_normal(round(0.04 * rate)))               # an "s", 3-7 kHz
            x[pos + n - hiss.size:pos + n] += 0.7 * loud * hiss * np.hanning(hiss.size)
        pos += n + round(rate * rng.uniform(0.03, 0.12))
    return x.astype(np.float32)


class HardBackend(FakeBackend):
    """Speech-like lines that need heavy limiting, at very different levels per voice."""

    name = "hard"
    base_wpm = 170.0

    def resolve(self, voice: Voice) -> Voice:
        return replace(voice, name=voice.name or "plain")

    def list_voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(n) for n in HARD_VOICES]

    def palette(self) -> list[str]:
        return list(HARD_VOICES)

    def synthesize(self, text: str, voice: Voice) -> Clip:
        return Clip(hard_speech(text, *HARD_VOICES[voice.name]), HARD_RATE)


@pytest.fixture
def hard():
    backends.register("hard", HardBackend)
    yield
    backends.unregister("hard")


SCENE = """\
A: Tick tock, the kettle is on the stove tonight.
B: Static crackles on the line, peak after peak.
C: Quiet now.
A: Sharp consonants, spikes and clicks, all through the studio.
B: Yes.
C: A long drive home through the sleeping city, past the harbour.
"""
VOICES = {"A": "plain,backend=hard,pan=-0.6", "B": "hot,backend=hard,pan=0.6", "C": "soft,backend=hard"}
TWO = {"A": VOICES["A"], "C": VOICES["C"]}


def oversampled_peak_db(x: np.ndarray, rate: int) -> float:
    """True peak (dBTP), oversampled with scipy.signal.resample_poly to 192 kHz or more (at least 8x)."""
    factor = max(8, math.ceil(192000 / rate))
    up = resample_poly(np.asarray(x, dtype=np.float64), factor, 1, axis=0)
    return 20 * math.log10(float(np.abs(up).max()))


def ebur128_lufs(x: np.ndarray, rate: int) -> float:
    channels = 1 if x.ndim == 1 else x.shape[1]
    state = pyebur128.R128State(channels, rate, pyebur128.MeasurementMode.MODE_I)
    state.add_frames(np.ascontiguousarray(x, dtype=np.float64).ravel(), x.shape[0])
    return float(pyebur128.get_loudness_global(state))


def speaker_loudness(x: np.ndarray, rate: int, result) -> dict[str, float]:
    """Each speaker's integrated loudness over its own lines' spans, measured by libebur128."""
    parts: dict[str, list[np.ndarray]] = {}
    for line in result.lines:
        parts.setdefault(line.speaker, []).append(x[round(line.start * rate):round(line.end * rate)])
    return {speaker: ebur128_lufs(np.concatenate(p), rate) for speaker, p in parts.items()}


def render(write_script, tmp_path, name: str, **options):
    script = write_script(SCENE)
    out = tmp_path / name
    result = synthesize_dialog(script, out, voices=VOICES, cache=False, **options)
    data, rate = sf.read(out, dtype="float64")
    return result, data, rate


# ---------------------------------------------------------------- true peak held, lossless

@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("target", TARGETS)
def test_true_peak_held_and_target_met_in_the_written_file(hard, write_script, tmp_path, target, rate, channels):
    result, x, got_rate = render(write_script, tmp_path, "out.wav", lufs=target, sample_rate=rate,
                                 stereo=channels == 2, allow_quieter=True)
    assert got_rate == rate and (x.ndim == 1) == (channels == 1)
    peak = oversampled_peak_db(x, rate)
    assert peak <= -1.0
    if target <= -18.0:       # within reach of this material: met
        assert result.notes == [] and ebur128_lufs(x, rate) == pytest.approx(target, abs=0.5)
    elif result.notes:        # out of reach: the loudest the ceiling allows, said so
        assert "loudness reached" in result.notes[0] and ebur128_lufs(x, rate) < target
    else:
        assert ebur128_lufs(x, rate) == pytest.approx(target, abs=0.5)
    # the report's figures are the file's: its true peak within 0.1 dB of the reference's reading
    assert result.true_peak is not None and result.true_peak <= -1.0
    assert result.true_peak == pytest.approx(peak, abs=0.1)
    assert result.loudness == pytest.approx(ebur128_lufs(x, rate), abs=0.15)


def test_material_needs_heavy_limiting(hard, write_script, tmp_path):
    """The material above is hard: without limiting, -10 LUFS would put its peaks 9 dB over the ceiling."""
    result, x, rate = render(write_script, tmp_path, "plain.wav", true_peak=0.0, leveling="line")
    assert oversampled_peak_db(x, rate) + (-10.0 - ebur128_lufs(x, rate)) > -1.0 + 9.0
    levels = [HARD_VOICES[v][0] for v in HARD_VOICES]
    assert max(levels) - min(levels) == 20.0


# ---------------------------------------------------------------- lossy files, checked after decoding

@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
@pytest.mark.parametrize("rate", [22050, 44100])
@pytest.mark.parametrize("ext", [".mp3", ".ogg", ".opus"])
def test_lossy_files_hold_the_ceiling_after_decoding(hard, write_script, tmp_path, ext, rate, channels):
    result, x, got_rate = render(write_script, tmp_path, "out" + ext, lufs=-18.0, sample_rate=rate,
                                 stereo=channels == 2)
    peak = oversampled_peak_db(x, got_rate)
    assert peak <= -1.0
    assert ebur128_lufs(x, got_rate) == pytest.approx(-18.0, abs=0.5)
    # the decoded file's figure: read up to Nyquist with the meters' allowance, so at least this
    # reference (a decoded Vorbis file at 22.05 kHz has content near Nyquist that it reads lower)
    assert peak - 0.01 <= result.true_peak <= peak + 0.15
    if ext == ".opus" and rate not in (8000, 12000, 16000, 24000, 48000):
        assert got_rate == 48000                                     # encoded from 48 kHz


def test_lossy_without_target_holds_zero_dbtp(hard, write_script, tmp_path):
    _result, x, rate = render(write_script, tmp_path, "out.ogg", true_peak=0.0)
    assert oversampled_peak_db(x, rate) <= 0.0


# ---------------------------------------------------------------- targets met or failed

def test_unreachable_target_fails_and_writes_nothing(hard, write_script, tmp_path):
    script = write_script(SCENE)
    out = tmp_path / "loud.wav"
    with pytest.raises(LoudnessError) as info:
        synthesize_dialog(script, out, voices=VOICES, cache=False, lufs=-4.0)
    assert info.value.exit_code == 1 and not out.exists()
    assert str(info.value).startswith(f"{script}: loudness target -4 LUFS is out of reach")
    loudest = float(str(info.value).split("allows at most ")[1].split(" LUFS")[0])
    assert loudest < -4.5
    # the loudest reachable value is reachable: asking for it succeeds
    result = synthesize_dialog(script, out, voices=VOICES, cache=False, lufs=math.floor(loudest * 10) / 10)
    assert result.notes == [] and out.exists()
    # and --allow-quieter writes the loudest result, with a note
    runner = CliRunner()
    cli = runner.invoke(main, ["-s", str(script), "-o", str(tmp_path / "q.wav"), "--lufs", "-4", "--allow-quieter",
                               "--voices", *[f"{k}={v}" for k, v in VOICES.items()], "--no-cache"])
    assert cli.exit_code == 0, cli.output
    x, rate = sf.read(tmp_path / "q.wav")
    assert ebur128_lufs(x, rate) == pytest.approx(loudest, abs=0.2)
    assert oversampled_peak_db(x, rate) <= -1.0
    assert "loudness reached" in cli.output


def test_cli_exit_code_for_an_unreachable_target(hard, write_script, tmp_path):
    script = write_script(SCENE)
    cli = CliRunner().invoke(main, ["-s", str(script), "-o", str(tmp_path / "x.mp3"), "--lufs", "-3",
                                    "--voices", *[f"{k}={v}" for k, v in VOICES.items()], "--no-cache"])
    assert cli.exit_code == 1
    assert "out of reach" in cli.output and "--allow-quieter" in cli.output
    assert not (tmp_path / "x.mp3").exists()


# ---------------------------------------------------------------- no overs without a target

@pytest.mark.parametrize("stereo, pan", [(False, 0.0), (True, -1.0)], ids=["mono", "hard-left"])
def test_no_overs_without_a_loudness_target(tmp_path, stereo, pan):
    """Full-scale lines with inter-sample overs (a quarter-rate sine at 45°) never clip or pass 0 dBTP."""
    rate = 24000
    n = np.arange(rate)
    over = (np.sin(np.pi / 2 * n + np.pi / 4) / math.sqrt(0.5)).astype(np.float32) * np.float32(0.999)
    assert np.abs(over).max() < 1.0 and oversampled_peak_db(over, rate) > 2.9     # samples +-0.999, +3 dBTP
    items = [Placement(Clip(over, rate), pan=pan)] * 2
    for leveling in ("off", "line"):
        result = mix(items, MixSettings(channels=2 if stereo else 1, leveling=leveling, true_peak=0.0))
        assert oversampled_peak_db(result.samples, rate) <= 0.0
        assert np.abs(result.samples).max() < 1.0


# ---------------------------------------------------------------- levelling

def test_speakers_levelled(hard, write_script, tmp_path):
    """Voices 20 dB apart, with clicks 10-14 dB over their vowels, come out within 0.6 LU of each
    other (libebur128 over each speaker's spans), with and without a target, line or speaker levelling.
    (The real piper and espeak renders in test_render.py hold 0.5 LU.)"""
    for options in ({}, {"lufs": -16.0}, {"leveling": "speaker"}, {"lufs": -16.0, "leveling": "speaker"}):
        result, x, rate = render(write_script, tmp_path, "lev.wav", **options)
        levels = speaker_loudness(x, rate, result)
        assert max(levels.values()) - min(levels.values()) <= 0.6, (options, levels)


def test_leveling_off_keeps_natural_levels(hard, write_script, tmp_path):
    """Without levelling each speaker keeps the loudness its clips were synthesized with."""
    result, x, rate = render(write_script, tmp_path, "off.wav", leveling="off", true_peak=0.0, sample_rate=HARD_RATE)
    levels = speaker_loudness(x, rate, result)
    raw = {}
    for speaker, voice in (("A", "plain"), ("B", "hot"), ("C", "soft")):
        texts = [line.text for line in result.lines if line.speaker == speaker]
        clips = [trim(hard_speech(t, *HARD_VOICES[voice])) for t in texts]
        raw[speaker] = ebur128_lufs(np.concatenate(clips), HARD_RATE)
    assert levels["B"] - levels["C"] > 5.0     # B is also held under 0 dBTP: compare the others exactly
    assert levels["A"] - levels["C"] == pytest.approx(raw["A"] - raw["C"], abs=0.5)
    assert raw["A"] - raw["C"] > 5.0


def test_short_lines_are_not_over_raised():
    """A 0.25 s line is levelled to the level of a long line of the same voice: the silence around it
    does not count (measured in one 400 ms block with that silence, it would be raised 2 dB more)."""
    rate = 24000
    t = np.arange(rate * 2) / rate
    voice = (0.1 * sum(np.sin(2 * np.pi * 180 * h * t) / h for h in range(1, 6))).astype(np.float32)
    short = voice[:round(0.25 * rate)] * np.float32(0.3)                 # 10 dB quieter, one word
    result = mix([Placement(Clip(voice, rate)), Placement(Clip(short, rate))], MixSettings(channels=1, gap=1.0))
    (a0, a1), (b0, b1) = result.spans
    x = result.samples.astype(np.float64)

    def rms_db(v: np.ndarray) -> float:
        return 10 * math.log10(float(np.mean(v ** 2)))

    long_db = rms_db(x[round(a0 * rate) + 240:round(a1 * rate) - 240])     # inside the fades
    short_db = rms_db(x[round(b0 * rate) + 240:round(b1 * rate) - 240])
    assert short_db - long_db == pytest.approx(0.0, abs=0.3)


# ---------------------------------------------------------------- bit depth and dither

def test_bit_depths(hard, write_script, tmp_path):
    script = write_script(SCENE)
    for depth, subtype in (("16", "PCM_16"), ("24", "PCM_24"), ("32f", "FLOAT")):
        out = tmp_path / f"d{depth}.wav"
        synthesize_dialog(script, out, voices=VOICES, bit_depth=depth)
        assert sf.info(out).subtype == subtype
    flac = tmp_path / "d24.flac"
    synthesize_dialog(script, flac, voices=VOICES, bit_depth="24")
    assert sf.info(flac).subtype == "PCM_24"
    x24, _ = sf.read(tmp_path / "d24.wav", dtype="int32")
    assert np.any((x24 >> 8) % 256 != 0)          # precision below 16 bits: the cached clips kept it
    xf, _ = sf.read(tmp_path / "d32f.wav", dtype="float32")
    np.testing.assert_allclose(xf, x24 / 2 ** 31, atol=2 ** -23)
    np.testing.assert_array_equal(sf.read(flac, dtype="int32")[0], x24)


def test_16_bit_is_dithered_deterministic_and_silence_stays_silent(hard, write_script, tmp_path):
    script = write_script("A: Tick tock.\n[pause 1s]\nC: Static on the line.\n")
    outs = []
    for name in ("a.wav", "b.wav"):
        synthesize_dialog(script, tmp_path / name, voices=TWO, cache=False)
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]                      # seeded dither: the same bytes every time
    x16, rate = sf.read(tmp_path / "a.wav", dtype="int16")
    result = synthesize_dialog(script, tmp_path / "ref24.wav", voices=TWO, cache=False, bit_depth="24")
    x24 = sf.read(tmp_path / "ref24.wav", dtype="int32")[0] / 2 ** 16       # in 16-bit steps
    speech = x24 != 0
    error = x16[speech] - x24[speech]
    # TPDF dither: the error spans more than rounding's +-0.5 step, stays within +-1.5, averages 0
    assert np.abs(error).max() <= 1.5 and np.abs(error).max() > 0.5
    assert abs(float(error.mean())) < 0.05 and 0.25 < float(error.std()) < 0.75
    (_, first_end), (second_start, _) = [(r.start, r.end) for r in result.lines]
    pause = x16[round(first_end * rate) + 1:round(second_start * rate) - 1]
    assert pause.size > rate and np.all(pause == 0)     # the pause: digital silence, undithered


@pytest.mark.parametrize("args, message", [
    (["--bit-depth", "32f", "-o", "x.flac"], "cannot hold 32f-bit"),
    (["--bit-depth", "24", "-o", "x.mp3"], "--bit-depth applies to .wav and .flac"),
])
def test_bit_depth_usage_errors(hard, write_script, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    script = write_script(SCENE)
    cli = CliRunner().invoke(main, ["-s", str(script), *args, "--voices", "A=plain,backend=hard"])
    assert cli.exit_code == 2 and message in cli.output
    assert not list(tmp_path.glob("x.*"))


def test_report_has_the_files_figures(hard, write_script, tmp_path):
    script = write_script(SCENE)
    report = tmp_path / "r.json"
    cli = CliRunner().invoke(main, ["-s", str(script), "-o", str(tmp_path / "r.opus"), "--lufs", "-16",
                                    "--report", str(report), "--voices",
                                    *[f"{k}={v}" for k, v in VOICES.items()]])
    assert cli.exit_code == 0, cli.output
    x, rate = sf.read(tmp_path / "r.opus", dtype="float64")
    data = json.loads(report.read_text())
    assert data["true_peak"] == pytest.approx(oversampled_peak_db(x, rate), abs=0.1)
    assert data["loudness"] == pytest.approx(ebur128_lufs(x, rate), abs=0.15)


@pytest.mark.parametrize("leveling", ["line", "speaker", "off"])
def test_levelling_keeps_a_voices_volume(leveling):
    """A line meant 10 dB quieter (its voice's volume=-10dB, or a [whispering] delivery) stays 10 dB
    quieter than its speaker's other lines: line levelling removes only what the voice did not mean
    (speaker levelling and off keep every difference between one speaker's lines)."""
    from dialog_tts.finish import timeline
    from dialog_tts.finish.clips import mix_timeline
    from dialog_tts.script.parse import Line

    rate = 24000
    x = (0.1 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate)).astype(np.float32)
    inputs = [timeline.LineInput(Line("A", "a", 1), Voice("", volume=0.0), rate),
              timeline.LineInput(Line("A", "b", 2), Voice("", volume=-10.0), rate)]
    placed = timeline.build([i.line for i in inputs], inputs, sample_rate=rate, gap=0.5)
    clips = [Clip(x * np.float32(3.0), rate), Clip(x * np.float32(10 ** (-10 / 20)), rate)]
    y = mix_timeline(placed, clips, MixSettings(channels=1, leveling=leveling)).samples.astype(np.float64)
    first, second = y[:rate], y[-rate:]
    difference = 10 * math.log10(np.mean(second ** 2) / np.mean(first ** 2))
    if leveling != "line":
        assert difference == pytest.approx(-10.0 - 20 * math.log10(3.0), abs=0.05)
    else:
        assert difference == pytest.approx(-10.0, abs=0.05)


@pytest.mark.parametrize("leveling", ["line", "speaker"])
def test_levelled_stems_add_up_to_the_mix(hard, leveling):
    """Stems are placed with the gains the mix gave each line (levelling included): at a target
    the limiter leaves alone, they add up to the mix."""
    from dialog_tts.finish import timeline
    from dialog_tts.finish.clips import mix_stems, mix_timeline
    from dialog_tts.script.parse import Line

    backend = HardBackend()
    lines = [Line(s, t, i + 1) for i, (s, t) in enumerate([("A", "one two three"), ("B", "four five six seven"),
                                                             ("A", "eight"), ("B", "nine ten")])]
    voices = {"A": Voice("soft", pan=-0.5), "B": Voice("hot", pan=0.5)}
    settings = MixSettings(channels=2, leveling=leveling, lufs=-30.0, true_peak=0.0)
    clips = [backend.synthesize(line.text, voices[line.speaker]) for line in lines]
    from dialog_tts.finish.clips import placed_frames
    inputs = [timeline.LineInput(line, voices[line.speaker], placed_frames(c, settings)) for line, c in zip(lines, clips)]
    placed = timeline.build(lines, inputs, sample_rate=settings.sample_rate, gap=settings.gap)
    mixed = mix_timeline(placed, list(clips), settings)
    assert len(set(round(g, 1) for g in mixed.line_gains.values())) > 1           # the lines were levelled
    stems = dict(mix_stems(placed, list(clips), settings, gain_db=mixed.gain_db, line_gains=mixed.line_gains))
    np.testing.assert_allclose(sum(stems.values()), mixed.samples, atol=1e-5)
