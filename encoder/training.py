"""Training the encoder–classifier–decoder, plus a contrastive term: one loop, two view sources.

Each training example is a clean patch (the *anchor*, what the index stores) and a degraded
view of the same moment (what a phone in a room hears). Where the views are made is the only
thing the trainers differ in: :func:`train` draws them on the CPU from decoded audio
(:class:`encoder.pairs.PairSampler`), :func:`encoder.mel_pack.train_on_pack` on the device from
packed log-mel (:class:`encoder.mel_views.MelPairs`). Both hand them to :func:`fit`.

The losses a variant combines:

- ``decoder``: mean absolute error between the decoder's output from the degraded view and
  the clean patch (scale ``decoder_scale``);
- ``classifier``: cross-entropy of the track's label from both views (scale ``classifier_scale``);
- ``contrastive``: NT-Xent between anchors and degraded views across the batch.

Variants are names joined by '+': ``decoder``, ``classifier``, ``both`` (= decoder+classifier),
``both+contrastive``, ``contrastive+classifier``, ``contrastive``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Generator, Protocol, Sequence

import torch
import torch.nn.functional as F

from tuneprint.errors import TuneprintError
from .audio import load_audio
from .augment import DegradeConfig
from .checkpoint import load_checkpoint
from .features import FeatureConfig
from .model import EncoderNet, ModelConfig
from .pairs import PairSampler, in_batch_top1, load_tracks
from .run_folder import RunFolder

log = logging.getLogger(__name__)

TERMS = ("decoder", "classifier", "contrastive")
VAL_SEED = 12345  # the validation pairs are the same for every run and model
METRICS = ("step", "epoch", "minutes", "lr", "pairs_per_s", "loss", *TERMS, "val_loss", "val_top1")


@dataclass(frozen=True)
class TrainConfig:
    """What is trained and how: the objective, the optimizer, the batches and the seed."""
    variant: str = "both+contrastive"
    epochs: int = 30
    batch_size: int = 64  # pairs per step: 2 × batch_size patches go through the network
    lr: float = 1e-3  # Adam
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


@dataclass(frozen=True)
class LoopConfig:
    """When things happen in :func:`fit`, and how a step runs."""
    total_steps: int = 0  # the schedule's length; 0 = by wall time, ``minutes``
    minutes: float = 0.0
    warmup: int = 0  # steps of linear learning-rate warm-up before the cosine
    epoch_steps: int = 0  # steps per pass over the training audio; each epoch's end validates, saves and plots
    val_every: int = 0  # also validate (and plot) every this many steps; 0 = at epoch ends and the last step only
    val_at_start: bool = False
    log_every: int = 1  # steps between metrics rows with the training loss
    speed_every: int = 50  # steps pairs/s is averaged over (the window also restarts after each save)
    checkpoint_every: int = 0  # steps between saves; 0 = none by steps
    checkpoint_minutes: float = 0.0  # minutes between saves; 0 = none by time
    one_forward: bool = False  # anchors and views through the network as one batch (one set of batch-norm statistics)
    mixed_precision: bool = False  # bfloat16 autocast on CUDA, channels-last tensors, cuDNN autotuning
    progress: bool = False  # a progress bar; else a log line every ``speed_every`` steps


@dataclass(frozen=True)
class Fitted:
    steps: int
    minutes: float
    val_loss: float | None
    val_top1: float | None


class ViewSource(Protocol):
    """Where (anchor, view) batches come from: dicts of ``anchor`` and ``view`` patches
    [shape=(B, 1, n_mels, patch_frames)], plus ``label`` where the classifier needs it."""

    def fixed_batch(self, size: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]: ...

    def stream(self, batch_size: int, device: torch.device, seed: int) -> Generator[dict[str, torch.Tensor], None, None]: ...


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


def forward(net: EncoderNet, x: torch.Tensor, mixed_precision: bool = False) -> dict[str, torch.Tensor]:
    """``net(x)``; with ``mixed_precision``, in bfloat16 on CUDA and channels-last, outputs back in
    float32 and embeddings normalised again there."""
    if not mixed_precision:
        return net(x)
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        out = net(x.contiguous(memory_format=torch.channels_last))
    out = {k: v.float() for k, v in out.items()}
    out["embedding"] = F.normalize(out["embedding"], dim=1)
    return out


def losses(net: EncoderNet, batch: dict[str, torch.Tensor], cfg: TrainConfig, *, one_forward: bool = False,
           mixed_precision: bool = False) -> dict[str, torch.Tensor]:
    """The variant's loss terms (scaled) and their sum under ``"loss"``, in training mode."""
    if one_forward:
        n = len(batch["anchor"])
        both = forward(net, torch.cat([batch["anchor"], batch["view"]]), mixed_precision)
        anchor_out, view_out = {k: v[:n] for k, v in both.items()}, {k: v[n:] for k, v in both.items()}
    else:
        view_out = forward(net, batch["view"], mixed_precision)
        anchor_out = forward(net, batch["anchor"], mixed_precision) if "contrastive" in cfg.terms else None
    return loss_terms(anchor_out, view_out, batch, cfg)


