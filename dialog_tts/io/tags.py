"""Tags and chapters written into a finished file with mutagen.

* MP3: ID3v2.4 frames TIT2, TPE1, TALB, TDRC, COMM and APIC (the cover), and
  chapters as CHAP frames listed by one CTOC (the ID3 chapter addendum).
* FLAC, Ogg Vorbis and Opus: Vorbis comments (TITLE, ARTIST, ALBUM, DATE,
  COMMENT), the cover as a picture (FLAC) or METADATA_BLOCK_PICTURE (Ogg), and
  chapters as CHAPTER001=HH:MM:SS.mmm / CHAPTER001NAME=... (the Vorbis chapter
  extension players such as VLC and foobar2000 read).
* M4A and M4B: MP4 atoms (©nam, ©ART, ©alb, ©day, ©cmt, covr); their chapters
  are written with the audio (:mod:`dialog_tts.io.mp4`).
* WAV: nothing (no widely read tag format).
"""

from __future__ import annotations

import base64
import datetime
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from dialog_tts.errors import InputError, OutputError, excerpt


class ChapterMark(Protocol):
    """What the tag writers read of a chapter (timeline.ChapterMark): named here, not imported, since the
    script's front matter checks load this module and the timeline imports the script."""

    @property
    def title(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...

FIELDS = ("title", "artist", "album", "year", "comment")
#: The largest cover image (a FLAC picture block holds at most 16 MiB).
MAX_COVER_BYTES = 10 * 1000 ** 2
# Control characters: a newline splits an ID3 title in two, a NUL cuts a comment short.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_COMMENT_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")   # a comment may hold lines and tabs
_YEAR = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def check_value(key: str, value: str) -> str:
    """*value* for the tag *key*, checked: InputError (no location; the caller adds it) if it is not valid.

    No control characters (a comment may hold newlines and tabs); a year is
    ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``, a real date (what ID3's TDRC, Vorbis
    DATE and MP4's ©day all read).
    """
    bad = (_COMMENT_CONTROL if key == "comment" else _CONTROL).search(value)
    if bad is not None:
        allowed = "; a comment may hold newlines" if key != "comment" else ""
        raise InputError(f"{key} holds the control character {bad.group()!r} (U+{ord(bad.group()):04X}): "
                         f"a tag is text{allowed}")
    if key == "year" and value:
        m = _YEAR.fullmatch(value)
        try:
            if m is None:
                raise ValueError
            datetime.date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
        except ValueError:
            raise InputError(f"year {excerpt(value)} is not a year: write 2025, 2025-03 or 2025-03-14") from None
    return value


def check_cover(path: str | os.PathLike[str]) -> None:
    """InputError (naming *path*) unless *path* is a regular file of at most MAX_COVER_BYTES.

    Only ``stat`` is called: a FIFO is not opened (which would wait for a writer) and
    ``/dev/zero`` is not read.
    """
    from dialog_tts.script.textfiles import file_kind

    shown = os.fspath(path)
    try:
        info = os.stat(shown)
    except FileNotFoundError:
        raise InputError("cover file not found", path=shown) from None
    except OSError as exc:
        raise InputError(f"cannot read the cover image: {exc.strerror or exc}", path=shown) from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"is {file_kind(info.st_mode)}: a cover must be a regular file (a JPEG or PNG image)",
                         path=shown)
    if info.st_size > MAX_COVER_BYTES:
        raise InputError(f"the cover image is larger than {MAX_COVER_BYTES // 1000 ** 2} MB", path=shown)


@dataclass(frozen=True)
class Tags:
    """What a finished file says about itself; empty strings are left out."""

    title: str = ""
    artist: str = ""
    album: str = ""
    year: str = ""
    comment: str = ""
    cover: str = ""          # path of a JPEG or PNG image

    @classmethod
    def merged(cls, front_matter: Mapping[str, str], options: Mapping[str, Any]) -> Tags:
        """The script's front matter, overridden by the options given (non-empty ones)."""
        values = {k: str(front_matter.get(k, "") or "") for k in (*FIELDS, "cover")}
        values.update({k: str(v) for k, v in options.items() if v not in (None, "")})
        for key in FIELDS:              # checked again: a Script built in code brings its own front matter
            check_value(key, values[key])
        if values["cover"]:
            check_cover(values["cover"])
        return cls(**values)

    def __bool__(self) -> bool:
        return any(getattr(self, k) for k in (*FIELDS, "cover"))

    def cover_data(self) -> tuple[bytes, str] | None:
        """(image bytes, MIME type) of the cover, or None."""
        if not self.cover:
            return None
        from dialog_tts.script.textfiles import read_bytes

        data = read_bytes(self.cover, what="cover image", limit=MAX_COVER_BYTES)   # a regular file, bounded
        if data.startswith(b"\x89PNG"):
            return data, "image/png"
        if data.startswith(b"\xff\xd8"):
            return data, "image/jpeg"
        raise InputError("the cover must be a JPEG or PNG image", path=self.cover)


