"""The persistent synthesis cache (diskcache): synthesized lines survive across runs.

Key: sha256 over canonical JSON of the backend name, the backend's fingerprint
(package version and model file identity), the voice settings that change
synthesis (never pan, gain or anything else that only changes the mix) and
the text.  Value: a sha256 digest over the key and the data, followed by the clip
as FLAC; both are checked on read, and an entry that fails either (damaged, or
another entry's value copied over it) is evicted and reported as missing.
The cache is bounded (least-recently-used eviction) and safe to share between
threads and processes.  What the quality gate measured on a take (its figures,
the recognizer's result) is kept with it as the entry's diskcache tag (JSON):
a re-render judges the cached take from them, and a check asked for later runs
on the cached audio and is added to them.

The cache never stops a render:

* a damaged database (``file is not a database``, ``database disk image is
  malformed``) is moved aside into ``damaged-<time>/`` with a warning, and a
  fresh cache starts;
* a cache that cannot be written (read-only, ``/proc``, a full disk) gives one
  warning; the run then reads what it can and writes nothing to it;
* a database found empty or missing while value files of lines remain (an
  emptied ``cache.db``) gives one warning: those files are orphans that no
  entry refers to; ``cache info`` counts them and ``cache clear`` removes them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dialog_tts.errors import InputError, OutputError

if TYPE_CHECKING:  # numpy only once audio is read or written: a dry run needs keys alone
    from dialog_tts.io.audio import Clip

log = logging.getLogger("dialog_tts")

ENV_DIR = "DIALOG_TTS_CACHE_DIR"
DEFAULT_SIZE = 2 * 1000 ** 3
#: The largest cache bound accepted (1 PB; sqlite stores sizes as 64-bit integers).
MAX_SIZE = 1000 ** 5
_KEY_VERSION = 2   # 2: the stored digest covers the key
_DIGEST = 32
_DAMAGED = "damaged-"          # prefix of the folders a damaged cache is moved into
_ANALYSIS = "analysis"         # the folder of the mixer's readings (PeakCache)
_INLINE_LIMIT = 256 << 20      # bytes of one reading at most, kept in the database (a line of 6 hours at 24 kHz)
T = TypeVar("T")
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
    return sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheInfo:
    directory: Path
    entries: int
    size: int      # bytes on disk (database plus value files, orphans included)
    limit: int
    orphans: int = 0         # value files that no entry refers to (a lost or emptied database)
    orphan_size: int = 0     # their bytes


def _seal(key: str, data: bytes) -> bytes:
    """*data* behind a digest that covers *key*: an entry copied over another's is caught on read."""
    return sha256(key.encode("utf-8") + b"\0" + data).digest() + data


def _unseal(key: str, stored: object) -> bytes:
    if not isinstance(stored, bytes) or _seal(key, stored[_DIGEST:])[:_DIGEST] != stored[:_DIGEST]:
        raise ValueError("checksum mismatch")
    return stored[_DIGEST:]


