#!/usr/bin/env python3
"""In-batch retrieval of degraded views on validation songs, for comparing encoders quickly.

For each noise folder, ``--pairs`` (clean patch, degraded view) pairs are drawn from the val songs
with the waveform degradations of encoder/augment.py (stage 4's settings: noise at −3–10 dB, 85 %
recorded, reverb p 0.6 up to RT60 1.0 s, phone p 0.35, speed p 0.3; the same pairs for every
model); each view's nearest clean patch among the batch must be its own. No library, no
thresholds: a minute per model and noise folder, where a benchmark takes many.

    python scripts/view_retrieval.py --model default --model runs/v7.safetensors \\
        --noise-dir data/corpus/noise --noise-dir data/corpus/noise-heldout
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tuneprint.encoder.augment import DegradeConfig
from tuneprint.encoder.checkpoint import load_model
from tuneprint.encoder.features import FeatureConfig
from tuneprint.encoder.pairs import load_tracks, view_retrieval
from tuneprint.server.evaluation.corpus import split_corpus

STAGE4_VIEWS = DegradeConfig(snr_db=(-3.0, 10.0), p_bank_noise=0.85, p_reverb=0.6, rt60_s=(0.2, 1.0))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--model", action="append", required=True, help="'default' or a checkpoint path; repeatable")
    p.add_argument("--noise-dir", type=Path, action="append", required=True, help="repeatable")
    p.add_argument("--pairs", type=int, default=384)
    p.add_argument("--seed", type=int, default=12345)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    features = FeatureConfig()
    tracks = load_tracks(split_corpus(args.corpus)["val"], features, [])
    nets = {spec: load_model(spec).net for spec in args.model}
    for folder, top1 in view_retrieval(nets, tracks, features, args.noise_dir, degrade=STAGE4_VIEWS, pairs=args.pairs,
                                       seed=args.seed):
        print(json.dumps({folder: top1}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
