#!/usr/bin/env python3
"""Train the shipped default encoder on the development corpus and export it.

    python scripts/fetch_corpus.py --out data/corpus
    python scripts/train_default.py --corpus data/corpus --run runs/default --epochs 30

Songs are split by server/evaluation/corpus.py: training sees the train part of the seen collections
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
from tuneprint.encoder.pairs import noise_files
from tuneprint.encoder.run_folder import export_encoder
from tuneprint.encoder.training import TrainConfig, train
from tuneprint.server.evaluation.corpus import split_corpus


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

    parts = split_corpus(args.corpus)
    noise = noise_files(args.corpus / "noise", args.extra_noise, args.extra_noise_share)
    degrade = replace(DegradeConfig(), p_reverb=args.p_reverb, rt60_s=(DegradeConfig.rt60_s[0], args.rt60_max),
                      p_noise=args.p_noise, p_bank_noise=args.p_bank_noise, snr_db=tuple(args.snr),
                      p_vary_noise=args.p_vary_noise, p_tonal_noise=args.p_tonal_noise,
                      p_music_noise=args.p_music_noise, music_snr_db=tuple(args.music_snr))
    cfg = TrainConfig(variant=args.variant, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      threads=args.threads, device=args.device, degrade=degrade)
    started = time.time()
    weights = train(parts["train"], args.run, cfg=cfg, val_items=parts["val"], noise_paths=noise, resume=args.resume,
                    init_weights=args.init)
    if args.export:
        export_encoder(weights, {"trained_on": "tuneprint development corpus (scripts/fetch_corpus.py)", "run": str(args.run),
                                 "variant": args.variant, "epochs": args.epochs, "init": args.init,
                                 "split_counts": {k: len(v) for k, v in parts.items()},
                                 "train_minutes_this_invocation": round((time.time() - started) / 60, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
