"""What a render asks for, as values: the mix's settings, the production's options, the output formats.

Nothing here touches samples, so nothing here imports NumPy: a render that finds its output up to date
decides that from these values alone, without loading the mixer or the writers (issue 3's cached re-run
at most 1.5x a bare start-up).  ``dialog_tts.finish.clips``, ``produce``, ``audio``, ``mp4`` and ``sources``
re-export what they used to define here.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dialog_tts.defaults import LEVELING
from dialog_tts.errors import InputError

if TYPE_CHECKING:
    from dialog_tts.script.parse import Script

#: Subtitle formats by extension (dialog_tts.io.subtitles writes them).
SUBTITLE_FORMATS = (".srt", ".vtt")

# ---------------------------------------------------------------- audio formats

#: Output formats by file extension: soundfile format and sample subtype (16-bit for WAV and FLAC).
FORMATS: dict[str, tuple[str, str | None]] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".opus": ("OGG", "OPUS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}
#: AAC in MP4, written by dialog_tts.io.mp4 (PyAV), not soundfile.
MP4_FORMATS: dict[str, tuple[str, str | None]] = {".m4a": ("MP4", "AAC"), ".m4b": ("MP4", "AAC")}
#: Sample formats of the lossless outputs by bit depth ("32f": 32-bit float, WAV only: FLAC has none).
PCM_SUBTYPES: dict[str, dict[str, str]] = {
    ".wav": {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT"},
    ".flac": {"16": "PCM_16", "24": "PCM_24"},
}


def output_format(path: str | os.PathLike[str], bit_depth: str | None = None) -> tuple[str, str | None]:
    """The soundfile format and subtype for *path*'s extension (and *bit_depth*); a usage error for others."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS and ext not in MP4_FORMATS:
        raise InputError(f"cannot write {ext or 'files without an extension'}: use one of "
                         f"{', '.join([*FORMATS, *MP4_FORMATS])}", path=os.fspath(path))
    depths = PCM_SUBTYPES.get(ext)
    if bit_depth is not None and depths is None:
        raise InputError(f"--bit-depth applies to .wav and .flac, not {ext}", path=os.fspath(path))
    if ext in MP4_FORMATS:
        return MP4_FORMATS[ext]
    if bit_depth is None or depths is None:
        return FORMATS[ext]
    if bit_depth not in depths:
        raise InputError(f"{ext} cannot hold {bit_depth}-bit samples (use {' or '.join(depths)})",
                         path=os.fspath(path))
    return FORMATS[ext][0], depths[bit_depth]


def is_lossy(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() not in PCM_SUBTYPES


def parse_bitrate(text: str | int | None) -> int | None:
    """``96k``, ``128000`` or None → bits per second."""
    if text is None or isinstance(text, int):
        return text
    value = text.strip().lower()
    try:
        bits = int(float(value[:-1]) * 1000) if value.endswith("k") else int(value)
    except (ValueError, OverflowError):    # OverflowError: "infk"
        raise InputError(f"bitrate {text!r}: write it as 96k or 96000") from None
    if not 16_000 <= bits <= 512_000:
        raise InputError(f"bitrate {text!r} is out of range (16k to 512k)")
    return bits


# ---------------------------------------------------------------- the mix

BIT_DEPTHS = (16, 24)        # PCM grids the result can be rounded to (None: float)


@dataclass(frozen=True)
class MixSettings:
    sample_rate: int = 24000
    channels: int = 2
    gap: float = 0.25              # seconds of silence between consecutive clips
    lufs: float | None = None      # integrated loudness target, LUFS
    true_peak: float = -1.0        # ceiling in dBTP, held with or without ``lufs``
    leveling: str = "line"         # "line", "speaker" or "off"
    bit_depth: int | None = None   # round the result to 16-bit (TPDF dither) or 24-bit PCM; None: float
    allow_quieter: bool = False    # keep the loudest reachable result when ``lufs`` is out of reach
    fade: float = 0.005            # seconds of fade at each clip edge
    trim_db: float = -45.0         # trim threshold, dB below the clip's peak
    trim_floor_db: float = -70.0   # ... but never below this absolute level

    def __post_init__(self) -> None:
        if self.channels not in (1, 2):
            raise ValueError("channels must be 1 or 2")
        if self.sample_rate < 8000 or self.sample_rate > 192000:
            raise ValueError("sample rate must be 8000-192000 Hz")
        if self.gap < 0:
            raise ValueError("gap must not be negative")
        if self.leveling not in LEVELING:
            raise ValueError(f"leveling must be one of {', '.join(LEVELING)}")
        if self.bit_depth is not None and self.bit_depth not in BIT_DEPTHS:
            raise ValueError("bit depth must be 16, 24 or None (float)")


#: How much lower than the ceiling the mixer holds the peaks for each lossy format, as a first guess at
#: what its encoder adds (measured on speech at 16-48 kHz: MP3 up to 0.4 dB, Vorbis 0.8, Opus 0.9).
LOSSY_MARGIN_DB = {".mp3": 0.5, ".ogg": 1.0, ".opus": 1.0}


def mix_settings_for(path: str | os.PathLike[str], settings: MixSettings, bit_depth: str | None) -> MixSettings:
    """The mixer's settings for writing *path*: its PCM grid, or room under the ceiling for a lossy encoder."""
    ext = Path(path).suffix.lower()
    if is_lossy(path):
        return replace(settings, bit_depth=None, true_peak=settings.true_peak - LOSSY_MARGIN_DB.get(ext, 0.0))
    depth = bit_depth or "16"
    return replace(settings, bit_depth=None if depth == "32f" else int(depth))


# ---------------------------------------------------------------- the production

STDOUT = "-"
AUDIO_FORMATS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".m4b")


