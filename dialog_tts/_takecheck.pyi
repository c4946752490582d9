"""The quality gate's figures of a take in one compiled pass, the K-weighting biquads and the true-peak
reader's bounds and libebur128's interpolator's peaks (dialog_tts/_takecheck.c)."""

import numpy as np
from numpy.typing import NDArray

def measure(
    samples: NDArray[np.float32], frame_size: int, speech: bool, /
) -> tuple[float, float, float, float, float]: ...
def biquads(sos: NDArray[np.floating], x: NDArray[np.floating], zi: NDArray[np.floating], /) -> None: ...
def peak_bounds(
    up: NDArray[np.float32], before: NDArray[np.float32], after: NDArray[np.float32], factor: int, lead: int,
    window: int, out: NDArray[np.float32], /,
) -> bool: ...
def frame_points(
    data: NDArray[np.float32], taps: NDArray[np.float32], factor: int, offset: int, out: NDArray[np.float32], /,
) -> bool: ...
