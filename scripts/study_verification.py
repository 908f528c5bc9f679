#!/usr/bin/env python3
"""Study ways to tell a clip's song from strangers, on validation songs only (never test songs).

A library holds the training songs plus half of the val songs (as ``scripts/calibrate.py`` builds
it); clips of every val song are drawn clean, with recorded noise (``CORPUS/noise``), with
synthesized tonal noise (``augment.tonal_noise``: the sustained pitched sounds that the encoder
handles worst, a stand-in for noise it never heard), phone-like and reverberant. For each clip the
vote's top 3 songs are scored several ways, and each rule is judged by the member clips it
identifies at the bar that answers 90 % (and 95 %) of the outsider clips "unknown":

- ``similarity``: the vote's similarity alone;
- ``share``: similarity + w × the verified share (index/verify.py, what ships);
- ``lift``/``relative``: the share minus (relative to) the median share of the same song at offsets
  far from the vote's (a per-clip null: how much any stretch of that song explains this clip);
- ``song-side``: the share of the *song's* loud cells that the clip matches within 6 dB at the fitted gain.

Options change how the clips are queried: ``--index-hop`` (frames between stored patches) and
``--shifts`` (the clip also queried at sub-frame offsets, every ``hop_length / shifts`` samples).

    python scripts/study_verification.py --library runs/study-lib --index-hop 8
    python scripts/study_verification.py --library runs/study-lib-hop4 --index-hop 4
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.ndimage import maximum_filter

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.augment import apply_condition, tonal_noise
from tuneprint.encoder.splits import read_manifest, song_unit, split_songs
from tuneprint.index.verify import VerifyConfig, band_mask, explained_share, fitted_gain_db
from tuneprint.index.vote import vote_songs
from tuneprint.server.library import Library, LibrarySettings

CONDITIONS = ("clean", "noise", "tonal", "phone", "reverb")
VC = VerifyConfig()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--library", type=Path, required=True, help="built here on first use (training + val member songs)")
    p.add_argument("--model", default=LibrarySettings.model,
                   help="encoder of a new library: 'default' or an absolute checkpoint path (e.g. a run to compare)")
    p.add_argument("--index-hop", type=int, default=LibrarySettings.index_hop_frames)
    p.add_argument("--shifts", type=int, default=1, help="sub-frame offsets each clip is queried at (1 = as it is)")
    p.add_argument("--member-clips", type=int, default=30, help="clips per member song and condition")
    p.add_argument("--outsider-clips", type=int, default=16, help="clips per outsider song and condition")
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)

    parts = split_songs(read_manifest(args.corpus))
    outsiders = [it for it in parts["val"] if song_unit(it[0], "calibrate") < 0.5]
    members = [it for it in parts["val"] if it not in outsiders]
    if (args.library / "settings.json").exists():
        lib = Library.open(args.library)
    else:
        lib = Library.create(args.library, LibrarySettings(model=str(args.model), index_hop_frames=args.index_hop))
        lib.add([path for path, _ in parts["train"] + members])
    rows = draw_clips(lib, members, outsiders, args)
    spectra = {s.song_id: lib.reference_spectrogram(s.song_id) for s in lib.tracks()}
    scored = [score_candidates(r, spectra, lib) for r in rows]
    report = {"model": lib.settings.model, "index_hop": lib.settings.index_hop_frames, "shifts": args.shifts, "clips": len(rows),
              "rules": evaluate_rules(rows, scored)}
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def draw_clips(lib: Library, members, outsiders, args) -> list[dict]:
    """Every clip's truth, condition, log-mel and the vote's top songs."""
    sr = lib.features.sample_rate
    truth = {s.path: s.song_id for s in lib.tracks()}
    noises = [load_audio(f) for f in sorted((args.corpus / "noise").iterdir())]
    tonal_rng = np.random.default_rng(2026)
    tonal = [tonal_noise(5 * sr, sr, tonal_rng) for _ in range(80)]
    rng = np.random.default_rng(args.seed)
    cfg = lib.settings.vote.for_library(lib.catalog.song_count())
    rows = []
    for path, _ in members + outsiders:
        y = load_audio(path, sr=sr)
        member = str(path) in truth
        for condition in CONDITIONS:
            bank = tonal if condition == "tonal" else noises
            for _ in range(args.member_clips if member else args.outsider_clips):
                start = int(rng.uniform(0, len(y) / sr - 3.0) * sr)
                clip = apply_condition(y[start : start + 3 * sr], "noise" if condition == "tonal" else condition, sr, rng, bank)
                embs = [lib.embed_clip(clip[j * lib.features.hop_length // args.shifts :]) for j in range(args.shifts)]
                offsets = [e.offsets_s + j * lib.features.hop_length / args.shifts / sr for j, e in enumerate(embs)]
                sims, info = lib.neighbours(np.concatenate([e.vectors for e in embs]), cfg.k)
                votes = vote_songs(info.song_ids, sims, info.offsets_s, np.concatenate(offsets), cfg)
                rows.append({"member": member, "condition": condition, "truth": truth.get(str(path)),
                             "clip_db": embs[0].spectrogram, "votes": votes[:3]})
    return rows


def score_candidates(row: dict, spectra: dict, lib: Library) -> list[dict]:
    """The statistics of each of the clip's top songs (see the module docstring)."""
    clip = row["clip_db"]
    bands = band_mask(lib.features, VC)
    dilated = maximum_filter(clip, size=VC.dilate, mode="nearest")
    out = []
    for v in row["votes"]:
        song = spectra[v.song_id]
        windows = np.lib.stride_tricks.sliding_window_view(song, clip.shape[1], axis=1).transpose(1, 0, 2)
        start = int(round(v.offset_s / lib.features.frame_seconds))
        far = [i for i in range(0, len(windows), 7) if abs(i - start) > 40]
        null = float(np.median(explained_share(clip, windows[far], bands, VC, dilated))) if far else 0.0
        near = windows[max(0, start - VC.max_shift_frames) : start + VC.max_shift_frames + 1]  # what verify() searches
        share = float(explained_share(clip, near, bands, VC, dilated).max()) if len(near) else 0.0
        side = float(song_side(near, dilated, bands).max()) if len(near) else 0.0
        out.append({"song": v.song_id, "similarity": v.similarity, "share": share, "lift": share - null,
                    "relative": (share - null) / max(1.0 - null, 1e-3), "song_side": side})
    return out


