#!/usr/bin/env python3
"""Identification against library size (30 → 1,000 songs): 1-, 2- and 3-s clips, real phone chains,
and the "unknown" rate of songs outside the library (server/evaluation/sizes.py).

    # the benchmark: test and unseen songs, figures for docs/BENCHMARKS.md and docs/sizes.png
    python scripts/identification_sizes.py --corpus data/corpus --cache runs/distractors \\
        --answers runs/sizes-benchmark.json --out docs/BENCHMARKS.md
    # calibration: the training songs and half of the validation songs in the library, the other
    # validation songs outside it; chooses the "unknown" rule and writes encoder/weights/calibration.json
    python scripts/identification_sizes.py --role calibrate --answers runs/sizes-calibrate.json --write

Distractors come from the cache scripts/scale_benchmark.py fills (shifted copies of other corpus
songs); copies of the clips' own songs are left out. --answers keeps every answer, so that --rescore
re-judges saved answers with the shipped rule without embedding anything again.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from tuneprint.server.evaluation.sizes import SizesConfig, load_answers, run_sizes, save_answers, summarize

ROOT = Path(__file__).resolve().parents[1]
VERIFY_WEIGHTS = (0.2, 0.35, 0.5, 0.75, 1.0)  # weights of the verified share the calibration tries


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=("benchmark", "calibrate"), default="benchmark")
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "distractors")
    p.add_argument("--noise-dir", type=Path, help="recorded noises for the clips (default: CORPUS/noise-heldout)")
    p.add_argument("--sizes", type=int, nargs="+", help="songs in the library at each measurement")
    p.add_argument("--clips-per-song", type=int, default=SizesConfig.clips_per_song)
    p.add_argument("--base-library", type=Path, help="keep (or reuse) the starting library here")
    p.add_argument("--answers", type=Path, required=True, help="every answer (written; read with --rescore)")
    p.add_argument("--rescore", action="store_true",
                   help="read the saved --answers instead of answering: a benchmark decides them again with the "
                        "shipped rule (encoder/weights/calibration.json), a calibration chooses from them")
    p.add_argument("--write", action="store_true", help="(calibrate) write the chosen rule to encoder/weights/calibration.json")
    p.add_argument("--landmarks-only", action="store_true",
                   help="(calibrate) keep the shipped embedding rule and choose only the landmark bars for it")
    p.add_argument("--out", type=Path, help="(benchmark) markdown file to write the section into")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "sizes.png")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.rescore:
        meta, results = load_answers(args.answers)
        if args.role == "benchmark":
            results = rejudged(meta, results)
    else:
        meta, results = collect(args)
        save_answers(args.answers, results, meta)
    if args.role == "calibrate":
        return fit_landmarks(meta, results, args) if args.landmarks_only else fit(meta, results, args)
    report(meta, results, args)
    return 0


def collect(args) -> tuple[dict, dict]:
    from tuneprint.server.evaluation.benchmark import held_out_songs
    from tuneprint.server.evaluation.calibrate import calibration_songs
    from tuneprint.server.evaluation.clips import load_noises
    from tuneprint.server.evaluation.scale import cache_landmarks
    from tuneprint.server.evaluation.sizes import distractor_order
    from tuneprint.server.folder import query_encoder_id, shipped_vote
    from tuneprint.server.library import Library, LibrarySettings

    noises = load_noises(args.noise_dir or args.corpus / "noise-heldout")
    if args.role == "benchmark":
        members, outsiders, _ = held_out_songs(args.corpus, 0.33)
        library_songs = members
        sizes = tuple(args.sizes or SizesConfig.sizes)
    else:
        parts, members, outsiders = calibration_songs(args.corpus)
        library_songs = parts["train"] + members
        sizes = tuple(args.sizes or (len(library_songs), 300, 1000))
    cfg = SizesConfig(sizes=sizes, clips_per_song=args.clips_per_song)
    # distractors cached before landmarks existed get theirs from their source songs (once)
    needed = distractor_order(args.cache, [p for p, _ in members + outsiders], cfg.order_seed)[: max(sizes)]
    logging.info("landmarks computed for %d cached distractors", cache_landmarks(needed, args.corpus))
    tmp = Path(tempfile.mkdtemp(prefix="tuneprint-sizes-"))
    try:
        base = args.base_library or tmp / "base"
        if not (base / "settings.json").is_file():  # the starting library, kept with --base-library
            with Library.create(base, LibrarySettings()) as lib:
                lib.add([path for path, _ in library_songs], allow_non_music=True)
        shutil.copytree(base, tmp / "library")  # grown with distractors: a copy
        with Library.open(tmp / "library") as lib:
            shipped = shipped_vote(lib.model_id)  # a kept base library recorded the bars of its day
            if shipped is not None:
                lib.settings = replace(lib.settings, vote=shipped)
            results = run_sizes(lib, members, outsiders, noises, args.cache, cfg)
            meta = {"role": args.role, "model": lib.model_id, "query_encoder": query_encoder_id(lib.model_id),
                    "vote": lib.settings.vote.to_dict(),
                    "members": len(members), "outsiders": len(outsiders), "config": {**cfg.__dict__}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta, results


def rejudged(meta: dict, results: dict) -> dict:
    """Saved answers decided again by the rule shipped for their encoder (encoder/weights/calibration.json)."""
    from tuneprint.server.evaluation.sizes import rejudge
    from tuneprint.server.folder import shipped_vote

    vote = shipped_vote(meta["model"])
    if vote is None:
        raise SystemExit(f"no calibration is shipped for {meta['model']}")
    kind = "a learnt line" if vote.score_rule else "bars"
    meta["rule"] = f"shipped in encoder/weights/calibration.json ({kind}, verification weight {vote.verify_weight:g})"
    return {n: rejudge(answers, vote) for n, answers in results.items()}


def fit_landmarks(meta: dict, results: dict, args) -> int:
    """The landmark bars (server/evaluation/sizes.choose_landmark_rule) for the embedding rule already shipped."""
    from tuneprint.server.evaluation.sizes import choose_landmark_rule
    from tuneprint.server.folder import CALIBRATION_FILE, shipped_vote, write_calibration

    vote = shipped_vote(meta["model"])
    if vote is None:
        raise SystemExit(f"no calibration is shipped for {meta['model']}")
    landmarks = choose_landmark_rule(results, vote)
    print(json.dumps({k: v for k, v in landmarks.items() if k != "tried"}, indent=1))
    if args.write:
        shipped = json.loads(CALIBRATION_FILE.read_text())
        shipped["vote"].update(landmark_min_aligned=landmarks["min_aligned"], landmark_min_ratio=landmarks["min_ratio"])
        report = {**shipped["report"], "landmarks": {
            **landmarks, "sizes": sorted(results), "command": "python scripts/identification_sizes.py --role calibrate "
            "--clips-per-song 12 --answers ANSWERS --rescore --landmarks-only --write"}}
        logging.info("wrote %s", write_calibration(meta["model"], shipped["vote"], report))
    return 0


def fit(meta: dict, results: dict, args) -> int:
    """Bars (index.calibration.choose_size_rule) and learnt lines (choose_score_rule) at every verification
    weight; the one that identifies the most validation member clips, each length counting alike, is kept."""
    from tuneprint.encoder.features import FeatureConfig
    from tuneprint.index.calibration import choose_score_rule, choose_size_rule
    from tuneprint.server.evaluation.sizes import choose_landmark_rule, rule_arrays
    from tuneprint.server.folder import vote_of, write_calibration

    patch_seconds = FeatureConfig().patch_seconds
    tried = {}
    for weight in VERIFY_WEIGHTS:  # the candidates were verified at the library's weight; re-ranked here at each
        by_length: dict = {}
        for size, answers in results.items():
            for seconds, arrays in rule_arrays(answers, weight).items():
                by_length.setdefault(seconds, {})[size] = arrays
        tried[("bars", weight)] = {**choose_size_rule(by_length, patch_seconds), "score_rule": []}
        tried[("line", weight)] = choose_score_rule(by_length, patch_seconds)
    hits = {key: float(np.mean([b["member_hit_rate"] for b in t["by_length"].values()])) for key, t in tried.items()}
    kind, weight = max(tried, key=hits.get)
    chosen = {**tried[("bars", weight)], **tried[(kind, weight)], "verify_weight": weight, "kind": kind,
              "tried": {f"{k} {w}": {s: b["member_hit_rate"] for s, b in t["by_length"].items()}
                        for (k, w), t in tried.items()}}
    chosen_vote = replace(vote_of(meta["vote"]), **{k: chosen[k] for k in (
        "verify_weight", "min_evidence", "min_lead", "short_bars", "reference_songs", "similarity_slope", "score_rule")})
    landmarks = choose_landmark_rule(results, chosen_vote)
    chosen.update(landmark_min_aligned=landmarks["min_aligned"], landmark_min_ratio=landmarks["min_ratio"])
    print(json.dumps({k: v for k, v in chosen.items() if k != "rule"}, indent=1))
    print(json.dumps({k: v for k, v in landmarks.items() if k != "tried"}, indent=1))
    if args.write:
        path = write_calibration(meta["model"], {**meta["vote"], **{k: chosen[k] for k in (
            "verify_weight", "min_evidence", "min_lead", "short_bars", "reference_songs", "similarity_slope",
            "score_rule", "landmark_min_aligned", "landmark_min_ratio")}},
            {"command": "python scripts/identification_sizes.py --role calibrate --write", "sizes": sorted(results),
             "query_encoder": meta.get("query_encoder"),  # the line is learnt on its scores
             "kind": kind, "by_length": chosen["by_length"], "tried": chosen["tried"], "rule": chosen["rule"],
             "landmarks": landmarks})
        logging.info("wrote %s", path)
    return 0


def report(meta: dict, results: dict, args) -> None:
    from tuneprint.server.evaluation.markdown import write_section

    tables = {size: summarize(answers) for size, answers in sorted(results.items())}
    text = markdown(meta, tables)
    print(text)
    plot(tables, args.plot)
    if args.out:
        write_section(args.out, "sizes", "Identification against library size (issue 18)", text)


def markdown(meta: dict, tables: dict[int, dict]) -> str:
    sizes = sorted(tables)
    kinds = sorted({k for t in tables.values() for k in t}, key=lambda k: (k.split()[0] != "member", k))
    head = "| clips | " + " | ".join(f"{n} songs" for n in sizes) + " |"
    lines = [f"Encoder `{meta['model']}`; {meta['members']} songs in the library to start with, "
             f"{meta['outsiders']} outside it; {meta['config']['clips_per_song']} clips per song, length and "
             "condition. Member rows: right song / wrong song; outsider rows: answered \"unknown\"."
             + (f" Decided by the rule {meta['rule']}." if meta.get("rule") else ""), "",
             head, "|" + " --- |" * (len(sizes) + 1)]
    for kind in kinds:
        cells = []
        for n in sizes:
            row = tables[n].get(kind)
            if row is None:
                cells.append("")
            elif kind.startswith("member"):
                cells.append(f"{100 * row['right']:.1f} % / {100 * row['wrong']:.1f} %")
            else:
                cells.append(f"{100 * row['unknown']:.1f} %")
        lines.append(f"| {kind} ({tables[sizes[0]][kind]['clips']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(tables: dict[int, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(tables)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for kind in ("member 3s noise", "member 3s phone-call", "member 3s phone-harsh", "member 2s clean", "member 2s noise",
                 "member 1s clean", "member 1s noise", "member 1s phone-call"):
        a.plot(sizes, [100 * tables[n].get(kind, {}).get("right", np.nan) for n in sizes], "o-", label=kind[7:])
    a.set_title("clips of library songs: right song")
    for kind in ("outsider 3s clean", "outsider 3s noise", "outsider 3s phone-call", "outsider 1s clean", "outsider 1s noise"):
        b.plot(sizes, [100 * tables[n].get(kind, {}).get("unknown", np.nan) for n in sizes], "o-", label=kind[9:])
    b.set_title('clips of other songs: "unknown"')
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("songs in the library")
        ax.set_ylabel("%")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
