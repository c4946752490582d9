"""One exception hierarchy for dialog-tts.

Every error renders as a single line.  Where a file and line are known the
message starts with ``path:line:`` so that editors and terminals can jump there.
``exit_code`` is what the command line exits with: 2 for bad input, 1 for a
run that failed.
"""

from __future__ import annotations

import os
from typing import Sequence


class DialogTTSError(Exception):
    """Base class of every error dialog-tts raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None,
                 line: int | None = None) -> None:
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
