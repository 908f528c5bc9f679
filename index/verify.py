"""Spectral verification of a candidate song: does its music, plus some noise, explain the clip?

Noise in a room only ever *adds* energy to the music: in every time–frequency cell the clip's
power is at least the song's (times one gain for the whole clip). The embedding does not know
that rule; a noise it never heard can pull a clip's embedding away from its song, while the
clip's spectrogram still contains the song wherever the song is louder than the noise. So for
each candidate the vote proposes (song and offset), we compare the clip's log-mel spectrogram
with the song's own at that offset:

1. the gain: the largest one at which the song stays under the clip (within ``tolerance_db``)
   in ``quantile`` of the cells where the song has energy — a robust "noise only adds";
2. the score: over the cells where the clip has sound, the mean share of each cell's power that
   the song at that gain explains (min(song, clip) / clip, in power), in [0, 1]. Cells count
   alike, so a short loud noise (a door, a shout) spoils only the cells it covers.

A clip of the song scores high wherever the music is louder than the noise; a song that is not
the clip's must be turned down until it hides under the clip everywhere, and then explains little.
Cells are compared in the telephone band (300–3400 Hz), which every condition keeps; the clip is
dilated by a cell in time and frequency so that a slightly shifted or sped-up clip still lines up,
and the offset is searched a few frames either way.

The library keeps of each song only what this reads, its *view* (:func:`verification_view`): the
band's mel bins, adjacent pairs merged, which the catalog stores in 3-dB steps, compressed
(≈5 kB per minute of audio instead of ≈165 kB for the whole log-mel in float16).

Pure functions over arrays (dB log-mel from :func:`encoder.features.log_mel`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter

from tuneprint.encoder.features import FeatureConfig, mel_band_centres


@dataclass(frozen=True)
class VerifyConfig:
    band_hz: tuple[float, float] = (300.0, 3400.0)  # cells compared: the band a phone keeps
    quantile: float = 0.95  # share of the song's cells that must stay under the clip at the chosen gain
    tolerance_db: float = 3.0  # how far above the clip a song's cell may be and still count as under it
    floor_db: float = 40.0  # song cells more than this below the song's loudest do not set the gain
    sound_db: float = 30.0  # clip cells more than this below the clip's loudest are not scored
    dilate: tuple[int, int] = (3, 3)  # (bins, frames) max-filter on the clip: small shifts still line up
    max_shift_frames: int = 10  # offsets searched either side of the vote's offset


VIEW_POOL = 2  # adjacent band bins merged in a view (mean power)


def verification_view(S_db: np.ndarray, features: FeatureConfig, cfg: VerifyConfig = VerifyConfig()) -> np.ndarray:
    """What verification reads of a log-mel spectrogram [shape=(n_mels, t)]: the bins of the band,
    ``VIEW_POOL`` adjacent ones merged [shape=(view_bins, t)]. A view is returned as it is."""
    bands = np.flatnonzero(band_mask(features, cfg))
    if S_db.shape[0] != features.n_mels:
        return S_db
    n = len(bands) // VIEW_POOL * VIEW_POOL
    power = 10.0 ** (S_db[bands[:n]].astype(np.float64) / 10.0)
    pooled = power.reshape(n // VIEW_POOL, VIEW_POOL, -1).mean(axis=1)
    return (10.0 * np.log10(np.maximum(pooled, 1e-12))).astype(np.float32)


def band_mask(features: FeatureConfig, cfg: VerifyConfig = VerifyConfig()) -> np.ndarray:
    """Which mel bins lie inside ``cfg.band_hz`` [shape=(n_mels,), dtype=bool]."""
    centres = mel_band_centres(features)
    return (centres > cfg.band_hz[0]) & (centres < cfg.band_hz[1])


def explained_share(clip_db: np.ndarray, song_db: np.ndarray, bands: np.ndarray,
                    cfg: VerifyConfig = VerifyConfig(), dilated_db: np.ndarray | None = None) -> np.ndarray:
    """How much of the clip the song explains, for one or many alignments of the song: the mean, over
    the clip's sounding cells in ``bands``, of the share of each cell's power the song (at the gain
    where "noise only adds" holds) accounts for.

    Parameters
    ----------
    clip_db : np.ndarray [shape=(n_mels, t)]
        The clip's log-mel spectrogram (dB).
    song_db : np.ndarray [shape=(..., n_mels, t)]
        The song's log-mel spectrogram at one or several alignments with the clip.
    bands : np.ndarray [shape=(n_mels,), dtype=bool]
    dilated_db : np.ndarray [shape=(n_mels, t)], optional
        ``clip_db`` max-filtered by ``cfg.dilate`` (computed here when not given): the song must
        stay under this, so that a cell or two of misalignment does not count against it.

    Returns
    -------
    share : np.ndarray [shape=(...)], in [0, 1]; 0 where the song is silent in the band
    """
    if dilated_db is None:
        dilated_db = maximum_filter(clip_db, size=cfg.dilate, mode="nearest")
    song = song_db[..., bands, :].reshape(*song_db.shape[:-2], -1).astype(np.float32)
    clip = clip_db[bands, :].reshape(-1).astype(np.float32)
    ceiling = dilated_db[bands, :].reshape(-1).astype(np.float32)
    gain_db, loud = fitted_gain_db(song, ceiling, cfg)
    n_loud = loud.sum(axis=-1)
    sounding = clip > clip.max() - cfg.sound_db
    explained = np.minimum(1.0, 10.0 ** ((song[..., sounding] + gain_db[..., None] - clip[sounding]) / 10.0))
    return np.where(n_loud >= 10, explained.mean(axis=-1), 0.0)


def fitted_gain_db(song: np.ndarray, ceiling: np.ndarray, cfg: VerifyConfig = VerifyConfig()) -> tuple[np.ndarray, np.ndarray]:
    """The largest gain (dB) at which ``cfg.quantile`` of the song's loud cells stay under ``ceiling``
    (within ``cfg.tolerance_db``): "noise only adds", robustly.

    Parameters
    ----------
    song : np.ndarray [shape=(..., cells)], dB, one row per alignment
    ceiling : np.ndarray [shape=(cells,)], dB, the (dilated) clip

    Returns
    -------
    gain_db : np.ndarray [shape=(...)]
    loud : np.ndarray [shape=(..., cells), dtype=bool], the song's cells within ``cfg.floor_db`` of its loudest
    """
    loud = song > song.max(axis=-1, keepdims=True) - cfg.floor_db
    return cfg.tolerance_db - _quantile_where(song - ceiling, loud, loud.sum(axis=-1), cfg.quantile), loud


def _quantile_where(values: np.ndarray, where: np.ndarray, count: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile (linear) of ``values`` over the cells ``where`` is true, along the last axis."""
    ranked = np.sort(np.where(where, values, -np.inf), axis=-1)  # the chosen cells sort last
    n = ranked.shape[-1]
    pos = (n - count) + q * np.maximum(count - 1, 0)
    low = np.clip(np.floor(pos).astype(np.int64), 0, n - 1)
    high = np.minimum(low + 1, n - 1)
    frac = (pos - low)[..., None]
    a = np.take_along_axis(ranked, low[..., None], axis=-1)
    b = np.take_along_axis(ranked, high[..., None], axis=-1)
    with np.errstate(invalid="ignore"):  # -inf beyond the chosen cells: never picked, but computed
        out = np.where(frac > 0, a + frac * (b - a), a)[..., 0]
    return np.where(count > 0, out, 0.0)


