"""The ``dialog-tts`` command: parse options, call the library, report.

Thin on purpose: no parsing, synthesis or mixing happens here, and nothing
heavy is imported at module level (``dialog-tts --help`` stays instant).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from dialog_tts import __version__
from dialog_tts.defaults import DEFAULT_BACKEND, LEVELING
from dialog_tts.errors import DialogTTSError

if TYPE_CHECKING:
    from dialog_tts.synth.engine import ProgressEvent

#: The exit code of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

_ASSIGNMENT = re.compile(r"^[^\s=-][^=]*=")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: Signals after which a render removes its temporary files, then dies of the signal (exit 128 + N).
CLEANUP_SIGNALS = ("SIGTERM", "SIGHUP")


def printable(text: str) -> str:
    """*text* with control characters (terminal escape sequences) shown escaped, as ``\\x1b``."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``1 line``, ``2 lines`` (*many*: the plural where it is not *noun* + s)."""
    return f"{n} {noun if n == 1 else many or noun + 's'}"


@contextlib.contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """While a render runs: on SIGTERM or SIGHUP, remove its temporary files, then die of that signal.

    The default action (dying at once, exit 128 + N) is kept, since the engine's
    worker threads cannot be interrupted; only the files being written are removed
    first.  The previous handlers are restored afterwards.
    """
    import signal

    from dialog_tts.io.outputs import remove_live_parts

    def handler(signum: int, _frame: object) -> None:
        remove_live_parts()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [n for n in CLEANUP_SIGNALS if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), handler) for n in names}
    try:
        yield
    finally:
        for n, old in previous.items():
            signal.signal(getattr(signal, n), old)


def expand_voices(args: list[str]) -> list[str]:
    """Let one ``--voices`` take several ``NAME=SPEC`` values: ``--voices A=x B=y``.

    Every ``NAME=SPEC`` word that directly follows a ``--voices`` value gets its
    own ``--voices`` in front.  Subcommand names and options never contain
    ``=`` at that place, so nothing else is touched.
    """
    out: list[str] = []
    expect_value = chaining = False
    for i, arg in enumerate(args):
        if arg == "--":
            out.extend(args[i:])
            break
        if expect_value:
            out.append(arg)
            expect_value, chaining = False, True
        elif arg == "--voices":
            out.append(arg)
            expect_value, chaining = True, False
        elif arg.startswith("--voices="):
            out.append(arg)
            chaining = True
        elif chaining and _ASSIGNMENT.match(arg):
            out += ["--voices", arg]
        else:
            chaining = False
            out.append(arg)
    return out


