"""Audio → patch embeddings: the one place where features meet the network."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import LoadedModel
from .features import FeatureConfig, audio_to_patches_and_spectrogram
from .short import ShortModel, short_patches
from .style import STYLE_HOP_FRAMES, StyleModel, trunk_forward

log = logging.getLogger(__name__)


@dataclass
class Embeddings:
    vectors: np.ndarray  # [shape=(p, D), dtype=float32], unit norm
    offsets_s: np.ndarray  # [shape=(p,), dtype=float32], start of each patch in the audio
    # [shape=(n_mels, frames)] dB log-mel of the whole audio, for verification (index/verify.py)
    spectrogram: np.ndarray | None = None
    # [shape=(p', d_style), dtype=float32] unit-norm style vectors of every few patches, ≈1.5 s apart
    # (encoder/style.py); None when the embedder has no style head
    style: np.ndarray | None = None
    # a clip shorter than a patch: the short-clip encoder's query vectors [shape=(q, D)] and where each
    # query patch starts relative to the clip (≤ 0) (encoder/short.py); None for clips of a patch or more
    short: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.vectors)

    def search_view(self) -> tuple[np.ndarray, np.ndarray]:
        """The vectors identification searches with, and their offsets in the clip: the short-clip
        encoder's for a clip shorter than a patch (when one fits the encoder), else the fingerprints."""
        return self.short if self.short is not None else (self.vectors, self.offsets_s)


class Embedder:
    """Runs a loaded model over patches in batches, on CPU (or CUDA when asked)."""

    def __init__(self, model: LoadedModel, *, style: StyleModel | None = None, short: ShortModel | None = None,
                 batch_size: int = 128, device: str = "cpu"):
        self.model_id = model.model_id
        self.style = style  # the style head on the same trunk, or None
        self.short = short  # the query encoder of clips shorter than a patch, or None (they are padded)
        self.features: FeatureConfig = model.features
        self.dim = model.net.cfg.embedding_dim
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.net = model.net.to(self.device).eval().to(memory_format=torch.channels_last)

    def embed_patches(self, patches: np.ndarray) -> np.ndarray:
        """Patches [shape=(p, n_mels, frames)] → unit-norm embeddings [shape=(p, D), float32]."""
        return self._forward(patches, every=0)[0]

    def fingerprints_and_statistics(self, patches: np.ndarray, every: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Patches → (unit-norm fingerprints [p, D], trunk statistics [ceil(p / every), S]) in one trunk
        pass (encoder/style.py); statistics of every ``every``-th patch (the first always)."""
        return self._forward(patches, every)

    def embed_patches_with_style(self, patches: np.ndarray, every: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Patches → (unit-norm fingerprints [p, D], unit-norm style vectors [ceil(p / every), d_style])."""
        vectors, stats = self._forward(patches, every)
        return vectors, self.style.vectors(stats)

    def _forward(self, patches: np.ndarray, every: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The network over ``patches`` in batches; ``every`` 0: fingerprints only (no statistics)."""
        out = np.empty((len(patches), self.dim), dtype=np.float32)
        stats = []
        with torch.inference_mode():
            for i in range(0, len(patches), self.batch_size):
                x = torch.from_numpy(patches[i : i + self.batch_size]).unsqueeze(1).to(self.device)
                x = x.contiguous(memory_format=torch.channels_last)
                if every:
                    e, s = trunk_forward(self.net, x, torch.arange((-i) % every, len(x), every, device=self.device))
                    stats.append(s.float().cpu().numpy())
                else:
                    e = self.net.embed(x)
                out[i : i + len(x)] = e.float().cpu().numpy()
        return out, (np.concatenate(stats) if stats else None)

    def embed_audio(self, y: np.ndarray, *, hop_frames: int, pad: bool = False) -> Embeddings:
        """Mono audio at the feature rate → embeddings of its non-silent patches (fingerprint, and style
        where the embedder has a style head), their offsets and the audio's log-mel spectrogram."""
        patches, offsets, S_db = audio_to_patches_and_spectrogram(y, hop_frames=hop_frames, cfg=self.features, pad=pad)
        short = self.embed_short(S_db) if pad else None
        if self.style is None:
            return Embeddings(self.embed_patches(patches), offsets, S_db, short=short)
        vectors, style = self.embed_patches_with_style(patches, every=max(1, STYLE_HOP_FRAMES // hop_frames))
        return Embeddings(vectors, offsets, S_db, style, short)

    def embed_short(self, S_db: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The short-clip encoder's query vectors and offsets of a clip shorter than a patch (its log-mel
        ``S_db``), or None for a longer clip or where no short-clip encoder fits."""
        if self.short is None or S_db.shape[1] >= self.features.patch_frames:
            return None
        patches, offsets = short_patches(S_db, self.features)
        return self.short.embed(patches), offsets
