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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import write_section  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", type=Path, default=Path("docs/evaluation/report.json"))
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    report = json.loads(args.report.read_text())
    rows = "\n".join(f"| {name} | {value:.1%} |" for name, value in report["headline"].items() if value is not None)
    link = Path("evaluation") / "report.md" if args.report.parent.name == "evaluation" else args.report.with_name("report.md")
    body = f"""
From `python scripts/evaluate_corpus.py --corpus data/corpus --out docs/evaluation` (library: the whole
development corpus, {report['library'].get('songs', '?')} songs; encoder `{report['model'].get('model_id', report['model'])}`;
{report['seconds']:.0f} s). The full report with every table and plot: [{link}]({link}).
*embedding* is tuneprint; *baseline* is MFCC statistics per 3-s patch with the same k-NN vote;
*classifier* is the training run's classifier head. 3-s clips; labels by leave-one-song-out 10-NN.

| measure | value |
| --- | --- |
{rows}
"""
    print(body)
    if args.out:
        write_section(args.out, "evaluation", "Evaluation of the development corpus (tuneprint evaluate)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
