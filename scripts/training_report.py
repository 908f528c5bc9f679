#!/usr/bin/env python3
"""Summarise a training run (config.json, metrics.csv) into a section of docs/BENCHMARKS.md.

    python scripts/training_report.py --run runs/default --out docs/BENCHMARKS.md

The run's curves and numbers are copied beside the report (runs/ is not committed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuneprint.encoder.run_folder import publish_curves, training_summary
from tuneprint.server.evaluation.markdown import write_section


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=Path("runs/default"))
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    body = training_summary(args.run)
    print(body)
    if args.out:
        write_section(args.out, f"training-{args.run.name}", f"Training run {args.run.name}", body)
        publish_curves(args.run, args.out.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
