"""Measuring style representations (server/evaluation/style.py) and the style report's pieces
(server/evaluation/style_report.py) on tiny synthetic vectors and statistics: no corpus, no audio."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tuneprint.encoder.style import load_style
from tuneprint.encoder.style_training import TrackStatistics
from tuneprint.server.evaluation.style import clip_starts, knn_vote, score_style, unit
from tuneprint.server.evaluation.style_report import (PARTS, SECTION, StyleData, Variant, Vectors, choose_variant,
                                                      compare_variants, load_cache, render, save_cache,
                                                      save_shipped, score_groups, style_meta, vectors_of)


def clusters(n_per: int = 12, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Two tight, well-separated clusters of unit vectors in 8-d."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[:2] * 10
    X = np.concatenate([c + 0.1 * rng.standard_normal((n_per, 8)) for c in centres])
    return unit(X), ["a"] * n_per + ["b"] * n_per


# -- pure scoring ---------------------------------------------------------------------------------------
def test_separated_clusters_score_one():
    X, labels = clusters()
    clips = {i: np.stack([X[i], X[i] + 0.01]) for i in range(len(X))}
    s = score_style(X, labels, list(range(len(X))), clips, k=10)
    assert (s.tracks, s.clips) == (24, 48)
    assert s.track_accuracy == s.clip_accuracy == s.precision_at_5 == 1.0


def test_leave_one_out_excludes_the_query():
    # Track 0 is alone in its collection bar a far-away track: with itself excluded, its nearest is "b".
    X = unit(np.array([[1.0, 0.0], [0.95, 0.05], [0.0, 1.0]]))
    labels = ["a", "b", "a"]
    s = score_style(X, labels, [0], {0: X[:1]}, k=1)
    assert s.track_accuracy == 0.0 and s.clip_accuracy == 0.0 and s.precision_at_5 == 0.5
    # The query does not answer itself even when listed among the references.
    assert score_style(X, labels, [0], k=1, references=[0, 1]).track_accuracy == 0.0


def test_references_restrict_the_voters():
    X = unit(np.array([[1.0, 0.0], [0.95, 0.05], [0.9, 0.2], [0.0, 1.0]]))
    labels = ["a", "b", "a", "c"]
    assert score_style(X, labels, [0], k=1).track_accuracy == 0.0
    s = score_style(X, labels, [0], k=1, references=[0, 2, 3])
    assert s.track_accuracy == 1.0 and s.precision_at_5 == 0.5  # 2 references left: "a" and "c"


def test_precision_at_5_counts_the_five_nearest_others():
    # Query at angle 0; others at growing angles: labels of the 5 nearest are a, b, a, b, a.
    angles = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 1.1])
    X = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = ["a", "a", "b", "a", "b", "a", "a", "a"]
    s = score_style(X, labels, [0], k=1)
    assert s.precision_at_5 == pytest.approx(0.6)
    assert s.track_accuracy == 1.0 and np.isnan(s.clip_accuracy) and s.clips == 0


def test_knn_vote_ties_and_empty():
    labels = np.array(["a", "b", "a", "b"], dtype=object)
    sims = np.array([0.9, 0.95, 0.1, 0.8])
    assert knn_vote(sims, labels, 4) == "b"  # two votes each; b's similarities sum higher
    assert knn_vote(np.full(4, -np.inf), labels, 3) is None


def test_clip_starts():
    assert clip_starts(20) == [0, 7]
    assert clip_starts(6) == []
    starts = clip_starts(100)  # 14 clips: 6 kept, spread from the first to the last
    assert len(starts) == 6 and starts[0] == 0 and starts[-1] == 91 and all(s % 7 == 0 for s in starts)
    assert len(set(starts)) == 6


# -- the report on synthetic statistics -------------------------------------------------------------------
def synthetic_data(seed: int = 0) -> StyleData:
    """Four parts of tracks whose 1,920-d statistics differ by collection; a few patches each."""
    rng = np.random.default_rng(seed)
    layout = {"train": ["t1", "t1", "t1", "t2", "t2", "t2"], "seen_test": ["t1", "t2"],
              "val": ["v1", "v1", "v2", "v2"], "unseen": ["u1", "u1", "u2", "u2"]}
    collections = sorted({c for cs in layout.values() for c in cs})
    centre = {c: rng.uniform(0.1, 2.0, 1920) for c in collections}
    parts, items = {}, {}
    for part, labels in layout.items():
        tracks = []
        for i, label in enumerate(labels):
            p = int(rng.integers(8, 16))
            stats = np.abs(centre[label] + 0.05 * rng.standard_normal((p, 1920)))
            fps = unit(rng.standard_normal((p, 16)) + 3 * np.eye(16)[collections.index(label)])
            t = TrackStatistics(f"/music/{part}/{i}.ogg", label, stats.astype(np.float16), fps.astype(np.float16),
                                patches_mfcc=rng.standard_normal((p, 40)).astype(np.float32) + collections.index(label),
                                augmented=stats[: p // 2].astype(np.float16) if part == "train" else None)
            tracks.append(t)
        parts[part] = tracks
        items[part] = [(t.path, t.label) for t in tracks]
    return StyleData("sha256:test", 32, parts, items, 1.5)


def test_cache_round_trip(tmp_path):
    data = synthetic_data()
    back = load_cache(save_cache(tmp_path / "stats.npz", data))
    assert (back.model_id, back.hop_frames, back.items, back.collect_seconds) == ("sha256:test", 32, data.items, 1.5)
    for a, b in zip(data.tracks(), back.tracks()):
        assert (a.path, a.label) == (b.path, b.label)
        assert np.array_equal(a.stats, b.stats) and np.array_equal(a.fingerprints, b.fingerprints)
        assert np.array_equal(a.patches_mfcc, b.patches_mfcc)
        assert (a.augmented is None) == (b.augmented is None)
        assert a.augmented is None or np.array_equal(a.augmented, b.augmented)
    assert list(back.groups()) == list(data.groups())


def test_vectors_and_groups():
    data = synthetic_data()
    vectors = vectors_of(data.tracks(), lambda t: t.fingerprints.astype(np.float32), clip_patches=4, max_clips=2)
    assert vectors.tracks.shape == (16, 16)
    assert np.allclose(np.linalg.norm(vectors.tracks, axis=1), 1, atol=1e-5)
    assert all(1 <= len(c) <= 2 for c in vectors.clips.values())
    scores = score_groups(vectors, data.labels(), data.groups(), k=1)
    assert set(scores) == {"val", "unseen", "seen_test"}
    assert scores["unseen"]["within"].track_accuracy == 1.0  # fingerprints separate the collections


def _variant(objective: str | None, val: float, n: int = 24) -> Variant:
    from tuneprint.encoder.style import StyleHead
    from tuneprint.server.evaluation.style import StyleScores

    s = StyleScores(n, val, 0, float("nan"), 0.0)
    return Variant(f"head: {objective}" if objective else "mfcc", Vectors(np.zeros((1, 2)), {}),
                   {"val": {"all": s, "within": s}}, objective, StyleHead() if objective else None)


def test_choice_prefers_track_on_ties_only():
    heads = [_variant("supcon", 0.25), _variant("track", 0.25), _variant("both", 0.25)]
    assert choose_variant(heads).objective == "track"
    # One standard error of 0.5 on 24 tracks is 0.102: 0.42 ties, 0.30 does not.
    assert choose_variant([_variant("supcon", 0.5), _variant("track", 0.42)]).objective == "track"
    assert choose_variant([_variant("supcon", 0.5), _variant("track", 0.30), _variant("both", 0.5)]).objective == "supcon"
    # A baseline never ships, however good.
    assert choose_variant([_variant(None, 0.9), _variant("both", 0.1)]).objective == "both"
    with pytest.raises(ValueError):
        choose_variant([_variant(None, 0.9)])


def test_compare_choose_render_and_save(tmp_path):
    data = synthetic_data()
    variants = compare_variants(data, steps=2)
    assert [v.name for v in variants] == ["mfcc", "fingerprint", "trunk statistics", "head: supcon", "head: track",
                                         "head: both"]
    chosen = choose_variant(variants)
    meta = style_meta(data, chosen)
    assert meta["held_out"] == {"val": ["v1", "v2"], "unseen": ["u1", "u2"]} and meta["train_collections"] == ["t1", "t2"]
    assert meta["steps"] == 2 and set(meta["figures"]) == {"val", "unseen", "seen_test"}
    body = render(data, variants, chosen, weights="encoder/weights/style.safetensors",
                  maps={"seen": ("style-map-seen.png", {})}, seconds=12.0)
    assert f"objective **{chosen.objective}**" in body and "(shipped)" in body
    assert "![style map, seen](style-map-seen.png)" in body
    assert body.count("| head: ") >= 3 and all(part in body for part in PARTS)
    assert SECTION[0] == "style"
    style = load_style(save_shipped(tmp_path / "style.safetensors", "sha256:test", chosen, meta), "sha256:test")
    assert style.meta["objective"] == chosen.objective and style.dim == 128
    x = data.parts["val"][0].stats.astype(np.float32)
    with torch.inference_mode():
        assert np.allclose(style.vectors(x), chosen.head(torch.from_numpy(x)).numpy(), atol=1e-6)
