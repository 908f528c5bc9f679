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
from pathlib import Path

from tuneprint.server.evaluation.sizes import SizesConfig, load_answers, run_sizes, save_answers, summarize

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=("benchmark", "calibrate"), default="benchmark")
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "distractors")
    p.add_argument("--noise-dir", type=Path, help="recorded noises for the clips (default: CORPUS/noise-heldout)")
    p.add_argument("--sizes", type=int, nargs="+", help="songs in the library at each measurement")
    p.add_argument("--clips-per-song", type=int, default=SizesConfig.clips_per_song)
    p.add_argument("--answers", type=Path, required=True, help="every answer (written; read with --rescore)")
    p.add_argument("--rescore", action="store_true", help="judge the saved --answers again with the shipped rule")
    p.add_argument("--write", action="store_true", help="(calibrate) write the chosen rule to encoder/weights/calibration.json")
    p.add_argument("--out", type=Path, help="(benchmark) markdown file to write the section into")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "sizes.png")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.rescore:
        meta, results = load_answers(args.answers)
    else:
        meta, results = collect(args)
        save_answers(args.answers, results, meta)
    if args.role == "calibrate":
        return fit(meta, results, args)
    report(meta, results, args)
    return 0


def collect(args) -> tuple[dict, dict]:
    from tuneprint.server.evaluation.benchmark import held_out_songs
    from tuneprint.server.evaluation.calibrate import calibration_songs
    from tuneprint.server.evaluation.clips import load_noises
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
    tmp = Path(tempfile.mkdtemp(prefix="tuneprint-sizes-"))
    try:
        with Library.create(tmp / "library", LibrarySettings()) as lib:
            lib.add([path for path, _ in library_songs], allow_non_music=True)
            results = run_sizes(lib, members, outsiders, noises, args.cache, cfg)
            meta = {"role": args.role, "model": lib.model_id, "vote": lib.settings.vote.to_dict(),
                    "members": len(members), "outsiders": len(outsiders), "config": {**cfg.__dict__}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta, results


def fit(meta: dict, results: dict, args) -> int:
    from tuneprint.encoder.features import FeatureConfig
    from tuneprint.index.calibration import choose_size_rule
    from tuneprint.server.evaluation.sizes import rule_arrays
    from tuneprint.server.folder import write_calibration

    weight = meta["vote"]["verify_weight"]
    by_length: dict = {}
    for size, answers in results.items():
        for seconds, arrays in rule_arrays(answers, weight).items():
            by_length.setdefault(seconds, {})[size] = arrays
    chosen = choose_size_rule(by_length, FeatureConfig().patch_seconds)
    print(json.dumps(chosen, indent=2))
    if args.write:
        path = write_calibration(meta["model"], {**meta["vote"], **{k: chosen[k] for k in (
            "min_evidence", "min_lead", "short_bars", "reference_songs", "similarity_slope")}},
            {"command": "python scripts/identification_sizes.py --role calibrate --write", "sizes": sorted(results),
             "by_length": chosen["by_length"], "rule": chosen["rule"]})
        logging.info("wrote %s", path)
    return 0


def report(meta: dict, results: dict, args) -> None:
    text = summary_text(meta, results)
    print(text)


def summary_text(meta: dict, results: dict) -> str:
    lines = []
    for size, answers in sorted(results.items()):
        lines.append(f"{size} songs: " + json.dumps(summarize(answers)))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