def song_side(windows: np.ndarray, dilated: np.ndarray, bands: np.ndarray, tolerance_db: float = 6.0,
              floor_db: float = 30.0) -> np.ndarray:
    """Share of each window's loud song cells that the clip matches within ``tolerance_db`` at the fitted gain."""
    song = windows[:, bands, :].reshape(len(windows), -1)
    ceiling = dilated[bands].reshape(-1)
    gain, loud = fitted_gain_db(song, ceiling, replace(VC, floor_db=floor_db))
    n = loud.sum(axis=-1)
    matched = ((ceiling - (song + gain[:, None])) < tolerance_db) & loud
    return np.where(n >= 10, matched.sum(axis=-1) / np.maximum(n, 1), 0.0)


RULES = {
    "similarity": lambda c: c["similarity"],
    "share (w 0.4, shipped)": lambda c: c["similarity"] + 0.4 * c["share"],
    "share (w 0.7)": lambda c: c["similarity"] + 0.7 * c["share"],
    "lift (w 0.7)": lambda c: c["similarity"] + 0.7 * c["lift"],
    "relative (w 0.4)": lambda c: c["similarity"] + 0.4 * c["relative"],
    "share + song-side (0.4 + 0.4)": lambda c: c["similarity"] + 0.4 * c["share"] + 0.4 * c["song_side"],
}


def evaluate_rules(rows: list[dict], scored: list[list[dict]]) -> dict:
    """Member clips identified per condition by each rule, at the bars rejecting 90 % / 95 % of outsiders."""
    member = np.array([r["member"] for r in rows])
    condition = np.array([r["condition"] for r in rows])
    ranked = np.array([bool(r["votes"]) and r["votes"][0].song_id == r["truth"] for r in rows])
    report = {"right song ranked first": {c: round(float(ranked[member & (condition == c)].mean()), 3) for c in CONDITIONS}}
    for name, rule in RULES.items():
        best = np.array([max(map(rule, cands)) if cands else -1.0 for cands in scored])
        right = np.array([bool(cands) and max(cands, key=rule)["song"] == r["truth"] for cands, r in zip(scored, rows)])
        for target in (0.90, 0.95):
            accepted = best > np.quantile(best[~member], target, method="higher")
            hit = accepted & right
            report[f"{name} @ {target:.0%} unknown"] = {
                "all": round(float(hit[member].mean()), 3),
                **{c: round(float(hit[member & (condition == c)].mean()), 3) for c in CONDITIONS}}
    return report


def format_report(report: dict) -> str:
    lines = [f"model {report['model']}, index hop {report['index_hop']} frames, {report['shifts']} sub-frame shift(s), {report['clips']} clips",
             "| rule | all | " + " | ".join(CONDITIONS) + " |", "| --- " * (len(CONDITIONS) + 2) + "|"]
    for name, figures in report["rules"].items():
        cells = [figures.get("all", "")] + [figures[c] for c in CONDITIONS]
        lines.append(f"| {name} | " + " | ".join(f"{x:.1%}" if x != "" else "" for x in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
