"""Labels by neighbours, and the three ways to turn snippet answers into a track's answer:
raw, maximum probability, majority vote.

Every query track is split into sub-tracks (non-overlapping 3-s snippets). Each sub-track
gets a probability over labels: for the k-NN methods the share of its k nearest neighbours'
votes (leave-one-song-out: the track's own snippets never vote), for the classifier head its
softmax. Then:

- **raw**: every sub-track's own top label, scored per sub-track;
- **maximum probability**: the probabilities summed over the track's sub-tracks, top label;
  for the k-NN vote this is the library's own answer (`Library.label` pools all neighbours);
- **majority vote**: each sub-track's top label counted, the most frequent wins.

The functions here are pure (arrays in, numbers out); the MFCC baseline features live here too.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .data import subtrack_rows

log = logging.getLogger(__name__)

METHODS = ("raw", "max_probability", "majority")


# -- votes -----------------------------------------------------------------------------------
def label_matrix(song_labels: list[tuple[str, ...]], labels: list[str]) -> np.ndarray:
    """One row per song: its vote split evenly over its labels (zeros for unlabelled songs).

    Returns
    -------
    M : np.ndarray [shape=(n_songs, n_labels), dtype=float64], rows sum to 1 or 0
    """
    position = {label: j for j, label in enumerate(labels)}
    M = np.zeros((len(song_labels), len(labels)))
    for i, own in enumerate(song_labels):
        known = [position[label] for label in own if label in position]
        if known:
            M[i, known] = 1.0 / len(own)
    return M


def neighbour_label_shares(neighbour_songs: np.ndarray, song_label_matrix: np.ndarray) -> np.ndarray:
    """Label vote shares of each query snippet's neighbours, as `index.vote.vote_labels` counts them.

    Parameters
    ----------
    neighbour_songs : np.ndarray [shape=(q, k), dtype=int]
        Song position of every neighbour, -1 where there is none.
    song_label_matrix : np.ndarray [shape=(n_songs, L)], from :func:`label_matrix`

    Returns
    -------
    shares : np.ndarray [shape=(q, L)], rows sum to 1 (0 where no neighbour had a label)
    """
    padded = np.vstack([song_label_matrix, np.zeros((1, song_label_matrix.shape[1]))])
    tally = padded[np.where(neighbour_songs < 0, len(song_label_matrix), neighbour_songs)].sum(axis=1)
    total = tally.sum(axis=1, keepdims=True)
    return np.divide(tally, total, out=np.zeros_like(tally), where=total > 0)


def exact_neighbours(queries: np.ndarray, reference: np.ndarray, k: int, exclude: np.ndarray | None = None,
                     *, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k-NN of unit vectors, never returning the reference rows in ``exclude``.

    Returns (similarities, rows), each [shape=(q, k)], best first; rows -1 where fewer exist.
    """
    if len(queries) > chunk:
        parts = [exact_neighbours(queries[i : i + chunk], reference, k, exclude, chunk=chunk)
                 for i in range(0, len(queries), chunk)]
        return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])
    sims = queries @ reference.T
    if exclude is not None and len(exclude):
        sims[:, exclude] = -np.inf
    k_eff = min(k, reference.shape[0])
    rows = np.argpartition(-sims, k_eff - 1, axis=1)[:, :k_eff] if k_eff else np.zeros((len(queries), 0), np.int64)
    top = np.take_along_axis(sims, rows, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    rows, top = np.take_along_axis(rows, order, axis=1), np.take_along_axis(top, order, axis=1)
    rows = np.where(np.isfinite(top), rows, -1)
    if k_eff < k:
        rows = np.hstack([rows, np.full((len(queries), k - k_eff), -1)])
        top = np.hstack([top, np.full((len(queries), k - k_eff), -np.inf)])
    return top.astype(np.float32), rows.astype(np.int64)


# -- aggregation -----------------------------------------------------------------------------
def aggregate(probs: np.ndarray) -> dict[str, object]:
    """One track's sub-track probabilities → its answers, the three ways.

    Parameters
    ----------
    probs : np.ndarray [shape=(n_subtracks, L)]; an all-zero row is a sub-track with no answer.

    Returns
    -------
    {"raw": per-sub-track label positions (-1 = none), "max_probability": position,
     "majority": position, "ranked": positions by summed probability (for top-2)}.
    Ties go to the larger summed probability, then to the lower label position.
    """
    probs = np.asarray(probs, dtype=np.float64)
    answered = probs.sum(axis=1) > 0
    raw = np.where(answered, probs.argmax(axis=1), -1)
    summed = probs.sum(axis=0)
    if not answered.any():
        return {"raw": raw, "max_probability": -1, "majority": -1, "ranked": []}
    ranked = [int(j) for j in np.lexsort((np.arange(len(summed)), -summed)) if summed[j] > 0]
    counts = np.bincount(raw[answered], minlength=probs.shape[1])
    majority = int(np.lexsort((np.arange(len(summed)), -summed, -counts))[0])
    return {"raw": raw, "max_probability": ranked[0], "majority": majority, "ranked": ranked}


@dataclass
class TrackAnswer:
    song: int  # position in the song list
    truth: tuple[int, ...]  # label positions of the track (one or more)
    probs: np.ndarray  # [shape=(n_subtracks, L)]


def score_tracks(answers: list[TrackAnswer], labels: list[str]) -> dict:
    """Accuracy of raw / maximum probability / majority, top-2, confusion and per-label P/R.

    Raw is scored per sub-track; the others per track. The confusion matrix and per-label
    precision/recall are per sub-track.
    """
    n_sub = sum(len(a.probs) for a in answers)
    if not answers:
        return {"tracks": 0, "subtracks": 0}
    raw_hits = top2_sub = 0
    track_hits = {m: 0 for m in METHODS[1:]}
    top2_track = 0
    L = len(labels)
    confusion = np.zeros((L, L + 1), dtype=np.int64)  # last column: no answer
    for a in answers:
        agg = aggregate(a.probs)
        truth = set(a.truth)
        raw_hits += sum(int(p in truth) for p in agg["raw"])
        for probs in a.probs:
            top2_sub += int(bool(truth & set(_top(probs, 2))))
        for m in track_hits:
            track_hits[m] += int(agg[m] in truth)
        top2_track += int(bool(truth & set(agg["ranked"][:2])))
        for p in agg["raw"]:
            confusion[a.truth[0], p if p >= 0 else L] += 1
    precision, recall = precision_recall(confusion)
    return {
        "tracks": len(answers), "subtracks": n_sub,
        "raw": _share(raw_hits, n_sub), "subtrack_top2": _share(top2_sub, n_sub),
        "max_probability": _share(track_hits["max_probability"], len(answers)),
        "majority": _share(track_hits["majority"], len(answers)),
        "track_top2": _share(top2_track, len(answers)),
        "per_label": {labels[j]: {"precision": _round(precision[j]), "recall": _round(recall[j]),
                                  "subtracks": int(confusion[j].sum())}
                      for j in range(L) if confusion[j].sum() or confusion[:, j].sum()},
        "confusion": {"labels": labels, "matrix": confusion.tolist()},
    }


def precision_recall(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-label precision and recall from a confusion matrix.

    Parameters
    ----------
    confusion : np.ndarray [shape=(L, L) or (L, L + 1)]
        Rows: true label; columns: predicted label, an optional last column counting no answer
        (a miss for recall, no prediction for precision).

    Returns
    -------
    precision, recall : np.ndarray [shape=(L,)], NaN where undefined (nothing predicted / no truth).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    L = confusion.shape[0]
    hits = np.diag(confusion[:, :L])
    predicted = confusion[:, :L].sum(axis=0)
    actual = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(predicted > 0, hits / predicted, np.nan), np.where(actual > 0, hits / actual, np.nan)


def _top(probs: np.ndarray, n: int) -> list[int]:
    order = np.lexsort((np.arange(len(probs)), -probs))
    return [int(j) for j in order[:n] if probs[j] > 0]


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def _round(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 4)


# -- k-NN labelling over any snippet vectors ----------------------------------------------------
def knn_track_answers(vectors: np.ndarray, song_of_row: np.ndarray, query_rows: dict[int, np.ndarray],
                      song_label_matrix: np.ndarray, truth: dict[int, tuple[int, ...]], k: int,
                      progress=None) -> list[TrackAnswer]:
    """Leave-one-song-out k-NN label shares for each query song's sub-track rows.

    Parameters
    ----------
    vectors : [shape=(n, D)] unit vectors of every snippet of the library (the reference)
    song_of_row : [shape=(n,)] song position of each row
    query_rows : song position → rows (into ``vectors``) of its sub-tracks
    """
    answers = []
    for done, (song, rows) in enumerate(query_rows.items(), 1):
        if len(rows):
            own = np.flatnonzero(song_of_row == song)
            _, nn = exact_neighbours(vectors[rows], vectors, k, exclude=own)
            nn_songs = np.where(nn >= 0, song_of_row[np.maximum(nn, 0)], -1)
            if np.any(nn_songs == song):
                raise RuntimeError(f"leave-one-song-out violated for song {song}")
            answers.append(TrackAnswer(song, truth[song], neighbour_label_shares(nn_songs, song_label_matrix)))
        if progress:
            progress(done, len(query_rows))
    return answers


# -- MFCC-statistics baseline -------------------------------------------------------------------
def mfcc_stats(patches: np.ndarray, n_mfcc: int = 20) -> np.ndarray:
    """Mean and standard deviation over time of the MFCCs of each log-mel patch.

    Parameters
    ----------
    patches : np.ndarray [shape=(p, n_mels, frames)], the encoder's normalised log-mel patches

    Returns
    -------
    stats : np.ndarray [shape=(p, 2 · n_mfcc), dtype=float32]
    """
    from scipy.fft import dct

    mfcc = dct(patches, type=2, norm="ortho", axis=1)[:, :n_mfcc]  # as librosa.feature.mfcc does on log-mel
    return np.concatenate([mfcc.mean(axis=2), mfcc.std(axis=2)], axis=1).astype(np.float32)


@dataclass
class Standardizer:
    """z-score per dimension (fitted on the reference), then unit length for cosine search."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Standardizer":
        return cls(x.mean(axis=0), x.std(axis=0) + 1e-6)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        return (z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class LabelGroups:
    """The label query songs: "all", and where the encoder's training labels are known, "seen" (a label
    it was trained on) and "unseen"."""

    members: dict[str, set[int]]  # group → song positions
    seen_labels: tuple[str, ...] | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {g: len(m) for g, m in self.members.items()}

    def group_of(self, song: int) -> str:
        return next((g for g in ("seen", "unseen") if song in self.members.get(g, ())), "all")


def label_groups(songs, queries: list[int], seen_labels: tuple[str, ...] | None) -> LabelGroups:
    """:class:`LabelGroups` of the query songs (positions into ``songs``)."""
    members = {"all": set(queries)}
    if seen_labels is not None:
        seen = set(seen_labels)
        members["seen"] = {i for i in queries if seen & set(songs[i].labels)}
        members["unseen"] = set(queries) - members["seen"]
    return LabelGroups(members, None if seen_labels is None else tuple(seen_labels))


@dataclass(frozen=True)
class BaselineReference:
    """Every song's MFCC-statistics patches as one standardised reference set."""

    vectors: np.ndarray  # [shape=(n, 2 · n_mfcc), dtype=float32], standardised, unit norm
    song: np.ndarray  # [shape=(n,), dtype=int64], song position of each row
    offsets: np.ndarray  # [shape=(n,), dtype=float32]
    rows: dict[int, np.ndarray]  # song position → its rows, in offset order

    def subtracks(self, song: int, spacing_s: float) -> np.ndarray:
        """Rows of ``song``'s patches at least ``spacing_s`` apart (:func:`data.subtrack_rows`)."""
        rows = self.rows[song]
        return rows[subtrack_rows(self.offsets[rows], spacing_s)]


def baseline_reference(features: dict[int, tuple[np.ndarray, np.ndarray]]) -> BaselineReference:
    """The reference set of ``features`` (song position → (MFCC statistics, offsets) of its patches)."""
    songs = sorted(features)
    stats = np.concatenate([features[s][0] for s in songs])
    song = np.concatenate([np.full(len(features[s][0]), s, dtype=np.int64) for s in songs])
    offsets = np.concatenate([features[s][1] for s in songs]).astype(np.float32)
    vectors = Standardizer.fit(stats)(stats)
    rows = {s: np.flatnonzero(song == s) for s in songs}
    return BaselineReference(vectors, song, offsets, {s: r[np.argsort(offsets[r], kind="stable")] for s, r in rows.items()})
