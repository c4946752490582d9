"""hibari's G2P (spelling to Kokoro's phonemes), made by hibari's public constructor, one per accent.

The hibari and kokoro backends phonemize with hibari's ``hibari.g2p.G2P``, American or British
(``G2P(british=True)``).  It is made as hibari makes it, ``G2P(british=...)``, so its phonemes are
hibari's by construction.  The constructor parses hibari's lexicons and tagger into tables that
hold tens of MB, and a G2P never changes once made (its one lazily loaded part, the OOV net, is
read-only too), so every voice and backend in the process that wants an accent shares one G2P of
it, for as long as any of them holds it.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any

_made: weakref.WeakValueDictionary[bool, Any] = weakref.WeakValueDictionary()
_making = threading.Lock()


def make_g2p(british: bool) -> Any:
    """hibari's G2P for British (*british*) or American English, by its public constructor; the one
    already made for that accent while something still holds it.

    Raises ImportError where hibari is not installed."""
    with _making:
        g2p = _made.get(british)
        if g2p is None:
            from hibari.g2p import G2P

            g2p = _made[british] = G2P(british=british)
    return g2p


def lazy_g2p(package_dir: Path, version: str, british: bool) -> Any | None:
    """hibari's G2P for British or American English (:func:`make_g2p`).

    *package_dir* and *version* are no longer used (they named the G2P tables this module once kept
    in a file of its own); the signature stays for the backends that call it.
    """
    del package_dir, version
    return make_g2p(british)
