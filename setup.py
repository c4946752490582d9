"""The one compiled module, dialog_tts._takecheck (the quality gate's figures in one pass).

Everything else is in pyproject.toml.  The module is optional: where no C
compiler is found the build goes on without it, and dialog_tts.quality uses
its NumPy version of the same figures.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("dialog_tts._takecheck", ["dialog_tts/_takecheck.c"], optional=True,
                             extra_compile_args=["-O3"])])
