"""Evaluation, benchmarks and calibration on labelled music.

``evaluate`` and ``EvalConfig`` (:mod:`.run`, the ``tuneprint evaluate`` command) are imported on
first use, so that the light modules (``corpus``) load without the numerical stack.
"""

_RUN = ("EvalConfig", "SECTIONS", "evaluate")


def __getattr__(name: str):
    if name in _RUN:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
