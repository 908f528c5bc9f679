#!/usr/bin/env python3
"""Pack the training split's log-mel spectrograms (and the noise bank's) into one small file, for
training on an accelerator with views made on the device (encoder/mel_views.py).

    python scripts/pack_mel_corpus.py --corpus data/corpus \\
        --extra-noise data/corpus/noise-train-speech --out runs/melpack.npz

Songs are split by encoder.splits exactly as scripts/train_default.py splits them: train and val
songs only (val for monitoring); test and unseen songs never enter the pack. Each spectrogram is
stored as uint8 steps of 0.5 dB below its loudest cell (127.5 dB of range), about 9 MB per hour.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tuneprint.encoder.audio import load_audio
from tuneprint.errors import AudioError
from tuneprint.encoder.features import FeatureConfig, log_mel
from tuneprint.encoder.mel_views import quantize_db
from tuneprint.encoder.splits import read_manifest, split_songs

log = logging.getLogger("pack_mel_corpus")


def pack(paths: list[str], features: FeatureConfig, min_frames: int, desc: str) -> dict[str, np.ndarray]:
    """Quantized spectrograms end to end, with each file's reference level and length."""
    qs, refs, lengths, kept = [], [], [], []
    for path in tqdm(paths, desc=desc, unit="file"):
        try:
            y = load_audio(path, sr=features.sample_rate)
        except AudioError as e:
            log.warning("skipping %s", e)
            continue
        db = log_mel(y, features)
        if db.shape[1] < min_frames or db.max() < features.silence_db:
            continue
        q, ref = quantize_db(db)
        qs.append(q), refs.append(ref), lengths.append(len(q)), kept.append(path)
    return {"q": np.concatenate(qs), "ref": np.array(refs, np.float32), "length": np.array(lengths, np.int64),
            "paths": np.array([track_name(p) for p in kept])}


def track_name(path: str) -> str:
    """Folder and file name (``collection/file.ogg``): how evaluations recognise a training track."""
    return f"{Path(path).parent.name}/{Path(path).name}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--extra-noise", type=Path, action="append", default=[], metavar="DIR",
                   help="another folder of training noise (e.g. make_babble.py --split train); repeatable")
    p.add_argument("--extra-noise-share", type=float, default=0.25, help="share of noise draws from the extra folders")
    p.add_argument("--out", type=Path, default=Path("runs/melpack.npz"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    features = FeatureConfig()
    parts = split_songs(read_manifest(args.corpus))
    labels = sorted({label for _, label in parts["train"]})
    arrays = {}
    for name in ("train", "val"):
        packed = pack([path for path, _ in parts[name]], features, features.patch_frames + 64, name)
        label_of = {track_name(path): label for path, label in parts[name]}
        packed["label"] = np.array([labels.index(label_of[n]) for n in packed["paths"]], np.int64)
        arrays.update({f"{name}_{k}": v for k, v in packed.items()})
    bank = sorted(str(f) for f in (args.corpus / "noise").iterdir())
    extra = sorted(str(f) for d in args.extra_noise for f in d.iterdir())
    noise = pack(bank + extra, features, 2, "noise")
    is_extra = np.isin(noise["paths"], [track_name(e) for e in extra])
    weight = np.ones(len(is_extra))
    if is_extra.any():  # the extra folders make up ``share`` of draws, as train_default.noise_paths does
        weight[is_extra] = args.extra_noise_share / is_extra.sum()
        weight[~is_extra] = (1 - args.extra_noise_share) / (~is_extra).sum()
    arrays.update({f"noise_{k}": v for k, v in noise.items()}, noise_weight=weight, labels=np.array(labels))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    log.info("%s: %d train songs (%.2f h), %d val, %d noises; %.1f MB", args.out, len(arrays["train_length"]),
             arrays["train_length"].sum() * features.frame_seconds / 3600, len(arrays["val_length"]),
             len(arrays["noise_length"]), args.out.stat().st_size / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
