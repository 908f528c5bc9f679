"""Calibration (index/calibration.py, server/evaluation/calibrate.py): the long-clip threshold keeps
the "unknown" target and never rises; verification is chosen only when it helps; the clips' cache
gives back what was stored."""
from __future__ import annotations

import numpy as np
import pytest

from tuneprint.encoder.features import FeatureConfig
from tuneprint.index.calibration import CalibrationConfig
from tuneprint.index.search import Neighbours
from tuneprint.index.vote import VoteConfig
from tuneprint.server.evaluation import calibrate
from tuneprint.server.evaluation.calibrate import CalibrationClip, CalibrationRun, ClipSet

GRIDS = CalibrationConfig(target_unknown=0.9)


def clip_row(rng: np.random.Generator, member: bool, patches: int, level: float, condition: str = "clean",
             verified: dict | None = None) -> CalibrationClip:
    """A clip's neighbours: patches × 3 neighbours; members mostly match song 'own'."""
    songs = np.array([["own" if member and rng.random() < 0.8 else f"s{rng.integers(20)}" for _ in range(3)]
                      for _ in range(patches)], dtype=object)
    sims = np.sort(rng.normal(level, 0.04, (patches, 3)), axis=1)[:, ::-1].astype(np.float32)
    offsets = np.zeros((patches, 3), np.float32)
    return CalibrationClip(member, condition, "own" if member else None, Neighbours(sims, songs, offsets, {}),
                           np.arange(patches, dtype=np.float32) * 0.19, np.zeros(21, np.float32), verified or {})


def clip_set(clips: list[CalibrationClip]) -> ClipSet:
    return ClipSet(clips, ["own"] + [f"s{i}" for i in range(20)], FeatureConfig())


def test_long_clip_point_rejects_the_target_share_of_outsiders_below_the_short_bar():
    rng = np.random.default_rng(0)
    short = clip_set([clip_row(rng, m, 2, 0.8 if m else 0.7) for m in [True] * 40 + [False] * 60])
    long = clip_set([clip_row(rng, m, 18, 0.8 if m else 0.7) for m in [True] * 40 + [False] * 60])
    best = {"temperature": 0.05, "min_similarity": 0.78, "min_share": 0.0, "min_margin": 0.0}
    run = CalibrationRun(model="", long_clip_seconds=6.0, grids=GRIDS)
    points, report = calibrate.long_clip_point(short, long, best, run)
    assert points[0] == [2, 0.78] and points[1][0] == 18
    assert points[1][1] <= 0.78
    assert report["outsider_unknown_rate"] >= 0.9 and report["member_hit_rate"] > 0.5


def verified_rows(rng: np.random.Generator, informative: bool) -> ClipSet:
    """Members and outsiders whose similarities overlap; the verification score of the true song
    is high (informative) or drawn like everyone else's (useless)."""
    rows = []
    for member in [True] * 60 + [False] * 60:
        row = clip_row(rng, member, 2, 0.73 if member else 0.72, GRIDS.conditions[len(rows) % len(GRIDS.conditions)])
        songs = sorted(set(row.neighbours.song_ids.ravel()))  # a fixed order: set order changes with PYTHONHASHSEED
        row.verified.update({s: float(rng.uniform(0.5, 0.9) if informative and s == "own" else rng.uniform(0.0, 0.4))
                             for s in songs})
        rows.append(row)
    return clip_set(rows)


def test_verification_is_chosen_when_it_separates_and_keeps_the_unknown_target():
    rows = verified_rows(np.random.default_rng(1), informative=True)
    best = calibrate.vote_rule(rows, GRIDS)
    chosen = calibrate.verification_rule(rows, best, GRIDS)
    assert chosen["verify_top"] == GRIDS.verify_top and chosen["verify_weight"] in GRIDS.verify_weights
    report = chosen["verification"]
    assert report["outsider_unknown_rate"] >= 0.9
    assert report["member_hit_rate"] > best["member_hit_rate"]
    cfg = VoteConfig(**{**{k: best[k] for k in ("temperature", "min_similarity", "min_share", "min_margin")},
                        **{k: chosen[k] for k in ("verify_top", "verify_weight", "min_evidence")}})
    assert rows.outcome(cfg)["outsider_unknown_rate"] >= 0.9