def loss_terms(anchor_out: dict | None, view_out: dict, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The loss terms from the network's outputs for the anchors (needed by ``contrastive``) and views."""
    terms = cfg.terms
    out: dict[str, torch.Tensor] = {}
    if "contrastive" in terms:
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


def evaluate(net: EncoderNet, val: dict[str, torch.Tensor], cfg: TrainConfig, mixed_precision: bool = False,
             chunk: int = 512) -> tuple[float, float]:
    """The variant's loss on the validation pairs and their in-batch top-1, in eval mode."""
    def outputs(x: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = [forward(net, x[i : i + chunk], mixed_precision) for i in range(0, len(x), chunk)]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    was_training = net.training
    net.eval()
    with torch.no_grad():
        view_out, anchor_out = outputs(val["view"]), outputs(val["anchor"])
        loss = float(loss_terms(anchor_out, view_out, val, cfg)["loss"])
        top1 = in_batch_top1(anchor_out["embedding"], view_out["embedding"])
    net.train(was_training)
    return loss, top1


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when torch sees it, else the CPU; any other name as torch spells it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TuneprintError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def learning_rate(cfg: TrainConfig, loop: LoopConfig, step: int, elapsed_s: float) -> float:
    """Linear warm-up, then a cosine from ``cfg.lr`` to ``cfg.lr_min`` over the steps or the minutes."""
    angle = math.pi * step / loop.total_steps if loop.total_steps else math.pi * (elapsed_s / (loop.minutes * 60))
    lr = cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(angle))
    if loop.warmup:
        lr = min(cfg.lr * min(1.0, (step + 1) / loop.warmup), lr)
    return lr


class _Speed:
    """Pairs per second since the window last restarted."""

    def __init__(self):
        self.restart()

    def restart(self) -> None:
        self.pairs, self.since = 0, time.perf_counter()

    def rate(self) -> float:
        return self.pairs / (time.perf_counter() - self.since)


def _step(net: EncoderNet, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], lr: float, cfg: TrainConfig,
          loop: LoopConfig) -> dict[str, torch.Tensor]:
    for group in optimizer.param_groups:
        group["lr"] = lr
    out = losses(net, batch, cfg, one_forward=loop.one_forward, mixed_precision=loop.mixed_precision)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    optimizer.step()
    return out


def fit(net: EncoderNet, views: ViewSource, run: RunFolder, *, cfg: TrainConfig, loop: LoopConfig,
        val_views: ViewSource | None = None, start_step: int = 0, optimizer_state: dict | None = None) -> Fitted:
    """Train ``net`` with Adam on batches from ``views`` until the schedule ends, writing ``run``'s
    metrics, plot and checkpoints; ``val_views`` gives the fixed validation pairs."""
    from tqdm import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # dropout, and the views' draws that take torch's global generator
    if loop.mixed_precision:
        torch.backends.cudnn.benchmark = True
        net = net.to(memory_format=torch.channels_last)
    net = net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    val = val_views.fixed_batch(cfg.val_pairs, device, VAL_SEED) if val_views is not None else None
    train_keys = ["loss", *TERMS]
    val_loss = val_top1 = validated = None

    def validate(row: dict) -> None:
        nonlocal val_loss, val_top1, validated
        val_loss, val_top1 = evaluate(net, val, cfg, loop.mixed_precision)
        validated = row["step"]
        row.update(val_loss=round(val_loss, 6), val_top1=round(val_top1, 4))
        log.info("step %d: val loss %.4f, val top-1 %.4f", row["step"], val_loss, val_top1)

    if val is not None and loop.val_at_start:
        validate(row := {"step": start_step, "minutes": 0})
        run.log(row)
    bar = tqdm(total=loop.total_steps or None, initial=start_step, unit="step", desc=f"training {cfg.variant}",
               disable=not loop.progress)
    stream = views.stream(cfg.batch_size, device, cfg.seed * 1000 + start_step)  # a resumed run draws new pairs
    step, speed = start_step, _Speed()
    started = last_save = time.perf_counter()
    try:
        while (step < loop.total_steps if loop.total_steps else time.perf_counter() - started < loop.minutes * 60):
            lr = learning_rate(cfg, loop, step, time.perf_counter() - started)
            with torch.no_grad():
                batch = next(stream)
            out = _step(net, optimizer, batch, lr, cfg, loop)
            step += 1
            speed.pairs += cfg.batch_size
            bar.update(1)
            row = {"step": step, "minutes": round((time.perf_counter() - started) / 60, 3), "lr": lr}
            if loop.epoch_steps:
                row["epoch"] = round(step / loop.epoch_steps, 3)
            if step % loop.log_every == 0:
                rate = speed.rate()
                row.update(pairs_per_s=round(rate, 2), **{k: round(v.item(), 6) for k, v in out.items()})
                bar.set_postfix(loss=f"{row['loss']:.4f}", pairs_s=f"{rate:.1f}")
                if not loop.progress and step % loop.speed_every == 0:
                    log.info("step %d (%.1f min): loss %.4f, %.0f pairs/s, lr %.2g", step, row["minutes"], row["loss"], rate, lr)
            epoch_end = bool(loop.epoch_steps) and (step % loop.epoch_steps == 0 or step == loop.total_steps)
            boundary = epoch_end or step == loop.total_steps or bool(loop.val_every and step % loop.val_every == 0)
            if boundary and val is not None:
                validate(row)
            if "loss" in row or "val_loss" in row:
                run.log(row)
            if step % loop.speed_every == 0:
                speed.restart()
            timed = loop.checkpoint_minutes and time.perf_counter() - last_save > loop.checkpoint_minutes * 60
            if epoch_end or (loop.checkpoint_every and step % loop.checkpoint_every == 0) or timed:
                run.save(net, optimizer, step)
                last_save = time.perf_counter()
                speed.restart()  # saving time is not training time
            if boundary:
                run.plot(train_keys)
    finally:
        bar.close()
        stream.close()  # stops the worker process that makes the CPU's views
    minutes = (time.perf_counter() - started) / 60
    if val is not None and validated != step:
        validate(row := {"step": step, "minutes": round(minutes, 3)})
        run.log(row)
    run.save(net, optimizer, step, final=True, val_top1=val_top1)
    run.plot(train_keys)
    log.info("trained %d steps in %.1f min%s", step, minutes,
             "" if val_loss is None else f"; val loss {val_loss:.4f}, val top-1 {val_top1:.4f}")
    return Fitted(step, minutes, val_loss, val_top1)


