"""A training run's folder: its metrics, loss plot and weights, written the same way by every trainer.

A run folder holds ``config.json`` (written by the trainer that made it), ``metrics.csv``,
``loss.png``, ``model.safetensors`` (the latest weights; cut into ``model.safetensors.partNN``
when asked) and, where the run can be resumed, ``state.pt`` (optimizer and step).
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .checkpoint import DEFAULT_WEIGHTS, load_checkpoint, save_checkpoint
from .features import FeatureConfig
from .model import EncoderNet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportConfig:
    """How a run writes its weights."""
    half: bool = False  # float16 weights
    encoder_only: bool = False  # backbone and projection only, no decoder or classifier head
    part_mb: float = 0.0  # also cut the file into parts of at most this many MB (then only the parts stay)
    resumable: bool = True  # write state.pt (optimizer and step) beside the weights


def export_weights(path: Path, net: EncoderNet, features: FeatureConfig, cfg: ExportConfig, extra: dict) -> Path:
    """Write ``net`` as a checkpoint at ``path``; with ``cfg.part_mb``, as parts ``path.partNN``
    (``cat path.part* > path`` joins them) for transfers that cap file sizes."""
    path = save_checkpoint(path, net, features, half=cfg.half, encoder_only=cfg.encoder_only, extra=extra)
    if cfg.part_mb:
        data, size = path.read_bytes(), int(cfg.part_mb * 1e6)
        for old in path.parent.glob(f"{path.name}.part*"):
            old.unlink()
        for i in range(0, len(data), size):
            path.with_name(f"{path.name}.part{i // size:02d}").write_bytes(data[i : i + size])
        path.unlink()  # the parts are the copy that travels
    return path


def export_encoder(weights: str | os.PathLike, facts: dict, dest: Path = DEFAULT_WEIGHTS) -> Path:
    """Write a run's ``weights`` as a shippable encoder (float16, encoder only) at ``dest``, with the
    run's ``facts`` and its step count (``steps``) in the metadata."""
    loaded = load_checkpoint(weights)
    extra = {**facts, "steps": loaded.meta["extra"].get("step")}
    export_weights(dest, loaded.net, loaded.features, ExportConfig(half=True, encoder_only=True), extra)
    log.info("exported %s (%.1f MB)", dest, dest.stat().st_size / 1e6)
    return dest


class RunFolder:
    """Writes one run's files. ``fields`` are the metrics columns; ``extra`` the facts every
    saved checkpoint carries; ``resume_step`` continues an existing run, whose metrics rows after
    that step (logged after its last checkpoint) are dropped to be redone."""

    def __init__(self, path: str | os.PathLike, features: FeatureConfig, fields: Sequence[str], *,
                 export: ExportConfig = ExportConfig(), extra: dict | None = None, resume_step: int | None = None):
        self.path, self.features, self.export, self.extra = Path(path), features, export, extra or {}
        self.path.mkdir(parents=True, exist_ok=True)
        self.weights = self.path / "model.safetensors"
        self.metrics = self.path / "metrics.csv"
        if resume_step is None:
            self.metrics.unlink(missing_ok=True)
        else:
            _truncate_metrics(self.metrics, resume_step)
        self.fields = _header(self.metrics) or list(fields)  # a resumed run keeps its file's columns

    def write_config(self, config: dict) -> None:
        (self.path / "config.json").write_text(json.dumps(config, indent=2))

    def log(self, row: dict) -> None:
        """Append one metrics row (missing columns stay empty)."""
        new = not self.metrics.exists()
        with open(self.metrics, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in self.fields})

    def save(self, net: EncoderNet, optimizer: torch.optim.Optimizer, step: int, *, final: bool = False,
             val_top1: float | None = None) -> Path:
        """The weights (and optimizer state where resumable), each replaced atomically. A save before
        the end is marked ``partial``; the final one records the last validation top-1."""
        extra = {"step": step, **({} if final else {"partial": True}), **self.extra}
        if final and val_top1 is not None:
            extra["val_top1"] = round(val_top1, 4)
        export_weights(self.weights, net, self.features, self.export, extra)
        if self.export.resumable:
            tmp = self.path / "state.pt.tmp"
            torch.save({"optimizer": optimizer.state_dict(), "step": step}, tmp)
            os.replace(tmp, self.path / "state.pt")
        return self.weights

    def plot(self, train_keys: Sequence[str]) -> None:
        plot_metrics(self.metrics, self.path / "loss.png", train_keys)


