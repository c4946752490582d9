"""Front matter: an optional block of tags at the top of a script.

    ---
    title: Episode 1
    artist: Night Shift
    album: Late Stories
    year: 2025
    comment: Recorded with dialog-tts
    cover: cover.jpg
    language: en-GB
    ---

The block starts with ``---`` on the script's first line and ends at the next
``---`` line; inside, ``key: value`` lines (YAML).  Its lines are blanked, not
removed, so that line numbers in messages still match the file.  A ``cover``
path is relative to the script's folder: a regular file of at most 10 MB.  Each
value is one line of text, taken as written (``title: No`` is "No"), and checked
as the options are (:func:`dialog_tts.io.tags.check_value`).  ``language`` (``en-GB``, ``en-US``) is no tag: the
automatic cast prefers voices of that accent.
"""

from __future__ import annotations

from pathlib import Path

from dialog_tts.errors import InputError, ScriptError, excerpt

KEYS = ("title", "artist", "album", "year", "comment", "cover", "language")


def split(text: str, *, path: str, base: Path) -> tuple[dict[str, str], str]:
    """(tags, the script text with the block blanked) for script *text* read from *path*."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip("\r").strip() != "---":
        return {}, text
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip("\r").strip() == "---"), None)
    if end is None:
        raise ScriptError("front matter opened with '---' is never closed by a '---' line", path=path, line=1)
    meta, where = _parse(lines[1:end], path=path)
    if meta.get("cover"):
        from dialog_tts.io.tags import check_cover

        if path != "<stdin>":
            meta["cover"] = str((base / meta["cover"]).resolve())
        try:
            check_cover(meta["cover"])     # not read here: /dev/zero or a FIFO would never end
        except InputError as exc:
            raise ScriptError(f"front matter: cover {excerpt(meta['cover'], 80)}: {exc.message}",
                              path=path, line=where["cover"]) from None
    return meta, "\n".join([""] * (end + 1) + lines[end + 1:])


def _parse(lines: list[str], *, path: str) -> tuple[dict[str, str], dict[str, int]]:
    """(tags, the line of each) from the block's *lines* (the script's lines 2, 3, ...)."""
    import yaml

    from dialog_tts.io.tags import check_value

    meta: dict[str, str] = {}
    where: dict[str, int] = {}
    for offset, raw in enumerate(lines, start=2):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            node = yaml.compose(raw, Loader=yaml.SafeLoader)
        except (yaml.YAMLError, RecursionError):
            node = None
        if not isinstance(node, yaml.MappingNode) or len(node.value) != 1:
            raise ScriptError(f"front matter: write 'key: value', not {excerpt(raw.strip())}",
                              path=path, line=offset)
        key_node, value_node = node.value[0]
        key = str(key_node.value).strip().lower()
        if key not in KEYS:
            raise ScriptError(f"front matter: unknown key {excerpt(key)} (known: {', '.join(KEYS)})",
                              path=path, line=offset)
        if not isinstance(value_node, yaml.ScalarNode):
            raise ScriptError(f"front matter: {key} is one line of text, not a list or a mapping",
                              path=path, line=offset)
        value = "" if value_node.tag == "tag:yaml.org,2002:null" else str(value_node.value)
        try:
            meta[key] = value if key == "cover" else check_value(key, value)
        except InputError as exc:
            raise ScriptError(f"front matter: {exc.message}", path=path, line=offset) from None
        where[key] = offset
    return meta, where
