#!/usr/bin/env python3
"""Build a library from the development corpus and evaluate it into docs/evaluation/.

    python scripts/fetch_corpus.py --out data/corpus
    python scripts/evaluate_corpus.py --corpus data/corpus --out docs/evaluation

The library (default ``data/corpus-library``, or ``data/corpus-library-limitN`` with
``--limit N``) holds every corpus track with its collection as label and the shipped default
encoder; it is reused when present (missing tracks are added, and a library embedded with
another encoder is re-embedded). The evaluation (`tuneprint evaluate`) mixes the corpus's
recorded noises into the degraded clips, evaluates the classifier head of the default
model's training run when its checkpoint is there (``runs/default/model.safetensors``), and
does not query the songs that run trained on (its config.json lists them).
(server/evaluation/corpus_library.py)
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tuneprint.server.evaluation.corpus_library import CorpusEvaluation, evaluate_corpus

DEFAULT = CorpusEvaluation(corpus=Path("data/corpus"), out=Path("docs/evaluation"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=DEFAULT.corpus)
    p.add_argument("--library", type=Path, help="library folder (default data/corpus-library[-limitN])")
    p.add_argument("--out", type=Path, default=DEFAULT.out)
    p.add_argument("--limit", type=int, default=0, help="evaluate on this many tracks only (a check; 0 = all)")
    p.add_argument("--model", default=DEFAULT.model, help="encoder of a new library (default: the shipped one)")
    p.add_argument("--classifier", type=Path,
                   help="checkpoint whose classifier head is evaluated, if it exists (default: the full checkpoint "
                        "of the training run named in the encoder's metadata, e.g. runs/default-v3/model.safetensors)")
    p.add_argument("--train-config", type=Path, help="the encoder's training run config.json, if not found from the model")
    p.add_argument("--holdout", type=float, default=DEFAULT.holdout)
    p.add_argument("--clips-per-song", type=int, default=DEFAULT.clips_per_song)
    p.add_argument("--seed", type=int, default=DEFAULT.seed)
    p.add_argument("--timing-vectors", type=int, default=DEFAULT.timing_vectors)
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for the network and BLAS (default: as they are; 1 while training runs beside)")
    p.add_argument("--quick", action="store_true", help="1- and 3-s clips, one per song, small samples")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    report = evaluate_corpus(CorpusEvaluation(
        corpus=args.corpus, out=args.out, library=args.library, limit=args.limit, model=args.model,
        classifier=args.classifier, train_config=args.train_config, holdout=args.holdout,
        clips_per_song=args.clips_per_song, seed=args.seed, timing_vectors=args.timing_vectors,
        threads=args.threads, quick=args.quick))
    for key, value in report["headline"].items():
        print(f"{key:45s} {'n/a' if value is None else f'{value:.1%}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
