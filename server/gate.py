"""The music / non-music gate: is a clip (or a file being added) music at all?

A small classifier over what the encoder already computes for a clip: each patch's embedding
and a few statistics of that patch's log-mel (:func:`patch_features`). Every patch (≈3 s) gets
a probability of being music; a clip's probability is their mean, so a 3-s query and a whole
file are judged the same way. A gate may also hold a small CNN over the patches' log-mel
(:mod:`.gate_cnn`), whose mean probability is averaged with the dense layers'. Loading the gate
costs no start-up: the dense layers are numpy, the CNN is built with torch on first use.

The shipped gate (``encoder/weights/gate.safetensors``, trained by ``scripts/train_gate.py``)
belongs to the encoder whose ``model_id`` it records: its features are that encoder's
embeddings. For any other encoder :func:`gate_for` gives None, and answers say ``"music": null``.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneprint.encoder.features import FeatureConfig
from tuneprint.errors import CheckpointError, MismatchError

from .gate_cnn import FLOOR_DB, GateCNN, cnn_input

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: may hold a CNN (server/gate_cnn.py) whose probability is averaged in
READS_FORMATS = ("1", "2")
FEATURES_VERSION = "embedding+logmel-v1"  # what patch_features computes; a gate records the recipe it learnt on
DEFAULT_GATE = Path(__file__).resolve().parents[1] / "encoder" / "weights" / "gate.safetensors"
POOLED_BANDS = 16  # the band profile is averaged into this many bands
LAG_S = (0.2, 1.5)  # beat periods looked for in the onset envelope
GROUPS = 4  # band groups whose envelopes' modulation and beats are described
MODULATION_HZ = ((0.25, 1.5), (1.5, 4.0), (4.0, 11.0))  # phrases and slow swells, beats and syllables, fast flutter
N_STATISTICS = 2 * POOLED_BANDS + 10 + GROUPS * (len(MODULATION_HZ) + 1) + 2
KEEP_HINT = "add --allow-non-music to keep it"  # how a refused file is kept anyway (the HTTP API says its own)


def logmel_statistics(patch_db: np.ndarray, frame_seconds: float) -> np.ndarray:
    """Cheap descriptors of one patch's dB log-mel that music and noise differ in.

    Parameters
    ----------
    patch_db : np.ndarray [shape=(n_mels, frames)], dB; at least 2 frames
    frame_seconds : seconds between frames

    Returns
    -------
    stats : np.ndarray [shape=(N_STATISTICS,), dtype=float32], all relative to the patch's peak
        (volume does not count): the band profile and each band's spread over time; the spread and
        range of frame loudness; onset strength (positive spectral flux) and its spread; spectral
        flatness; frame-to-frame and 1-s spectral similarity; the share of near-silent frames;
        for 4 groups of bands, how their envelopes' modulation splits between 0.25–1.5, 1.5–4 and
        4–11 Hz and how periodic their onsets are (beats); and how steady the strongest low band
        is from frame to frame, and how far it stands out (held pitches).
    """
    rel = np.maximum(patch_db - patch_db.max(), FLOOR_DB).astype(np.float64)
    n_mels, frames = rel.shape
    bands = rel.reshape(POOLED_BANDS, n_mels // POOLED_BANDS, frames).mean(axis=1)  # [bands, frames]
    power = 10.0 ** (rel / 10.0)
    loudness = 10.0 * np.log10(power.sum(axis=0) + 1e-12)
    rises = np.maximum(np.diff(rel, axis=1), 0.0)  # [n_mels, frames - 1]
    flux = rises.mean(axis=0)
    flatness = np.exp(np.log(power + 1e-12).mean(axis=0)) / (power.mean(axis=0) + 1e-12)
    unit = power / (np.linalg.norm(power, axis=0, keepdims=True) + 1e-12)
    second = max(1, min(frames - 1, int(round(1.0 / frame_seconds))))
    groups = rel.reshape(GROUPS, n_mels // GROUPS, frames).mean(axis=1)
    group_rises = rises.reshape(GROUPS, n_mels // GROUPS, frames - 1).mean(axis=1)
    low = rel[: n_mels * 3 // 8]  # the bands below ≈1.2 kHz, where the mel bands resolve pitches
    peak = low.argmax(axis=0)
    stats = [bands.mean(axis=1) / -FLOOR_DB, bands.std(axis=1) / 20.0,
             [loudness.std() / 10.0, (loudness.max() - loudness.min()) / 40.0, flux.mean() / 5.0, flux.std() / 5.0,
              _periodicity(flux, frame_seconds), flatness.mean(), flatness.std(),
              float((unit[:, 1:] * unit[:, :-1]).sum(axis=0).mean()),
              float((unit[:, second:] * unit[:, :-second]).sum(axis=0).mean()),
              float((loudness < loudness.max() - 40.0).mean())],
             np.ravel([_modulation(g, frame_seconds) for g in groups]),
             [_periodicity(r, frame_seconds) for r in group_rises],
             [float((np.abs(np.diff(peak)) <= 1).mean()) if frames > 1 else 0.0,
              float((low.max(axis=0) - low.mean(axis=0)).mean() / 20.0)]]
    return np.concatenate([np.ravel(s) for s in stats]).astype(np.float32)


def _periodicity(flux: np.ndarray, frame_seconds: float) -> float:
    """Best normalised autocorrelation of an onset envelope over beat-like lags (0 when flat)."""
    x = flux - flux.mean()
    energy = float((x * x).sum())
    lo, hi = (max(1, int(round(s / frame_seconds))) for s in LAG_S)
    if energy <= 1e-12 or hi >= len(x):
        return 0.0
    return float(max((x[lag:] * x[:-lag]).sum() / energy for lag in range(lo, hi + 1)))


def _modulation(envelope: np.ndarray, frame_seconds: float) -> list[float]:
    """Shares of an envelope's modulation power in MODULATION_HZ's ranges (zeros when too short or flat)."""
    if len(envelope) < 8:
        return [0.0] * len(MODULATION_HZ)
    x = (envelope - envelope.mean()) * np.hanning(len(envelope))
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    hz = np.fft.rfftfreq(len(x), frame_seconds)
    total = spectrum[1:].sum()
    if total <= 1e-12:
        return [0.0] * len(MODULATION_HZ)
    return [float(spectrum[(hz >= lo) & (hz < hi)].sum() / total) for lo, hi in MODULATION_HZ]


def patch_spectra(offsets_s: np.ndarray, S_db: np.ndarray, cfg: FeatureConfig) -> list[np.ndarray]:
    """The dB log-mel frames of the patches starting at ``offsets_s`` in the spectrogram ``S_db``:
    [shape=(n_mels, ≤ patch_frames)] each (a padded clip's last patch runs past its audio)."""
    starts = np.rint(np.asarray(offsets_s, dtype=np.float64) / cfg.frame_seconds).astype(int)
    starts = np.clip(starts, 0, max(S_db.shape[1] - 2, 0))
    return [S_db[:, start : start + cfg.patch_frames] for start in starts]


def patch_features(emb, cfg: FeatureConfig) -> np.ndarray:
    """One feature row per patch of ``emb``: the patch's embedding followed by
    :func:`logmel_statistics` of its frames.

    Returns
    -------
    x : np.ndarray [shape=(p, D + N_STATISTICS), dtype=float32]
    """
    if emb.spectrogram is None:
        raise ValueError("the gate needs the clip's log-mel spectrogram (Embeddings.spectrogram)")
    stats = [logmel_statistics(s, cfg.frame_seconds) for s in patch_spectra(emb.offsets_s, emb.spectrogram, cfg)]
    return np.concatenate([np.asarray(emb.vectors, dtype=np.float32), np.stack(stats)], axis=1)


@dataclass(frozen=True)
class Gate:
    """A trained gate: standardisation, then dense layers with ReLU between, then a sigmoid."""

    model_id: str  # the encoder whose embeddings it reads
    threshold: float  # a clip is music when its mean patch probability reaches this
    mean: np.ndarray  # [shape=(d,)]
    scale: np.ndarray  # [shape=(d,)]
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (weights [in, out], bias [out]); the last has out = 1
    features: FeatureConfig
    meta: dict = field(default_factory=dict)  # model kind, training provenance, validation figures
    cnn: GateCNN | None = None  # a second opinion from the patches' log-mel, averaged in
    cnn_patches: int = 64  # the most patches of one file the CNN reads (evenly spaced): a whole song costs little

    @property
    def weight_count(self) -> int:
        return sum(w.size + b.size for w, b in self.layers) + (self.cnn.weight_count if self.cnn else 0)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Feature rows [shape=(n, d)] → music logits [shape=(n,)]."""
        h = (np.asarray(x, dtype=np.float32) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def patch_probabilities(self, emb) -> np.ndarray:
        """P(music) of every patch of ``emb`` by the dense layers [shape=(p,)]."""
        z = self.logits(patch_features(emb, self.features))
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without exp's overflow

    def cnn_probability(self, emb) -> float:
        """The CNN's mean P(music) over (at most ``cnn_patches`` evenly spaced) patches of ``emb``."""
        n = len(emb.offsets_s)
        picked = np.unique(np.linspace(0, n - 1, min(n, self.cnn_patches)).round().astype(int))
        spectra = patch_spectra(np.asarray(emb.offsets_s)[picked], emb.spectrogram, self.features)
        return float(self.cnn.probabilities(cnn_input(spectra, self.features.patch_frames)).mean())

    def music_probability(self, emb) -> float:
        """P(music) of a clip or a file: the mean over its patches, averaged with the CNN's where there is one."""
        p = float(self.patch_probabilities(emb).mean())
        return p if self.cnn is None else 0.5 * (p + self.cnn_probability(emb))

    def is_music(self, emb) -> bool:
        return self.music_probability(emb) >= self.threshold


def save_gate(path: str | os.PathLike, gate: Gate) -> Path:
    """Write ``gate`` as safetensors (float32 arrays, settings and provenance in the metadata)."""
    from safetensors.numpy import save_file

    tensors = {"mean": gate.mean, "scale": gate.scale}
    for i, (w, b) in enumerate(gate.layers):
        tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"] = w, b
    tensors.update({f"cnn.{k}": v for k, v in (gate.cnn.state.items() if gate.cnn else ())})
    meta = {"format_version": str(FORMAT_VERSION), "features_version": FEATURES_VERSION, "model_id": gate.model_id,
            "threshold": repr(float(gate.threshold)), "feature_config": json.dumps(gate.features.to_dict()),
            "meta": json.dumps(gate.meta), "cnn_patches": str(gate.cnn_patches)}
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # shipped with the package: readable by everyone
    os.replace(tmp, path)
    return path


def load_gate(path: str | os.PathLike = DEFAULT_GATE, model_id: str | None = None) -> Gate:
    """Read a gate; with ``model_id``, refuse one trained on another encoder (MismatchError)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable gate file ({e})") from e
    if meta.get("format_version") not in READS_FORMATS or meta.get("features_version") != FEATURES_VERSION:
        raise CheckpointError(f"{path}: gate format {meta.get('format_version')!r} / features "
                              f"{meta.get('features_version')!r}; this tuneprint reads "
                              f"{FORMAT_VERSION} / {FEATURES_VERSION}")
    if model_id is not None and meta.get("model_id") != model_id:
        raise MismatchError(f"{path}: the gate was trained on encoder {meta.get('model_id')}, not {model_id}; "
                            "train one for this encoder with scripts/train_gate.py")
    n = sum(k.startswith("layer") and k.endswith(".weight") for k in tensors)
    layers = tuple((tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"]) for i in range(n))
    cnn = {k[len("cnn."):]: v for k, v in tensors.items() if k.startswith("cnn.")}
    return Gate(meta["model_id"], float(meta["threshold"]), tensors["mean"], tensors["scale"], layers,
                FeatureConfig(**json.loads(meta["feature_config"])), json.loads(meta.get("meta", "{}")),
                GateCNN(cnn) if cnn else None, int(meta.get("cnn_patches", 64)))


def gate_for(model_id: str | None, path: str | os.PathLike = DEFAULT_GATE) -> Gate | None:
    """The gate for the encoder ``model_id``, or None where none fits (answers then say ``"music": null``)."""
    if model_id is None or not Path(path).is_file():
        return None
    try:
        return load_gate(path, model_id)
    except MismatchError as e:
        log.info("no music gate for this encoder: %s", e)
        return None


def music_verdict(gate: Gate | None, emb) -> tuple[bool | None, float | None]:
    """(is it music, P(music)) of ``emb`` by ``gate``; (None, None) without a gate."""
    if gate is None:
        return None, None
    p = gate.music_probability(emb)
    return p >= gate.threshold, p


def add_refusal(gate: Gate | None, path: str, emb) -> str | None:
    """Why ``add`` refuses the file at ``path`` (its embeddings ``emb``): not music by ``gate``; else None."""
    music, p = music_verdict(gate, emb)
    return f"{path}: not music (gate p={p:.2f}); {KEEP_HINT}" if music is False else None
