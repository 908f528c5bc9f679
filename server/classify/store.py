"""A trained classifier in the library folder: ``classifier.safetensors`` (weights, and the
where the training segments lie, for the "unknown" rule) and ``classifier.json`` (format version,
the encoder's model_id, settings, labels, tags, the "unknown" bar, how training went).

The weights are written first and the JSON last, both atomically, and each carries the same
stamp: a reader never pairs one training's weights with another's description. A classifier
reads the embeddings (and features) of one encoder; loading it for another is refused.
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from tuneprint.errors import LibraryError, MismatchError

from .config import ClassifierConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS_FILE = "classifier.safetensors"
META_FILE = "classifier.json"


@dataclass
class Classifier:
    """A trained classifier as loaded: settings, names, networks, and what the "unknown" rule needs."""

    config: ClassifierConfig
    model_id: str
    labels: list[str]
    tags: list[str]
    distance_bar: float  # "distance" rule: a clip farther than this from the training segments is "unknown"
    nets: dict  # "labels" / "tags" (heads) or "cnn": torch modules in eval mode
    subspace: dict  # where the training segments lie (heads.fit_subspace): "mean", "scale", "basis"
    meta: dict = field(default_factory=dict)  # how training went (tracks, segments, seconds, losses)


def has_classifier(root: str | os.PathLike) -> bool:
    return (Path(root) / META_FILE).is_file()


def save_classifier(root: str | os.PathLike, clf: Classifier) -> Path:
    """Write ``clf`` into the library folder ``root``; returns the JSON's path."""
    from safetensors.numpy import save_file

    root, stamp = Path(root), uuid.uuid4().hex
    tensors = {f"subspace.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in clf.subspace.items()}
    for name, net in clf.nets.items():
        tensors.update({f"{name}.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()})
    weights = root / WEIGHTS_FILE
    save_file(tensors, str(weights.with_suffix(".tmp")), metadata={"stamp": stamp})
    os.replace(weights.with_suffix(".tmp"), weights)
    meta = {"format_version": FORMAT_VERSION, "stamp": stamp, "model_id": clf.model_id, "config": clf.config.to_dict(),
            "labels": clf.labels, "tags": clf.tags, "distance_bar": clf.distance_bar,
            "dim": int(clf.subspace["mean"].shape[0]), "trained": clf.meta}
    path = root / META_FILE
    path.with_suffix(".tmp").write_text(json.dumps(meta, indent=1))
    os.replace(path.with_suffix(".tmp"), path)
    return path


def load_classifier(lib) -> Classifier:
    """The library's trained classifier (cached until its files change).

    Raises LibraryError when there is none, MismatchError when it was trained for another encoder.
    """
    root = Path(lib.root)
    if not has_classifier(root):
        raise LibraryError(f"{root}: no trained classifier; train one with `tuneprint classify train --library {root}`")
    meta = json.loads((root / META_FILE).read_text())
    if meta.get("model_id") != lib.model_id:
        raise MismatchError(f"{root}: the classifier was trained on the embeddings of encoder {meta.get('model_id')}, "
                            f"but the library's encoder is now {lib.model_id}; train it again with "
                            f"`tuneprint classify train --library {root}`")
    stats = [(root / f).stat() for f in (META_FILE, WEIGHTS_FILE) if (root / f).exists()]
    return _load(str(root), tuple((s.st_mtime_ns, s.st_size) for s in stats))


@lru_cache(maxsize=4)
def _load(root: str, _version: tuple) -> Classifier:
    from safetensors import safe_open

    meta = json.loads((Path(root) / META_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise LibraryError(f"{root}: classifier format {meta.get('format_version')}, this tuneprint reads "
                           f"{FORMAT_VERSION}; train it again with `tuneprint classify train --library {root}`")
    try:
        with safe_open(str(Path(root) / WEIGHTS_FILE), framework="numpy") as f:
            stamp = (f.metadata() or {}).get("stamp")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # missing, truncated: safetensors says which
        raise LibraryError(f"{root}: the classifier's weights cannot be read ({e}); train it again") from e
    if stamp != meta.get("stamp"):
        raise LibraryError(f"{root}: {WEIGHTS_FILE} and {META_FILE} come from different trainings; train it again")
    cfg = ClassifierConfig.from_dict(meta["config"])
    nets = build_nets(cfg, meta["dim"], len(meta["labels"]), len(meta["tags"]))
    for name, net in nets.items():
        import torch

        net.load_state_dict({k[len(name) + 1 :]: torch.from_numpy(v.copy()) for k, v in tensors.items()
                             if k.startswith(name + ".")})
        net.eval()
    return Classifier(cfg, meta["model_id"], meta["labels"], meta["tags"], float(meta["distance_bar"]), nets,
                      {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("subspace.")},
                      meta.get("trained", {}))


def build_nets(cfg: ClassifierConfig, dim: int, n_labels: int, n_tags: int) -> dict:
    """The untrained networks a classifier of ``cfg`` has (what training fills and loading restores)."""
    if cfg.model == "cnn":
        from .cnn import SegmentCNN

        return {"cnn": SegmentCNN(n_labels, n_tags, cfg.network, hidden=cfg.hidden, dropout=cfg.dropout)}
    from .heads import Head

    nets = {"labels": Head(dim, n_labels, cfg.depth, cfg.hidden, cfg.dropout)}
    if n_tags:
        nets["tags"] = Head(dim, n_tags, cfg.depth, cfg.hidden, cfg.dropout)
    return nets
