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
