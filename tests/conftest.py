"""Shared fixtures: generated audio (synthesised melodies with drums) and a small real library.

Set TUNEPRINT_TEST_MODEL to a checkpoint path to run the suite against another encoder
than the shipped default.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 22050


def _frozen_model(spec: str) -> str:
    """A checkpoint path is copied once per session: a training run rewrites its latest checkpoint
    every few minutes, and a library refuses to open with weights other than those it was built with."""
    if spec in ("", "default", "seeded") or not Path(spec).is_file():
        return spec  # names, and missing files (for the loader to report)
    folder = tempfile.mkdtemp(prefix="tuneprint-test-model-")
    atexit.register(shutil.rmtree, folder, True)
    return str(shutil.copy2(spec, Path(folder) / Path(spec).name))


TEST_MODEL = _frozen_model(os.environ.get("TUNEPRINT_TEST_MODEL", "default"))
N_SONGS = 10
SONG_SECONDS = 20.0


def synth_song(seed: int, seconds: float = SONG_SECONDS, sr: int = SR) -> np.ndarray:
    """A distinct 'song' per seed: a random melody of harmonic notes over a noise-burst beat.

    Returns mono float32 [shape=(seconds · sr,)], peak 0.3.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = np.zeros(n)
    beat = 60.0 / rng.uniform(80, 160)
    notes = rng.integers(40, 80, size=int(seconds / beat) + 1)
    decay = rng.uniform(2, 6)
    for i, note in enumerate(notes):
        f = 440.0 * 2 ** ((note - 69) / 12)
        start = int(i * beat * sr)
        stop = min(n, start + int(beat * sr))
        tt = t[: stop - start]
        tone = np.sin(2 * np.pi * f * tt) + 0.5 * np.sin(4 * np.pi * f * tt + rng.uniform(0, 6)) + 0.3 * np.sin(6.02 * np.pi * f * tt)
        y[start:stop] += np.exp(-tt * decay) * tone
        if i % 2 == 0:  # a drum hit every other note
            hit = min(2000, n - start)
            y[start : start + hit] += rng.normal(0, 0.3, hit) * np.exp(-np.arange(hit) / 300)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def add_noise(y: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise at ``snr_db`` below the signal's power."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(len(y)).astype(np.float32)
    noise *= np.sqrt((y**2).mean() / ((noise**2).mean() * 10 ** (snr_db / 10)))
    return (y + noise).astype(np.float32)


def cut(y: np.ndarray, start_s: float, seconds: float = 3.0, sr: int = SR) -> np.ndarray:
    return y[int(start_s * sr) : int((start_s + seconds) * sr)]


@pytest.fixture(scope="session")
def song_dir(tmp_path_factory) -> Path:
    """N_SONGS generated songs as WAV files, song00.wav … song09.wav."""
    folder = tmp_path_factory.mktemp("songs")
    for i in range(N_SONGS):
        sf.write(folder / f"song{i:02d}.wav", synth_song(i), SR)
    return folder


@pytest.fixture(scope="session")
def library_path(tmp_path_factory, song_dir) -> Path:
    """A library built once per session from ``song_dir``; even songs labelled 'alpha', odd 'beta'.

    Tests must not change it: copy it (``library_copy``) to write.
    """
    from server.library import Library, LibrarySettings

    root = tmp_path_factory.mktemp("lib") / "library"
    files = sorted(song_dir.glob("*.wav"))
    labels = {str(f.resolve()): ["alpha" if i % 2 == 0 else "beta"] for i, f in enumerate(files)}
    with Library.create(root, LibrarySettings(model=TEST_MODEL)) as lib:
        results = lib.add(files, labels=labels)
    assert all(r.status == "added" for r in results)
    return root


@pytest.fixture(scope="session")
def library(library_path):
    """The session's library, opened read-only by convention."""
    from server.library import Library

    lib = Library.open(library_path)
    yield lib
    lib.close()


@pytest.fixture
def library_copy(library_path, tmp_path) -> Path:
    """A private copy of the session library that a test may change."""
    import shutil

    dest = tmp_path / "library"
    shutil.copytree(library_path, dest)
    return dest
