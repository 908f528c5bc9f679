"""Training and measuring the music / non-music gate (server/gate.py) on the development corpus.

:func:`build_features` embeds the clips of :mod:`.gate_data` with the encoder and keeps every
patch's gate features; :func:`select` fits each :data:`CANDIDATES` model on the train split, sets
its threshold on the val split (the one closest to meeting both floors, :func:`choose_threshold`)
and keeps the best by validation score; :func:`measure` reports the kept gate on the test split
(held-out songs and collections, held-out packages' sounds, voices never trained on) and
:func:`file_checks` on whole files as ``add`` judges them. Nothing is tuned on test.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from tuneprint.encoder.features import audio_to_patches_and_spectrogram
from tuneprint.errors import AudioError
from tuneprint.server.gate import Gate, logmel_statistics, patch_spectra
from tuneprint.server.gate_cnn import GateCNN, cnn_input, train_cnn

from .gate_data import DATA_VERSION, SPLITS, GateClip, GateDataConfig, gate_clips

log = logging.getLogger(__name__)

QUERY_HOP_FRAMES = 4  # as LibrarySettings.query_hop_frames: clips are embedded as queries are
TARGET_ACCURACY = 0.97  # the floors: accuracy on held-out music and held-out packages' sounds,
TARGET_MUSIC_MISS = 0.01  # and real 3-s music clips called non-music (noisy and phoned ones included)
THRESHOLDS = np.round(np.arange(0.005, 0.9951, 0.005), 3)  # where choose_threshold looks
NON_MUSIC_KINDS = ("sound", "sequence", "speech", "synthetic")


@dataclass
class GateSet:
    """What the gate reads of every patch of a split's clips (embedding and log-mel frames), and
    what each clip is. The features are computed from these (:meth:`features`), so a new recipe
    of log-mel statistics needs no new embedding."""

    vectors: np.ndarray  # [shape=(patches, D), float32]
    spectra: np.ndarray  # [shape=(patches, n_mels, patch_frames), float16] dB, the first ``frames`` real
    frames: np.ndarray  # [shape=(patches,)]
    clip: np.ndarray  # [shape=(patches,)] the clip each patch belongs to
    label: np.ndarray  # [shape=(clips,)] 1 music, 0 not
    kind: np.ndarray  # [shape=(clips,)] str
    source: np.ndarray  # [shape=(clips,)] str
    condition: np.ndarray  # [shape=(clips,)] str
    frame_seconds: float = 1024 / 22050
    _x: np.ndarray | None = field(default=None, repr=False)

    @property
    def x(self) -> np.ndarray:
        """Gate features of every patch, as server.gate.patch_features makes them [shape=(patches, d)]."""
        if self._x is None:
            stats = [logmel_statistics(s[:, :n].astype(np.float32), self.frame_seconds)
                     for s, n in zip(self.spectra, self.frames)]
            self._x = np.concatenate([self.vectors, np.stack(stats)], axis=1)
        return self._x

    def clip_means(self) -> np.ndarray:
        """Each clip's mean feature row [shape=(clips, d)]."""
        sums = np.zeros((len(self.label), self.x.shape[1]))
        np.add.at(sums, self.clip, self.x)
        return (sums / np.bincount(self.clip, minlength=len(self.label))[:, None]).astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, **{k: v for k, v in asdict(self).items() if k != "_x"})

    @classmethod
    def load(cls, path: Path) -> "GateSet":
        with np.load(path, allow_pickle=False) as f:
            return cls(**{k: f[k][()] if f[k].ndim == 0 else f[k] for k in cls.__dataclass_fields__ if k != "_x"})


