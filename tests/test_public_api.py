"""The public API (issue 27, item 6) and the public methods that replaced reaches into private state
(item 4): what ``dialog_tts`` exports, the stream's type, and a Renderer's steps used from outside."""

from __future__ import annotations

import inspect
import json
import typing

import numpy as np
import pytest

import dialog_tts
from dialog_tts import api, backends, errors
from dialog_tts.api import AudioStream, Renderer, RenderOptions
from dialog_tts.synth.engine import Engine
from dialog_tts.synth.executors import ThreadExecutor

ERRORS = sorted((cls for cls in vars(errors).values()
                 if isinstance(cls, type) and issubclass(cls, errors.DialogTTSError)), key=lambda c: c.__name__)


def test_the_package_exports_the_render_api_and_every_error():
    assert {"Renderer", "RenderOptions", "synthesize_dialog", "batch", "Voice"} <= set(dialog_tts.__all__)
    assert {"LoudnessError", "QualityFailed"} <= {cls.__name__ for cls in ERRORS}
    for cls in ERRORS:
        assert cls.__name__ in dialog_tts.__all__, cls
        assert getattr(dialog_tts, cls.__name__) is cls


def test_every_exported_name_resolves_to_the_api_it_names():
    namespace: dict[str, object] = {}
    exec("from dialog_tts import *", namespace)
    assert set(dialog_tts.__all__) <= set(namespace)
    assert len(set(dialog_tts.__all__)) == len(dialog_tts.__all__)
    assert dialog_tts.Renderer is Renderer and dialog_tts.RenderOptions is RenderOptions
    assert dialog_tts.synthesize_dialog is api.synthesize_dialog
    assert dialog_tts.batch is api.synthesize_batch is dialog_tts.synthesize_batch
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = dialog_tts.nothing_here


def test_stream_is_typed_as_an_audio_stream():
    hints = typing.get_type_hints(Renderer.stream)
    assert hints["return"] is AudioStream
    assert inspect.signature(Renderer.stream).return_annotation not in ("Any", typing.Any)


def test_a_stream_is_an_audio_stream_of_float32_blocks(tone_backend, write_script):
    script = write_script("A: Hello there.\nB: Hi.\nA: Good to see you.\n")
    with Renderer(RenderOptions(voices={"A": "low,backend=tone", "B": "high,backend=tone"}, stereo=False,
                                cache=False)) as renderer:
        stream = renderer.stream(script)
        assert isinstance(stream, AudioStream) and stream.result is None
        blocks = list(stream)
    assert blocks and all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert stream.channels == 1 and stream.sample_rate == RenderOptions().sample_rate
    assert stream.result is not None and len(stream.result.lines) == 3
    frames = sum(b.shape[0] for b in blocks)
    assert abs(frames / stream.sample_rate - stream.result.duration) < 1e-3


def test_batch_renders_each_script(tone_backend, write_script, tmp_path):
    scripts = [write_script("A: One.\n", "one.txt"), write_script("A: Two.\nB: Three.\n", "two.txt")]
    result = dialog_tts.batch(scripts, tmp_path / "out", backend="tone", cache=False)
    assert not result.failures and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.wav", "two.wav"]
    assert len(tone_backend.calls) == 3


@pytest.mark.parametrize(("call", "named"), [
    (lambda s, t: dialog_tts.batch([s], t / "out", backend="tone", lufs=float("nan")), "lufs"),
    (lambda s, t: dialog_tts.batch([s], t / "out", fmt="aiff", backend="tone"), "fmt"),
    (lambda s, t: Renderer(RenderOptions(backend="tone")).stream(5), "script"),
    (lambda s, t: Renderer(RenderOptions(backend="tone")).prepare(""), "script"),
    (lambda s, t: Renderer(RenderOptions(backend="tone")).plan(b"x.txt"), "script"),
])
def test_the_newly_public_entry_points_check_their_arguments(call, named, write_script, tone_backend, tmp_path):
    with pytest.raises(errors.InputError) as caught:
        call(write_script("A: Hello.\n"), tmp_path)
    assert caught.value.exit_code == 2 and named in str(caught.value), str(caught.value)
    assert tone_backend.calls == [] and not (tmp_path / "out").exists()


def test_prepare_parses_and_casts_without_synthesizing(tone_backend, write_script):
    script = write_script("A: Hello there.\nB: Hi.\n")
    with Renderer(RenderOptions(voices={"A": "low,backend=tone", "B": "high,backend=tone"}, cache=False)) as r:
        parsed, cast, jobs = r.prepare(script)
    assert [line.text for line in parsed.lines] == ["Hello there.", "Hi."]
    assert [job.voice.name for job in jobs] == ["low", "high"] and cast["a"].name == "low"
    assert tone_backend.calls == []


def test_the_cache_is_the_renderers_until_it_closes(tmp_path):
    assert Renderer(RenderOptions(backend="tone", cache=False)).cache is None
    renderer = Renderer(RenderOptions(backend="tone", cache_dir=tmp_path / "c"))
    cache = renderer.cache
    assert cache is not None and cache.directory == tmp_path / "c"
    renderer.close()
    assert renderer.cache is None


def test_write_report_writes_where_the_options_ask(tone_backend, write_script, tmp_path):
    script = write_script("A: Hello.\n")
    report = tmp_path / "r.json"
    with Renderer(RenderOptions(backend="tone", cache=False, report=report)) as renderer:
        dialog = renderer.render(script, None)
        report.unlink()
        renderer.write_report(dialog)
    assert json.loads(report.read_text())["totals"]["lines"] == 1
    with Renderer(RenderOptions(backend="tone", cache=False)) as renderer:
        renderer.write_report(dialog)             # no report asked for: nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "script.txt"]


class CountingExecutor(ThreadExecutor):
    """The thread executor, counting how often the engine asks for its capacity."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def capacity(self, workers: int) -> int:
        self.asked += 1
        return workers + 1


def test_the_engines_slots_are_the_executors_capacity_settled_once():
    executor = CountingExecutor()
    engine = Engine(3, executor=executor)
    assert executor.asked == 0                    # not before it is needed
    assert engine.slots == 4 and engine.slots == 4
    assert executor.asked == 1


def test_new_backend_is_a_fresh_instance_of_the_registered_kind():
    fresh = backends.new_backend("espeak")
    assert type(fresh) is type(backends.get_backend("espeak")) and fresh is not backends.get_backend("espeak")
    fresh.close()
    with pytest.raises(errors.UnknownBackendError):
        backends.new_backend("surely-not-a-backend")
