"""Measuring a style representation by collection: labels by neighbours and similar-track precision.

Pure functions over vectors: every track of the corpus is in the reference set (or, with
``references``, the tracks given); each query track (or 10-s clip of one) is answered by its
nearest *other* tracks, so a track never votes for itself.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def knn_vote(sims: np.ndarray, labels: np.ndarray, k: int) -> str | None:
    """Majority label of the ``k`` most similar references (ties: larger summed similarity).

    References whose similarity is not finite (-inf: left out) never vote; None when none is left.
    """
    top = np.argsort(-sims, kind="stable")[:k]
    top = top[np.isfinite(sims[top])]
    if not len(top):
        return None
    counts = Counter(labels[top])
    weight = Counter()
    for j in top:
        weight[labels[j]] += float(sims[j])
    return max(counts, key=lambda label: (counts[label], weight[label]))


def clip_starts(n_patches: int, clip_patches: int = 7, max_clips: int = 6) -> list[int]:
    """First patch of each clip of ``clip_patches`` consecutive patches, clips not sharing a patch.

    A track has ``n_patches // clip_patches`` such clips; when that is more than ``max_clips``,
    ``max_clips`` of them spread evenly over the track are kept. A track shorter than one clip has none.
    """
    n = n_patches // clip_patches
    chosen = range(n) if n <= max_clips else np.linspace(0, n - 1, max_clips).round().astype(int)
    return [int(c) * clip_patches for c in chosen]


@dataclass
class StyleScores:
    tracks: int
    track_accuracy: float  # 10-NN vote over whole tracks, leave-one-out
    clips: int
    clip_accuracy: float  # 10-s clips voted by the whole tracks of the other songs (nan: no clips)
    precision_at_5: float  # share of the 5 nearest other tracks from the same collection

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def score_style(track_vectors: np.ndarray, labels: Sequence[str], queries: Sequence[int],
                clip_vectors: dict[int, np.ndarray] | None = None, k: int = 10,
                references: Sequence[int] | np.ndarray | None = None) -> StyleScores:
    """Scores of the query tracks (positions into ``track_vectors``) against all the others.

    Parameters
    ----------
    track_vectors : [shape=(n, d)], one per track (normalised here)
    labels : collection of every track
    queries : positions of the tracks to score
    clip_vectors : query position → [shape=(c, d)] vectors of that track's clips
    k : neighbours that vote
    references : positions of the tracks that may answer (default: every track); a query never
        answers itself, whether it is among them or not

    Returns
    -------
    StyleScores : track accuracy (k-NN vote), clip accuracy and precision@5 over the queries
    """
    V = unit(track_vectors)
    labels_arr = np.asarray(labels, dtype=object)
    allowed = np.ones(len(V), dtype=bool)
    if references is not None:
        allowed[:] = False
        allowed[np.asarray(references, dtype=np.int64)] = True
    right = p5 = 0.0
    clip_right = clip_total = 0
    for q in queries:
        sims = np.where(allowed, V @ V[q], -np.inf)
        sims[q] = -np.inf
        right += knn_vote(sims, labels_arr, k) == labels[q]
        top5 = np.argsort(-sims, kind="stable")[:5]
        top5 = top5[np.isfinite(sims[top5])]
        p5 += float(np.mean(labels_arr[top5] == labels[q])) if len(top5) else 0.0
        for c in (clip_vectors or {}).get(q, ()):
            s = np.where(allowed, V @ unit(c), -np.inf)
            s[q] = -np.inf
            clip_right += knn_vote(s, labels_arr, k) == labels[q]
            clip_total += 1
    n = max(len(queries), 1)
    clip_accuracy = clip_right / clip_total if clip_total else float("nan")
    return StyleScores(len(queries), right / n, clip_total, clip_accuracy, p5 / n)
