#!/usr/bin/env python3
"""Train the query encoder (encoder/query_encoder.py) against the shipped fingerprint encoder.

    python scripts/pack_mel_corpus.py --corpus data/corpus --out runs/melpack.npz
    python scripts/build_codec_bank.py --pack runs/melpack.npz --out runs/codecbank.npz
    python scripts/train_query_encoder.py --pack runs/melpack.npz --codec-bank runs/codecbank.npz --minutes 40 \
        --out encoder/weights/query.safetensors

Views are made from the pack's training songs as the fingerprint's stage 7 made them
(encoder/mel_views.py) and, with --codec-bank, from the same songs coded by real codecs
(encoder/codec_views.py); validation uses the pack's val songs. Test and unseen songs never enter.
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from tuneprint.encoder.checkpoint import load_model
from tuneprint.encoder.mel_pack import load_pack
from tuneprint.encoder.mel_views import MelPairs, MelViewConfig
from tuneprint.encoder.codec_views import CodecPairs
from tuneprint.encoder.mel_views import MelBank
from tuneprint.encoder.query_encoder import MixedPairs, QueryTrainConfig, load_query_encoder, save_query_encoder, train_query_encoder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pack", type=Path, default=Path("runs/melpack.npz"))
    p.add_argument("--model", default="default", help="the fingerprint encoder to answer for (default: the shipped one)")
    p.add_argument("--minutes", type=float, default=QueryTrainConfig.minutes)
    p.add_argument("--batch-size", type=int, default=QueryTrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=QueryTrainConfig.lr)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--codec-bank", type=Path, help="the training songs through real codecs (scripts/build_codec_bank.py)")
    p.add_argument("--codec-share", type=float, default=0.5, help="share of each batch from the codec bank")
    p.add_argument("--p-full", type=float, default=QueryTrainConfig.p_full, help="share of views kept whole")
    p.add_argument("--init", type=Path, help="go on from this query encoder (of the same fingerprint encoder)")
    p.add_argument("--out", type=Path, default=Path("runs/query.safetensors"))
    p.add_argument("--metrics", type=Path, default=None, help="CSV of step, minutes, loss, lr")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loaded = load_model(args.model)
    music, val_music, noise, _ = load_pack(args.pack, torch.device("cpu"))
    views = MelViewConfig()
    pairs = MelPairs(music, noise, views, loaded.features)
    val_pairs = MelPairs(val_music, noise, views, loaded.features)
    val_sources = {"views 1 s": (val_pairs, 22), "views 2 s": (val_pairs, 43), "views 3 s": (val_pairs, None)}
    if args.codec_bank:
        coded, val_coded = codec_banks(args.codec_bank, music, val_music)
        codec_pairs = CodecPairs(music, coded, noise, views, loaded.features)
        pairs = MixedPairs([pairs, codec_pairs], [1 - args.codec_share, args.codec_share])
        val_codec = CodecPairs(val_music, val_coded, noise, views, loaded.features)
        val_sources.update({"codec 1 s": (val_codec, 22), "codec 3 s": (val_codec, None)})
    cfg = QueryTrainConfig(minutes=args.minutes, batch_size=args.batch_size, lr=args.lr, threads=args.threads,
                           p_full=args.p_full)
    rows = []
    encoder = train_query_encoder(loaded.net, loaded.model_id, pairs, val_sources, cfg,
                        on_step=lambda step, elapsed, loss, lr: rows.append((step, round(elapsed / 60, 3), round(loss, 5), lr)),
                        init=load_query_encoder(loaded.net, loaded.model_id, args.init) if args.init else None)
    encoder.meta.update(init=str(args.init) if args.init else None, train_songs=len(music.length), val_songs=len(val_music.length), pack=str(args.pack),
                      codec_bank=str(args.codec_bank) if args.codec_bank else None, codec_share=args.codec_share)
    save_query_encoder(args.out, encoder)
    if args.metrics:
        with open(args.metrics, "w", newline="") as f:
            csv.writer(f).writerows([("step", "minutes", "loss", "lr"), *rows])
    logging.info("wrote %s: %s", args.out, encoder.meta)
    return 0


def codec_banks(path: Path, music: MelBank, val_music: MelBank) -> tuple[list[MelBank], list[MelBank]]:
    """The coded training and val banks of ``path``, one per codec, frame for frame with the pack's."""
    z = np.load(path)
    banks = {}
    for part, clean in (("train", music), ("val", val_music)):
        if not np.array_equal(z[f"{part}_length"], clean.length.numpy()):
            raise SystemExit(f"{path}: its {part} songs are not the pack's; build it again from this pack")
        n = len(z[f"{part}_codecs"])
        banks[part] = [MelBank.from_packed(z[f"{part}_q{k}"], z[f"{part}_ref{k}"], z[f"{part}_length"], None,
                                           torch.device("cpu")) for k in range(n)]
    return banks["train"], banks["val"]


if __name__ == "__main__":
    sys.exit(main())
