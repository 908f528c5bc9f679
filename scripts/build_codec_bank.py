#!/usr/bin/env python3
"""Code every training (and validation) song of a mel pack through real codecs once, for training views
(encoder/codec_views.py):

    python scripts/build_codec_bank.py --pack runs/melpack.npz --corpus data/corpus --out runs/codecbank.npz
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.codec_views import build_codec_bank
from tuneprint.encoder.features import FeatureConfig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", type=Path, default=Path("runs/melpack.npz"))
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--out", type=Path, default=Path("runs/codecbank.npz"))
    p.add_argument("--limit", type=int, default=0, help="only this many songs per part (a quick check)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    features = FeatureConfig()
    z = np.load(args.pack)
    arrays = {}
    for part in ("train", "val"):
        names = [str(n) for n in z[f"{part}_paths"]][: args.limit or None]
        lengths = [int(n) for n in z[f"{part}_length"]][: args.limit or None]
        bank = build_codec_bank([str(args.corpus / "music" / n) for n in names], lengths, features,
                                lambda path: load_audio(path, sr=features.sample_rate),
                                lambda items: tqdm(items, desc=part, unit="song"))
        arrays.update({f"{part}_{k}": v for k, v in bank.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    logging.info("%s: %.1f MB", args.out, args.out.stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
