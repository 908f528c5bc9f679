"""Train the shipped index codec: PCA + product quantizer fitted on the encoder's training music.

    python scripts/train_codec.py --corpus data/corpus [--factory "PCA128,PQ64"]

Embeds the train split of the identification corpus (songs no benchmark measures; cached in
--cache), fits the FAISS codec on a sample of those vectors and writes it beside the encoder as
encoder/weights/codec.faiss with codec.json (encoder id, factory, what it was fitted on). New
libraries of that encoder start with it, so they are compact from their first song
(index/segments.py); a library of another encoder trains its own once it has enough vectors.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from tuneprint.server.codec import fit_codec, write_codec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    p.add_argument("--model", default="default", help="the encoder whose fingerprints the codec compresses")
    p.add_argument("--factory", default="PCA128,PQ64", help="FAISS factory string of the codec")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "codec-train.npy", help="the embedded train split")
    p.add_argument("--out", type=Path, default=ROOT / "encoder" / "weights")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    codec, info = fit_codec(args.corpus, args.model, args.factory, args.cache)
    write_codec(codec, info, args.out)
    print(f"wrote {args.out / 'codec.faiss'}: {info}")


if __name__ == "__main__":
    main()
