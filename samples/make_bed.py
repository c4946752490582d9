"""Make samples/bed.ogg: a soft synthesized pad, 8 seconds, royalty-free (made here, from sine waves).

    python samples/make_bed.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 22050
SECONDS = 8.0
CHORD = (110.0, 164.81, 220.0, 261.63, 329.63, 493.88)   # A minor add 9, A2 to B4


def pad(seconds: float = SECONDS, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    out = np.zeros((t.size, 2))
    for n, freq in enumerate(CHORD):
        for ch, detune in enumerate((-0.15, 0.15)):            # a little apart left and right: width
            f = freq * 2 ** (detune / 1200 * (n + 1))
            voice = np.sin(2 * np.pi * f * t) + 0.25 * np.sin(4 * np.pi * f * t + n)
            swell = 0.75 + 0.25 * np.sin(2 * np.pi * t / seconds * (1 + n % 3) + n)   # whole cycles: loops well
            out[:, ch] += voice * swell / (1 + n * 0.35)
    out /= np.abs(out).max()
    return (0.5 * out).astype(np.float32)


if __name__ == "__main__":
    sf.write(Path(__file__).with_name("bed.ogg"), pad(), RATE, format="OGG", subtype="VORBIS")
