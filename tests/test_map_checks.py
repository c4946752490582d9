"""Issue 11 item 22: speaker-map and voice checks that used to pass silently or point at the wrong place."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dialog_tts.cli import main


def run(*args: str):
    return CliRunner().invoke(main, [*args, "--dry-run"])


@pytest.fixture
def script(write_script):
    return str(write_script("X: hello\n"))


def test_a_bad_value_points_at_its_own_line(script, tmp_path):
    smap = tmp_path / "m.yaml"
    smap.write_text("X:\n  voice: joe\n  rate: 2x\n  pan: 7\n", encoding="utf-8")
    result = run("-s", script, "--speaker-map", str(smap))
    assert result.exit_code == 2
    assert "m.yaml:4: speaker 'X': pan '7' is out of range" in result.output   # the pan line, not the name's


def test_an_entry_for_a_speaker_not_in_the_script_is_checked(script, tmp_path):
    smap = tmp_path / "m.yaml"
    smap.write_text("X: {voice: joe}\nY: {voice: joe,\n  pan: 9}\n", encoding="utf-8")
    result = run("-s", script, "--speaker-map", str(smap))
    assert result.exit_code == 2 and "m.yaml:3: speaker 'Y': pan '9' is out of range" in result.output


def test_a_speaker_number_on_a_single_speaker_piper_voice_is_refused(script):
    result = run("-s", script, "--voices", "X=joe,speaker=2")
    assert result.exit_code == 2 and "joe is a single-speaker voice" in result.output
    assert run("-s", script, "--voices", "X=joe,speaker=0").exit_code == 0


def test_a_voice_of_another_backend_is_named_as_a_candidate(script):
    result = run("-s", script, "--voices", "X=Siqiniq")
    assert result.exit_code == 2
    assert "other backends have edge:iu-Cans-CA-SiqiniqNeural, edge:iu-Latn-CA-SiqiniqNeural" in result.output


def test_the_known_keys_include_voice(script):
    result = run("-s", script, "--voices", "X=joe,bogus=1")
    assert result.exit_code == 2 and "voice" in result.output.split("known:")[1]
