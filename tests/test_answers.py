"""server/answers.py: the one confidence people read, on hand-built votes."""
from __future__ import annotations

import pytest

from tuneprint.index.vote import SongVote, VoteConfig
from tuneprint.server.answers import confidence

VERIFYING = VoteConfig(min_similarity=0.7, verify_top=3, verify_weight=0.2, min_evidence=0.8)


def vote(similarity: float, verified: float | None = None) -> SongVote:
    return SongVote("s", votes=5, share=0.5, similarity=similarity, offset_s=0.0, aligned=1.0, verified=verified)


def test_the_unknown_bar_is_half_and_a_perfect_match_is_one():
    assert confidence(vote(0.6, verified=1.0), VERIFYING) == pytest.approx(0.5)  # 0.6 + 0.2 × 1.0 = the bar
    assert confidence(vote(1.0, verified=1.0), VERIFYING) == pytest.approx(1.0)
    assert confidence(vote(0.0, verified=0.0), VERIFYING) == pytest.approx(0.0)


def test_confidence_rises_with_the_evidence_and_stays_in_range():
    values = [confidence(vote(s, verified=0.5), VERIFYING) for s in (0.2, 0.5, 0.7, 0.75, 0.9, 1.2)]
    assert values == sorted(values) and all(0.0 <= v <= 1.0 for v in values)


def test_without_verification_the_similarity_bar_is_half():
    cfg = VoteConfig(min_similarity=0.7)
    assert confidence(vote(0.7), cfg) == pytest.approx(0.5)
    assert confidence(vote(0.35), cfg) == pytest.approx(0.25)
    assert confidence(vote(0.85), cfg) == pytest.approx(0.75)
    assert 0.5 < confidence(vote(0.01), VoteConfig()) <= 1.0  # no bar at all: everything is above it
