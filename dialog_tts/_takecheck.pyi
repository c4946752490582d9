"""The quality gate's figures of a take in one compiled pass, and the K-weighting biquads (dialog_tts/_takecheck.c)."""

import numpy as np
from numpy.typing import NDArray

def measure(
    samples: NDArray[np.float32], frame_size: int, speech: bool, /
) -> tuple[float, float, float, float, float]: ...
def biquads(sos: NDArray[np.floating], x: NDArray[np.floating], zi: NDArray[np.floating], /) -> None: ...
