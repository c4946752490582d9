"""Where a run writes: up-front checks of the output paths, atomic writes and temp-file cleanup.

Every file a run writes (the audio, the report) is checked before anything is
synthesized: its folder exists and is writable, it is not a folder, it is not
one of the run's inputs nor another of its outputs, and an existing file there
is replaced only when it is one of ours (an audio file, a dialog-tts report)
or with ``--force``.

Files are written to a temporary ``.NAME.XXXXXXXX.part.EXT`` beside the real
target (a symlink is followed, so the final rename never crosses file systems)
and renamed over it only when complete.  A writer asked to write atomically into
a part file that is being written already writes into it (part files never nest).
The temporary file is removed on any exception and, through
:func:`remove_live_parts` (the command line's SIGTERM and SIGHUP handler), on
those signals.  A part file left by a process that was killed outright
(``kill -9``), nested ones from earlier versions included, is removed by the
next run writing the same output (``--force`` or not, up to date or not).

Audio written to stdout goes through :func:`write_all` (a raw stdout, as with
``python -u`` or ``PYTHONUNBUFFERED``, may take only part of a write) and a
failure there (a closed pipe, a full disk) is one :class:`OutputError` naming
``<stdout>``; what stdout still buffers is then dropped, so that the exit
does not fail a second time.

No NumPy here: the command line imports this module for its signal handler.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from dialog_tts.errors import DialogTTSError, InputError, OutputError

log = logging.getLogger("dialog_tts")

#: A report bigger than this is not one of ours (ours are about 300 bytes a line).
REPORT_LIMIT = 256 * 1024 * 1024
_REPORT_KEYS = frozenset({"script", "output", "totals", "lines"})

_live: set[str] = set()        # temporary files being written now, for the signal handler
_live_lock = threading.Lock()


def real_target(path: str | os.PathLike[str]) -> Path:
    """*path* with symlinks followed (a dangling link: where it points), absolute."""
    return Path(os.path.realpath(os.fspath(path)))


def _part_pattern(target: Path) -> re.Pattern[str]:
    """Names of our temporary files for *target*: ``tempfile.mkstemp``'s 8 random characters; also the
    nested ones (``..NAME.X.part.EXT.Y.part.EXT``) that earlier versions left when killed."""
    part = rf"\.[a-z0-9_]{{8}}\.part{re.escape(target.suffix.lower())}"
    return re.compile(rf"\.+{re.escape(target.name)}(?:{part})+")


def _lock(handle: IO[bytes] | int) -> bool:
    """Take an exclusive lock on an open file without waiting; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks, treat the file as free
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside *path*'s real target; rename it over the target only on success.

    On any exception, KeyboardInterrupt included, the temporary file is removed
    and the target is left as it was.  While it is written, the temporary file is
    locked (so that :func:`remove_stale_parts` in another process leaves it alone)
    and registered for :func:`remove_live_parts`.
    """
    with _live_lock:
        nested = os.fspath(path) in _live
    if nested:             # already a part file being written (by an enclosing atomic_path): write into it
        yield os.fspath(path)
        return
    target = real_target(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part" + target.suffix.lower(),
                               dir=target.parent)
    with _live_lock:
        _live.add(tmp)
    try:
        _lock(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, DialogTTSError) and exc.path == tmp:    # name the output, not its part file
            exc.path = os.fspath(path)
        raise
    finally:
        with _live_lock:
            _live.discard(tmp)
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_live_parts() -> list[str]:
    """Remove the temporary files being written now (called from a signal handler); returns them."""
    with _live_lock:
        parts = list(_live)
    for part in parts:
        with contextlib.suppress(OSError):
            os.unlink(part)
    return parts


def remove_stale_parts(path: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files a killed run left beside *path*'s target; returns those removed.

    Only our own naming pattern for this very output, only in its folder, and only
    files no running process holds locked (a write in progress elsewhere is left alone).
    """
    target = real_target(path)
    pattern = _part_pattern(target)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            with open(entry.path, "rb") as handle:
                if not _lock(handle):
                    continue
                os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
        log.info("removed %s, left by an earlier run that was killed", entry.path)
    return removed


def is_audio_file(path: Path) -> bool:
    """Whether *path* holds audio soundfile can read (or nothing at all)."""
    if path.stat().st_size == 0:
        return True
    import soundfile as sf

    try:
        sf.info(os.fspath(path))
    except Exception:  # noqa: BLE001 - LibsndfileError, RuntimeError or TypeError: not audio it reads
        return False
    return True


def is_report_file(path: Path) -> bool:
    """Whether *path* holds a dialog-tts report (a JSON object with its keys), or nothing at all."""
    size = path.stat().st_size
    if size == 0:
        return True
    if size > REPORT_LIMIT:
        return False
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, OSError):
        return False
    return isinstance(data, dict) and _REPORT_KEYS <= data.keys()


def _starts_with(path: Path, *heads: str) -> bool:
    """Whether *path* is empty or its text starts (after blanks and a BOM) with one of *heads*."""
    with open(path, "rb") as handle:
        head = handle.read(256).decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    return not head or any(head.lower().startswith(h.lower()) for h in heads)


def is_subtitles_file(path: Path) -> bool:
    """Whether *path* holds SRT (a cue number first) or WebVTT subtitles, or nothing."""
    return _starts_with(path, "WEBVTT", *"0123456789")


def is_page_file(path: Path) -> bool:
    """Whether *path* holds an HTML page, or nothing."""
    return _starts_with(path, "<!DOCTYPE html", "<html")


