"""Audio → patch embeddings: the one place where features meet the network."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import LoadedModel
from .features import FeatureConfig, audio_to_patches_and_spectrogram
from .landmarks import Landmarks, landmarks as peak_pairs_of
from .query_encoder import QueryEncoder, short_patches
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
    # the query encoder's vectors [shape=(q, D)] and where each query patch starts in the clip
    # (encoder/query_encoder.py): partial patches of a clip shorter than a patch (offsets ≤ 0), or the
    # same patches as ``vectors`` where the query encoder reads whole patches too; None without one
    query: tuple[np.ndarray, np.ndarray] | None = None
    # the audio's peak pairs (encoder/landmarks.py): stored with a song, searched for a clip; None
    # where the embedder was asked for none
    landmarks: Landmarks | None = None

    def __len__(self) -> int:
        return len(self.vectors)

    def search_view(self) -> tuple[np.ndarray, np.ndarray]:
        """The vectors identification searches with, and their offsets in the clip: the query encoder's
        where one fits the encoder, else the fingerprints."""
        return self.query if self.query is not None else (self.vectors, self.offsets_s)


class Embedder:
    """Runs a loaded model over patches in batches, on CPU (or CUDA when asked)."""

    def __init__(self, model: LoadedModel, *, style: StyleModel | None = None, query: QueryEncoder | None = None,
                 batch_size: int = 128, device: str = "cpu", landmarks: bool = False):
        self.model_id = model.model_id
        self.landmarks = landmarks  # also compute the audio's landmarks (encoder/landmarks.py)
        self.style = style  # the style head on the same trunk, or None
        self.query = query  # the query encoder (encoder/query_encoder.py), or None: queries search with fingerprints
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

    def embed_audio(self, y: np.ndarray, *, hop_frames: int, pad: bool = False, landmarks: bool = True) -> Embeddings:
        """Mono audio at the feature rate → embeddings of its non-silent patches (fingerprint, and style
        where the embedder has a style head), their offsets and the audio's log-mel spectrogram."""
        patches, offsets, S_db = audio_to_patches_and_spectrogram(y, hop_frames=hop_frames, cfg=self.features, pad=pad)
        query = self.embed_query(patches, offsets, S_db) if pad else None
        # landmarks where the embedder keeps them, unless this call does without (monitor windows)
        peak_pairs = peak_pairs_of(y, self.features.sample_rate) if self.landmarks and landmarks else None
        if self.style is None:
            return Embeddings(self.embed_patches(patches), offsets, S_db, query=query, landmarks=peak_pairs)
        vectors, style = self.embed_patches_with_style(patches, every=max(1, STYLE_HOP_FRAMES // hop_frames))
        return Embeddings(vectors, offsets, S_db, style, query, peak_pairs)

    def embed_query(self, patches: np.ndarray, offsets_s: np.ndarray, S_db: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The query encoder's vectors and offsets of a clip: partial patches when the clip (its log-mel
        ``S_db``) is shorter than a patch, else its whole ``patches`` if the encoder reads them; None otherwise."""
        if self.query is None:
            return None
        if S_db.shape[1] < self.features.patch_frames:
            partial, starts = short_patches(S_db, self.features)
            return self.query.embed(partial), starts
        return (self.query.embed(patches), offsets_s) if self.query.whole_patches else None