def embed_clips(clips: Iterable[GateClip], embedder, batch_patches: int = 512) -> GateSet:
    """Embed clips as queries are (padded, dense patches) and keep their gate features; silent
    or too short clips are left out, as a query would be refused."""
    cfg = embedder.features
    vectors, spectra, owner, meta, pending, skipped = [], [], [], [], [], 0

    def flush() -> None:
        vectors.append(embedder.embed_patches(np.concatenate([p for p, _, _ in pending])))
        for patches, offsets, S_db in pending:
            for s in patch_spectra(offsets, S_db, cfg):
                padded = np.zeros((cfg.n_mels, cfg.patch_frames), dtype=np.float16)
                padded[:, : s.shape[1]] = s
                spectra.append((padded, s.shape[1]))
            owner.append(np.full(len(patches), len(owner)))
        pending.clear()

    for clip in clips:
        try:
            patches, offsets, S_db = audio_to_patches_and_spectrogram(clip.samples, hop_frames=QUERY_HOP_FRAMES,
                                                                      cfg=cfg, pad=True)
        except AudioError:
            skipped += 1
            continue
        pending.append((patches, offsets, S_db))
        meta.append((clip.label, clip.kind, clip.source, clip.condition))
        if sum(len(p) for p, _, _ in pending) >= batch_patches:
            flush()
    if pending:
        flush()
    if skipped:
        log.info("gate data: %d silent or too short clips left out", skipped)
    label, kind, source, condition = (np.array(v) for v in zip(*meta))
    return GateSet(np.concatenate(vectors), np.stack([s for s, _ in spectra]), np.array([n for _, n in spectra]),
                   np.concatenate(owner), label.astype(np.int8), kind, source, condition, cfg.frame_seconds)


def cache_name(split: str, model_id: str, cfg: GateDataConfig, raw: Path | None) -> str:
    """The cache file of a split's embedded clips: the encoder, the data's recipe and settings."""
    recipe = json.dumps([DATA_VERSION, asdict(cfg), raw is not None], sort_keys=True)
    return f"{split}-{model_id.replace(':', '-')}-{hashlib.sha1(recipe.encode()).hexdigest()[:10]}.npz"


def build_features(corpus: Path, embedder, cfg: GateDataConfig, cache: Path | None = None,
                   raw: Path | None = None) -> dict[str, GateSet]:
    """The three splits' gate features, read from ``cache`` when there (else written there); ``raw``:
    the unpacked Debian packages whose short sounds join the non-music (:func:`.gate_data.gate_clips`)."""
    sets = {}
    for split in SPLITS:
        path = cache / cache_name(split, embedder.model_id, cfg, raw) if cache else None
        if path is not None and path.is_file():
            sets[split] = GateSet.load(path)
        else:
            sets[split] = embed_clips(gate_clips(corpus, split, cfg, raw), embedder)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                sets[split].save(path)
        log.info("gate %s: %d clips (%d music), %d patches", split, len(sets[split].label),
                 int(sets[split].label.sum()), len(sets[split].x))
    return sets


# -- models ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A model to try: which features, logistic regression or a one-hidden-layer MLP, regularisation."""

    name: str
    inputs: str  # "embedding", "logmel" or "both"
    hidden: int = 0  # 0: logistic regression
    c: float = 1.0  # logistic regression's inverse L2 strength
    weight_decay: float = 1e-3  # the MLP's
    epochs: int = 60
    cnn_epochs: int = 0  # > 0: a CNN on the patches' log-mel (server/gate_cnn.py) trained this long, averaged in

    def settings(self) -> str:
        """Its regularisation, as the report shows it."""
        dense = f"C={self.c:g}" if self.hidden == 0 else f"wd={self.weight_decay:g}"
        return dense + (f", CNN {self.cnn_epochs} epochs" if self.cnn_epochs else "")


CANDIDATES = (
    Candidate("logistic, embedding", "embedding", c=0.1),
    Candidate("logistic, log-mel statistics", "logmel", c=1.0),
    Candidate("logistic, embedding + log-mel", "both", c=0.01),
    Candidate("logistic, embedding + log-mel", "both", c=0.03),
    Candidate("logistic, embedding + log-mel", "both", c=0.1),
    Candidate("logistic, embedding + log-mel", "both", c=0.3),
    Candidate("MLP 32, embedding + log-mel", "both", hidden=32, weight_decay=1e-1, epochs=20),
    Candidate("MLP 64, embedding + log-mel", "both", hidden=64, weight_decay=1e-2, epochs=30),
    Candidate("logistic, embedding + log-mel, and a CNN on log-mel", "both", c=0.3, cnn_epochs=14),
)


