"""The quality gate's figures of a take in one compiled pass (dialog_tts/_takecheck.c)."""

import numpy as np
from numpy.typing import NDArray

def measure(
    samples: NDArray[np.float32], frame_size: int, speech: bool, /
) -> tuple[float, float, float, float, float]: ...
