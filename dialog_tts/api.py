"""The Python API: from a script to a finished audio file in one call.

The flow goes one way: script → cast → jobs → engine → clips → mix → write.
The command line is a thin layer over this module.

    >>> from dialog_tts import synthesize_dialog
    >>> result = synthesize_dialog("samples/dialog.txt", "dialog.wav", lufs=-16)
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Protocol, Union, runtime_checkable

from dialog_tts import backends
from dialog_tts.errors import DialogTTSError, InputError, OutputError, SynthesisError
from dialog_tts.render import validate
from dialog_tts.script import casting, speakers
from dialog_tts.script import lexicon as lexicon_mod
from dialog_tts.script import parse as script_mod
from dialog_tts.script.parse import Script
from dialog_tts.script.voice import Voice
from dialog_tts.synth import jobs as jobs_mod
from dialog_tts.synth.cachekeys import Keys

if TYPE_CHECKING:
    # A dry run (plan_dialog, --dry-run) parses, casts and looks the jobs up: it loads neither the
    # engine and its quality gate, nor the timeline, the output specs or the results' types, nor (as
    # every render until it mixes) the mixer and writers with NumPy.  They are imported where used.
    import numpy as np
    import numpy.typing as npt

    from dialog_tts.quality.checks import Thresholds
    from dialog_tts.quality.gate import Gate, GateSettings
    from dialog_tts.render import specs
    from dialog_tts.render.results import BatchResult, DialogResult, LineRecord, Totals
    from dialog_tts.synth import engine as engine_mod
    from dialog_tts.synth.cache import AudioCache

#: The result types, importable from here as ever, loaded on first use (see :func:`__getattr__`).
_RESULTS = ("BatchResult", "DialogResult", "LineRecord", "Totals")


def __getattr__(name: str) -> Any:
    if name in _RESULTS:
        from dialog_tts.render import results

        return getattr(results, name)
    raise AttributeError(f"module 'dialog_tts.api' has no attribute {name!r}")

log = logging.getLogger("dialog_tts")

PathLike = Union[str, os.PathLike]
#: ``{"A": "joe,pan=-0.3"}``, ``{"A": {"voice": "joe"}}``, ``["A=joe,pan=-0.3"]`` or parsed ``(name, fields)`` pairs.
VoicesArg = Union[Mapping[str, Union[str, Mapping[str, Any]]], Iterable[Union[str, tuple]], None]
BackendOptionsArg = Union[Mapping[str, Mapping[str, Any]], Iterable[str], None]

#: Options kept as aliases of backend settings: option -> (backend, setting) pairs.
ALIASES: dict[str, list[tuple[str, str]]] = {
    "timeout": [("edge", "timeout")],
    "threads": [("kokoro", "threads"), ("piper", "threads"), ("hibari", "threads")],
    "qwen_batch_size": [("qwen", "batch_size")],
    "qwen_models_in_memory": [("qwen", "models_in_memory")],
}


def _backend_options(given: BackendOptionsArg) -> dict[str, dict[str, Any]]:
    """``{"qwen": {"batch_size": 8}}`` from a mapping or from ``NAME.KEY=VALUE`` strings."""
    if given is None:
        return {}
    if isinstance(given, Mapping):
        return {str(name): dict(options) for name, options in given.items()}
    out: dict[str, dict[str, Any]] = {}
    for item in given:
        target, sep, value = str(item).partition("=")
        name, dot, key = target.strip().partition(".")
        if not sep or not dot or not name or not key:
            raise InputError(f"--backend-option {item!r}: write NAME.KEY=VALUE, as in qwen.batch_size=8")
        out.setdefault(name.lower(), {})[key.strip().lower()] = value.strip()
    return out


#: The render options of the quality gate that can be wrong (:meth:`RenderOptions.gate_settings` checks them).
_GATE_OPTIONS = ("check", "takes", "max_wer", "thresholds", "strict")

#: Limits of the render options (docs/limits.md); every option's check is in
#: :data:`dialog_tts.render.validate.OPTIONS`.
MAX_GAP_MS, MAX_WORKERS, MAX_RETRIES = validate.MAX_GAP_MS, validate.MAX_WORKERS, validate.MAX_RETRIES

#: The options each step of a render checks again before it uses them (a RenderOptions may be changed
#: after the Renderer checked it whole).
_MIX_OPTIONS = ("sample_rate", "stereo", "gap_ms", "lufs", "true_peak", "leveling", "bit_depth", "allow_quieter",
                "workers", "retries")
_PRODUCTION_OPTIONS = ("music", "music_level", "duck", "duck_attack", "duck_release", "music_lead", "intro",
                       "outro", "subtitles", "stems", "review", "chapters", "bitrate", "stream_format", "title",
                       "artist", "album", "year", "comment", "cover")


@dataclass
class RenderOptions:
    """Every option of a render; the keyword arguments of :func:`synthesize_dialog`."""

    voices: VoicesArg = None
    speaker_map: PathLike | None = None
    #: A pronunciation lexicon (YAML); its entries win over the speaker map's ``lexicon:``.
    lexicon: PathLike | None = None
    #: Backend of voices that name none, and the palette of unmapped speakers; None: names are
    #: looked up in every backend (piper first) and the automatic cast spans backends.
    backend: str | None = None
    sample_rate: int = 24000
    stereo: bool = True
    gap_ms: float = 250.0
    lufs: float | None = None
    true_peak: float = -1.0
    #: "line" (each line to one speech loudness), "speaker" (each speaker's lines together) or "off".
    leveling: str = "line"
    bit_depth: str | None = None   # "16", "24" or "32f" (WAV only) for WAV and FLAC; None: 16
    allow_quieter: bool = False    # keep the loudest reachable result when ``lufs`` is out of reach
    speak_directions: bool = False
    workers: int = 4
    cache: bool = True
    cache_dir: PathLike | None = None
    cache_size: int | str = "2GB"
    retries: int = 2
    keep_going: bool = False
    report: PathLike | None = None
    force: bool = False
    #: Where the backend calls run: ``thread`` (this process) or ``ray`` (a Ray cluster).
    executor: str = "thread"
    #: The Ray cluster to use with ``executor="ray"`` (None: ``$RAY_ADDRESS``, else a new local one).
    ray_address: str | None = None
    #: Each backend's own run settings: ``{"qwen": {"batch_size": 8}}`` or ``["qwen.batch_size=8"]``.
    backend_options: BackendOptionsArg = None
    timeout: float | None = None   # alias of edge.timeout
    qwen_batch_size: int | None = None        # alias of qwen.batch_size
    qwen_models_in_memory: int | None = None  # alias of qwen.models_in_memory
    threads: int | None = None     # alias of kokoro.threads, piper.threads and hibari.threads
    # production (dialog_tts.render.produce): music, bookends, extra outputs, tags
    music: PathLike | None = None
    music_level: float = -12.0     # dB gain of the bed while nobody speaks
    duck: float = 12.0             # dB lower while anyone speaks
    duck_attack: float = 0.3       # seconds
    duck_release: float = 0.8      # seconds
    music_lead: float = 1.0        # seconds of music alone before the first and after the last line
    intro: PathLike | None = None
    outro: PathLike | None = None
    subtitles: PathLike | None = None
    stems: PathLike | None = None
    review: PathLike | None = None
    chapters: bool = True
    bitrate: str | int | None = None
    stream_format: str | None = None  # the format written to stdout (out "-")
    title: str | None = None
    artist: str | None = None
    album: str | None = None
    year: str | None = None
    comment: str | None = None
    cover: PathLike | None = None

    def production(self) -> specs.Production:
        """The production options, checked (missing files and bad values are usage errors)."""
        from dialog_tts.render import specs

        def text(value: Any) -> str | None:
            return None if value is None else os.fspath(value)

        validate.check_options(self, _PRODUCTION_OPTIONS)
        prod = specs.Production(
            text(self.music), self.music_level, self.duck, self.duck_attack, self.duck_release,
            self.music_lead, intro=text(self.intro), outro=text(self.outro), subtitles=text(self.subtitles),
            stems=text(self.stems), review=text(self.review), chapters=self.chapters, bitrate=self.bitrate,
            fmt=self.stream_format,
            tags={k: text(getattr(self, k)) for k in ("title", "artist", "album", "year", "comment", "cover")})
        prod.check()
        return prod

    #: The quality gate: "basic" (cheap checks of every take), "asr" (plus the recognizer) or "none".
    check: str = "basic"
    takes: int = 3                  # takes a line may get before it fails the gate
    max_wer: float | None = None    # the recognizer check's limit [default: Thresholds.max_wer]
    thresholds: Thresholds | None = None   # every check's limit [default: Thresholds()]
    #: Every check hard: a line whose takes fail only soft checks (a long pause, a slow reading) fails
    #: (or, with ``keep_going``, is kept flagged) instead of being kept with a warning.
    strict: bool = False

    def gate_settings(self) -> GateSettings:
        """The quality gate's settings (usage errors for bad values; the asr extra checked when asked for)."""
        from dialog_tts.quality.checks import Thresholds
        from dialog_tts.quality.gate import GateSettings

        validate.check_options(self, _GATE_OPTIONS)
        thresholds = self.thresholds or Thresholds()
        if self.max_wer is not None:
            thresholds = replace(thresholds, max_wer=self.max_wer)
        settings = GateSettings(str(self.check).lower(), self.takes, thresholds, keep_flagged=self.keep_going,
                                strict=self.strict)
        if settings.check == "asr":
            from dialog_tts.quality.asr import require

            require()
        return settings

    def gate_given(self) -> bool:
        """Whether any quality-gate option differs from its default (and so is checked up front)."""
        return any(getattr(self, f.name) != f.default for f in fields(self) if f.name in _GATE_OPTIONS)

    def backend_settings(self) -> dict[str, dict[str, Any]]:
        """Per backend, the run settings given (the aliases included), each checked by its backend."""
        validate.check_options(self, ["backend_options", *ALIASES])
        settings: dict[str, dict[str, Any]] = {}
        for name, options in _backend_options(self.backend_options).items():
            settings.setdefault(name, {}).update(options)
        for attr, targets in ALIASES.items():
            value = getattr(self, attr)
            if value is not None:
                for name, key in targets:
                    settings.setdefault(name, {}).setdefault(key, value)
        for name, options in settings.items():
            backends.get_backend(name).parse_settings(options)
        return settings

    def check_all(self) -> None:
        """Usage errors (InputError naming the option) for any option of the wrong type, out of its
        documented range, nan or inf: the checks the command line makes (imports no NumPy)."""
        validate.check_options(self)

    def check_mix(self) -> None:
        """Usage errors for mix options out of their documented ranges (imports no NumPy)."""
        validate.check_options(self, _MIX_OPTIONS)

    def mix_settings(self) -> specs.MixSettings:
        """The mix's settings; every numeric option checked against its documented range first."""
        from dialog_tts.render import specs

        self.check_mix()
        return specs.MixSettings(sample_rate=self.sample_rate, channels=2 if self.stereo else 1,
                               gap=self.gap_ms / 1000.0, lufs=self.lufs, true_peak=self.true_peak,
                               leveling=self.leveling, allow_quieter=self.allow_quieter)


