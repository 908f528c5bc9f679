"""The style embedding: one trunk, two heads.

The fingerprint's ResNet18 trunk is shared. Its stage outputs are summarised per patch by the
mean and standard deviation of every channel over time and frequency — the feature statistics
that carry timbre and texture, not the position of events (the "style" of Gatys et al. and of
AdaIN) — and a small head projects them to a unit-norm style vector. A track's style vector is
the normalised mean of its patches' vectors, over patches that span the whole track; a clip's
is made the same way from the patches it has.

    patch >> trunk stages 1–4 >> per-channel mean, std (1,920) >> Linear, ReLU, Linear → 128 >> L2

The head alone is trained (encoder/style_training.py); the fingerprint does not change.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tuneprint.errors import CheckpointError, MismatchError

from .checkpoint import read_weights
from .model import EncoderNet

DEFAULT_STYLE = Path(__file__).resolve().parent / "weights" / "style.safetensors"
FORMAT_VERSION = 1


def trunk_forward(net: EncoderNet, x: torch.Tensor,
                  rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of the trunk → (unit-norm fingerprint embedding (B, D), style statistics (R, S)).

    The statistics are each stage's per-channel mean and standard deviation, so
    S = 2 · (64 + 128 + 256 + 512) = 1,920 for ResNet18, for the patches ``rows`` (indices into the
    batch; all when None): a track's style needs patches about 1.5 s apart, not every stored one.
    """
    h = net.backbone.stem(x)
    stats = []
    for stage in net.backbone.stages:
        h = stage(h)
        flat = (h if rows is None else h[rows]).flatten(2)
        stats += [flat.mean(dim=2), flat.std(dim=2)]
    pooled = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)  # the same ops as EncoderNet.embed: same numbers
    return F.normalize(net.projection(pooled), dim=1), torch.cat(stats, dim=1)


STYLE_HOP_FRAMES = 32  # ≈1.5 s between the patches whose statistics make a style vector (as in training)


@dataclass(frozen=True)
class StyleConfig:
    in_dim: int = 1920
    hidden: int = 512
    out_dim: int = 128
    init_seed: int = 20261205

    def to_dict(self) -> dict:
        return asdict(self)


class StyleHead(nn.Module):
    """Trunk statistics (B, S) → unit-norm style vectors (B, out_dim); standardises its input first."""

    def __init__(self, cfg: StyleConfig = StyleConfig()):
        super().__init__()
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(cfg.init_seed)
            self.net = nn.Sequential(nn.Linear(cfg.in_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.out_dim))
        # Statistics of the training patches; fixed once fitted (log scale keeps the stds comparable).
        self.register_buffer("mean", torch.zeros(cfg.in_dim))
        self.register_buffer("scale", torch.ones(cfg.in_dim))

    def fit_standardiser(self, stats: torch.Tensor) -> None:
        z = _compress(stats)
        self.mean.copy_(z.mean(dim=0))
        self.scale.copy_(z.std(dim=0).clamp_min(1e-4))

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net((_compress(stats) - self.mean) / self.scale), dim=1)

    def vectors(self, stats: np.ndarray) -> np.ndarray:
        """Trunk statistics [shape=(p, S)] → unit-norm patch style vectors [shape=(p, d), float32]."""
        with torch.inference_mode():
            return self(torch.from_numpy(np.asarray(stats, dtype=np.float32))).numpy()


def _compress(stats: torch.Tensor) -> torch.Tensor:
    return torch.log1p(stats.clamp_min(0))


def track_vector(patch_vectors: np.ndarray) -> np.ndarray:
    """A track's (or clip's) style vector from its patches' [shape=(p, d)]: their normalised mean."""
    v = np.asarray(patch_vectors, dtype=np.float32).mean(axis=0)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


@dataclass
class StyleModel:
    """A trained style head and the encoder whose trunk it reads."""

    model_id: str
    head: StyleHead
    meta: dict = field(default_factory=dict)  # training provenance and validation figures
    style_id: str = "untrained"  # the encoder's id and a digest of the head's file: what libraries record

    @property
    def dim(self) -> int:
        return self.head.cfg.out_dim

    def vectors(self, stats: np.ndarray) -> np.ndarray:
        """Trunk statistics [shape=(p, S)] → unit-norm patch style vectors [shape=(p, d), float32]."""
        return self.head.vectors(stats)


def save_style(path: str | os.PathLike, style: StyleModel) -> Path:
    """Write the head as safetensors (float32), its settings, encoder id and provenance in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    meta = {"format_version": str(FORMAT_VERSION), "model_id": style.model_id,
            "style_config": json.dumps(style.head.cfg.to_dict()), "meta": json.dumps(style.meta)}
    save_file({k: v.detach().float().contiguous() for k, v in style.head.state_dict().items()}, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def load_style(path: str | os.PathLike = DEFAULT_STYLE, model_id: str | None = None) -> StyleModel:
    """Read a style head; with ``model_id``, refuse one trained on another encoder's trunk (MismatchError)."""
    digest, meta, tensors = read_weights(path, "style head")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: style format {meta.get('format_version')!r}; this tuneprint reads {FORMAT_VERSION}")
    if model_id is not None and meta.get("model_id") != model_id:
        raise MismatchError(f"{path}: the style head was trained on encoder {meta.get('model_id')}, not {model_id}; "
                            "train one for this encoder with `tuneprint train --style`")
    head = StyleHead(StyleConfig(**json.loads(meta["style_config"])))
    head.load_state_dict(tensors)
    return StyleModel(meta["model_id"], head.eval(), json.loads(meta.get("meta", "{}")),
                      f"{meta['model_id']}/sha256:{digest}")
