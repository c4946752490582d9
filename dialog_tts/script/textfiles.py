"""Reading the user's text inputs (scripts, speaker maps, lexicons) within bounds.

Every input is read from a regular file, at most :data:`MAX_INPUT_BYTES`, so
that ``/dev/zero``, ``/dev/urandom`` or a FIFO with no writer is a one-line
error instead of a process that grows until the kernel stops it (or waits
forever).  YAML inputs are composed first and their node graph walked with a
budget before anything is constructed, so that an alias bomb (``&a [*a, *a]``
nested a few levels) is rejected instead of expanded, and so is nesting deeper
than :data:`MAX_YAML_DEPTH` (PyYAML composes and constructs by recursion).
"""

from __future__ import annotations

import os
import stat
from typing import Any, Callable

from dialog_tts.errors import InputError

#: The largest script, speaker map or lexicon read (50 MB: a novel is about 1 MB).
MAX_INPUT_BYTES = 50 * 1000 ** 2
#: The most YAML values a speaker map or lexicon may hold, aliases counted as expanded.
MAX_YAML_NODES = 100_000
#: The deepest nesting of lists and mappings a speaker map or lexicon may have (they need 4 or 5).
MAX_YAML_DEPTH = 32

ErrorFactory = Callable[..., InputError]


def read_bytes(path: str | os.PathLike[str], *, what: str, error: ErrorFactory = InputError,
               limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of the regular file at *path* (at most *limit*); *error* (an InputError class) if not.

    The file is opened without blocking and checked with ``fstat`` before any
    read, so a FIFO is refused at once rather than waited on.
    """
    shown = os.fspath(path)
    try:
        fd = os.open(shown, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise error(f"is a directory, not a {what} file", path=shown) from None
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}", path=shown) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise error(f"is a directory, not a {what} file", path=shown)
        if not stat.S_ISREG(mode):
            raise error(f"is {file_kind(mode)}: a {what} must be a regular file", path=shown)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}", path=shown) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise error(f"{what} is larger than {limit // 1000 ** 2} MB (the most dialog-tts reads)", path=shown)
    return data


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words: "a FIFO", "a device", ..."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"


def read_text(path: str | os.PathLike[str], *, what: str, error: ErrorFactory = InputError) -> str:
    """A bounded regular file decoded as UTF-8 (a BOM is dropped)."""
    data = read_bytes(path, what=what, error=error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise error(f"{what} is not valid UTF-8 (byte 0x{data[exc.start]:02x})", path=os.fspath(path),
                    line=line) from None


def yaml_error(exc: Exception, text: str, *, path: str, error: ErrorFactory) -> InputError:
    """A PyYAML error as one located line."""
    import yaml

    if isinstance(exc, yaml.reader.ReaderError):
        line = text[:max(0, exc.position)].count("\n") + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return error(f"invalid YAML: unacceptable character {char!r} (U+{ord(char):04X})",
                     path=path, line=line)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(str(exc.problem or exc.context or "syntax error").split())
        return error(f"invalid YAML: {reason}", path=path, line=mark.line + 1 if mark else None)
    return error(f"invalid YAML: {' '.join(str(exc).split())}", path=path)


def compose_yaml(text: str, *, path: str, error: ErrorFactory) -> tuple[Any, Any]:
    """(a SafeLoader, the document's root node or None) for *text*, the node count bounded.

    The caller constructs values from the nodes with the loader and disposes of it.
    """
    import yaml

    try:
        loader = yaml.SafeLoader(text)   # the reader checks the characters here
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise yaml_error(exc, text, path=path, error=error) from None
    except RecursionError:
        raise _too_deep(_deep_line(text), path=path, error=error) from None
    if root is not None:
        _check_size(root, path=path, error=error)
    return loader, root


def _check_size(root: Any, *, path: str, error: ErrorFactory) -> None:
    """Count the nodes as construction would expand them; stop at :data:`MAX_YAML_NODES`.

    Aliases share nodes, so the count walks each reference again: the walk
    stops as soon as the budget is spent, whatever the nesting.
    """
    count = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise error(f"the YAML holds more than {MAX_YAML_NODES} values once its aliases are expanded "
                        f"(an alias bomb?)", path=path, line=root.start_mark.line + 1)
        value = node.value
        if isinstance(value, list):
            if depth > MAX_YAML_DEPTH:
                raise _too_deep(node.start_mark.line + 1, path=path, error=error)
            for item in value:
                if isinstance(item, tuple):
                    stack.extend((n, depth + 1) for n in item)
                else:
                    stack.append((item, depth + 1))


def _too_deep(line: int | None, *, path: str, error: ErrorFactory) -> InputError:
    return error(f"the YAML nests lists and mappings more than {MAX_YAML_DEPTH} deep", path=path, line=line)


def _deep_line(text: str) -> int | None:
    """The line where *text*'s nesting first goes deeper than MAX_YAML_DEPTH (PyYAML's parser is not
    recursive, unlike its composer), or None."""
    import yaml

    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    return int(event.start_mark.line) + 1 if event.start_mark is not None else None
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None
    return None
