#!/usr/bin/env python3
"""Crash and concurrency harness: kill `tuneprint add` at random moments, run two adds at once, and
change a library through the CLI while `tuneprint serve` holds it open. Local and bounded.

For every run it checks that the library opens (or, killed before its creation finished, does not
exist), that every song reported "added" is there, that no recording is stored twice, and that
re-running the same add completes it.

    python scripts/crash_harness.py --corpus data/corpus --out docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tuneprint.server.evaluation.crashes import CrashConfig, run_harness, summary_markdown
from tuneprint.server.evaluation.markdown import write_section


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--songs", type=int, default=CrashConfig.songs, help="corpus songs used (the shortest)")
    p.add_argument("--kills", type=int, default=CrashConfig.kills, help="runs of `add` killed at a random moment")
    p.add_argument("--pairs", type=int, default=CrashConfig.pairs, help="runs of two concurrent `add`s")
    p.add_argument("--serve-runs", type=int, default=CrashConfig.serve_runs,
                   help="runs of serve + CLI add + HTTP DELETE")
    p.add_argument("--seed", type=int, default=CrashConfig.seed)
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    p.add_argument("--out", type=Path, help="markdown file to write the results section into")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader's notes on CPU features
    cfg = CrashConfig(songs=args.songs, kills=args.kills, pairs=args.pairs, serve_runs=args.serve_runs, seed=args.seed)
    results = run_harness(args.corpus, cfg, args.work)
    body = summary_markdown(results, cfg)
    print(body)
    if args.out:
        write_section(args.out, "crash-harness", "A library that never breaks: kills and concurrent writers", body)
    return 0 if results.unusable == 0 and results.lost == 0 and results.duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
