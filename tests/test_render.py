"""End to end through the real offline backends (piper and espeak): no fakes."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dialog_tts import backends, synthesize_dialog
from dialog_tts.backends.base import usable_cores
from dialog_tts.cli import main
from dialog_tts.script.voice import Voice
from dialog_tts.synth.engine import Engine
from dialog_tts.synth.jobs import Job
from measure import median_f0, rms_db

pytestmark = pytest.mark.slow

SCENE = """\
# three speakers, two backends
Anna: Good evening, and welcome to the show.
Ben: Thank you. [smiles] It is a pleasure to be here.
[pause 500ms]
Carla: Shall we begin with the news?
Anna: Yes, let us begin.
"""


def test_render_multispeaker_real_backends(write_script, tmp_path):
    script = write_script(SCENE)
    out = tmp_path / "scene.wav"
    result = synthesize_dialog(script, out, voices={"Anna": "joe,pan=-0.5", "Ben": "en-us+f3,backend=espeak,pan=0.5"},
                               gap_ms=300)
    data, rate = sf.read(out, dtype="float32")
    assert rate == 24000 and data.ndim == 2 and data.shape[1] == 2
    assert abs(data.shape[0] / rate - result.duration) < 1e-3

    spans = [(r.start, r.end) for r in result.lines]
    assert [r.speaker for r in result.lines] == ["Anna", "Ben", "Carla", "Anna"]
    assert [r.backend for r in result.lines] == ["piper", "espeak", "kokoro", "piper"]   # Carla: the default cast
    # every line is audible inside its span, and the gaps between spans are silent
    for start, end in spans:
        seg = data[round(start * rate):round(end * rate)]
        assert end - start > 0.5 and rms_db(seg) > -40
    for (_, end), (start, _) in itertools.pairwise(spans):
        gap = data[round(end * rate) + 2:round(start * rate) - 2]
        assert np.abs(gap).max() < 1e-4
    # duration = lines + gaps (0.3 s each) + the 0.5 s pause, and nothing after the last line
    speech = sum(e - s for s, e in spans)
    assert result.duration == pytest.approx(speech + 3 * 0.3 + 0.5, abs=2e-3)
    assert spans[2][0] - spans[1][1] == pytest.approx(0.8, abs=1e-3)
    # pans: Anna left, Ben right, Carla (automatic) in between
    def side(i):
        s, e = spans[i]
        seg = data[round(s * rate):round(e * rate)]
        return rms_db(seg[:, 0]) - rms_db(seg[:, 1])
    assert side(0) > 3 and side(1) < -3 and abs(side(2)) < 1


def test_cli_renders_sample_offline(tmp_path, monkeypatch):
    """The README's first command: the shipped sample, no options, no network."""
    monkeypatch.chdir(tmp_path)
    from pathlib import Path
    sample = Path(__file__).resolve().parents[1] / "samples" / "dialog.txt"
    result = CliRunner().invoke(main, ["--script", str(sample), "--out", "x.wav"])
    assert result.exit_code == 0, result.output
    data, rate = sf.read(tmp_path / "x.wav")
    assert rate == 24000 and data.shape[1] == 2 and data.shape[0] / rate > 10
    assert "Wrote x.wav" in result.output


def test_korean_with_espeak(write_script, tmp_path):
    script = write_script("철수: 안녕하세요. 만나서 반갑습니다.\n영희: 네, 저도 반가워요.\n")
    out = tmp_path / "ko.flac"
    result = synthesize_dialog(script, out, voices={"철수": "ko,backend=espeak", "영희": "ko+f3,backend=espeak"},
                               lufs=-16)
    data, rate = sf.read(out, dtype="float32")
    assert data.shape[0] / rate == pytest.approx(result.duration, abs=1e-3)
    assert [r.voice for r in result.lines] == ["ko", "ko+f3"]
    for r in result.lines:
        assert r.end - r.start > 0.8  # Korean was spoken, not skipped as unknown characters
        assert rms_db(data[round(r.start * rate):round(r.end * rate)]) > -35
    assert result.loudness == pytest.approx(-16, abs=0.1)


def test_default_cast_gives_four_distinct_pitches(write_script):
    """The offline default cast: four voices whose median pitch differs pairwise by >= 8 %."""
    names = ["Ada", "Bo", "Cy", "Di"]
    text = "The quick brown fox jumps over the lazy dog, and we were away a year ago."
    script = write_script("".join(f"{n}: {text}\n" for n in names))
    from dialog_tts.script import casting
    from dialog_tts.script import parse as script_mod
    parsed = script_mod.load(script)
    cast = casting.cast(parsed)
    distinct = {(v.backend, v.name, v.pitch) for v in cast.values()}
    assert len(distinct) == len(names)
    jobs = [Job(line.text, cast[line.key]) for line in parsed.lines]
    clips = Engine(workers=2).run(jobs).clips
    from dialog_tts.io.audio import resample
    pitches = [median_f0(resample(c.samples, c.sample_rate, 16000), 16000) for c in clips]
    for (i, a), (j, b) in itertools.combinations(enumerate(pitches), 2):
        assert max(a, b) / min(a, b) >= 1.08, (names[i], a, names[j], b)


