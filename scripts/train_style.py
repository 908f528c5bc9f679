"""Train the style head on the style corpus, compare it with MFCC and the fingerprint, ship the best.

    python scripts/train_style.py --corpus data/corpus

Collects the frozen trunk's statistics of every corpus track (about 5 minutes on 2 CPU cores; kept
in --cache, so a second run only trains and measures), trains a head per objective (supcon, track,
both), keeps the one with the best track accuracy on the val collections, writes it to --out, and
writes the "style" section of docs/BENCHMARKS.md with t-SNE maps (docs/style-map-seen.png,
docs/style-map-unseen.png).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tuneprint.server.evaluation.style_report import train_style

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    p.add_argument("--model", default="default", help="the encoder whose trunk the head reads")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "style-stats.npz",
                   help="the corpus's trunk statistics (reused when they fit the corpus and the encoder)")
    p.add_argument("--out", type=Path, default=ROOT / "encoder" / "weights" / "style.safetensors")
    p.add_argument("--no-save", action="store_true", help="do not write the head (--out)")
    p.add_argument("--benchmarks", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    p.add_argument("--no-benchmarks", action="store_true", help="write neither the BENCHMARKS.md section nor the maps")
    p.add_argument("--steps", type=int, default=None, help="training steps per head (default: StyleTrainConfig's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    benchmarks = None if args.no_benchmarks else args.benchmarks
    result = train_style(args.corpus, None if args.no_save else args.out, benchmarks, cache=args.cache,
                         steps=args.steps, maps_dir=None if benchmarks is None else benchmarks.parent,
                         model_spec=args.model, seed=args.seed)
    print(f"{'variant':<18} {'val track':>9} {'val within':>10} {'unseen track':>12} {'unseen within':>13}")
    for name, scores in result["variants"].items():
        print(f"{name:<18} {scores['val']['all']['track_accuracy']:>9.3f} {scores['val']['within']['track_accuracy']:>10.3f} "
              f"{scores['unseen']['all']['track_accuracy']:>12.3f} {scores['unseen']['within']['track_accuracy']:>13.3f}")
    print(f"shipped: head {result['chosen']}" + ("" if args.no_save else f" → {args.out}")
          + f"; {result['seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
