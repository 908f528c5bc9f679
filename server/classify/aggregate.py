"""A clip's (or a track's) answer from its segments' probabilities, three ways.

- **raw**: the mean of the segments' probabilities;
- **max**: each label's highest probability over the segments (the clip's most telling
  moment for that label; for single-label answers renormalised to sum to 1);
- **majority**: the share of segments that vote for each label (their top label; for tags,
  the segments where the tag reaches the threshold).

Pure functions over arrays; the evaluation scores the same three side by side.
"""
from __future__ import annotations

import numpy as np

from .config import AGGREGATIONS


def aggregate(probs: np.ndarray, how: str, *, multi_label: bool = False, threshold: float = 0.5) -> np.ndarray:
    """Segments' probabilities → one probability per label.

    Parameters
    ----------
    probs : np.ndarray [shape=(segments, L)]: softmax rows (single-label) or sigmoids (multi-label)
    how : "raw", "max" or "majority"
    multi_label : the columns are independent tags, not one distribution
    threshold : multi-label majority: a segment votes for a tag whose probability reaches this

    Returns
    -------
    p : np.ndarray [shape=(L,), dtype=float64]; sums to 1 for single-label answers
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError("aggregate needs a [segments, labels] array with at least one segment")
    if how == "raw":
        return probs.mean(axis=0)
    if how == "max":
        top = probs.max(axis=0)
        return top if multi_label else top / max(top.sum(), 1e-12)
    if how == "majority":
        if multi_label:
            return (probs >= threshold).mean(axis=0)
        return np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) / len(probs)
    raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {how!r}")


def ranked(names: list[str], p: np.ndarray, tiebreak: np.ndarray | None = None) -> list[tuple[str, float]]:
    """(name, probability) pairs, most probable first; equal probabilities (a split majority vote)
    are ordered by ``tiebreak`` (e.g. the mean probability), then by name order."""
    p = np.asarray(p, dtype=np.float64)
    tiebreak = np.zeros_like(p) if tiebreak is None else np.asarray(tiebreak, dtype=np.float64)
    order = np.lexsort((np.arange(len(p)), -tiebreak, -p))
    return [(names[i], float(p[i])) for i in order]
