"""Training the encoder–classifier–decoder (seed 004 §3, §5.1), plus a contrastive term.

Each training example is one moment of a track seen twice: a clean patch (the *anchor*, what
the index stores) and a degraded view of the same moment, shifted by up to ``shift_s``
(what a phone in a room hears). The losses a variant combines:

- ``decoder``: mean absolute error between the decoder's output from the degraded view and
  the clean patch (scale ``decoder_scale``, 1 in the seed);
- ``classifier``: cross-entropy of the track's label from both views (scale 0.005 in the seed);
- ``contrastive``: NT-Xent between anchors and degraded views across the batch.

Variants are names joined by '+': ``decoder``, ``classifier``, ``both`` (= decoder+classifier),
``both+contrastive``, ``contrastive+classifier``, ``contrastive``.

A run folder holds ``config.json``, ``metrics.csv``, ``loss.png``, ``model.safetensors`` (the
latest weights, with every head) and ``state.pt`` (optimizer, step, RNG) for ``--resume``.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .audio import load_audio
from .augment import DegradeConfig, degrade, mask_spectrogram, pick_noise
from .checkpoint import load_checkpoint, save_checkpoint
from tuneprint.errors import AudioError, TuneprintError
from .features import FeatureConfig, log_mel, normalize_patch
from .model import EncoderNet, ModelConfig

log = logging.getLogger(__name__)

TERMS = ("decoder", "classifier", "contrastive")


@dataclass(frozen=True)
class TrainConfig:
    variant: str = "both+contrastive"
    epochs: int = 30
    batch_size: int = 64  # pairs per step: 2 × batch_size patches go through the network
    lr: float = 1e-3  # Adam, as the seed
    lr_min: float = 1e-5  # cosine decay floor
    decoder_scale: float = 1.0
    classifier_scale: float = 0.005
    contrastive_scale: float = 1.0
    temperature: float = 0.05
    classifier_layers: int = 2
    shift_s: float = 0.2  # the degraded view starts up to this far from the anchor
    patches_per_epoch: int = 0  # 0 = the training audio's length in patches
    val_pairs: int = 256
    checkpoint_every: int = 50  # steps
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0 = torch's choice
    degrade: DegradeConfig = field(default_factory=DegradeConfig)

    @property
    def terms(self) -> frozenset[str]:
        terms = frozenset(self.variant.replace("both", "decoder+classifier").split("+"))
        unknown = terms - set(TERMS)
        if unknown or not terms:
            raise ValueError(f"unknown variant {self.variant!r}: combine {', '.join(TERMS)} (or 'both') with '+'")
        return terms

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        deg = d.get("degrade", {})
        deg = DegradeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in deg.items()})
        return cls(**{**d, "degrade": deg})


@dataclass
class Track:
    samples: np.ndarray  # mono float32 at the feature rate
    label: int  # index into the label list, -1 when unlabelled


def load_tracks(items: Sequence[tuple[str, str | None]], features: FeatureConfig, labels: list[str],
                progress: Callable[[int, int], None] | None = None) -> list[Track]:
    """Decode (path, label) pairs; labels map to positions in ``labels`` (-1 if absent)."""
    tracks = []
    for i, (path, label) in enumerate(items):
        try:
            y = load_audio(path, sr=features.sample_rate, min_seconds=features.patch_seconds + 1.0)
        except AudioError as e:
            log.warning("skipping %s", e)
            continue
        tracks.append(Track(y, labels.index(label) if label in labels else -1))
        if progress:
            progress(i + 1, len(items))
    return tracks


class PairSampler:
    """Draws (clean anchor, degraded view, label) examples from tracks, weighted by length."""

    def __init__(self, tracks: list[Track], features: FeatureConfig, cfg: TrainConfig,
                 noises: list[np.ndarray] | None = None):
        if not tracks:
            raise TuneprintError("no usable training tracks")
        self.tracks, self.features, self.cfg, self.noises = tracks, features, cfg, noises or []
        lengths = np.array([len(t.samples) for t in tracks], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        f = features
        self.margin = 2 * f.hop_length  # context either side, so patch edges see real audio
        self.span = (f.patch_frames - 1) * f.hop_length + 2 * self.margin
        self.shift = int(cfg.shift_s * f.sample_rate)

    def _patch(self, segment: np.ndarray) -> np.ndarray:
        frames = self.margin // self.features.hop_length
        S = log_mel(segment, self.features)[:, frames : frames + self.features.patch_frames]
        return normalize_patch(S, self.features)

    def example(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        track = self.tracks[rng.choice(len(self.tracks), p=self.weights)]
        y = track.samples
        lo, hi = self.shift, len(y) - self.span - self.shift
        start = int(rng.integers(lo, max(lo + 1, hi)))
        anchor = self._patch(y[start : start + self.span])
        moved = start + int(rng.integers(-self.shift, self.shift + 1))
        view = degrade(y[moved : moved + self.span], self.features.sample_rate, rng, self.noises, self.cfg.degrade,
                       music=self._other_song(rng, track))
        view = mask_spectrogram(self._patch(view), rng, p=0.3)
        return anchor, view, track.label

    def _other_song(self, rng: np.random.Generator, track: Track) -> np.ndarray | None:
        """A random stretch of another training song, as interference (only drawn when that is on)."""
        if not self.cfg.degrade.p_music_noise or len(self.tracks) < 2:
            return None
        others = [t.samples for t in self.tracks if t is not track]
        return pick_noise(self.span + 2 * self.shift, rng, others)  # longer than the view: room for a speed change

    def batch(self, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
        anchors, views, labels = zip(*(self.example(rng) for _ in range(size)))
        return {"anchor": torch.from_numpy(np.stack(anchors)).unsqueeze(1),
                "view": torch.from_numpy(np.stack(views)).unsqueeze(1),
                "label": torch.tensor(labels, dtype=torch.long)}


class _BatchStream(torch.utils.data.IterableDataset):
    """Endless batches from a worker process, so augmentation overlaps the network's step."""

    def __init__(self, sampler: PairSampler, batch_size: int, seed: int):
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        while True:
            yield self.sampler.batch(rng, self.batch_size)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised-temperature cross-entropy between paired unit vectors ``a[i]`` ↔ ``b[i]``.

    Every other vector of both views in the batch is a negative (SimCLR's 2N − 2).
    """
    z = torch.cat([a, b])
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(a)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(a.device)
    return F.cross_entropy(sim, target)


def losses(net: EncoderNet, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The variant's loss terms (scaled) and their sum under ``"loss"``."""
    terms = cfg.terms
    view_out = net(batch["view"])
    out: dict[str, torch.Tensor] = {}
    if "contrastive" in terms:
        anchor_out = net(batch["anchor"])
        out["contrastive"] = cfg.contrastive_scale * nt_xent(anchor_out["embedding"], view_out["embedding"], cfg.temperature)
    if "decoder" in terms:
        out["decoder"] = cfg.decoder_scale * F.l1_loss(view_out["reconstruction"], batch["anchor"])
    if "classifier" in terms:
        labelled = batch["label"] >= 0
        logits = [view_out["logits"][labelled]]
        if "contrastive" in terms:
            logits.append(anchor_out["logits"][labelled])
        target = batch["label"][labelled].repeat(len(logits))
        out["classifier"] = (cfg.classifier_scale * F.cross_entropy(torch.cat(logits), target)
                             if labelled.any() else torch.zeros((), device=batch["view"].device))
    out["loss"] = sum(out.values())
    return out


def retrieval_top1(net: EncoderNet, batch: dict[str, torch.Tensor]) -> float:
    """Share of degraded views whose nearest clean anchor (among the batch) is their own."""
    with torch.no_grad():
        return in_batch_top1(net.embed(batch["anchor"]), net.embed(batch["view"]))


def in_batch_top1(anchors: torch.Tensor, views: torch.Tensor) -> float:
    """Share of ``views[i]`` whose most similar row of ``anchors`` is ``anchors[i]`` (unit vectors)."""
    return float((torch.argmax(views @ anchors.T, dim=1) == torch.arange(len(views), device=views.device)).float().mean())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TuneprintError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def train(train_items: Sequence[tuple[str, str | None]], run_dir: str | os.PathLike, *, cfg: TrainConfig = TrainConfig(),
          val_items: Sequence[tuple[str, str | None]] = (), noise_paths: Sequence[str] = (), resume: bool = False,
          model_cfg: ModelConfig = ModelConfig(), features: FeatureConfig = FeatureConfig(),
          init_weights: str | None = None, progress: bool = True) -> Path:
    """Train on (path, label) items and write a run folder; returns the path of the final weights.

    With ``resume``, the run continues from ``run_dir/state.pt`` with the saved config, for
    ``cfg.epochs`` epochs in all (the learning-rate schedule follows the new length).
    """
    run_dir = Path(run_dir)
    state_path, weights_path = run_dir / "state.pt", run_dir / "model.safetensors"
    if resume:
        if not state_path.is_file():
            raise TuneprintError(f"{run_dir}: nothing to resume (no state.pt)")
        saved = json.loads((run_dir / "config.json").read_text())
        # The caller's epoch count sets the run's (new) length; everything else is the saved run's.
        cfg = replace(TrainConfig.from_dict(saved["train"]), epochs=cfg.epochs, device=cfg.device, threads=cfg.threads)
        labels = saved["labels"]
        model_cfg, features = ModelConfig.from_dict(saved["model"]), FeatureConfig(**saved["features"])
    else:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise TuneprintError(f"{run_dir}: run folder is not empty; use --resume or another folder")
        labels = sorted({label for _, label in train_items if label})
    cfg.terms  # validate the variant before any work
    if "classifier" in cfg.terms and not labels:
        raise TuneprintError(f"variant {cfg.variant!r} needs labelled tracks; add labels or pick 'decoder' or 'contrastive'")
    model_cfg = replace(model_cfg, n_classes=len(labels) if "classifier" in cfg.terms else 0,
                        classifier_layers=cfg.classifier_layers, decoder="decoder" in cfg.terms)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)

    log.info("decoding %d training and %d validation tracks", len(train_items), len(val_items))
    tracks = load_tracks(train_items, features, labels)
    noises = [load_audio(p, sr=features.sample_rate) for p in noise_paths]
    sampler = PairSampler(tracks, features, cfg, noises)
    val_batch = None
    if val_items:
        val_tracks = load_tracks(val_items, features, labels)
        if val_tracks:
            val_batch = PairSampler(val_tracks, features, cfg, noises).batch(np.random.default_rng(12345), cfg.val_pairs)
            val_batch = {k: v.to(device) for k, v in val_batch.items()}

    net = EncoderNet(model_cfg)
    if init_weights:
        net.load_state_dict(load_checkpoint(init_weights).net.state_dict(), strict=False)
    net = net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    audio_patches = sum(len(t.samples) for t in tracks) / (features.patch_seconds * features.sample_rate)
    steps_per_epoch = max(1, math.ceil((cfg.patches_per_epoch or audio_patches) / cfg.batch_size))
    total_steps = steps_per_epoch * cfg.epochs
    step = 0
    if resume:
        state = torch.load(state_path, map_location=device, weights_only=False)
        net.load_state_dict(load_checkpoint(weights_path).net.state_dict())
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        _truncate_metrics(run_dir / "metrics.csv", step)  # rows logged after the last checkpoint are redone
        saved["train"] = cfg.to_dict()  # the run's length as it now stands
        (run_dir / "config.json").write_text(json.dumps(saved, indent=2))
        log.info("resuming %s at step %d of %d", run_dir, step, total_steps)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(
            {"train": cfg.to_dict(), "model": model_cfg.to_dict(), "features": features.to_dict(), "labels": labels,
             "train_tracks": [p for p, _ in train_items], "val_tracks": [p for p, _ in val_items],
             "noise_files": len(set(noise_paths)), "init_weights": init_weights, "torch": torch.__version__}, indent=2))

    stream = torch.utils.data.DataLoader(_BatchStream(sampler, cfg.batch_size, cfg.seed * 1000 + step),
                                         batch_size=None, num_workers=1, persistent_workers=False)
    from tqdm import tqdm

    metrics = run_dir / "metrics.csv"
    bar = tqdm(total=total_steps, initial=step, unit="step", desc=f"training {cfg.variant}", disable=not progress)
    started, window_start, window_samples = time.perf_counter(), time.perf_counter(), 0
    net.train()
    for batch in stream:
        if step >= total_steps:
            break
        lr = cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * step / total_steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = {k: v.to(device) for k, v in batch.items()}
        out = losses(net, batch, cfg)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        step += 1
        window_samples += cfg.batch_size
        speed = window_samples / (time.perf_counter() - window_start)
        bar.set_postfix(loss=f"{out['loss'].item():.4f}", pairs_s=f"{speed:.1f}")
        bar.update(1)
        row = {"step": step, "epoch": round(step / steps_per_epoch, 3), "lr": lr, "pairs_per_s": round(speed, 2),
               **{k: round(v.item(), 6) for k, v in out.items()}}
        epoch_end = step % steps_per_epoch == 0 or step == total_steps
        if epoch_end and val_batch is not None:
            net.eval()
            with torch.no_grad():
                val = losses(net, val_batch, cfg)
            row.update({"val_loss": round(val["loss"].item(), 6), "val_top1": round(retrieval_top1(net, val_batch), 4)})
            net.train()
            log.info("epoch %.0f: val loss %.4f, val top-1 %.3f", step / steps_per_epoch, row["val_loss"], row["val_top1"])
        _append_metrics(metrics, row)
        if step % cfg.checkpoint_every == 0 or epoch_end:
            _save_state(run_dir, net, optimizer, step, features, cfg)
            window_start, window_samples = time.perf_counter(), 0
        if epoch_end:
            plot_metrics(metrics, run_dir / "loss.png")
    bar.close()
    _save_state(run_dir, net, optimizer, step, features, cfg)
    plot_metrics(metrics, run_dir / "loss.png")
    log.info("trained %d steps in %.1f min", step, (time.perf_counter() - started) / 60)
    return weights_path


