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
    """A distinct 'song' per seed: chords, a bass line and a melody on instruments of the
    seed's choosing over a drum pattern, in the seed's key and tempo.

    Returns mono float32 [shape=(seconds · sr,)], peak 0.3.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = np.zeros(n)
    beat = 60.0 / rng.uniform(80, 150)
    root = int(rng.integers(45, 57))
    scale = np.array([0, 2, 4, 5, 7, 9, 11] if rng.random() < 0.5 else [0, 2, 3, 5, 7, 8, 10])
    progression = rng.choice(7, size=4, replace=True)
    lead, pad = rng.choice(len(_INSTRUMENTS), size=2, replace=False)
    kicks, snares = rng.random(8) < 0.4, rng.random(8) < 0.3
    kicks[0] = True
    hats = rng.random(16) < 0.6

    def note(start_s, dur_s, midi, instrument, gain):
        i0 = int(start_s * sr)
        if i0 >= n:
            return
        t = np.arange(min(int(dur_s * sr), n - i0)) / sr
        f = 440.0 * 2 ** ((midi - 69) / 12)
        y[i0 : i0 + len(t)] += gain * _INSTRUMENTS[instrument](f, t, dur_s)

    bars = int(seconds / (4 * beat)) + 1
    for bar in range(bars):
        degree = progression[bar % 4]
        chord = [root + scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]
        t0 = bar * 4 * beat
        for midi in chord:
            note(t0, 4 * beat, midi, pad, 0.25)
        note(t0, 2 * beat, chord[0] - 12, 0, 0.5)  # bass
        note(t0 + 2 * beat, 2 * beat, chord[0] - 12 + 7, 0, 0.45)
        for step in range(8):
            midi = root + 12 + scale[rng.integers(7)] + 12 * int(rng.random() < 0.3)
            if rng.random() < 0.8:
                note(t0 + step * beat / 2, beat / 2 * rng.choice([1, 2]), midi, lead, 0.35)
            if kicks[step]:
                _drum(y, t0 + step * beat / 2, sr, "kick", rng)
            if snares[step]:
                _drum(y, t0 + step * beat / 2, sr, "snare", rng)
        for step in range(16):
            if hats[step]:
                _drum(y, t0 + step * beat / 4, sr, "hat", rng)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def _saw(f, t, dur):
    return sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 8)) * np.exp(-t * 1.5)


def _square(f, t, dur):
    return sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 9, 2)) * np.minimum(1.0, 10 * (dur - t))


def _bell(f, t, dur):  # FM: a bright, inharmonic attack
    return np.sin(2 * np.pi * f * t + 3.0 * np.exp(-t * 4) * np.sin(2 * np.pi * 3.5 * f * t)) * np.exp(-t * 3)


def _organ(f, t, dur):
    return (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t) + 0.25 * np.sin(8 * np.pi * f * t)) * np.minimum(1.0, 20 * t)


def _pluck(f, t, dur):
    return sum(np.sin(2 * np.pi * k * f * t) * np.exp(-t * 3 * k) / k for k in range(1, 6))


_INSTRUMENTS = [_organ, _saw, _square, _bell, _pluck]


def _drum(y: np.ndarray, start_s: float, sr: int, kind: str, rng: np.random.Generator) -> None:
    i0 = int(start_s * sr)
    length = {"kick": 0.25, "snare": 0.18, "hat": 0.05}[kind]
    t = np.arange(min(int(length * sr), len(y) - i0)) / sr
    if len(t) == 0:
        return
    if kind == "kick":
        hit = np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    elif kind == "snare":
        hit = 0.6 * rng.standard_normal(len(t)) * np.exp(-t * 25) + 0.3 * np.sin(2 * np.pi * 190 * t) * np.exp(-t * 20)
    else:
        hit = 0.3 * np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t * 80)
    y[i0 : i0 + len(t)] += hit


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
    from tuneprint.server.library import Library, LibrarySettings

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
    from tuneprint.server.library import Library

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
