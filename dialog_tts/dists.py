"""Installed distributions, read from their ``*.dist-info`` folders without importlib.metadata.

``dialog-tts voices`` and ``--dry-run`` need the ``dialog_tts.backends`` entry points and a few
package versions (cache fingerprints).  Importing importlib.metadata (email, zipfile, csv) and
scanning with it costs more than a whole ``python -c pass``; reading the folders directly costs a
small fraction of that.  Only what pip and uv install is understood (``*.dist-info``,
``*.egg-info`` folders on sys.path); :func:`version` falls back to importlib.metadata for anything else.
"""

from __future__ import annotations

import os
import re
import sys
from functools import lru_cache


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@lru_cache(maxsize=1)
def _folders() -> tuple[tuple[str, str, str], ...]:
    """(normalized name, version or "", metadata folder) of each distribution, first on sys.path first."""
    found: dict[str, tuple[str, str, str]] = {}
    for folder in sys.path:
        try:
            entries = sorted(os.listdir(folder or "."))
        except OSError:
            continue
        for entry in entries:
            stem, dot, suffix = entry.rpartition(".")
            if not dot or suffix not in ("dist-info", "egg-info"):
                continue
            name, _, rest = stem.partition("-")
            version = rest.partition("-")[0] if suffix == "egg-info" else rest
            found.setdefault(_normalized(name), (_normalized(name), version, os.path.join(folder or ".", entry)))
    return tuple(found.values())


def clear() -> None:
    """Forget what was read (after installing a package in this process)."""
    _folders.cache_clear()


def entry_point_targets(group: str) -> dict[str, str]:
    """``name -> "module:attr"`` of the entry points in *group* (the first of a name wins)."""
    found: dict[str, str] = {}
    for _name, _version, folder in _folders():
        for name, value in _group_entries(os.path.join(folder, "entry_points.txt"), group):
            found.setdefault(name, value)
    return found


def version(distribution: str) -> str | None:
    """The installed version of *distribution*, or None if it is not installed."""
    wanted = _normalized(distribution)
    for name, found, _folder in _folders():
        if name == wanted and found:
            return found
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _group_entries(path: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of section ``[group]`` of an entry_points.txt (none if unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return []
    out, inside = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            out.append((name.strip(), value.strip()))
    return out
