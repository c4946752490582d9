"""hibari's G2P (spelling to Kokoro's phonemes), made by hibari's public constructor.

The hibari and kokoro backends phonemize with hibari's ``hibari.g2p.G2P``, American or British
(``G2P(british=True)``).  It is made as hibari makes it, ``G2P(british=...)``, so its phonemes are
hibari's by construction; the constructor parses hibari's lexicons and tagger, once per backend
and accent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_g2p(british: bool) -> Any:
    """hibari's G2P for British (*british*) or American English, by its public constructor.

    Raises ImportError where hibari is not installed."""
    from hibari.g2p import G2P

    return G2P(british=british)


def lazy_g2p(package_dir: Path, version: str, british: bool) -> Any | None:
    """hibari's G2P for British or American English (:func:`make_g2p`).

    *package_dir* and *version* are no longer used (they named the G2P tables this module once kept
    in a file of its own); the signature stays for the backends that call it.
    """
    del package_dir, version
    return make_g2p(british)
