#!/usr/bin/env python3
"""benchmark_enhanced.py: measure what dialog-tts does on this machine.

    python benchmark_enhanced.py                 # every section
    python benchmark_enhanced.py --quick         # fewer, smaller runs
    python benchmark_enhanced.py --only engine --json results.json
    python benchmark_enhanced.py --quick --markdown docs/performance.md --note "shared machine"
    python benchmark_enhanced.py --from-json results.json --markdown docs/performance.md

Each figure is the median of several runs, and each ratio compares it with a
baseline measured in the same run.  The output is markdown tables on stdout,
plus JSON with --json, plus the page docs/performance.md with --markdown: the
same results under a header naming the machine (CPU model, cores, memory, OS,
Python), the date and the command, so that every figure there comes from one
run.  --from-json writes that page from a saved --json file without measuring.
Benchmarks may sleep for real; tests never do.

This module imports only the standard library at the top, so the subprocesses
it starts (``python -c "import benchmark_enhanced; ..."``) pay nothing for it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
LATENCY = 0.2           # seconds per line of the fixed-latency fake backend
LINE_SECONDS = 2.5      # audio per line the fake returns (24 kHz mono)


@dataclass
class Row:
    name: str
    seconds: float                      # median wall time
    runs: list[float] = field(default_factory=list)
    ratio: float | None = None          # baseline / this (a speed-up), when there is a baseline
    baseline: str | None = None
    goal: str | None = None
    met: bool | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Section:
    title: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return runs


def row(name: str, runs: list[float], **kw: object) -> Row:
    import statistics

    return Row(name, statistics.median(runs), [round(r, 4) for r in runs], **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the fake backend

def register_fixed_latency(latency: float = LATENCY) -> None:
    """Register backend 'fixed': every line takes *latency* seconds and returns 2.5 s of tone.

    NumPy and the Clip type are imported when a line is synthesized, as the real backends do, so that
    a run that synthesizes nothing (an up-to-date re-run) pays for what the tool imports, not the fake."""
    from dialog_tts import backends
    from dialog_tts.backends.base import Backend, VoiceInfo

    class FixedLatency(Backend):
        name = "fixed"
        speech = False      # tones: the quality gate checks only their level and clipping

        def resolve(self, voice):  # type: ignore[no-untyped-def]
            from dataclasses import replace

            return replace(voice, name=voice.name or "a")

        def list_voices(self):  # type: ignore[no-untyped-def]
            return [VoiceInfo(v) for v in "abcdef"]

        def palette(self):  # type: ignore[no-untyped-def]
            return list("abcdef")

        def fingerprint(self, voice):  # type: ignore[no-untyped-def]
            return "fixed 1"

        def synthesize(self, text, voice):  # type: ignore[no-untyped-def]
            import math

            import numpy as np

            from dialog_tts.io.audio import Clip

            time.sleep(latency)
            rate = 24000
            t = np.arange(int(LINE_SECONDS * rate)) / rate
            freq = 120 + 40 * "abcdef".index(voice.name) + (len(text) % 7)
            envelope = 0.5 + 0.5 * np.sin(2 * math.pi * 3 * t)  # syllable-like
            return Clip((0.3 * envelope * np.sin(2 * math.pi * freq * t)).astype(np.float32), rate)

    backends.register("fixed", FixedLatency)


def write_script(path: Path, lines: int, tag: str = "") -> Path:
    speakers = ["Host", "Guest", "Caller"]
    text = "".join(f"{speakers[i % 3]}: Line {i}{tag}: a sentence of ordinary length for a dialog.\n"
                   for i in range(lines))
    path.write_text(text, encoding="utf-8")
    return path


def cli_with_fake() -> None:
    """Entry for subprocesses: the real CLI, with the fixed-latency backend registered."""
    register_fixed_latency()
    from dialog_tts.cli import main

    main(sys.argv[1:], prog_name="dialog-tts")


# ---------------------------------------------------------------- sections

def bench_engine(quick: bool) -> Section:
    """Engine scaling over workers with a fixed-latency backend, and cached re-runs."""
    import subprocess
    import tempfile

    register_fixed_latency(LATENCY / 2 if quick else LATENCY)
    from dialog_tts import synthesize_dialog

    repeat = 1 if quick else 2
    rows: list[Row] = []
    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-bench-"))
    sizes = [10] if quick else [10, 40]
    for lines in sizes:
        script = write_script(tmp / f"s{lines}.txt", lines)
        base = None
        for workers in (1, 3, 5, 8):
            runs = timed(lambda: synthesize_dialog(script, tmp / "o.wav", backend="fixed", workers=workers,
                                                   cache=False), repeat)
            r = row(f"{lines} lines, {workers} worker{'s' if workers > 1 else ''}", runs)
            base = base or r.seconds
            r.ratio, r.baseline = base / r.seconds, "1 worker"
            r.extra["ideal"] = round(lines / -(-lines // workers), 2)
            if lines == 40 and workers == 8:
                r.goal, r.met = ">= 7x one worker", r.ratio >= 7.0
            rows.append(r)
        cache_dir = tmp / f"cache{lines}"
        synthesize_dialog(script, tmp / "o.wav", backend="fixed", workers=8, cache_dir=cache_dir)
        runs = timed(lambda: synthesize_dialog(script, tmp / "o.wav", backend="fixed", workers=8,
                                               cache_dir=cache_dir), repeat)
        r = row(f"{lines} lines, cached re-run (output up to date)", runs)
        r.ratio, r.baseline = base / r.seconds, "1 worker"
        rows.append(r)

    # a fully cached re-run of 100 lines through the CLI, against a bare interpreter importing numpy + soundfile
    script = write_script(tmp / "s100.txt", 100)
    cache_dir = tmp / "cache100"
    env = user_env()
    cli = [sys.executable, "-c", "import benchmark_enhanced as b; b.cli_with_fake()",
           "-s", str(script), "--backend", "fixed", "--workers", "8", "--cache-dir", str(cache_dir),
           "-o", str(tmp / "o100.wav"), "-q"]
    subprocess.run(cli, check=True, env=env)                     # fill the cache
    bare = [sys.executable, "-c", "import numpy, soundfile"]
    subprocess.run(bare, check=True, env=env)
    subprocess.run(cli, check=True, env=env)                     # .pyc files written, as on a user's machine
    n = 3 if quick else 15
    base_runs, cached_runs, forced_runs = [], [], []
    for _ in range(n):          # interleaved, so that drift in the machine's speed hits all three alike
        base_runs += timed(lambda: subprocess.run(bare, check=True, env=env), 1)
        cached_runs += timed(lambda: subprocess.run(cli, check=True, env=env), 1)
        forced_runs += timed(lambda: subprocess.run(cli + ["--force"], check=True, env=env), 1)
    b = row("bare python + import numpy, soundfile", base_runs)
    c = row("100 lines, fully cached re-run, CLI (output up to date)", cached_runs)
    c.ratio, c.baseline = c.seconds / b.seconds, "bare python + numpy + soundfile (ratio = this / that)"
    c.goal, c.met = "<= 1.5x the bare start-up", c.ratio <= 1.5
    f = row("100 lines, fully cached, --force (decode, mix, write 250 s stereo WAV)", forced_runs)
    f.ratio, f.baseline = f.seconds / b.seconds, c.baseline
    rows += [b, c, f]
    return Section("Engine: workers, cache", rows, [
        f"Fake backend 'fixed': {LATENCY / 2 if quick else LATENCY:g} s per line, {LINE_SECONDS:g} s of audio per line, no network. "
        "Renders through synthesize_dialog (parse, cast, synthesize, mix, write WAV) with --no-cache except "
        "where cached. Ratio = 1-worker time / this time; 'ideal' is lines / ceil(lines / workers). "
        "The CLI rows are separate processes (`python -c ...`), bytecode caching on as in a user's shell, "
        "timed in turn with the bare interpreter; their ratio is this time / the bare interpreter's "
        "(lower is better)."])


def edge_latency(text: str, scale: float = 1.0) -> float:
    """The latency model of the local Edge server: about 1 s a line plus a little per word (times *scale*)."""
    return scale * (1.0 + 0.02 * len(text.split()))


def bench_edge(quick: bool) -> Section:
    """The seed's table against a local Edge-protocol server (tests/edge_server.py)."""
    import asyncio
    import tempfile

    sys.path.insert(0, str(HERE / "tests"))
    import edge_tts.communicate
    import numpy as np
    import soundfile as sf

    from dialog_tts import backends, synthesize_dialog
    from dialog_tts.io.audio import decode_mp3
    from edge_server import EdgeServer

    lines = 8 if quick else 16
    repeat = 1 if quick else 2
    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-edge-bench-"))
    script = tmp / "dialog.txt"
    script.write_text("".join(f"{'AB'[i % 2]}: This is line {i} of our podcast, a sentence of ordinary length.\n"
                              for i in range(lines)), encoding="utf-8")
    voices = {"A": "en-US-AriaNeural,pan=-0.3", "B": "en-US-GuyNeural,pan=+0.3"}
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.lower().endswith("_proxy")}
    scale = 0.25 if quick else 1.0          # --quick: the same shape at a quarter of the latency
    with EdgeServer(latency=lambda text: edge_latency(text, scale)) as server:
        os.environ["DIALOG_TTS_EDGE_URL"] = server.url
        edge_tts.communicate.WSS_URL = server.url
        backend = backends.get_backend("edge")
        backend.speech = False   # type: ignore[misc]  # the server speaks tones: the gate checks level and clipping
        default_cap = type(backend).max_concurrency

        def sequential() -> None:
            """A plain loop: one request after another, no cache, clips joined and written."""
            clips = []
            for line in script.read_text(encoding="utf-8").splitlines():
                speaker, text = line.split(": ", 1)
                voice = voices[speaker].split(",")[0]

                async def fetch() -> bytes:
                    audio = b""
                    async for chunk in edge_tts.Communicate(text, voice).stream():
                        if chunk["type"] == "audio":
                            audio += chunk["data"]
                    return audio
                clips.append(decode_mp3(asyncio.run(fetch())).samples)
                clips.append(np.zeros(int(0.25 * 24000), np.float32))
            sf.write(tmp / "seq.wav", np.concatenate(clips), 24000)

        def render(workers: int, cap: int | None = None, **options: object) -> Callable[[], object]:
            def run() -> object:
                backend.max_concurrency = cap or default_cap  # type: ignore[misc]
                return synthesize_dialog(script, tmp / "o.wav", voices=voices, backend="edge", workers=workers,
                                         **options)
            return run

        rows: list[Row] = []
        base = row("sequential (plain edge_tts loop, no cache)", timed(sequential, 1))
        rows.append(base)
        ideal = {w: lines / -(-lines // w) for w in (1, 3, 5, 8)}
        for workers, cap, label in [(1, None, "1 worker"), (3, None, "3 workers"), (5, None, "5 workers"),
                                    (8, None, "8 workers (default cap of 6 requests)"),
                                    (8, 8, "8 workers (cap raised to 8)")]:
            runs = timed(render(workers, cap, cache=False), 1 if workers == 1 else repeat)
            r = row(f"dialog-tts, {label}", runs)
            r.ratio, r.baseline = base.seconds / r.seconds, "sequential"
            effective = min(workers, cap or default_cap)
            r.extra["ideal"] = round(lines / -(-lines // effective), 2)
            if workers in (5, 8) and (workers == 5 or cap == 8):
                r.goal = f">= 0.9 of ideal {ideal[workers]:.2f}x"
                r.met = r.ratio >= 0.9 * ideal[workers]
            rows.append(r)
        cache_dir = tmp / "cache"
        render(8, 8, cache_dir=cache_dir, force=True)()
        r = row("dialog-tts, cached re-run (--force: decode, mix, write)", timed(
            render(8, 8, cache_dir=cache_dir, force=True), repeat))
        r.ratio, r.baseline = base.seconds / r.seconds, "sequential"
        rows.append(r)
        r = row("dialog-tts, 8 workers (cap 8), --lufs -16", timed(render(8, 8, cache=False, lufs=-16), repeat))
        r.ratio, r.baseline = base.seconds / r.seconds, "sequential"
        rows.append(r)
        backend.max_concurrency = default_cap  # type: ignore[misc]
        served = len(server.requests)
    os.environ.pop("DIALOG_TTS_EDGE_URL", None)
    os.environ.update(saved)
    return Section("Edge TTS against the local protocol server", rows, [
        f"{lines} lines, two voices; the local server (tests/edge_server.py, real MP3 over the real edge_tts "
        f"client) answers each request after {scale:g} x (1.0 s + 0.02 s per word). {served} requests served. "
        "Ratio = sequential time / this time; 'ideal' is lines / ceil(lines / concurrent requests)."])


PROSE = ("It was a bright cold day in April, and the clocks were striking thirteen. "
         "Winston Smith slipped quickly through the glass doors of Victory Mansions. "
         "The hallway smelt of boiled cabbage and old rag mats. "
         "At one end of it a coloured poster, too large for indoor display, had been tacked to the wall.")


def bench_piper(quick: bool) -> Section:
    """The offline default: piper's real-time factor with 1 and 2 workers on this machine's cores."""
    import tempfile

    from dialog_tts import synthesize_dialog

    lines = 4 if quick else 12
    repeat = 1 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-piper-bench-"))
    sentences = PROSE.split(". ")
    script = tmp / "prose.txt"
    script.write_text("".join(f"{'AB'[i % 2]}: {sentences[i % len(sentences)].rstrip('.')}. "
                              f"{sentences[(i + 1) % len(sentences)].rstrip('.')}.\n" for i in range(lines)),
                      encoding="utf-8")
    warm = tmp / "warm.txt"
    warm.write_text("A: Ready.\nB: Ready.\n", encoding="utf-8")
    rows: list[Row] = []
    base = None
    cores = os.cpu_count() or 1
    for workers, threads, label in [(1, 1, "1 worker, 1 thread"), (1, None, f"1 worker, {cores} threads (the default)"),
                                    (2, None, f"2 workers, {max(1, cores // 2)} thread(s) each (the default)")]:
        options = {"workers": workers, "threads": threads, "cache": False}
        synthesize_dialog(warm, None, **options)                   # load the voices with these threads
        results: list = []
        r = row(f"piper, {lines} lines, {label}",
                timed(lambda: results.append(synthesize_dialog(script, None, **options)), repeat))
        r.extra["rtf"] = round(r.seconds / results[-1].duration, 3)
        base = base or r.seconds
        r.ratio, r.baseline = base / r.seconds, "1 worker, 1 thread"
        if workers == 2:
            r.goal, r.met = ">= 1.7x one worker (1 thread each)", r.ratio >= 1.7
        rows.append(r)
    return Section("Offline piper", rows, [
        f"Two automatic piper voices, English prose, the cache off; {cores} cores. By default each worker's "
        "onnxruntime session gets cores / workers threads, so workers do not fight over cores; --threads "
        "pins it. Ratio = the 1-worker, 1-thread time / this time; RTF = wall time / audio duration."])


KOKORO_BARE = """
# The bare loop over the same lines, without dialog-tts: hibari's G2P, Kokoro's vocabulary and one voice pack,
# onnxruntime sessions of the graph dialog-tts keeps (argv: model, pack, vocab, lines file, mode).  Mode "one":
# one session with every core's thread, the lines in turn; "per-core": one session per core, one thread each,
# the lines shared out among as many Python threads.
import json, os, queue, sys, threading
import numpy as np, onnxruntime as ort
from hibari import Hibari
from hibari.g2p import G2P
model, pack, vocab_path, lines_path, mode = sys.argv[1:6]
vocab = json.load(open(vocab_path, encoding="utf-8"))["vocab"]
style = np.fromfile(pack, dtype="<f4").reshape(-1, 256)
lines = open(lines_path, encoding="utf-8").read().splitlines()
g2p, g2p_lock, cores = G2P(british=False), threading.Lock(), len(os.sched_getaffinity(0))
def session(threads):
    o = ort.SessionOptions(); o.intra_op_num_threads = threads; o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
def say(s, text):
    for sentence in Hibari.split_sentences(text):
        with g2p_lock:
            ids = [vocab[c] for c in g2p(sentence) if c in vocab][:510]
        s.run(None, {"tokens": np.array([[0, *ids, 0]], np.int64), "style": style[len(ids) - 1][None],
                     "speed": np.array([1.0], np.float32)})
if mode == "one":
    s = session(cores)
    for text in lines: say(s, text)
else:
    todo = queue.Queue()
    for text in lines: todo.put(text)
    def work():
        s = session(1)
        while True:
            try: text = todo.get_nowait()
            except queue.Empty: return
            say(s, text)
    threads = [threading.Thread(target=work) for _ in range(cores)]
    for t in threads: t.start()
    for t in threads: t.join()
"""


ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
            "fourteenth fifteenth sixteenth").split()


def kokoro_bare(lines: Path, mode: str, voice: str = "am_michael") -> list[str]:
    """The KOKORO_BARE command over *lines* (one line of text each), with the model graph dialog-tts keeps."""
    from dialog_tts.backends import kokoro
    from dialog_tts.backends.derived import optimized_onnx

    model = kokoro.model_path()
    stat = model.stat()
    optimized = optimized_onnx(model, f"{model} {stat.st_size} {stat.st_mtime_ns}") or model
    data = Path(kokoro.__file__).parents[1] / "data" / "kokoro"
    return [sys.executable, "-c", KOKORO_BARE, str(optimized), str(data / "voices" / f"{voice}.bin"),
            str(data / "vocab.json"), str(lines), mode]


def bench_kokoro(quick: bool) -> Section:
    """Kokoro (the default voices) through the CLI against the best bare onnxruntime loop, whole processes."""
    import tempfile

    env = user_env()
    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-kokoro-bench-"))
    sentences = PROSE.split(". ")
    count = 6 if quick else 16
    texts = [f"{sentences[i % len(sentences)].rstrip('.')}. {sentences[(i + 1) % len(sentences)].rstrip('.')}, "
             f"said the {ORDINALS[i]} voice." for i in range(count)]      # every line distinct: none deduplicated
    (tmp / "lines.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    script = tmp / "script.txt"
    script.write_text("".join(f"A: {t}\n" for t in texts), encoding="utf-8")
    cores = len(os.sched_getaffinity(0))
    ours = {"default": [], "one session, every thread": ["--workers", "1", "--threads", str(cores)],
            "one session per worker, 1 thread each": ["--workers", str(cores), "--threads", "1"]}
    commands = {"bare-one": kokoro_bare(tmp / "lines.txt", "one"),
                "bare-per-core": kokoro_bare(tmp / "lines.txt", "per-core"),
                **{k: cli("-s", str(script), "--voices", "A=am_michael", "--no-cache", "-q",
                          "-o", str(tmp / "out.wav"), *v) for k, v in ours.items()}}
    runs = turns(commands, 2 if quick else 3, env)
    bare = {k: row(name, runs[k]) for k, name in (
        ("bare-one", f"bare loop, one session with {cores} threads"),
        ("bare-per-core", f"bare loop, {cores} sessions of 1 thread, lines shared out"))}
    best = min(bare.values(), key=lambda r: r.seconds)
    rows = list(bare.values())
    for key in ours:
        r = row(f"dialog-tts, {count} lines, {key}" + (f" (--workers 4 capped at the {cores} cores, 1 thread per call)"
                                                        if key == "default" else ""), runs[key])
        r.ratio, r.baseline = best.seconds / r.seconds, best.name
        if key == "default":
            r.goal, r.met = ">= 0.9x the best bare loop's throughput", r.ratio >= 0.9
        rows.append(r)
    return Section("Kokoro, the default voices", rows, [
        f"{count} lines of two English sentences each, one voice (am_michael), the cache off, whole processes "
        f"taken in turn: each includes the interpreter's start, the imports and the model's load. The bare loops "
        "(`KOKORO_BARE` in benchmark_enhanced.py) do only G2P, tokens and the ONNX runs, with no mixing or "
        f"writing. {cores} cores. Ratio = the best bare loop's time / this time (higher is better)."])


def bench_qwen(quick: bool) -> Section:
    """Qwen3-TTS: serial (batch of 1) against batched generation.

    On this machine: the tiny random checkpoint of the tests, on the CPU.  With a
    CUDA GPU (or --qwen-full): a full-size random-initialized 1.7B model on it, with
    the real-time factor and the peak GPU memory.
    """
    import tempfile

    sys.path.insert(0, str(HERE / "tests"))
    import torch

    import qwen_tiny
    from dialog_tts import backends, synthesize_dialog
    from dialog_tts.backends.qwen import QwenBackend

    rows: list[Row] = []
    notes: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-qwen-bench-"))
    lines = 4 if quick else 16
    repeat = 1 if quick else 2
    script = tmp / "lines.txt"
    words = "a line of a dialog that is about as long as lines usually are"
    script.write_text("".join(f"A: Line {i}, {' '.join(words.split()[:4 + i % 9])}.\n" for i in range(lines)),
                      encoding="utf-8")

    def measure(model: str, label: str, batch_sizes: tuple[int, ...]) -> None:
        backend = QwenBackend()
        backend.speech = False   # type: ignore[misc]  # random weights make noise: the gate checks level and clipping
        backends.register("qwen", lambda: backend)
        try:
            def run(batch: int, path: Path = script) -> object:
                return synthesize_dialog(path, None, voices={"A": f"Vivian,backend=qwen,model={model}"},
                                         cache=False, qwen_batch_size=batch, workers=1)
            warm = tmp / "warm.txt"
            warm.write_text("A: Ready.\n", encoding="utf-8")
            run(1, warm)                                          # load the model once, outside the timing
            base = None
            for batch in batch_sizes:
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                results: list = []
                r = row(f"{label}, batch size {batch}", timed(lambda: results.append(run(batch)), repeat))
                audio = results[-1].duration
                r.extra["lines_per_s"] = round(lines / r.seconds, 2)
                r.extra["rtf"] = round(r.seconds / audio, 3)
                if torch.cuda.is_available():
                    r.extra["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
                base = base or r.seconds
                r.ratio, r.baseline = base / r.seconds, "batch size 1 (serial)"
                rows.append(r)
        finally:
            backends.unregister("qwen")

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tiny = qwen_tiny.build_tiny_checkpoint(tmp / "tiny", "custom_voice", max_new_tokens=24)
    measure(str(tiny), f"tiny random model, CPU, {lines} lines", (1, min(8, lines)))
    notes.append(f"{lines} lines of 5-12 words; each line is {qwen_tiny.samples_for(24) / 24000:.2f} s of audio "
                 "(the tiny model never stops early). Ratio = serial time / this time.")
    if torch.cuda.is_available() or "--qwen-full" in sys.argv:
        full = qwen_tiny.build_tiny_checkpoint(tmp / "full", "custom_voice", size="full", max_new_tokens=64)
        device = "GPU" if torch.cuda.is_available() else "CPU"
        measure(str(full), f"full-size random 1.7B, {device}, {lines} lines", (1, min(8, lines)))
    else:
        notes.append("No GPU on this machine: the full-size 1.7B rows were not measured. On a CUDA machine, "
                     "`python benchmark_enhanced.py --only qwen` adds them (batched/serial ratio, real-time "
                     "factor, peak GPU memory).")
    return Section("Qwen3-TTS: serial vs batched", rows, notes)


def synthetic_dialog(minutes: float, rate: int = 24000, seed: int = 0) -> list:
    """Speech-like clips (voiced syllables with pauses) for *minutes* of dialog, as mixer Placements."""
    import numpy as np

    from dialog_tts.finish.clips import Placement
    from dialog_tts.io.audio import Clip

    rng = np.random.default_rng(seed)
    items, total, i = [], 0.0, 0
    while total < minutes * 60:
        n = int(rate * (1.5 + 3.5 * rng.random()))
        t = np.arange(n, dtype=np.float32) / np.float32(rate)
        f0 = np.float32(100 + 60 * (i % 4))
        voice = np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(4 * np.pi * f0 * t) + 0.25 * np.sin(6 * np.pi * f0 * t)
        syllables = np.maximum(0, np.sin(2 * np.pi * np.float32(4 + rng.random()) * t)) ** 2
        x = (0.25 * voice * syllables).astype(np.float32)
        items.append(Placement(Clip(x, rate), pan=(-0.4, 0.4)[i % 2]))
        total += n / rate + 0.25
        i += 1
    return items


def pydub_assemble(items: list, path: Path, rate: int = 24000, gap_ms: int = 250) -> None:
    """The baseline: the same clips assembled with pydub (pan, gaps, stereo WAV), joined once (its fast way)."""
    import numpy as np
    from pydub import AudioSegment

    gap = AudioSegment.silent(duration=gap_ms, frame_rate=rate).set_channels(2)
    parts = []
    for item in items:
        pcm = (np.clip(item.clip.samples, -1, 1) * 32767).astype("<i2").tobytes()
        seg = AudioSegment(pcm, frame_rate=rate, sample_width=2, channels=1).set_channels(2).pan(item.pan)
        parts += [seg.raw_data, gap.raw_data]
    song = AudioSegment(b"".join(parts[:-1]), frame_rate=rate, sample_width=2, channels=2)
    song.export(str(path), format="wav")


def pydub_idiomatic(items: list, path: Path, rate: int = 24000, gap_ms: int = 250) -> None:
    """The usual pydub script: one AudioSegment grown with `+=` per clip (copies the whole mix each time)."""
    import numpy as np
    from pydub import AudioSegment

    gap = AudioSegment.silent(duration=gap_ms, frame_rate=rate).set_channels(2)
    song = AudioSegment.empty()
    for item in items:
        pcm = (np.clip(item.clip.samples, -1, 1) * 32767).astype("<i2").tobytes()
        song += AudioSegment(pcm, frame_rate=rate, sample_width=2, channels=1).set_channels(2).pan(item.pan) + gap
    song.export(str(path), format="wav")


MIX_NOTES = (  # the mixer section's notes
    "Synthetic speech-like clips (1.5-5 s each, 250 ms gaps, two speakers panned ±0.4), so no synthesis is "
    "timed; the time to make the clips is measured separately and subtracted. The pydub baseline pans, "
    "adds the gaps and writes a WAV, either the usual way (`+=` per clip, which copies the whole mix each "
    "time: quadratic, so only at 10 minutes) or joining the raw bytes once; pydub has no loudness "
    "normalization. Ratio = the joined-once pydub time / this time.",
    "The floor row times only the reading a true-peak ceiling needs, soxr's HQ resampler from 24 to 192 kHz "
    "over the whole mix (one channel: the least there is to read), in this process: the goal's 1.0 s is "
    "for the whole chain.")


def bench_mix(quick: bool) -> Section:
    """The mixer at scale: assemble, pan, gaps, loudness, true peak and write, against pydub."""
    import tempfile
    import warnings

    from dialog_tts.finish.clips import MixSettings, mix
    from dialog_tts.io.audio import write

    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-mix-bench-"))
    rows: list[Row] = []
    repeat = 1 if quick else 3
    has_pydub = installed("pydub")         # the baseline; without it, dialog-tts's rows are still measured
    for minutes in ([10] if quick else [10, 60]):
        def ours(lufs: float | None) -> None:
            result = mix(synthetic_dialog(minutes), MixSettings(lufs=lufs), consume=True)
            write(tmp / "ours.wav", result.samples, result.sample_rate)

        def build_only() -> None:
            synthetic_dialog(minutes)

        if has_pydub:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")       # pydub warns that ffmpeg is missing (WAV needs none)
                import pydub  # noqa: F401
        build = statistics_median(timed(build_only, repeat))
        naive = base = None
        if has_pydub and minutes == 10:
            naive = row(f"{minutes} min: pydub, `+=` per clip (the usual script)",
                        [t - build for t in timed(lambda: pydub_idiomatic(synthetic_dialog(minutes), tmp / "n.wav"),
                                                  repeat)])
            rows.append(naive)
        if has_pydub:
            base = row(f"{minutes} min: pydub, joined once (its fast way)",
                       [t - build for t in timed(lambda: pydub_assemble(synthetic_dialog(minutes), tmp / "p.wav"),
                                                 repeat)])
        plain = row(f"{minutes} min: dialog-tts (pan, gaps, write WAV)",
                    [t - build for t in timed(lambda: ours(None), repeat)])
        full = row(f"{minutes} min: dialog-tts + LUFS -16 + true-peak -1 dBTP + write",
                   [t - build for t in timed(lambda: ours(-16.0), repeat)])
        for r in (plain, full):
            if base is not None:
                r.ratio, r.baseline = base.seconds / r.seconds, "pydub, joined once"
            if naive is not None:
                r.extra["vs_usual"] = round(naive.seconds / r.seconds, 1)
        if minutes == 60 and base is not None:
            full.goal, full.met = "<= 1.0 s and >= 20x pydub", full.seconds <= 1.0 and full.ratio >= 20
        elif minutes == 60:
            full.goal, full.met = "<= 1.0 s (the 20x pydub half not measured)", full.seconds <= 1.0
        lufs = Row(f"{minutes} min: loudness normalization alone (the difference)", max(0.0, full.seconds - plain.seconds))
        rows += [r for r in (base, plain, full, lufs) if r is not None]
        if minutes == 60:
            rows.append(row(f"{minutes} min: floor, the true peaks alone: every frame read at 192 kHz by soxr HQ "
                            "(one channel, no mixing)", true_peak_floor(synthetic_dialog(minutes), repeat)))
    notes = list(MIX_NOTES[:1 if quick else 2]) + ([] if has_pydub else [baseline_missing("pydub", "bench")])
    return Section("Mixer at scale (synthetic clips, 24 kHz stereo)", rows, notes)   # the floor row: 60 min only


def true_peak_floor(items: list, repeat: int, rate: int = 24000) -> list[float]:
    """Seconds to read every frame's true peak at 192 kHz (soxr HQ, as the ceiling does) on a mono mix of
    *items* with 250 ms gaps: the least work of the true-peak ceiling, without mixing or gain."""
    import numpy as np
    import soxr

    gap = rate // 4
    mix = np.zeros(sum(i.clip.samples.shape[0] + gap for i in items), np.float32)
    at = 0
    for item in items:
        mix[at:at + item.clip.samples.shape[0]] = item.clip.samples
        at += item.clip.samples.shape[0] + gap

    def read() -> None:
        stream, block = soxr.ResampleStream(rate, 192000, 1, dtype="float32", quality="HQ"), 1 << 16
        for a in range(0, mix.shape[0], block):
            np.abs(stream.resample_chunk(mix[a:a + block], last=a + block >= mix.shape[0])).max(initial=0.0)
    return timed(read, repeat)


def statistics_median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def turns(commands: dict[str, list[str]], n: int, env: dict[str, str],
          before: Callable[[str, int], None] | None = None) -> dict[str, list[float]]:
    """Wall times of whole processes, taking turns (so that drift in the machine's speed hits all alike).

    Each command runs once untimed first (bytecode written, files cached, as on a user's machine).
    *before(label, round)* runs untimed before each timed run (e.g. to edit a script).
    """
    import subprocess

    def once(label: str, i: int) -> float:
        if before is not None:
            before(label, i)
        started = time.perf_counter()
        subprocess.run(commands[label], check=True, env=env, capture_output=True)
        return time.perf_counter() - started

    for label in commands:
        once(label, -1)
    runs: dict[str, list[float]] = {label: [] for label in commands}
    for i in range(n):
        for label in commands:
            runs[label].append(once(label, i))
    return runs


def cli(*args: str) -> list[str]:
    """The dialog-tts console script's code in a fresh interpreter."""
    return [sys.executable, "-c", "import sys; from dialog_tts.cli import main; main(sys.argv[1:], "
            "prog_name='dialog-tts')", *args]


def bench_startup(quick: bool) -> Section:
    """`dialog-tts --help`, `voices` and `--dry-run` against a bare interpreter."""
    import tempfile

    env = user_env()
    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-startup-bench-"))
    runs = turns({"pass": [sys.executable, "-c", "pass"], "help": cli("--help"), "voices": cli("voices"),
                  "dry": cli("-s", str(HERE / "samples" / "scene.txt"), "--dry-run", "--cache-dir", str(tmp))},
                 5 if quick else 15, env)
    b = row("python -c pass", runs["pass"])
    rows = [b]
    for key, name, limit, goal in [("help", "dialog-tts --help", 3.0, "<= 3x (issue 13: as now, about 2.75x)"),
                                   ("voices", "dialog-tts voices", 4.0, "<= 4x python -c pass"),
                                   ("dry", "dialog-tts -s samples/scene.txt --dry-run", 4.0,
                                    "<= 4x python -c pass")]:
        r = row(name, runs[key])
        r.ratio, r.baseline = r.seconds / b.seconds, "python -c pass (ratio = this / that)"
        r.goal, r.met = goal, r.ratio <= limit
        rows.append(r)
    return Section("Start-up", rows, [
        "Separate processes, taken in turn; each runs the console script's code (`dialog_tts.cli.main`) in a "
        "fresh interpreter. `voices` lists every backend's voices (piper, hibari, espeak, kokoro, edge, qwen: none of "
        "their packages is imported); the dry run parses, casts (the default cast: Kokoro's voices) "
        "and looks the lines up in an empty cache. Ratio = this time / `python -c pass` (lower is better)."])


def scene_script(path: Path, lines: int = 40) -> Path:
    """A scene for the default cast: two women and two men, cast by their titles."""
    import random

    rng = random.Random(1)
    words = ("the garden was quiet that evening and nobody spoke of the letter again until the rain began "
             "to fall on the old house").split()
    speakers = ["Lady Harriet", "Mr Ashdown", "Mrs Pike", "Sir Edmund"]
    path.write_text("".join(f"{speakers[i % 4]}: {' '.join(rng.choice(words) for _ in range(rng.randint(6, 14))).capitalize()}"
                            f", line {i}.\n" for i in range(lines)), encoding="utf-8")
    return path


def bench_edit(quick: bool) -> Section:
    """The edit loop: one line of a 40-line scene edited, the scene rendered again to a new file."""
    import tempfile

    env = user_env()
    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-edit-bench-"))
    script = scene_script(tmp / "scene.txt")
    original = script.read_text(encoding="utf-8").splitlines()
    cache = ["--cache-dir", str(tmp / "cache")]
    import subprocess

    subprocess.run(cli("-s", str(script), "-o", str(tmp / "first.wav"), "-q", *cache), check=True, env=env)
    edited = {"woman": tmp / "woman.txt", "man": tmp / "man.txt"}
    line_of = {"woman": 18, "man": 17}          # Mrs Pike, Mr Ashdown: two of the default cast's Kokoro voices

    def edit(label: str, i: int) -> None:
        if label in edited:                         # a new text each time: never in the cache
            lines = list(original)
            lines[line_of[label]] = lines[line_of[label]].replace(".", f", take {i + 2}.")
            edited[label].write_text("\n".join(lines) + "\n", encoding="utf-8")

    said = tmp / "said.txt"
    said.write_text(original[line_of["man"]].split(": ", 1)[1].replace(".", ", take 1.") + "\n", encoding="utf-8")
    runs = turns({"floor": [sys.executable, "-c", "import numpy, soundfile"],
                  "kokoro-alone": kokoro_bare(said, "one", voice="am_fenrir"),
                  **{k: cli("-s", str(v), "-o", str(tmp / f"{k}.wav"), "-q", *cache) for k, v in edited.items()}},
                 3 if quick else 7, env, before=edit)
    b = row("python -c 'import numpy, soundfile'", runs["floor"])
    rows = [b]
    for key, name in (("woman", "40-line scene, one line edited, a woman's Kokoro voice: render to a new file"),
                      ("man", "40-line scene, one line edited, a man's Kokoro voice: render to a new file"),
                      ("kokoro-alone", "floor, Kokoro alone (no dialog-tts): import, load the model, say that line")):
        r = row(name, runs[key])
        r.ratio, r.baseline = r.seconds / b.seconds, "import numpy, soundfile (ratio = this / that)"
        if key != "kokoro-alone":
            r.goal, r.met = "<= 4x the floor", r.ratio <= 4.0
        rows.append(r)
    return Section("Edit loop", rows, [
        "The default cast (Kokoro's voices, two women and two men cast by their titles); the scene was rendered "
        "once to fill the cache. Each timed run edits one line to a text never synthesized before and renders "
        "the scene to a new file in a fresh process: 39 lines come from the cache, one is synthesized, so the "
        "model is loaded. Taken in turn with the floor, a bare interpreter importing numpy and soundfile. "
        "Ratio = this time / the floor's (lower is better).",
        "The Kokoro floor is the least work of that line without dialog-tts (`KOKORO_BARE` in "
        "benchmark_enhanced.py): import onnxruntime and hibari's G2P, load the model (the optimized graph "
        "dialog-tts keeps) and say the edited line on all cores, with no mixing or writing. Where it is over "
        "4x, no implementation meets the goal with Kokoro's voices on this machine."])


def hour_script(path: Path, lines: int) -> Path:
    """*lines* espeak lines of 16-22 words (580 lines: about 60 minutes), two speakers."""
    import random

    rng = random.Random(7)
    words = ("the morning news came late to the village and everyone had an opinion about what it meant for "
             "the harvest the river the school and the old mill by the bridge where the children played").split()
    path.write_text("".join(f"{('Host', 'Guest')[i % 2]}: "
                            f"{' '.join(rng.choice(words) for _ in range(rng.randint(16, 22))).capitalize()}, "
                            f"number {i}.\n" for i in range(lines)), encoding="utf-8")
    return path


PYDUB_JOIN = """
import sys, warnings
warnings.simplefilter("ignore")          # pydub warns that ffmpeg is missing (WAV needs none)
from pathlib import Path
from pydub import AudioSegment
files = sorted(Path(sys.argv[1]).glob("*.wav"))
parts = []
for i, f in enumerate(files):
    seg = AudioSegment.from_wav(f).set_channels(2).pan((-0.4, 0.4)[i % 2])
    parts += [seg.raw_data, AudioSegment.silent(250, frame_rate=seg.frame_rate).set_channels(2).raw_data]
AudioSegment(b"".join(parts[:-1]), frame_rate=seg.frame_rate, sample_width=2, channels=2).export(sys.argv[2], format="wav")
"""


HOUR_FLOOR = """
# The least work of a cached re-render, without dialog-tts: the exported clips read, resampled to 24 kHz
# (soxr HQ), placed with 250 ms gaps in one buffer, and written as 16-bit stereo WAV; with 'tp', also every
# frame's true peak read at 192 kHz (soxr HQ, 8x, one channel), the reading a true-peak ceiling needs.
import sys
from pathlib import Path
import numpy as np, soundfile as sf, soxr
clips = [soxr.resample(sf.read(f, dtype="float32")[0], 22050, 24000, quality="HQ")
         for f in sorted(Path(sys.argv[1]).glob("*.wav"))]
n = sum(c.shape[0] for c in clips) + 6000 * (len(clips) - 1)
mix, at = np.zeros(n, np.float32), 0
for c in clips:
    mix[at:at + c.shape[0]] = c
    at += c.shape[0] + 6000
if sys.argv[3] == "tp":
    stream, block, peak = soxr.ResampleStream(24000, 192000, 1, dtype="float32", quality="HQ"), 1 << 16, 0.0
    for a in range(0, n, block):
        up = stream.resample_chunk(mix[a:a + block], last=a + block >= n)
        peak = max(peak, float(np.abs(up).max())) if up.size else peak
pcm = np.empty((n, 2), np.int16)
pcm[:, 0] = pcm[:, 1] = np.clip(mix * 32767.0, -32768, 32767)
sf.write(sys.argv[2], pcm, 24000, subtype="PCM_16")
"""


def export_clips(script: Path, cache_dir: Path, folder: Path) -> int:
    """The script's clips, as the cache holds them, written as 16-bit WAV files (for pydub and ffmpeg)."""
    import soundfile as sf

    from dialog_tts.api import Renderer, RenderOptions

    folder.mkdir(exist_ok=True)
    with Renderer(RenderOptions(backend="espeak", cache_dir=cache_dir)) as renderer:
        _parsed, _cast, jobs = renderer.prepare(script)
        clips = renderer.engine.run(jobs).clips
    for i, clip in enumerate(clips):
        assert clip is not None
        sf.write(folder / f"{i:05d}.wav", clip.samples, clip.sample_rate, subtype="PCM_16")
    (folder / "list.txt").write_text("".join(f"file '{folder / f'{i:05d}.wav'}'\n" for i in range(len(clips))))
    return len(clips)


def bench_hour(quick: bool) -> Section:
    """An hour of dialog re-rendered from the cache (--force), whole process, against pydub and ffmpeg."""
    import shutil
    import subprocess
    import tempfile

    import soundfile as sf

    env = user_env()
    lines = 60 if quick else 580
    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-hour-bench-"))
    script = hour_script(tmp / "hour.txt", lines)
    ours = cli("-s", str(script), "--backend", "espeak", "--cache-dir", str(tmp / "cache"), "--force", "-q")
    subprocess.run(ours + ["-o", str(tmp / "first.wav")], check=True, env=env)       # fill the cache
    export_clips(script, tmp / "cache", tmp / "clips")
    runs = turns(hour_commands(tmp, ours), 1 if quick else 3, env)
    label = f"{sf.info(str(tmp / 'plain.wav')).duration / 60:.0f} min ({lines} lines)"
    pydub = row(f"{label}: pydub, clips joined once (pan, gaps, WAV)", runs["pydub"]) if "pydub" in runs else None
    ff = row(f"{label}: ffmpeg concat demuxer, -c copy (no gaps, no pan)", runs["ffmpeg"]) if "ffmpeg" in runs else None
    rows = [r for r in (pydub, ff) if r] + hour_rows(label, runs, pydub, ff) + hour_floors(label, runs, pydub, ff)
    notes = [f"A cached re-render of {lines} espeak lines (two voices), whole process through the CLI "
             "(`--force`: every clip read from the cache, resampled to 24 kHz, panned, mixed and written), "
             "taken in turn with the alternatives, which join the same clips exported as 16-bit WAV files "
             "at their own rate (22.05 kHz mono). Ratio = this time / the baseline's (lower is better).",
             "The floors are the least work of such a render, in a plain NumPy script without dialog-tts "
             "(`HOUR_FLOOR` in benchmark_enhanced.py): the clips read, resampled to 24 kHz, placed and written as 16-bit "
             "stereo, then the same with every frame's true peak read at 192 kHz by soxr, as a true-peak "
             "ceiling needs (no levelling, loudness, limiter or dither in either), on one core as the mixer "
             "works. A goal under its floor cannot be met by a mixer on one core of this machine."]
    if ff is None:
        notes.append("ffmpeg is not installed here: its row was skipped (Debian: `apt-get install ffmpeg`).")
    if pydub is None:
        notes.append(baseline_missing("pydub", "bench"))
    shutil.rmtree(tmp, ignore_errors=True)
    return Section("An hour re-rendered from the cache", rows, notes)


def hour_commands(tmp: Path, ours: list[str]) -> dict[str, list[str]]:
    """The hour's commands, taken in turn: pydub and ffmpeg (each where installed), dialog-tts two ways, the floors."""
    import shutil

    commands = {"pydub": [sys.executable, "-c", PYDUB_JOIN, str(tmp / "clips"), str(tmp / "pydub.wav")]
                if installed("pydub") else None,
                "plain": ours + ["-o", str(tmp / "plain.wav")],
                "lufs": ours + ["-o", str(tmp / "lufs.wav"), "--lufs", "-16"]}
    commands = {k: v for k, v in commands.items() if v is not None}
    floor = [sys.executable, "-c", HOUR_FLOOR, str(tmp / "clips")]
    commands |= {"floor": floor + [str(tmp / "floor.wav"), "place"],
                 "floor-tp": floor + [str(tmp / "floor-tp.wav"), "tp"]}
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        commands["ffmpeg"] = [ffmpeg, "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                              str(tmp / "clips" / "list.txt"), "-c", "copy", str(tmp / "ffmpeg.wav")]
    return commands


def hour_rows(label: str, runs: dict[str, list[float]], pydub: Row | None, ff: Row | None) -> list[Row]:
    """dialog-tts's two hour rows: with --lufs against pydub's join (at most 1x), without against ffmpeg
    concat (at most 1x, issue 27; without ffmpeg installed, the plain row gets pydub's ratio and no goal); a row
    whose baseline is not installed gets no ratio."""
    rows = []
    for key, name, base, limit in (
            ("plain", "dialog-tts --force (decode, pan, gaps, write WAV)", ff or pydub, 1.0 if ff else None),
            ("lufs", "dialog-tts --force --lufs -16 (levelling, loudness, true peak)", pydub, 1.0)):
        r = row(f"{label}: {name}", runs[key])
        if base is not None:
            r.ratio = r.seconds / base.seconds
            r.baseline = f"{'pydub' if base is pydub else 'ffmpeg'} (this / that)"
            if limit is not None:
                r.goal = "<= pydub's join" if base is pydub else "<= ffmpeg concat"
                r.met = r.ratio <= limit
        rows.append(r)
    return rows


def hour_floors(label: str, runs: dict[str, list[float]], pydub: Row | None, ff: Row | None) -> list[Row]:
    """The hour's floor rows (see HOUR_FLOOR), each against the baseline of the goal it bounds (where installed)."""
    place = row(f"{label}: floor, NumPy script: read, resample to 24 kHz, place, write (no true peaks)",
                runs["floor"])
    base = ff or pydub
    if base is not None:
        place.ratio, place.baseline = place.seconds / base.seconds, f"{'ffmpeg' if ff else 'pydub'} (this / that)"
    peaks = row(f"{label}: floor, the same with every true peak read at 192 kHz (soxr HQ)", runs["floor-tp"])
    if pydub is not None:
        peaks.ratio, peaks.baseline = peaks.seconds / pydub.seconds, "pydub (this / that)"
    return [place, peaks]


MEMORY_CHILD = """
import json, sys, time
sys.path.insert(0, {here!r})
def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096
def high_water():  # VmHWM: this process's own peak (ru_maxrss would carry the parent's peak over the exec)
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024
import benchmark_enhanced as b
from dialog_tts.io.audio import write
from dialog_tts.finish.clips import MixSettings, mix
import numpy, scipy.signal, soxr, soundfile
before = rss()
started = time.perf_counter()
items = b.synthetic_dialog({minutes})
result = mix(items, MixSettings(lufs=-16.0), consume=True)
write({out!r}, result.samples, result.sample_rate)
print(json.dumps({{"before": before, "peak": high_water(),
                   "final": result.samples.nbytes, "seconds": time.perf_counter() - started}}))
"""


def bench_memory(quick: bool) -> Section:
    """Peak memory of a long render through the CLI (issue 27: at most 600 MB for any render), and of the
    mix() API, which returns the whole mix as one array (so holds at least that array)."""
    import json
    import subprocess
    import tempfile

    minutes = 10 if quick else 120
    cli_row, cli_notes = cli_render_memory(minutes / 60, f"{minutes} min render through the CLI")
    out = Path(tempfile.mkdtemp(prefix="dialog-tts-mem-bench-")) / "long.wav"
    code = MEMORY_CHILD.format(here=str(HERE), minutes=minutes, out=str(out))
    done = subprocess.run([sys.executable, "-c", code], check=True, env=user_env(), capture_output=True, text=True)
    m = json.loads(done.stdout.strip().splitlines()[-1])
    used = m["peak"] - m["before"]
    r = Row(f"{minutes} min through the mix() API (clips made, mixed, LUFS, returned as one array): peak memory",
            m["seconds"])
    r.ratio = used / m["final"]
    r.baseline = "final float32 array (ratio = peak RSS growth / array size)"
    r.extra.update({"peak_mib": round(m["peak"] / 2**20), "before_mib": round(m["before"] / 2**20),
                    "final_mib": round(m["final"] / 2**20)})
    out.unlink(missing_ok=True)
    return Section("Memory", [cli_row, r], cli_notes + [
        f"The mix() API (`dialog_tts.finish.clips.mix`) returns the whole mix as one float32 array, so it "
        f"holds at least that array; it has no goal. Peak RSS {r.extra['peak_mib']} MiB, of which "
        f"{r.extra['before_mib']} MiB before the render (the interpreter and libraries); final array "
        f"{r.extra['final_mib']} MiB (stereo float32, 24 kHz). The clips are made inside the measured span. The "
        "median column is each render's wall time."])


def cli_render_memory(hours: float, label: str) -> tuple[Row, list[str]]:
    """Peak memory (VmHWM) of one whole `dialog-tts` process rendering *hours* of two narrators (the 'book'
    backend's synthetic lines, 24 kHz stereo, --lufs -16, WAV); goal: under 600 MB with the whole mix in
    the file."""
    import json
    import shutil
    import subprocess
    import tempfile

    import soundfile as sf

    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-book-bench-"))
    script = book_script(tmp / "book.txt", hours)
    out = tmp / "book.wav"
    args = ["-s", str(script), "--voices", "A=a,backend=book,pan=-0.2", "--voices", "B=b,backend=book,pan=0.2",
            "--lufs", "-16", "--no-cache", "-q", "-o", str(out), "--report", str(tmp / "report.json")]
    code = BOOK_CHILD.format(here=str(HERE))
    done = subprocess.run([sys.executable, "-c", code, *args], env=user_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    figures = done.stderr.split("PEAK", 1)[1].split()
    peak, seconds = int(figures[0]), float(figures[1])
    report = json.loads((tmp / "report.json").read_text())
    info = sf.info(str(out))
    mix_bytes = info.frames * 2 * 4
    r = Row(f"{label} ({len(report['lines'])} lines, 24 kHz stereo, --lufs -16, WAV): "
            f"peak memory {peak / 2**20:.0f} MiB", seconds)
    r.ratio, r.baseline = peak / mix_bytes, "the mix as one float32 array (peak RSS / its size)"
    whole_file = abs(info.duration - report["duration"]) < 1.0     # the file holds all of the mix
    r.goal, r.met = "peak < 600 MB, the whole mix in the file", peak < 600e6 and whole_file
    r.extra.update({"peak_mib": round(peak / 2**20), "mix_mib": round(mix_bytes / 2**20),
                    "loudness": report.get("loudness"), "true_peak": report.get("true_peak")})
    notes = [f"{label}: the whole process (`dialog-tts`, which mixes every render in blocks) with a "
             f"registered backend whose lines are synthetic speech-like clips; VmHWM of the process. "
             f"The file ({info.format}): {info.duration / 3600:.2f} h of {report['duration'] / 3600:.2f} h mixed, "
             f"report loudness {report.get('loudness')} LUFS, "
             f"true peak {report.get('true_peak')} dBTP. The whole mix would be {mix_bytes / 2**20:.0f} MiB."]
    shutil.rmtree(tmp, ignore_errors=True)
    return r, notes


BOOK_CHILD = """
import sys, time
sys.path.insert(0, {here!r})
import benchmark_enhanced as b
b.register_book_voice()
from dialog_tts.cli import main
started = time.perf_counter()
try:
    main(sys.argv[1:], prog_name="dialog-tts", standalone_mode=False)
finally:
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            print("PEAK", int(line.split()[1]) * 1024, time.perf_counter() - started, file=sys.stderr)
"""


def register_book_voice() -> None:
    """Register backend 'book': every line is one of 24 speech-like clips (made once), as long as its text."""
    from dialog_tts import backends
    from dialog_tts.backends.base import Backend, VoiceInfo
    from dialog_tts.io.audio import Clip

    clips = [synthetic_dialog(0.1, seed=seed)[0].clip for seed in range(24)]

    class Book(Backend):
        name = "book"
        base_wpm = 170.0
        speech = False      # synthetic: the quality gate checks only level and clipping

        def resolve(self, voice):  # type: ignore[no-untyped-def]
            from dataclasses import replace

            return replace(voice, name=voice.name or "a")

        def list_voices(self):  # type: ignore[no-untyped-def]
            return [VoiceInfo(v) for v in "ab"]

        def palette(self):  # type: ignore[no-untyped-def]
            return list("ab")

        def fingerprint(self, voice):  # type: ignore[no-untyped-def]
            return "book 1"

        def synthesize(self, text: str, voice: object) -> Clip:
            clip = clips[int("".join(filter(str.isdigit, text)) or 0) % len(clips)]   # paragraph i: clip i mod 24
            return Clip(clip.samples.copy(), clip.sample_rate)

    backends.register("book", Book)


def book_script(path: Path, hours: float) -> Path:
    """*hours* of two narrators' lines for the 'book' voice (its clips last 1.5 to 5 s)."""
    from dialog_tts.finish.clips import MixSettings, placed_frames

    clips = [synthetic_dialog(0.1, seed=seed)[0].clip for seed in range(24)]
    seconds = sum(placed_frames(c, MixSettings()) for c in clips) / len(clips) / 24000 + 0.25   # trimmed
    lines = round(hours * 3600 / seconds)
    path.write_text("".join(f"{'AB'[i % 2]}: Paragraph {i} of the book, read aloud.\n" for i in range(lines)),
                    encoding="utf-8")
    return path


def bench_book(quick: bool) -> Section:
    """A book-length render in blocks: peak memory, whole process, 24 kHz stereo, --lufs -16."""
    hours = 1.0 if quick else 20.0
    r, notes = cli_render_memory(hours, f"{hours:g} h render in blocks")
    return Section("A book in constant memory", [r], notes)


def bench_stream(quick: bool) -> Section:
    """Streaming (--out -): how soon the first audio block comes, with the default offline voices."""
    import subprocess
    import tempfile

    lines = 60 if quick else 900
    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-stream-bench-"))
    script = scene_script(tmp / "book.txt", lines)
    env = user_env()
    firsts = []
    for i in range(1 if quick else 3):
        cache = tmp / f"cache{i}"            # empty: every line is synthesized
        started = time.perf_counter()
        proc = subprocess.Popen(cli("-s", str(script), "--lufs", "-16", "--cache-dir", str(cache), "-q", "-o", "-"),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert proc.stdout is not None
        got = proc.stdout.read(44 + 4 * 4800)     # the header and 0.1 s of 16-bit stereo audio
        firsts.append(time.perf_counter() - started)
        proc.kill()
        proc.wait()
        assert len(got) == 44 + 4 * 4800
    r = row(f"{lines}-line scene, default offline voices, empty cache: first audio on stdout", firsts)
    r.goal, r.met = "within 2 s of start", r.seconds <= 2.0
    return Section("First audio before the last line", [r], [
        "`dialog-tts -s scene.txt --lufs -16 -o -` (WAV to a pipe) from process start until the header and the "
        "first 0.1 s of audio are read; the process is then stopped. A file render writes nothing until all "
        "lines are synthesized."])


def _det_engine(executor: object, workers: int, latency: float = 0.0) -> Callable[[int], object]:
    """A function running *n* distinct lines of the deterministic fake (tests/ray_fakes.py) through an engine."""
    sys.path.insert(0, str(HERE / "tests"))
    from dialog_tts import backends
    from dialog_tts.script.voice import Voice
    from dialog_tts.synth.engine import Engine
    from dialog_tts.synth.jobs import Job
    from ray_fakes import DetBackend

    backends.register("det", DetBackend)
    engine = Engine(workers, executor=executor, backend_options={"det": {"latency": latency}})  # type: ignore[arg-type]

    def run(n: int) -> object:
        tag = time.perf_counter_ns()          # new texts each run: nothing repeats
        result = engine.run([Job(f"Line {i} of run {tag}.", Voice("low", "det"), "bench", i + 1, "A")
                             for i in range(n)])
        assert result.stats.synthesized == n
        return result
    return run


def bench_ray(quick: bool) -> Section:
    """The Ray executor: its overhead per line against the thread pool, and scaling over two nodes."""
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        return Section("Ray executor", [], ["Skipped: ray is not installed (pip install 'dialog-tts[ray]')."])
    from dialog_tts.synth.executors import ThreadExecutor
    from dialog_tts.synth.ray_executor import RayExecutor

    env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(HERE), str(HERE / "tests")])}}
    lines, repeat = (100, 2) if quick else (400, 3)
    rows: list[Row] = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING", runtime_env=env)
    try:
        local, remote = _det_engine(ThreadExecutor(), 2), _det_engine(RayExecutor(), 2)
        remote(20)                                                  # workers started, fake imported
        t = row(f"{lines} lines, zero latency, thread pool (2 workers)", timed(lambda: local(lines), repeat))
        r = row(f"{lines} lines, zero latency, Ray (local cluster, 2 CPUs)", timed(lambda: remote(lines), repeat))
        r.ratio, r.baseline = t.seconds / r.seconds, "thread pool"
        r.extra["overhead_ms_per_line"] = round((r.seconds - t.seconds) / lines * 1000, 2)
        rows += [t, r]
    finally:
        ray.shutdown()
    rows += _ray_scaling(Cluster, ray, env, quick)
    return Section("Ray executor", rows, [
        "Fake backend 'det' (tests/ray_fakes.py) through Engine.run, no cache, distinct lines. Zero latency: "
        "the cost of sending each line to a worker and back ('overhead' = (Ray - threads) / lines). Latency-bound: "
        "each call waits on an event (no CPU, no GIL), one CPU asked per call, nodes of 4 logical CPUs simulated "
        "on this machine (ray.cluster_utils.Cluster)."])


def _ray_scaling(cluster_cls: type, ray: object, env: dict, quick: bool) -> list[Row]:
    """One simulated node, then two: the same latency-bound lines."""
    from dialog_tts.synth.ray_executor import RayExecutor

    latency, lines, cpus = 0.5, 64, 4
    cluster = cluster_cls(initialize_head=True, head_node_args={"num_cpus": cpus, "include_dashboard": False})
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING", runtime_env=env)  # type: ignore[attr-defined]
        one_node = _det_engine(RayExecutor(), cpus, latency)
        one_node(cpus)                                               # warm: a worker per CPU
        one = row(f"{lines} lines, {latency:g} s each, 1 node x {cpus} CPUs", timed(lambda: one_node(lines), 1 if quick else 2))
        cluster.add_node(num_cpus=cpus, resources={"node_b": 1})
        cluster.wait_for_nodes()
        two_nodes = _det_engine(RayExecutor(), cpus, latency)
        two_nodes(2 * cpus)
        two = row(f"{lines} lines, {latency:g} s each, 2 nodes x {cpus} CPUs", timed(lambda: two_nodes(lines), 1 if quick else 2))
        two.ratio, two.baseline = one.seconds / two.seconds, "1 node"
        two.extra["ideal"] = 2.0
        two.goal, two.met = ">= 1.8x one node", two.ratio >= 1.8
        return [one, two]
    finally:
        ray.shutdown()  # type: ignore[attr-defined]
        cluster.shutdown()

# ---------------------------------------------------------------- the quality gate

# Varied English lines for the quality gate's calibration: short replies, questions, exclamations,
# numbers, long sentences.  Reproducible (seeded).
_SHORT = ["Oh.", "Yes!", "No.", "Hmm?", "Really?", "Wait.", "Okay.", "Thanks!", "Go on.", "Why not?",
         "I see.", "Of course.", "Right away!", "Not again...", "Well, well.", "Bravo!", "Shh!", "Fine."]
_NAMES = ["Alice", "Dr. Patel", "Mr. O'Brien", "Grandma", "the captain", "Professor Nakamura", "my sister",
         "our neighbour", "the committee", "Mrs. Okonkwo", "the old fisherman", "Lieutenant Vasquez"]
_VERBS = ["found", "lost", "painted", "repaired", "sold", "borrowed", "described", "photographed",
         "forgot", "carried", "measured", "ordered"]
_OBJECTS = ["a red umbrella", "the broken clock", "three jars of honey", "an ancient map", "the blue bicycle",
           "twelve silver spoons", "a letter from Lisbon", "the keys to the lighthouse", "a box of old records",
           "the manuscript", "a tiny wooden boat", "forty-two paper cranes"]
_PLACES = ["in the attic", "at the harbour", "behind the library", "on the night train to Vienna",
          "during the storm", "at half past seven", "near the old mill", "in 1987", "on Tuesday morning",
          "under the kitchen table", "at the end of the pier", "before breakfast"]
_OPENERS = ["Honestly,", "To be fair,", "As far as I know,", "Believe it or not,", "Frankly,", "Apparently,",
           "Look,", "Listen to me:", "Between you and me,", ""]
_QUESTIONS = ["Do you think {n} really {v} {o}?", "Why would {n} have {v} {o} {p}?",
             "Who told you that {n} {v} {o}?", "Is it true that {n} {v} {o} {p}?",
             "What happened {p}?", "How much did it cost, exactly?", "Where were you {p}?"]
_EXCLAIM = ["I can't believe {n} {v} {o}!", "That's wonderful news!", "Absolutely not, not {p}!",
           "Stop right there!", "{n} {v} {o}, and nobody noticed!"]
_NUMBERS = ["It costs $4.99, or about 3 euros.", "The meeting is at 10:30 on March 3rd.",
           "We sold 1,250 tickets in two days.", "Call me at 555-0142 after 6 p.m.",
           "The temperature dropped to minus 12 degrees.", "Chapter 7 starts on page 213.",
           "About 60% of them said yes.", "She ran the marathon in 3 hours and 41 minutes."]
_LONG = ["When {n} {v} {o} {p}, nobody in the village could have guessed what would happen next, "
        "least of all the people who had lived there for sixty years.",
        "{o2} was still there {p}, exactly where {n} had left it, covered in dust and cobwebs, "
        "and yet somehow it looked brand new.",
        "I told {n} that we should wait for the weather to clear, but, as usual, nobody listened, "
        "and so we set off {p} with nothing but {o}.",
        "If you had asked me a year ago whether {n} would ever {v2} {o}, I would have laughed; "
        "now I'm not so sure."]



def varied_lines(count: int, seed: int = 7) -> list[str]:
    """*count* varied English lines (short replies, questions, numbers, long sentences), reproducibly."""
    import random

    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        kind = rng.random()
        fill = {"n": rng.choice(_NAMES), "v": rng.choice(_VERBS), "o": rng.choice(_OBJECTS),
                "p": rng.choice(_PLACES), "v2": rng.choice(["find", "sell", "repair", "forget"])}
        fill["o2"] = fill["o"][0].upper() + fill["o"][1:]
        if kind < 0.12:
            text = rng.choice(_SHORT)
        elif kind < 0.3:
            text = rng.choice(_QUESTIONS).format(**fill)
        elif kind < 0.42:
            text = rng.choice(_EXCLAIM).format(**fill)
        elif kind < 0.52:
            text = rng.choice(_NUMBERS)
        elif kind < 0.7:
            text = rng.choice(_LONG).format(**fill)
        else:
            opener = rng.choice(_OPENERS)
            text = f"{opener} {fill['n']} {fill['v']} {fill['o']} {fill['p']}.".strip()
            if rng.random() < 0.4:
                text += f" Then {rng.choice(_NAMES)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}."
        text = text[0].upper() + text[1:]
        out.append(text)
    return out



def bench_quality(quick: bool) -> Section:
    """The quality gate: its cost against synthesis per backend, false alarms on clean takes, the recognizer's
    wall time."""
    count = 40 if quick else 300
    texts = varied_lines(count)
    rows: list[Row] = []
    notes = []
    for backend_name, voices in (("piper", ["joe", "joe-alto"] if quick else ["joe", "joe-alto", "joe-bass"]),
                                 ("hibari", ["heart", "heart-low"]),
                                 ("espeak", ["en-us", "en-us+f3", "en-gb-x-rp+m3"])):
        r, note = quality_cost(backend_name, voices, texts)
        rows.append(r)
        notes.append(note)
    notes.append(numpy_checks_cost(texts[: len(texts) // 2]))
    from importlib.util import find_spec

    if find_spec("pocketsphinx") is None or find_spec("jiwer") is None:
        notes.append("The recognizer rows are skipped: pocketsphinx or jiwer not installed (pip install '.[asr]').")
    else:
        rows += bench_asr_wall(3)
    return Section("Quality gate", rows, notes + [
        "The checks' rows: takes of varied English lines (short replies, questions, numbers, long sentences), "
        "synthesized one by one on one thread, each checked right after it was made (as the engine does); the "
        "median column is the checks' CPU time for all of them, the name says it as a share of their synthesis's "
        "CPU time (the process's, so that other processes on a busy machine count in neither). The recognizer rows: whole `dialog-tts` runs of samples/podcast.txt (--no-cache, default "
        "--workers), piper only (--backend piper) and the default cast (hibari and piper), --check basic and "
        "--check asr taken in turn; ratio = asr / basic."])


def quality_cost(backend_name: str, voices: list[str], texts: list[str]) -> tuple[Row, str]:
    """The cheap checks' time against synthesis on one backend's clean takes, and their false alarms."""
    from dialog_tts.backends import get_backend
    from dialog_tts.io.audio import pcm24
    from dialog_tts.quality.checks import check_take
    from dialog_tts.script.voice import Voice

    backend = get_backend(backend_name).bind({"threads": 1} if backend_name == "piper" else {}, workers=1)
    synth = check = 0.0
    alarms: list[str] = []
    takes = 0
    for v, name in enumerate(voices):
        voice = backend.resolve(Voice(name, backend_name))
        for text in texts if v == 0 else texts[: len(texts) // 4]:
            started = time.process_time()     # CPU time: other processes on a busy machine count in neither
            clip = pcm24(backend.synthesize(text, voice))
            middle = time.process_time()
            verdict = check_take(clip, text, wpm=backend.base_wpm, speed=voice.speed(backend.base_wpm))
            check += time.process_time() - middle
            synth += middle - started
            takes += 1
            if not verdict.passed:
                alarms.append(f"{name} {text!r}: {verdict.describe()}")
    r = Row(f"{backend_name}: checks of {takes} clean takes ({', '.join(voices)}), all: "
            f"{100 * check / synth:.2f} % of their synthesis time", check)
    r.goal, r.met = "<= 2 % of synthesis time", check / synth <= 0.02
    r.extra.update(false_alarms=len(alarms), check_share=check / synth, check_ms=1000 * check / takes,
                   synth_ms=1000 * synth / takes)
    note = (f"{backend_name}: {len(alarms)} false alarms in {takes} clean takes "
            f"({100 * len(alarms) / takes:.1f} %); checks {1000 * check / takes:.3f} ms a take, "
            f"synthesis {1000 * synth / takes:.1f} ms a take ({100 * check / synth:.2f} %)."
            + "".join(f" Alarm: {a}." for a in alarms[:5]))
    return r, note


def numpy_checks_cost(texts: list[str]) -> str:
    """espeak's checks through the compiled pass and through NumPy alone, taken in turn, each right after a
    synthesis of its own (as in quality_cost)."""
    from dialog_tts.backends import get_backend
    from dialog_tts.io.audio import pcm24
    from dialog_tts.quality import checks as quality
    from dialog_tts.script.voice import Voice

    built = quality.compiled
    if built() is None:
        return "The compiled pass (dialog_tts._takecheck) was not built here: every checks row above is NumPy's."
    backend = get_backend("espeak").bind({}, workers=1)
    voice = backend.resolve(Voice("en-us", "espeak"))
    synth = {"compiled": 0.0, "numpy": 0.0}
    check = dict(synth)
    try:
        for text in texts:
            for path in synth:
                quality.compiled = built if path == "compiled" else (lambda: None)
                started = time.process_time()
                clip = pcm24(backend.synthesize(text, voice))
                middle = time.process_time()
                quality.check_take(clip, text, wpm=backend.base_wpm, speed=voice.speed(backend.base_wpm))
                check[path] += time.process_time() - middle
                synth[path] += middle - started
    finally:
        quality.compiled = built
    share = {path: 100 * check[path] / synth[path] for path in synth}
    return (f"espeak's checks by path, taken in turn on {len(texts)} lines (en-us): the compiled pass "
            f"{1000 * check['compiled'] / len(texts):.3f} ms a take ({share['compiled']:.2f} % of synthesis), "
            f"NumPy alone {1000 * check['numpy'] / len(texts):.3f} ms ({share['numpy']:.2f} %).")


def bench_asr_wall(n: int) -> list[Row]:
    """Whole renders with the recognizer check against the cheap checks only: piper only, the default cast."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="dialog-tts-quality-bench-"))
    script = str(HERE / "samples" / "podcast.txt")
    rows: list[Row] = []
    for cast, extra in (("piper only", ["--backend", "piper"]), ("default cast", [])):
        base = ["-s", script, "-o", str(tmp / "o.wav"), "--no-cache", "-q", *extra]
        runs = turns({"basic": cli(*base), "asr": cli(*base, "--check", "asr")}, n, user_env())
        b = row(f"dialog-tts -s samples/podcast.txt, {cast}, --check basic", runs["basic"])
        a = row(f"dialog-tts -s samples/podcast.txt, {cast}, --check asr", runs["asr"])
        a.ratio, a.baseline = a.seconds / b.seconds, "--check basic (ratio = this / that)"
        rows += [b, a]
    return rows


SECTIONS: dict[str, Callable[[bool], Section]] = {
    "engine": bench_engine,
    "edge": bench_edge,
    "piper": bench_piper,
    "kokoro": bench_kokoro,
    "qwen": bench_qwen,
    "mix": bench_mix,
    "startup": bench_startup,
    "edit": bench_edit,
    "hour": bench_hour,
    "memory": bench_memory,
    "book": bench_book,
    "stream": bench_stream,
    "ray": bench_ray,
    "quality": bench_quality,
}

#: Sections that need an optional extra: the modules they import, and the extra that installs them.
NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "edge": (("edge_tts", "aiohttp"), "edge"),
    "qwen": (("torch", "transformers", "qwen_tts"), "qwen-cpu"),
}


def installed(module: str) -> bool:
    """Whether *module* can be imported here (looked up, not imported)."""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def baseline_missing(module: str, extra: str) -> str:
    """The note of a section whose baseline *module* is not installed: its rows and ratios are skipped."""
    return (f"{module} is not installed here: its baseline rows and the ratios against it were skipped "
            f"(in this folder: pip install '.[{extra}]', or pip install 'dialog-tts[{extra}]').")


def skip_note(name: str) -> str | None:
    """One line saying what to install, when section *name* needs an extra that is missing (else None)."""
    from importlib.util import find_spec

    modules, extra = NEEDS.get(name, ((), ""))
    missing = []
    for module in modules:
        try:
            if find_spec(module) is None:
                missing.append(module)
        except (ImportError, ValueError):
            missing.append(module)
    if not missing:
        return None
    return (f"skipped: {', '.join(missing)} not installed (in this folder: pip install '.[{extra}]', "
            f"or pip install 'dialog-tts[{extra}]')")


# ---------------------------------------------------------------- output

def markdown(section: Section) -> str:
    out = [f"### {section.title}", "", "| measurement | median | runs | ratio | goal |", "|---|---:|---:|---:|---|"]
    for r in section.rows:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else ""
        if "ideal" in r.extra:
            ratio += f" (ideal {r.extra['ideal']:g}×)"
        for key, label in (("lines_per_s", "lines/s"), ("rtf", "RTF"), ("peak_gpu_gib", "peak GPU GiB"),
                           ("overhead_ms_per_line", "overhead ms/line"),
                           ("vs_usual", "vs the usual pydub script:")):
            if key in r.extra:
                ratio += f"; {label} {r.extra[key]:g}" + ("×" if key == "vs_usual" else "")
        goal = "" if r.goal is None else f"{r.goal}: {'met' if r.met else 'NOT met'}"
        out.append(f"| {r.name} | {r.seconds * 1000:.0f} ms | {len(r.runs) or '-'} | {ratio} | {goal} |")
    out += [""] + [f"{n}" for n in section.notes] + [""]
    return "\n".join(out)


def machine() -> dict[str, object]:
    """This machine as docs/performance.md names it: CPU model, cores, memory (from /proc where there is
    one), OS, Python, the date, the commit and the load average when the run started."""
    import datetime
    import platform
    import subprocess

    def proc(path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in proc("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), "") or platform.processor() or platform.machine()
    mem_kib = next((int(line.split()[1]) for line in proc("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal:")), 0)
    pretty = next((line.split("=", 1)[1].strip().strip('"') for line in proc("/etc/os-release").splitlines()
                   if line.startswith("PRETTY_NAME=")), "")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    load = proc("/proc/loadavg").split()[:3]
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable,
            "memory_gib": round(mem_kib / 2**20, 1) if mem_kib else None,
            "os": " ".join(filter(None, [pretty, f"({platform.system()} {platform.release()})"])),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit, "load_average": " ".join(load) or None}


def performance_page(data: dict) -> str:
    """docs/performance.md from one run's results, *data* being what --json writes: a header naming the
    machine, the date and the command, the goals in one table, then every section as on stdout."""
    m = data.get("machine") or {}
    command = data.get("command") or "python benchmark_enhanced.py"
    out = ["# Performance", "",
           f"Written by `{command}` on {m.get('date', 'an unrecorded date')}; every figure on this page comes "
           "from that one run. Do not edit it by hand: run the benchmark again (see "
           "[Measuring it yourself](#measuring-it-yourself)) to replace it.", "",
           "| machine | |", "|---|---|",
           f"| CPU | {m.get('cpu') or 'unknown'} |",
           f"| cores | {m.get('cores')} ({m.get('usable_cores')} usable by this process) |",
           f"| memory | {m.get('memory_gib')} GiB |",
           f"| OS | {m.get('os') or 'unknown'} |",
           f"| Python | {m.get('python') or 'unknown'} |",
           f"| commit | {m.get('commit') or 'unknown'} |",
           f"| load average at the start (1, 5, 15 min) | {m.get('load_average') or 'unknown'} |",
           f"| run | {'quick' if data.get('quick') else 'full'}, {data.get('seconds', 0):.0f} s in all |", ""]
    out += [note for note in data.get("notes", [])] + ([""] if data.get("notes") else [])
    out += ["Each figure is the median of the runs counted beside it, and each ratio compares it with a baseline "
            "measured in the same run, taken in turn where they are whole processes. Absolute times depend on the "
            "machine and on what else it was doing; the ratios are what to compare between machines.", ""]
    if data.get("quick"):
        out += ["A quick run (`--quick`): fewer and smaller runs than a full one (the row names give the sizes), so "
                "the goals, which are set for a full run's sizes, are only indicative here.", ""]
    if data.get("from_json"):
        out += ["This page was written afterwards from the run's saved `--json` results (`--from-json`).", ""]
    sections = data.get("sections", {})
    goals = [(s.get("title", name), r) for name, s in sections.items() for r in s.get("rows", [])
             if r.get("goal") is not None]
    if goals:
        out += ["## Goals", "", "| section: measurement | goal | this run |", "|---|---|---|"]
        for title, r in goals:
            out.append(f"| {title}: {r['name']} | {r['goal']} | {'met' if r.get('met') else '**not met**'} |")
        out.append("")
    out += ["## Results", ""]
    for name, s in sections.items():
        if not s.get("rows"):
            out += [f"### {s.get('title', name)}", ""] + list(s.get("notes", [])) + [""]
            continue
        rows = [Row(**r) for r in s["rows"]]
        out.append(markdown(Section(s.get("title", name), rows, list(s.get("notes", [])))))
    out += ["## Measuring it yourself", "",
            "```",
            "pip install '.[bench]'                      # pydub, the mixer's and the hour's baseline",
            f"{command}",
            "python benchmark_enhanced.py --markdown docs/performance.md   # every section: the longest run",
            "python benchmark_enhanced.py --from-json results.json --markdown docs/performance.md",
            "```", "",
            "`--quick` makes fewer, smaller runs, `--only` picks sections (engine, edge, piper, kokoro, qwen, mix, "
            "startup, edit, hour, memory, book, stream, ray, quality), `--json FILE` keeps the results, "
            "`--markdown FILE` writes this page from them, `--note TEXT` adds a line under the machine table "
            "(say what else the machine was doing), and `--from-json FILE` writes the page from a saved "
            "`--json` file without measuring.", ""]
    return "\n".join(out)


def user_env() -> dict[str, str]:
    """The environment of a user's shell for subprocesses: bytecode caching on, this folder importable."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")]))
    return env


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import shlex

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--qwen-full", action="store_true",
                        help="measure the full-size 1.7B Qwen model even without a GPU (very slow on a CPU)")
    parser.add_argument("--markdown", metavar="FILE",
                        help="also write the results as a page (docs/performance.md) with the machine and the date")
    parser.add_argument("--note", action="append", default=[], metavar="TEXT",
                        help="a line for the page's header, e.g. what else the machine was doing (repeatable)")
    parser.add_argument("--from-json", metavar="FILE",
                        help="write --markdown from a saved --json file instead of measuring")
    args = parser.parse_args(argv)
    if args.from_json:
        if not args.markdown:
            parser.error("--from-json needs --markdown FILE")
        data = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        data["notes"] = data.get("notes", []) + args.note
        data["from_json"] = True
        Path(args.markdown).write_text(performance_page(data), encoding="utf-8")
        print(f"Wrote {args.markdown}")
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r} (sections: {', '.join(SECTIONS)})")
    started = time.perf_counter()
    host = machine()
    given = list(argv if argv is not None else sys.argv[1:])
    shown = [a for i, a in enumerate(given)       # the notes are on the page already, under the machine
             if not (a == "--note" or a.startswith("--note=") or (i and given[i - 1] == "--note"))]
    command = shlex.join(["python", "benchmark_enhanced.py", *shown])
    results = {}
    print(f"# dialog-tts benchmarks ({'quick' if args.quick else 'full'}; {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]})\n")
    for name in names:
        note = skip_note(name)
        if note is not None:
            print(f"### {name}\n\n{note}\n", flush=True)
            results[name] = {"title": name, "rows": [], "notes": [note]}
            continue
        section_started = time.perf_counter()
        section = SECTIONS[name](args.quick)
        section.notes.append(f"(This section took {time.perf_counter() - section_started:.1f} s.)")
        results[name] = asdict(section)
        print(markdown(section), flush=True)
    total = time.perf_counter() - started
    print(f"Total benchmark time: {total:.1f} s")
    data = {"quick": args.quick, "seconds": total, "machine": host, "command": command, "notes": args.note,
            "sections": results}
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(performance_page(data), encoding="utf-8")
        print(f"Wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
