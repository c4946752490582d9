"""hibari's G2P with its tables read word by word from a file made once, instead of parsed at each start.

hibari's ``G2P()`` parses 3.5 MB of gzipped JSON on every start (two lexicons of 90,000 words each,
the tagger's 80,000 feature weights): 0.3 to 0.5 s here, more than the whole budget of re-rendering
a scene after one edit, for a line that looks up a few dozen words.  Loading the same tables from
``marshal`` or ``pickle`` was only 1.3 to 2 times faster (building the 400,000 Python objects is
the cost), so the tables go into one SQLite file (``derived`` keeps it, keyed by hibari's version
and the sha256 of the four table files) and each word's or feature's entry is read when first
asked for, then kept in memory.

The G2P object is hibari's own class with hibari's own parts (``Lexicon``, ``Tokenizer``,
``Tagger``), given these tables in place of the dicts its constructor would parse: the phonemes
are hibari's (tests/test_hibari.py compares both on varied text).  Its constructor takes no
tables, so the object is assembled here the way ``G2P.__init__`` assembles it, for the hibari
versions in :data:`ASSEMBLED` only; any other version gets hibari's ``G2P`` as it is.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import derived

log = logging.getLogger("dialog_tts")

#: hibari versions whose ``G2P.__init__`` is mirrored by :func:`lazy_g2p` (attributes and parts).
ASSEMBLED = frozenset({"0.2.1"})
_LOOKUP = ("gold", "silver", "tagdict", "weights")   # tables read entry by entry (their index in the file)
_MISSING = object()


class LazyTable:
    """One table of the file as a read-only dict: ``get``, ``in`` and ``[]``; each key read once, then kept."""

    def __init__(self, db: Any, lock: threading.Lock, table: int) -> None:
        self._db, self._lock, self._table = db, lock, table
        self._seen: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        value = self._seen.get(key, _MISSING)
        if value is _MISSING:
            import marshal

            with self._lock:
                row = self._db.execute("SELECT value FROM entries WHERE tbl = ? AND key = ?",
                                       (self._table, key)).fetchone()
            value = None if row is None else marshal.loads(row[0])
            self._seen[key] = value
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value


@dataclass
class Tables:
    gold: LazyTable
    silver: LazyTable
    tagger: dict[str, Any]        # tags and vocab in full; tagdict and weights lazy
    exceptions: dict[str, Any]    # the tokenizer's special cases (1,300: read in full)


def _read_json(path: Path) -> Any:
    """A table file as hibari reads it (gzip when its name ends in .gz)."""
    import gzip
    import json

    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def _sources(assets: Path, british: bool) -> dict[str, Path]:
    accent = "gb" if british else "us"
    return {"gold": assets / f"lexicon_{accent}_gold.json.gz", "silver": assets / f"lexicon_{accent}_silver.json.gz",
            "tagger": assets / "tagger.json.gz", "exceptions": assets / "tokenizer_exceptions.json"}


def _build(path: Path, sources: dict[str, Path]) -> None:
    """Write the tables of *sources* into a new SQLite file at *path* (atomically; about 1 s, once)."""
    import marshal
    import sqlite3

    gold, silver, tagger = (_read_json(sources[name]) for name in ("gold", "silver", "tagger"))
    tables = {"gold": gold, "silver": silver, "tagdict": tagger.pop("tagdict"), "weights": tagger.pop("weights")}
    meta = {"tagger": tagger, "exceptions": _read_json(sources["exceptions"])}
    with derived.writing(path) as tmp:
        db = sqlite3.connect(tmp)
        try:
            db.execute("CREATE TABLE entries (tbl INTEGER, key TEXT, value BLOB, PRIMARY KEY (tbl, key)) "
                       "WITHOUT ROWID")
            db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB)")
            for index, name in enumerate(_LOOKUP):
                db.executemany("INSERT INTO entries VALUES (?, ?, ?)",
                               ((index, key, marshal.dumps(value)) for key, value in tables[name].items()))
            db.executemany("INSERT INTO meta VALUES (?, ?)", ((k, marshal.dumps(v)) for k, v in meta.items()))
            db.commit()
        finally:
            db.close()


def _key_parts(version: str, sources: dict[str, Path]) -> list[str]:
    import hashlib
    import marshal
    import sys

    parts = [version, f"python {sys.version_info[0]}.{sys.version_info[1]} marshal {marshal.version}"]
    for name, path in sorted(sources.items()):
        with open(path, "rb") as f:
            parts.append(f"{name} {hashlib.file_digest(f, 'sha256').hexdigest()}")
    return parts


def open_tables(assets: Path, version: str, british: bool) -> Tables | None:
    """hibari's G2P tables from their file (made now if missing), or None where there cannot be one."""
    import marshal
    import sqlite3

    sources = _sources(assets, british)
    try:
        path = derived.entry_path("hibari-g2p", "gb" if british else "us", _key_parts(version, sources), ".sqlite")
        if not path.is_file():
            _build(path, sources)
        # immutable: the file never changes once renamed into place, so readers skip sqlite's locking
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        meta = {name: marshal.loads(value) for name, value in db.execute("SELECT name, value FROM meta")}
    except (OSError, sqlite3.Error, ValueError, EOFError, TypeError, KeyError) as exc:
        log.debug("hibari's G2P tables are parsed as usual (%s)", exc)
        return None
    lock = threading.Lock()
    gold, silver, tagdict, weights = (LazyTable(db, lock, index) for index in range(len(_LOOKUP)))
    return Tables(gold, silver, {**meta["tagger"], "tagdict": tagdict, "weights": weights}, meta["exceptions"])


def lazy_g2p(package_dir: Path, version: str, british: bool) -> Any | None:
    """hibari's G2P over tables read word by word, or None (then hibari builds its own as usual)."""
    if version not in ASSEMBLED:
        return None
    tables = open_tables(package_dir / "assets", version, british)
    if tables is None:
        return None
    from hibari.g2p import G2P
    from hibari.g2p.lexicon import Lexicon
    from hibari.g2p.tagger import Tagger
    from hibari.g2p.tokenize import Tokenizer

    g2p = G2P.__new__(G2P)   # what G2P(british=...) sets up, with these tables for the parsed ones
    g2p.lexicon = Lexicon(tables.gold, tables.silver, british)
    g2p.tokenizer = Tokenizer(tables.exceptions)
    g2p.tagger = Tagger(tables.tagger)
    g2p._oov, g2p.unk, g2p.british = None, "", british
    return g2p
