"""index/search.py: the identification pipeline decides on hand-built neighbour lists."""
from __future__ import annotations

import numpy as np
import pytest

from tuneprint.encoder.features import FeatureConfig
from tuneprint.index.search import Neighbours, decide_clip
from tuneprint.index.vote import VoteConfig

FEATURES = FeatureConfig()
HOP_S = 0.19  # between query patches


def neighbours(rows: list[list[tuple[str, float, float]]]) -> Neighbours:
    """Each query patch's neighbours as (song, similarity, offset in the song)."""
    song_ids = np.array([[s for s, _, _ in row] for row in rows], dtype=object)
    sims = np.array([[x for _, x, _ in row] for row in rows], dtype=np.float32)
    offsets = np.array([[o for _, _, o in row] for row in rows], dtype=np.float32)
    return Neighbours(sims, song_ids, offsets, {})


def query_offsets(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32) * HOP_S


def test_the_song_whose_patches_line_up_answers_with_its_offset():
    # Every patch's nearest neighbour is song "a" 12 s in; two others are merely similar.
    rows = [[("a", 0.95, 12.0 + q * HOP_S), ("b", 0.60, 40.0 + 3 * q), ("c", 0.55, 7.0)] for q in range(6)]
    decision = decide_clip(neighbours(rows), query_offsets(6), None, None, VoteConfig(k=3, min_similarity=0.8), FEATURES)
    assert decision.winner is not None and decision.winner.song_id == "a" and decision.reason is None
    assert decision.votes[0].song_id == "a" and {v.song_id for v in decision.votes} == {"a", "b", "c"}
    assert decision.winner.offset_s == pytest.approx(12.0, abs=0.05)


def test_far_neighbours_give_no_match():
    rows = [[("a", 0.35, 12.0 + q * HOP_S), ("b", 0.30, 3.0), ("c", 0.28, 7.0)] for q in range(6)]
    decision = decide_clip(neighbours(rows), query_offsets(6), None, None, VoteConfig(k=3, min_similarity=0.8), FEATURES)
    assert decision.winner is None and decision.reason == "no_match"
    assert decision.votes and decision.votes[0].song_id == "a"  # the candidates are still ranked


def test_close_but_split_votes_are_ambiguous():
    rows = [[("a", 0.95, 12.0 + q * HOP_S), ("b", 0.95, 30.0 + q * HOP_S)] for q in range(6)]
    cfg = VoteConfig(k=2, min_similarity=0.8, min_share=0.6)
    decision = decide_clip(neighbours(rows), query_offsets(6), None, None, cfg, FEATURES)
    assert decision.winner is None and decision.reason == "ambiguous"


def test_no_neighbours_at_all_is_no_match():
    empty = Neighbours(np.zeros((2, 3), np.float32), np.full((2, 3), None, dtype=object),
                       np.full((2, 3), np.nan, np.float32), {})
    decision = decide_clip(empty, query_offsets(2), None, None, VoteConfig(k=3), FEATURES)
    assert decision.votes == [] and decision.winner is None and decision.reason == "no_match"
