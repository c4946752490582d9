"""Writing the finished mix so that the file keeps the ceiling and the loudness the mix was given.

- Lossless files (WAV, FLAC) hold exactly the samples the mixer measured: it rounded them
  to the output's bit depth itself.
- Lossy files (MP3, Ogg Vorbis, Opus) are decoded after encoding and measured.  An encoder
  adds inter-sample peaks (its low-pass and quantization noise), so when the decoded true
  peak is over the ceiling the mix is limited again under a ceiling lowered by the
  overshoot, loudness kept, and encoded again, until the decoded file holds.

Either way the figures returned are those of the file as written (lossy: as decoded).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import audio, loudness, specs
from .errors import LoudnessError, OutputError
from .mix import MixResult, MixSettings

# defined in dialog_tts.specs (values, no NumPy); kept here for the modules that used them from here
LOSSY_MARGIN_DB = specs.LOSSY_MARGIN_DB
mix_settings_for = specs.mix_settings_for

if TYPE_CHECKING:
    import numpy as np

MAX_ENCODES = 4
_STEP_DB = 0.1      # extra room taken each time an encode came out over the ceiling


@dataclass(frozen=True)
class Written:
    """The loudness (LUFS) and true peak (dBTP) of the file as written, how often it was encoded, notes."""

    loudness: float | None
    true_peak: float | None
    encodes: int = 1
    notes: tuple[str, ...] = ()


def encode(path: str | os.PathLike[str], mixed: MixResult, settings: MixSettings,
           bit_depth: str | None = None) -> Written:
    """Write *mixed* into *path* (a temporary file the caller renames) and return the figures of the file.

    *settings* are the render's (the ceiling and target the file must keep).  Raises
    :class:`~dialog_tts.errors.LoudnessError` if a lossy file cannot keep the target,
    :class:`~dialog_tts.errors.OutputError` if it cannot keep the ceiling.
    """
    if not audio.is_lossy(path):
        audio.write(path, mixed.samples, mixed.sample_rate, bit_depth)
        return Written(mixed.loudness, mixed.true_peak)
    samples, rate = mixed.samples, mixed.sample_rate
    if Path(path).suffix.lower() == ".opus" and rate not in audio.OPUS_RATES:
        samples, rate = audio.resample(samples, rate, 48000), 48000
    return _check_target(_encode_until_held(os.fspath(path), samples, rate, settings), settings, path)


def _encode_until_held(tmp: str, samples: np.ndarray, rate: int, settings: MixSettings) -> Written:
    """Encode into *tmp*, decode, measure; limit lower and encode again while the decoded peak is over."""
    ceiling = settings.true_peak
    limit = ceiling - LOSSY_MARGIN_DB.get(Path(tmp).suffix.lower(), 0.0)
    for encodes in range(1, MAX_ENCODES + 1):
        audio.write(tmp, samples, rate)
        decoded = audio.decode(Path(tmp).read_bytes())
        peak = loudness.true_peak_db(decoded.samples, decoded.sample_rate)
        if peak <= ceiling:
            return Written(loudness.integrated_loudness(decoded.samples, decoded.sample_rate), peak, encodes)
        limit -= peak - ceiling + _STEP_DB
        loudness.normalize_loudness(samples, rate, settings.lufs, limit)
    raise OutputError(f"the encoded file still peaks at {peak:+.2f} dBTP, over the {ceiling:g} dBTP ceiling, "
                      f"after {MAX_ENCODES} encodes")


def _check_target(written: Written, settings: MixSettings, path: str | os.PathLike[str]) -> Written:
    """Fail if the decoded file misses the loudness target, unless a quieter result is allowed (then a note)."""
    target, got = settings.lufs, written.loudness
    if target is None or got is None or not math.isfinite(got) or got >= target - loudness.SHORTFALL_LU:
        return written
    if not settings.allow_quieter:
        raise LoudnessError(f"loudness target {target:g} LUFS is out of reach after encoding: the decoded file "
                            f"reads {got:.1f} LUFS under the {settings.true_peak:g} dBTP ceiling (ask for "
                            f"{math.floor(got * 10) / 10:g} LUFS or less, or allow a quieter result with "
                            f"--allow-quieter)", path=path)
    return replace(written, notes=(f"loudness reached {got:.1f} LUFS after encoding, not {target:g}",))