def test_piper_rate_and_pitch_change_the_audio():
    piper = backends.get_backend("piper")
    text = "This sentence is long enough to measure its speaking rate."
    plain = piper.synthesize(text, piper.resolve(Voice("joe")))
    from dialog_tts.script.voice import parse_rate
    fast = piper.synthesize(text, piper.resolve(Voice("joe", rate=parse_rate("1.5x"))))
    up = piper.synthesize(text, piper.resolve(Voice("joe", pitch=4.0)))
    from dialog_tts.finish.clips import trim

    def speech(clip):
        return len(trim(clip.samples)) / clip.sample_rate
    assert speech(fast) == pytest.approx(speech(plain) / 1.5, rel=0.1)
    assert speech(up) == pytest.approx(speech(plain), rel=0.1)
    from dialog_tts.io.audio import resample
    f_plain = median_f0(resample(plain.samples, plain.sample_rate, 16000), 16000)
    f_up = median_f0(resample(up.samples, up.sample_rate, 16000), 16000)
    assert f_up / f_plain == pytest.approx(2 ** (4 / 12), rel=0.06)


PROSE = ("It was a bright cold day in April, and the clocks were striking thirteen. Winston Smith, his chin "
         "nuzzled into his breast in an effort to escape the vile wind, slipped quickly through the glass doors.")


@pytest.mark.parametrize("backend", ["piper", "espeak"])
@pytest.mark.parametrize("wpm", [150, 240])
def test_rate_in_words_per_minute(backend, wpm):
    """rate=WPM gives about WPM words per minute of English prose (within 15 %)."""
    from dialog_tts.finish.clips import trim
    from dialog_tts.script.voice import parse_rate
    inst = backends.get_backend(backend)
    clip = inst.synthesize(PROSE, inst.resolve(Voice("", backend=backend, rate=parse_rate(str(wpm)))))
    seconds = len(trim(clip.samples)) / clip.sample_rate
    assert len(PROSE.split()) / seconds * 60 == pytest.approx(wpm, rel=0.15)


def test_every_listed_espeak_voice_and_palette_voice_speaks():
    """What `voices` lists and what automatic casting picks is what espeak-ng can select."""
    espeak = backends.get_backend("espeak")
    names = [v.name for v in espeak.list_voices()] + espeak.palette() + ["fr+Annie", "en-gb+m7", "zh"]
    assert len(names) > 100
    for name in names:
        clip = espeak.synthesize("one two", espeak.resolve(Voice(name, backend="espeak")))
        assert clip.duration > 0.1, name


def test_one_edited_piper_line_gets_every_core():
    """An engine of 4 workers synthesizing one piper line binds piper for that one call: cores threads."""
    engine = Engine(4)
    result = engine.run([Job("Only this line changed.", Voice("joe", "piper"))])
    assert result.outcomes[0].clip is not None
    assert engine.backend("piper").threads_per_call == usable_cores()


def test_threads_per_worker():
    shared = backends.get_backend("piper")
    assert shared.bind({}, workers=2).threads_per_call == max(1, usable_cores() // 2)
    piper = shared.bind({"threads": "1"}, workers=1)
    assert piper.threads_per_call == 1
    clip = piper.synthesize("Threads set.", piper.resolve(Voice("joe")))
    assert clip.duration > 0.3



def test_a_long_lived_process_keeps_two_piper_sessions_per_model():
    """Each thread count is its own onnxruntime session: the views a process meets (its renders' workers,
    a re-render's one line on every core) keep at most two per model, the least recently used let go."""
    from dialog_tts.backends.piper import SESSIONS_PER_MODEL, PiperBackend

    shared = PiperBackend()                 # its own sessions, not the registry's

    def speak(threads: int) -> object:
        view = shared.bind({"threads": str(threads)}, workers=1)
        assert view.synthesize("One more.", view.resolve(Voice("joe"))).duration > 0.2
        return view.session("joe")

    first = speak(1)
    assert speak(1) is first and speak(2) is not first
    assert speak(1) is first                                    # used last: 2 is now the older one
    speak(3)
    assert [k[1] for k in shared.kept_sessions()] == [1, 3] and SESSIONS_PER_MODEL == 2
    assert speak(1) is first


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_threads_follow_the_cores_the_process_may_use():
    """Pinned to one core (as a container's cpuset pins it), piper's calls get one thread, not one per core
    of the machine."""
    code = ("from dialog_tts import backends; from dialog_tts.backends.base import usable_cores; "
            "print(usable_cores(), backends.get_backend('piper').bind({}, workers=1).threads_per_call)")
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["1", "1"]