def test_verification_is_left_off_when_it_does_not_help():
    rows = verified_rows(np.random.default_rng(2), informative=False)
    best = calibrate.vote_rule(rows, GRIDS)
    chosen = calibrate.verification_rule(rows, best, GRIDS)
    assert (chosen["verify_top"], chosen["verify_weight"], chosen["min_evidence"]) == (0, 0.0, 0.0)
    report = chosen["verification"]
    assert report["member_hit_rate"] <= max(report["similarity_rule_member_hit_rate"], report["weight_0_member_hit_rate"])


def test_the_cache_gives_back_the_same_choices(tmp_path):
    rows = verified_rows(np.random.default_rng(3), informative=True)
    rows.clips[0].neighbours.song_ids[0, 2] = None  # a patch with fewer neighbours than k
    path = tmp_path / "cache.pkl"  # any suffix: the file is .npz inside
    calibrate.save_clips(path, rows)
    loaded = calibrate.load_clips(path)
    assert loaded.songs == rows.songs and loaded.features == rows.features
    assert loaded.clips[0].neighbours.song_ids[0, 2] is None
    assert calibrate.vote_rule(loaded, GRIDS) == calibrate.vote_rule(rows, GRIDS)
    best = calibrate.vote_rule(rows, GRIDS)
    assert calibrate.verification_rule(loaded, best, GRIDS) == calibrate.verification_rule(rows, best, GRIDS)


# -- the size-free rule (scripts/identification_sizes.py --role calibrate) ----------------------------
def test_the_shipped_line_was_learnt_on_the_shipped_query_encoder():
    """The line is learnt on the query encoder's scores: a new query encoder ships with a new
    calibration (scripts/identification_sizes.py --role calibrate --write records which)."""
    import json

    from tuneprint.server.folder import CALIBRATION_FILE, query_encoder_id

    shipped = json.loads(CALIBRATION_FILE.read_text())
    assert shipped["report"]["query_encoder"] == query_encoder_id(shipped["model_id"])


def test_a_shipped_calibration_names_its_encoder(tmp_path):
    from tuneprint.server.folder import shipped_calibration, write_calibration

    path = write_calibration("sha256:abc", {"min_evidence": 1.1, "min_lead": 0.05}, {"sizes": [30]}, tmp_path / "c.json")
    assert shipped_calibration("sha256:abc", path) == {"min_evidence": 1.1, "min_lead": 0.05}
    assert shipped_calibration("sha256:other", path) is None
    assert shipped_calibration("sha256:abc", tmp_path / "missing.json") is None


def test_bars_are_chosen_to_hold_the_unknown_rate_at_every_library_size():
    from tuneprint.index.calibration import SizeRuleConfig, choose_bars, choose_size_rule

    rng = np.random.default_rng(0)
    per_size = {}
    for songs in (30, 300, 3000):
        # outsiders: the best of `songs` impostors (rises with size) and a small lead over the runner-up
        best = np.sort(rng.normal(0.5, 0.1, (400, songs)), axis=1)[:, -2:]
        members = rng.normal(0.95, 0.05, 300)
        per_size[songs] = {"member": np.r_[np.ones(300, bool), np.zeros(400, bool)],
                           "right": np.r_[rng.random(300) < 0.98, np.zeros(400, bool)],
                           "evidence": np.r_[members, best[:, 1]],
                           "lead": np.r_[members - rng.normal(0.6, 0.05, 300), best[:, 1] - best[:, 0]]}
    cfg = SizeRuleConfig(target_unknown=0.97, max_wrong=0.05)
    bars = choose_bars(per_size, cfg.max_wrong, cfg)
    assert all(r["unknown"] >= 0.97 for r in bars["by_size"].values()), bars
    assert bars["member_hit_rate"] > 0.9  # the members stand out from their runner-up at every size
    rule = choose_size_rule({1.0: per_size, 3.0: per_size}, 2.97, cfg)
    assert rule["short_bars"][0][0] == 1.0 and rule["short_bars"][-1][0] == 2.97
    assert rule["reference_songs"] == 0  # nothing is extrapolated with size any more


