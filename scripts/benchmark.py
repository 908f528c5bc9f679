#!/usr/bin/env python3
"""Identification benchmark on the development corpus (server/evaluation/benchmark.py).

Builds a library from songs the shipped model never trained on (the seen collections' test
songs and every song of the unseen collections), keeps a third of them out as "not in the
library", then reports:

- hit rate of 3-s clips at random offsets: clean, with recorded sound effects/speech mixed
  in at 0–10 dB SNR, phone-like (300–3400 Hz at 8 kHz, MP3/GSM, noise at 10–20 dB), and
  reverberant (RT60 0.3–0.9 s), and the share answered wrongly / "unknown";
- the share of clips of songs not in the library answered "unknown";
- ingest speed as a multiple of real time, index size per minute of audio, query latency.

    python scripts/fetch_corpus.py --out data/corpus
    python scripts/benchmark.py --corpus data/corpus --out docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tuneprint.server.evaluation.benchmark import BenchmarkConfig, run_benchmark, summarize
from tuneprint.server.evaluation.markdown import write_section

DEFAULT = BenchmarkConfig()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--model", default=DEFAULT.model, help="'default', 'seeded' or a checkpoint path")
    p.add_argument("--backend", choices=["faiss", "annoy", "milvus"], default=DEFAULT.backend)
    p.add_argument("--faiss-factory", default=DEFAULT.faiss_factory,
                   help=f"the FAISS codec (default {DEFAULT.faiss_factory}; 'Flat': exact vectors)")
    p.add_argument("--clips-per-song", type=int, default=DEFAULT.clips_per_song, help="clips per song and condition")
    p.add_argument("--clip-seconds", type=float, default=DEFAULT.clip_seconds, help="length of each clip (default 3 s)")
    p.add_argument("--outsider-share", type=float, default=DEFAULT.outsider_share,
                   help="share of held-out songs kept out of the library")
    p.add_argument("--seed", type=int, default=DEFAULT.seed)
    p.add_argument("--noise-dir", type=Path, help="recorded noises to mix in (default CORPUS/noise, the bank training "
                   "also used; CORPUS/noise-heldout holds sounds it never heard)")
    p.add_argument("--index-hop", type=int, default=DEFAULT.index_hop_frames,
                   help=f"frames between stored patches (default {DEFAULT.index_hop_frames})")
    p.add_argument("--library", type=Path, help="where to build the library (default: a temporary folder)")
    p.add_argument("--out", type=Path, help="markdown file to write the results section into (docs/BENCHMARKS.md)")
    p.add_argument("--json", type=Path, help="write every clip's outcome here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    cfg = BenchmarkConfig(model=args.model, backend=args.backend, faiss_factory=args.faiss_factory,
                          clips_per_song=args.clips_per_song, clip_seconds=args.clip_seconds,
                          outsider_share=args.outsider_share, seed=args.seed, noise_dir=args.noise_dir,
                          index_hop_frames=args.index_hop)
    result = run_benchmark(args.corpus, cfg, library=args.library)
    if args.json:
        args.json.write_text(json.dumps([o.to_dict() for o in result.outcomes], indent=1))
    body = summarize(result, cfg, noise_folder=(args.noise_dir or args.corpus / "noise").name)
    print(body)
    if args.out:
        write_section(args.out, *cfg.section(), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