class DialogGroup(click.Group):
    """Click group that maps library errors to one-line messages and exit codes."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_voices(args))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DialogTTSError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {printable(str(exc))}", err=True)   # one line (more for a list of failed lines)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            # Ctrl-C: the engine has cancelled the queued lines (the finished ones are cached) and
            # no output or temp file is left; one line and exit 130 instead of Click's "Aborted!".
            if ctx.params.get("debug"):
                raise
            click.echo("\nInterrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


class CheckedNumber(click.ParamType):
    """A number checked by its rule in :data:`dialog_tts.render.validate.OPTIONS` (range, nan, inf), as the API
    checks it."""

    rule: Any
    number: click.ParamType

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = self.number.convert(value, param, ctx)
        try:
            self.rule.check(None, number)
        except DialogTTSError as exc:
            self.fail(exc.message, param, ctx)
        return number


class _CheckedInt(CheckedNumber, click.IntRange):
    number = click.INT


class _CheckedFloat(CheckedNumber, click.FloatRange):
    number = click.FLOAT


def checked(option: str) -> click.ParamType:
    """The Click type of the numeric render option *option* (as the API names it), from the table the API
    checks with: the same range (shown in --help) and the same refusals, nan and inf included."""
    from dialog_tts.render.validate import OPTIONS, Number

    rule = OPTIONS[option]
    if not isinstance(rule, Number):
        raise TypeError(f"{option} is not a number option")
    made: CheckedNumber
    if rule.whole:
        made = _CheckedInt(int(rule.low), int(rule.high), min_open=rule.low_open)
    else:
        low, high = (int(x) if float(x).is_integer() else x for x in (rule.low, rule.high))   # --help: 0<=x<=60
        made = _CheckedFloat(low, high, min_open=rule.low_open)
    made.rule = rule
    return made


def _parse_voice(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[tuple[str, Any]]:
    if not values:
        return []   # the spec parser's import is skipped: `dialog-tts voices` starts faster
    from dialog_tts.script.speakers import parse_assignment

    try:
        return [parse_assignment(v) for v in values]
    except DialogTTSError as exc:
        raise click.BadParameter(exc.message, ctx=ctx, param=param) from None


@functools.cache
def _echo() -> Any:
    """The handler that writes log records to the current stderr, as ``Warning: ...`` / ``Error: ...``.

    Made on first use: ``dialog-tts --help`` logs nothing, and need not import logging.
    Its ``writer`` is the progress bar's while one is shown."""
    import logging

    class EchoHandler(logging.Handler):
        writer: Callable[[str], None] | None = None

        def emit(self, record: logging.LogRecord) -> None:
            prefix = {"WARNING": "Warning: ", "ERROR": "Error: "}.get(record.levelname, "")
            text = printable(prefix + record.getMessage())
            if self.writer is not None:
                self.writer(text)
            else:
                click.echo(text, err=True)

    return EchoHandler()


def _setup_logging(quiet: bool, verbose: int) -> None:
    import logging

    logger = logging.getLogger("dialog_tts")
    if _echo() not in logger.handlers:
        logger.addHandler(_echo())
    logger.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose > 1 else
                    logging.INFO if verbose else logging.WARNING)


def _voice_and_mix_options() -> list[Callable[..., Any]]:
    """Who speaks with which voice, and how the mix sounds."""
    return [
        click.option("--voices", "voices", multiple=True, callback=_parse_voice, metavar="NAME=SPEC",
                     help='Voice for a speaker, e.g. A="joe,rate=180,pan=-0.3". Repeatable; '
                          'one --voices may take several NAME=SPEC values.'),
        click.option("--speaker-map", type=click.Path(dir_okay=False), metavar="YAML",
                     help="YAML file mapping speakers to voices (see config/speakers.yaml)."),
        click.option("--lexicon", type=click.Path(dir_okay=False), metavar="YAML",
                     help="Pronunciation lexicon: words to respellings or phonemes (see config/lexicon.yaml)."),
        click.option("--backend", default=None, metavar="NAME",
                     help="Backend for voices that name none, and cast unmapped speakers from its palette "
                          f"[default: names looked up in every backend, {DEFAULT_BACKEND} first; the automatic "
                          "cast takes Kokoro's voices]."),
        click.option("--sample-rate", type=checked("sample_rate"), default=24000, show_default=True,
                     help="Output sample rate in Hz."),
        click.option("--stereo/--mono", default=True, show_default=True,
                     help="Stereo (speakers panned) or mono output."),
        click.option("--gap-ms", type=checked("gap_ms"), default=250.0, show_default=True,
                     help="Silence between consecutive lines, in milliseconds."),
        click.option("--lufs", type=checked("lufs"), default=None, metavar="TARGET",
                     help="Normalize integrated loudness to TARGET LUFS (e.g. -16 for podcasts); a target "
                          "out of reach under the ceiling fails the run (exit 1)."),
        click.option("--allow-quieter", is_flag=True,
                     help="With --lufs: write the loudest reachable result instead of failing."),
        click.option("--true-peak", type=checked("true_peak"), default=-1.0, show_default=True,
                     metavar="DBTP", help="True-peak ceiling in dBTP, held with or without --lufs "
                                          "(lossy files: measured after decoding)."),
        click.option("--leveling", type=click.Choice(LEVELING), default="line",
                     show_default=True,
                     help="Bring each line (or each speaker's lines together) to one speech loudness before "
                          "mixing; off keeps the levels as synthesized."),
        click.option("--bit-depth", type=click.Choice(["16", "24", "32f"]), default=None,
                     help="Sample format of WAV and FLAC output: 16 (TPDF-dithered), 24, or 32f (float, "
                          "WAV only) [default: 16]."),
        click.option("--speak-directions", is_flag=True, help="Speak [stage directions] instead of skipping them."),
    ]


