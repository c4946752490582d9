"""How earnest.txt and ideal_husband.txt were made (kept for the record; the tests read the .txt files).

    python tests/data/plays/convert.py earnest earnest-1.php earnest-2.php earnest-3.php > earnest.txt
    python tests/data/plays/convert.py ideal ideal_husband.rb > ideal_husband.txt

The sources are named in tests/data/plays/README.md.  Nothing here changes Wilde's words: speeches
become ``Name: text`` turns, stage directions ``[...]``, Earnest's acts ``## ...`` chapters.
"""

from __future__ import annotations

import html
import re
import sys

_TAG = re.compile(r"</?b>")


def earnest(paths: list[str]) -> list[str]:
    out = ["---", "title: The Importance of Being Earnest", "artist: Oscar Wilde", "---", ""]
    for path in paths:
        for raw in open(path, encoding="utf-8").read().splitlines():
            line = html.unescape(_TAG.sub("", raw)).strip()
            if m := re.fullmatch(r"<h6>(.*)</h6>", line):
                out += ["", f"## {m.group(1).title()}", ""]
            elif m := re.fullmatch(r"<p>(.*)</p>", line):
                text = m.group(1).strip()
                if text == "by Oscar Wilde":
                    continue
                speech = re.fullmatch(r"([A-Z][A-Za-z. ]{1,30}?)(?:\.\s+|\s+(?=\[Speaking together))(.*)", text)
                if speech and not text.startswith(("SCENE", "[")):
                    out.append(f"{speech.group(1)}: {speech.group(2)}")
                elif text.startswith("["):
                    out.append(text)
                else:
                    out.append(f"[{text.rstrip('.')}]")
    return out


def ideal(paths: list[str]) -> list[str]:
    text = open(paths[0], encoding="utf-8").read()
    body = text.split("<<~STRING", 1)[1].split("STRING", 1)[0]
    out = ["---", "title: An Ideal Husband", "artist: Oscar Wilde", "---", ""]
    names = set(re.findall(r"^([A-Z][A-Za-z. ]{1,30}?):\s", body, re.MULTILINE))
    for raw in body.splitlines():
        line = raw.strip()
        if not line:
            continue
        if set(line) == {"*"}:          # the source's scene breaks (its acts are not marked)
            out.append("")
            continue
        m = re.fullmatch(r"([A-Z][A-Za-z. ]{1,30}?):\s+(.*)", line)
        if m is None or m.group(1) not in names:      # "Mrs. Cheveley.  text": the name before ".  "
            m = re.fullmatch(rf"({'|'.join(map(re.escape, names))})\.\s+(.*)", line)
        if m is None:
            raise SystemExit(f"not a speech: {line[:80]}")
        name, speech = m.group(1).strip(), m.group(2).strip()
        if speech.startswith("[direct address]"):
            speech = speech.removeprefix("[direct address]").strip()
            if not speech.startswith("That admirable father"):      # the others describe the stage
                out.append(f"[{speech.rstrip('.')}]")
                continue
        out.append(f"{name}: {speech}")
    return out


if __name__ == "__main__":
    kind, *files = sys.argv[1:]
    print("\n".join(earnest(files) if kind == "earnest" else ideal(files)))