def train(train_items: Sequence[tuple[str, str | None]], run_dir: str | os.PathLike, *, cfg: TrainConfig = TrainConfig(),
          val_items: Sequence[tuple[str, str | None]] = (), noise_paths: Sequence[str] = (), resume: bool = False,
          model_cfg: ModelConfig = ModelConfig(), features: FeatureConfig = FeatureConfig(),
          init_weights: str | None = None, progress: bool = True) -> Path:
    """Train on (path, label) items, views made on the CPU, and write a run folder; returns the
    path of the final weights (every head, float32; ``state.pt`` beside them for ``resume``).

    With ``resume``, the run continues from ``run_dir/state.pt`` with the saved config, for
    ``cfg.epochs`` epochs in all (the learning-rate schedule follows the new length).
    """
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / "state.pt").is_file():
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

    resolve_device(cfg.device)  # refuse a missing device before the decoding
    log.info("decoding %d training and %d validation tracks", len(train_items), len(val_items))
    tracks = load_tracks(train_items, features, labels)
    noises = [load_audio(p, sr=features.sample_rate) for p in noise_paths]
    views = PairSampler(tracks, features, shift_s=cfg.shift_s, degrade=cfg.degrade, noises=noises)
    val_tracks = load_tracks(val_items, features, labels) if val_items else []
    val_views = PairSampler(val_tracks, features, shift_s=cfg.shift_s, degrade=cfg.degrade, noises=noises) if val_tracks else None

    net = EncoderNet(model_cfg)
    if init_weights:
        net.load_state_dict(load_checkpoint(init_weights).net.state_dict(), strict=False)
    audio_patches = sum(len(t.samples) for t in tracks) / (features.patch_seconds * features.sample_rate)
    steps_per_epoch = max(1, math.ceil((cfg.patches_per_epoch or audio_patches) / cfg.batch_size))
    loop = LoopConfig(total_steps=steps_per_epoch * cfg.epochs, epoch_steps=steps_per_epoch, speed_every=cfg.checkpoint_every,
                      checkpoint_every=cfg.checkpoint_every, progress=progress)
    step, optimizer_state = 0, None
    if resume:
        state = torch.load(run_dir / "state.pt", map_location="cpu", weights_only=False)
        net.load_state_dict(load_checkpoint(run_dir / "model.safetensors").net.state_dict())
        step, optimizer_state = state["step"], state["optimizer"]
        log.info("resuming %s at step %d of %d", run_dir, step, loop.total_steps)
    run = RunFolder(run_dir, features, METRICS, extra={"variant": cfg.variant}, resume_step=step if resume else None)
    if resume:
        run.write_config({**saved, "train": cfg.to_dict()})  # the run's length as it now stands
    else:
        run.write_config({"train": cfg.to_dict(), "model": model_cfg.to_dict(), "features": features.to_dict(),
                          "labels": labels, "train_tracks": [p for p, _ in train_items],
                          "val_tracks": [p for p, _ in val_items], "noise_files": len(set(noise_paths)),
                          "init_weights": init_weights, "torch": torch.__version__})
    fit(net, views, run, cfg=cfg, loop=loop, val_views=val_views, start_step=step, optimizer_state=optimizer_state)
    return run.weights
