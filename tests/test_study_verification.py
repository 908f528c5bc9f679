"""scripts/study_verification.py: the song-side statistic and the rules' bookkeeping."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import study_verification as study  # noqa: E402
from tuneprint.index.vote import SongVote  # noqa: E402


def test_song_side_matches_own_song_and_not_another():
    rng = np.random.default_rng(0)
    song = rng.uniform(-80, 0, size=(64, 65)).astype(np.float32)
    other = rng.uniform(-80, 0, size=(64, 65)).astype(np.float32)
    clip = song - 6.0  # the same music, quieter
    bands = np.ones(64, dtype=bool)
    # undilated, so that the own song lines up cell for cell
    own, stranger = study.song_side(np.stack([song, other]), clip, bands)
    assert own > 0.9
    assert stranger < own - 0.3


def vote(song: str, similarity: float) -> SongVote:
    return SongVote(song, 10, 1.0, similarity, 0.0, 1.0)


def test_evaluate_rules_counts_hits_at_the_outsider_bar():
    rows, scored = [], []
    for i in range(20):  # members: right song, high similarity
        rows.append({"member": True, "condition": "noise", "truth": "a", "votes": [vote("a", 0.9)]})
        scored.append([{"song": "a", "similarity": 0.9, "share": 0.8, "lift": 0.5, "relative": 0.6, "song_side": 0.9}])
    for i in range(20):  # outsiders: lower similarity, rising so that quantiles are defined
        s = 0.5 + 0.01 * i
        rows.append({"member": False, "condition": "noise", "truth": None, "votes": [vote("b", s)]})
        scored.append([{"song": "b", "similarity": s, "share": 0.3, "lift": 0.0, "relative": 0.0, "song_side": 0.2}])
    report = study.evaluate_rules(rows, scored)
    assert report["right song ranked first"]["noise"] == 1.0
    assert report["similarity @ 90% unknown"]["all"] == 1.0
    # a member whose song is wrong never counts as a hit
    rows[0]["truth"] = "z"
    assert study.evaluate_rules(rows, scored)["similarity @ 90% unknown"]["all"] == 0.95
