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
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tuneprint.encoder.checkpoint import DEFAULT_WEIGHTS, load_model, save_checkpoint
from tuneprint.encoder.mel_views import MelBank, MelPairs, MelViewConfig
from tuneprint.encoder.training import in_batch_top1, nt_xent

log = logging.getLogger("train_mel_gpu")


def load_pack(pack: Path, device) -> tuple[MelBank, MelBank, MelBank, dict]:
    """The training, val and noise banks of a pack (scripts/pack_mel_corpus.py), and its songs and
    labels as encoder.training's config.json names them (evaluations read ``train_tracks`` to leave
    training songs out)."""
    z = np.load(pack)
    bank = lambda name, weight=None: MelBank.from_packed(z[f"{name}_q"], z[f"{name}_ref"], z[f"{name}_length"], weight, device)
    provenance = {"train_tracks": [str(p) for p in z["train_paths"]], "val_tracks": [str(p) for p in z["val_paths"]],
                  "labels": [str(label) for label in z["labels"]]}
    return bank("train"), bank("val"), bank("noise", z["noise_weight"]), provenance


def embed(net, x: torch.Tensor, amp: bool) -> torch.Tensor:
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp):
        z = net.embed(x.contiguous(memory_format=torch.channels_last))
    return torch.nn.functional.normalize(z.float(), dim=1)


def evaluate(net, val: dict[str, torch.Tensor], temperature: float, amp: bool, chunk: int = 512) -> tuple[float, float]:
    """Val NT-Xent loss and the share of views whose nearest anchor in the val batch is their own."""
    net.eval()
    with torch.no_grad():
        a = torch.cat([embed(net, val["anchor"][i : i + chunk], amp) for i in range(0, len(val["anchor"]), chunk)])
        v = torch.cat([embed(net, val["view"][i : i + chunk], amp) for i in range(0, len(val["view"]), chunk)])
        loss = float(nt_xent(a, v, temperature))
        top1 = in_batch_top1(a, v)
    net.train()
    return loss, top1


def save(net, features, out: Path, extra: dict, part_mb: float) -> None:
    path = save_checkpoint(out / "model.safetensors", net, features, half=True, encoder_only=True, extra=extra)
    if part_mb:
        data, size = path.read_bytes(), int(part_mb * 1e6)
        for old in out.glob("model.safetensors.part*"):
            old.unlink()
        for i in range(0, len(data), size):
            (out / f"model.safetensors.part{i // size:02d}").write_bytes(data[i : i + size])
        path.unlink()  # the parts are the copy that travels


def plot(metrics: Path, out: Path) -> None:
    """Training loss and val in-batch top-1 against minutes, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    train = [(float(r["minutes"]), float(r["loss"])) for r in rows if r["loss"]]
    val = [(float(r["minutes"]), float(r["val_loss"]), float(r["val_top1"])) for r in rows if r["val_loss"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax1.plot(*zip(*train), label="training NT-Xent (training songs)")
    if val:
        m, loss, top1 = zip(*val)
        ax1.plot(m, loss, "o-", markersize=3, label="val NT-Xent (val songs)")
        ax2.plot(m, top1, "s-", markersize=3, color="tab:green")
    ax1.set(xlabel="minutes", ylabel="loss", yscale="log", title="loss")
    ax1.legend()
    ax2.set(xlabel="minutes", ylabel="top-1", title="val: degraded view → its clean patch, in-batch")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


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

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    amp = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    loaded = load_model(args.init)
    net = loaded.net.to(device).to(memory_format=torch.channels_last).train()
    music, val_music, noise, provenance = load_pack(args.pack, device)
    cfg = replace(MelViewConfig(), p_new_song=args.p_new_song, snr_db=tuple(args.snr), p_second_noise=args.p_second_noise)
    pairs, val_pairs = MelPairs(music, noise, cfg, loaded.features), MelPairs(val_music, noise, cfg, loaded.features)
    g = torch.Generator(device=device).manual_seed(args.seed)
    val = val_pairs.batch(args.val_pairs, torch.Generator(device=device).manual_seed(12345))
    (args.out / "config.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "views": cfg.to_dict(), "device": str(device),
         "gpu": torch.cuda.get_device_name() if amp else None, "torch": torch.__version__,
         "train_songs": len(music.length), "val_songs": len(val_music.length), "noises": len(noise.length),
         **provenance}, indent=2))
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    metrics = open(args.out / "metrics.csv", "w", newline="")
    writer = csv.DictWriter(metrics, ["step", "minutes", "lr", "loss", "pairs_per_s", "val_loss", "val_top1"])
    writer.writeheader()
    val_loss, val_top1 = evaluate(net, val, args.temperature, amp)
    writer.writerow({"step": 0, "minutes": 0, "val_loss": round(val_loss, 5), "val_top1": round(val_top1, 4)})
    log.info("start: val loss %.4f, val top-1 %.4f (%d pairs)", val_loss, val_top1, args.val_pairs)

    started = last_save = time.perf_counter()
    budget = args.minutes * 60
    step, window, window_start = 0, 0, time.perf_counter()
    while True:
        elapsed = time.perf_counter() - started
        progress = step / args.max_steps if args.max_steps else elapsed / budget
        if progress >= 1:
            break
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        lr = min(lr, args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            batch = pairs.batch(args.batch_size, g)
        z = embed(net, torch.cat([batch["anchor"], batch["view"]]), amp)
        loss = nt_xent(z[: args.batch_size], z[args.batch_size :], args.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        window += args.batch_size
        row = {"step": step, "minutes": round(elapsed / 60, 3), "lr": f"{lr:.3g}"}
        if step % 20 == 0:
            speed = window / (time.perf_counter() - window_start)
            window, window_start = 0, time.perf_counter()
            row.update(loss=round(loss.item(), 5), pairs_per_s=round(speed, 1))
            log.info("step %d (%.1f min): loss %.4f, %.0f pairs/s, lr %.2g", step, elapsed / 60, loss.item(), speed, lr)
        if step % args.val_every == 0:
            val_loss, val_top1 = evaluate(net, val, args.temperature, amp)
            row.update(val_loss=round(val_loss, 5), val_top1=round(val_top1, 4))
            log.info("step %d: val loss %.4f, val top-1 %.4f", step, val_loss, val_top1)
        if len(row) > 3:
            writer.writerow(row)
            metrics.flush()
        if time.perf_counter() - last_save > args.save_every_min * 60:
            save(net, loaded.features, args.out, {"step": step, "partial": True}, args.part_mb)
            last_save = time.perf_counter()
    val_loss, val_top1 = evaluate(net, val, args.temperature, amp)
    writer.writerow({"step": step, "minutes": round((time.perf_counter() - started) / 60, 3),
                     "val_loss": round(val_loss, 5), "val_top1": round(val_top1, 4)})
    metrics.close()
    save(net, loaded.features, args.out, {"step": step, "trained": "scripts/train_mel_gpu.py", "init": str(args.init),
                                          "batch_size": args.batch_size, "minutes": args.minutes, "views": cfg.to_dict(),
                                          "val_top1": round(val_top1, 4), "device": str(device)}, args.part_mb)
    plot(args.out / "metrics.csv", args.out / "loss.png")
    log.info("done: %d steps in %.1f min; val loss %.4f, val top-1 %.4f", step, (time.perf_counter() - started) / 60,
             val_loss, val_top1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
