"""The checks of every render option, in one table: the API checks its options with it, and the
command line builds its number types from it (:func:`dialog_tts.cli.checked`), so that both refuse
the same values (out of range, nan, inf, the wrong type) before anything is synthesized.

A value the table refuses is an :class:`~dialog_tts.errors.InputError` (exit 2) that names the option
as the API spells it (``music_level nan is out of range (-60 to 12 dB)``); the command line names its
flag instead.  A leaf module: it imports only the errors and the defaults (``dialog-tts --help`` loads it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Callable

from dialog_tts.defaults import LEVELING
from dialog_tts.errors import InputError

# The rules are plain classes, and numbers and dataclasses are imported where a check runs:
# `dialog-tts --help` builds its number types from this table, and dataclasses made here cost it
# more than the rest of the module.

#: Formats a render can write to stdout (``stream_format``), as ``specs.AUDIO_FORMATS`` without the dot.
STREAM_FORMATS = ("wav", "flac", "ogg", "opus", "mp3", "m4a", "m4b")

#: Longest echo of a bad value in an error message.
SHOWN = 40


def shown(value: Any) -> str:
    """*value*'s repr, cut to :data:`SHOWN` characters (an int too long for ``str`` shows as its type)."""
    try:
        text = repr(value)
    except ValueError:          # an int beyond the digit limit of int-to-str conversion
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."


def _named(name: str | None, text: str) -> str:
    return f"{name} {text}" if name else text


class Number:
    """A finite number from *low* to *high* (above *low* if *low_open*), a whole one if *whole*;
    None too where *optional* (the option's default)."""

    __slots__ = ("high", "low", "low_open", "optional", "unit", "whole")

    def __init__(self, low: float, high: float, unit: str = "", *, whole: bool = False, optional: bool = False,
                 low_open: bool = False) -> None:
        self.low, self.high, self.unit = low, high, unit
        self.whole, self.optional, self.low_open = whole, optional, low_open

    def check(self, name: str | None, value: Any) -> None:
        import numbers

        if value is None and self.optional:
            return
        kind = numbers.Integral if self.whole else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            raise InputError(_named(name, f"{shown(value)} is not a {'whole ' if self.whole else ''}number"))
        try:
            number = int(value) if self.whole else float(value)   # type: ignore[call-overload]
        except OverflowError:   # an int too large for a float: out of any range
            number = math.inf
        above = self.low < number if self.low_open else self.low <= number
        if not (above and number <= self.high):   # also false for nan
            raise InputError(_named(name, f"{shown(value)} is out of range ({self.describe()})"))

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.low_open:
            return f"above {self.low:g}, at most {self.high:g}{unit}"
        return f"{self.low:g} to {self.high:g}{unit}"


class Flag:
    """True or False (None too where *optional*: the option's default decides)."""

    __slots__ = ("optional",)

    def __init__(self, *, optional: bool = False) -> None:
        self.optional = optional

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, bool) and not (value is None and self.optional):
            raise InputError(f"{name} {shown(value)} is not True or False")


class Choice:
    """One of *values* (compared lowercased when *fold*; a leading dot dropped when *dotted*)."""

    __slots__ = ("dotted", "fold", "optional", "values")

    def __init__(self, values: tuple[str, ...], *, optional: bool = False, fold: bool = False,
                 dotted: bool = False) -> None:
        self.values, self.optional, self.fold, self.dotted = values, optional, fold, dotted

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if isinstance(value, str):
            text = value.lower() if self.fold else value
            if (text.lstrip(".") if self.dotted else text) in self.values:
                return
        raise InputError(f"{name} {shown(value)} is not one of {', '.join(map(repr, self.values))}")


class Text:
    """A string (or None where *optional*)."""

    __slots__ = ("optional",)

    def __init__(self, *, optional: bool = True) -> None:
        self.optional = optional

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, str) and not (value is None and self.optional):
            raise InputError(f"{name} {shown(value)} is not text (a str)")


class PathOption:
    """A file or folder path: a str or an ``os.PathLike`` of one, not empty, without NUL (or None)."""

    __slots__ = ("optional",)

    def __init__(self, *, optional: bool = True) -> None:
        self.optional = optional

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        try:
            path = os.fspath(value)
        except TypeError:
            path = None
        if not isinstance(path, str):
            raise InputError(f"{name} {shown(value)} is not a path (a str or os.PathLike)")
        if not path:
            raise InputError(f"{name} is an empty path")
        if "\x00" in path:
            raise InputError(f"{name} {shown(path)} contains a NUL character")


