"""Up-to-date outputs, like make: an output that already holds exactly this render is not rendered again.

A render's key hashes everything that decides the output's bytes: each line's
cache key and mix settings, the pauses, the mix settings and the format.  After
a successful render the key, the output file's size and BLAKE3 digest (and those of
the subtitles and review page written with it) and the result are kept in the
cache's records; the next render with the same key finds the file unchanged
(the same size, then the same digest: a file edited in place counts as changed
whatever its mtime says) and returns the kept result.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Sequence

from dialog_tts.render import specs
from dialog_tts.render.results import DialogResult, Totals
from dialog_tts.script.parse import Chapter, Pause, Script


def render_key(parsed: Script, line_keys: Sequence[str], mix_fields: Sequence[tuple[Any, Any]],
               settings: Any, out: str | os.PathLike[str], production: Any = None) -> str:
    """Everything that decides the bytes of *out* (and of the extra outputs), hashed.

    *line_keys*: each line's cache key; *production*: the music, tags and extra
    outputs (dialog_tts.render.produce.identity), left out of the hash when None.
    """
    from dialog_tts import __version__

    keys, voices = iter(line_keys), iter(mix_fields)
    timeline = [["pause", e.seconds] if isinstance(e, Pause) else ["chapter", e.title]
                if isinstance(e, Chapter) else [next(keys), *next(voices)] for e in parsed.events]
    s = settings
    payload = [__version__, timeline, s.sample_rate, s.channels, s.gap, s.lufs, s.true_peak,
               s.leveling, s.bit_depth, s.allow_quieter, specs.output_format(out)]
    if production is not None:
        payload.append(production)
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


_CHUNK = 1 << 20


def _identity(path: str | os.PathLike[str]) -> list[Any] | None:
    """A file's content as [size, "blake3:" + hex digest], or None where it cannot be read.

    BLAKE3 (the blake3 package) rather than hashlib's SHA-256: an output is hashed whole after every
    render and on every up-to-date check, and BLAKE3's SIMD tree hashes a large file several times
    faster (the figures: the CHANGELOG).  A record kept with a SHA-256 digest matches nothing, so
    that output is rendered once more."""
    import blake3

    digest = blake3.blake3()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            while read := f.readinto(buffer):
                digest.update(view[:read])
    except OSError:
        return None
    return [size, "blake3:" + digest.hexdigest()]


def _holds(path: str | os.PathLike[str], kept: Any) -> bool:
    """Whether *path* still holds the content *kept* (:func:`_identity`): its size first, then its hash."""
    if not (isinstance(kept, list) and len(kept) == 2):
        return False
    try:
        if os.stat(path).st_size != kept[0]:
            return False
    except OSError:
        return False
    return _identity(path) == kept


def _record_name(out: str | os.PathLike[str]) -> str:
    return f"output:{os.path.realpath(out)}"     # never raises (a symlink loop included)


def unchanged(cache: Any, out: str | os.PathLike[str], key: str, wall_time: float,
              extras: Sequence[str] = ()) -> DialogResult | None:
    """The kept result if *out* (and each of the *extras*) still holds exactly the render *key*,
    marked as all cached; else None."""
    record = cache.get_record(_record_name(out))
    if record is None or record.get("key") != key or not _holds(out, record.get("content")):
        return None
    kept = record.get("extras")
    names = _extra_names(extras)
    if not isinstance(kept, dict) or set(kept) != set(names) or \
            not all(_holds(path, kept[name]) for name, path in names.items()):
        return None
    dialog = DialogResult.from_json(record["result"])
    for line in dialog.lines:
        line.cache_hit, line.source, line.attempts, line.synthesis_seconds = True, "cache", 0, 0.0
    count = len(dialog.lines)
    dialog.totals = Totals(lines=count, cached=count, duration=dialog.duration, up_to_date=True,
                           wall_time=wall_time)
    dialog.totals.real_time_factor = wall_time / dialog.duration if dialog.duration else 0.0
    return dialog


def remember(cache: Any, out: str | os.PathLike[str], key: str, dialog: DialogResult,
             extras: Sequence[str] = ()) -> None:
    """Keep the render *key* and its result for *out* (and the *extras* written with it), as written just now."""
    content = _identity(out)
    if content is None:
        return
    cache.put_record(_record_name(out), {
        "key": key, "content": content,
        "extras": {name: _identity(path) for name, path in _extra_names(extras).items()},
        "result": dialog.to_json()})


def _extra_names(extras: Sequence[str]) -> dict[str, str]:
    return {os.path.realpath(p): p for p in extras}
