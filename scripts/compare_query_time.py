"""Query time of libraries on the same clips: search, vote and verification of each clip, all
libraries in one process and interleaved, so a shared CPU slows them alike.

    python scripts/compare_query_time.py LIB_A LIB_B [LIB_C ...] [--corpus data/corpus] [--clips 400]

The clips are the identification benchmark's (3 s, its conditions, clip seed 7), embedded once
with LIB_A's encoder (every library must share it).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.augment import CONDITIONS
from tuneprint.server.evaluation.benchmark import held_out_songs
from tuneprint.server.evaluation.clips import random_clips
from tuneprint.server.library import Library


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("libraries", nargs="+", type=Path, metavar="LIB", help="two or more libraries of one encoder")
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--clips", type=int, default=400, help="clips answered by each library")
    args = p.parse_args()
    if len(args.libraries) < 2:
        p.error("give two or more libraries")
    libs = [Library.open(root) for root in args.libraries]
    if len({lib.model_id for lib in libs}) > 1:
        raise SystemExit("the libraries use different encoders; their clips cannot be shared")
    members, _, noises = held_out_songs(args.corpus, 0.33)
    rng, sr = np.random.default_rng(7), libs[0].features.sample_rate
    embedded = []
    for path, _ in members:
        for clip in random_clips(load_audio(path, sr=sr), sr, rng, noises, CONDITIONS, 2, 3.0):
            embedded.append(libs[0].embed_clip(clip.samples))
    embedded = embedded[: args.clips]
    times = [[] for _ in libs]
    for emb in embedded:
        for lib, spent in zip(libs, times):
            started = time.perf_counter()
            lib.identify_embeddings(emb)
            spent.append(time.perf_counter() - started)
    for root, spent in zip(args.libraries, times):
        ms = np.array(spent) * 1000
        print(f"{root}: {len(ms)} clips, median {np.median(ms):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms")


if __name__ == "__main__":
    main()
