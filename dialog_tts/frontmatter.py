"""Front matter: an optional block of tags at the top of a script.

    ---
    title: Episode 1
    artist: Night Shift
    album: Late Stories
    year: 2025
    comment: Recorded with dialog-tts
    cover: cover.jpg
    ---

The block starts with ``---`` on the script's first line and ends at the next
``---`` line; inside, ``key: value`` lines (YAML).  Its lines are blanked, not
removed, so that line numbers in messages still match the file.  A ``cover``
path is relative to the script's folder.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ScriptError

KEYS = ("title", "artist", "album", "year", "comment", "cover")


def split(text: str, *, path: str, base: Path) -> tuple[dict[str, str], str]:
    """(tags, the script text with the block blanked) for script *text* read from *path*."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip("\r").strip() != "---":
        return {}, text
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip("\r").strip() == "---"), None)
    if end is None:
        raise ScriptError("front matter opened with '---' is never closed by a '---' line", path=path, line=1)
    meta = _parse(lines[1:end], path=path)
    if "cover" in meta and path != "<stdin>":
        meta["cover"] = str((base / meta["cover"]).resolve())
    return meta, "\n".join([""] * (end + 1) + lines[end + 1:])


def _parse(lines: list[str], *, path: str) -> dict[str, str]:
    import yaml

    meta: dict[str, str] = {}
    for offset, raw in enumerate(lines, start=2):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            item = yaml.safe_load(raw)
        except yaml.YAMLError:
            item = None
        if not isinstance(item, dict) or len(item) != 1:
            raise ScriptError(f"front matter: write 'key: value', not {raw.strip()!r}", path=path, line=offset)
        key, value = next(iter(item.items()))
        key = str(key).strip().lower()
        if key not in KEYS:
            raise ScriptError(f"front matter: unknown key {key!r} (known: {', '.join(KEYS)})",
                              path=path, line=offset)
        meta[key] = "" if value is None else str(value)
    return meta
