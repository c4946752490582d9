"""batch, the Python API and --dry-run."""

from __future__ import annotations

import pytest
import soundfile as sf
from click.testing import CliRunner

from conftest import ToneBackend
from dialog_tts import backends, synthesize_dialog
from dialog_tts.api import plan_dialog, synthesize_batch
from dialog_tts.cli import main


@pytest.fixture
def counted_tone():
    """The tone backend, counting how many times the registry built it."""
    made: list[ToneBackend] = []

    def factory():
        made.append(ToneBackend())
        return made[-1]
    backends.register("tone", factory)
    yield made
    backends.unregister("tone")


def test_batch_renders_a_folder_and_files_with_shared_cache(tmp_path, counted_tone):
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "ep1.txt").write_text("A: Welcome back.\nB: Thanks.\n", encoding="utf-8")
    (folder / "ep2.txt").write_text("A: Welcome back.\nB: Glad to be here.\n", encoding="utf-8")
    (folder / "notes.md").write_text("not a script", encoding="utf-8")
    extra = tmp_path / "bonus.txt"
    extra.write_text("C: One more thing.\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["batch", str(folder), str(extra), "--out-dir", str(tmp_path / "out"),
                                       "--format", "flac", "--backend", "tone"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bonus.flac", "ep1.flac", "ep2.flac"]
    assert len(counted_tone) == 1                              # the backend was loaded once
    texts = [t for t, _ in counted_tone[0].calls]
    assert texts.count("Welcome back.") == 1                   # shared cache across scripts
    assert "Rendered 3 scripts" in result.output


def test_batch_keeps_going_after_a_failed_script(tmp_path, counted_tone):
    good = tmp_path / "good.txt"
    good.write_text("A: Fine.\n", encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_text("no speaker here\n", encoding="utf-8")
    late = tmp_path / "late.txt"
    late.write_text("A: Still rendered.\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["batch", str(good), str(bad), str(late), "--out-dir", str(tmp_path / "o"),
                                       "--backend", "tone"])
    assert result.exit_code == 1
    assert "1 of 3 scripts failed" in result.output
    assert f"  {bad}:1: text before any turn" in result.output
    assert f"{bad}: {bad}" not in result.output                # the path once, not doubled
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["good.wav", "late.wav"]


def test_batch_rejects_clashing_output_names_and_empty_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "ep.txt").write_text("A: x\n", encoding="utf-8")
    (tmp_path / "b" / "ep.txt").write_text("A: y\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    runner = CliRunner()
    result = runner.invoke(main, ["batch", str(tmp_path / "a"), str(tmp_path / "b"), "--out-dir", str(tmp_path / "o")])
    assert result.exit_code == 2 and "same output name (ep)" in result.output
    assert str(tmp_path / "a" / "ep.txt") in result.output and str(tmp_path / "b" / "ep.txt") in result.output
    result = runner.invoke(main, ["batch", str(tmp_path / "empty"), "--out-dir", str(tmp_path / "o")])
    assert result.exit_code == 2 and "folder has no .txt scripts" in result.output


def test_batch_of_a_missing_folder_is_one_usage_error(tmp_path, counted_tone):
    (tmp_path / "real.txt").write_text("A: x\n", encoding="utf-8")
    missing = tmp_path / "scripts"
    result = CliRunner().invoke(main, ["batch", str(tmp_path / "real.txt"), str(missing),
                                       "--out-dir", str(tmp_path / "o"), "--backend", "tone"])
    assert result.exit_code == 2
    assert result.output == f"Error: {missing}: no such script or folder\n"   # one line, the path once
    assert counted_tone == [] or counted_tone[0].calls == []                   # nothing was rendered


def test_python_api_returns_records_and_reports_progress(write_script, tone_backend, tmp_path):
    script = write_script("A: Hello there.\n[pause 1s]\nB: Hi!\nA: Hello there.\n")
    seen = []
    result = synthesize_dialog(script, tmp_path / "o.wav", backend="tone", voices={"B": {"voice": "high", "pan": 0.5}},
                               progress_callback=lambda done, total, msg: seen.append((done, total, str(msg))))
    assert result.path == tmp_path / "o.wav" and result.path.exists()
    assert result.duration == pytest.approx(sf.info(result.path).duration, abs=1e-3)
    assert [(r.line, r.speaker, r.voice, r.source) for r in result.lines] == [
        (1, "A", "low", "synthesized"), (3, "B", "high", "synthesized"), (4, "A", "low", "repeat")]
    assert result.lines[1].start - result.lines[0].end == pytest.approx(1.25, abs=1e-3)
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen) and seen[-1][:2] == (3, 3)
    assert result.voices == {"A": "tone:low,pan=+0.00", "B": "tone:high,pan=+0.50"}


def test_python_api_without_output_writes_nothing(write_script, tone_backend, tmp_path):
    result = synthesize_dialog(write_script("A: Hello.\n"), None, backend="tone")
    assert result.path is None and result.duration > 0
    assert [p.name for p in tmp_path.iterdir()] == ["script.txt"]


def test_python_api_rejects_unknown_options(write_script):
    with pytest.raises(TypeError, match="unknown option 'loudness'"):
        synthesize_dialog(write_script("A: Hello.\n"), None, loudness=-16)


def test_batch_api(tmp_path, tone_backend):
    (tmp_path / "one.txt").write_text("A: One.\n", encoding="utf-8")
    (tmp_path / "two.txt").write_text("A: Two.\n", encoding="utf-8")
    batch = synthesize_batch([tmp_path / "one.txt", tmp_path / "two.txt"], tmp_path / "out", fmt="ogg",
                             backend="tone")
    assert not batch.failures and set(batch.results) == {str(tmp_path / "one.txt"), str(tmp_path / "two.txt")}
    assert sf.info(tmp_path / "out" / "two.ogg").format == "OGG"


def test_dry_run_synthesizes_nothing_and_counts_the_cache(write_script, tone_backend, tmp_path):
    script = write_script("A: Hello there.\nB: Hi!\nA: Hello there.\nA: Something new.\n")
    runner = CliRunner()
    result = runner.invoke(main, ["-s", str(script), "--backend", "tone", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert tone_backend.calls == []
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["SPEAKER", "VOICE", "LINES", "CACHED", "TO", "SYNTHESIZE", "WHY"]
    assert rows[1][:5] == ["A", "tone:low,pan=-0.30", "3", "0", "2"]   # a repeated line is synthesized once
    assert rows[2][:5] == ["B", "tone:mid,pan=+0.30", "1", "0", "1"]
    assert " ".join(rows[2][5:]) == "tone's palette, next distinct voice"
    assert "4 lines, 0 cached, 3 to synthesize" in result.stdout
    synthesize_dialog(script, tmp_path / "o.wav", backend="tone")
    plan = plan_dialog(script, backend="tone")
    assert [(p.speaker, p.lines, p.cached, p.to_synthesize) for p in plan] == [("A", 3, 3, 0), ("B", 1, 1, 0)]
    assert len(tone_backend.calls) == 3
