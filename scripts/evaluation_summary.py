#!/usr/bin/env python3
"""Quote an evaluation's headline numbers (report.json of `tuneprint evaluate`) in docs/BENCHMARKS.md.

    python scripts/evaluate_corpus.py --corpus data/corpus --out docs/evaluation
    python scripts/evaluation_summary.py --report docs/evaluation/report.json --out docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tuneprint.server.evaluation.markdown import write_section
from tuneprint.server.evaluation.report import summary_section


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", type=Path, default=Path("docs/evaluation/report.json"))
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    body = summary_section(json.loads(args.report.read_text()), args.report)
    print(body)
    if args.out:
        write_section(args.out, "evaluation", "Evaluation of the development corpus (tuneprint evaluate)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