def _checks_of(tag: object) -> dict[str, Any] | None:
    """The checks kept as an entry's tag, or None (no tag, or not a JSON object: never trusted further)."""
    if not isinstance(tag, str):
        return None
    try:
        checks = json.loads(tag)
    except ValueError:
        return None
    return checks if isinstance(checks, dict) else None


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether sqlite says the database file itself is damaged (not merely busy, read-only or full)."""
    name = getattr(exc, "sqlite_errorname", "")   # Python 3.11+
    if name:
        return str(name).startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return not isinstance(exc, sqlite3.OperationalError) and ("malformed" in str(exc) or "not a database" in str(exc))


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__


def _move_aside(directory: Path, exc: BaseException) -> None:
    """Move the damaged cache into ``damaged-<time>/`` (kept for inspection; ``cache clear`` removes it)."""
    aside = directory / f"{_DAMAGED}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    aside.mkdir(exist_ok=True)
    for item in list(directory.iterdir()):
        if not item.name.startswith(_DAMAGED):
            try:
                os.replace(item, aside / item.name)
            except FileNotFoundError:       # another process moved it first
                pass
    log.warning("the cache at %s was damaged (%s); it was moved to %s and a fresh cache starts "
                "(delete that folder to free its space)", directory, _reason(exc), aside)


class _Reader:
    """Read-only access to a diskcache that cannot be opened for writing.

    diskcache has no read-only mode: its constructor writes the Settings table and
    a least-recently-used get() writes access times, so on a read-only mount it
    fails with "unable to open database file" and on a full disk with "database or
    disk is full".  This reads diskcache's documented Cache table directly (values
    inline as ``mode`` 1, or in a file as ``mode`` 2) with sqlite's own read-only
    or immutable open, so that a run still gets every line that is there.
    """

    def __init__(self, directory: Path, db: sqlite3.Connection) -> None:
        self.directory = directory
        self.db = db
        self.lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path) -> _Reader | None:
        path = directory / "cache.db"
        if not path.is_file():
            return None
        for mode in ("mode=ro", "immutable=1"):      # immutable: a read-only folder (no -shm file)
            try:
                db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, check_same_thread=False)
                db.execute("SELECT COUNT(*) FROM Cache").fetchone()
                return cls(directory, db)
            except sqlite3.Error:
                continue
        return None

    def get(self, key: str) -> bytes | None:
        return self.get_tagged(key)[0]

    def get_tagged(self, key: str) -> tuple[bytes | None, Any]:
        """The entry's value and its tag (None, None where there is none)."""
        try:
            with self.lock:
                row = self.db.execute("SELECT mode, filename, value, tag FROM Cache WHERE key = ? AND raw = 1",
                                      (key,)).fetchone()
            if row is None:
                return None, None
            mode, filename, value, tag = row
            if mode == 1:
                return bytes(value), tag
            return ((self.directory / filename).read_bytes() if mode == 2 and filename else None), tag
        except (sqlite3.Error, OSError):
            return None, None

    def has(self, key: str) -> bool:
        """Whether *key* has an entry (as diskcache's ``in``: a raw key, not expired); sqlite errors raise."""
        with self.lock:
            row = self.db.execute("SELECT 1 FROM Cache WHERE key = ? AND raw = 1 AND "
                                  "(expire_time IS NULL OR expire_time > ?)", (key, time.time())).fetchone()
        return row is not None

    def info(self) -> tuple[int, int]:
        try:
            with self.lock:
                count, size = self.db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM Cache").fetchone()
            return int(count), int(size) + (self.directory / "cache.db").stat().st_size
        except (sqlite3.Error, OSError):
            return 0, 0

    def close(self) -> None:
        self.db.close()


def _peek(directory: Path, keys: Sequence[str]) -> list[bool] | None:
    """Whether each key has an entry in the diskcache at *directory*, read with a plain read-only
    sqlite connection: no diskcache import, no settings written, no folder made where there is
    none (opening diskcache is a large share of a ``--dry-run``).  None: ask diskcache."""
    path = directory / "cache.db"
    if not path.is_file():
        return [False] * len(keys)
    try:   # read-only, never immutable: a live cache's write-ahead log counts
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            reader = _Reader(directory, db)
            return [reader.has(key) for key in keys]
    except sqlite3.Error:
        return None


_VALUE_FILE = re.compile(r"[0-9a-f]{28}\.val")


def _value_files(directory: Path) -> list[Path]:
    """The files diskcache keeps large values in (``ab/cd/<28 hex>.val``), referred to or not."""
    found: list[Path] = []
    for top in directory.glob("[0-9a-f][0-9a-f]"):
        for sub in top.glob("[0-9a-f][0-9a-f]"):
            found += [f for f in sub.iterdir() if _VALUE_FILE.fullmatch(f.name)] if sub.is_dir() else []
    return found


def _referred(directory: Path) -> set[str] | None:
    """The value files the database refers to (paths relative to *directory*); None where it cannot be read."""
    path = directory / "cache.db"
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT filename FROM Cache WHERE filename IS NOT NULL").fetchall()
    except sqlite3.OperationalError as exc:
        return set() if "no such table" in str(exc) else None
    except sqlite3.Error:
        return None
    return {os.path.normpath(str(name)) for (name,) in rows}


