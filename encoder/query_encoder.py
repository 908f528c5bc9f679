"""The query encoder: what a clip searches the library with — short clips and phone calls included.

The index stores one fingerprint per whole 3-s patch of clean music. Two kinds of query land far
from those fingerprints although the fingerprint network was trained on degraded views:

- a clip shorter than a patch: padded with silence, a 1-s clip is a third of a patch, and 1-s
  clips were identified 5–12 % of the time;
- a clip through a real phone chain (band-pass, 8 kHz, AMR-NB / Opus / MP3 at 6–16 kb/s): the
  network's training simulated codecs, and 3-s clips of real calls were identified ≈40 % of the time.

The *query encoder* is a copy of the fingerprint network whose stem and first three stages were
trained again (:func:`train_query_encoder`), the fingerprint network frozen as its teacher: a
degraded view — cut to a few frames at a random position of the patch and masked to zero around
them, or coded by a real codec (encoder/codec_views.py), or both — must land on the teacher's
fingerprint of the clean whole patch. The stored side does not change: libraries need no reindex,
and the query encoder is a query-side add-on, tied to the fingerprint encoder it was trained against.

A short clip is placed at several positions of the patch (:func:`short_patches`); each placement is
a query patch whose offset is negative (the patch starts before the clip), so the vote's offsets
still say where the clip starts in the song. A query encoder trained on whole views too
(``p_full`` > 0) embeds every query patch; one trained on short views only embeds short clips.

    clip >> whole patches, or masked partial patches at positions 0 … 64 − L
         >> trained stem and stages 1–3 >> the fingerprint's stage 4 and projection
         >> unit-norm 1,024-d query vectors, searched against the stored fingerprints
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tuneprint.errors import CheckpointError, MismatchError

from .checkpoint import read_weights
from .features import FeatureConfig, normalize_patch
from .model import EncoderNet

log = logging.getLogger(__name__)

DEFAULT_QUERY = Path(__file__).resolve().parent / "weights" / "query.safetensors"
FORMAT_VERSION = 1
TRAINED = ("backbone.stem.", "backbone.stages.0.", "backbone.stages.1.", "backbone.stages.2.")  # what training changes
EDGE_FRAMES = 1  # frames dropped at each end of a clip: centred STFT frames there hold padding


def short_patches(S_db: np.ndarray, features: FeatureConfig, placements: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A clip shorter than a patch → masked query patches and their offsets in the clip.

    Parameters
    ----------
    S_db : np.ndarray [shape=(n_mels, t)], t < ``features.patch_frames``: the clip's log-mel (dB)
    placements : int
        Positions of the clip in the patch, evenly spread from the first frame to flush with the last.

    Returns
    -------
    patches : np.ndarray [shape=(n, n_mels, patch_frames), dtype=float32], zero outside the clip
    offsets_s : np.ndarray [shape=(n,), dtype=float32], where each patch starts relative to the clip (≤ 0)
    """
    frames = S_db[:, EDGE_FRAMES : S_db.shape[1] - EDGE_FRAMES] if S_db.shape[1] > 2 * EDGE_FRAMES + 8 else S_db
    first = EDGE_FRAMES if frames is not S_db else 0
    length = min(frames.shape[1], features.patch_frames)
    visible = normalize_patch(frames[:, :length], features)
    room = features.patch_frames - length
    positions = np.unique(np.round(np.linspace(0, room, min(placements, room + 1))).astype(np.int64))
    patches = np.zeros((len(positions), features.n_mels, features.patch_frames), dtype=np.float32)
    for i, pos in enumerate(positions):
        patches[i, :, pos : pos + length] = visible
    return patches, ((first - positions) * features.frame_seconds).astype(np.float32)


