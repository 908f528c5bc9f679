#!/usr/bin/env python3
"""Cafe babble the encoder never heard: several synthetic voices (espeak-ng) talking at once.

Training mixes the corpus's recorded sounds (``data/corpus/noise``) into its views, so a
benchmark with those sounds measures songs never trained on, but not noise never trained on.
This writes ``--out`` (default ``data/corpus/noise-babble``): ``--files`` WAVs of ``--seconds``,
each the sum of 3–6 voices (languages, pitches and speeds drawn at random) reading sentences.

``--split train`` writes babble for *training* that shares no voice and no sentence with the
test babble: other espeak-ng languages, the flite engine's voices, and other sentences. A
benchmark on the test babble then still measures speech the encoder never heard.

    apt-get install espeak-ng flite
    python scripts/make_babble.py                      # test babble: data/corpus/noise-babble
    python scripts/make_babble.py --split train --out data/corpus/noise-train-speech --files 60 --seed 101
    python scripts/benchmark.py --noise-dir data/corpus/noise-babble --out docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tuneprint.server.evaluation.noise import make_babble, missing_tools


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/corpus/noise-babble"))
    p.add_argument("--files", type=int, default=24)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="test: the benchmark's babble; train: other voices, engines and sentences")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for tool in missing_tools(args.split):
        raise SystemExit(f"{tool} is not installed: apt-get install {tool}")
    make_babble(args.out, files=args.files, seconds=args.seconds, seed=args.seed, split=args.split)
    return 0


if __name__ == "__main__":
    sys.exit(main())
