"""Run settings belong to one render: backends see each render's own settings, never another's."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from click.testing import CliRunner

from conftest import registered, tone_clip
from dialog_tts import backends
from dialog_tts.api import Renderer, RenderOptions, synthesize_dialog
from dialog_tts.backends.base import Backend, Setting, VoiceInfo, int_in
from dialog_tts.cli import main
from dialog_tts.errors import InputError
from dialog_tts.script.voice import Voice


class RecordingBackend(Backend):
    """A fake with real per-render views: it records the settings each synthesis call saw."""

    name = "rec"
    settings = {"label": Setting("label", str, "a tag recorded by every call"),
                "level": Setting("level", int_in(1, 9), "a number recorded by every call")}
    label = "default"
    level = 5

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int, int]] = []    # (text, label, level, workers): shared by views
        self.barrier: threading.Barrier | None = None

    def resolve(self, voice: Voice) -> Voice:
        return replace(voice, name=voice.name or "v")

    def list_voices(self) -> list[VoiceInfo]:
        return [VoiceInfo("v")]

    def palette(self) -> list[str]:
        return ["v"]

    def synthesize(self, text, voice):
        if self.barrier is not None:
            self.barrier.wait(timeout=30)       # both renders are in flight at this moment
        self.seen.append((text, self.label, self.level, self.workers))
        return tone_clip(300, 0.1)


@pytest.fixture
def rec():
    inst = RecordingBackend()
    yield from registered("rec", inst)


def test_a_render_with_settings_leaves_the_next_render_its_defaults(rec, write_script):
    # three lines: at least as many as either render's workers, which each view is bound for (a run
    # with fewer lines binds for the calls it makes: test_engine.py)
    script = write_script("A: one\nA: two\nA: three\n")
    synthesize_dialog(script, None, backend="rec", cache=False, workers=2,
                      backend_options={"rec": {"label": "first", "level": "7"}})
    synthesize_dialog(script, None, backend="rec", cache=False, workers=3)
    first, second = rec.seen[:3], rec.seen[3:]
    assert {s[1:] for s in first} == {("first", 7, 2)}
    assert {s[1:] for s in second} == {("default", 5, 3)}
    assert (rec.label, rec.level) == ("default", 5)          # the shared instance was never changed


def test_two_renderers_in_two_threads_keep_their_own_settings(rec, write_script):
    rec.barrier = threading.Barrier(2)
    script = write_script("A: hello\n")
    results: dict[str, list] = {}

    def render(label: str) -> None:
        with Renderer(RenderOptions(backend="rec", cache=False, backend_options=[f"rec.label={label}"])) as r:
            r.render(script, None)
        results[label] = [s for s in rec.seen if s[1] == label]

    threads = [threading.Thread(target=render, args=(label,)) for label in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(s[1] for s in rec.seen) == ["left", "right"]   # each render saw only its own label
    assert len(results["left"]) == len(results["right"]) == 1


def test_the_reported_leak_is_gone_for_edge_and_qwen():
    """plan/render with timeout=3 and qwen_batch_size=2, then with defaults: the defaults hold."""
    with Renderer(RenderOptions(timeout=3, qwen_batch_size=2, qwen_models_in_memory=1, cache=False)) as r:
        assert r.engine.backend("edge").timeout == 3.0
        assert r.engine.backend("qwen").batch_size == 2 and r.engine.backend("qwen").models_in_memory == 1
    with Renderer(RenderOptions(cache=False)) as r:
        assert r.engine.backend("edge").timeout is None
        assert r.engine.backend("qwen").batch_size == 8 and r.engine.backend("qwen").models_in_memory == 2
    assert backends.get_backend("edge").timeout is None and backends.get_backend("qwen").batch_size == 8


def test_aliases_and_the_generic_option_reach_the_same_setting():
    a = RenderOptions(qwen_batch_size=4).backend_settings()
    b = RenderOptions(backend_options=["qwen.batch_size=4"]).backend_settings()
    c = RenderOptions(backend_options={"qwen": {"batch_size": 4}}).backend_settings()
    assert a["qwen"]["batch_size"] == 4 and b["qwen"]["batch_size"] == "4" and c["qwen"]["batch_size"] == 4
    # the generic option wins over the alias when both are given
    assert RenderOptions(backend_options=["edge.timeout=9"], timeout=3).backend_settings()["edge"]["timeout"] == "9"


@pytest.mark.parametrize(("option", "message"), [
    ("qwen.bogus=1", "backend option qwen.bogus: unknown (known: batch_size, models_in_memory)"),
    ("qwen.batch_size=0", "backend option qwen.batch_size: '0' is not a whole number from 1 to 256"),
    ("edge.timeout=nan", "backend option edge.timeout: 'nan' is out of range"),
    ("nodot=1", "write NAME.KEY=VALUE"),
    ("nosuch.key=1", "unknown backend 'nosuch'"),
])
def test_bad_backend_options_are_usage_errors_before_any_work(option, message, write_script):
    result = CliRunner().invoke(main, ["-s", str(write_script("A: hi\n")), "--backend-option", option,
                                       "--dry-run"])
    assert result.exit_code == 2 and message in result.output


def test_settings_are_checked_by_the_api_too():
    with pytest.raises(InputError, match="piper.threads"):
        RenderOptions(backend_options={"piper": {"threads": "many"}}).backend_settings()


def test_backends_command_lists_each_backends_settings():
    result = CliRunner().invoke(main, ["backends"])
    assert result.exit_code == 0, result.output
    assert "qwen.batch_size" in result.output and "edge.timeout" in result.output
    assert "piper.threads" in result.output