def _header(path: Path) -> list[str] | None:
    if not path.exists():
        return None
    with open(path, newline="") as f:
        return next(csv.reader(f), None)


def _truncate_metrics(path: Path, last_step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= last_step]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def plot_metrics(metrics: Path, out: Path, train_keys: Sequence[str]) -> None:
    """Training loss terms (``train_keys``, smoothed) and validation loss and top-1 against steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key in train_keys:
        points = [(float(r["step"]), float(r[key])) for r in rows if r.get(key)]
        if points:
            steps, values = map(np.array, zip(*points))
            w = max(1, len(values) // 50)
            ax1.plot(steps[w - 1 :], np.convolve(values, np.ones(w) / w, mode="valid"), label=key)
    ax1.set(xlabel="step", ylabel="loss (scaled)", title="training loss", yscale="log")
    if ax1.lines:
        ax1.legend()
    val = [(float(r["step"]), float(r["val_loss"]), float(r["val_top1"])) for r in rows if r.get("val_loss")]
    if val:
        s, loss, top1 = map(np.array, zip(*val))
        ax2.plot(s, loss, "o-", label="val loss")
        ax2b = ax2.twinx()
        ax2b.plot(s, top1, "s-", color="tab:green", label="val top-1")
        ax2b.set(ylabel="in-batch retrieval top-1", ylim=(0, 1))
        ax2.legend(loc="upper left")
    ax2.set(xlabel="step", title="validation (held-out songs)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def training_summary(run_dir: str | os.PathLike, name: str | None = None) -> str:
    """A markdown summary of a run of :func:`encoder.training.train` (its config.json and
    metrics.csv): settings, throughput and a table of validation figures; ``name`` names its
    curve file (default the folder's name)."""
    run_dir = Path(run_dir)
    name = name or run_dir.name
    config = json.loads((run_dir / "config.json").read_text())
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train = config["train"]
    val = [(int(r["step"]), float(r["epoch"]), float(r["val_loss"]), float(r["val_top1"])) for r in rows if r["val_top1"]]
    speed = [float(r["pairs_per_s"]) for r in rows if r["pairs_per_s"]]
    shown = val[:: max(1, len(val) // 10)]
    shown += [row for row in val[-1:] if row not in shown]
    lines = ["| epoch | step | val loss | val top-1 |", "| --- | --- | --- | --- |"]
    lines += [f"| {e:.0f} | {s} | {loss:.3f} | {top1:.3f} |" for s, e, loss, top1 in shown]
    start = (f"Started from {config['init_weights']}, not the seeded initialisation." if config.get("init_weights")
             else "Started from the seeded initialisation.")
    return f"""
Run `{run_dir}`: variant `{train['variant']}`, {train['epochs']} epochs, {rows[-1]['step']} steps of
{train['batch_size']} pairs, Adam lr {train['lr']} (cosine to {train['lr_min']}), contrastive temperature
{train['temperature']}, classifier scale {train['classifier_scale']}; {len(config['train_tracks'])} training songs,
{len(config['val_tracks'])} validation songs, {config['noise_files']} noise files; labels {', '.join(config['labels'])}.
Degraded views: {describe_views(train.get('degrade', {}))}.
{start}
Throughput {min(speed):.0f}–{max(speed):.0f} pairs/s (median {sorted(speed)[len(speed) // 2]:.0f}) on this CPU,
which other work shared during the run. *val top-1*: share of 256 degraded validation views whose
nearest clean patch among the 256 is their own.

{chr(10).join(lines)}

Curves: [training-loss-{name}.png](training-loss-{name}.png).
"""


def describe_views(d: dict) -> str:
    """The view degradations of a run's config (``train.degrade``), in words."""
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


def publish_curves(run_dir: str | os.PathLike, dest: Path, name: str | None = None) -> None:
    """Copy a run's loss plot and metrics into ``dest`` as ``training-loss-NAME.png`` and
    ``training-metrics-NAME.csv`` (runs/ is not committed)."""
    run_dir = Path(run_dir)
    name = name or run_dir.name
    shutil.copyfile(run_dir / "loss.png", dest / f"training-loss-{name}.png")
    shutil.copyfile(run_dir / "metrics.csv", dest / f"training-metrics-{name}.csv")
