"""Model checkpoints as safetensors files that carry their own config and format version.

A loader rebuilds exactly the model that was saved, or refuses with a clear message.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tuneprint.errors import CheckpointError
from .features import FeatureConfig
from .model import EncoderNet, ModelConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default.safetensors"


@dataclass(frozen=True)
class LoadedModel:
    net: EncoderNet
    features: FeatureConfig
    model_id: str  # names these exact weights; libraries record it to refuse a silent model swap
    meta: dict


def save_checkpoint(path: str | os.PathLike, net: EncoderNet, features: FeatureConfig, *,
                    half: bool = False, encoder_only: bool = False, extra: dict | None = None) -> Path:
    """Write ``net`` (optionally just backbone + projection, optionally float16) with its configs."""
    state = net.state_dict()
    if encoder_only:
        state = {k: v for k, v in state.items() if k.startswith(("backbone.", "projection."))}
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state.items()}
    cfg = net.cfg.to_dict()
    if encoder_only:
        cfg.update(decoder=False, n_classes=0)
    meta = {
        "format_version": str(FORMAT_VERSION),
        "model_config": json.dumps(cfg),
        "feature_config": json.dumps(features.to_dict()),
        "extra": json.dumps(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_weights(path: str | os.PathLike, kind: str) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """A safetensors file's digest (the first 16 hex digits of its SHA-256, what ids are made of), its
    metadata and its tensors, floating ones in float32; CheckpointError naming ``kind`` when unreadable."""
    from safetensors import safe_open

    path = Path(path)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable {kind} ({e})") from e
    return digest, meta, {k: t.float() if t.is_floating_point() else t for k, t in state.items()}


def load_checkpoint(path: str | os.PathLike) -> LoadedModel:
    """Rebuild the model saved at ``path``, in float32 and eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    digest, meta, state = read_weights(path, "safetensors checkpoint")
    version = meta.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: checkpoint format version {version!r}, this tuneprint reads {FORMAT_VERSION}")
    cfg = ModelConfig.from_dict(json.loads(meta["model_config"]))
    features = FeatureConfig(**json.loads(meta["feature_config"]))
    net = EncoderNet(cfg)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # strict=False still raises on shape mismatches
        raise CheckpointError(f"{path}: weights do not fit the saved config ({str(e).splitlines()[-1].strip()})") from e
    if unexpected or any(k.startswith(("backbone.", "projection.")) for k in missing):
        raise CheckpointError(f"{path}: weights do not fit the saved config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    net.eval()
    return LoadedModel(net, features, f"sha256:{digest}", {**meta, "extra": json.loads(meta.get("extra", "{}"))})


def update_checkpoint_extra(path: str | os.PathLike, **extra) -> None:
    """Add entries (e.g. calibrated thresholds) to a checkpoint's ``extra`` metadata, in place."""
    from safetensors import safe_open

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    state = load_file(str(path))
    meta["extra"] = json.dumps({**json.loads(meta.get("extra", "{}")), **extra})
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, path)


def seeded_model(cfg: ModelConfig = ModelConfig(), features: FeatureConfig = FeatureConfig()) -> LoadedModel:
    """The untrained, seeded initialisation: reproducible on any machine with the same torch."""
    net = EncoderNet(cfg).eval()
    cfg_digest = hashlib.sha256(json.dumps([cfg.to_dict(), features.to_dict()], sort_keys=True).encode()).hexdigest()[:8]
    return LoadedModel(net, features, f"seeded:{cfg.init_seed}:{cfg_digest}:torch{torch.__version__}", {})


def load_model(spec: str | None = None) -> LoadedModel:
    """``None``/``"default"``: the shipped weights, or the seeded init where none ship; else a checkpoint path."""
    if spec in (None, "", "default"):
        if DEFAULT_WEIGHTS.is_file():
            return load_checkpoint(DEFAULT_WEIGHTS)
        log.warning("no trained weights are shipped (%s); using the seeded initialisation", DEFAULT_WEIGHTS)
        return seeded_model()
    if spec == "seeded":
        return seeded_model()
    return load_checkpoint(spec)