def _save_state(run_dir: Path, net: EncoderNet, optimizer, step: int, features: FeatureConfig, cfg: TrainConfig) -> None:
    """Weights (safetensors) and optimizer state, each replaced atomically."""
    net_cpu_state = net.training
    net.eval()
    save_checkpoint(run_dir / "model.safetensors", net, features, extra={"step": step, "variant": cfg.variant})
    net.train(net_cpu_state)
    tmp = run_dir / "state.pt.tmp"
    torch.save({"optimizer": optimizer.state_dict(), "step": step}, tmp)
    os.replace(tmp, run_dir / "state.pt")


def _truncate_metrics(path: Path, last_step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= last_step]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(kept)


def _append_metrics(path: Path, row: dict) -> None:
    fields = ["step", "epoch", "lr", "pairs_per_s", "loss", *TERMS, "val_loss", "val_top1"]
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in fields})


def plot_metrics(metrics: Path, out: Path) -> None:
    """Loss curves (training terms, smoothed, and validation) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = np.array([float(r["step"]) for r in rows])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ["loss", *TERMS]:
        values = np.array([float(r[key]) if r[key] else np.nan for r in rows])
        if np.isfinite(values).any():
            w = max(1, len(values) // 50)
            smooth = np.convolve(np.nan_to_num(values), np.ones(w) / w, mode="valid")
            ax1.plot(steps[w - 1 :], smooth, label=key)
    ax1.set(xlabel="step", ylabel="loss (scaled)", title="training loss", yscale="log")
    ax1.legend()
    val = [(float(r["step"]), float(r["val_loss"]), float(r["val_top1"])) for r in rows if r["val_loss"]]
    if val:
        s, l, t = map(np.array, zip(*val))
        ax2.plot(s, l, "o-", label="val loss")
        ax2b = ax2.twinx()
        ax2b.plot(s, t, "s-", color="tab:green", label="val top-1")
        ax2b.set(ylabel="in-batch retrieval top-1", ylim=(0, 1))
        ax2.legend(loc="upper left")
    ax2.set(xlabel="step", title="validation (held-out songs)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