#: (kind shown in messages, test that an existing file may be replaced)
KINDS = {"audio": ("an audio file", is_audio_file), "report": ("a dialog-tts report", is_report_file),
         "subtitles": ("a subtitles file", is_subtitles_file), "page": ("an HTML page", is_page_file)}


def kind_of(path: str | os.PathLike[str]) -> str:
    """The kind of output *path* is, by its extension (stems are audio)."""
    suffix = Path(path).suffix.lower()
    return {".srt": "subtitles", ".vtt": "subtitles", ".html": "page", ".htm": "page",
            ".json": "report"}.get(suffix, "audio")


def check_outputs(outputs: Sequence[tuple[str | os.PathLike[str], str]],
                  inputs: Sequence[str | os.PathLike[str]] = (), *, force: bool = False) -> None:
    """Check every output path before anything is synthesized; InputError (exit 2) for the first bad one.

    *outputs* are (path, kind) pairs, kind ``audio`` or ``report``.  Each must be
    distinct from the others and from every one of *inputs*, in a folder that
    exists and is writable, not a folder itself, and, if a file is there already,
    one this kind may replace (or *force*).  Stale part files of each are removed.
    """
    taken = {real_target(p): ("input", os.fspath(p)) for p in inputs}
    for path, kind in outputs:
        shown = os.fspath(path)
        check_no_loop(path, shown=shown)
        target = real_target(path)
        if target in taken:
            role, other = taken[target]
            what = "the input" if role == "input" else "the output"
            raise InputError(f"is also {what} {other}: give each output its own file", path=shown)
        taken[target] = ("output", shown)
        _check_one(target, shown, kind, force)
    for path, _kind in outputs:
        remove_stale_parts(path)


def check_no_loop(path: str | os.PathLike[str], *, shown: str) -> None:
    """InputError when *path* (or a folder on the way to it) is a symlink loop: it can never be written."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError("is a symlink loop (too many levels of symbolic links): remove the link or "
                             "choose another name", path=shown) from None


def check_folder(folder: Path, *, shown: str) -> None:
    """InputError unless *folder* exists and new files can be made in it."""
    if not folder.is_dir():
        raise InputError(f"output folder {str(folder)!r} does not exist", path=shown)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"output folder {str(folder)!r} is not writable", path=shown)


def _check_one(target: Path, shown: str, kind: str, force: bool) -> None:
    check_folder(target.parent, shown=shown)
    if target.is_dir():
        raise InputError("output path is a directory", path=shown)
    if not target.exists() or force:
        return
    if not target.is_file():
        raise InputError("exists and is not a regular file; refusing to replace it", path=shown)
    description, replaceable = KINDS[kind]
    if not replaceable(target):
        raise InputError(f"exists and is not {description}; refusing to overwrite it "
                         "(--force overwrites it, or choose another name)", path=shown)


# ---------------------------------------------------------------- stdout

#: How stdout is named in messages.
STDOUT_NAME = "<stdout>"


def write_all(stream: Any, data: bytes | memoryview) -> None:
    """Write every byte of *data* to the binary *stream*.

    A buffered stream takes it all at once; a raw one (stdout under ``python -u`` or
    ``PYTHONUNBUFFERED``) may take only part and say how much, and a non-blocking one may
    take nothing (None): the rest is written again until all of it went out.
    """
    view = memoryview(data).cast("B")
    while view.nbytes:
        count = stream.write(view)
        if count is None:         # non-blocking and full: wait until it can take more
            import select

            select.select([], [stream.fileno()], [])
            continue
        view = view[count:]


def check_taken(stream: Any) -> None:
    """Wait until the reader of *stream* (a pipe) has taken every byte; BrokenPipeError if it went first.

    A closed pipe fails a write only while there is more to write: output that fitted in the
    pipe's buffer (``| head -c 100``) would otherwise count as delivered.  So the end of the
    output waits, as a full pipe does, until the reader has read it all (then it may leave) or
    has gone with some of it unread.  Not a pipe, or a system that cannot tell: nothing to wait for.
    """
    try:
        import fcntl
        import select
        import stat
        import struct
        import termios

        fd = stream.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while True:
            unread = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
            if unread <= 0:
                return
            if any(events & select.POLLERR for _fd, events in poller.poll(0)):    # the reader is gone
                break
            poller.poll(50)     # a pipe says when it has room, not when it is empty: look again shortly
    except (ImportError, OSError, ValueError, AttributeError):
        return
    raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def stdout_failure(exc: OSError, what: str = "audio") -> OutputError:
    """The one-line error for a write to stdout that failed (*exc*: a closed pipe, a full disk).

    What stdout still buffers is sent to the null device, so that the interpreter's own
    flush at exit neither fails a second time nor prints a traceback."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, sys.stdout.fileno())
        finally:
            os.close(null)
    except (OSError, ValueError, AttributeError):     # not a real descriptor (a test's capture): nothing to drop
        pass
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, BrokenPipeError):
        reason = f"{reason} (the program reading it stopped before the end)"
    return OutputError(f"cannot write {what}: {reason}", path=STDOUT_NAME)


def copy_to_stdout(path: str | os.PathLike[str]) -> None:
    """Copy the file at *path* to stdout, all of it, then flush; :func:`stdout_failure` if stdout fails."""
    out = sys.stdout.buffer
    with open(path, "rb") as source:
        while True:
            chunk = source.read(1 << 20)
            try:
                if not chunk:
                    out.flush()
                    check_taken(out)
                    return
                write_all(out, chunk)
            except OSError as exc:
                raise stdout_failure(exc) from None
