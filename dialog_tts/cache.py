"""The persistent synthesis cache (diskcache): synthesized lines survive across runs.

Key: sha256 over canonical JSON of the backend name, the backend's fingerprint
(package version and model file identity), the voice settings that change
synthesis (never pan, gain or anything else that only changes the mix) and
the text.  Value: a sha256 digest followed by the clip as FLAC; both are checked
on read, and an entry that fails either is evicted and reported as missing.
The cache is bounded (least-recently-used eviction) and safe to share between
threads and processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .audio import Clip, decode, encode_flac
from .errors import InputError

log = logging.getLogger("dialog_tts")

ENV_DIR = "DIALOG_TTS_CACHE_DIR"
DEFAULT_SIZE = 2 * 1000 ** 3
#: The largest cache bound accepted (1 PB; sqlite stores sizes as 64-bit integers).
MAX_SIZE = 1000 ** 5
_KEY_VERSION = 1
_DIGEST = 32
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000 ** 2, "g": 1000 ** 3, "t": 1000 ** 4,
          "ki": 1024, "mi": 1024 ** 2, "gi": 1024 ** 3, "ti": 1024 ** 4}


def default_dir() -> Path:
    """``$DIALOG_TTS_CACHE_DIR``, else the user cache dir (``~/.cache/dialog-tts`` on Linux)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dialog-tts", appauthor=False))


def parse_size(text: str | int) -> int:
    """``2GB``, ``500MB``, ``1.5GiB``, ``1000000`` → bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise InputError(f"cache size {str(text)[:40]!r} is not a size like 2GB, 500MB or 1.5GiB")
        unit = (m.group(2) or "").lower().rstrip("b")
        value = float(m.group(1)) * _UNITS[unit]
        size = int(value) if value <= MAX_SIZE else MAX_SIZE + 1   # inf too: int(inf) raises
    if not 0 <= size <= MAX_SIZE:
        raise InputError(f"cache size {str(text)[:40]!r} is out of range (0 to 1 PB)")
    return size


def format_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def make_key(backend: str, fingerprint: str, voice_fields: dict[str, Any], text: str) -> str:
    """The cache key of one synthesis: a hex sha256 over canonical JSON."""
    payload = {"v": _KEY_VERSION, "backend": backend, "fingerprint": fingerprint,
               "voice": voice_fields, "text": text}
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheInfo:
    directory: Path
    entries: int
    size: int      # bytes on disk (database plus value files)
    limit: int


class AudioCache:
    """Synthesized clips on disk, keyed by :func:`make_key`."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, size_limit: int = DEFAULT_SIZE) -> None:
        self.directory = Path(directory) if directory is not None else default_dir()
        self.size_limit = size_limit
        self._store: Any = None

    @property
    def _cache(self) -> Any:
        """The diskcache, opened on first use (a run that finds its output up to date never needs it)."""
        if self._store is None:
            import diskcache

            try:
                self._store = diskcache.Cache(str(self.directory), size_limit=self.size_limit,
                                              eviction_policy="least-recently-used")
            except OSError as exc:
                raise InputError(f"cannot open the cache: {exc.strerror or exc}", path=self.directory) from None
        return self._store

    def get(self, key: str) -> Clip | None:
        """The cached clip, or None; a corrupted entry is evicted with a warning."""
        data = self._cache.get(key)
        if data is None:
            return None
        try:
            if not isinstance(data, bytes) or hashlib.sha256(data[_DIGEST:]).digest() != data[:_DIGEST]:
                raise ValueError("checksum mismatch")
            return decode(data[_DIGEST:])
        except Exception as exc:  # any decoding failure means the entry is unusable
            log.warning("cache entry %s… was corrupted (%s); it was removed and will be synthesized again",
                        key[:12], exc)
            self._cache.delete(key)
            return None

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def put(self, key: str, clip: Clip) -> None:
        flac = encode_flac(clip)
        self._cache.set(key, hashlib.sha256(flac).digest() + flac)

    def get_blob(self, key: str) -> bytes | None:
        """Bytes a backend stored with :meth:`put_blob` (e.g. a voice-clone prompt), checksum verified."""
        data = self._cache.get("blob:" + key)
        if not isinstance(data, bytes) or hashlib.sha256(data[_DIGEST:]).digest() != data[:_DIGEST]:
            if data is not None:
                self._cache.delete("blob:" + key)
            return None
        return data[_DIGEST:]

    def put_blob(self, key: str, data: bytes) -> None:
        self._cache.set("blob:" + key, hashlib.sha256(data).digest() + data)

    def _record_path(self, name: str) -> Path:
        return self.directory / "outputs" / (hashlib.sha256(name.encode("utf-8")).hexdigest()[:32] + ".json")

    def get_record(self, name: str) -> dict[str, Any] | None:
        """A small JSON record kept beside the audio (what was last written to which file)."""
        try:
            record = json.loads(self._record_path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("name") == name else None

    def put_record(self, name: str, record: dict[str, Any]) -> None:
        path = self._record_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**record, "name": name}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)                   # atomic: another process never reads half a record

    def info(self) -> CacheInfo:
        return CacheInfo(self.directory, len(self._cache), int(self._cache.volume()), self.size_limit)

    def clear(self) -> tuple[int, int]:
        """Remove every entry; returns (entries, bytes) freed."""
        before = int(self._cache.volume())
        removed = self._cache.clear()
        import shutil

        shutil.rmtree(self.directory / "outputs", ignore_errors=True)
        try:  # give the database's free pages back to the file system
            import sqlite3

            with sqlite3.connect(self.directory / "cache.db", timeout=1) as db:
                db.execute("VACUUM")
        except Exception as exc:  # another process holds it: the space is reused later anyway
            log.debug("cache VACUUM skipped: %s", exc)
        return removed, max(0, before - int(self._cache.volume()))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> "AudioCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
