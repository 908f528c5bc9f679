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
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import write_section  # noqa: E402


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
    (base_name, base), (new_name, new) = (split_spec(s) for s in (args.base, args.new))
    sets = [s.partition(":")[::2] for s in args.sets]
    if len(args.verify_weight) > 2:
        raise SystemExit("--verify-weight takes one weight (both models) or two (base, new)")
    weights = args.verify_weight[:1] + args.verify_weight[-1:]  # one value serves both
    rows = [compare(label or name, load(base.format(name)), load(new.format(name)), *weights) for name, label in sets]
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


def split_spec(spec: str) -> tuple[str, str]:
    name, sep, pattern = spec.partition("=")
    if not sep or "{}" not in pattern:
        raise SystemExit(f"expected NAME=PATTERN with {{}} in the pattern, got {spec!r}")
    return name, pattern


def load(path: str) -> dict[tuple, dict]:
    try:
        clips = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"cannot read benchmark JSON {path}: {err}")
    return {(c["path"], c["condition"], c["start_s"], c["member"]): c for c in clips}


def rate(clips: list[dict], hit) -> float:
    return 100.0 * sum(map(hit, clips)) / max(1, len(clips))


def compare(name: str, base: dict, new: dict, base_weight: float = 0.0, new_weight: float = 0.0) -> dict:
    """Figures of both models on the clips both JSONs hold; each model's oracle uses its own verify weight."""
    shared = [k for k in base if k in new]
    if not shared:
        raise SystemExit(f"{name}: the two JSONs share no clip (different clip seeds?)")
    identified = lambda c: c["match"] == c["truth"]  # noqa: E731
    row = {"set": name, "clips": len(shared)}
    weights = {"base": base_weight, "new": new_weight}
    for label, runs in (("base", base), ("new", new)):
        pick = lambda cond, member=True: [runs[k] for k in shared if k[1] == cond and k[3] == member]  # noqa: E731
        row[label] = {
            "noise_identified": rate(pick("noise"), identified),
            "noise_ranked_first": rate(pick("noise"), lambda c: c["top"] == c["truth"]),
            "reverb_identified": rate(pick("reverb"), identified),
            "phone_identified": rate(pick("phone"), identified),
            "outsiders_unknown": rate([runs[k] for k in shared if not k[3]], lambda c: c["match"] is None),
            "noise_identified_oracle_90": oracle_hits(pick("noise"), [runs[k] for k in shared if not k[3]],
                                                      verify_weight=weights[label]),
        }
    noisy = [k for k in shared if k[1] == "noise" and k[3]]
    row["noise_only_base"] = sum(identified(base[k]) and not identified(new[k]) for k in noisy)
    row["noise_only_new"] = sum(identified(new[k]) and not identified(base[k]) for k in noisy)
    return row


def oracle_hits(members: list[dict], outsiders: list[dict], unknown: float = 0.90, verify_weight: float = 0.0) -> float:
    """Members identified at the threshold (on the similarity, or on the evidence where the top song
    was verified) that answers exactly ``unknown`` of these outsiders "unknown": what a perfect
    calibration could reach (a diagnosis, never a setting)."""
    if not outsiders:
        return float("nan")
    threshold = float(np.quantile([decision_value(c, verify_weight) for c in outsiders], unknown))
    return rate(members, lambda c: c["top"] == c["truth"] and decision_value(c, verify_weight) >= threshold)


def decision_value(clip: dict, verify_weight: float) -> float:
    """What the "unknown" bar was compared with: similarity, plus the weighted verified share if verified."""
    return (clip["top_similarity"] or 0.0) + verify_weight * (clip.get("top_verified") or 0.0)


def table(rows: list[dict], base: str, new: str) -> str:
    pair = lambda r, key: f"{r['base'][key]:.1f} → **{r['new'][key]:.1f}**"  # noqa: E731
    lines = [f"| noise set | noisy identified ({base} → {new}) | noisy clips only {base} / only {new} identified "
             f"| right song ranked first | identified at 90 % unknown (oracle) | phone | reverb | outsiders \"unknown\" |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| `{r['set']}` | {pair(r, 'noise_identified')} % | {r['noise_only_base']} / {r['noise_only_new']} "
                     f"| {pair(r, 'noise_ranked_first')} % | {pair(r, 'noise_identified_oracle_90')} % "
                     f"| {pair(r, 'phone_identified')} % "
                     f"| {pair(r, 'reverb_identified')} % | {pair(r, 'outsiders_unknown')} % |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
