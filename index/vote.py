"""k-nearest-neighbour voting (seed 004 §4): neighbours of every query patch vote for their
song (or its labels); counts are summed over the whole clip and the majority wins.

Pure functions over arrays: the neighbour lists come from the index, the song ids, offsets
and labels from the catalog.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class VoteConfig:
    k: int = 10  # neighbours per query patch (the seed found 10 the most stable)
    top: int = 2  # candidates and labels reported
    min_share: float = 0.2  # below this share of all votes the answer is "unknown"
    min_similarity: float = 0.0  # below this mean best cosine similarity the answer is "unknown"
    offset_bin_s: float = 1.0  # implied song offsets closer than this agree with each other

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SongVote:
    song_id: str
    votes: int
    share: float  # votes / all neighbour votes of the clip
    similarity: float  # mean over query patches of the best similarity to this song (0 where none)
    offset_s: float  # where in the song the clip starts, from the neighbours' offsets
    aligned: float  # share of this song's votes that agree on that offset

    @property
    def score(self) -> float:
        """Confidence in [0, 1]: vote share, discounted by how well the votes agree in time."""
        return self.share * (0.5 + 0.5 * self.aligned)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["score"] = round(self.score, 4)
        return d


def vote_songs(song_ids: np.ndarray, sims: np.ndarray, offsets_s: np.ndarray, query_offsets_s: np.ndarray,
               cfg: VoteConfig = VoteConfig()) -> list[SongVote]:
    """Count the neighbours' songs over all query patches.

    Parameters
    ----------
    song_ids : np.ndarray [shape=(n, k), dtype=object]
        Song of every neighbour, None for missing neighbours.
    sims : np.ndarray [shape=(n, k)]
        Cosine similarity of every neighbour.
    offsets_s : np.ndarray [shape=(n, k)]
        Offset of every neighbour in its song.
    query_offsets_s : np.ndarray [shape=(n,)]
        Offset of every query patch in the clip.

    Returns
    -------
    votes : list of SongVote, most votes first (ties: higher similarity first).
    """
    n = len(song_ids)
    total = sum(1 for s in np.ravel(song_ids) if s is not None)
    if total == 0:
        return []
    count: dict[str, int] = defaultdict(int)
    best = defaultdict(lambda: np.zeros(n, dtype=np.float64))
    starts: dict[str, list[float]] = defaultdict(list)
    for q in range(n):
        for j in range(song_ids.shape[1]):
            song = song_ids[q, j]
            if song is None:
                continue
            count[song] += 1
            best[song][q] = max(best[song][q], float(sims[q, j]))
            starts[song].append(float(offsets_s[q, j]) - float(query_offsets_s[q]))
    votes = []
    for song, c in count.items():
        offset, aligned = consensus_offset(np.array(starts[song]), cfg.offset_bin_s)
        votes.append(SongVote(song, c, c / total, float(best[song].mean()), max(0.0, offset), aligned))
    votes.sort(key=lambda v: (-v.votes, -v.similarity))
    return votes


def consensus_offset(implied_starts: np.ndarray, bin_s: float) -> tuple[float, float]:
    """The offset most neighbours agree on, and the share that agrees within ``bin_s``.

    Each neighbour implies a start of the clip in its song (its offset minus the query
    patch's offset). The densest window of width ``bin_s`` wins; its median is the answer.
    """
    if len(implied_starts) == 0:
        return 0.0, 0.0
    x = np.sort(implied_starts)
    ends = np.searchsorted(x, x + bin_s, side="right")
    i = int(np.argmax(ends - np.arange(len(x))))
    window = x[i : ends[i]]
    return float(np.median(window)), len(window) / len(x)


def decide(votes: list[SongVote], cfg: VoteConfig = VoteConfig()) -> SongVote | None:
    """The winning song, or None ("not in the library") when the vote is not convincing."""
    if not votes:
        return None
    winner = votes[0]
    if winner.share < cfg.min_share or winner.similarity < cfg.min_similarity:
        return None
    return winner


def vote_labels(song_ids: np.ndarray, labels: dict[str, tuple[str, ...]], *, top: int = 2) -> list[tuple[str, float]]:
    """Majority vote of the neighbours' labels; returns the ``top`` labels and their vote share.

    Every neighbour gives one vote, split evenly over its song's labels; unlabelled
    neighbours abstain.
    """
    tally: dict[str, float] = defaultdict(float)
    for song in np.ravel(song_ids):
        song_labels = labels.get(song, ()) if song is not None else ()
        for label in song_labels:
            tally[label] += 1.0 / len(song_labels)
    total = sum(tally.values())
    if total == 0:
        return []
    ranked = sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(label, v / total) for label, v in ranked[:top]]
