"""Clips for every benchmark, evaluation and calibration: cut from a song at a random offset and
degraded by one named condition (:data:`encoder.augment.CONDITIONS`).

Two ways of drawing them, each kept as it was measured so that published figures reproduce:

- :func:`random_clips` (benchmark, calibration): for each condition, clips at fresh random offsets;
  the excerpt is exactly the clip's length, so a "speed" clip comes out a little longer or shorter;
- :func:`excerpt_clips` (``tuneprint evaluate``): for each clip length a few excerpts, each heard
  under every condition; every clip lasts exactly its length (:func:`degrade_clip`).

Recorded noises to mix in come from :func:`load_noises`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from tuneprint.encoder.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, load_audio
from tuneprint.encoder.augment import CONDITIONS, ConditionConfig, apply_condition, speed_factor
from tuneprint.errors import AudioError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipConfig:
    """The evaluation's clips (:func:`excerpt_clips`) and how their answers are scored."""

    durations_s: tuple[float, ...] = (1.0, 3.0, 5.0, 10.0)
    conditions: tuple[str, ...] = CONDITIONS
    clips_per_song: int = 3  # random offsets per song and duration; every condition degrades the same excerpt
    snr_db: tuple[float, float] = (0.0, 10.0)  # "noise": background at this SNR
    phone_snr_db: tuple[float, float] = (10.0, 20.0)  # "phone": some noise, then 300–3400 Hz at 8 kHz via MP3/GSM
    rt60_s: tuple[float, float] = (0.3, 0.9)  # "reverb": a synthetic room of this reverberation time
    speed_change: tuple[float, float] = (0.01, 0.03)  # "speed": faster or slower by this much (tempo and pitch)
    offset_tolerance_s: float = 1.0  # an offset answer within this of the truth counts as right

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def degradations(self) -> ConditionConfig:
        return ConditionConfig(self.snr_db, self.phone_snr_db, self.rt60_s, self.speed_change)


@dataclass(frozen=True)
class Clip:
    """One degraded clip and where it came from."""

    start_s: float  # where in the song the excerpt starts
    duration_s: float  # the length asked for
    condition: str
    samples: np.ndarray  # [shape=(n,), dtype=float32]
    snr_db: float | None = None  # the noise level drawn, for noisy conditions
    noise_index: int | None = None  # the recorded noise mixed in (into the list of noises), if any


def noise_files(folder: str | os.PathLike) -> list[Path]:
    """The audio files under ``folder``, sorted by path."""
    return sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS)


def load_noises(folder: str | os.PathLike | None, sr: int = SAMPLE_RATE, limit: int | None = None,
                seed: int = 0) -> list[np.ndarray]:
    """Recorded noises (sound effects, speech) from ``folder``, in the order of their file names.

    Up to ``limit`` files drawn by ``seed`` (all when None). Files that cannot be decoded, are
    silent or shorter than 0.1 s are left out. None or "" gives no noises (callers then mix in
    white/pink/brown noise).
    """
    if not folder:
        return []
    files = noise_files(folder)
    if not files:
        raise AudioError(f"{folder}: no audio files to use as noise")
    pick = np.random.default_rng(seed).permutation(len(files))[:limit]
    noises = []
    for j in sorted(pick):
        try:
            y = load_audio(files[j], sr=sr)
        except AudioError as e:
            log.warning("noise: skipping %s", e)
            continue
        if np.abs(y).max() > 1e-4 and len(y) > sr // 10:
            noises.append(y)
    return noises


def cut_clip(y: np.ndarray, sr: int, start_s: float, duration_s: float, condition: str, rng: np.random.Generator,
             noises: Sequence[np.ndarray], info: dict | None = None) -> np.ndarray:
    """The excerpt of ``duration_s`` at ``start_s`` in ``y`` (samples truncated to whole ones), degraded
    by ``condition`` (:func:`encoder.augment.apply_condition`'s default levels). "speed" plays the
    excerpt faster or slower, so that clip is a little shorter or longer. ``info`` receives what was drawn."""
    first = int(start_s * sr)
    return apply_condition(y[first : first + int(duration_s * sr)], condition, sr, rng, list(noises), info=info)


def degrade_clip(y: np.ndarray, sr: int, start_s: float, duration_s: float, condition: str,
                 rng: np.random.Generator, noises: Sequence[np.ndarray], cfg: ClipConfig = ClipConfig()) -> np.ndarray:
    """The clip of ``duration_s`` starting at ``start_s`` in ``y``, as ``condition`` hears it.

    Returns exactly ``round(duration_s · sr)`` samples [shape=(n,), float32]; for "speed" the
    excerpt is taken longer or shorter so that, played faster or slower, it lasts ``duration_s``.
    """
    n_out = int(round(duration_s * sr))
    factor = speed_factor(condition, rng, cfg.degradations)
    first = int(round(start_s * sr))
    clip = y[first : first + int(round(n_out * factor))].astype(np.float32)
    clip = apply_condition(clip, condition, sr, rng, list(noises), cfg.degradations, factor=factor)
    return np.pad(clip, (0, max(0, n_out - len(clip))))[:n_out].astype(np.float32)


def random_clips(y: np.ndarray, sr: int, rng: np.random.Generator, noises: Sequence[np.ndarray],
                 conditions: Sequence[str], per_condition: int, seconds: float) -> Iterator[Clip]:
    """``per_condition`` clips of ``seconds`` for each condition, each at a fresh random offset (:func:`cut_clip`).

    ``rng`` draws every offset and degradation in turn, so one generator shared over a list of
    songs gives the same clips whenever the songs come in the same order.
    """
    for condition in conditions:
        for _ in range(per_condition):
            start = rng.uniform(0, len(y) / sr - seconds)
            drawn: dict = {}
            samples = cut_clip(y, sr, start, seconds, condition, rng, noises, info=drawn)
            yield Clip(start, seconds, condition, samples, drawn.get("snr_db"), drawn.get("noise_index"))


def excerpt_clips(y: np.ndarray, sr: int, rng: np.random.Generator, noises: Sequence[np.ndarray],
                  cfg: ClipConfig = ClipConfig()) -> Iterator[Clip]:
    """For each of ``cfg.durations_s``, ``cfg.clips_per_song`` random excerpts, each heard under every
    one of ``cfg.conditions`` (:func:`degrade_clip`). Lengths the song is too short for are skipped."""
    seconds = len(y) / sr
    for duration in cfg.durations_s:
        room = seconds - duration * (1.0 + cfg.speed_change[1]) - 0.05  # a slowed-down excerpt still fits
        if room < 0:
            continue
        for _ in range(cfg.clips_per_song):
            start = float(rng.uniform(0.0, room))
            for condition in cfg.conditions:
                yield Clip(start, duration, condition, degrade_clip(y, sr, start, duration, condition, rng, noises, cfg))
