"""scripts/calibrate.py: the long-clip threshold keeps the "unknown" target and never rises."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import calibrate  # noqa: E402


def clip_row(rng: np.random.Generator, member: bool, patches: int, level: float) -> dict:
    """A clip's neighbours: patches × 3 neighbours; members mostly match song 'own'."""
    songs = np.array([["own" if member and rng.random() < 0.8 else f"s{rng.integers(20)}" for _ in range(3)]
                      for _ in range(patches)], dtype=object)
    sims = np.sort(rng.normal(level, 0.04, (patches, 3)), axis=1)[:, ::-1].astype(np.float32)
    offsets = np.zeros((patches, 3), np.float32)
    return {"member": member, "truth": "own" if member else None,
            "neighbours": (songs, sims, offsets, np.arange(patches, dtype=np.float32) * 0.19)}


def test_long_clip_point_rejects_the_target_share_of_outsiders_below_the_short_bar():
    rng = np.random.default_rng(0)
    short = [clip_row(rng, m, 2, 0.8 if m else 0.7) for m in [True] * 40 + [False] * 60]
    long = [clip_row(rng, m, 18, 0.8 if m else 0.7) for m in [True] * 40 + [False] * 60]
    best = {"temperature": 0.05, "min_similarity": 0.78, "min_share": 0.0, "min_margin": 0.0}
    points, report = calibrate.long_clip_point(short, long, best, SimpleNamespace(target_unknown=0.9, long_clip_seconds=6.0))
    assert points[0] == [2, 0.78] and points[1][0] == 18
    assert points[1][1] <= 0.78
    assert report["outsider_unknown_rate"] >= 0.9 and report["member_hit_rate"] > 0.5


def verified_rows(rng: np.random.Generator, informative: bool) -> list[dict]:
    """Members and outsiders whose similarities overlap; the verification score of the true song
    is high (informative) or drawn like everyone else's (useless)."""
    rows = []
    for member in [True] * 60 + [False] * 60:
        row = clip_row(rng, member, 2, 0.73 if member else 0.72)
        row["condition"] = calibrate.CONDITIONS[len(rows) % len(calibrate.CONDITIONS)]
        songs = {s for s in row["neighbours"][0].ravel()}
        row["verified"] = {s: float(rng.uniform(0.5, 0.9) if informative and s == "own" else rng.uniform(0.0, 0.4))
                           for s in songs}
        rows.append(row)
    return rows


def test_verification_is_chosen_when_it_separates_and_keeps_the_unknown_target():
    rows = verified_rows(np.random.default_rng(1), informative=True)
    best = calibrate.choose(rows, 0.9)
    chosen = calibrate.choose_verification(rows, best, 0.9)
    assert chosen["verify_top"] == calibrate.VERIFY_TOP and chosen["verify_weight"] in calibrate.VERIFY_WEIGHTS
    report = chosen["verification"]
    assert report["outsider_unknown_rate"] >= 0.9
    assert report["member_hit_rate"] > best["member_hit_rate"]
    cfg = calibrate.VoteConfig(**{**{k: best[k] for k in ("temperature", "min_similarity", "min_share", "min_margin")},
                                  **{k: chosen[k] for k in ("verify_top", "verify_weight", "min_evidence")}})
    assert calibrate.outcome(rows, cfg)["outsider_unknown_rate"] >= 0.9


def test_verification_is_left_off_when_it_does_not_help():
    rows = verified_rows(np.random.default_rng(2), informative=False)
    best = calibrate.choose(rows, 0.9)
    chosen = calibrate.choose_verification(rows, best, 0.9)
    assert (chosen["verify_top"], chosen["verify_weight"], chosen["min_evidence"]) == (0, 0.0, 0.0)
    report = chosen["verification"]
    assert report["member_hit_rate"] <= max(report["similarity_rule_member_hit_rate"], report["weight_0_member_hit_rate"])