def write(path: str | os.PathLike[str], tags: Tags, chapters: Sequence[ChapterMark], rate: int,
          fmt: str | None = None) -> None:
    """Write *tags* and *chapters* (frames at *rate*) into the file at *path* (format from *fmt* or its name)."""
    ext = (fmt or Path(path).suffix).lower()
    try:
        if ext == ".mp3":
            _id3(path, tags, chapters, rate)
        elif ext in (".flac", ".ogg", ".opus"):
            _vorbis(path, ext, tags, chapters, rate)
        elif ext in (".m4a", ".m4b"):
            _mp4(path, tags)
    except OSError as exc:
        raise OutputError(f"cannot write tags: {exc.strerror or exc}", path=os.fspath(path)) from None


def _id3(path: str | os.PathLike[str], tags: Tags, chapters: Sequence[ChapterMark], rate: int) -> None:
    from mutagen import id3

    frames = id3.ID3()
    for key, frame in (("title", id3.TIT2), ("artist", id3.TPE1), ("album", id3.TALB), ("year", id3.TDRC)):
        if getattr(tags, key):
            frames.add(frame(encoding=3, text=[getattr(tags, key)]))
    if tags.comment:
        frames.add(id3.COMM(encoding=3, lang="eng", desc="", text=[tags.comment]))
    cover = tags.cover_data()
    if cover:
        frames.add(id3.APIC(encoding=3, mime=cover[1], type=3, desc="Cover", data=cover[0]))
    ids = [f"chp{i}" for i in range(len(chapters))]
    for cid, ch in zip(ids, chapters):
        frames.add(id3.CHAP(element_id=cid, start_time=_ms(ch.start, rate), end_time=_ms(ch.end, rate),
                            sub_frames=[id3.TIT2(encoding=3, text=[ch.title])]))
    if chapters:
        frames.add(id3.CTOC(element_id="toc", flags=id3.CTOCFlags.TOP_LEVEL | id3.CTOCFlags.ORDERED,
                            child_element_ids=ids, sub_frames=[id3.TIT2(encoding=3, text=["Chapters"])]))
    frames.save(os.fspath(path))


def _vorbis(path: str | os.PathLike[str], ext: str, tags: Tags, chapters: Sequence[ChapterMark], rate: int) -> None:
    import mutagen
    from mutagen.flac import Picture

    audio = mutagen.File(os.fspath(path))
    if audio is None:
        raise OutputError("cannot write tags: unknown file type", path=os.fspath(path))
    if audio.tags is None:
        audio.add_tags()
    names = {"title": "TITLE", "artist": "ARTIST", "album": "ALBUM", "year": "DATE", "comment": "COMMENT"}
    for key, name in names.items():
        if getattr(tags, key):
            audio.tags[name] = [getattr(tags, key)]
    for i, ch in enumerate(chapters, start=1):
        audio.tags[f"CHAPTER{i:03d}"] = [_clock(ch.start / rate)]
        audio.tags[f"CHAPTER{i:03d}NAME"] = [ch.title]
    cover = tags.cover_data()
    if cover:
        picture = Picture()
        picture.type, picture.mime, picture.desc, picture.data = 3, cover[1], "Cover", cover[0]
        if ext == ".flac":
            audio.add_picture(picture)
        else:
            audio.tags["METADATA_BLOCK_PICTURE"] = [base64.b64encode(picture.write()).decode("ascii")]
    audio.save()


def _mp4(path: str | os.PathLike[str], tags: Tags) -> None:
    from mutagen.mp4 import MP4, MP4Cover

    audio = MP4(os.fspath(path))
    if audio.tags is None:
        audio.add_tags()
    atoms: Any = audio.tags
    names = {"title": "\xa9nam", "artist": "\xa9ART", "album": "\xa9alb", "year": "\xa9day", "comment": "\xa9cmt"}
    for key, atom in names.items():
        if getattr(tags, key):
            atoms[atom] = [getattr(tags, key)]
    cover = tags.cover_data()
    if cover:
        kind = MP4Cover.FORMAT_PNG if cover[1] == "image/png" else MP4Cover.FORMAT_JPEG
        atoms["covr"] = [MP4Cover(cover[0], imageformat=kind)]
    audio.save()


def _ms(frames: int, rate: int) -> int:
    return round(frames * 1000 / rate)


def _clock(seconds: float) -> str:
    """HH:MM:SS.mmm"""
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
