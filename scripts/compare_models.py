#!/usr/bin/env python3
"""Compare two encoders clip by clip from their benchmark JSONs (same clip seed, so the same clips).

    python scripts/compare_models.py --base v4=runs/bench-v4-{}.json --new v5=runs/bench-v5-{}.json \\
        --sets faiss:noise noise-heldout noise-world noise-world-speech noise-babble --out docs/BENCHMARKS.md

``{}`` in each pattern is replaced by a set name. For every set: noisy clips identified, the
right song ranked first, reverberant clips identified and outsiders answered "unknown", with
the paired count of noisy clips only one of the two models identified, and the noisy clips
each model would identify at the threshold that answers exactly 90 % of these outsiders
"unknown" (an oracle: what a perfect calibration could reach, for diagnosis only; for clips whose top song
was verified, the threshold is on the evidence, similarity + ``--verify-weight`` × verified share). With 240 clips a
condition, a difference of 2–3 points is within the clip draw's noise (seed 7 against seed 8
moves the same model by 1–2 points); the paired counts say whether a change is one-sided.
The figures are server/evaluation/compare.py's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tuneprint.server.evaluation.compare import CompareError, compare_sets, split_spec, table
from tuneprint.server.evaluation.markdown import write_section


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, metavar="NAME=PATTERN", help="the model compared against")
    p.add_argument("--new", required=True, metavar="NAME=PATTERN", help="the candidate")
    p.add_argument("--sets", nargs="+", required=True, metavar="NAME[:LABEL]",
                   help="names substituted for {} in the patterns, each with an optional label for the table")
    p.add_argument("--title", default=None, help="section title (default: 'NEW against BASE')")
    p.add_argument("--notes", type=Path, help="markdown appended under the table")
    p.add_argument("--out", type=Path, help="markdown file to write the section into")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--verify-weight", type=float, nargs="+", default=[0.0], metavar="W",
                   help="weight of the verified share in the evidence of verified clips (the library's verify_weight); "
                        "two values: the base model's, then the new one's (each model's own calibration)")
    args = p.parse_args(argv)
    if len(args.verify_weight) > 2:
        raise SystemExit("--verify-weight takes one weight (both models) or two (base, new)")
    try:
        (base_name, base), (new_name, new) = (split_spec(s) for s in (args.base, args.new))
        weights = (args.verify_weight[0], args.verify_weight[-1])  # one value serves both
        rows = compare_sets(base, new, [s.partition(":")[::2] for s in args.sets], weights)
    except CompareError as e:
        raise SystemExit(str(e)) from e
    if args.json:
        print(json.dumps(rows, indent=2))
    body = table(rows, base_name, new_name)
    if args.notes:
        body += "\n" + args.notes.read_text()
    print(body)
    if args.out:
        title = args.title or f"Encoder {new_name} against {base_name}, clip by clip"
        write_section(args.out, f"compare-{base_name}-{new_name}", title, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