@dataclass
class SpeakerPlan:
    """One speaker's row of a dry run (:meth:`Renderer.plan`)."""

    speaker: str
    voice: str
    lines: int
    cached: int
    to_synthesize: int   # distinct lines not in the cache
    why: str = ""        # why the speaker got this voice


@runtime_checkable
class AudioStream(Protocol):
    """What :meth:`Renderer.stream` returns: the mix in float32 blocks as it is made.

    Iterating gives arrays of shape ``(n,)`` (mono) or ``(n, 2)`` (stereo) at
    :attr:`sample_rate`; :attr:`result` is the render's :class:`DialogResult` once the
    blocks have run out (None before).
    """

    @property
    def sample_rate(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def result(self) -> DialogResult | None: ...

    def __iter__(self) -> Iterator[npt.NDArray[np.float32]]: ...


def _overrides(voices: VoicesArg) -> list[tuple[str, Mapping[str, Any]]]:
    if voices is None:
        return []
    if isinstance(voices, Mapping):
        out: list[tuple[str, Mapping[str, Any]]] = []
        for name, spec in voices.items():
            if isinstance(spec, Mapping):
                spec_fields = {str(k).lower(): v for k, v in spec.items()}
                speakers.voice_from_fields(spec_fields, where=f"voices[{name!r}]")
                out.append((str(name), spec_fields))
            else:
                out.append(speakers.parse_assignment(f"{name}={spec}"))
        return out
    out = []
    for item in voices:
        validate.voice_item("voices", item)
        out.append(item if isinstance(item, tuple) else speakers.parse_assignment(item))
    return out


class Renderer:
    """Renders scripts with one set of options, sharing the cache and loaded backends.

    A render is a pipeline of named steps, data flowing one way:
    parse → cast → jobs (:meth:`prepare`) → synthesize (the engine) → timeline → mix → write
    (:mod:`dialog_tts.render.pipeline`).  Use it as a context manager (or call
    :meth:`close`) to release the cache.  *sleep* is what retries wait with
    (tests pass one that only records).  *progress_callback(done, total, message)*
    is called as lines finish; *on_progress* gets the same as an
    :class:`~dialog_tts.synth.engine.ProgressEvent`, with the counters.
    """

    def __init__(self, options: RenderOptions | None = None, *,
                 progress_callback: engine_mod.ProgressCallback | None = None,
                 sleep: engine_mod.Sleep = time.sleep, on_progress: engine_mod.ProgressListener | None = None) -> None:
        if options is not None and not isinstance(options, RenderOptions):
            raise InputError(f"options {validate.shown(options)} is not a RenderOptions "
                             "(Renderer(RenderOptions(lufs=-16)), or synthesize_dialog(..., lufs=-16))")
        for name, callback in (("progress_callback", progress_callback), ("sleep", sleep),
                               ("on_progress", on_progress)):
            validate.check_callable(name, callback)
        self.options = options or RenderOptions()
        self.options.check_all()   # usage errors up front, every option; the settings themselves load the mixer
        self._overrides = _overrides(self.options.voices)
        self._speaker_map = (speakers.load_speaker_map(self.options.speaker_map)
                             if self.options.speaker_map is not None else None)
        self._lexicon = _lexicon_of(self.options, self._speaker_map)
        self._cache = None
        if self.options.cache:
            from dialog_tts.synth.cache import AudioCache, parse_size

            self._cache = AudioCache(self.options.cache_dir, parse_size(self.options.cache_size))
        from dialog_tts.synth.executors import make_executor

        #: The backends' views and the jobs' cache keys: a dry run needs these and not the engine.
        self.keys = Keys(self.options.workers, self.options.backend_settings())
        self._executor = make_executor(self.options.executor, address=self.options.ray_address)
        # Usage errors up front: a gate option given is checked now; the gate left as it comes is
        # made with the engine (a dry run loads neither it nor its checks)
        self._gate = _gate(self.options) if self.options.gate_given() else None
        self._engine_args = (sleep, progress_callback, on_progress)
        self._ready: tuple[list[jobs_mod.Job], engine_mod.EngineResult] | None = None

    @cached_property   # made on first use: a dry run never loads the engine
    def engine(self) -> engine_mod.Engine:
        from dialog_tts.synth.engine import Engine

        sleep, progress_callback, on_progress = self._engine_args
        return Engine(self.options.workers, cache=self._cache, retries=self.options.retries, sleep=sleep,
                      progress=progress_callback, listener=on_progress, executor=self._executor,
                      gate=self._gate or _gate(self.options), keys=self.keys)

    @cached_property   # the mix's settings, built on first use: planning needs no mixer
    def settings(self) -> specs.MixSettings:
        return self.options.mix_settings()

    def close(self) -> None:
        self._executor.close()
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ steps
    @property
    def cache(self) -> AudioCache | None:
        """The audio cache this renderer reads and fills (None: ``cache=False``, or closed)."""
        return self._cache

    def prepare(self, script: PathLike | Script) -> tuple[Script, casting.Cast, list[jobs_mod.Job]]:
        """parse → cast → jobs: the parsed script, its cast and one synthesis job per line (nothing is
        synthesized; the backends the cast uses are checked to be available).

        Every option is checked again first: one may have been changed since the Renderer checked them."""
        self.options.check_all()
        if not isinstance(script, Script):
            validate.check_path("script", script)
        parsed = script if isinstance(script, Script) else script_mod.load(
            script, speak_directions=self.options.speak_directions)
        cast = casting.cast(parsed, speaker_map=self._speaker_map, overrides=self._overrides,
                            default_backend=self.options.backend)
        check_backends(cast.values())
        for key, voice in cast.items():
            log.info("%s: %s (%s)", parsed.speakers[key], voice.describe(), cast.why.get(key, ""))
        return parsed, cast, jobs_mod.build(parsed, cast, self._lexicon)

    def estimated_seconds(self, job: jobs_mod.Job) -> float:
        """How long a line would take to say, for the silence that stands in for it."""
        backend = self.keys.backend(job.voice.backend)
        words = max(1, len(job.text.split()))
        return words * 60.0 / (backend.base_wpm * job.voice.speed(backend.base_wpm))

    def plan(self, script: PathLike | Script) -> list[SpeakerPlan]:
        """Parse, cast and look up the cache: what a render would synthesize (nothing is)."""
        _parsed, cast, jobs = self.prepare(script)
        return _plan_rows(cast, jobs, self.keys.lookup(jobs, self._cache))

    def render(self, script: PathLike | Script, out: PathLike | None) -> DialogResult:
        """Render one script to *out* (``None``: mix and measure, write nothing)."""
        from dialog_tts.render import specs

        started = time.perf_counter()
        validate.check_path("out", out, optional=True)
        prod = self.options.production()
        settings = _output_settings(out, prod, self.settings, self.options.bit_depth)
        parsed, cast, jobs = self.prepare(script)
        extras = specs.extra_outputs(prod, parsed, out)
        key = self._render_key(parsed, jobs, out, prod, settings)
        if key is not None and out is not None and not self.options.force:
            kept = self._up_to_date(script, out, key, started, extras)   # no NumPy, mixer or writers loaded
            if kept is not None:
                return kept
        check_outputs(self.options, script, out, extras, prod.stems)
        from dialog_tts.render import pipeline as blockrender
        return blockrender.BlockRun(self, parsed, cast, jobs, out, prod, settings, key, extras, started).render()

    def stream(self, script: PathLike | Script) -> AudioStream:
        """*script*'s mix in float32 blocks as it is made (:class:`AudioStream`; see
        :func:`dialog_tts.render.pipeline.open_stream`)."""
        from dialog_tts.render.pipeline import open_stream
        return open_stream(self, script, check_outputs)

    # ------------------------------------------------------------ outputs, up-to-date outputs and the report
    def _render_key(self, parsed: Script, jobs: list[jobs_mod.Job], out: PathLike | None,
                    prod: specs.Production, settings: specs.MixSettings) -> str | None:
        from dialog_tts.render import specs, uptodate

        if out is None or self._cache is None or os.fspath(out) == specs.STDOUT:
            return None
        o = self.options      # the checks asked for too: a check asked for later runs on the cached takes
        gate = [str(o.check).lower(), o.takes, o.max_wer, o.strict, asdict(o.thresholds) if o.thresholds else None]
        return uptodate.render_key(parsed, [self.keys.cache_key(job) for job in jobs],
                                   [(job.voice.pan, job.voice.gain) for job in jobs], settings, out,
                                   [*specs.identity(prod, parsed), gate])

    def _up_to_date(self, script: PathLike | Script, out: PathLike, key: str, started: float,
                    extras: list[str]) -> DialogResult | None:
        """The kept result if *out* and *extras* hold this render as written (left alone: only the report is)."""
        from dialog_tts.render import uptodate
        from dialog_tts.synth.engine import ProgressEvent, Stats

        dialog = uptodate.unchanged(self._cache, out, key, time.perf_counter() - started, extras)
        if dialog is None:
            return None
        check_outputs(self.options, script, None, [], None, kept=[out, *extras])
        count = len(dialog.lines)
        self.engine.emit(ProgressEvent(count, count, f"{out} is up to date", Stats(count, cached=count)))
        log.info("%s is up to date (nothing changed since it was written; --force renders it again)", out)
        self.write_report(dialog)
        return dialog

    def write_report(self, dialog: DialogResult) -> None:
        """Write *dialog* as the JSON report, where the options ask for one (``report``)."""
        if self.options.report is not None:
            write_report(Path(self.options.report), dialog)

    def take_ready(self, jobs: list[jobs_mod.Job]) -> engine_mod.EngineResult | None:
        """The result handed over for *jobs* (once), or None: the render runs the engine itself."""
        ready, self._ready = self._ready, None
        return ready[1] if ready is not None and ready[0] == jobs else None

    def render_many(self, scripts: Iterable[PathLike], out_dir: PathLike, fmt: str = "wav") -> BatchResult:
        """Render each script to ``out_dir/<name>.<fmt>``; one failure does not stop the rest.

        With the Ray executor the lines of all the scripts are scheduled together
        (:meth:`_render_together`); locally, script after script.
        """
        if isinstance(scripts, (str, bytes, os.PathLike)) or not isinstance(scripts, Iterable):
            raise InputError(f"scripts {validate.shown(scripts)} is not a list of scripts")
        validate.check_path("out_dir", out_dir)
        validate.Choice(validate.STREAM_FORMATS, dotted=True).check("fmt", fmt)
        if self._executor.name == "ray":
            return self._render_together(list(scripts), Path(out_dir), fmt)
        return self._render_each(scripts, Path(out_dir), fmt)

    def _render_each(self, scripts: Iterable[PathLike], out_dir: Path, fmt: str) -> BatchResult:
        """Script after script, each to ``out_dir/<name>.<fmt>``; a failure is kept and the next script goes on."""
        from dialog_tts.render.results import BatchResult

        results: dict[str, DialogResult] = {}
        failures: dict[str, DialogTTSError] = {}
        for script in scripts:
            out = out_dir / f"{Path(script).stem}.{fmt.lstrip('.')}"
            try:
                results[str(script)] = self.render(script, out)
            except DialogTTSError as exc:
                failures[str(script)] = exc
                log.error("%s", exc)
        return BatchResult(results, failures)

    def _render_together(self, scripts: list[PathLike], out_dir: Path, fmt: str) -> BatchResult:
        """All the scripts' lines in one engine run, so that many short scripts keep every node
        busy; each script is mixed and written as soon as its own lines are done."""
        from dialog_tts.render.results import BatchResult
        planned: list[tuple[PathLike, list[jobs_mod.Job]]] = []
        failures: dict[str, DialogTTSError] = {}
        for script in scripts:
            try:
                planned.append((script, self.prepare(script)[2]))
            except DialogTTSError as exc:
                failures[str(script)] = exc
                log.error("%s", exc)
        results: dict[str, DialogResult] = {}

        def write(index: int, run: engine_mod.EngineResult) -> None:
            script, jobs = planned[index]
            self._ready = (jobs, run)       # render() takes these results instead of running the engine
            try:
                results[str(script)] = self.render(script, out_dir / f"{Path(script).stem}.{fmt.lstrip('.')}")
            except DialogTTSError as exc:
                failures[str(script)] = exc
                log.error("%s", exc)
            finally:
                self._ready = None
        self.engine.run_groups([jobs for _script, jobs in planned], write)
        order = [str(s) for s in scripts]
        return BatchResult({k: results[k] for k in order if k in results},
                           {k: failures[k] for k in order if k in failures})


def _gate(options: RenderOptions) -> Gate:
    from dialog_tts.quality.gate import Gate

    return Gate(options.gate_settings())


def _plan_rows(cast: casting.Cast, jobs: list[jobs_mod.Job], cached: list[bool]) -> list[SpeakerPlan]:
    """Per speaker: the voice, its lines, how many are cached and how many distinct ones are not."""
    rows: dict[str, SpeakerPlan] = {}
    seen: set[str] = set()
    for job, hit in zip(jobs, cached):
        key = script_mod.speaker_key(job.speaker)
        row = rows.setdefault(key, SpeakerPlan(job.speaker, cast[key].describe(), 0, 0, 0, cast.why.get(key, "")))
        row.lines += 1
        if hit:
            row.cached += 1
        elif job.identity() not in seen:
            row.to_synthesize += 1
        seen.add(job.identity())
    return list(rows.values())


def _lexicon_of(options: RenderOptions, speaker_map: speakers.SpeakerMap | None) -> lexicon_mod.Lexicon | None:
    """The speaker map's ``lexicon:`` with ``--lexicon``'s entries over it."""
    found = speaker_map.lexicon if speaker_map is not None else None
    if options.lexicon is not None:
        given = lexicon_mod.load(options.lexicon)
        found = found.merged(given) if found else given
    return found


def write_report(path: Path, dialog: DialogResult) -> None:
    """The JSON report of *dialog*, written atomically to *path*."""
    from dialog_tts.io import outputs

    try:
        with outputs.atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(dialog.to_json(), indent=2, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the report: {exc.strerror or exc}", path=path) from None


def check_outputs(options: RenderOptions, script: PathLike | Script, out: PathLike | None, extras: list[str],
                  stems: str | None, kept: Iterable[PathLike] = ()) -> None:
    """Every file a render would write, checked before anything is synthesized (exit 2 if bad).

    The stems folder is made when the stems are written: if it is not there yet, the
    folder it goes in is checked instead of each stem.  *kept*: outputs found up to date,
    left as they are but for the part files a killed run left beside them.
    """
    from dialog_tts.io import outputs
    from dialog_tts.render import specs

    for path in kept:
        outputs.remove_stale_parts(path)

    if stems is not None:
        outputs.check_no_loop(stems, shown=stems)
    if stems is not None and not Path(stems).is_dir():
        extras = [p for p in extras if Path(p).parent != Path(stems)]
        outputs.check_folder(Path(os.path.realpath(stems)).parent, shown=stems)
    wanted: list[tuple[PathLike, str]] = []
    if out is not None and os.fspath(out) != specs.STDOUT:
        specs.output_format(out)
        wanted.append((out, "audio"))
    if options.report is not None:
        wanted.append((options.report, "report"))
    wanted += [(path, outputs.kind_of(path)) for path in extras]
    given = [None if isinstance(script, Script) else script, options.speaker_map, options.lexicon,
             options.music, options.intro, options.outro, options.cover]
    inputs = [p for p in given if p is not None and os.fspath(p) != specs.STDOUT]
    outputs.check_outputs(wanted, inputs, force=options.force)


def _output_settings(out: PathLike | None, prod: specs.Production, settings: specs.MixSettings,
                     bit_depth: str | None) -> specs.MixSettings:
    """The mixer's settings for writing *out*: its bit depth, or room under the ceiling for a lossy encoder."""
    from dialog_tts.render import specs

    if out is None:
        return settings
    target = f"out{prod.stream_suffix()}" if os.fspath(out) == specs.STDOUT else out
    if bit_depth is not None:
        specs.output_format(target, bit_depth)   # a usage error before any synthesis
    return specs.mix_settings_for(target, settings, bit_depth)


def _options(kwargs: dict[str, Any]) -> RenderOptions:
    names = {f.name for f in fields(RenderOptions)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"unknown option {unknown[0]!r} (options: {', '.join(sorted(names))})")
    return RenderOptions(**kwargs)


def synthesize_dialog(script: PathLike | Script, out: PathLike | None = None, *,
                      progress_callback: engine_mod.ProgressCallback | None = None,
                      sleep: engine_mod.Sleep = time.sleep, **options: Any) -> DialogResult:
    """Render *script* (a path or a parsed :class:`Script`) to *out*.

    *options* are the fields of :class:`RenderOptions` (``voices``, ``speaker_map``,
    ``backend``, ``sample_rate``, ``stereo``, ``gap_ms``, ``lufs``, ``true_peak``,
    ``leveling``, ``bit_depth``, ``allow_quieter``, ``speak_directions``, ``workers``,
    ``cache``, ``cache_dir``, ``cache_size``, ``retries``, ``keep_going``, ``report``).
    *progress_callback(done, total, message)* is called as lines finish.  Raises
    :class:`~dialog_tts.errors.DialogTTSError` subclasses: ``exit_code`` 2 for bad
    input, 1 (:class:`~dialog_tts.errors.SynthesisFailed`) when lines fail, 1
    (:class:`~dialog_tts.errors.LoudnessError`) when ``lufs`` is out of reach.
    """
    with Renderer(_options(options), progress_callback=progress_callback, sleep=sleep) as renderer:
        return renderer.render(script, out)


def synthesize_batch(scripts: Iterable[PathLike], out_dir: PathLike, *, fmt: str = "wav",
                     progress_callback: engine_mod.ProgressCallback | None = None,
                     on_progress: engine_mod.ProgressListener | None = None, **options: Any) -> BatchResult:
    """Render many scripts in one process (one cache, backends loaded once)."""
    from dialog_tts.render import specs

    render_options = _options(options)
    render_options.check_all()                # usage errors before the output folder is made
    validate.check_path("out_dir", out_dir)
    validate.Choice(validate.STREAM_FORMATS, dotted=True).check("fmt", fmt)
    paths = expand_scripts(scripts)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs.output_format(f"x.{fmt.lstrip('.')}")
    with Renderer(render_options, progress_callback=progress_callback, on_progress=on_progress) as renderer:
        return renderer.render_many(paths, out_dir, fmt)


#: :func:`synthesize_batch` by its short name (``dialog_tts.batch``, as the command line's ``batch``).
batch = synthesize_batch


def plan_dialog(script: PathLike | Script, **options: Any) -> list[SpeakerPlan]:
    """What :func:`synthesize_dialog` would do: per speaker, voice, lines, cached, to synthesize."""
    with Renderer(_options(options)) as renderer:
        return renderer.plan(script)


def expand_scripts(items: Iterable[PathLike]) -> list[Path]:
    """Script files as given, and the ``*.txt`` files of each folder given (sorted).

    A path that does not exist, a folder without scripts, no scripts at all and two
    scripts with the same name (one output file) are usage errors.
    """
    if isinstance(items, (str, bytes, os.PathLike)) or not isinstance(items, Iterable):
        raise InputError(f"scripts {validate.shown(items)} is not a list of scripts or folders")
    paths: list[Path] = []
    for item in items:
        validate.check_path("scripts", item)
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.txt") if p.is_file())
            if not found:
                raise InputError("folder has no .txt scripts", path=path)
            paths.extend(found)
        elif not path.exists():
            raise InputError("no such script or folder", path=path)
        else:
            paths.append(path)
    if not paths:
        raise InputError("no scripts given")
    first: dict[str, Path] = {}
    for path in paths:
        other = first.setdefault(path.stem, path)
        if other is not path:
            raise InputError(f"{other} and {path} would write the same output name ({path.stem}); "
                             "rename one or render them in two runs")
    return paths


def check_backends(voices: Iterable[Voice]) -> None:
    """Ask each backend the voices use, once, whether it can run here (before any synthesis)."""
    for name in sorted({voice.backend for voice in voices}):
        backends.get_backend(name).check_available()


def preload_voices(speaker_map: PathLike, *, cache_dir: PathLike | None = None,
                   cache_size: int | str = "2GB") -> dict[str, int]:
    """Prepare every voice of a speaker map (e.g. compute and cache Qwen voice-clone prompts).

    Returns, per backend, how many voices were prepared.  Raises SynthesisError
    (exit 1) naming every voice that could not be prepared.
    """
    from dialog_tts.synth.cache import AudioCache, parse_size

    validate.check_path("speaker_map", speaker_map)
    validate.check("cache_dir", cache_dir)
    validate.check("cache_size", cache_size)
    smap = speakers.load_speaker_map(speaker_map)
    names = [entry[0] for entry in smap.entries.values()]
    script = Script([script_mod.Line(n, "-", 0) for n in names], str(speaker_map),
                    {script_mod.speaker_key(n): n for n in names})
    cast = casting.cast(script, speaker_map=smap)
    check_backends(cast.values())
    by_backend: dict[str, list[Voice]] = {}
    for voice in cast.values():
        by_backend.setdefault(voice.backend, []).append(voice)
    failed: dict[Voice, BaseException] = {}
    with AudioCache(cache_dir, parse_size(cache_size)) as cache:
        for name, voices in by_backend.items():
            failed.update(backends.get_backend(name).prepare(voices, cache) or {})
    if failed:
        listing = "\n".join(f"  {script.speakers[key]} ({voice.backend}:{voice.name}): {failed[voice]}"
                            for key, voice in cast.items() if voice in failed)
        raise SynthesisError(f"{len(failed)} of {len(cast)} voices could not be prepared:\n{listing}",
                             path=speaker_map)
    return {name: len(v) for name, v in by_backend.items()}


def list_voices(backend: str | None = None) -> dict[str, list[backends.VoiceInfo]]:
    """Every registered backend's voices (or one backend's), by backend name."""
    validate.check("backend", backend)
    names = [backend] if backend else backends.available()
    return {name: backends.get_backend(name).list_voices() for name in names}


__all__ = [
    "AudioStream",
    "BatchResult",
    "DialogResult",
    "LineRecord",
    "RenderOptions",
    "Renderer",
    "SpeakerPlan",
    "Totals",
    "batch",
    "expand_scripts",
    "list_voices",
    "plan_dialog",
    "synthesize_batch",
    "synthesize_dialog",
]
