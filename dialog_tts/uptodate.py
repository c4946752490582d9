"""Up-to-date outputs, like make: an output that already holds exactly this render is not rendered again.

A render's key hashes everything that decides the output's bytes: each line's
cache key and mix settings, the pauses, the mix settings and the format.  After
a successful render the key, the output file's stat and the result are kept
in the cache's records; the next render with the same key finds the file
unchanged (same size, mtime and inode) and returns the kept result.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from . import specs
from .results import DialogResult, Totals
from .script import Chapter, Pause, Script


def render_key(parsed: Script, line_keys: Sequence[str], mix_fields: Sequence[tuple[Any, Any]],
               settings: Any, out: str | os.PathLike[str], production: Any = None) -> str:
    """Everything that decides the bytes of *out* (and of the extra outputs), hashed.

    *line_keys*: each line's cache key; *production*: the music, tags and extra
    outputs (dialog_tts.produce.identity), left out of the hash when None.
    """
    from . import __version__

    keys, voices = iter(line_keys), iter(mix_fields)
    timeline = [["pause", e.seconds] if isinstance(e, Pause) else ["chapter", e.title]
                if isinstance(e, Chapter) else [next(keys), *next(voices)] for e in parsed.events]
    s = settings
    payload = [__version__, timeline, s.sample_rate, s.channels, s.gap, s.lufs, s.true_peak,
               s.leveling, s.bit_depth, s.allow_quieter, specs.output_format(out)]
    if production is not None:
        payload.append(production)
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _stat(path: str | os.PathLike[str]) -> list[int] | None:
    """Identity of a file's current content, as far as a stat can tell."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _record_name(out: str | os.PathLike[str]) -> str:
    return f"output:{Path(out).resolve()}"


def unchanged(cache: Any, out: str | os.PathLike[str], key: str, wall_time: float,
              extras: Sequence[str] = ()) -> DialogResult | None:
    """The kept result if *out* (and each of the *extras*) still holds exactly the render *key*,
    marked as all cached; else None."""
    record = cache.get_record(_record_name(out))
    if record is None or record.get("key") != key or record.get("stat") != _stat(out):
        return None
    if record.get("extras", {}) != _extra_stats(extras):
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
    cache.put_record(_record_name(out), {"key": key, "stat": _stat(out), "extras": _extra_stats(extras),
                                         "result": dialog.to_json()})


def _extra_stats(extras: Sequence[str]) -> dict[str, list[int] | None]:
    return {str(Path(p).resolve()): _stat(p) for p in extras}
