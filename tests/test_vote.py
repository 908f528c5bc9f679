"""index/vote.py: the k-NN vote on hand-built neighbour lists with known answers."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from tuneprint.index.calibration import impostor_slope
from tuneprint.index.vote import (SongVote, VoteConfig, consensus_offset, decide,
                        rank_verified, vote_labels, vote_songs)


def neighbours(rows):
    """Rows of (song, similarity, offset_s) per query patch → the three (n, k) arrays."""
    k = max(len(r) for r in rows)
    rows = [list(r) + [(None, -np.inf, np.nan)] * (k - len(r)) for r in rows]
    songs = np.array([[s for s, _, _ in r] for r in rows], dtype=object)
    sims = np.array([[x for _, x, _ in r] for r in rows], dtype=np.float32)
    offsets = np.array([[o for _, _, o in r] for r in rows], dtype=np.float32)
    return songs, sims, offsets


SEED = VoteConfig(temperature=None)  # the seed's plain majority count


def test_majority_wins_and_shares_sum_to_one():
    songs, sims, offsets = neighbours([
        [("a", 0.9, 10.0), ("a", 0.8, 10.2), ("b", 0.7, 3.0), ("c", 0.6, 1.0)],
        [("a", 0.9, 10.5), ("b", 0.85, 3.4), ("a", 0.7, 10.4), (None, 0.0, 0.0)],
        [("a", 0.95, 11.0), ("a", 0.9, 11.1), ("b", 0.5, 4.0), ("a", 0.4, 25.0)],
    ])
    votes = vote_songs(songs, sims, offsets, np.array([0.0, 0.5, 1.0], np.float32), SEED)
    assert [v.song_id for v in votes] == ["a", "b", "c"]
    assert [v.votes for v in votes] == [7, 3, 1]
    total = 11  # the None neighbour does not vote
    assert [v.share for v in votes] == pytest.approx([7 / total, 3 / total, 1 / total])
    assert sum(v.share for v in votes) == pytest.approx(1.0)


def test_similarity_of_two_patches_is_their_mean_best_with_zero_where_absent():
    songs, sims, offsets = neighbours([
        [("a", 0.9, 0.0), ("a", 0.5, 0.0), ("b", 0.8, 0.0)],
        [("a", 0.7, 0.0), ("a", 0.6, 0.0), ("a", 0.1, 0.0)],
    ])
    votes = {v.song_id: v for v in vote_songs(songs, sims, offsets, np.zeros(2, np.float32), SEED)}
    assert votes["a"].similarity == pytest.approx((0.9 + 0.7) / 2)
    assert votes["b"].similarity == pytest.approx(0.8 / 2)  # no neighbour of patch 2 is from b


def test_similarity_of_a_long_clip_is_its_typical_patch_not_dragged_down_by_a_few():
    # Five patches: a loud noise hides song a from one of them; song b turns up in two.
    rows = [[("a", 0.8, 0.0), ("b", 0.6, 0.0)]] * 2 + [[("a", 0.75, 0.0)], [("c", 0.7, 0.0)], [("a", 0.85, 0.0)]]
    songs, sims, offsets = neighbours(rows)
    votes = {v.song_id: v for v in vote_songs(songs, sims, offsets, np.zeros(5, np.float32), SEED)}
    assert votes["a"].similarity == pytest.approx(0.8)  # median of 0.8, 0.8, 0.75, 0, 0.85 (the mean: 0.64)
    assert votes["b"].similarity == 0.0  # absent from most patches: not a typical match


def test_top_two_order_and_ties_broken_by_similarity():
    songs, sims, offsets = neighbours([
        [("x", 0.3, 0.0), ("y", 0.9, 0.0), ("z", 0.5, 0.0), ("z", 0.5, 0.0)],
        [("x", 0.3, 0.0), ("y", 0.9, 0.0), ("w", 0.2, 0.0), ("z", 0.4, 0.0)],
    ])
    votes = vote_songs(songs, sims, offsets, np.zeros(2, np.float32), SEED)
    # z has 3 votes; x and y 2 each, y is more similar; w 1.
    assert [v.song_id for v in votes] == ["z", "y", "x", "w"]
    assert [v.votes for v in votes] == [3, 2, 2, 1]
    assert votes[:VoteConfig().top][0].song_id == "z" and votes[:VoteConfig().top][1].song_id == "y"


def test_consensus_offset_is_neighbour_offset_minus_query_offset():
    rng = np.random.default_rng(0)
    query_offsets = np.arange(8, dtype=np.float32) * 0.186  # query patches 4 frames apart
    true_start = 42.3
    rows = []
    for q in query_offsets:
        row = [("s", 0.9, true_start + q + rng.uniform(-0.15, 0.15)) for _ in range(4)]
        row.append(("s", 0.5, rng.uniform(0, 100)))  # a stray neighbour elsewhere in the same song
        rows.append(row)
    songs, sims, offsets = neighbours(rows)
    (vote,) = vote_songs(songs, sims, offsets, query_offsets, VoteConfig(offset_bin_s=1.0))
    assert vote.offset_s == pytest.approx(true_start, abs=0.15)
    # 32 of the 40 votes agree (the strays can join the window only by chance)
    assert 32 / 40 <= vote.aligned <= 1.0
    assert vote.score == pytest.approx(vote.share * (0.5 + 0.5 * vote.aligned))


def test_similarity_weighted_vote_prefers_the_close_match_over_many_lookalikes():
    """The right song has 2 near-identical neighbours; a repetitive song fills the other 8 slots."""
    row = [("right", 0.97, 10.0), ("right", 0.95, 10.4)] + [("lookalike", 0.85, 3.0 * j) for j in range(8)]
    songs, sims, offsets = neighbours([row, row])
    counted = vote_songs(songs, sims, offsets, np.zeros(2, np.float32), SEED)
    weighted = vote_songs(songs, sims, offsets, np.zeros(2, np.float32), VoteConfig(temperature=0.02))
    assert counted[0].song_id == "lookalike" and counted[0].share == pytest.approx(0.8)
    assert weighted[0].song_id == "right" and weighted[0].share > 0.9
    assert weighted[0].votes == 4  # counts are still reported as counts
    assert sum(v.share for v in weighted) == pytest.approx(1.0)
    assert weighted[0].offset_s == pytest.approx(10.0, abs=0.41)


def test_vote_weights_rows_sum_to_one_and_skip_missing():
    from tuneprint.index.vote import vote_weights

    sims = np.array([[0.9, 0.8, -np.inf], [0.0, 0.0, 0.0]])
    valid = np.array([[True, True, False], [False, False, False]])
    for t in (0.02, 1.0):
        w = vote_weights(sims, valid, t)
        assert w[0].sum() == pytest.approx(1.0) and w[0, 2] == 0.0 and (w[1] == 0).all()
    assert vote_weights(sims, valid, None).tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]  # one vote each
    assert vote_weights(sims, valid, 0.02)[0, 0] > 0.99


def test_consensus_offset_never_negative():
    songs, sims, offsets = neighbours([[("s", 0.9, 0.1)], [("s", 0.9, 0.6)]])
    (vote,) = vote_songs(songs, sims, offsets, np.array([0.0, 1.0], np.float32))
    assert vote.offset_s == 0.0


def test_consensus_offset_densest_window():
    starts = np.array([1.0, 5.0, 5.2, 5.4, 5.5, 9.0, 20.0])
    offset, aligned = consensus_offset(starts, 1.0)
    assert offset == pytest.approx(np.median([5.0, 5.2, 5.4, 5.5]))
    assert aligned == pytest.approx(4 / 7)
    assert consensus_offset(np.array([]), 1.0) == (0.0, 0.0)


def test_no_neighbours_no_votes():
    songs = np.full((3, 4), None, dtype=object)
    assert vote_songs(songs, np.zeros((3, 4)), np.zeros((3, 4)), np.zeros(3)) == []
    assert decide([]) is None


def _vote(share: float, similarity: float) -> SongVote:
    return SongVote("s", votes=10, share=share, similarity=similarity, offset_s=0.0, aligned=1.0)


def test_decide_thresholds():
    cfg = VoteConfig(min_share=0.3, min_similarity=0.6)
    assert decide([_vote(0.8, 0.9), _vote(0.1, 0.2)], cfg).share == 0.8
    assert decide([_vote(0.29, 0.9)], cfg) is None  # share too low
    assert decide([_vote(0.8, 0.59)], cfg) is None  # similarity too low
    assert decide([_vote(0.3, 0.6)], cfg) is not None  # the thresholds themselves pass


def test_decide_on_a_scattered_vote_is_unknown():
    """Ten songs with one vote each per patch: no song reaches the default share."""
    rows = [[(f"s{j}", 0.5, 0.0) for j in range(10)] for _ in range(5)]
    songs, sims, offsets = neighbours(rows)
    votes = vote_songs(songs, sims, offsets, np.zeros(5, np.float32))
    assert all(v.share == pytest.approx(0.1) for v in votes)
    assert decide(votes, VoteConfig()) is None


def test_label_vote_majority_and_top_two():
    songs = np.array([["a", "a", "b"], ["a", "c", "b"]], dtype=object)
    labels = {"a": ("rock",), "b": ("jazz",), "c": ("pop",)}
    top = vote_labels(songs, labels, top=2)
    assert [label for label, _ in top] == ["rock", "jazz"]
    assert [share for _, share in top] == pytest.approx([3 / 6, 2 / 6])


def test_label_vote_splits_multi_label_songs_and_skips_unlabelled():
    songs = np.array([["a", "b", "u", None], ["a", "b", "u", "u"]], dtype=object)
    labels = {"a": ("rock",), "b": ("jazz", "rock")}  # u has no labels: it abstains, as does None
    top = vote_labels(songs, labels, top=3)
    # rock: 2 (a) + 2 × 0.5 (b) = 3; jazz: 2 × 0.5 = 1; out of 4 labelled votes
    assert top == [("rock", pytest.approx(0.75)), ("jazz", pytest.approx(0.25))]
    assert sum(share for _, share in top) == pytest.approx(1.0)


def test_label_vote_ties_alphabetical_and_empty():
    songs = np.array([["a", "b"]], dtype=object)
    assert [label for label, _ in vote_labels(songs, {"a": ("zeta",), "b": ("alpha",)})] == ["alpha", "zeta"]
    assert vote_labels(songs, {}) == []
    assert vote_labels(np.array([[None, None]], dtype=object), {"a": ("x",)}) == []


def test_margin_is_lead_over_the_next_song_per_query_patch():
    songs, sims, offsets = neighbours([
        [("a", 0.9, 0.0), ("b", 0.7, 0.0), ("a", 0.6, 0.0)],
        [("a", 0.8, 0.0), ("a", 0.75, 0.0), ("a", 0.5, 0.0)],  # no other song: the k-th similarity bounds it
    ])
    votes = {v.song_id: v for v in vote_songs(songs, sims, offsets, np.zeros(2, np.float32), SEED)}
    assert votes["a"].margin == pytest.approx(((0.9 - 0.7) + (0.8 - 0.5)) / 2)
    assert votes["b"].margin == pytest.approx(((0.7 - 0.9) + (0.0 - 0.8)) / 2)  # absent from patch 2: similarity 0


def test_a_clip_close_to_two_songs_is_unknown_under_a_margin_threshold():
    songs, sims, offsets = neighbours([[("a", 0.91, 5.0), ("b", 0.90, 2.0), ("a", 0.89, 5.3)]])
    votes = vote_songs(songs, sims, offsets, np.zeros(1, np.float32), VoteConfig(temperature=0.1))
    assert votes[0].song_id == "a"
    assert decide(votes, VoteConfig(temperature=0.1, min_margin=0.0)).song_id == "a"
    assert decide(votes, VoteConfig(temperature=0.1, min_margin=0.05)) is None


# -- threshold by library size ------------------------------------------------------------------
def test_similarity_threshold_rises_beyond_the_calibrated_library_size_only():
    cfg = VoteConfig(min_similarity=0.8, reference_songs=80, similarity_slope=0.02)
    assert cfg.for_library(80).min_similarity == pytest.approx(0.8)
    assert cfg.for_library(800).min_similarity == pytest.approx(0.8 + 0.02 * math.log(10))
    assert cfg.for_library(8000).min_similarity > cfg.for_library(800).min_similarity
    assert cfg.for_library(20) == cfg  # smaller libraries keep the validated threshold
    assert cfg.for_library(800).min_share == cfg.min_share  # only the similarity threshold moves
    assert VoteConfig(min_similarity=0.8).for_library(5000).min_similarity == 0.8  # uncalibrated: fixed


def test_impostor_slope_grows_for_a_light_tail_and_is_flat_without_spread():
    rng = np.random.default_rng(0)
    gaussian = rng.normal(0.6, 0.05, size=(300, 120))
    slope, quantiles = impostor_slope(gaussian, 0.9, rng, draws=20)
    sizes = sorted(quantiles)
    assert sizes[0] == 10 and sizes[-1] == 120
    assert all(quantiles[a] < quantiles[b] for a, b in zip(sizes, sizes[1:]))
    assert 0.005 < slope < 0.05  # the max of N normals grows ≈ σ·sqrt(2 ln N): ~0.01–0.02 per e-fold here
    flat, _ = impostor_slope(np.full((50, 40), 0.7), 0.9, rng, draws=5)
    assert flat == pytest.approx(0.0, abs=1e-9)


def test_impostor_slope_ignores_each_clips_own_song():
    impostors = np.full((20, 30), 0.5)
    impostors[:, 0] = -np.inf  # every clip's own song
    _, quantiles = impostor_slope(impostors, 0.9, np.random.default_rng(1), draws=5)
    assert all(q == pytest.approx(0.5) for q in quantiles.values())


def test_long_clips_get_the_calibrated_lower_threshold_and_short_ones_keep_theirs():
    cfg = VoteConfig(min_similarity=0.76, similarity_by_patches=((2, 0.76), (18, 0.64)))
    assert cfg.min_similarity_for(1) == pytest.approx(0.76) and cfg.min_similarity_for(2) == pytest.approx(0.76)
    assert cfg.min_similarity_for(18) == pytest.approx(0.64) and cfg.min_similarity_for(200) == pytest.approx(0.64)
    assert 0.64 < cfg.min_similarity_for(6) < 0.76  # in between, linear in ln(patches)
    assert cfg.min_similarity_for(6) == pytest.approx(0.76 - 0.12 * math.log(3) / math.log(9))
    # A larger library raises the whole curve; an uncalibrated config has one threshold.
    assert cfg.for_library(800).min_similarity_for(18) == pytest.approx(0.64 + cfg.for_library(800).min_similarity - 0.76)
    assert VoteConfig(min_similarity=0.7).min_similarity_for(50) == 0.7
    # JSON gives lists; and a point above the short-clip bar never raises it.
    assert VoteConfig(min_similarity=0.7, similarity_by_patches=[[2, 0.7], [18, 0.8]]).min_similarity_for(18) == 0.7


def test_decide_judges_a_vote_by_the_threshold_of_its_clip_length():
    cfg = VoteConfig(min_share=0.0, min_similarity=0.76, similarity_by_patches=((2, 0.76), (18, 0.64)))
    long = SongVote("s", votes=100, share=0.5, similarity=0.7, offset_s=0.0, aligned=1.0, patches=18)
    short = SongVote("s", votes=10, share=0.5, similarity=0.7, offset_s=0.0, aligned=1.0, patches=2)
    assert decide([long], cfg) is long and decide([short], cfg) is None


def test_votes_know_how_many_patches_the_clip_had():
    songs, sims, offsets = neighbours([[("a", 0.9, 0.0)], [("a", 0.8, 0.4)], [("b", 0.7, 1.0)]])
    assert {v.patches for v in vote_songs(songs, sims, offsets, np.zeros(3, np.float32), SEED)} == {3}


# -- spectral verification (index/verify.py) in the vote ---------------------------------------
VERIFYING = VoteConfig(temperature=0.05, min_similarity=0.8, min_share=0.5, verify_top=3, verify_weight=0.5,
                       min_evidence=0.9)


def test_verification_reranks_the_checked_songs_by_evidence():
    votes = [SongVote("a", 6, 0.6, 0.80, 1.0, 1.0), SongVote("b", 4, 0.4, 0.78, 9.0, 1.0),
             SongVote("c", 1, 0.1, 0.70, 3.0, 1.0)]
    ranked = rank_verified(votes, {"a": 0.1, "b": 0.6}, VERIFYING)
    assert [v.song_id for v in ranked] == ["b", "a", "c"]  # 0.78 + 0.3 beats 0.80 + 0.05; c was not checked
    assert ranked[0].verified == 0.6 and ranked[2].verified is None
    assert ranked[0].evidence(0.5) == pytest.approx(1.08)
    assert rank_verified(votes, {"b": 0.6}, VERIFYING) == votes  # the first song unchecked: no re-ranking


def test_with_verification_the_evidence_decides_not_the_share():
    low_share = SongVote("b", 1, 0.1, 0.70, 9.0, 1.0, verified=0.5)  # evidence 0.95
    assert decide([low_share], VERIFYING) is low_share
    weak = replace(low_share, verified=0.3)  # evidence 0.85
    assert decide([weak], VERIFYING) is None
    unchecked = replace(low_share, verified=None)  # no spectrogram: the share and similarity tests apply
    assert decide([unchecked], VERIFYING) is None


def test_the_evidence_bar_rises_with_the_library_and_falls_for_long_clips():
    cfg = replace(VERIFYING, reference_songs=100, similarity_slope=0.04, similarity_by_patches=((2, 0.8), (13, 0.7)))
    bigger = cfg.for_library(1000)
    assert bigger.min_evidence - cfg.min_evidence == pytest.approx(0.04 * math.log(10))
    assert bigger.min_evidence - cfg.min_evidence == pytest.approx(bigger.min_similarity - cfg.min_similarity)
    assert cfg.min_evidence_for(2) == pytest.approx(0.9)
    assert cfg.min_evidence_for(13) == pytest.approx(0.8)
    assert VoteConfig(reference_songs=100, similarity_slope=0.04).for_library(1000).min_evidence == 0.0  # off: untouched


def test_label_ties_go_to_the_more_similar_voters():
    songs = np.array([["a", "b"]], dtype=object)
    labels = {"a": ("zeta",), "b": ("alpha",)}
    assert vote_labels(songs, labels, similarities=np.array([[0.9, 0.4]]))[0] == ("zeta", 0.5)
    assert vote_labels(songs, labels, similarities=np.array([[0.4, 0.9]]))[0] == ("alpha", 0.5)


def test_a_learnt_line_asks_for_the_same_rise_of_similarity_in_a_library_larger_than_calibrated():
    cfg = VoteConfig(verify_top=3, verify_weight=1.0, reference_songs=100, similarity_slope=0.05,
                     score_rule=((1.0, -4.0, 10, 1, 0, 0, -8, 0), (3.0, -2.0, 6, 1, 0, 0, -5, 0)))
    assert cfg.for_library(50) is cfg  # never looser than calibrated
    rise = 0.05 * np.log(1000 / 100)
    assert np.array(cfg.for_library(1000).score_rule) == pytest.approx(np.array(
        [[1.0, -4.0 - 10 * rise, 10, 1, 0, 0, -8, 0], [3.0, -2.0 - 6 * rise, 6, 1, 0, 0, -5, 0]]))


def test_a_learnt_line_can_ask_that_the_patches_agree_in_time_and_an_older_one_ignores_it():
    from dataclasses import replace as with_

    agreed = SongVote("a", 10, 0.6, 0.75, 12.0, aligned=0.9, margin=0.1, verified=0.8)
    scattered = with_(agreed, aligned=0.2)  # the same figures, but its matches point all over the song
    line = VoteConfig(verify_top=3, verify_weight=1.0, score_rule=((3.0, -2.0, 1, 1, 0, 0, 0, 0, 1),))
    assert decide([agreed], line, 3.0) is agreed and decide([scattered], line, 3.0) is None
    older = VoteConfig(verify_top=3, verify_weight=1.0, score_rule=((3.0, -1.4, 1, 1, 0, 0, 0, 0),))  # six weights
    assert decide([agreed], older, 3.0) is agreed and decide([scattered], older, 3.0) is scattered
