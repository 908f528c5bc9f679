#!/usr/bin/env python3
"""Train each loss variant for the same budget and compare them on songs none of them saw.

Variants (issue 3, the seed's comparison plus ours): decoder-only, classifier-only, both
(decoder + classifier), both + contrastive. For each: 3-s clip hit rate (clean, noise,
phone) on a library of held-out songs, label accuracy by 10-NN majority vote for tracks of
collections no model trained on, and training time.

    python scripts/compare_variants.py --steps 300 --out docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import write_section  # noqa: E402
from benchmark import held_out_songs, hit_rates, identify_clips  # noqa: E402

from tuneprint.encoder.embeddings import Embeddings  # noqa: E402
from tuneprint.encoder.splits import UNSEEN_LABELS, read_manifest, split_songs  # noqa: E402
from tuneprint.encoder.training import TrainConfig, train  # noqa: E402
from tuneprint.index.vote import VoteConfig  # noqa: E402
from tuneprint.server.library import Library, LibrarySettings  # noqa: E402

log = logging.getLogger("compare_variants")
VARIANTS = ("decoder", "classifier", "both", "both+contrastive")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--runs", type=Path, default=Path("runs/variants"))
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--steps", type=int, default=300, help="training steps per variant (equal budget)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--clips-per-song", type=int, default=4)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, help="markdown file for the results section (docs/BENCHMARKS.md)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    parts = split_songs(read_manifest(args.corpus))
    noise_paths = sorted(str(f) for f in (args.corpus / "noise").iterdir())
    members, outsiders, noises = held_out_songs(args.corpus, 0.33)
    rows = []
    for variant in args.variants:
        run = args.runs / variant.replace("+", "-")
        cfg = TrainConfig(variant=variant, epochs=1, batch_size=args.batch_size, threads=args.threads,
                          patches_per_epoch=args.steps * args.batch_size, checkpoint_every=100)
        started = time.perf_counter()
        if (run / "model.safetensors").is_file():
            log.info("%s: already trained in %s", variant, run)
            minutes = float("nan")
        else:
            shutil.rmtree(run, ignore_errors=True)
            train(parts["train"], run, cfg=cfg, val_items=parts["val"], noise_paths=noise_paths, progress=False)
            minutes = (time.perf_counter() - started) / 60
        rows.append((variant, minutes, *measure(run / "model.safetensors", members, outsiders, noises, args)))
    body = table(rows, args, len(members), len(outsiders))
    print(body)
    if args.out:
        write_section(args.out, "variants", "Training variants at an equal budget", body)
    return 0


def measure(weights: Path, members, outsiders, noises, args) -> tuple[dict, float, int]:
    """Hit rates of 3-s clips and unseen-label accuracy for one checkpoint."""
    tmp = Path(tempfile.mkdtemp(prefix="tuneprint-variant-"))
    try:
        # Plain vote without "unknown": the variants are compared on ranking, not on a calibration.
        settings = LibrarySettings(model=str(weights.resolve()), vote=VoteConfig(min_share=0.0, min_similarity=-1.0))
        with Library.create(tmp / "lib", settings) as lib:
            lib.add([path for path, _ in members], labels={path: [label] for path, label in members})
            outcomes, _ = identify_clips(lib, members, [], noises, args.clips_per_song, seed=3,
                                         conditions=("clean", "noise", "phone"))
            accuracy, n = unseen_label_accuracy(lib)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return hit_rates(outcomes), accuracy, n


def unseen_label_accuracy(lib: Library) -> tuple[float, int]:
    """Leave-one-song-out: each unseen-collection track is labelled by its snippets' 10 nearest
    neighbours among the other songs (majority over the whole track)."""
    right = []
    for song in lib.tracks():
        if not set(song.labels) & set(UNSEEN_LABELS):
            continue
        rows = lib.catalog.row_ids(song.song_id)
        emb = Embeddings(lib.index.vectors(rows), np.zeros(len(rows), np.float32))
        right.append(lib.label_embeddings(emb, exclude_song=song.song_id).label in song.labels)
    return float(np.mean(right)) if right else float("nan"), len(right)


def table(rows, args, n_members, n_outsiders) -> str:
    lines = ["| variant | clean | noise 0–10 dB | phone | unseen-label accuracy (10-NN) | training time |",
             "| --- | --- | --- | --- | --- | --- |"]
    for variant, minutes, rates, accuracy, n in rows:
        lines.append(f"| {variant} | {rates.get('clean', float('nan')):.1%} | {rates.get('noise', float('nan')):.1%} | "
                     f"{rates.get('phone', float('nan')):.1%} | {accuracy:.1%} (n={n}) | {minutes:.1f} min |")
    return (f"Each variant: {args.steps} steps of {args.batch_size} pairs on the train split, same seed and "
            f"augmentations. Library: {n_members} held-out songs; {args.clips_per_song} clips of 3 s per song and "
            f"condition; the answer is the top-ranked song (no \"unknown\" threshold).\n\n" + "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