def input_mask(inputs: str, d: int, dim: int) -> np.ndarray:
    """Which of the ``d`` feature columns a model reads (the first ``dim`` are the embedding)."""
    mask = np.zeros(d, dtype=bool)
    mask[:dim] = inputs in ("embedding", "both")
    mask[dim:] = inputs in ("logmel", "both")
    return mask


def sample_weights(label: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Music and non-music weigh the same in total; within non-music, each kind weighs the same."""
    w = np.zeros(len(label))
    w[label == 1] = 0.5 / max(1, (label == 1).sum())
    kinds = [k for k in NON_MUSIC_KINDS if (kind == k).any()]
    for k in kinds:
        w[kind == k] = 0.5 / len(kinds) / (kind == k).sum()
    return w * len(label)


def fit(candidate: Candidate, train: GateSet, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    """Standardisation (mean, scale) and layers of ``candidate`` trained on ``train``'s clips."""
    x, y = train.clip_means(), train.label.astype(np.float64)
    w = sample_weights(train.label, train.kind)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    mask = input_mask(candidate.inputs, x.shape[1], dim)
    z = ((x - mean) / scale)[:, mask]
    if candidate.hidden == 0:
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=candidate.c, max_iter=3000).fit(z, y, sample_weight=w)
        layers = [(lr.coef_.T.astype(np.float32), lr.intercept_.astype(np.float32))]
    else:
        layers = _fit_mlp(z, y, w, candidate, seed)
    first_w = np.zeros((len(mask), layers[0][0].shape[1]), dtype=np.float32)
    first_w[mask] = layers[0][0]  # columns the model does not read get zero weights
    return mean.astype(np.float32), scale.astype(np.float32), [(first_w, layers[0][1])] + layers[1:]


