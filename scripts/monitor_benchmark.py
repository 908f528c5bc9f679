#!/usr/bin/env python3
"""Monitoring benchmark on the development corpus (server/evaluation/monitor.py).

Builds a library of the identification benchmark's held-out members (songs the encoder never
trained on), makes mixes of their excerpts with crossfades, talk-over noise (CORPUS/noise) and gaps
of held-out songs kept out of the library, walks each with `Library.monitor` (what `tuneprint
monitor` runs) and reports the share of seconds labelled right and the boundary error.

    python scripts/monitor_benchmark.py --corpus data/corpus --out docs/BENCHMARKS.md
    python scripts/monitor_benchmark.py --corpus data/corpus --mixes 2 --songs-per-mix 3 --library-songs 12   # a quick look
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tuneprint.server.evaluation.markdown import write_section
from tuneprint.server.evaluation.monitor import MonitorBenchmarkConfig, run_monitor_benchmark, summarize

DEFAULT = MonitorBenchmarkConfig()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--model", default=DEFAULT.model, help="'default', 'seeded' or a checkpoint path")
    p.add_argument("--backend", choices=["faiss", "annoy", "milvus"], default=DEFAULT.backend)
    p.add_argument("--mixes", type=int, default=DEFAULT.mixes)
    p.add_argument("--songs-per-mix", type=int, default=DEFAULT.songs_per_mix)
    p.add_argument("--library-songs", type=int, help="held-out members in the library (default: all)")
    p.add_argument("--window", type=float, default=DEFAULT.window_s, help="seconds answered at a time")
    p.add_argument("--hop", type=float, default=DEFAULT.hop_s, help="seconds between windows")
    p.add_argument("--seed", type=int, default=DEFAULT.seed)
    p.add_argument("--library", type=Path, help="where to build the library, or one built by an earlier run to reuse "
                   "(default: a temporary folder)")
    p.add_argument("--keep-mixes", type=Path, help="keep the mixes (FLAC) in this folder")
    p.add_argument("--out", type=Path, help="markdown file to write the results section into (docs/BENCHMARKS.md)")
    p.add_argument("--json", type=Path, help="write every mix's truth, stretches and scores here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    cfg = MonitorBenchmarkConfig(model=args.model, backend=args.backend, mixes=args.mixes,
                                 songs_per_mix=args.songs_per_mix, library_songs=args.library_songs, seed=args.seed,
                                 window_s=args.window, hop_s=args.hop)
    outcomes, stats = run_monitor_benchmark(args.corpus, cfg, library=args.library, keep_mixes=args.keep_mixes)
    if args.json:
        args.json.write_text(json.dumps([{"truth": [vars(p) for p in o.truth], "seconds": o.seconds,
                                          "stretches": [s.to_dict() for s in o.stretches], "scores": o.scores}
                                         for o in outcomes], indent=1))
    body = summarize(outcomes, stats, cfg)
    print(body)
    if args.out:
        write_section(args.out, "monitor", "Monitoring long recordings (mixes)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
