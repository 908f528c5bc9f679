"""Landmark search: which stored song holds most of a clip's peak pairs at one offset.

Every stored pair is kept in arrays sorted by hash; a clip's pairs are looked up there, and each hit
says "song s, offset (stored frame − clip frame)". A clip of a song piles its hits on one offset of
that song; chance hits spread over songs and offsets. Hits within ``tolerance_frames`` of an offset
count for it (a clip cut between two frames finds its peaks a frame early or late).

The answer is trusted when the best song's aligned hits reach ``min_aligned`` and ``min_ratio``
times the next song's (``VoteConfig.landmark_min_aligned`` and ``landmark_min_ratio``, chosen on
validation songs at 78, 300 and 1,000 songs: encoder/weights/MODEL_CARD.md). Chance hits grow with
the pairs stored; a library far beyond 1,000 songs is beyond what the bars were checked on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuneprint.encoder.landmarks import DEFAULT, LandmarkConfig, Landmarks

_OFFSET_SPAN = 1 << 31  # keys are song × span + (offset + span / 2)


@dataclass(frozen=True)
class LandmarkRule:
    min_aligned: int = 15  # hits at one offset of the best song (the shipped calibration's)
    min_ratio: float = 2.0  # ... and that many times the runner-up song's
    tolerance_frames: int = 1


@dataclass(frozen=True)
class LandmarkMatch:
    song_id: str
    aligned: int  # the clip's pairs found in this song at its best offset (± tolerance)
    offset_s: float  # where in the song the clip starts
    pairs: int  # pairs the clip has


class LandmarkIndex:
    """Every stored song's landmarks, sorted by hash for lookup."""

    def __init__(self, song_ids: list[str], landmarks: list[Landmarks], cfg: LandmarkConfig = DEFAULT):
        self.cfg = cfg
        self.song_ids = list(song_ids)
        n = [len(lm) for lm in landmarks]
        hashes = np.concatenate([lm.hashes for lm in landmarks]) if landmarks else np.zeros(0, np.uint32)
        order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[order]
        self.songs = np.repeat(np.arange(len(n), dtype=np.int32), n)[order]
        self.frames = (np.concatenate([lm.frames for lm in landmarks]) if landmarks else np.zeros(0, np.int32))[order]

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def nbytes(self) -> int:
        return self.hashes.nbytes + self.songs.nbytes + self.frames.nbytes

    def search(self, clip: Landmarks, rule: LandmarkRule = LandmarkRule(), top: int = 3) -> list[LandmarkMatch]:
        """The ``top`` songs with most aligned hits, best first (each song at its best offset)."""
        if len(clip) == 0 or len(self) == 0:
            return []
        lo = np.searchsorted(self.hashes, clip.hashes, "left")
        hi = np.searchsorted(self.hashes, clip.hashes, "right")
        found = hi - lo
        if not found.any():
            return []
        query = np.repeat(np.arange(len(clip)), found)
        stored = np.repeat(lo - np.cumsum(np.r_[0, found[:-1]]), found) + np.arange(found.sum())
        songs = self.songs[stored].astype(np.int64)
        offsets = self.frames[stored].astype(np.int64) - clip.frames[query]
        keys, counts = np.unique(songs * _OFFSET_SPAN + offsets + _OFFSET_SPAN // 2, return_counts=True)
        near = counts.copy()
        for d in range(1, rule.tolerance_frames + 1):
            for step in (-d, d):
                j = np.minimum(np.searchsorted(keys, keys + step), len(keys) - 1)
                hit = keys[j] == keys + step
                near[hit] += counts[j[hit]]
        song_of_key = keys // _OFFSET_SPAN
        best: dict[int, tuple[int, int]] = {}
        for i in np.argsort(-near, kind="stable"):
            s = int(song_of_key[i])
            if s not in best:
                best[s] = (int(near[i]), int(keys[i] % _OFFSET_SPAN - _OFFSET_SPAN // 2))
                if len(best) == top:
                    break
        return [LandmarkMatch(self.song_ids[s], n, max(0.0, off * self.cfg.frame_seconds), len(clip))
                for s, (n, off) in best.items()]


def winner(matches: list[LandmarkMatch], rule: LandmarkRule = LandmarkRule()) -> LandmarkMatch | None:
    """The best match if it clears the rule, else None."""
    if not matches or matches[0].aligned < rule.min_aligned:
        return None
    runner_up = matches[1].aligned if len(matches) > 1 else 0
    return matches[0] if matches[0].aligned >= rule.min_ratio * max(runner_up, 1) else None


def confidence(match: LandmarkMatch, rule: LandmarkRule = LandmarkRule()) -> float:
    """Aligned hits mapped to [0, 1]: 0.5 at the bar, towards 1 with more."""
    return float(min(1.0, max(0.0, 1.0 - 0.5 * rule.min_aligned / max(match.aligned, 1))))
