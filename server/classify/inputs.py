"""What a classifier reads: segments of a track or a clip.

A head reads the mean of the encoder's patch embeddings over each segment (the library's index
holds every stored track's patch vectors; a query clip is embedded as for identification). A CNN
reads the segment's spectrogram: the log-mel the catalog stores for every song, or a constant-Q
transform computed from the audio.

A segment is the mean of the patches lying whole inside it: a 3-s segment is one patch (a patch
covers ≈2.97 s), a 10-s segment the ≈19 stored patches (hop ≈0.37 s) or ≈38 query patches
(hop ≈0.19 s) of its seconds. So a stored track and a query clip give segments alike.
"""
from __future__ import annotations

import logging

import numpy as np

from tuneprint.encoder.features import FeatureConfig

CQT_BINS = 84  # 7 octaves of semitones from C1: a whole number of bins per semitone keeps pitch classes apart
CQT_FMIN_HZ = 32.70
FLOOR_DB = 80.0  # a spectrogram segment keeps this much range below its loudest bin

log = logging.getLogger(__name__)


def windows(offsets_s: np.ndarray, patch_s: float, segment_s: float, hop_s: float = 0.0) -> list[np.ndarray]:
    """Positions of the patches of each segment: those lying whole inside a window of ``segment_s``
    seconds that starts at a patch, windows at least ``hop_s`` apart (0: one at every patch).

    Only whole windows are kept (they hold as much audio as a segment should); a clip shorter
    than one segment is one segment of all its patches.

    Parameters
    ----------
    offsets_s : np.ndarray [shape=(p,)] each patch's start in seconds, ascending
    patch_s : seconds a patch covers
    """
    offsets_s = np.asarray(offsets_s, dtype=np.float64)
    if len(offsets_s) == 0:
        return []
    span = max(segment_s - patch_s, 0.0) + 1e-6  # how far after a window's first patch its last may start
    last = offsets_s[-1] - span + 2e-6  # the last start that still gives a whole window
    if last < offsets_s[0]:
        return [np.arange(len(offsets_s))]
    starts, next_s = [], -np.inf
    for i, o in enumerate(offsets_s):
        if o > last:
            break
        if o >= next_s:
            starts.append(i)
            next_s = o + hop_s
    return [np.flatnonzero((offsets_s >= offsets_s[i]) & (offsets_s <= offsets_s[i] + span)) for i in starts]


def segment_means(vectors: np.ndarray, offsets_s: np.ndarray, patch_s: float, segment_s: float,
                  hop_s: float = 0.0) -> np.ndarray:
    """Unit-norm mean embedding of each segment (:func:`windows`).

    Parameters
    ----------
    vectors : np.ndarray [shape=(p, D)] patch embeddings
    offsets_s : np.ndarray [shape=(p,)] each patch's start in seconds, ascending

    Returns
    -------
    x : np.ndarray [shape=(segments, D), dtype=float32]
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    groups = windows(offsets_s, patch_s, segment_s, hop_s)
    if not groups:
        return np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), np.float32)
    x = np.stack([vectors[g].mean(axis=0) for g in groups])
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)).astype(np.float32)


def track_embedding_segments(lib, song_id: str, segment_s: float, hop_s: float = 0.0) -> np.ndarray:
    """A stored track's segments [shape=(segments, D)] from the vectors in the library's index."""
    row_ids = lib.catalog.row_ids(song_id)
    if len(row_ids) == 0:
        return np.zeros((0, lib.index.config.dim), np.float32)
    offsets = lib.catalog.lookup(row_ids).offsets_s
    return segment_means(lib.index.vectors(row_ids), offsets, lib.features.patch_seconds, segment_s, hop_s)


def spectrogram_segments(S_db: np.ndarray, frame_s: float, segment_s: float, hop_s: float | None = None) -> np.ndarray:
    """Equal-length segments of a dB spectrogram, each scaled to [-1, 1] from its loudest bin down
    ``FLOOR_DB`` (so loudness does not count); a clip shorter than a segment is padded at the floor.

    Parameters
    ----------
    S_db : np.ndarray [shape=(bins, frames)]

    Returns
    -------
    x : np.ndarray [shape=(segments, bins, round(segment_s / frame_s)), dtype=float32]
    """
    bins, frames = S_db.shape
    width = max(1, int(round(segment_s / frame_s)))
    if frames < width:
        S_db = np.pad(S_db, ((0, 0), (0, width - frames)), constant_values=float(S_db.min()) if frames else 0.0)
        frames = width
    step = max(1, int(round((hop_s or segment_s) / frame_s)))
    starts = list(range(0, frames - width + 1, step))
    if frames - width - starts[-1] > step // 2:  # the tail: a last segment ending with the audio
        starts.append(frames - width)
    seg = np.stack([S_db[:, s : s + width] for s in starts]).astype(np.float32)
    seg = np.maximum(seg - seg.max(axis=(1, 2), keepdims=True), -FLOOR_DB)
    return seg / (FLOOR_DB / 2) + 1.0


def cqt_db(y: np.ndarray, features: FeatureConfig) -> np.ndarray:
    """Constant-Q magnitude in dB [shape=(CQT_BINS, frames)] at the features' hop (same frame rate as the log-mel)."""
    import librosa  # seconds of start-up: only for the CQT input

    C = np.abs(librosa.cqt(np.asarray(y, dtype=np.float32), sr=features.sample_rate, hop_length=features.hop_length,
                           fmin=CQT_FMIN_HZ, n_bins=CQT_BINS, bins_per_octave=12))
    return (20.0 * np.log10(np.maximum(C, 1e-5))).astype(np.float32)


def track_spectrogram(lib, song, input: str) -> np.ndarray | None:
    """A stored track's spectrogram for the CNN: its log-mel (the catalog's, where a library of an
    earlier version kept it whole) or its CQT, from its file."""
    from tuneprint.encoder.audio import load_audio
    from tuneprint.encoder.features import log_mel
    from tuneprint.errors import AudioError

    stored = lib.catalog.spectrogram(song.song_id) if input == "mel" else None
    if stored is not None and stored.shape[0] == lib.features.n_mels:
        return stored
    try:
        y = load_audio(song.path, sr=lib.features.sample_rate)
    except (AudioError, OSError) as e:
        log.warning("%s: cannot read its audio (%s)", song.path, e)
        return None
    return log_mel(y, lib.features) if input == "mel" else cqt_db(y, lib.features)


def evenly(n: int, k: int) -> np.ndarray:
    """At most ``k`` of ``n`` positions, evenly spread."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))
