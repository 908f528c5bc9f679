"""Landmarks: pairs of spectral peaks hashed with their distance in time and frequency (Wang 2003).

The classic fingerprint of Shazam, audfprint and Panako, kept beside the learnt embedding because
the two fail differently. An embedding reads a whole 3-s patch, so a 1-s clip or a clip through a
phone codec leaves it guessing; a landmark needs only two peaks that survive, and a match needs only
a handful of pairs that agree on one offset in one song. Landmarks in turn know nothing of a
clip played faster or in a reverberant room, where the embedding holds.

Peaks are read in the telephone band at 8 kHz, so that a call keeps the same ones as the file.
A peak is the loudest cell of its neighbourhood (17 bins × 9 frames) and louder than its bin's
median; at most ``peaks_per_s`` are kept, the strongest, which rarely binds. Density is what finds
short clips: on validation clips, capping at 30 a second found 53 % of 1-s clips and 68 % of 3-s
phone calls, 60 a second 100 % and 98 % (docs/BENCHMARKS.md, "Since 2026-12-06"). Each peak is paired
with the next ``fan_out`` peaks within ``max_dt_frames`` and ``max_df_bins``; a pair's hash packs
(first peak's bin, bin difference, frame difference) into 21 bits.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.ndimage import maximum_filter
from scipy.signal import resample_poly, stft


@dataclass(frozen=True)
class LandmarkConfig:
    sample_rate: int = 8000  # a phone's rate: a call keeps every peak the file has in its band
    n_fft: int = 512
    hop: int = 128  # 16 ms frames
    band_hz: tuple[float, float] = (300.0, 3400.0)
    neighbourhood: tuple[int, int] = (17, 9)  # (bins, frames) a peak is the loudest of
    range_db: float = 60.0  # peaks further below the recording's loudest cell are not peaks
    peaks_per_s: float = 60.0  # a cap that rarely binds (17×9 neighbourhoods hold ≈58 a second): 30 lost half the 1-s clips (val)
    fan_out: int = 6  # pairs per anchor peak
    max_dt_frames: int = 40  # 0.64 s
    max_df_bins: int = 48

    @property
    def frame_seconds(self) -> float:
        return self.hop / self.sample_rate


DEFAULT = LandmarkConfig()
_DF_BITS, _DT_BITS = 7, 6  # bits of a hash for the bin difference (offset by max_df_bins) and the frame difference


@dataclass(frozen=True)
class Landmarks:
    """A recording's peak pairs: their hashes and the frame of each pair's first peak, in time order."""

    hashes: np.ndarray  # [shape=(n,), dtype=uint32]
    frames: np.ndarray  # [shape=(n,), dtype=int32]

    def __len__(self) -> int:
        return len(self.hashes)


EMPTY = Landmarks(np.zeros(0, np.uint32), np.zeros(0, np.int32))


def landmarks(y: np.ndarray, sr: int, cfg: LandmarkConfig = DEFAULT) -> Landmarks:
    """The landmarks of mono audio ``y`` at ``sr`` (resampled to ``cfg.sample_rate``)."""
    if sr != cfg.sample_rate:
        ratio = Fraction(cfg.sample_rate, sr)
        y = resample_poly(y, ratio.numerator, ratio.denominator)
    return pair_peaks(peaks(band_spectrogram(y, cfg), cfg), cfg)


def band_spectrogram(y: np.ndarray, cfg: LandmarkConfig = DEFAULT) -> np.ndarray:
    """Magnitude in dB of the band's STFT bins [shape=(bins, frames)]."""
    if len(y) < cfg.n_fft:
        return np.zeros((0, 0), np.float32)
    freqs, _, Z = stft(y, fs=cfg.sample_rate, nperseg=cfg.n_fft, noverlap=cfg.n_fft - cfg.hop,
                       boundary=None, padded=False)
    lo, hi = np.searchsorted(freqs, cfg.band_hz)
    return (20.0 * np.log10(np.abs(Z[lo:hi]) + 1e-6)).astype(np.float32)


def peaks(S_db: np.ndarray, cfg: LandmarkConfig = DEFAULT) -> np.ndarray:
    """(frame, bin) of the kept peaks [shape=(n, 2)], in time order."""
    if S_db.size == 0 or S_db.shape[1] < 3:
        return np.zeros((0, 2), np.int64)
    local_max = maximum_filter(S_db, size=cfg.neighbourhood, mode="constant", cval=-np.inf)
    # strength: above the bin's usual level, so that a bin loud all along (a hum) does not take every
    # peak, and silence (every cell its own level) has none
    strength = S_db - np.median(S_db, axis=1, keepdims=True)
    bins, frames = np.nonzero((S_db == local_max) & (S_db > S_db.max() - cfg.range_db) & (strength > 0))
    strength = strength[bins, frames]
    keep = max(1, int(S_db.shape[1] * cfg.frame_seconds * cfg.peaks_per_s))
    if len(bins) > keep:
        strongest = np.argsort(-strength, kind="stable")[:keep]
        bins, frames = bins[strongest], frames[strongest]
    order = np.lexsort((bins, frames))
    return np.stack([frames[order], bins[order]], axis=1)


def pair_peaks(points: np.ndarray, cfg: LandmarkConfig = DEFAULT) -> Landmarks:
    """Each peak with the next ``fan_out`` peaks of its target zone, hashed."""
    n = len(points)
    if n < 2:
        return EMPTY
    reach = min(n - 1, 4 * cfg.fan_out + 16)  # peaks looked at after each anchor (a zone rarely holds more)
    first = np.repeat(np.arange(n), reach)
    second = first + np.tile(np.arange(1, reach + 1), n)
    inside = second < n
    first, second = first[inside], second[inside]
    dt = points[second, 0] - points[first, 0]
    df = points[second, 1] - points[first, 1]
    zone = (dt >= 1) & (dt <= cfg.max_dt_frames) & (np.abs(df) < cfg.max_df_bins)
    first, dt, df = first[zone], dt[zone], df[zone]
    starts = np.r_[True, first[1:] != first[:-1]]
    rank = np.arange(len(first)) - np.maximum.accumulate(np.where(starts, np.arange(len(first)), 0))
    kept = rank < cfg.fan_out
    first, dt, df = first[kept], dt[kept], df[kept]
    hashes = ((points[first, 1].astype(np.uint32) << (_DF_BITS + _DT_BITS))
              | ((df + cfg.max_df_bins).astype(np.uint32) << _DT_BITS) | dt.astype(np.uint32))
    return Landmarks(hashes, points[first, 0].astype(np.int32))
