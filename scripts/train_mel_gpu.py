#!/usr/bin/env python3
"""Contrastive training on an accelerator, with degraded views made on the device from packed log-mel.

    python scripts/pack_mel_corpus.py --extra-noise data/corpus/noise-train-speech --out runs/melpack.npz
    python scripts/train_mel_gpu.py --pack runs/melpack.npz --out runs/mel-gpu --minutes 7

On this project's CPU machine, training waits for the waveform degradations (encoder/augment.py,
~30 pairs/s). Here the views come from encoder/mel_views.py, which approximates the same noises,
rooms, phones and speed changes on mel power, batched on the GPU, so the GPU sets the pace. Only
the NT-Xent term trains (clean anchor ↔ degraded view across the batch); the network starts from
``--init`` (the shipped encoder by default). The learning rate warms up, then follows a cosine
over ``--minutes`` of wall time (or ``--max-steps``), so a run fits a fixed device budget.

Writes ``--out``: ``metrics.csv`` (step, minutes, lr, loss, pairs/s, val loss, val top-1 among
the val batch), ``loss.png``, ``config.json`` and the encoder in half precision, ``model.safetensors``, also
cut into ``model.safetensors.partNN`` of at most ``--part-mb`` MB when asked (for transfers that
cap file sizes; ``cat model.safetensors.part* > model.safetensors`` joins them).
The loop is encoder.training.fit, the same as scripts/train_default.py's; encoder.mel_pack.train_on_pack sets it up.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from tuneprint.encoder.checkpoint import DEFAULT_WEIGHTS
from tuneprint.encoder.mel_pack import train_on_pack
from tuneprint.encoder.mel_views import MelViewConfig
from tuneprint.encoder.training import TrainConfig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", type=Path, default=Path("runs/melpack.npz"))
    p.add_argument("--init", default=str(DEFAULT_WEIGHTS), help="weights to start from: a checkpoint, 'default' (the shipped encoder, the default) or 'seeded'")
    p.add_argument("--out", type=Path, default=Path("runs/mel-gpu"))
    p.add_argument("--minutes", type=float, default=7.0, help="wall-clock training budget; the schedule spans it")
    p.add_argument("--max-steps", type=int, default=0, help="stop (and end the schedule) here instead; 0 = by time")
    p.add_argument("--batch-size", type=int, default=1024, help="pairs per step")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-min", type=float, default=1e-6)
    p.add_argument("--warmup", type=int, default=100, help="steps of linear warm-up")
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--val-pairs", type=int, default=2048)
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--save-every-min", type=float, default=3.0)
    p.add_argument("--part-mb", type=float, default=0.0, help="also cut the weights into parts of this size (MB)")
    p.add_argument("--p-new-song", type=float, default=MelViewConfig.p_new_song,
                   help="share of pairs whose song is first played 0.94-1.06x as fast (anchor and view alike)")
    p.add_argument("--snr", type=float, nargs=2, default=MelViewConfig.snr_db, metavar=("LOW", "HIGH"))
    p.add_argument("--p-second-noise", type=float, default=MelViewConfig.p_second_noise)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig(variant="contrastive", batch_size=args.batch_size, lr=args.lr, lr_min=args.lr_min,
                      temperature=args.temperature, val_pairs=args.val_pairs, device=args.device, seed=args.seed)
    views = replace(MelViewConfig(), p_new_song=args.p_new_song, snr_db=tuple(args.snr), p_second_noise=args.p_second_noise)
    train_on_pack(args.pack, args.out, init=args.init, cfg=cfg, views=views, minutes=args.minutes, max_steps=args.max_steps,
                  warmup=args.warmup, val_every=args.val_every, save_every_min=args.save_every_min, part_mb=args.part_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
