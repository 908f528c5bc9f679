"""Training the style head (encoder/style.py) on labelled tracks.

Two steps. :func:`collect_statistics` runs the frozen trunk once over patches that span each
track — and over a style-keeping re-recording of it (speed ±8 %, which moves tempo and pitch
together, a random EQ and sometimes a phone codec), so that the recording is not what stays
close. :func:`fit_style_head` then trains the head on those statistics alone (seconds to minutes
on a CPU): every step draws tracks balanced over labels, two segments of each (the mean of a few
random patches, from either recording), and applies

- ``supcon``: supervised contrastive loss, positives = segments of tracks with the same label;
- ``track``: positives = the other segment of the same track (COLA/CLMR-style, label-free);
- ``both``: their sum.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from tuneprint.errors import AudioError

from .audio import load_audio
from .augment import change_speed, phone, random_eq
from .checkpoint import LoadedModel
from .features import audio_to_patches
from .embeddings import Embedder
from .style import StyleConfig, StyleHead

log = logging.getLogger(__name__)

OBJECTIVES = ("supcon", "track", "both")


@dataclass
class TrackStatistics:
    """Trunk statistics of one track's patches, and of its re-recording (None when not made)."""

    path: str
    label: str
    stats: np.ndarray  # [shape=(p, S), dtype=float16]
    fingerprints: np.ndarray  # [shape=(p, D), dtype=float16], unit-norm fingerprint embeddings
    patches_mfcc: np.ndarray | None = None  # collect_statistics's ``patch_features`` (e.g. an MFCC baseline)
    augmented: np.ndarray | None = None  # [shape=(p', S), dtype=float16]


def restyle_recording(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The same music, recorded differently: speed ±8 %, random EQ, a phone codec one time in four."""
    y = change_speed(y, sr, float(rng.uniform(0.92, 1.08)))
    y = random_eq(y, sr, rng, max_db=9.0)
    if rng.random() < 0.25:
        y = phone(y, sr, rng)
    return (y / max(1e-6, float(np.abs(y).max()))).astype(np.float32)


def collect_statistics(items: Sequence[tuple[str, str]], model: LoadedModel, *, hop_frames: int = 32,
                       augment: bool = False, seed: int = 0, max_seconds: float = 600.0,
                       patch_features: Callable[[np.ndarray], np.ndarray] | None = None,
                       progress: Callable[[int, int], None] | None = None) -> list[TrackStatistics]:
    """Trunk statistics of every (path, label) track, patches ``hop_frames`` apart over the whole track
    (its first ``max_seconds``); unreadable or too short files are skipped with a warning.

    ``patch_features``: patches [shape=(p, mels, frames)] → other features of the same patches, kept
    as ``patches_mfcc`` (evaluation baselines read the same decoding)."""
    embedder = Embedder(model)
    rng = np.random.default_rng(seed)
    sr = model.features.sample_rate
    out = []
    for i, (path, label) in enumerate(items):
        try:
            y = load_audio(path, sr=sr, min_seconds=model.features.patch_seconds, max_seconds=max_seconds)
            patches, _ = audio_to_patches(y, hop_frames=hop_frames, cfg=model.features)
        except AudioError as e:
            log.warning("skipping %s", e)
            continue
        fps, stats = embedder.fingerprints_and_statistics(patches)
        track = TrackStatistics(path, label, stats.astype(np.float16), fps.astype(np.float16),
                                patch_features(patches) if patch_features else None)
        if augment:
            try:
                view, _ = audio_to_patches(restyle_recording(y, sr, rng), hop_frames=hop_frames, cfg=model.features)
                track.augmented = embedder.fingerprints_and_statistics(view)[1].astype(np.float16)
            except AudioError:
                pass
        out.append(track)
        if progress:
            progress(i + 1, len(items))
    return out


@dataclass(frozen=True)
class StyleTrainConfig:
    objective: str = "both"
    steps: int = 1500
    tracks_per_step: int = 64
    patches_per_segment: int = 4
    temperature: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    head: StyleConfig = field(default_factory=StyleConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def contrastive_loss(z: torch.Tensor, groups: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., 2020): each row's positives are the other rows of
    its group. Rows with no positive are left out."""
    sims = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool)
    sims = sims.masked_fill(eye, float("-inf"))
    log_prob = sims - torch.logsumexp(sims, dim=1, keepdim=True)
    positive = (groups[:, None] == groups[None, :]) & ~eye
    n_pos = positive.sum(dim=1)
    keep = n_pos > 0
    mean_log_prob = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)[keep] / n_pos[keep]
    return -mean_log_prob.mean()


def _segment_sampler(tracks: list[TrackStatistics], rng: np.random.Generator, k: int):
    """A function drawing one segment of a track: the statistics of ``k`` random patches, from the clean
    or the re-recorded recording (the head's outputs for them are averaged in :func:`fit_style_head`)."""
    def draw(t: TrackStatistics) -> np.ndarray:
        source = t.augmented if t.augmented is not None and len(t.augmented) and rng.random() < 0.5 else t.stats
        return source[rng.integers(0, len(source), k)].astype(np.float32)
    return draw


def fit_style_head(tracks: list[TrackStatistics], cfg: StyleTrainConfig = StyleTrainConfig(),
                   progress: Callable[[int, float], None] | None = None) -> tuple[StyleHead, dict]:
    """Train a style head on ``tracks`` (two labels or more); returns it and a training summary."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {cfg.objective!r}")
    labels = sorted({t.label for t in tracks})
    if cfg.objective != "track" and len(labels) < 2:
        raise ValueError("style training needs tracks of at least two labels")
    label_of = np.array([labels.index(t.label) for t in tracks])
    by_label = [np.flatnonzero(label_of == j) for j in range(len(labels))]
    rng = np.random.default_rng(cfg.seed)
    draw = _segment_sampler(tracks, rng, cfg.patches_per_segment)
    head = StyleHead(cfg.head)
    head.fit_standardiser(torch.from_numpy(np.concatenate([t.stats for t in tracks]).astype(np.float32)))
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    started, losses = time.monotonic(), []
    head.train()
    for step in range(cfg.steps):
        chosen = np.array([rng.choice(by_label[j]) for j in rng.integers(0, len(labels), cfg.tracks_per_step)])
        segments = np.stack([draw(tracks[i]) for i in chosen for _ in range(2)])  # (2B, k, S)
        b, k, s = segments.shape
        z = head(torch.from_numpy(segments.reshape(b * k, s))).view(b, k, -1).mean(dim=1)
        z = F.normalize(z, dim=1)
        track_ids = torch.from_numpy(np.repeat(np.arange(cfg.tracks_per_step), 2))
        label_ids = torch.from_numpy(np.repeat(label_of[chosen], 2))
        loss = torch.zeros(())
        if cfg.objective in ("supcon", "both"):
            loss = loss + contrastive_loss(z, label_ids, cfg.temperature)
        if cfg.objective in ("track", "both"):
            loss = loss + contrastive_loss(z, track_ids, cfg.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress and (step + 1) % 100 == 0:
            progress(step + 1, float(np.mean(losses[-100:])))
    head.eval()
    summary = {"labels": labels, "tracks": len(tracks), "patches": int(sum(len(t.stats) for t in tracks)),
               "final_loss": round(float(np.mean(losses[-100:])), 4), "seconds": round(time.monotonic() - started, 1),
               "config": cfg.to_dict()}
    return head, summary
