"""The Ray executor (issue 16): the same render on a cluster, with the same semantics and bytes.

One cluster for the module: two nodes simulated on this machine (``ray.cluster_utils.Cluster``,
two CPUs each, the second with a custom resource), stopped at the end.  The fakes come from
tests/ray_fakes.py, registered by class so that the workers import them; they report what
happened on the workers through files (their run settings), never through shared memory.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf
from click.testing import CliRunner

from dialog_tts import backends, synthesize_dialog
from dialog_tts.api import Renderer, RenderOptions, synthesize_batch
from dialog_tts.cli import main
from dialog_tts.synth.engine import ProgressEvent
from ray_fakes import BatchDetBackend, DetBackend, read_log

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
VOICES = {"A": "low,backend=det", "B": "high,backend=det", "C": "mid,backend=batchdet"}
AB = {k: VOICES[k] for k in "AB"}


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of 2 CPUs each (the second with the resource 'node_b'), connected for the module.

    Two CPUs a node, so that the batch worker of the batching fake (an actor holding one CPU
    while it lives) leaves every node a CPU for the tasks.
    """
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    node_b = c.add_node(num_cpus=2, resources={"node_b": 1})
    c.wait_for_nodes()
    # the workers import dialog_tts and the fakes from this checkout
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    ray.init(address=c.address, log_to_driver=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield SimpleNamespace(cluster=c, address=c.address, head=c.head_node.node_id, b=node_b.node_id)
    ray.shutdown()
    c.shutdown()


@pytest.fixture
def det():
    backends.register("det", DetBackend)
    backends.register("batchdet", BatchDetBackend)
    yield
    backends.unregister("det")
    backends.unregister("batchdet")


def script_text(n: int, tag: str = "") -> str:
    return "".join(f"{'ABC'[i % 3]}: {tag}Line {i} says {'so ' * (i % 5)}this.\n" for i in range(n))


def render(script, out, executor, **options):
    options.setdefault("cache", False)
    options.setdefault("voices", VOICES)
    return synthesize_dialog(script, out, executor=executor, **options)


def assert_same_file(a: Path, b: Path) -> None:
    assert sf.info(a).frames > 0
    assert a.read_bytes() == b.read_bytes()


# ------------------------------------------------------------------ same bytes, both nodes

def test_same_bytes_as_the_thread_pool_and_lines_run_on_both_nodes(cluster, det, write_script, tmp_path):
    script = write_script(script_text(18) + "A: Line 0 says this.\n")      # a repeat too
    log = tmp_path / "calls.log"
    local = render(script, tmp_path / "thread.wav", "thread")
    remote = render(script, tmp_path / "ray.wav", "ray", backend_options=[f"det.log={log}", f"batchdet.log={log}"])
    assert_same_file(tmp_path / "thread.wav", tmp_path / "ray.wav")
    assert [r.source for r in remote.lines] == [r.source for r in local.lines] == ["synthesized"] * 18 + ["repeat"]
    calls = read_log(log)
    nodes = {node for kind, _text, node, _pid, *_ in calls if kind == "call"}
    assert nodes == {cluster.head, cluster.b}                 # the CPU backend's lines ran on both nodes
    spoken = Counter(text for kind, text, *_ in calls if kind == "call")
    assert set(spoken.values()) == {1} and len(spoken) == 12  # A and B lines, each once (the repeat too)


def test_cli_executor_ray_with_an_address(cluster, det, write_script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_script(script_text(6))
    args = ["-s", "script.txt", "--voices", *[f"{k}={v}" for k, v in VOICES.items()], "--no-cache"]
    assert CliRunner().invoke(main, [*args, "-o", "t.wav"]).exit_code == 0
    result = CliRunner().invoke(main, [*args, "-o", "r.wav", "--executor", "ray", "--ray-address", cluster.address])
    assert result.exit_code == 0, result.output
    assert_same_file(tmp_path / "t.wav", tmp_path / "r.wav")


# ------------------------------------------------------------------ the engine's semantics, on the cluster

def test_cache_stays_on_the_driver_and_hits_never_reach_the_cluster(cluster, det, write_script, tmp_path):
    script = write_script(script_text(9) + script_text(3))     # three lines twice
    log = tmp_path / "calls.log"
    options = {"cache": True, "backend_options": [f"det.log={log}", f"batchdet.log={log}", "det.threads=2"]}
    first = render(script, tmp_path / "a.wav", "ray", **options)
    assert Counter(r.source for r in first.lines) == {"synthesized": 9, "repeat": 3}
    before = read_log(log)
    calls = [c for c in before if c[0] == "call"]
    assert len(calls) == 6                                     # A and B lines once each
    assert {c[4] for c in calls} == {"2.0"}                    # each task got the 2 CPUs the call uses
    second = render(script, tmp_path / "b.wav", "ray", **options)
    assert Counter(r.source for r in second.lines) == {"cache": 9, "repeat": 3}
    assert read_log(log) == before                             # nothing reached the cluster
    assert_same_file(tmp_path / "a.wav", tmp_path / "b.wav")


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_retries_failures_keep_going_progress_and_report(cluster, det, write_script, tmp_path):
    script = write_script("A: One flaky line.\nB: A BAD line.\nA: A fine line.\nC: A flaky batched line.\n"
                          "C: Another batched one.\n")
    flags = tmp_path / "flags"
    flags.mkdir()
    events: list[ProgressEvent] = []
    threads: set[str] = set()

    def listen(event):
        threads.add(threading.current_thread().name)
        events.append(event)
    sleeps = Sleeps()
    options = RenderOptions(voices=VOICES, executor="ray", keep_going=True, report=tmp_path / "run.json",
                            backend_options=[f"det.fail_once={flags}", f"batchdet.fail_once={flags}"])
    with Renderer(options, sleep=sleeps, on_progress=listen) as renderer:
        result = renderer.render(script, tmp_path / "o.wav")
    assert [(r.source, r.attempts) for r in result.lines] == [
        ("synthesized", 2), ("failed", 1), ("synthesized", 1), ("synthesized", 2), ("synthesized", 2)]
    assert result.lines[1].error == "the fake rejects this line"
    assert len(sleeps) == 2 and all(1.0 <= s <= 1.5 for s in sleeps)   # backoff on the driver
    assert result.totals.failed == 1 and result.totals.retries == 2
    assert threads == {threading.current_thread().name}
    assert [e.done for e in events] == [1, 2, 3, 4, 5] and events[-1].stats.failed == 1
    assert (tmp_path / "o.wav").exists() and (tmp_path / "run.json").exists()


def test_backend_cap_holds_across_the_cluster(cluster, det, write_script, tmp_path):
    script = write_script("".join(f"{'AB'[i % 2]}: Capped line {i}.\n" for i in range(10)))
    log = tmp_path / "calls.log"
    opts = [f"det.log={log}", f"det.exclusive={tmp_path / 'busy'}", "det.concurrency=1"]
    render(script, tmp_path / "o.wav", "ray", backend_options=opts, workers=4, voices=AB)
    calls = read_log(log)
    assert [c for c in calls if c[0] == "overlap"] == []       # never two calls at once ...
    assert {node for kind, _t, node, *_ in calls if kind == "call"} == {cluster.head, cluster.b}  # ... on two nodes


def test_a_stream_on_the_cluster_comes_in_job_order_with_the_thread_pool_s_audio(cluster, det):
    """Engine.stream with the Ray executor: the same outcomes as a local run, in order, within the window."""
    from dialog_tts.script.voice import Voice
    from dialog_tts.synth.engine import Engine
    from dialog_tts.synth.jobs import Job
    from dialog_tts.synth.ray_executor import RayExecutor

    jobs = [Job(f"Line {i} says {'so ' * (i % 5)}this.", Voice("low", backend="batchdet" if i % 3 == 0 else "det"),
                "s.txt", i + 1, "A") for i in range(24)]
    jobs.append(jobs[4])                                        # a repeat
    local = Engine(2).run(jobs)
    executor = RayExecutor()
    try:
        got = list(Engine(2, executor=executor).stream(jobs, window=6))
    finally:
        executor.close()
    assert [i for i, _ in got] == list(range(len(jobs)))
    assert [o.source for _, o in got] == [o.source for o in local.outcomes] == ["synthesized"] * 24 + ["repeat"]
    for (_, outcome), expected in zip(got, local.outcomes):
        assert outcome.clip is not None and expected.clip is not None
        assert outcome.clip.samples.tobytes() == expected.clip.samples.tobytes()


# ------------------------------------------------------------------ faults

def test_a_killed_worker_loses_no_line(cluster, det, write_script, tmp_path):
    script = write_script(script_text(8) + "A: This line will die once.\nB: And this one not.\n")
    marker = tmp_path / "killed"
    log = tmp_path / "calls.log"
    render(script, tmp_path / "thread.wav", "thread")
    result = render(script, tmp_path / "ray.wav", "ray", backend_options=[f"det.kill={marker}", f"det.log={log}"])
    assert marker.exists()                                      # a worker process did die mid-run
    assert all(r.source == "synthesized" and r.attempts == 1 for r in result.lines)  # Ray ran it again
    assert [c[1] for c in read_log(log) if c[0] == "call"].count("This line will die once.") == 1
    assert_same_file(tmp_path / "thread.wav", tmp_path / "ray.wav")


# ------------------------------------------------------------------ batching backends: actors

def test_batches_go_to_an_actor_that_keeps_its_models_across_the_scripts(cluster, det, tmp_path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    voices = {"A": "low,backend=batchdet", "B": "high,backend=batchdet"}
    for n in range(3):
        (folder / f"ep{n}.txt").write_text("".join(f"{'AB'[i % 2]}: Episode {n} line {i}{'!' * i}\n"
                                                   for i in range(7)), encoding="utf-8")
    log = tmp_path / "calls.log"
    local = synthesize_batch([folder], tmp_path / "thread", voices=voices, cache=False)
    remote = synthesize_batch([folder], tmp_path / "ray", voices=voices, cache=False, executor="ray",
                              backend_options=[f"batchdet.log={log}"])
    assert not local.failures and not remote.failures
    for n in range(3):
        assert_same_file(tmp_path / "thread" / f"ep{n}.wav", tmp_path / "ray" / f"ep{n}.wav")
    entries = read_log(log)
    batches = [e for e in entries if e[0] == "batch"]
    assert len({e[3] for e in batches}) == 1                 # one actor (no GPU here) ran every batch
    assert sorted(e[1] for e in entries if e[0] == "load") == ["high", "low"]  # each model loaded once
    assert all(len(e[1].split("|")) <= 4 for e in batches)
    texts = [t for e in batches for t in e[1].split("|")]
    assert sorted(texts) == sorted(f"Episode {n} line {i}{'!' * i}" for n in range(3) for i in range(7))
    # scheduled together: the batches mix the episodes' lines (grouped by model, sorted by length)
    assert any(len({t.split()[1] for t in e[1].split("|")}) > 1 for e in batches)


def test_batch_writes_each_script_as_soon_as_its_lines_are_done(cluster, det, tmp_path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "a_short.txt").write_text("A: Short one.\nB: Short two.\nC: Short three.\n", encoding="utf-8")
    (folder / "b_long.txt").write_text(script_text(24, "Long "), encoding="utf-8")
    out = tmp_path / "out"
    seen: list[tuple[int, int, bool]] = []

    def listen(event: ProgressEvent) -> None:
        seen.append((event.done, event.total, (out / "a_short.wav").exists()))
    # det's lines one at a time, in job order (the short script is first in the folder): with as many at
    # once as the cluster took, a cold worker process could hold the short script's first lines to the end
    result = synthesize_batch([folder], out, voices=VOICES, executor="ray", on_progress=listen,
                              backend_options={"det": {"concurrency": 1}})
    assert sorted(p.name for p in out.iterdir()) == ["a_short.wav", "b_long.wav"] and not result.failures
    assert {total for _d, total, _e in seen} == {27}           # one schedule for both scripts
    assert any(exists for done, total, exists in seen if done < total)   # the short one was written first


# ------------------------------------------------------------------ a GPU (run where one is lent)

@pytest.mark.cuda
def test_qwen_batches_run_on_one_actor_per_gpu(cluster, tmp_path):
    """Qwen (a tiny checkpoint) on the cluster's GPUs: one actor per GPU, reused by both scripts."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or ray.cluster_resources().get("GPU", 0) < 1:
        pytest.skip("needs an NVIDIA GPU in the cluster")
    import qwen_tiny
    from dialog_tts.synth.ray_executor import RayExecutor

    model = qwen_tiny.build_tiny_checkpoint(tmp_path / "cv", "custom_voice", max_new_tokens=8)
    folder = tmp_path / "scripts"
    folder.mkdir()
    for n in range(2):
        (folder / f"ep{n}.txt").write_text("".join(f"{'AB'[i % 2]}: Episode {n}, line {i}.\n" for i in range(6)),
                                           encoding="utf-8")
    voices = {"A": f"Vivian,backend=qwen,model={model}", "B": f"Ryan,backend=qwen,model={model}"}
    local = synthesize_batch([folder], tmp_path / "thread", voices=voices, cache=False)
    remote = synthesize_batch([folder], tmp_path / "ray", voices=voices, cache=False, executor="ray")
    assert not local.failures and not remote.failures
    for n in range(2):
        a, b = (sf.read(tmp_path / d / f"ep{n}.wav")[0] for d in ("thread", "ray"))
        assert a.shape == b.shape and abs(b).max() > 0
    executor = RayExecutor()
    assert executor.actor_plan() == (int(ray.cluster_resources()["GPU"]), 1)   # one actor per GPU, 1 GPU each
    executor.close()


# ------------------------------------------------------------------ a node leaves (last: it removes node_b)

def test_a_node_that_leaves_is_reported_and_its_lines_run_elsewhere(cluster, det, write_script, tmp_path, caplog):
    """Lines stuck on node_b when it leaves run on the head node (the module's last test: node_b is gone)."""
    node_b = cluster.cluster.list_all_nodes()[1]
    assert node_b.node_id == cluster.b
    script = write_script("".join(f"{'AB'[i % 2]}: Spread line {i}.\n" for i in range(30)))  # some reach node_b
    log = tmp_path / "calls.log"
    render(script, tmp_path / "thread.wav", "thread", voices=AB)
    done = threading.Event()
    outcome: list = []

    def run():
        try:
            outcome.append(render(script, tmp_path / "ray.wav", "ray", workers=3, voices=AB,
                                  backend_options=[f"det.log={log}", f"det.hold={node_b.node_id}"]))
        except BaseException as exc:  # the assertions below show it
            outcome.append(exc)
        finally:
            done.set()
    caplog.set_level(logging.WARNING, logger="dialog_tts")
    worker = threading.Thread(target=run)
    worker.start()
    held = threading.Event()
    for _ in range(600):                                        # until a line is stuck on node_b (at most 60 s)
        if any(c[0] == "held" for c in read_log(log)) or done.is_set():
            held.set()
            break
        done.wait(0.1)
    assert held.is_set() and not done.is_set(), outcome
    cluster.cluster.remove_node(node_b)
    worker.join(120)
    assert done.is_set() and outcome, "the render did not finish"
    assert_same_file(tmp_path / "thread.wav", tmp_path / "ray.wav")
    assert any("left the cluster" in r.getMessage() and node_b.node_id[:12] in r.getMessage() for r in caplog.records)
    finished = {text: node for kind, text, node, *_ in read_log(log) if kind == "call"}
    assert len(finished) == 30 and node_b.node_id not in finished.values()
