"""Delivery: the direction tags that change how a line is spoken, as backend-neutral values.

A script's ``[whispering]`` or ``Tom (sadly):`` reaches the jobs step as a
direction of its :class:`~dialog_tts.script.parse.Line`.  :func:`for_directions`
turns the known tags into one :class:`Delivery` (rate factor, volume, pitch and
an instruction for backends that take one); each backend maps that onto its
voice with :meth:`Backend.apply_delivery <dialog_tts.backends.base.Backend.apply_delivery>`.
Any other direction stays an unspoken stage direction.  A leaf module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Delivery:
    """How to speak one line, whatever the backend."""

    rate: float = 1.0          # factor of the voice's rate
    volume: float = 0.0        # dB
    pitch: float = 0.0         # semitones
    instruct: str = ""         # in words, for backends that take an instruction (Qwen)

    def __add__(self, other: Delivery) -> Delivery:
        instruct = "; ".join(i for i in (self.instruct, other.instruct) if i)
        return Delivery(self.rate * other.rate, self.volume + other.volume, self.pitch + other.pitch, instruct)


#: The direction tags that change delivery (docs/script-format.md, "Delivery per line"), by their canonical name.
TAGS: dict[str, Delivery] = {
    "whispering": Delivery(0.9, -10.0, 0.0, "whisper, very softly and breathily"),
    "shouting": Delivery(1.05, 5.0, 2.0, "shout, loud and forceful"),
    "softly": Delivery(0.95, -5.0, 0.0, "speak softly and gently"),
    "loudly": Delivery(1.0, 4.0, 1.0, "speak loudly and clearly"),
    "slowly": Delivery(0.8, 0.0, 0.0, "speak slowly and deliberately"),
    "quickly": Delivery(1.25, 0.0, 0.0, "speak quickly"),
    "sadly": Delivery(0.88, -3.0, -1.0, "sound sad and downcast"),
    "excitedly": Delivery(1.15, 2.0, 2.0, "sound excited and full of energy"),
    "angrily": Delivery(1.08, 4.0, 1.0, "sound angry"),
    "happily": Delivery(1.08, 1.0, 1.5, "sound happy and cheerful"),
    "calmly": Delivery(0.92, -1.0, -0.5, "sound calm and relaxed"),
    "nervously": Delivery(1.1, -2.0, 1.0, "sound nervous and hesitant"),
}
#: Other spellings of the same tags.
ALIASES: dict[str, str] = {
    "whisper": "whispering", "whispers": "whispering", "whispered": "whispering",
    "shout": "shouting", "shouts": "shouting", "shouted": "shouting", "yelling": "shouting", "yells": "shouting",
    "quietly": "softly", "gently": "softly", "soft": "softly",
    "loud": "loudly",
    "slow": "slowly",
    "fast": "quickly", "quick": "quickly", "hurriedly": "quickly", "rapidly": "quickly",
    "sad": "sadly",
    "excited": "excitedly",
    "angry": "angrily",
    "happy": "happily", "cheerfully": "happily",
    "calm": "calmly",
    "nervous": "nervously",
}


def tag_of(direction: str) -> str | None:
    """The canonical tag a direction names (``"Whispers"`` → ``"whispering"``), or None."""
    word = " ".join(direction.split()).lower()
    return word if word in TAGS else ALIASES.get(word)


def for_directions(directions: Iterable[str]) -> Delivery | None:
    """The combined delivery of the known tags among *directions* (each tag counted once), or None."""
    tags = list(dict.fromkeys(t for t in map(tag_of, directions) if t is not None))
    if not tags:
        return None
    total = Delivery()
    for tag in tags:
        total = total + TAGS[tag]
    return total
