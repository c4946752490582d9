"""benchmark_enhanced.py in an install without the bench extra (issue 26, item 20).

A section whose baseline package is missing skips that baseline's rows and ratios with a one-line note
and still reports its own rows.  The benchmark's main runs in a child process where pydub cannot be
imported (a finder at the front of ``sys.meta_path`` refuses it, as a missing package is refused),
whether or not it is installed here; the sections' slow parts (the hour's renders and its taken-in-turn
runs, the mixer's ten minutes of clips) are replaced by small stand-ins so that only the sections' own
bookkeeping is exercised.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import importlib.abc, sys

class NoPydub(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pydub" or name.startswith("pydub."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoPydub())
import numpy as np, soundfile as sf
import benchmark_enhanced as b

small = b.synthetic_dialog
b.synthetic_dialog = lambda minutes, **kw: small(0.05, **kw)    # 3 s of clips instead of 10 minutes
b.hour_script = lambda path, lines: path
b.cli = lambda *args: [sys.executable, "-c", "pass", *args]    # the hour's renders: stand-ins
b.export_clips = lambda script, cache, folder: 0

def turns(commands, n, env, before=None):
    print("COMMANDS", " ".join(sorted(commands)))
    sf.write(commands["plain"][-1], np.zeros((24000, 2), np.float32), 24000)   # what the plain run writes
    return {label: [0.5 + i] for i, label in enumerate(commands)}

b.turns = turns
sys.exit(b.main(["--quick", "--only", "hour,mix"]))
"""


def test_sections_without_pydub_skip_its_baseline_with_a_note_and_report_the_rest():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    out = done.stdout.splitlines()
    commands = next(line for line in out if line.startswith("COMMANDS")).split()[1:]
    assert "pydub" not in commands and {"plain", "lufs", "floor", "floor-tp"} <= set(commands)
    note = ("pydub is not installed here: its baseline rows and the ratios against it were skipped "
            "(in this folder: pip install '.[bench]', or pip install 'dialog-tts[bench]').")
    assert out.count(note) == 2                                   # one line in each section
    rows = [line for line in out if line.startswith("| ") and not line.startswith("| measurement")]
    assert not [r for r in rows if "pydub" in r]
    # the rest is reported: the hour's two renders and two floors, the mixer's three rows
    hour = [r for r in rows if "(60 lines):" in r]
    assert sum("dialog-tts --force" in r for r in hour) == 2
    assert sum(": floor," in r for r in hour) == 2
    assert sum(r.startswith("| 10 min: dialog-tts") for r in rows) == 2
    assert any("loudness normalization alone" in r for r in rows)


def test_performance_page_is_one_run_with_its_machine_and_date(tmp_path):
    """docs/performance.md (``--markdown``) is written from one run's results, the structure ``--json`` writes:
    a header naming the machine, the date and the command, the goals, then every section; ``--from-json``
    writes it from a saved file without measuring."""
    import json
    from dataclasses import asdict

    sys.path.insert(0, str(ROOT))
    try:
        import benchmark_enhanced as b
    finally:
        sys.path.remove(str(ROOT))
    host = b.machine()
    assert {"cpu", "cores", "usable_cores", "memory_gib", "os", "python", "date", "commit", "load_average"} <= set(host)
    assert host["cpu"] and str(host["python"]).split()[-1] == sys.version.split()[0]
    startup = b.Section("Start-up", [b.Row("python -c pass", 0.02, [0.02]),
                                     b.Row("dialog-tts --help", 0.05, [0.05], ratio=2.5, goal="<= 3x", met=True),
                                     b.Row("dialog-tts voices", 0.1, [0.1], ratio=5.0, goal="<= 4x", met=False)],
                        ["How it was measured."])
    data = {"quick": True, "seconds": 3.0, "machine": host, "command": "python benchmark_enhanced.py --only startup,edge",
            "notes": ["The machine was shared."],
            "sections": {"startup": asdict(startup), "edge": {"title": "edge", "rows": [], "notes": ["skipped: edge_tts"]}}}
    saved, page = tmp_path / "results.json", tmp_path / "docs" / "performance.md"
    saved.write_text(json.dumps(data), encoding="utf-8")
    page.parent.mkdir()
    assert b.main(["--from-json", str(saved), "--markdown", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Performance\n")
    assert f"`{data['command']}` on {host['date']}" in text
    for value in (host["cpu"], host["os"], host["python"], f"{host['memory_gib']} GiB", "The machine was shared."):
        assert str(value) in text
    assert "| Start-up: dialog-tts --help | <= 3x | met |" in text
    assert "| Start-up: dialog-tts voices | <= 4x | **not met** |" in text
    assert "| dialog-tts --help | 50 ms | 1 | 2.50× | <= 3x: met |" in text
    assert "### edge\n\nskipped: edge_tts" in text and "A quick run" in text and "--from-json" in text
    with pytest.raises(SystemExit) as stop:
        b.main(["--from-json", str(saved)])
    assert stop.value.code == 2