def orphans(directory: Path) -> list[Path]:
    """Value files in the cache at *directory* that no entry refers to ([] where the database cannot be read)."""
    referred = _referred(directory)
    if referred is None:
        return []
    return [f for f in _value_files(directory) if os.path.normpath(str(f.relative_to(directory))) not in referred]


def _size_of(files: Sequence[Path]) -> int:
    total = 0
    for f in files:
        with contextlib.suppress(OSError):
            total += f.stat().st_size
    return total


def _remove_orphans(directory: Path) -> tuple[int, int]:
    """Remove the orphaned value files (and the folders they leave empty); returns (files, bytes)."""
    count = size = 0
    for f in orphans(directory):
        try:
            got = f.stat().st_size
            f.unlink()
        except OSError:
            continue
        count, size = count + 1, size + got
        for folder in (f.parent, f.parent.parent):
            with contextlib.suppress(OSError):
                folder.rmdir()          # only if empty
    return count, size


def _tidy_after_clear(directory: Path) -> int:
    """Remove the damaged caches moved aside, the mixer's readings and the output records, and give the database's free
    pages back to the file system; returns the bytes of the folders removed."""
    import shutil  # here only: it imports bz2 and lzma, which a render's start-up never needs

    freed = 0
    for folder in [*directory.glob(_DAMAGED + "*"), directory / _ANALYSIS]:
        freed += _size_of([f for f in folder.rglob("*") if f.is_file()])
        shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(directory / "outputs", ignore_errors=True)
    try:
        with contextlib.closing(sqlite3.connect(directory / "cache.db", timeout=1)) as db:
            db.execute("VACUUM")
    except sqlite3.Error as exc:  # another process holds it: the space is reused later anyway
        log.debug("cache VACUUM skipped: %s", exc)
    return freed


class PeakCache:
    """The mixer's readings of each line's true peaks, kept between renders (a ``PeakStore`` of
    :mod:`dialog_tts.finish.mixer`): sealed blobs in the ``analysis`` folder of the audio cache,
    bounded on their own, so they never count as entries, never evict a line, and are removed by
    ``cache clear``.  Nothing here stops a render: a folder that cannot be opened or written only
    means the readings are taken again."""

    def __init__(self, directory: Path, size_limit: int) -> None:
        self.directory, self.size_limit = directory, size_limit
        self._store: Any = None
        self._failed = False
        self._lock = threading.Lock()

    def _use(self, op: Callable[[Any], T], fallback: T) -> T:
        with self._lock:
            if self._failed:
                return fallback
            try:
                if self._store is None:
                    import diskcache

                    # every reading in the database itself: no value files among the lines' (.val).
                    # Evicted oldest stored first: a least-recently-used get() writes its access time,
                    # a write transaction per line read, and an evicted reading is only taken again
                    self._store = diskcache.Cache(str(self.directory), size_limit=self.size_limit,
                                                  eviction_policy="least-recently-stored",
                                                  disk_min_file_size=_INLINE_LIMIT)
                return op(self._store)
            except (sqlite3.Error, OSError) as exc:
                log.debug("the mixer's readings are not kept at %s: %s", self.directory, exc)
                self._failed = True
                return fallback

    def get_blob(self, key: str) -> bytes | None:
        data = self._use(lambda store: store.get(key), None)
        if data is None:
            return None
        try:
            return _unseal(key, data)
        except ValueError:
            return None

    def put_blob(self, key: str, data: bytes) -> None:
        """Keep *data* under *key*; a reading larger than sqlite keeps in one row is not kept."""
        if len(data) + _DIGEST < _INLINE_LIMIT:
            sealed = _seal(key, data)
            self._use(lambda store: store.set(key, sealed), None)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._store.close()
                self._store = None