def _run_options() -> list[Callable[..., Any]]:
    """How the lines are synthesized: parallelism, retries, cache, backend settings."""
    return [
        click.option("--workers", type=checked("workers"), default=4, show_default=True,
                     help="Lines synthesized at once."),
        click.option("--threads", type=checked("threads"), default=None, metavar="N",
                     help="CPU threads per worker for local models: alias of --backend-option "
                          "kokoro.threads, piper.threads and hibari.threads [default: piper cores / "
                          "workers, kokoro and hibari 1]."),
        click.option("--retries", type=checked("retries"), default=2, show_default=True,
                     help="Retries of a line after a transient failure (waits 1 s, 2 s, 4 s ... with jitter)."),
        click.option("--keep-going", is_flag=True,
                     help="Write the mix even if lines fail, with silence in their place."),
        click.option("--cache/--no-cache", "cache", default=True, show_default=True,
                     help="Use the synthesis cache (--no-cache neither reads nor writes it)."),
        click.option("--cache-dir", type=click.Path(file_okay=False), metavar="DIR", envvar="DIALOG_TTS_CACHE_DIR",
                     show_envvar=True,
                     help="Cache location [default: the user cache dir, ~/.cache/dialog-tts on Linux]."),
        click.option("--cache-size", default="2GB", show_default=True, metavar="SIZE",
                     help="Cache size bound; least recently used entries are evicted beyond it."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar on stderr [default: when stderr is a terminal]."),
        click.option("--backend-option", "backend_options", multiple=True, metavar="NAME.KEY=VALUE",
                     help="A backend's own run setting, e.g. qwen.batch_size=8 or edge.timeout=30. "
                          "Repeatable; `dialog-tts backends` lists them."),
        click.option("--timeout", type=checked("timeout"), default=None, metavar="SECONDS",
                     help="Alias of --backend-option edge.timeout=SECONDS [default: 20 s + 0.1 s a character]."),
        click.option("--qwen-batch-size", type=checked("qwen_batch_size"), default=None, metavar="N",
                     help="Alias of --backend-option qwen.batch_size=N [default: 8]."),
        click.option("--qwen-models-in-memory", type=checked("qwen_models_in_memory"), default=None, metavar="N",
                     help="Alias of --backend-option qwen.models_in_memory=N [default: 2]."),
        click.option("--force", is_flag=True,
                     help="Render even when the output already holds this exact render."),
        click.option("--executor", type=click.Choice(["thread", "ray"]), default="thread", show_default=True,
                     help="Where lines are synthesized: threads of this process, or a Ray cluster "
                          "(pip install 'dialog-tts[ray]')."),
        click.option("--ray-address", metavar="ADDRESS", envvar="RAY_ADDRESS", show_envvar=True,
                     help="Ray cluster to use with --executor ray [default: a new local cluster]."),
    ]


def _production_options() -> list[Callable[..., Any]]:
    """Music, tags and the outputs besides the mix (the main command only)."""
    path = click.Path(dir_okay=False)
    return [
        click.option("--music", type=path, metavar="FILE",
                     help="Music bed under the dialog (any format soundfile reads): looped or trimmed, faded, ducked."),
        click.option("--music-level", type=checked("music_level"), default=-12.0, show_default=True, metavar="DB",
                     help="Gain of the music bed while nobody speaks, in dB."),
        click.option("--duck", type=checked("duck"), default=12.0, show_default=True, metavar="DB",
                     help="How many dB the bed goes down while anyone speaks."),
        click.option("--duck-attack", type=checked("duck_attack"), default=0.3, show_default=True, metavar="SECONDS",
                     help="The duck fades in over this long before a line."),
        click.option("--duck-release", type=checked("duck_release"), default=0.8, show_default=True,
                     metavar="SECONDS", help="... and lifts over this long after it."),
        click.option("--music-lead", type=checked("music_lead"), default=1.0, show_default=True, metavar="SECONDS",
                     help="Music alone before the first line and after the last."),
        click.option("--intro", type=path, metavar="FILE", help="Clip played before the dialog."),
        click.option("--outro", type=path, metavar="FILE", help="Clip played after the dialog."),
        click.option("--subtitles", type=path, metavar="FILE", help="Write subtitles: .srt or .vtt."),
        click.option("--stems", type=click.Path(file_okay=False), metavar="DIR",
                     help="Write one file per speaker (and music) into DIR, same length and timeline as the mix."),
        click.option("--review", type=path, metavar="FILE.html",
                     help="Write a review page: player, transcript, chapters."),
        click.option("--chapters/--no-chapters", default=True, show_default=True,
                     help="Write the script's '## Title' chapters into the output (MP3, M4A/M4B, FLAC, Ogg)."),
        click.option("--bitrate", metavar="RATE", help="AAC bitrate for .m4a/.m4b, e.g. 96k [default: 128k]."),
        click.option("--format", "stream_format", type=click.Choice(["wav", "flac", "ogg", "opus", "mp3", "m4a"]),
                     default=None, help="Format written to stdout with --out - [default: wav]."),
        click.option("--title", metavar="TEXT", help="Title tag (overrides the script's front matter)."),
        click.option("--artist", metavar="TEXT", help="Artist tag."),
        click.option("--album", metavar="TEXT", help="Album tag."),
        click.option("--year", metavar="YEAR", help="Year tag."),
        click.option("--comment", metavar="TEXT", help="Comment tag."),
        click.option("--cover", type=path, metavar="IMAGE", help="Cover image (JPEG or PNG)."),
    ]


def production_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_production_options()):
        f = option(f)
    return f


