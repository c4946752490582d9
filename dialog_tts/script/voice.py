"""The voice value: :class:`Voice`, its :class:`Rate`, and the parsers of its values.

A leaf module: it imports nothing of the package, so that every other module
(backends, casting, the engine) can use it without an import cycle.  The
parsers raise ``ValueError``; callers turn that into a located error.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

#: Keys every backend understands; backends may accept more (``Backend.extra_options``).
COMMON_KEYS = ("voice", "backend", "gender", "accent", "rate", "pitch", "volume", "pan", "gain")
#: The values of ``gender`` (also accepted in a spec's voice position: ``A="female,pan=-0.3"``).
GENDERS = ("female", "male")
#: The values of ``accent`` (English voices): the names, and what else each is written as.
ACCENTS = {"british": ("british", "gb", "uk", "en-gb"), "american": ("american", "us", "en-us")}
#: Keys that only change the mix; they never change what a backend synthesizes.
MIX_KEYS = frozenset({"pan", "gain"})

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_RATE_WPM = re.compile(rf"^(?P<v>{_NUMBER})\s*(?:wpm)?$", re.IGNORECASE)
_RATE_PCT = re.compile(r"^(?P<v>[+-](?:\d+(?:\.\d*)?|\.\d+))\s*%$")
_RATE_X = re.compile(rf"^(?P<v>{_NUMBER})\s*x$", re.IGNORECASE)
_PITCH = re.compile(rf"^(?P<v>{_NUMBER})\s*(?:st)?$", re.IGNORECASE)
_DB = re.compile(rf"^(?P<v>{_NUMBER})\s*(?:db)?$", re.IGNORECASE)

MIN_WPM, MAX_WPM = 40.0, 600.0
MIN_FACTOR, MAX_FACTOR = 0.25, 4.0
MAX_PITCH_ST = 12.0


@dataclass(frozen=True)
class Rate:
    """Speaking rate: absolute words per minute or a factor of the voice's own rate."""

    wpm: float | None = None
    factor: float | None = None

    def speed(self, base_wpm: float) -> float:
        """Factor against the backend's natural rate of *base_wpm* words per minute."""
        return self.wpm / base_wpm if self.wpm is not None else float(self.factor or 1.0)

    def __str__(self) -> str:
        return f"{self.wpm:g}wpm" if self.wpm is not None else f"{self.factor:g}x"


@dataclass(frozen=True)
class Voice:
    """A voice as cast for one speaker: which backend, which voice, how it is shaped."""

    name: str
    backend: str = ""           # set by resolution: every cast voice names its backend
    rate: Rate | None = None
    pitch: float = 0.0          # semitones
    volume: float = 0.0         # dB, applied at synthesis
    pan: float | None = None    # -1 (left) .. +1 (right); None = automatic
    gain: float = 0.0           # dB, applied in the mix
    options: tuple[tuple[str, Any], ...] = ()  # backend-specific keys, sorted
    gender: str = ""            # "female", "male" or "" (unknown): asked for, then the cast voice's; never synthesized
    accent: str = ""            # "british", "american" or "": asked for (casting picks by it); never synthesized

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def speed(self, base_wpm: float) -> float:
        return self.rate.speed(base_wpm) if self.rate else 1.0

    def synthesis_fields(self) -> dict[str, Any]:
        """Everything that changes the synthesized audio (the cache key's voice part)."""
        return {
            "backend": self.backend, "name": self.name,
            "rate": str(self.rate) if self.rate else None,
            "pitch": self.pitch, "volume": self.volume,
            "options": {k: v for k, v in self.options},
        }

    def describe(self) -> str:
        parts = [self.name]
        if self.rate:
            parts.append(f"rate={self.rate}")
        if self.pitch:
            parts.append(f"pitch={self.pitch:+g}st")
        if self.volume:
            parts.append(f"volume={self.volume:+g}dB")
        if self.pan is not None:
            parts.append(f"pan={self.pan:+.2f}")
        if self.gain:
            parts.append(f"gain={self.gain:+g}dB")
        parts.extend(f"{k}={_brief(v)}" for k, v in self.options)
        return f"{self.backend}:" + ",".join(parts)