class Custom:
    """A check of its own: *fn(name, value)* raises InputError."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[str, Any], None]) -> None:
        self.fn = fn

    def check(self, name: str, value: Any) -> None:
        self.fn(name, value)


def _voices(name: str, value: Any) -> None:
    """A mapping ``{"A": "joe"}`` / ``{"A": {"voice": "joe"}}``, or a list of ``"A=joe"`` or ``(name, fields)``."""
    if value is None:
        return
    if isinstance(value, Mapping):
        for speaker, spec in value.items():
            if not isinstance(speaker, str) or not isinstance(spec, (str, Mapping)):
                raise InputError(f"{name}[{shown(speaker)}]: give a voice spec (a str, as 'joe,pan=-0.3') "
                                 f"or a mapping of its fields, not {shown(spec)}")
        return
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InputError(f"{name} {shown(value)}: give a mapping {{'A': 'joe'}} or a list of 'NAME=SPEC' strings")
    if isinstance(value, Collection):       # an iterator is checked item by item as it is read
        for item in value:
            voice_item(name, item)


def voice_item(name: str, item: Any) -> None:
    """One item of a ``voices`` list: ``"A=joe"`` or a parsed ``(name, fields)`` pair."""
    pair = isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], Mapping)
    if not isinstance(item, str) and not pair:
        raise InputError(f"{name}: {shown(item)} is not 'NAME=SPEC' or a (name, fields) pair")


def _backend_options(name: str, value: Any) -> None:
    """``{"qwen": {"batch_size": 8}}`` or a list of ``"qwen.batch_size=8"`` (each value checked by its backend)."""
    if value is None:
        return
    if isinstance(value, Mapping):
        for backend, settings in value.items():
            if not isinstance(backend, str) or not isinstance(settings, Mapping):
                raise InputError(f"{name}[{shown(backend)}]: give the backend's settings as a mapping, "
                                 f"as in {{'qwen': {{'batch_size': 8}}}}, not {shown(settings)}")
            for key in settings:
                if not isinstance(key, str):
                    raise InputError(f"{name}[{backend!r}]: setting {shown(key)} is not a name (a str)")
        return
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InputError(f"{name} {shown(value)}: give a list of 'NAME.KEY=VALUE' strings or a mapping "
                         "{'qwen': {'batch_size': 8}}")
    if isinstance(value, Collection):
        for item in value:
            if not isinstance(item, str):
                raise InputError(f"{name}: {shown(item)} is not a 'NAME.KEY=VALUE' string")


def _cache_size(name: str, value: Any) -> None:
    """A size in bytes (an int) or text such as ``2GB`` (the cache's own parser checks the range)."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise InputError(f"{name} {shown(value)} is not a size (an int of bytes, or text like '2GB')")
    from dialog_tts.synth.cache import parse_size

    parse_size(value)   # type: ignore[arg-type]   # "cache size ... is out of range", for --cache-size too


def _bitrate(name: str, value: Any) -> None:
    """None, bits per second (16000 to 512000), or text such as ``96k``."""
    import numbers

    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise InputError(f"{name} {shown(value)} is not a bitrate (an int of bits per second, or text like '96k')")
    if isinstance(value, numbers.Integral):
        Number(16_000, 512_000, "bits/s", whole=True).check(name, value)
        return
    from dialog_tts.render.specs import parse_bitrate

    parse_bitrate(value)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:       # an int too large for a float
        return False


def _thresholds(name: str, value: Any) -> None:
    """None, or a :class:`~dialog_tts.quality.checks.Thresholds` whose limits are finite numbers of the
    default's sign."""
    if value is None:
        return
    import numbers
    from dataclasses import fields

    from dialog_tts.quality.checks import Thresholds

    if not isinstance(value, Thresholds):
        raise InputError(f"{name} {shown(value)} is not a dialog_tts.quality.checks.Thresholds")
    for f in fields(value):
        default, given = f.default, getattr(value, f.name)
        if isinstance(default, bool):
            Flag().check(f"{name}.{f.name}", given)
        elif isinstance(default, numbers.Real):
            label = f"{name}.{f.name}"
            if isinstance(given, bool) or not isinstance(given, numbers.Real) or not _finite(given):
                raise InputError(f"{label} {shown(given)} is not a finite number")
            if (float(given) > 0) if float(default) < 0 else (float(given) < 0):
                raise InputError(f"{label} {shown(given)} must not be {'positive' if default < 0 else 'negative'}")


#: Limits of the render options (docs/limits.md, "Limits").
MAX_GAP_MS = 60_000.0
MAX_WORKERS = 64
MAX_RETRIES = 10

Rule = Number | Flag | Choice | Text | PathOption | Custom

#: Every option of :class:`dialog_tts.api.RenderOptions` and what it takes (the CLI's number types too).
OPTIONS: dict[str, Rule] = {
    # voices and the mix
    "voices": Custom(_voices),
    "speaker_map": PathOption(),
    "lexicon": PathOption(),
    "backend": Text(),
    "sample_rate": Number(8000, 192000, "Hz", whole=True),
    "stereo": Flag(),
    "gap_ms": Number(0.0, MAX_GAP_MS, "ms"),
    "lufs": Number(-70.0, 0.0, "LUFS", optional=True),
    "true_peak": Number(-20.0, 0.0, "dBTP"),
    "leveling": Choice(LEVELING),
    "bit_depth": Choice(("16", "24", "32f"), optional=True),
    "allow_quieter": Flag(),
    "speak_directions": Flag(),
    # the run
    "workers": Number(1, MAX_WORKERS, whole=True),
    "cache": Flag(),
    "cache_dir": PathOption(),
    "cache_size": Custom(_cache_size),
    "retries": Number(0, MAX_RETRIES, whole=True),
    "keep_going": Flag(),
    "report": PathOption(),
    "force": Flag(),
    "executor": Choice(("thread", "ray")),
    "ray_address": Text(),
    "backend_options": Custom(_backend_options),
    "timeout": Number(0.1, 3600.0, "s", optional=True),
    "qwen_batch_size": Number(1, 256, whole=True, optional=True),
    "qwen_models_in_memory": Number(1, 16, whole=True, optional=True),
    "threads": Number(1, 256, whole=True, optional=True),
    # the production
    "music": PathOption(),
    "music_level": Number(-60.0, 12.0, "dB"),
    "duck": Number(0.0, 60.0, "dB"),
    "duck_attack": Number(0.0, 5.0, "s"),
    "duck_release": Number(0.0, 10.0, "s"),
    "music_lead": Number(0.0, 60.0, "s"),
    "intro": PathOption(),
    "outro": PathOption(),
    "subtitles": PathOption(),
    "stems": PathOption(),
    "review": PathOption(),
    "chapters": Flag(),
    "bitrate": Custom(_bitrate),
    "stream_format": Choice(STREAM_FORMATS, optional=True, dotted=True),
    "title": Text(),
    "artist": Text(),
    "album": Text(),
    "year": Text(),
    "comment": Text(),
    "cover": PathOption(),
    # the quality gate
    "check": Choice(("none", "basic", "asr"), fold=True),
    "takes": Number(1, 10, whole=True),
    "max_wer": Number(0.0, 10.0, optional=True, low_open=True),
    "thresholds": Custom(_thresholds),
    "strict": Flag(),
}


def check(name: str, value: Any) -> None:
    """InputError naming option *name* unless *value* is one it takes (an option without a rule passes)."""
    rule = OPTIONS.get(name)
    if rule is not None:
        rule.check(name, value)


def check_options(options: Any, names: Iterable[str] | None = None) -> None:
    """Every option of *options* (a RenderOptions), or those in *names*, checked by :data:`OPTIONS`."""
    from dataclasses import fields

    wanted = None if names is None else set(names)
    for f in fields(options):
        if wanted is None or f.name in wanted:
            check(f.name, getattr(options, f.name))


def check_callable(name: str, value: Any) -> None:
    """A callback: None or something callable."""
    if value is not None and not callable(value):
        raise InputError(f"{name} {shown(value)} is not callable")


def check_path(name: str, value: Any, *, optional: bool = False) -> None:
    """A path argument (``script``, ``out``, ``out_dir``) as :class:`PathOption` checks it."""
    PathOption(optional=optional).check(name, value)