def _quality_options() -> list[Callable[..., Any]]:
    """The quality gate: which checks every take gets, how many takes a line may have."""
    return [
        click.option("--check", type=click.Choice(["basic", "asr", "none"], case_sensitive=False), default="basic",
                     show_default=True,
                     help="Checks of every take: basic (silence, clipping, duration, pauses, tones), asr (also "
                          "transcribe with pocketsphinx: pip install 'dialog-tts[asr]'), or none."),
        click.option("--takes", type=checked("takes"), default=3, show_default=True,
                     help="Takes a line may get: one that fails a check is synthesized again (a new seed where "
                          "the backend has one); with none passing it fails (--keep-going: kept, flagged)."),
        click.option("--max-wer", type=checked("max_wer"), default=None, metavar="RATE",
                     help="Word error rate above which --check asr retakes a line [default: 0.8]."),
        click.option("--strict", is_flag=True,
                     help="Make every check hard: a line whose takes fail only a soft check (a long pause, a slow "
                          "reading) fails too, instead of being kept with a warning."),
    ]


def render_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a render (shared by the main command and the batch command)."""
    for option in reversed(_voice_and_mix_options() + _run_options() + _quality_options()):
        f = option(f)
    return f


@click.group(cls=DialogGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-s", "--script", type=click.Path(), metavar="FILE", help="Dialog script to render ('-': stdin).")
@click.option("-o", "--out", type=click.Path(), metavar="FILE",
              help="Output file: .wav, .flac, .ogg, .opus, .mp3, .m4a or .m4b (format from the extension); "
                   "'-' writes to stdout (--format).")
@render_options
@production_options
@click.option("--report", type=click.Path(dir_okay=False), metavar="JSON",
              help="Write a JSON report: one record per line plus the totals.")
@click.option("--dry-run", is_flag=True, help="Parse, cast and look up the cache; synthesize nothing.")
@click.option("--clear-cache", is_flag=True, help="Empty the synthesis cache (works without --script).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", count=True, help="Log each line as it finishes (-vv: debug logs).")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(__version__, prog_name="dialog-tts")  # also from a checkout that is not installed
@click.pass_context
def main(ctx: click.Context, script: str | None, out: str | None, report: str | None, dry_run: bool,
         clear_cache: bool, quiet: bool, verbose: int, debug: bool, **render: Any) -> None:
    """Turn a multi-speaker dialog script into one finished audio file.

    \b
      dialog-tts --script samples/dialog.txt --out dialog.wav
      dialog-tts -s samples/dialog.txt --voices A="joe,pan=-0.3" B="en-gb-x-rp+f3" --lufs -16 -o ep1.flac
      dialog-tts voices
    """
    _setup_logging(quiet, verbose)
    if ctx.invoked_subcommand is not None:
        return
    if clear_cache:
        _clear_cache(render["cache_dir"], quiet)
        if script is None:
            return
    if script is None:
        unset = (click.core.ParameterSource.DEFAULT, click.core.ParameterSource.ENVIRONMENT)
        if all(ctx.get_parameter_source(p) in unset for p in ctx.params):
            click.echo(ctx.get_help())
            return
        raise click.UsageError("missing --script FILE (the dialog script to render)")
    progress = render.pop("progress")
    if dry_run:
        from dialog_tts.api import plan_dialog

        _print_plan(plan_dialog(script, **render))
        return
    if out is None:
        raise click.UsageError("missing --out FILE (.wav, .flac, .ogg, .opus, .mp3, .m4a, .m4b or - for stdout)")
    _render(script, out, report, progress, quiet, render)


def _render(script: str, out: str, report: str | None, progress: bool | None, quiet: bool,
            render: dict[str, Any]) -> None:
    from dialog_tts.api import Renderer, RenderOptions

    with cleanup_on_signals(), _progress_bar(progress, quiet) as listener, \
            Renderer(RenderOptions(report=report, **render), on_progress=listener) as renderer:
        result = renderer.render(script, out)
    if not quiet:
        click.echo(_summary(result), err=True)


def _summary(result: Any) -> str:
    t = result.totals
    if t.up_to_date:
        return (f"{result.path} is up to date: {plural(t.lines, 'line')}, all cached, nothing changed since it was "
                f"written ({t.wall_time:.2f} s; --force renders it again)")
    layout = "stereo" if result.channels == 2 else "mono"
    loud = f", {result.loudness:.1f} LUFS" if result.loudness is not None else ""
    loud += f", {result.true_peak:.1f} dBTP" if result.true_peak is not None else ""
    failed = f", {t.failed} failed (left silent)" if t.failed else ""
    flagged = f", {t.flagged} flagged (no take passed the checks)" if t.flagged else ""
    flagged += f", {t.warned} with warnings (only soft checks failed)" if t.warned else ""
    return (f"Wrote {result.path}: {result.duration:.1f} s {layout} {result.sample_rate} Hz{loud}; "
            f"{plural(t.lines, 'line')}: {t.synthesized} synthesized, {t.cached} cached, {t.repeated} repeated, "
            f"{plural(t.retries, 'retry', 'retries')}, {plural(t.retakes, 'retake')}{failed}{flagged}; "
            f"{plural(len(result.voices), 'speaker')}; "
            f"{t.wall_time:.1f} s wall, real-time factor {t.real_time_factor:.3f}")


class _progress_bar:
    """A tqdm bar on stderr (when asked for, or when stderr is a terminal) as a progress listener."""

    def __init__(self, wanted: bool | None, quiet: bool) -> None:
        self.enabled = not quiet and (wanted if wanted is not None else sys.stderr.isatty())
        self.bar: Any = None

    def __enter__(self) -> Callable[[ProgressEvent], None] | None:
        if not self.enabled:
            return None

        def update(event: ProgressEvent) -> None:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=event.total, unit="line", file=sys.stderr, leave=False, dynamic_ncols=True)
                _echo().writer = self.bar.write
            self.bar.update(event.done - self.bar.n)
            stats = event.stats
            self.bar.set_postfix(cached=stats.cached, retries=stats.retries, retakes=stats.retakes,
                                 failed=stats.failed, refresh=False)
        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
            _echo().writer = None


def _print_plan(rows: list[Any]) -> None:
    header = ("SPEAKER", "VOICE", "LINES", "CACHED", "TO SYNTHESIZE", "WHY")
    table = [header] + [(r.speaker, r.voice, str(r.lines), str(r.cached), str(r.to_synthesize), r.why)
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    total = sum(r.to_synthesize for r in rows)
    click.echo(f"{plural(sum(r.lines for r in rows), 'line')}, {sum(r.cached for r in rows)} cached, "
               f"{total} to synthesize (dry run: nothing was synthesized)")


def _clear_cache(cache_dir: str | None, quiet: bool) -> None:
    from dialog_tts.synth.cache import AudioCache, format_size

    with AudioCache(cache_dir) as cache:
        entries, freed = cache.clear()
        if not quiet:
            click.echo(f"Cleared the cache at {cache.directory}: {plural(entries, 'entry', 'entries')}, "
                       f"{format_size(freed)} freed", err=True)


@main.group("cache")
def cache_group() -> None:
    """Inspect or empty the synthesis cache."""


@cache_group.command("info")
@click.option("--cache-dir", type=click.Path(file_okay=False), metavar="DIR", envvar="DIALOG_TTS_CACHE_DIR")
def cache_info(cache_dir: str | None) -> None:
    """Print the cache's location, number of entries and size."""
    from dialog_tts.synth.cache import AudioCache, format_size

    with AudioCache(cache_dir) as cache:
        info = cache.info()
    click.echo(f"location: {info.directory}\nentries:  {info.entries}\n"
               f"size:     {format_size(info.size)} (bound {format_size(info.limit)})")
    if info.orphans:
        click.echo(f"orphans:  {plural(info.orphans, 'file')}, {format_size(info.orphan_size)}, that no entry "
                   "refers to (left by an emptied or lost cache.db; `dialog-tts cache clear` removes them)")