def verify(clip_db: np.ndarray, song_db: np.ndarray, offset_s: float, features: FeatureConfig,
           cfg: VerifyConfig = VerifyConfig()) -> float:
    """How well the song at ``offset_s`` (± ``max_shift_frames``) explains the clip, in [0, 1].

    Parameters
    ----------
    clip_db : np.ndarray [shape=(n_mels, t)]
        The clip's log-mel spectrogram (dB, undilated).
    song_db : np.ndarray [shape=(n_mels, T)] or its view [shape=(view_bins, T)]
        The whole song's log-mel spectrogram (dB), or what the catalog keeps of it.
    offset_s : float
        Where the vote places the clip's start in the song.
    """
    clip_db, song_db = verification_view(clip_db, features, cfg), verification_view(song_db, features, cfg)
    t = clip_db.shape[1]
    start = int(round(offset_s / features.frame_seconds))
    first = max(0, start - cfg.max_shift_frames)
    last = min(song_db.shape[1] - t, start + cfg.max_shift_frames)
    if last < first:  # the song is shorter than the clip, or the offset lies past its end
        return 0.0
    windows = np.lib.stride_tricks.sliding_window_view(song_db, t, axis=1)[:, first : last + 1]  # (mels, shifts, t)
    dilated = maximum_filter(clip_db, size=cfg.dilate, mode="nearest")
    shares = explained_share(clip_db, windows.transpose(1, 0, 2), np.ones(len(clip_db), bool), cfg, dilated)
    return float(shares.max())
