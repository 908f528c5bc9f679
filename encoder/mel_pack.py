"""Spectrogram packs: the training songs' log-mel in one small file, and training from it on a device.

A pack (``.npz``) holds, for its ``train``, ``val`` and ``noise`` parts, the spectrograms end to
end as uint8 steps of 0.5 dB below each file's loudest cell (``{part}_q``, frames × bands), each
file's reference level and length (``{part}_ref``, ``{part}_length``) and its name
(``{part}_paths``, ``collection/file``, how evaluations recognise a training track); the song
parts also hold label positions (``{part}_label``) into ``labels``, and the noise part a draw
weight per file (``noise_weight``). About 9 MB per hour of audio: small enough to travel to an
accelerator, where :func:`train_on_pack` makes the views (:mod:`encoder.mel_views`).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from tuneprint.errors import AudioError
from .audio import load_audio
from .checkpoint import DEFAULT_WEIGHTS, load_model
from .features import FeatureConfig, log_mel
from .mel_views import MelBank, MelPairs, MelViewConfig, quantize_db
from .run_folder import ExportConfig, RunFolder
from .training import METRICS, LoopConfig, TrainConfig, fit, resolve_device

log = logging.getLogger(__name__)


def track_name(path: str) -> str:
    """Folder and file name (``collection/file.ogg``): how evaluations recognise a training track."""
    return f"{Path(path).parent.name}/{Path(path).name}"


def pack_files(paths: Sequence[str], features: FeatureConfig, min_frames: int,
               progress: Callable[[Iterable], Iterable] = iter) -> dict[str, np.ndarray]:
    """Quantized spectrograms end to end, with each file's reference level, length and name
    (keys ``q``, ``ref``, ``length``, ``paths``); undecodable, short or silent files are left out."""
    qs, refs, lengths, kept = [], [], [], []
    for path in progress(paths):
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


def pack_corpus(parts: dict[str, list[tuple[str, str]]], noise: Sequence[str], extra_noise: Sequence[str] = (),
                extra_share: float = 0.25, features: FeatureConfig = FeatureConfig(),
                progress: Callable[[Iterable, str], Iterable] = lambda items, desc: items) -> dict[str, np.ndarray]:
    """The arrays of a pack from a corpus split (``parts["train"]``, ``parts["val"]``: (path, label))
    and noise files; the ``extra_noise`` files make up ``extra_share`` of the noise draws."""
    labels = sorted({label for _, label in parts["train"]})
    arrays = {}
    for name in ("train", "val"):
        packed = pack_files([path for path, _ in parts[name]], features, features.patch_frames + 64,
                            lambda items: progress(items, name))
        label_of = {track_name(path): label for path, label in parts[name]}
        packed["label"] = np.array([labels.index(label_of[n]) for n in packed["paths"]], np.int64)
        arrays.update({f"{name}_{k}": v for k, v in packed.items()})
    packed = pack_files([*noise, *extra_noise], features, 2, lambda items: progress(items, "noise"))
    is_extra = np.isin(packed["paths"], [track_name(e) for e in extra_noise])
    weight = np.ones(len(is_extra))
    if is_extra.any():  # as encoder.pairs.noise_files shares the draws
        weight[is_extra] = extra_share / is_extra.sum()
        weight[~is_extra] = (1 - extra_share) / (~is_extra).sum()
    arrays.update({f"noise_{k}": v for k, v in packed.items()}, noise_weight=weight, labels=np.array(labels))
    return arrays


def load_pack(pack: Path, device: torch.device) -> tuple[MelBank, MelBank, MelBank, dict]:
    """The training, val and noise banks of a pack on ``device``, and its songs and labels as
    :func:`encoder.training.train`'s config.json names them (evaluations read ``train_tracks`` to
    leave training songs out)."""
    z = np.load(pack)
    bank = lambda name, weight=None: MelBank.from_packed(z[f"{name}_q"], z[f"{name}_ref"], z[f"{name}_length"], weight, device)
    provenance = {"train_tracks": [str(p) for p in z["train_paths"]], "val_tracks": [str(p) for p in z["val_paths"]],
                  "labels": [str(label) for label in z["labels"]]}
    return bank("train"), bank("val"), bank("noise", z["noise_weight"]), provenance


def train_on_pack(pack: Path, out: Path, *, init: str = str(DEFAULT_WEIGHTS), cfg: TrainConfig,
                  views: MelViewConfig = MelViewConfig(), minutes: float = 7.0, max_steps: int = 0, warmup: int = 100,
                  val_every: int = 200, save_every_min: float = 3.0, part_mb: float = 0.0) -> Path:
    """Contrastive training from ``init`` with views made on the device from a pack; writes the run
    folder ``out`` (the encoder in half precision, cut into parts of ``part_mb`` when asked) and
    returns the weights' path (absent when only the parts were kept).

    Only the NT-Xent term trains, anchors and views through the network as one batch, in bfloat16 on
    CUDA; the learning rate warms up for ``warmup`` steps, then follows a cosine over ``minutes`` of
    wall time (or ``max_steps``), so that a run fits a fixed device budget.
    """
    cfg = replace(cfg, variant="contrastive")
    device = resolve_device(cfg.device)
    loaded = load_model(init)
    music, val_music, noise, provenance = load_pack(pack, device)
    pairs, val_pairs = MelPairs(music, noise, views, loaded.features), MelPairs(val_music, noise, views, loaded.features)
    facts = {"trained": "scripts/train_mel_gpu.py", "init": str(init), "batch_size": cfg.batch_size, "minutes": minutes,
             "views": views.to_dict(), "device": str(device)}
    run = RunFolder(out, loaded.features, METRICS, export=ExportConfig(half=True, encoder_only=True, part_mb=part_mb, resumable=False),
                    extra=facts)
    settings = {"pack": pack, "init": init, "out": out, "minutes": minutes, "max_steps": max_steps, "batch_size": cfg.batch_size,
                "lr": cfg.lr, "lr_min": cfg.lr_min, "warmup": warmup, "temperature": cfg.temperature, "val_pairs": cfg.val_pairs,
                "val_every": val_every, "save_every_min": save_every_min, "part_mb": part_mb, "p_new_song": views.p_new_song,
                "snr": list(views.snr_db), "p_second_noise": views.p_second_noise, "device": cfg.device, "seed": cfg.seed}
    run.write_config({"args": {k: str(v) for k, v in settings.items()}, "views": views.to_dict(), "device": str(device),
                      "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "torch": torch.__version__,
                      "train_songs": len(music.length), "val_songs": len(val_music.length), "noises": len(noise.length),
                      **provenance})
    loop = LoopConfig(total_steps=max_steps, minutes=minutes, warmup=warmup, val_every=val_every, val_at_start=True,
                      log_every=20, speed_every=20, checkpoint_minutes=save_every_min, one_forward=True, mixed_precision=True)
    fit(loaded.net, pairs, run, cfg=cfg, loop=loop, val_views=val_pairs)
    return run.weights