def _brief(value: Any) -> str:
    """An option's value for :meth:`Voice.describe`; nested settings (a blend) by name and weight only.

    ``mix=Guest:0.6+Host2:0.4`` instead of every reference file and text of each speaker.
    """
    pairs = tuple(value.items()) if isinstance(value, dict) else value
    if not (isinstance(pairs, (tuple, list)) and pairs and all(
            isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], (tuple, list, dict)) for p in pairs)):
        return str(value)
    out = []
    for key, inner in pairs:
        try:
            weight = dict(inner).get("weight")
        except (TypeError, ValueError):
            weight = None
        out.append(f"{key}:{weight:g}" if isinstance(weight, (int, float)) else str(key))
    return "+".join(out)


# ---------------------------------------------------------------- value parsers

def _match(pattern: re.Pattern[str], value: Any) -> float | None:
    m = pattern.match(str(value).strip())
    return float(m.group("v")) if m else None


def parse_rate(value: Any) -> Rate:
    text = str(value).strip()
    if (v := _match(_RATE_PCT, text)) is not None:
        rate = Rate(factor=1.0 + v / 100.0)
    elif (v := _match(_RATE_X, text)) is not None:
        rate = Rate(factor=v)
    elif (v := _match(_RATE_WPM, text)) is not None and not text.startswith(("+", "-")):
        if not MIN_WPM <= v <= MAX_WPM:
            raise ValueError(f"rate {text!r} is out of range ({MIN_WPM:g}-{MAX_WPM:g} words per minute)")
        return Rate(wpm=v)
    else:
        raise ValueError(f"rate {text!r} is not words per minute (180), a percentage (+10%) "
                         f"or a factor (1.1x)")
    if not MIN_FACTOR <= rate.factor <= MAX_FACTOR:  # type: ignore[operator]
        raise ValueError(f"rate {text!r} is out of range ({MIN_FACTOR:g}x-{MAX_FACTOR:g}x)")
    return rate


def parse_pitch(value: Any) -> float:
    v = _match(_PITCH, value)
    if v is None:
        raise ValueError(f"pitch {str(value)!r} is not in semitones, like +2st or -1.5st")
    if abs(v) > MAX_PITCH_ST:
        raise ValueError(f"pitch {str(value)!r} is out of range (-{MAX_PITCH_ST:g}st to +{MAX_PITCH_ST:g}st)")
    return v


def parse_db(value: Any, key: str) -> float:
    v = _match(_DB, value)
    if v is None:
        raise ValueError(f"{key} {str(value)!r} is not in decibels, like -3dB")
    if not -60.0 <= v <= 24.0:
        raise ValueError(f"{key} {str(value)!r} is out of range (-60dB to +24dB)")
    return v


def parse_gender(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in GENDERS:
        raise ValueError(f"gender {str(value)!r} is not one of {', '.join(GENDERS)}")
    return text


def parse_accent(value: Any) -> str:
    text = str(value).strip().lower()
    for accent, spellings in ACCENTS.items():
        if text in spellings:
            return accent
    raise ValueError(f"accent {str(value)[:40]!r} is not one of {', '.join(ACCENTS)}")


def parse_pan(value: Any) -> float:
    try:
        v = float(str(value).strip())
    except ValueError:
        raise ValueError(f"pan {str(value)!r} is not a number from -1 (left) to +1 (right)") from None
    if not -1.0 <= v <= 1.0 or math.isnan(v):
        raise ValueError(f"pan {str(value)!r} is out of range (-1 left to +1 right)")
    return v


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Up to *n* candidates that look like *name* (for "did you mean" hints)."""
    import difflib

    cands = list(candidates)
    lowered = {c.lower(): c for c in cands}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    contains = [c for c in cands if name.lower() in c.lower() and c.lower() not in hits]
    return ([lowered[h] for h in hits] + contains)[:n]