@cache_group.command("clear")
@click.option("--cache-dir", type=click.Path(file_okay=False), metavar="DIR", envvar="DIALOG_TTS_CACHE_DIR")
@click.pass_context
def cache_clear(ctx: click.Context, cache_dir: str | None) -> None:
    """Empty the cache (the same as dialog-tts --clear-cache)."""
    _clear_cache(cache_dir, ctx.find_root().params.get("quiet", False))


@main.command("batch")
@click.argument("scripts", nargs=-1, required=True, type=click.Path(), metavar="SCRIPT_OR_DIR...")
@click.option("--out-dir", type=click.Path(file_okay=False), required=True, metavar="DIR",
              help="Folder for the outputs (created if missing): one file per script, named after it.")
@click.option("--format", "fmt", type=click.Choice(["wav", "flac", "ogg", "opus", "mp3", "m4a", "m4b"]),
              default="wav", show_default=True, help="Output format.")
@render_options
@click.pass_context
def batch_command(ctx: click.Context, scripts: tuple[str, ...], out_dir: str, fmt: str, **render: Any) -> None:
    """Render many scripts (files, or folders of .txt files) in one process.

    The cache and the loaded voices are shared; one script's failure does not
    stop the others, and the command exits 1 if any failed.
    """
    from dialog_tts.api import synthesize_batch

    quiet = ctx.find_root().params.get("quiet", False)
    progress = render.pop("progress")
    with cleanup_on_signals(), _progress_bar(progress, quiet) as listener:
        batch = synthesize_batch(scripts, out_dir, fmt=fmt, on_progress=listener, **render)
    if not quiet:
        for result in batch.results.values():
            click.echo(_summary(result), err=True)
    if batch.failures:
        listing = "\n".join(_failure_line(path, err) for path, err in batch.failures.items())
        raise click.ClickException(f"{len(batch.failures)} of "
                                   f"{plural(len(batch.failures) + len(batch.results), 'script')} failed:\n{listing}")
    if not quiet:
        click.echo(f"Rendered {plural(len(batch.results), 'script')} into {out_dir}", err=True)


