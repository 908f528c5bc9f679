#!/usr/bin/env python3
"""Measure how alike a clip's own patches are for held-out music and for steady sounds (tones, hum,
noise): the evidence for the bar above which `genre` answers "no clear label".

    python scripts/steady_sounds.py --corpus data/corpus --out docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tuneprint.encoder.checkpoint import load_model
from tuneprint.encoder.embeddings import Embedder
from tuneprint.server.evaluation.clips import load_noises
from tuneprint.server.evaluation.corpus import split_corpus
from tuneprint.server.evaluation.markdown import write_section
from tuneprint.server.evaluation.steady import measure, summary_markdown
from tuneprint.server.folder import LibrarySettings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--model", default="default", help="'default', 'seeded' or a checkpoint path")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--out", type=Path, help="markdown file to write the results section into")
    args = p.parse_args(argv)
    parts = split_corpus(args.corpus)
    songs = [path for path, _ in parts["test"] + parts["unseen"]]
    settings = LibrarySettings()
    music, steady = measure(Embedder(load_model(args.model)), songs, load_noises(args.corpus / "noise"),
                            np.random.default_rng(args.seed), settings.query_hop_frames)
    body = summary_markdown(music, steady, settings.label_steady_similarity)
    print(body)
    if args.out:
        write_section(args.out, "labels-steady", "Labels: steady sounds get no clear label", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