@dataclass(frozen=True)
class Production:
    """The production options of a render (from :class:`dialog_tts.api.RenderOptions`)."""

    music: str | None = None
    music_level: float = -12.0
    duck: float = 12.0
    duck_attack: float = 0.3
    duck_release: float = 0.8
    music_lead: float = 1.0
    music_fade_in: float = 1.0
    music_fade_out: float = 2.0
    intro: str | None = None
    outro: str | None = None
    subtitles: str | None = None
    stems: str | None = None
    review: str | None = None
    chapters: bool = True
    bitrate: str | int | None = None
    fmt: str | None = None                    # output format for --out - (stdout)
    tags: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Usage errors before any synthesis: missing files, unknown extensions, bad values."""
        for what, path in (("music", self.music), ("intro", self.intro), ("outro", self.outro)):
            if path and not Path(path).is_file():
                raise InputError(f"{what} file not found", path=str(path))
        from dialog_tts.io.tags import check_cover, check_value

        if self.tags.get("cover"):      # a regular file, not too large (never read here)
            check_cover(self.tags["cover"])
        for key, value in self.tags.items():
            if key != "cover" and value is not None:
                check_value(key, str(value))
        if self.subtitles and Path(self.subtitles).suffix.lower() not in SUBTITLE_FORMATS:
            raise InputError("subtitles must be .srt or .vtt", path=str(self.subtitles))
        if self.review and Path(self.review).suffix.lower() not in (".html", ".htm"):
            raise InputError("the review page must be an .html file", path=str(self.review))
        if self.duck < 0 or min(self.duck_attack, self.duck_release, self.music_lead) < 0:
            raise InputError("--duck, its attack and release, and --music-lead must not be negative")
        if self.fmt is not None and f".{self.fmt.lstrip('.')}" not in AUDIO_FORMATS:
            raise InputError(f"unknown format {self.fmt!r} (use one of {', '.join(AUDIO_FORMATS)})")
        parse_bitrate(self.bitrate)

    def stream_suffix(self) -> str:
        return f".{(self.fmt or 'wav').lstrip('.')}"


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in blocks (for a render's identity)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path=os.fspath(path)) from None
    return digest.hexdigest()


def identity(prod: Production, parsed: Script) -> list[Any]:
    """Everything of the production that decides the outputs' bytes (files by their content)."""
    from dialog_tts.io.tags import Tags

    files = {what: file_digest(path) if path else None
             for what, path in (("music", prod.music), ("intro", prod.intro), ("outro", prod.outro))}
    tag_values = Tags.merged(parsed.meta, prod.tags)
    cover = file_digest(tag_values.cover) if tag_values.cover else None
    settings = [prod.music_level, prod.duck, prod.duck_attack, prod.duck_release, prod.music_lead,
                prod.music_fade_in, prod.music_fade_out, prod.chapters, prod.bitrate, prod.fmt]
    outputs = [_resolved(p) for p in (prod.subtitles, prod.stems, prod.review)]
    return [files, settings, {**tag_values.__dict__, "cover": cover}, outputs]


def _resolved(path: str | None) -> str | None:
    return os.path.realpath(path) if path else None     # never raises (a symlink loop included)


def extra_outputs(prod: Production, parsed: Script, out: str | os.PathLike[str] | None) -> list[str]:
    """The files a render writes besides *out* (the up-to-date check looks at them too)."""
    paths = [str(p) for p in (prod.subtitles, prod.review) if p]
    if prod.stems:
        names = list(parsed.speakers.values()) + (["music"] if (prod.music or prod.intro or prod.outro) else [])
        paths += [str(stem_path(prod.stems, name, stem_suffix(prod, out))) for name in names]
    return paths


def stem_path(folder: str | os.PathLike[str], name: str, suffix: str) -> Path:
    safe = re.sub(r"[^\w.-]+", "_", name, flags=re.UNICODE).strip("._") or "speaker"
    return Path(folder) / f"{safe}{suffix}"


def stem_suffix(prod: Production, out: str | os.PathLike[str] | None) -> str:
    suffix = prod.stream_suffix() if out is None or os.fspath(out) == STDOUT else Path(out).suffix.lower()
    return suffix if suffix in FORMATS else ".wav"
