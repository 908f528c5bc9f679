#!/usr/bin/env python3
"""Style labels by neighbours when one author's collections count as one label.

Nine of the corpus's 26 collections are arcade games by one author, Kenta Cho of ABA Games (each
package's debian/copyright names him): noiz2sa, gunroar, torus-trooper and tumiki-fighters are
training collections, mu-cade and a7xpg val, parsec47, rrootage and titanion unseen. Counted as
nine labels, a style embedding that puts parsec47 next to noiz2sa is wrong; this measures the
shipped style head and the MFCC baseline both ways, with the protocol of scripts/train_style.py
(10-NN vote over whole tracks, every corpus track a reference, and within the group's collections).

    python scripts/style_by_author.py --corpus data/corpus

Reads the trunk statistics cache of scripts/train_style.py (collects it when missing, ≈12 min).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from tuneprint.encoder.checkpoint import load_model
from tuneprint.encoder.style import load_style
from tuneprint.server.evaluation.style_report import (corpus_statistics, head_vectors, mfcc_vectors, score_groups,
                                                      vectors_of)

ROOT = Path(__file__).resolve().parents[1]
ABA_GAMES = ("noiz2sa", "gunroar", "torus-trooper", "tumiki-fighters", "mu-cade", "a7xpg", "parsec47", "rrootage",
             "titanion")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "style-stats.npz")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    model = load_model("default")
    data = corpus_statistics(args.corpus, model, args.cache)
    labels, groups = data.labels(), data.groups()
    by_author = np.array(["aba-games" if c in ABA_GAMES else c for c in labels], dtype=object)
    representations = {"MFCC baseline": mfcc_vectors(data.parts["train"]),
                       "style head (shipped)": head_vectors(load_style(model_id=model.model_id).head)}
    print("| tracks | representation | labels | track | track within | p@5 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, patch_vectors in representations.items():
        vectors = vectors_of(data.tracks(), patch_vectors)
        for label_name, label_of in (("collection", labels), ("author", by_author)):
            scores = score_groups(vectors, label_of, groups)
            for group in ("unseen", "val", "seen_test"):
                s = scores[group]
                print(f"| {group} | {name} | {label_name} | {s['all'].track_accuracy:.3f} | "
                      f"{s['within'].track_accuracy:.3f} | {s['all'].precision_at_5:.3f} |")


if __name__ == "__main__":
    main()