def test_a_learnt_line_holds_the_unknown_rate_at_every_library_size_and_identifies_more_than_square_bars():
    from tuneprint.index.calibration import SizeRuleConfig, choose_score_rule, choose_size_rule

    rng = np.random.default_rng(1)
    per_size = {}
    for songs in (30, 300, 3000):
        best = np.sort(rng.normal(0.5, 0.1, (400, songs)), axis=1)[:, -2:]  # outsiders' two best impostors
        evidence = rng.normal(0.8, 0.12, 300)  # members: weaker matches, yet clear of their runner-up
        runner = evidence - rng.uniform(0.15, 0.5, 300)
        first, second = np.r_[evidence, best[:, 1]], np.r_[runner, best[:, 0]]
        zero = np.zeros_like(first)
        per_size[songs] = {"member": np.r_[np.ones(300, bool), np.zeros(400, bool)],
                           "right": np.r_[rng.random(300) < 0.99, np.zeros(400, bool)],
                           "evidence": first, "lead": first - second,
                           "features": np.stack([first, zero, zero, zero, second, zero], axis=1)}
    cfg = SizeRuleConfig(target_unknown=0.97, max_wrong=0.05)
    line = choose_score_rule({3.0: per_size}, 2.97, cfg)
    chosen = line["by_length"]["3.0"]
    assert all(r["unknown"] >= 0.97 and r["wrong"] <= 0.05 for r in chosen["by_size"].values()), chosen
    bars = choose_size_rule({3.0: per_size}, 2.97, cfg)["by_length"]["3.0"]
    assert chosen["member_hit_rate"] > bars["member_hit_rate"], (chosen, bars)
    (seconds, bias, *weights), = line["score_rule"]
    assert seconds == 3.0 and len(weights) == 6 and weights[0] > 0 > weights[4]  # more evidence helps, a close runner-up hurts


def test_saved_answers_are_judged_again_by_the_same_decision_as_the_library():
    from tuneprint.index.vote import VoteConfig
    from tuneprint.server.evaluation.sizes import ClipAnswer, rejudge, rule_arrays

    def answer(member, first, second, **aligned):
        cands = [{"song_id": s, "similarity": sim, "verified": ver, "share": 0.5, "margin": 0.1, "patches": 2, **aligned}
                 for s, sim, ver in (first, second)]
        return ClipAnswer(member, 3.0, "clean", "a" if member else None, None, None, cands)

    far = answer(True, ("a", 0.7, 0.5), ("b", 0.4, 0.1), aligned=0.75)  # evidence 1.2, lead 0.7
    close = answer(False, ("c", 0.9, 0.6), ("d", 0.88, 0.6))  # evidence 1.5, lead 0.02; saved before "aligned" was
    bars = VoteConfig(verify_top=3, verify_weight=1.0, min_evidence=1.1, min_lead=0.0)
    line = VoteConfig(verify_top=3, verify_weight=1.0, score_rule=((3.0, -1.0, 1, 1, 0, 0, -1, -1),))  # lead ≥ 1
    assert [a.answer for a in rejudge([far, close], bars)] == ["a", "c"]
    judged = rejudge([far, close], line)
    assert [a.answer for a in judged] == [None, None] and judged[1].reason == "ambiguous"
    line = VoteConfig(verify_top=3, verify_weight=1.0, score_rule=((3.0, -0.5, 1, 1, 0, 0, -1, -1),))  # lead ≥ 0.5
    assert [a.answer for a in rejudge([far, close], line)] == ["a", None]
    arrays = rule_arrays([far, close], 1.0)[3.0]
    assert arrays["features"][0] == pytest.approx([0.7, 0.5, 0.5, 0.1, 0.4, 0.1, 0.75])
    assert arrays["features"][1][-1] == 0.0
    assert list(arrays["right"]) == [True, False] and arrays["lead"] == pytest.approx([0.7, 0.02])