def _fit_mlp(z: np.ndarray, y: np.ndarray, w: np.ndarray, candidate: Candidate, seed: int) -> list:
    import torch

    with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator: seeded here, restored after
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(z.shape[1], candidate.hidden), torch.nn.ReLU(),
                                  torch.nn.Dropout(0.2), torch.nn.Linear(candidate.hidden, 1))
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=candidate.weight_decay)
        zt, yt, wt = (torch.tensor(a, dtype=torch.float32) for a in (z, y, w))
        for _ in range(candidate.epochs):
            net.train()
            for batch in torch.randperm(len(zt)).split(128):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(zt[batch])[:, 0], yt[batch],
                                                                            weight=wt[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
    net.eval()
    return [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in (net[0], net[3])]


def clip_probabilities(gate: Gate, data: GateSet) -> np.ndarray:
    """P(music) of every clip as the gate judges it: the mean over its patches, averaged with the
    CNN's mean where the gate has one (as Gate.music_probability) [shape=(clips,)]."""
    n = len(data.label)
    per_clip = lambda p: np.bincount(data.clip, weights=p, minlength=n) / np.bincount(data.clip, minlength=n)
    dense = per_clip(0.5 * (1.0 + np.tanh(0.5 * gate.logits(data.x))))
    return dense if gate.cnn is None else 0.5 * (dense + per_clip(gate.cnn.probabilities(cnn_inputs(data))))


def cnn_inputs(data: GateSet) -> np.ndarray:
    """Every patch of ``data`` as the gate's CNN reads it."""
    return cnn_input([s[:, :n] for s, n in zip(data.spectra, data.frames)], data.spectra.shape[2])


def fit_cnn(train: GateSet, epochs: int, seed: int = 0) -> GateCNN:
    """The gate's CNN trained on ``train``'s patches; a clip's weight (:func:`sample_weights`) is
    shared among its patches."""
    w = sample_weights(train.label, train.kind)
    patches = np.bincount(train.clip)
    w_patch = w[train.clip] / patches[train.clip]
    return GateCNN(train_cnn(cnn_inputs(train), train.label[train.clip], w_patch * len(w_patch) / w_patch.sum(),
                             epochs=epochs, seed=seed))


def floor_gap(p: np.ndarray, data: GateSet, threshold: float) -> float:
    """How far ``threshold`` leaves these clips from the gate's two floors, each as a multiple of its
    allowance: the larger of (music clips called non-music) / TARGET_MUSIC_MISS and (1 − accuracy)
    / (1 − TARGET_ACCURACY), accuracy over music, single sounds and sequences as the test reports it.
    1 or less: both floors met."""
    music = p >= threshold
    is_music = data.label == 1
    counted = is_music | np.isin(data.kind, ("sound", "sequence"))
    missed = float((~music[is_music]).mean())
    wrong = float((music != is_music)[counted].mean())
    return max(missed / TARGET_MUSIC_MISS, wrong / (1.0 - TARGET_ACCURACY))


def choose_threshold(p: np.ndarray, data: GateSet) -> float:
    """The threshold (on a 0.005 grid) closest to meeting both floors on ``data``: the lowest that
    minimises :func:`floor_gap`. Neither floor is given up for the other: music called non-music
    and wrong answers count each against its own allowance."""
    gaps = [(floor_gap(p, data, t), t) for t in THRESHOLDS]
    return float(min(gaps)[1])


def score(p: np.ndarray, data: GateSet, threshold: float) -> dict:
    """Accuracies at ``threshold``: music, each non-music kind, and balanced (music against the
    mean over non-music kinds)."""
    right = (p >= threshold) == (data.label == 1)
    out = {"music": float(right[data.label == 1].mean())}
    for k in NON_MUSIC_KINDS:
        if (data.kind == k).any():
            out[k] = float(right[data.kind == k].mean())
    out["balanced"] = 0.5 * out["music"] + 0.5 * float(np.mean([out[k] for k in NON_MUSIC_KINDS if k in out]))
    return out


@dataclass
class Selection:
    gate: Gate
    candidate: Candidate
    rows: list[tuple[Candidate, float, dict]] = field(default_factory=list)  # every candidate: threshold, val scores


def score_error(scores: dict, data: GateSet) -> float:
    """The standard error of :func:`score`'s balanced score (binomial, clips taken as independent)."""
    var_music = scores["music"] * (1 - scores["music"]) / max(1, (data.label == 1).sum())
    kinds = [k for k in NON_MUSIC_KINDS if k in scores]
    var_other = sum(scores[k] * (1 - scores[k]) / (data.kind == k).sum() for k in kinds) / len(kinds) ** 2
    return 0.5 * float(np.sqrt(var_music + var_other))


def select(sets: dict[str, GateSet], model_id: str, features, dim: int, candidates=CANDIDATES) -> Selection:
    """Fit every candidate on train and set its threshold on val; keep the smallest model (fewest
    weights; then the higher score) whose balanced val score is within one standard error of the
    best: closer scores than that are noise of the val split (and of an MLP's seed)."""
    fitted, rows = [], []
    for candidate in candidates:
        mean, scale, layers = fit(candidate, sets["train"], dim)
        cnn = fit_cnn(sets["train"], candidate.cnn_epochs) if candidate.cnn_epochs else None
        gate = Gate(model_id, 0.5, mean, scale, tuple(layers), features, cnn=cnn)
        p = clip_probabilities(gate, sets["val"])
        threshold = choose_threshold(p, sets["val"])
        scores = score(p, sets["val"], threshold)
        scores["floor_gap"] = floor_gap(p, sets["val"], threshold)
        rows.append((candidate, threshold, scores))
        log.info("%s (C %g, wd %g): threshold %.3f, val %s", candidate.name, candidate.c, candidate.weight_decay,
                 threshold, {k: round(v, 4) for k, v in scores.items()})
        fitted.append((candidate, Gate(model_id, threshold, mean, scale, tuple(layers), features, cnn=cnn), scores))
    top = max(fitted, key=lambda f: f[2]["balanced"])
    bar = top[2]["balanced"] - score_error(top[2], sets["val"])
    near = [f for f in fitted if f[2]["balanced"] >= bar]
    kept = min(near, key=lambda f: (f[1].weight_count, -f[2]["balanced"]))
    return Selection(kept[1], kept[0], rows)
