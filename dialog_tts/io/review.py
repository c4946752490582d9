"""A review page: one self-contained HTML file to listen and read along.

The page holds the transcript (speakers in colours), the chapters and an
audio player; the audio is the rendered file beside the page (a relative
link) or embedded as base64.  Clicking a line (or Enter on it) plays from its
start; the line being spoken is highlighted as the audio plays; failed and
flagged lines are marked, and so are lines kept with a warning (their take
failed only a soft check: a long pause, a slow reading) for a listen.  Keys: Space or K plays and pauses, J and L go to
the previous and next line, arrows move between lines.  Nothing is loaded
from the network: the style and script are inline.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from dialog_tts.finish.timeline import ChapterMark, Kind, Timeline

#: Colours for speakers, in order of first line (readable on white, told apart by colour-blind readers too).
PALETTE = ("#1f5fbf", "#b3261e", "#1e7a3c", "#8a4baf", "#a35a00", "#00718a", "#9c2f6b", "#5b6b00")
MIME = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg",
        ".flac": "audio/flac", ".m4a": "audio/mp4", ".m4b": "audio/mp4"}


def audio_source(page: str | os.PathLike[str], audio: str | os.PathLike[str] | None,
                 data: bytes | None = None, ext: str = ".wav") -> str:
    """The page's audio src: a link relative to the page, or (with *data*) a base64 data URI."""
    if data is not None or audio is None:
        mime = MIME.get(ext, "audio/wav")
        return f"data:{mime};base64,{base64.b64encode(data or b'').decode('ascii')}"
    from urllib.parse import quote

    rel = os.path.relpath(Path(audio).resolve(), Path(page).resolve().parent)
    return "/".join(quote(part, safe="") for part in rel.split(os.sep))   # ep#1.wav, q?x.wav, a:b.wav


def line_items(timeline: Timeline, records: Sequence[Any]) -> list[dict[str, Any]]:
    """One item per script line (placed or failed), in order: times, speaker, text, marks."""
    rate = timeline.sample_rate
    items = []
    for entry in timeline.entries:
        if entry.kind not in (Kind.LINE, Kind.MISSING):
            continue
        record = records[entry.index] if entry.index < len(records) else None
        flags = list(getattr(record, "flags", None) or [])
        items.append({"start": round(entry.start / rate, 3), "end": round(entry.end / rate, 3),
                      "speaker": entry.speaker, "text": entry.text, "line": entry.source_line,
                      "failed": entry.kind is Kind.MISSING or bool(getattr(record, "error", None)),
                      "flags": flags, "warnings": list(getattr(record, "warnings", None) or [])})
    return items


def page(title: str, src: str, items: list[dict[str, Any]], chapters: Sequence[ChapterMark], rate: int) -> str:
    """The whole page as text."""
    speakers = list(dict.fromkeys(i["speaker"] for i in items))
    colour = {s: PALETTE[n % len(PALETTE)] for n, s in enumerate(speakers)}
    rows = "\n".join(_row(n, item, colour[item["speaker"]]) for n, item in enumerate(items))
    chapter_list = "".join(f'<li><button type="button" class="chapter" data-start="{c.start / rate:.3f}">'
                           f'{html.escape(c.title)}</button></li>' for c in chapters)
    legend = "".join(f'<li style="color:{colour[s]}">{html.escape(s)}</li>' for s in speakers)
    parts = {"title": html.escape(title), "src": html.escape(src, quote=True),
             "chapters": f'<nav aria-label="Chapters"><h2>Chapters</h2><ol>{chapter_list}</ol></nav>'
             if chapters else "",
             "legend": legend, "rows": rows, "data": script_json(items)}
    # one pass: a line's text that reads "{{data}}" stays text
    return _SLOT.sub(lambda m: parts[m.group(1)], _TEMPLATE)


_SLOT = re.compile(r"\{\{(title|src|chapters|legend|rows|data)\}\}")


