"""Measure the classifiers (head, CNN, 10-NN vote; labels and tags) on the development corpus, split by song.

    python scripts/evaluate_classifiers.py --corpus data/corpus

Builds (or reuses) a library of the corpus's seen collections in --library, derives the tags,
trains on the train songs, answers the held-out songs, and writes the "classifiers" section of
docs/BENCHMARKS.md with the confusion matrix PNG beside it. About 10 minutes on 2 CPU cores
with a library already embedded.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tuneprint.server.evaluation.classifiers_report import run_benchmark

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    p.add_argument("--library", type=Path, default=ROOT / "data" / "corpus-classify-library",
                   help="the evaluation's library (created, or reused and completed)")
    p.add_argument("--benchmarks", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    p.add_argument("--no-benchmarks", action="store_true", help="do not write the BENCHMARKS.md section")
    p.add_argument("--figure", type=Path, default=ROOT / "docs" / "classifier_confusion.png")
    p.add_argument("--cnn-inputs", nargs="*", default=["mel"], choices=["mel", "cqt"],
                   help="the CNN inputs to train and measure (none: skip the CNN)")
    p.add_argument("--cnn-epochs", type=int, default=10)
    p.add_argument("--timing-tracks", type=int, default=100, help="library size of the training-time benchmark")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run_benchmark(args.corpus, args.library, None if args.no_benchmarks else args.benchmarks, args.figure,
                  cnn_inputs=tuple(args.cnn_inputs), cnn_epochs=args.cnn_epochs, timing_tracks=args.timing_tracks)


if __name__ == "__main__":
    main()