def crop_views(views: torch.Tensor, lengths: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Training's counterpart of :func:`short_patches`: keep ``lengths`` frames of each normalised view
    (B, 1, M, T) from ``positions`` on, level them to their own loudest cell, zero the rest."""
    t = views.shape[-1]
    idx = torch.arange(t, device=views.device)[None, :]
    keep = (idx >= positions[:, None]) & (idx < (positions + lengths)[:, None])  # (B, T)
    keep = keep[:, None, None, :]
    peak = torch.where(keep, views, torch.zeros_like(views)).amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(keep, (views + (1.0 - peak)).clamp(0.0, 1.0), torch.zeros_like(views))


@dataclass(frozen=True)
class QueryTrainConfig:
    minutes: float = 40.0
    batch_size: int = 96
    lr: float = 3e-4  # Adam; cosine to lr / 100 over ``minutes``
    temperature: float = 0.05
    queue: int = 4096  # past teacher fingerprints kept as extra negatives
    min_frames: int = 18  # shortest clip trained on (≈0.84 s)
    max_frames: int = 58
    p_full: float = 0.0  # share of views kept whole (a query encoder for clips of any length)
    threads: int = 0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class QueryEncoder:
    """The query encoder and the fingerprint encoder it answers for."""

    model_id: str
    net: EncoderNet
    meta: dict
    query_id: str = "untrained"  # the fingerprint encoder's id and a digest of this file

    @property
    def whole_patches(self) -> bool:
        """Trained on whole views too (``p_full`` > 0): it answers clips of any length, not only short ones."""
        return float(self.meta.get("config", {}).get("p_full", 0.0)) > 0.0

    def embed(self, patches: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """Masked patches [shape=(p, n_mels, frames)] → unit-norm query vectors [shape=(p, D), float32]."""
        out = []
        with torch.inference_mode():
            for i in range(0, len(patches), batch_size):
                out.append(self.net.embed(torch.from_numpy(patches[i : i + batch_size]).unsqueeze(1)).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.net.cfg.embedding_dim), np.float32)


def student_of(teacher: EncoderNet) -> EncoderNet:
    """A copy of the fingerprint network whose :data:`TRAINED` parameters train and the rest stay frozen."""
    student = copy.deepcopy(teacher)
    student.decoder, student.classifier = None, None
    for name, p in student.named_parameters():
        p.requires_grad = name.startswith(TRAINED)
    return student


def _set_mode(student: EncoderNet) -> None:
    """Training mode for the trained stages only: frozen ones keep their batch-norm statistics."""
    student.eval()
    for name, module in student.named_modules():
        if f"{name}.".startswith(TRAINED):
            module.train()


def save_query_encoder(path: str | os.PathLike, short: QueryEncoder) -> Path:
    """Write the trained stages (float16) with the fingerprint encoder's id and provenance."""
    from safetensors.torch import save_file

    state = {k: (v.half() if v.is_floating_point() else v).contiguous()
             for k, v in short.net.state_dict().items() if k.startswith(TRAINED)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata={"format_version": str(FORMAT_VERSION), "model_id": short.model_id,
                                         "meta": json.dumps(short.meta)})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def load_query_encoder(teacher: EncoderNet, model_id: str, path: str | os.PathLike = DEFAULT_QUERY) -> QueryEncoder:
    """The query encoder for ``teacher`` (whose id is ``model_id``); MismatchError when it was
    trained against another encoder."""
    digest, meta, state = read_weights(path, "query encoder")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: query encoder format {meta.get('format_version')!r}; this tuneprint reads {FORMAT_VERSION}")
    if meta.get("model_id") != model_id:
        raise MismatchError(f"{path}: the query encoder was trained against {meta.get('model_id')}, not {model_id}")
    net = student_of(teacher)
    missing = [k for k in net.state_dict() if k.startswith(TRAINED) and k not in state]
    if missing or any(not k.startswith(TRAINED) for k in state):
        raise CheckpointError(f"{path}: weights do not fit the fingerprint network (missing {missing[:3]})")
    net.load_state_dict(state, strict=False)
    return QueryEncoder(model_id, net.eval(), json.loads(meta.get("meta", "{}")), f"{model_id}/sha256:{digest}")


def query_encoder_for(model, path: str | os.PathLike = DEFAULT_QUERY) -> QueryEncoder | None:
    """The shipped (or given) query encoder when it was trained against ``model``
    (encoder.checkpoint.LoadedModel); None otherwise: queries then search with their fingerprints (short clips padded with silence)."""
    if not Path(path).is_file():
        return None
    try:
        return load_query_encoder(model.net, model.model_id, path)
    except (MismatchError, CheckpointError) as e:
        log.info("no query encoder for this encoder: %s", e)
        return None


def train_query_encoder(teacher: EncoderNet, model_id: str, pairs, val_sources: dict, cfg: QueryTrainConfig = QueryTrainConfig(),
                on_step=None, init: QueryEncoder | None = None) -> QueryEncoder:
    """Train a query encoder against ``teacher`` on (anchor, view) batches of
    :class:`encoder.mel_views.MelPairs` for ``cfg.minutes``.

    Each view keeps a random stretch of ``min_frames``–``max_frames`` frames at a random position
    (:func:`crop_views`); the loss is InfoNCE between the student's vector of the cropped view and
    the teacher's fingerprint of the clean full patch, against the batch's other anchors and a queue
    of earlier ones. Returns the model with its validation figures (top-1 of cropped views among
    the validation anchors, before and after) in ``meta``.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    teacher = teacher.eval()
    student = student_of(teacher)
    if init is not None:  # go on from an earlier query encoder of the same fingerprint encoder
        student.load_state_dict({k: v for k, v in init.net.state_dict().items() if k.startswith(TRAINED)}, strict=False)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    vals = val_sets(val_sources)
    before = {name: round(top1(student, teacher, v), 4) for name, v in vals.items()}
    log.info("validation top-1 before training: %s", before)
    queue = torch.zeros(0, teacher.cfg.embedding_dim)
    started, step, losses = time.perf_counter(), 0, []
    while (elapsed := time.perf_counter() - started) < cfg.minutes * 60:
        lr = cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / (cfg.minutes * 60)))))
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            batch = pairs.batch(cfg.batch_size, g)
            target = teacher.embed(batch["anchor"])
            query = crop_views(batch["view"], *_crops(len(target), cfg, g))
        _set_mode(student)
        q = student.embed(query)
        logits = q @ torch.cat([target, queue]).T / cfg.temperature
        loss = F.cross_entropy(logits, torch.arange(len(q)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        queue = torch.cat([target, queue])[: cfg.queue]
        losses.append(float(loss.detach()))
        step += 1
        if on_step is not None:
            on_step(step, elapsed, losses[-1], lr)
        if step % 100 == 0:
            log.info("step %d, %.1f min: loss %.4f (last 100), lr %.2e", step, elapsed / 60, np.mean(losses[-100:]), lr)
    after = {name: round(top1(student, teacher, v), 4) for name, v in vals.items()}
    log.info("validation top-1 after %d steps: %s (before %s)", step, after, before)
    meta = {"trained": "scripts/train_query_encoder.py", "steps": step, "minutes": round((time.perf_counter() - started) / 60, 1),
            "config": cfg.to_dict(), "val_top1_before": before, "val_top1_after": after,
            "final_loss": round(float(np.mean(losses[-100:])), 4) if losses else None}
    return QueryEncoder(model_id, student.eval(), meta)


class MixedPairs:
    """Batches drawn from several (anchor, view) sources, ``shares`` of each batch from each."""

    def __init__(self, sources: list, shares: list[float]):
        self.sources, self.shares = sources, shares

    def batch(self, b: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        counts = [int(round(b * s)) for s in self.shares[:-1]]
        counts.append(b - sum(counts))
        parts = [src.batch(n, g) for src, n in zip(self.sources, counts) if n > 0]
        return {k: torch.cat([p[k] for p in parts]) for k in ("anchor", "view")}


def _crops(b: int, cfg: QueryTrainConfig, g: torch.Generator, frames: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.randint(cfg.min_frames, cfg.max_frames + 1, (b,), generator=g)
    lengths = torch.where(torch.rand(b, generator=g) < cfg.p_full, torch.full_like(lengths, frames), lengths)
    positions = (torch.rand(b, generator=g) * (frames - lengths + 1)).long()
    return lengths, positions


def val_sets(sources: dict, size: int = 512) -> dict[str, dict[str, torch.Tensor]]:
    """Fixed validation pairs: name → {"anchor", "query"}. ``sources``: name → (view source, frames kept
    or None for whole views); a cropped view keeps that many frames at a random position."""
    out = {}
    for name, (source, frames) in sources.items():
        g = torch.Generator().manual_seed(12345)
        batch = source.batch(size, g)
        query = batch["view"]
        if frames is not None:
            positions = (torch.rand(size, generator=g) * (query.shape[-1] - frames + 1)).long()
            query = crop_views(query, torch.full((size,), frames), positions)
        out[name] = {"anchor": batch["anchor"], "query": query}
    return out


def top1(query_net: EncoderNet, teacher: EncoderNet, val: dict[str, torch.Tensor]) -> float:
    """Share of validation queries whose nearest validation anchor (the teacher's fingerprint) is their own."""
    with torch.no_grad():
        query_net.eval()
        target = teacher.embed(val["anchor"])
        q = query_net.embed(val["query"])
        return float(((q @ target.T).argmax(dim=1) == torch.arange(len(q))).float().mean())
