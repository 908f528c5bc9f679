#!/usr/bin/env python3
"""Calibrate a model's "unknown" thresholds on validation songs, never on test songs.

The library holds the model's training songs plus half of the validation songs; clips
(clean, noise, phone, reverb) of those validation members must be identified, clips of the
other validation songs must come back "unknown". The vote temperature and thresholds
(``temperature``, ``min_similarity``, ``min_share``, ``min_margin`` of VoteConfig) that identify
the most member clips while rejecting at least ``--target-unknown`` of outsider clips are
written into the checkpoint's metadata; new libraries built with that model use them.

The similarity threshold holds up to a library the size of the calibration library
(``reference_songs``). Larger libraries hold more sound-alikes, so beyond it the threshold
rises with ln(songs) at ``similarity_slope``: the rise of the best impostor similarity measured
over random sub-libraries of every size (index.vote.impostor_slope).

Clips longer than 3 s are cut into more query patches; the best song of an outsider clip is then a
typical match to fewer of them, so the same "unknown" rate holds at a lower threshold. The
threshold of ``--long-clip-seconds`` clips is chosen the same way and stored with the short
clips' as ``similarity_by_patches`` (VoteConfig.min_similarity_for interpolates between them).

Spectral verification (index/verify.py) checks the vote's top songs against their own
spectrograms. The weight of its score in the evidence (similarity + weight × verified share) and
the evidence threshold are chosen the same way, over the same clips; they are written only when
they identify more member clips than the similarity rule at the same "unknown" rate.

    python scripts/calibrate.py --model encoder/weights/default.safetensors --write
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.augment import apply_condition
from tuneprint.encoder.checkpoint import update_checkpoint_extra
from tuneprint.encoder.splits import read_manifest, song_unit, split_songs
from tuneprint.index.verify import verify
from tuneprint.index.vote import VoteConfig, decide, impostor_slope, rank_verified, vote_songs
from tuneprint.server.library import Library, LibrarySettings

log = logging.getLogger("calibrate")
CONDITIONS = ("clean", "noise", "phone", "reverb")  # what the shipped calibration used


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--model", required=True, help="checkpoint to calibrate")
    p.add_argument("--clips-per-song", type=int, default=12)
    p.add_argument("--clip-seconds", type=float, default=3.0, help="length of the calibration clips (default 3 s)")
    p.add_argument("--long-clip-seconds", type=float, default=6.0,
                   help="also calibrate the threshold of clips this long (more patches, lower bar; 0 = off)")
    p.add_argument("--target-unknown", type=float, default=0.95, help="share of outsider clips to reject")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--train-songs", type=int, default=0, help="index only this many training songs (0 = all; for a quick check)")
    p.add_argument("--index-hop", type=int, default=LibrarySettings.index_hop_frames,
                   help=f"frames between stored patches (default {LibrarySettings.index_hop_frames})")
    p.add_argument("--noise-dir", type=Path, help="recorded noises for the noisy clips (default CORPUS/noise)")
    p.add_argument("--write", action="store_true", help="store the thresholds in the checkpoint")
    p.add_argument("--cache", type=Path, help="keep the clips' neighbours here (pickle) to re-choose without re-embedding")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    parts = split_songs(read_manifest(args.corpus))
    outsiders = [it for it in parts["val"] if song_unit(it[0], "calibrate") < 0.5]
    members = [it for it in parts["val"] if it not in outsiders]
    lengths = [args.clip_seconds] + ([args.long_clip_seconds] if args.long_clip_seconds > args.clip_seconds else [])
    caches = [args.cache, args.cache and args.cache.with_name(f"{args.cache.stem}-{args.long_clip_seconds:g}s{args.cache.suffix}")]
    (rows, songs), *longer = [clips(args, parts, members, outsiders, seconds, cache) for seconds, cache in zip(lengths, caches)]

    best = choose(rows, args.target_unknown)
    best["similarity_by_patches"] = []
    if longer:
        best["similarity_by_patches"], best["long_clips"] = long_clip_point(rows, longer[0][0], best, args)
    best.update(choose_verification(rows, best, args.target_unknown))
    if longer and best["verify_top"]:
        best["long_clips_verified"] = outcome(longer[0][0], VoteConfig(**{k: best[k] for k in VOTE_KEYS}))
    best["separation_auc"] = separation(rows, best["temperature"])
    best["reference_songs"] = len(songs)
    slope, quantiles = size_slope(rows, songs, args.target_unknown, args.seed)
    best["similarity_slope"], best["impostor_similarity_by_library_size"] = slope, quantiles
    print(json.dumps(best, indent=2))
    if args.write:
        keys = VOTE_KEYS + ("reference_songs", "similarity_slope")
        update_checkpoint_extra(args.model, calibration={k: best[k] for k in keys},
                                calibration_report={k: v for k, v in best.items() if k not in keys})
        log.info("wrote thresholds into %s", args.model)
    return 0


VOTE_KEYS = ("temperature", "min_similarity", "min_share", "min_margin", "similarity_by_patches",
             "verify_top", "verify_weight", "min_evidence")
TEMPERATURES = (None, 0.1, 0.05, 0.02, 0.01)
VERIFY_TOP = 3  # songs of the vote checked against their spectrograms
VERIFY_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5)


def clips(args, parts, members, outsiders, seconds: float, cache: Path | None) -> tuple[list[dict], list[str]]:
    """The calibration clips of ``seconds`` (see clip_features), from ``cache`` when it holds them."""
    if cache and cache.is_file():
        cached = pickle.loads(cache.read_bytes())
        if not isinstance(cached, dict):
            raise SystemExit(f"{cache}: written by an older calibrate.py; delete it and run again")
        return cached["rows"], cached["songs"]
    noises = [load_audio(f) for f in sorted((args.noise_dir or args.corpus / "noise").iterdir())]
    tmp = Path(tempfile.mkdtemp(prefix="tuneprint-calibrate-"))
    try:
        lib = Library.create(tmp / "library", LibrarySettings(model=str(Path(args.model).resolve()), vote=VoteConfig(),
                                                              index_hop_frames=args.index_hop))
        lib.add([path for path, _ in parts["train"][: args.train_songs or None] + members])
        rows, songs = clip_features(lib, members, outsiders, noises, args, seconds)
        lib.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if cache:
        cache.write_bytes(pickle.dumps({"rows": rows, "songs": songs}))
    return rows, songs


def long_clip_point(short: list[dict], long: list[dict], best: dict, args) -> tuple[list[list], dict]:
    """(patches, threshold) points for short and long clips: for long clips, the lowest similarity
    threshold (never above the short clips') that answers ``--target-unknown`` of their outsider
    clips "unknown" by similarity alone.

    The share and margin tests still apply on top, but they do not count towards the target: on
    val songs the margin test rejected many long outsider clips (the library holds the training
    songs, which the encoder tells apart well), and counting it let 24 % of outsiders through
    in a library of songs the encoder never trained on (docs/BENCHMARKS.md)."""
    cfg = VoteConfig(temperature=best["temperature"])
    tops = [(r, (vote_songs(*r["neighbours"], cfg) or [None])[0]) for r in long]
    passes = np.array([t is not None and t.share >= best["min_share"] and t.margin >= best["min_margin"] for _, t in tops])
    sim = np.array([t.similarity if t else 0.0 for _, t in tops])
    member = np.array([r["member"] for r in long])
    right = np.array([t is not None and t.song_id == r["truth"] for r, t in tops])
    threshold = best["min_similarity"]
    for candidate in np.unique(np.round(sim[~member], 4)):  # ascending: the first that rejects enough
        if candidate <= threshold and (sim < candidate)[~member].mean() >= args.target_unknown:
            threshold = float(candidate)
            break
    accepted = passes & (sim >= threshold) & right
    patches = [int(np.median([len(r["neighbours"][3]) for r in rows])) for rows in (short, long)]
    report = {"seconds": args.long_clip_seconds, "patches": patches[1], "min_similarity": threshold,
              "member_hit_rate": float(accepted[member].mean()),
              "outsider_unknown_rate": float(1.0 - (passes & (sim >= threshold))[~member].mean())}
    return [[patches[0], best["min_similarity"]], [patches[1], threshold]], report


def clip_features(lib: Library, members, outsiders, noises, args, seconds: float) -> tuple[list[dict], list[str]]:
    """For every clip: is it a member, its true song, its raw neighbours (to re-vote offline) and its
    best similarity to every song of the library (``song_best``, in the order of the returned songs)."""
    rng = np.random.default_rng(args.seed)
    sr = lib.features.sample_rate
    truth = {s.path: s.song_id for s in lib.tracks()}
    songs, song_of_vector, stored = stored_vectors(lib)
    spectra = {s: lib.reference_spectrogram(s) for s in songs}
    rows = []
    for path, _ in members + outsiders:
        y = load_audio(path, sr=sr)
        for condition in CONDITIONS:
            for _ in range(args.clips_per_song):
                start = int(rng.uniform(0, len(y) / sr - seconds) * sr)
                clip = y[start : start + int(seconds * sr)]
                emb = lib.embed_clip(apply_condition(clip, condition, sr, rng, noises))
                sims, info = lib.neighbours(emb.vectors, lib.settings.vote.k)
                best = np.full(len(songs), -1.0, dtype=np.float32)
                np.maximum.at(best, song_of_vector, (emb.vectors @ stored.T).max(axis=0))
                neighbours = (info.song_ids, sims, info.offsets_s, emb.offsets_s)
                rows.append({"member": path in truth, "condition": condition, "truth": truth.get(path),
                             "neighbours": neighbours, "song_best": best,
                             "verified": verify_candidates(emb.spectrogram, neighbours, spectra, lib.features)})
    return rows, songs


def verify_candidates(clip_db, neighbours, spectra, features) -> dict[str, float]:
    """Verification score of every song among the top ``VERIFY_TOP`` of the vote at any temperature
    the grid tries (at the vote's offset for that song)."""
    scores: dict[str, float] = {}
    for temperature in TEMPERATURES:
        for v in vote_songs(*neighbours, VoteConfig(temperature=temperature))[:VERIFY_TOP]:
            if v.song_id not in scores:
                scores[v.song_id] = verify(clip_db, spectra[v.song_id], v.offset_s, features)
    return scores


def verified_votes(rows: list[dict], cfg: VoteConfig) -> list:
    """Every clip's winning SongVote after verification re-ranks its top songs (None: no neighbour)."""
    tops = []
    for r in rows:
        votes = vote_songs(*r["neighbours"], cfg)
        scored = {v.song_id: r["verified"][v.song_id] for v in votes[: cfg.verify_top] if v.song_id in r["verified"]}
        tops.append((rank_verified(votes, scored, cfg) or [None])[0])
    return tops


def choose_verification(rows: list[dict], best: dict, target_unknown: float) -> dict:
    """The verification weight and evidence threshold that identify the most member clips while
    rejecting ``target_unknown`` of outsider clips, at the similarity rule's temperature; off
    (``verify_top`` 0) unless that beats both the similarity rule and the same re-ranking with
    weight 0 (similarity alone at an equally fine threshold)."""
    tried = [evidence_rule(rows, best["temperature"], weight, target_unknown) for weight in (0.0,) + VERIFY_WEIGHTS]
    chosen = max(tried[1:], key=lambda t: t["member_hit_rate"])
    baseline = max(best["member_hit_rate"], tried[0]["member_hit_rate"])
    report = {"verification": {**chosen, "similarity_rule_member_hit_rate": best["member_hit_rate"],
                               "weight_0_member_hit_rate": tried[0]["member_hit_rate"],
                               "weights_tried": {t["verify_weight"]: round(t["member_hit_rate"], 4) for t in tried}}}
    if chosen["member_hit_rate"] <= baseline:
        log.info("verification does not beat the similarity rule on these clips: left off")
        return {"verify_top": 0, "verify_weight": 0.0, "min_evidence": 0.0, **report}
    return {k: chosen[k] for k in ("verify_top", "verify_weight", "min_evidence")} | report


def evidence_rule(rows: list[dict], temperature: float | None, weight: float, target_unknown: float) -> dict:
    """Member clips identified when the top songs are ranked by similarity + ``weight`` × verified share
    and the bar on that evidence rejects ``target_unknown`` of outsider clips."""
    member = np.array([r["member"] for r in rows])
    condition = np.array([r["condition"] for r in rows])
    cfg = VoteConfig(temperature=temperature, verify_top=VERIFY_TOP, verify_weight=weight)
    tops = verified_votes(rows, cfg)
    evidence = np.array([t.evidence(cfg.verify_weight) if t else 0.0 for t in tops])
    right = np.array([t is not None and t.song_id == r["truth"] for r, t in zip(rows, tops)])
    # just above the outsider quantile, rounded up so that the stored bar rejects the same clips
    threshold = math.ceil((float(np.quantile(evidence[~member], target_unknown, method="higher")) + 1e-6) * 1e4) / 1e4
    accepted = evidence >= threshold
    return {"verify_top": VERIFY_TOP, "verify_weight": weight, "min_evidence": threshold,
            "member_hit_rate": float((accepted & right)[member].mean()),
            "outsider_unknown_rate": float(1.0 - accepted[~member].mean()),
            "per_condition_hit_rate": {c: float((accepted & right)[member & (condition == c)].mean())
                                       for c in CONDITIONS}}


def outcome(rows: list[dict], cfg: VoteConfig) -> dict:
    """Member clips identified and outsider clips answered "unknown" under ``cfg`` (with verification)."""
    member = np.array([r["member"] for r in rows])
    answers = []
    for r, top in zip(rows, verified_votes(rows, cfg)):
        winner = decide([top], cfg) if top else None
        answers.append((winner is not None, winner is not None and winner.song_id == r["truth"]))
    accepted, right = map(np.array, zip(*answers))
    return {"member_hit_rate": float(right[member].mean()), "outsider_unknown_rate": float(1.0 - accepted[~member].mean())}


def stored_vectors(lib: Library) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The library's songs, the song (index into them) of every stored vector, and the vectors."""
    ids = lib.index.ids()
    song_ids = lib.catalog.lookup(ids).song_ids
    songs = sorted(set(song_ids))
    position = {s: i for i, s in enumerate(songs)}
    return songs, np.array([position[s] for s in song_ids]), lib.index.vectors(ids)


def size_slope(rows: list[dict], songs: list[str], target_unknown: float, seed: int) -> tuple[float, dict[int, float]]:
    """How fast the best impostor similarity rises with library size (index.vote.impostor_slope).

    Every calibration clip counts, members too: any song but its own is an impostor.
    """
    impostors = np.stack([r["song_best"] for r in rows])  # [shape=(clips, songs)]
    own = {s: i for i, s in enumerate(songs)}
    for i, r in enumerate(rows):
        if r["truth"] in own:
            impostors[i, own[r["truth"]]] = -np.inf
    slope, quantiles = impostor_slope(impostors, target_unknown, np.random.default_rng(seed))
    return round(slope, 4), {n: round(q, 4) for n, q in quantiles.items()}


def top_votes(rows: list[dict], temperature: float | None) -> list:
    """Every clip's winning SongVote (None where no neighbour voted) at a vote temperature."""
    cfg = VoteConfig(temperature=temperature)
    return [(vote_songs(*r["neighbours"], cfg) or [None])[0] for r in rows]


def separation(rows: list[dict], temperature: float | None) -> dict[str, float]:
    """How well each vote statistic alone tells identified member clips from outsider clips (ROC AUC)."""
    from sklearn.metrics import roc_auc_score

    tops = [(r, t) for r, t in zip(rows, top_votes(rows, temperature))
            if t is not None and (not r["member"] or t.song_id == r["truth"])]
    member = [r["member"] for r, _ in tops]
    return {name: round(float(roc_auc_score(member, [getattr(t, name) for _, t in tops])), 4)
            for name in ("similarity", "margin", "share")}


MARGINS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15)


def choose(rows: list[dict], target_unknown: float) -> dict:
    """Grid search over vote temperature and thresholds (similarity, vote share, lead over the
    next song): most member hits while rejecting ``target_unknown`` of outsider clips."""
    member = np.array([r["member"] for r in rows])
    condition = np.array([r["condition"] for r in rows])
    best = None
    for temperature in TEMPERATURES:
        right, share, sim, margin = [], [], [], []
        for r, top in zip(rows, top_votes(rows, temperature)):
            right.append(top is not None and top.song_id == r["truth"])
            share.append(top.share if top else 0.0)
            sim.append(top.similarity if top else 0.0)
            margin.append(top.margin if top else 0.0)
        right, share, sim, margin = map(np.array, (right, share, sim, margin))
        min_sims = np.unique(np.round(np.quantile(sim, np.linspace(0, 1, 101)), 4))
        for min_share in np.arange(0.0, 0.95, 0.05).round(2):
            for min_margin in MARGINS:
                # accepted[t, i]: clip i passes with similarity threshold min_sims[t]
                accepted = (sim[None] >= min_sims[:, None]) & (share >= min_share) & (margin >= min_margin)
                unknown = 1.0 - accepted[:, ~member].mean(axis=1)
                hit = (accepted & right)[:, member].mean(axis=1)
                hit = np.where(unknown >= target_unknown, hit, -1.0)
                t = int(np.argmax(hit))
                if hit[t] < 0 or (best is not None and hit[t] <= best["member_hit_rate"]):
                    continue
                per = {c: float((accepted[t] & right)[member & (condition == c)].mean()) for c in CONDITIONS}
                best = {"temperature": temperature, "min_similarity": float(min_sims[t]), "min_share": float(min_share),
                        "min_margin": float(min_margin), "member_hit_rate": float(hit[t]),
                        "outsider_unknown_rate": float(unknown[t]), "per_condition_hit_rate": per,
                        "member_clips": int(member.sum()), "outsider_clips": int((~member).sum())}
    if best is None:
        raise SystemExit("no threshold reaches the target unknown rate")
    return best


if __name__ == "__main__":
    sys.exit(main())