def script_json(value: Any) -> str:
    """*value* as JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` at all.

    ``</script>`` would end the element and ``<!--`` (followed by ``<script``) would
    put the parser in a state where the page's own script is swallowed; as ``\\u003c``
    escapes they are the same JSON strings.
    """
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _row(n: int, item: dict[str, Any], colour: str) -> str:
    marks = []
    if item["failed"]:
        marks.append('<span class="mark failed-mark">failed: left silent</span>')
    if item["flags"]:
        marks.append(f'<span class="mark flag-mark">flagged: {html.escape(", ".join(map(str, item["flags"])))}</span>')
    warnings = item.get("warnings") or []
    if warnings:
        marks.append(f'<span class="mark warn-mark">listen: {html.escape(", ".join(map(str, warnings)))}</span>')
    classes = ("line" + (" failed" if item["failed"] else "") + (" flagged" if item["flags"] else "")
               + (" warned" if warnings else ""))
    return (f'<li class="{classes}" tabindex="0" role="button" data-index="{n}" data-start="{item["start"]:.3f}" '
            f'data-end="{item["end"]:.3f}" aria-label="Line {item["line"]}, {html.escape(item["speaker"])}">'
            f'<span class="time">{_clock(item["start"])}</span> '
            f'<span class="speaker" style="color:{colour}">{html.escape(item["speaker"])}</span> '
            f'<span class="text">{html.escape(item["text"])}</span>{"".join(marks)}</li>')


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 52rem; margin: 0 auto; padding: 1rem; color: #1a1a1a; }
header { position: sticky; top: 0; background: #fff; padding: .5rem 0; border-bottom: 1px solid #ddd; }
audio { width: 100%; }
.keys { font-size: .85rem; color: #555; margin: .25rem 0 0; }
ol.lines { list-style: none; padding: 0; }
.line { padding: .35rem .5rem; border-left: 4px solid transparent; cursor: pointer; border-radius: 4px; }
.line:hover { background: #f3f3f3; }
.line:focus { outline: 3px solid #1f5fbf; outline-offset: 1px; }
.line.current { background: #fff4c2; border-left-color: #c99a00; }
.line.failed { background: #fde8e7; }
.line.flagged { border-left-color: #b3261e; }
.line.warned { border-left-color: #a35a00; }
.time { font-variant-numeric: tabular-nums; color: #666; font-size: .85rem; }
.speaker { font-weight: 600; }
.mark { margin-left: .5rem; font-size: .8rem; padding: 0 .3rem; border-radius: 3px; background: #b3261e; color: #fff; }
.warn-mark { background: #8a4b00; }
.legend { display: flex; gap: 1rem; list-style: none; padding: 0; margin: .25rem 0; font-weight: 600; }
nav ol { padding-left: 1.25rem; }
button.chapter { background: none; border: none; color: #1f5fbf; text-decoration: underline; cursor: pointer;
  font: inherit; padding: 0; }
</style>
</head>
<body>
<header>
<h1>{{title}}</h1>
<audio id="player" controls preload="auto" src="{{src}}"></audio>
<ul class="legend" aria-label="Speakers">{{legend}}</ul>
<p class="keys">Click a line or press Enter on it to play from there.
Space or K: play/pause. J / L: previous / next line. Arrow keys: move between lines.</p>
</header>
{{chapters}}
<main>
<ol class="lines" id="lines">
{{rows}}
</ol>
</main>
<script id="line-data" type="application/json">{{data}}</script>
<script>
(function () {
  "use strict";
  var audio = document.getElementById("player");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#lines .line"));
  var starts = rows.map(function (r) { return parseFloat(r.dataset.start); });
  var current = -1;
  function lineAt(t) {
    var lo = 0, hi = starts.length - 1, found = -1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (starts[mid] <= t) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
    }
    return found;
  }
  function highlight() {
    var i = lineAt(audio.currentTime);
    if (i === current) { return; }
    if (current >= 0) { rows[current].classList.remove("current"); rows[current].removeAttribute("aria-current"); }
    current = i;
    if (i >= 0) {
      rows[i].classList.add("current");
      rows[i].setAttribute("aria-current", "true");
    }
  }
  function seek(t, play) {
    audio.currentTime = t;
    highlight();
    if (play) { var p = audio.play(); if (p && p.catch) { p.catch(function () {}); } }
  }
  function tick() { highlight(); if (!audio.paused) { window.requestAnimationFrame(tick); } }
  audio.addEventListener("play", function () { window.requestAnimationFrame(tick); });
  audio.addEventListener("timeupdate", highlight);
  audio.addEventListener("seeked", highlight);
  rows.forEach(function (row, i) {
    row.addEventListener("click", function () { seek(starts[i], true); });
    row.addEventListener("keydown", function (e) {
      if (e.key === "Enter") { e.preventDefault(); seek(starts[i], true); }
      else if (e.key === "ArrowDown" && rows[i + 1]) { e.preventDefault(); rows[i + 1].focus(); }
      else if (e.key === "ArrowUp" && rows[i - 1]) { e.preventDefault(); rows[i - 1].focus(); }
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("button.chapter"), function (b) {
    b.addEventListener("click", function () { seek(parseFloat(b.dataset.start), true); });
  });
  document.addEventListener("keydown", function (e) {
    var tag = (e.target && e.target.tagName) || "";
    if (tag === "AUDIO" || tag === "BUTTON" || tag === "INPUT") { return; }
    if (e.key === " " || e.key === "k") {
      e.preventDefault();
      if (audio.paused) { audio.play().catch(function () {}); } else { audio.pause(); }
    } else if (e.key === "j" || e.key === "l") {
      var i = lineAt(audio.currentTime) + (e.key === "l" ? 1 : -1);
      if (i >= 0 && i < rows.length) { seek(starts[i], !audio.paused); rows[i].focus(); }
    }
  });
  window.dialogReview = { lineAt: lineAt, current: function () { return current; }, starts: starts };
})();
</script>
</body>
</html>
"""


def write_text(path: str | os.PathLike[str], text: str) -> None:
    from dialog_tts.io.audio import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
