"""How alike a clip's own patches are (index.search.self_similarity) for music and for steady
sounds: the measurement behind ``LibrarySettings.label_steady_similarity``, the bar above which
`genre` says "no clear label" (scripts/steady_sounds.py).
"""
from __future__ import annotations

import numpy as np

from tuneprint.encoder.audio import load_audio
from tuneprint.index.search import self_similarity

from .clips import random_clips

STEADY_SECONDS = 10.0


def steady_sounds(sr: int, seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sounds that do not change: test tones, a mains hum, a held organ chord, noises."""
    t = np.arange(int(seconds * sr)) / sr
    chord = sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 3
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8))
    white = rng.standard_normal(len(t))
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(len(t) // 2 + 1), 1)), len(t))
    sounds = {f"sine {f} Hz": np.sin(2 * np.pi * f * t) for f in (100, 440, 1000, 4000)}
    sounds.update({"held chord": chord, "mains hum": hum, "white noise": white, "pink noise": pink})
    return {name: (0.3 * y / np.max(np.abs(y))).astype(np.float32) for name, y in sounds.items()}


def measure(embedder, songs: list[str], noises, rng: np.random.Generator, hop_frames: int,
            conditions=("clean", "noise", "phone", "reverb")) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Self-similarity of 10-s clips of ``songs`` per condition, and of each steady sound."""
    sr = embedder.features.sample_rate
    music: dict[str, list[float]] = {c: [] for c in conditions}
    for path in songs:
        y = load_audio(path, sr=sr)
        for clip in random_clips(y, sr, rng, noises, conditions, per_condition=1, seconds=STEADY_SECONDS):
            emb = embedder.embed_audio(clip.samples, hop_frames=hop_frames, pad=True)
            music[clip.condition].append(self_similarity(emb.vectors))
    steady = {name: self_similarity(embedder.embed_audio(y, hop_frames=hop_frames, pad=True).vectors)
              for name, y in steady_sounds(sr, STEADY_SECONDS, rng).items()}
    return music, steady


def summary_markdown(music: dict[str, list[float]], steady: dict[str, float], bar: float) -> str:
    rows = [f"| music, {c} | {len(v)} | {np.median(v):.3f} | {np.max(v):.3f} | {np.mean(np.array(v) >= bar):.1%} |"
            for c, v in music.items() if v]
    rows += [f"| {name} | 1 | {s:.3f} | {s:.3f} | {'yes' if s >= bar else 'no'} |" for name, s in steady.items()]
    return ("10-s clips of held-out songs (test songs and unseen collections) and synthetic steady sounds; "
            f"`genre` says \"no clear label\" at self-similarity ≥ {bar:g}.\n\n"
            "| clips | n | median self-similarity | max | \"no clear label\" |\n| --- | --- | --- | --- | --- |\n"
            + "\n".join(rows) + "\n")
