"""Heads over segment embeddings: a single-label softmax over labels and a multi-label sigmoid over tags.

Both read standardised segment embeddings (inputs.py) through ``depth`` hidden layers
(0: a linear classifier). The label head learns with cross-entropy, the tag head with binary
cross-entropy per tag; with class weights a rare label (tag) counts as much as a common one.
Tags on fewer than ``others_min_tracks`` tracks are folded into one "Others" tag, which a
handful of examples could not teach.

"Unknown": a clip whose segments lie far outside the subspace the training segments span (their
principal directions; the bar is set from training tracks scored against the other tracks), or,
with the "probability" rule, whose top label is less probable than ``min_probability``.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

import numpy as np
import torch
from torch import nn

from .config import OTHERS, ClassifierConfig

log = logging.getLogger(__name__)

SUBSPACE_DIMS = 64  # principal directions of the training segments that the "distance" rule keeps


class Head(nn.Module):
    """Standardise, then ``depth`` × (linear, ReLU, dropout), then a linear layer to ``n_out`` logits."""

    def __init__(self, dim: int, n_out: int, depth: int, hidden: int, dropout: float):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        layers: list[nn.Module] = []
        width = dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*layers, nn.Linear(width, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [shape=(n, dim)] → logits [shape=(n, n_out)]."""
        return self.body((x - self.mean) / self.scale)


def fold_rare_tags(track_tags: list[tuple[str, ...]], min_tracks: int) -> tuple[list[str], list[tuple[str, ...]]]:
    """Tags carried by fewer than ``min_tracks`` tracks become "Others".

    Returns
    -------
    names : the tags kept, sorted, then "Others" when anything was folded
    folded : each track's tags after folding
    """
    counts = Counter(t for tags in track_tags for t in set(tags))
    keep = {t for t, n in counts.items() if n >= min_tracks} if min_tracks > 0 else set(counts)
    folded = [tuple(sorted({t if t in keep else OTHERS for t in tags})) for tags in track_tags]
    names = sorted(keep - {OTHERS}) + ([OTHERS] if any(OTHERS in f for f in folded) else [])
    return names, folded


def label_weights(y: np.ndarray, n: int) -> np.ndarray:
    """Balanced class weights for soft targets [shape=(segments, n)]: total / (n · mass of each class)."""
    mass = y.sum(axis=0)
    return np.where(mass > 0, y.sum() / (n * np.maximum(mass, 1e-9)), 0.0).astype(np.float32)


def tag_pos_weights(y: np.ndarray) -> np.ndarray:
    """BCE weights of each tag's positives: negatives / positives (a tag on 1 segment in 10 counts 9×)."""
    pos = y.sum(axis=0)
    return np.clip((len(y) - pos) / np.maximum(pos, 1.0), 1.0, 100.0).astype(np.float32)


def fit(net: nn.Module, x: np.ndarray, y: np.ndarray, loss_fn: nn.Module, cfg: ClassifierConfig,
        progress: Callable[[int, float], None] | None = None, batch=None) -> float:
    """Train ``net`` on (x, y) with Adam and an exponentially decaying learning rate.

    ``batch(x_rows)`` turns a batch of ``x`` into the network's input (default: a float tensor).
    ``progress(epoch, loss)`` is called after each epoch. Returns the last epoch's mean loss.
    """
    if batch is None:  # a head: small matrix products, which one thread does fastest on a busy machine
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fit(net, x, y, loss_fn, cfg, progress, batch=lambda rows: torch.from_numpy(
                np.asarray(rows, dtype=np.float32)))
        finally:
            torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.lr_decay)
    target = torch.from_numpy(np.asarray(y, dtype=np.float32))
    net.train()
    loss_sum = 0.0
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen).numpy()
        loss_sum = 0.0
        for i in range(0, len(order), cfg.batch_size):
            rows = order[i : i + cfg.batch_size]
            opt.zero_grad()
            loss = loss_fn(net(batch(x[rows])), target[rows])
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(rows)
        schedule.step()
        if progress:
            progress(epoch + 1, loss_sum / len(x))
    net.eval()
    return loss_sum / len(x)


def soft_cross_entropy(weights: np.ndarray | None) -> nn.Module:
    """Cross-entropy against soft targets (a track with two labels is half of each), class-weighted."""
    w = torch.from_numpy(weights) if weights is not None else None

    class SoftCE(nn.Module):
        def forward(self, logits, target):
            per = -(target * torch.log_softmax(logits, dim=1))
            if w is not None:
                per = per * w
            return per.sum(dim=1).mean()

    return SoftCE()


def standardise(head: Head, x: np.ndarray) -> None:
    """Fix a head's input standardisation to the training segments' mean and spread."""
    head.mean.copy_(torch.from_numpy(x.mean(axis=0)))
    head.scale.copy_(torch.from_numpy(np.maximum(x.std(axis=0), 1e-4)))


def predict(net: nn.Module, x, *, multi_label: bool, batch_size: int = 256, batch=None) -> np.ndarray:
    """Probabilities [shape=(n, L)]: softmax rows, or independent sigmoids for tags."""
    batch = batch or (lambda rows: torch.from_numpy(np.asarray(rows, dtype=np.float32)))
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            logits = net(batch(x[i : i + batch_size]))
            out.append((torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


# -- "unknown": how far a clip is from everything the classifier learnt from ------------------
def fit_subspace(x: np.ndarray, dims: int = SUBSPACE_DIMS) -> dict[str, np.ndarray]:
    """Where training segments lie: their standardisation and the ``dims`` principal directions
    of the standardised segments. ``{"mean", "scale": [D], "basis": [dims, D]}``"""
    x = np.asarray(x, dtype=np.float64)
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-4)
    z = (x - mean) / scale
    dims = max(1, min(dims, len(x) - 1, x.shape[1]))
    _, vectors = np.linalg.eigh(z.T @ z)  # the covariance's eigenvectors, ascending: cheaper than an SVD of z
    basis = vectors[:, ::-1][:, :dims].T
    return {"mean": mean.astype(np.float32), "scale": scale.astype(np.float32), "basis": basis.astype(np.float32)}


def distance(x: np.ndarray, subspace: dict[str, np.ndarray]) -> np.ndarray:
    """How far each segment [shape=(n, D)] lies outside the training segments' subspace: the mean
    square of its standardised embedding's part that the principal directions do not explain."""
    z = (np.asarray(x, dtype=np.float32) - subspace["mean"]) / subspace["scale"]
    basis = subspace["basis"]
    return ((z - (z @ basis.T) @ basis) ** 2).mean(axis=1).astype(np.float64)


def distance_bar(x: np.ndarray, track: np.ndarray, quantile: float, dims: int = SUBSPACE_DIMS) -> float:
    """The distance above which a segment is "far from everything learnt": the ``1 - quantile``
    quantile of training segments' distances to a subspace fitted on the *other* half of the
    tracks (a track's own segments would make it look close), both halves in turn."""
    half = np.unique(track)[::2]
    first = np.isin(track, half)
    if first.all() or not first.any():
        return float("inf")
    found = [distance(x[~a], fit_subspace(x[a], dims)) for a in (first, ~first)]
    return float(np.quantile(np.concatenate(found), 1.0 - quantile))
