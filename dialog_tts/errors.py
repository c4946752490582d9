"""One exception hierarchy for dialog-tts.

Every error renders as a single line.  Where a file and line are known the
message starts with ``path:line:`` so that editors and terminals can jump there.
``exit_code`` is what the command line exits with: 2 for bad input, 1 for a
run that failed.
"""

from __future__ import annotations

import os
from typing import Sequence

#: The longest line of an error message; a longer one (a 10,000-character voice name echoed
#: back, say) keeps its start and its end, with the count of characters left out between.
MAX_MESSAGE_LINE = 1000


def excerpt(text: object, width: int = 40) -> str:
    """*text* as a message quotes it: ``repr`` (control characters escaped), cut to about *width* characters.

    For echoing what a user gave (a word, a name, a spec) or what a file holds:
    never more than a short, escaped excerpt, whatever its length.
    """
    text = str(text)
    if len(text) <= width:
        return repr(text)
    return repr(text[:width - 1] + "…") + f" ({len(text):,} characters)"


def _capped(message: str) -> str:
    """*message* with every line cut to at most :data:`MAX_MESSAGE_LINE` characters (start and end kept)."""
    if len(message) <= MAX_MESSAGE_LINE:
        return message
    lines = []
    for line in message.split("\n"):
        if len(line) > MAX_MESSAGE_LINE:
            head, tail = MAX_MESSAGE_LINE * 7 // 10, MAX_MESSAGE_LINE * 2 // 10
            line = f"{line[:head]}… ({len(line) - head - tail:,} characters left out) …{line[-tail:]}"
        lines.append(line)
    return "\n".join(lines)


class DialogTTSError(Exception):
    """Base class of every error dialog-tts raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None,
                 line: int | None = None) -> None:
        message = _capped(message)
        super().__init__(message)
        self.message = message
        self.path = os.fspath(path) if path is not None else None
        self.line = line

    def locate(self, where: str | None = None, path: str | os.PathLike[str] | None = None,
               line: int | None = None) -> DialogTTSError:
        """Fill in the location where the error does not have one yet; returns self."""
        if self.path is None and path is not None:
            self.path, self.line = os.fspath(path), line
        if where and not self.message.startswith(where):
            self.message = f"{where}: {self.message}"
        return self

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        return where + self.message


class InputError(DialogTTSError):
    """Bad input from the user: an option, a script, a speaker map or a voice."""

    exit_code = 2


class ScriptError(InputError):
    """The dialog script cannot be read or does not follow the format."""


class VoiceSpecError(InputError):
    """A voice spec or speaker map entry is malformed or out of range."""


class UnknownBackendError(InputError):
    """No backend is registered under that name."""


class UnknownVoiceError(InputError):
    """The backend has no voice of that name."""


class BackendUnavailableError(DialogTTSError):
    """A backend's optional dependency is not installed, or its model cannot be found (found before synthesis)."""

    exit_code = 2


class SynthesisError(DialogTTSError):
    """A backend failed to synthesize a line."""

    #: Transient errors (timeouts, rate limits, dropped connections) are worth retrying.
    transient = False


class TransientSynthesisError(SynthesisError):
    """A synthesis failure that may succeed if tried again."""

    transient = True


class QualityFailed(SynthesisError):
    """No take of a line passed the quality gate's checks."""


class SynthesisFailed(DialogTTSError):
    """Some lines could not be synthesized; the others were (and are cached)."""

    def __init__(self, failures: Sequence[object], total: int) -> None:
        self.failures = list(failures)
        lines = "\n".join(f"  {f}" for f in self.failures)
        plural = "line" if total == 1 else "lines"
        super().__init__(f"{len(self.failures)} of {total} {plural} failed (the others are cached; "
                         f"run again to retry only these):\n{lines}")


class OutputError(DialogTTSError):
    """The output file cannot be written."""


class LoudnessError(DialogTTSError):
    """The loudness target cannot be met under the true-peak ceiling."""
