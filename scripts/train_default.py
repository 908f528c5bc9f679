#!/usr/bin/env python3
"""Train the shipped default encoder on the development corpus and export it.

    python scripts/fetch_corpus.py --out data/corpus
    python scripts/train_default.py --corpus data/corpus --run runs/default --epochs 30

Songs are split by encoder.splits: training sees the train part of the seen collections
only. The final weights are written in half precision to encoder/weights/default.safetensors
(with --export); the run's facts go into its metadata and encoder/weights/MODEL_CARD.md describes it.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from tuneprint.encoder.augment import DegradeConfig
from tuneprint.encoder.checkpoint import DEFAULT_WEIGHTS, load_checkpoint, save_checkpoint
from tuneprint.encoder.splits import read_manifest, split_songs
from tuneprint.encoder.training import TrainConfig, train


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--run", type=Path, default=Path("runs/default"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--variant", default="contrastive+classifier")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init", help="start from these weights (e.g. the shipped default) instead of the seeded init")
    p.add_argument("--lr", type=float, default=TrainConfig.lr, help=f"Adam learning rate, cosine-decayed (default {TrainConfig.lr})")
    p.add_argument("--p-reverb", type=float, default=DegradeConfig.p_reverb, help="share of views in a synthetic room")
    p.add_argument("--rt60-max", type=float, default=DegradeConfig.rt60_s[1], help="longest reverberation time (s)")
    p.add_argument("--p-noise", type=float, default=DegradeConfig.p_noise, help="share of views with background noise")
    p.add_argument("--p-bank-noise", type=float, default=DegradeConfig.p_bank_noise,
                   help="share of that noise drawn from recorded sounds rather than coloured noise")
    p.add_argument("--snr", type=float, nargs=2, default=DegradeConfig.snr_db, metavar=("LOW", "HIGH"),
                   help="range of the noise's SNR in dB (default %(default)s)")
    p.add_argument("--p-vary-noise", type=float, default=DegradeConfig.p_vary_noise,
                   help="share of recorded noise re-shaped into a new sound (rate, EQ, layering)")
    p.add_argument("--p-tonal-noise", type=float, default=DegradeConfig.p_tonal_noise,
                   help="share of noise synthesized as pitched sounds (notes, calls, drones, bells; augment.tonal_noise)")
    p.add_argument("--p-music-noise", type=float, default=DegradeConfig.p_music_noise,
                   help="share of noise that is another training song (interference that is music)")
    p.add_argument("--music-snr", type=float, nargs=2, default=DegradeConfig.music_snr_db, metavar=("LOW", "HIGH"),
                   help=f"SNR range of that song in dB (default {DegradeConfig.music_snr_db})")
    p.add_argument("--extra-noise", type=Path, action="append", default=[], metavar="DIR",
                   help="another folder of training noise (e.g. make_babble.py --split train); repeatable")
    p.add_argument("--extra-noise-share", type=float, default=0.25,
                   help="share of recorded-noise draws that come from the --extra-noise folders")
    p.add_argument("--export", action="store_true", help="write encoder/weights/default.safetensors when done")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    parts = split_songs(read_manifest(args.corpus))
    noise = noise_paths(args.corpus / "noise", args.extra_noise, args.extra_noise_share)
    degrade = replace(DegradeConfig(), p_reverb=args.p_reverb, rt60_s=(DegradeConfig.rt60_s[0], args.rt60_max),
                      p_noise=args.p_noise, p_bank_noise=args.p_bank_noise, snr_db=tuple(args.snr),
                      p_vary_noise=args.p_vary_noise, p_tonal_noise=args.p_tonal_noise,
                      p_music_noise=args.p_music_noise, music_snr_db=tuple(args.music_snr))
    cfg = TrainConfig(variant=args.variant, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      threads=args.threads, device=args.device, degrade=degrade)
    started = time.time()
    weights = train(parts["train"], args.run, cfg=cfg, val_items=parts["val"], noise_paths=noise, resume=args.resume,
                    init_weights=args.init)
    minutes = (time.time() - started) / 60
    if args.export:
        export(weights, args, minutes, {k: len(v) for k, v in parts.items()})
    return 0


def noise_paths(bank: Path, extra: list[Path], share: float) -> list[str]:
    """The bank's files, plus the extra folders' files repeated so they make up about ``share`` of draws
    (the sampler draws files uniformly)."""
    paths = sorted(str(f) for f in bank.iterdir())
    more = sorted(str(f) for folder in extra for f in folder.iterdir())
    if not more:
        return paths
    repeat = max(1, round(share / (1 - share) * len(paths) / len(more)))
    logging.info("%d bank noises + %d extra × %d (%.0f %% of draws)", len(paths), len(more), repeat,
                 100 * repeat * len(more) / (len(paths) + repeat * len(more)))
    return paths + more * repeat


def export(weights: Path, args, minutes: float, counts: dict, dest: Path = DEFAULT_WEIGHTS) -> None:
    """Write ``weights`` as a shippable encoder (fp16, encoder only) to ``dest`` with the run's facts."""
    loaded = load_checkpoint(weights)
    save_checkpoint(dest, loaded.net, loaded.features, half=True, encoder_only=True,
                    extra={"trained_on": "tuneprint development corpus (scripts/fetch_corpus.py)", "run": str(args.run),
                           "variant": args.variant, "epochs": args.epochs, "init": args.init, "steps": loaded.meta["extra"].get("step"),
                           "split_counts": counts, "train_minutes_this_invocation": round(minutes, 1)})
    logging.info("exported %s (%.1f MB)", dest, dest.stat().st_size / 1e6)


if __name__ == "__main__":
    sys.exit(main())
