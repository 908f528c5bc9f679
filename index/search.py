"""The identification pipeline: a clip's patch embeddings → neighbours → song votes → spectral
verification → decision. The library, the evaluation, calibration and the benchmarks all decide
through :func:`decide_clip`; only where the neighbours come from differs (the library's index and
catalog, or an evaluation's in-memory index).

The same neighbour lists also rank similar tracks (:func:`rank_similar`) and vote labels
(:func:`label_votes`). Pure functions over arrays, apart from :func:`find_neighbours`, which
reads the index and the catalog it is given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tuneprint.encoder.features import FeatureConfig

from .verify import VerifyConfig, verify
from .vote import SongVote, VoteConfig, decide, rank_verified, unknown_reason, vote_labels, vote_songs


class SpectrogramSource(Protocol):
    """Where verification finds a song's own log-mel spectrogram (the catalog is one)."""

    def spectrogram(self, song_id: str) -> np.ndarray | None: ...


@dataclass(frozen=True)
class Neighbours:
    """The k nearest stored patches of each of a clip's n query patches."""

    sims: np.ndarray  # [shape=(n, k)] cosine similarity
    song_ids: np.ndarray  # [shape=(n, k), dtype=object] song of each neighbour, None where there is none
    offsets_s: np.ndarray  # [shape=(n, k)] offset of each neighbour in its song
    labels: dict[str, tuple[str, ...]]  # song id → its labels, for the songs among the neighbours

    def without(self, song_id: str, k: int) -> "Neighbours":
        """The first ``k`` neighbours of each patch that are not of ``song_id`` (a track's own patches)."""
        keep = [[j for j, s in enumerate(row) if s != song_id][:k] for row in self.song_ids]
        n = len(keep)
        song_ids = np.full((n, k), None, dtype=object)
        sims = np.zeros((n, k), dtype=np.float32)
        offsets = np.full((n, k), np.nan, dtype=np.float32)
        for q, cols in enumerate(keep):
            song_ids[q, : len(cols)] = self.song_ids[q, cols]
            sims[q, : len(cols)] = self.sims[q, cols]
            offsets[q, : len(cols)] = self.offsets_s[q, cols]
        return Neighbours(sims, song_ids, offsets, self.labels)


@dataclass(frozen=True)
class Decision:
    """What the pipeline says of a clip."""

    votes: list[SongVote]  # every candidate song, verified ones first by evidence, then by vote share
    winner: SongVote | None  # the answer, or None: "not in the library"
    reason: str | None  # why there is no answer (:func:`index.vote.unknown_reason`); None when a song answered


def find_neighbours(vectors: np.ndarray, index, catalog, k: int) -> Neighbours:
    """Search ``index`` for the ``k`` nearest stored patches of every vector [shape=(n, D)], and look up
    their songs, offsets and labels in ``catalog``."""
    sims, ids = index.search(vectors, min(k, max(len(index), 1)))
    info = catalog.lookup(ids)
    return Neighbours(sims, info.song_ids, info.offsets_s, info.labels)


def rank_songs(neighbours: Neighbours, query_offsets_s: np.ndarray, clip_db: np.ndarray | None,
               spectrograms: SpectrogramSource | None, cfg: VoteConfig, features: FeatureConfig) -> list[SongVote]:
    """Vote the neighbours' songs, then verify the top ``cfg.verify_top`` against their own spectrograms
    and rank those by evidence (when ``cfg`` verifies and the clip's spectrogram is given)."""
    votes = vote_songs(neighbours.song_ids, neighbours.sims, neighbours.offsets_s, query_offsets_s, cfg)
    if cfg.verifies and clip_db is not None and spectrograms is not None:
        votes = verify_votes(votes, clip_db, spectrograms, features, cfg)
    return votes


def verify_votes(votes: list[SongVote], clip_db: np.ndarray, spectrograms: SpectrogramSource,
                 features: FeatureConfig, cfg: VoteConfig, verify_cfg: VerifyConfig = VerifyConfig()) -> list[SongVote]:
    """:func:`index.verify.verify` the top ``cfg.verify_top`` songs whose spectrogram is available and
    re-rank them by evidence (:func:`index.vote.rank_verified`)."""
    verified = {}
    for v in votes[: cfg.verify_top]:
        song_db = spectrograms.spectrogram(v.song_id)
        if song_db is not None:
            verified[v.song_id] = verify(clip_db, song_db, v.offset_s, features, verify_cfg)
    return rank_verified(votes, verified, cfg)


def decide_clip(neighbours: Neighbours, query_offsets_s: np.ndarray, clip_db: np.ndarray | None,
                spectrograms: SpectrogramSource | None, cfg: VoteConfig, features: FeatureConfig) -> Decision:
    """Neighbours of a clip → its ranked candidate songs and the answer (or "unknown"); the clip's
    length (from ``clip_db``) picks the bars of short clips."""
    votes = rank_songs(neighbours, query_offsets_s, clip_db, spectrograms, cfg, features)
    clip_s = clip_db.shape[1] * features.frame_seconds if clip_db is not None else None
    winner = decide(votes, cfg, clip_s)
    return Decision(votes, winner, None if winner is not None else unknown_reason(votes, cfg, clip_s))


def rank_similar(neighbours: Neighbours, n: int, exclude: set[str] = frozenset()) -> list[tuple[str, float]]:
    """The ``n`` songs nearest to a clip or track: each song's score is the mean over query patches of
    its best similarity to that patch (0 where it is not among the patch's neighbours).

    Returns
    -------
    ranked : list of (song id, score), best first
    """
    n_patches = len(neighbours.song_ids)
    best: dict[str, np.ndarray] = {}
    for q, j in zip(*np.nonzero(neighbours.song_ids != None)):  # noqa: E711 (elementwise on an object array)
        song = neighbours.song_ids[q, j]
        if song in exclude:
            continue
        row = best.setdefault(song, np.zeros(n_patches))
        row[q] = max(row[q], neighbours.sims[q, j])
    ranked = sorted(((float(v.mean()), s) for s, v in best.items()), reverse=True)[:n]
    return [(s, score) for score, s in ranked]


def label_votes(neighbours: Neighbours, *, top: int) -> list[tuple[str, float]]:
    """The ``top`` labels of the neighbours' songs by majority vote, with their share of the votes."""
    return vote_labels(neighbours.song_ids, neighbours.labels, top=top)


def self_similarity(vectors: np.ndarray) -> float:
    """Median cosine similarity between a clip's own patch embeddings [shape=(p, D)], unit norm: near 1
    for a steady sound (a held tone, a hum), lower for music, which changes over seconds."""
    if len(vectors) < 2:
        return 0.0
    sims = vectors @ vectors.T
    return float(np.median(sims[np.triu_indices(len(vectors), 1)]))