class AudioCache:
    """Synthesized clips on disk, keyed by :func:`make_key`."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, size_limit: int = DEFAULT_SIZE) -> None:
        self.directory = Path(directory) if directory is not None else default_dir()
        self.size_limit = size_limit
        self._store: Any = None
        self._reader: _Reader | None = None
        self.read_only: str | None = None   # why this cache writes nothing (None: it is writable)
        self._lock = threading.RLock()
        self._peaks: PeakCache | None = None

    # ------------------------------------------------------------ opening, healing, stepping aside
    @property
    def _cache(self) -> Any:
        """The diskcache, opened on first use (a run that finds its output up to date never needs it);
        None once the cache cannot be written."""
        with self._lock:
            if self._store is None and self.read_only is None:
                try:
                    self._store = self._open()
                except (sqlite3.Error, OSError) as exc:
                    self._step_aside(exc)
            return self._store

    @property
    def opened(self) -> bool:
        """Whether the diskcache is open: lookups answered by a plain read-only query leave it closed."""
        return self._store is not None

    def _open(self) -> Any:
        import diskcache

        def connect() -> Any:
            return diskcache.Cache(str(self.directory), size_limit=self.size_limit,
                                   eviction_policy="least-recently-used")
        database = self.directory / "cache.db"
        emptied = not database.is_file() or database.stat().st_size == 0
        try:
            store = connect()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            _move_aside(self.directory, exc)
            return connect()
        if emptied:
            self._warn_orphans()
        return store

    def _warn_orphans(self) -> None:
        """One warning when the database was found empty or missing while value files remain."""
        left = orphans(self.directory)
        if left:
            log.warning("the cache database %s was empty or missing while %d files (%s) of cached lines "
                        "remain: no entry refers to them, so they are not used; `dialog-tts cache clear` "
                        "removes them", self.directory / "cache.db", len(left), format_size(_size_of(left)))

    def _heal(self, exc: sqlite3.DatabaseError, store: Any) -> None:
        with self._lock:
            if self._store is not store:        # another thread did it already
                return
            self._close_store()
            try:
                _move_aside(self.directory, exc)
            except OSError as error:
                self._step_aside(error)

    def _step_aside(self, exc: BaseException) -> None:
        """From now on write nothing, and read what can be read (one warning per cache)."""
        with self._lock:
            if self.read_only is not None:
                return
            writable = not self.directory.is_dir() or os.access(self.directory, os.W_OK)
            self.read_only = _reason(exc) if writable else "the folder is read-only"
            self._close_store()
            self._reader = _Reader.open(self.directory)
            log.warning("cannot write the cache at %s (%s); this run %s and writes nothing to it",
                        self.directory, self.read_only,
                        "reads what it can from it" if self._reader is not None else "does without it")

    def _close_store(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except sqlite3.Error:
                pass
            self._store = None

    def _use(self, op: Callable[[Any], T], fallback: Callable[[], T]) -> T:
        """``op(diskcache)``; a damaged database is moved aside and *op* runs on a fresh one;
        a cache that cannot be written steps aside and *fallback()* answers instead."""
        for _ in range(2):
            store = self._cache
            if store is None:
                break
            try:
                return op(store)
            except sqlite3.DatabaseError as exc:
                if not _damaged(exc):
                    self._step_aside(exc)
                    break
                self._heal(exc, store)
            except OSError as exc:
                self._step_aside(exc)
                break
        return fallback()

    def _read(self, key: str) -> bytes | None:
        return self._reader.get(key) if self._reader is not None else None

    # ------------------------------------------------------------ entries
    def get(self, key: str) -> Clip | None:
        """The cached clip, or None; a corrupted entry is evicted with a warning."""
        return self.get_entry(key)[0]

    def get_entry(self, key: str) -> tuple[Clip | None, dict[str, Any] | None]:
        """The cached clip and the checks kept with it (:meth:`put`); (None, None) where there is none."""
        def read_only() -> tuple[bytes | None, Any]:
            return self._reader.get_tagged(key) if self._reader is not None else (None, None)
        data, tag = self._use(lambda store: store.get(key, tag=True), read_only)
        if data is None:
            return None, None
        from dialog_tts.io.audio import decode

        try:
            clip = decode(_unseal(key, data))
        except Exception as exc:  # noqa: BLE001 - any decoding failure means the entry is unusable
            log.warning("cache entry %s… was corrupted (%s); it was removed and will be synthesized again",
                        key[:12], exc)
            self._use(lambda store: store.delete(key), lambda: None)
            return None, None
        return clip, _checks_of(tag)

    def __contains__(self, key: str) -> bool:
        return self._use(lambda store: key in store, lambda: self._read(key) is not None)

    def peek(self, keys: Sequence[str]) -> list[bool]:
        """For each key, whether ``in`` would find it; while diskcache is not open, :func:`_peek` answers."""
        found = _peek(self.directory, keys) if self._store is None and self.read_only is None else None
        return found if found is not None else [key in self for key in keys]

    def put(self, key: str, clip: Clip, checks: Mapping[str, Any] | None = None) -> None:
        """Cache *clip* under *key*, with what the quality gate measured on it (*checks*, JSON-able)."""
        from dialog_tts.io.audio import encode_flac

        data = _seal(key, encode_flac(clip))
        tag = json.dumps(dict(checks), ensure_ascii=False, separators=(",", ":")) if checks else None
        self._use(lambda store: store.set(key, data, tag=tag), lambda: None)

    def get_blob(self, key: str) -> bytes | None:
        """Bytes a backend stored with :meth:`put_blob` (e.g. a voice-clone prompt), checksum verified."""
        name = "blob:" + key
        data = self._use(lambda store: store.get(name), lambda: self._read(name))
        if data is None:
            return None
        try:
            return _unseal(name, data)
        except ValueError:
            self._use(lambda store: store.delete(name), lambda: None)
            return None

    def put_blob(self, key: str, data: bytes) -> None:
        name = "blob:" + key
        sealed = _seal(name, data)
        self._use(lambda store: store.set(name, sealed), lambda: None)

    @property
    def peaks(self) -> PeakCache | None:
        """The mixer's readings kept beside the lines (a quarter of the bound), None where this cache
        writes nothing."""
        with self._lock:
            if self._cache is None:
                return None
            if self._peaks is None:
                self._peaks = PeakCache(self.directory / _ANALYSIS, max(1, self.size_limit // 4))
            return self._peaks

    # ------------------------------------------------------------ output records
    def _record_path(self, name: str) -> Path:
        return self.directory / "outputs" / (sha256(name.encode("utf-8")).hexdigest()[:32] + ".json")

    def get_record(self, name: str) -> dict[str, Any] | None:
        """A small JSON record kept beside the audio (what was last written to which file)."""
        try:
            record = json.loads(self._record_path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("name") == name else None

    def put_record(self, name: str, record: dict[str, Any]) -> None:
        if self.read_only is not None:
            return
        path = self._record_path(name)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({**record, "name": name}, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)               # atomic: another process never reads half a record
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self._step_aside(exc)

    # ------------------------------------------------------------ the whole cache
    def info(self) -> CacheInfo:
        """Entries and bytes; value files no entry refers to are counted apart (``orphans``)."""
        def from_reader() -> CacheInfo:
            entries, size = self._reader.info() if self._reader is not None else (0, 0)
            return CacheInfo(self.directory, entries, size, self.size_limit)
        info = self._use(lambda store: CacheInfo(self.directory, len(store), int(store.volume()), self.size_limit),
                         from_reader)
        left = orphans(self.directory)
        if not left:
            return info
        extra = _size_of(left)
        return CacheInfo(info.directory, info.entries, info.size + extra, info.limit, len(left), extra)

    def clear(self) -> tuple[int, int]:
        """Remove every entry, the value files no entry refers to and any damaged cache moved aside;
        returns (entries and orphaned files, bytes) freed."""
        def clear(store: Any) -> tuple[int, int]:
            before = int(store.volume())
            return store.clear(), before

        def cannot() -> tuple[int, int]:
            raise OutputError(f"cannot clear the cache: {self.read_only}", path=self.directory)
        removed, before = self._use(clear, cannot)
        if self._peaks is not None:
            self._peaks.close()
        orphaned, orphan_size = _remove_orphans(self.directory)
        freed = _tidy_after_clear(self.directory)
        after = self._use(lambda store: int(store.volume()), lambda: before)
        return removed + orphaned, max(0, before - after) + freed + orphan_size

    def close(self) -> None:
        with self._lock:
            self._close_store()
            if self._peaks is not None:
                self._peaks.close()
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def __enter__(self) -> AudioCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