def _failure_line(path: str, error: Exception) -> str:
    """``  path: reason`` for a failed script of a batch (the path once, even if the reason names it)."""
    first = printable(str(error).splitlines()[0])
    return f"  {first}" if first.startswith(f"{path}:") else f"  {path}: {first}"


def _language_matches(language: str, wanted: str) -> bool:
    """``ko`` matches ``ko`` and ``ko-KR`` but not ``kok``."""
    language, wanted = language.lower().replace("_", "-"), wanted.lower().replace("_", "-")
    return language == wanted or language.startswith(wanted + "-")


@main.command("backends")
def backends_command() -> None:
    """List the backends, what they need, and the settings each takes (--backend-option NAME.KEY=VALUE)."""
    from dialog_tts import backends as registry

    for name in registry.available():
        try:
            inst = registry.get_backend(name)
        except DialogTTSError as exc:
            click.echo(f"{name}: unavailable ({exc})")
            continue
        needs = ", ".join(n for n, flag in (("network", inst.online), ("a GPU for speed", inst.needs_gpu)) if flag)
        click.echo(f"{name}" + (f" (needs {needs})" if needs else ""))
        for key, setting in sorted(inst.settings.items()):
            click.echo(f"  {name}.{key}: {setting.help}")


@main.group("voices", invoke_without_command=True)
@click.option("--backend", metavar="NAME", help="Only this backend's voices.")
@click.option("--language", "--locale", "language", metavar="LANG", help="Only voices of language LANG (ko, ko-KR).")
@click.option("--gender", type=click.Choice(["female", "male"], case_sensitive=False),
              help="Only female or male voices.")
