#!/usr/bin/env python3
"""Pack the training split's log-mel spectrograms (and the noise bank's) into one small file, for
training on an accelerator with views made on the device (encoder/mel_views.py).

    python scripts/pack_mel_corpus.py --corpus data/corpus \\
        --extra-noise data/corpus/noise-train-speech --out runs/melpack.npz

Songs are split (server/evaluation/corpus.py) exactly as scripts/train_default.py splits them: train and val
songs only (val for monitoring); test and unseen songs never enter the pack. Each spectrogram is
stored as uint8 steps of 0.5 dB below its loudest cell (127.5 dB of range), about 9 MB per hour.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tuneprint.encoder.features import FeatureConfig
from tuneprint.encoder.mel_pack import pack_corpus
from tuneprint.server.evaluation.corpus import split_corpus

log = logging.getLogger("pack_mel_corpus")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--extra-noise", type=Path, action="append", default=[], metavar="DIR",
                   help="another folder of training noise (e.g. make_babble.py --split train); repeatable")
    p.add_argument("--extra-noise-share", type=float, default=0.25, help="share of noise draws from the extra folders")
    p.add_argument("--out", type=Path, default=Path("runs/melpack.npz"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    features = FeatureConfig()
    bank = sorted(str(f) for f in (args.corpus / "noise").iterdir())
    extra = sorted(str(f) for d in args.extra_noise for f in d.iterdir())
    arrays = pack_corpus(split_corpus(args.corpus), bank, extra, args.extra_noise_share, features,
                         progress=lambda items, desc: tqdm(items, desc=desc, unit="file"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    log.info("%s: %d train songs (%.2f h), %d val, %d noises; %.1f MB", args.out, len(arrays["train_length"]),
             arrays["train_length"].sum() * features.frame_seconds / 3600, len(arrays["val_length"]),
             len(arrays["noise_length"]), args.out.stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
