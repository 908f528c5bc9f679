"""server/evaluation/noise.py: mixing voices into babble."""
from __future__ import annotations

import numpy as np

from tuneprint.server.evaluation.noise import crowd, excerpt


def test_excerpt_has_the_length_asked_for_even_from_a_short_sound():
    rng = np.random.default_rng(0)
    y = np.arange(10, dtype=np.float32)
    clip = excerpt(y, 25, rng)
    assert clip.shape == (25,)
    assert np.all(np.diff(clip)[np.diff(clip) > 0] == 1)  # the sound looped in order


def test_crowd_sums_voices_and_peaks_at_0_9():
    rng = np.random.default_rng(1)
    voices = iter([np.sin(np.linspace(0, 50, 1000)), 3 * np.cos(np.linspace(0, 70, 1000)), np.ones(1000)])
    mix = crowd(3, lambda: next(voices), rng)
    assert mix.dtype == np.float32 and mix.shape == (1000,)
    assert np.isclose(np.abs(mix).max(), 0.9)
