"""The one compiled module, dialog_tts._takecheck (the quality gate's figures in one pass, the
loudness meter's K-weighting biquads, and the true-peak reader's bounds and libebur128-interpolator peaks).

Everything else is in pyproject.toml.  The module is optional: where no C
compiler is found the build goes on without it; dialog_tts.quality.checks then uses
its NumPy version of the same figures, dialog_tts.finish.kweighting uses
scipy.signal.sosfilt for the biquads, and dialog_tts.finish.loudness its NumPy versions of
the reader's passes.  ``-ffp-contract=off``: no fused multiply-adds, so the biquads do scipy's
arithmetic, and the reader's passes NumPy's, on every CPU.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("dialog_tts._takecheck", ["dialog_tts/_takecheck.c"], optional=True,
                             extra_compile_args=["-O3", "-ffp-contract=off"])])
