#!/usr/bin/env python3
"""Summarise a training run (config.json, metrics.csv) into a section of docs/BENCHMARKS.md.

    python scripts/training_report.py --run runs/default --out docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import write_section  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=Path("runs/default"))
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    config = json.loads((args.run / "config.json").read_text())
    rows = list(csv.DictReader(open(args.run / "metrics.csv")))
    train = config["train"]
    val = [(int(r["step"]), float(r["epoch"]), float(r["val_loss"]), float(r["val_top1"])) for r in rows if r["val_top1"]]
    speed = [float(r["pairs_per_s"]) for r in rows]
    shown = val[:: max(1, len(val) // 10)]
    shown += [row for row in val[-1:] if row not in shown]
    lines = ["| epoch | step | val loss | val top-1 |", "| --- | --- | --- | --- |"]
    lines += [f"| {e:.0f} | {s} | {loss:.3f} | {top1:.3f} |" for s, e, loss, top1 in shown]
    body = f"""
Run `{args.run}`: variant `{train['variant']}`, {train['epochs']} epochs, {rows[-1]['step']} steps of
{train['batch_size']} pairs, Adam lr {train['lr']} (cosine to {train['lr_min']}), contrastive temperature
{train['temperature']}, classifier scale {train['classifier_scale']}; {len(config['train_tracks'])} training songs,
{len(config['val_tracks'])} validation songs, {config['noise_files']} noise files; labels {', '.join(config['labels'])}.
Degraded views: {degraded(train.get('degrade', {}))}.
{f"Started from {config['init_weights']}, not the seeded initialisation." if config.get('init_weights') else "Started from the seeded initialisation."}
Throughput {min(speed):.0f}–{max(speed):.0f} pairs/s (median {sorted(speed)[len(speed) // 2]:.0f}) on this CPU,
which other work shared during the run. *val top-1*: share of 256 degraded validation views whose
nearest clean patch among the 256 is their own.

{chr(10).join(lines)}

Curves: [training-loss-{args.run.name}.png](training-loss-{args.run.name}.png).
"""
    print(body)
    if args.out:
        write_section(args.out, f"training-{args.run.name}", f"Training run {args.run.name}", body)
        # The curves and numbers go beside the report: runs/ is not committed.
        shutil.copyfile(args.run / "loss.png", args.out.parent / f"training-loss-{args.run.name}.png")
        shutil.copyfile(args.run / "metrics.csv", args.out.parent / f"training-metrics-{args.run.name}.csv")
    return 0


def degraded(d: dict) -> str:
    """The view degradations of a run's config, in words."""
    if not d:
        return "not recorded"
    vary = d.get("p_vary_noise", 0.0)  # runs before stage 4 did not have it
    reshaped = f", {vary:.0%} of them re-shaped" if vary else ""
    tonal = d.get("p_tonal_noise", 0.0)  # stage 5 on
    pitched = f"{tonal:.0%} synthesized pitched sounds; of the rest " if tonal else ""
    return (f"noise p {d['p_noise']} at {d['snr_db'][0]:g}–{d['snr_db'][1]:g} dB SNR "
            f"({pitched}{d['p_bank_noise']:.0%} recorded sounds{reshaped}), "
            f"reverb p {d['p_reverb']} RT60 {d['rt60_s'][0]:g}–{d['rt60_s'][1]:g} s, phone p {d['p_phone']}, "
            f"speed p {d['p_speed']} ±{abs(1 - d['speed'][0]):.0%}, gain {d['gain_db'][0]:g}…{d['gain_db'][1]:+g} dB")


if __name__ == "__main__":
    sys.exit(main())