@click.pass_context
def voices_command(ctx: click.Context, backend: str | None, language: str | None, gender: str | None) -> None:
    """List the voices of every backend (or of one); `voices preload` prepares a speaker map's voices."""
    if ctx.invoked_subcommand is not None:
        return
    from dialog_tts import backends as registry

    names = [backend] if backend else registry.available()
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for name in names:
        try:
            inst = registry.get_backend(name)
            infos = inst.list_voices()
        except DialogTTSError as exc:
            if backend:
                raise
            notes.append(f"{name}: unavailable ({exc})")
            continue
        for info in infos:
            if language and not _language_matches(info.language, language):
                continue
            if gender and info.gender.lower() != gender.lower():
                continue
            rows.append((name, info.name, info.language, info.gender, info.description))
        variants = getattr(inst, "variants", None)
        if callable(variants):
            notes.append(f"{name}: add a variant to any voice, as in en-us+f3: {' '.join(variants())}")
    columns = ("BACKEND", "VOICE", "LANGUAGE", "GENDER")
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(columns)]
    header = ("BACKEND", "VOICE", "LANGUAGE", "GENDER", "DESCRIPTION")
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    for note in notes:
        click.echo(note, err=True)


@voices_command.command("preload")
@click.option("--speaker-map", type=click.Path(dir_okay=False), required=True, metavar="YAML",
              help="Speaker map whose voices to prepare.")
@click.option("--cache-dir", type=click.Path(file_okay=False), metavar="DIR", envvar="DIALOG_TTS_CACHE_DIR")
@click.pass_context
def voices_preload(ctx: click.Context, speaker_map: str, cache_dir: str | None) -> None:
    """Prepare a speaker map's voices ahead of a render (Qwen: compute and cache voice-clone prompts)."""
    from dialog_tts.api import preload_voices

    counts = preload_voices(speaker_map, cache_dir=cache_dir)
    if not ctx.find_root().params.get("quiet", False):
        done = ", ".join(f"{n} {name}" for name, n in counts.items())
        click.echo(f"Prepared the voices of {speaker_map}: {done}", err=True)
