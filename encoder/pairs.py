"""Training pairs made on the CPU from decoded audio: the view source of :func:`encoder.training.fit`.

Each example is one moment of a track seen twice: a clean patch (the *anchor*, what the index
stores) and a degraded view of the same moment, shifted by up to ``shift_s`` (what a phone in a
room hears), made with the waveform degradations of :mod:`encoder.augment`. The other view
source, :class:`encoder.mel_views.MelPairs`, makes its views on the device from packed log-mel.
Also here: in-batch retrieval, how often a network finds each view's own anchor among a batch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator, Iterator, Sequence

import numpy as np
import torch

from tuneprint.errors import AudioError, TuneprintError
from .audio import load_audio
from .augment import DegradeConfig, degrade, mask_spectrogram, pick_noise
from .features import FeatureConfig, log_mel, normalize_patch
from .model import EncoderNet

log = logging.getLogger(__name__)


@dataclass
class Track:
    samples: np.ndarray  # mono float32 at the feature rate
    label: int  # index into the label list, -1 when unlabelled


def load_tracks(items: Sequence[tuple[str, str | None]], features: FeatureConfig, labels: list[str],
                progress: Callable[[int, int], None] | None = None) -> list[Track]:
    """Decode (path, label) pairs; labels map to positions in ``labels`` (-1 if absent)."""
    tracks = []
    for i, (path, label) in enumerate(items):
        try:
            y = load_audio(path, sr=features.sample_rate, min_seconds=features.patch_seconds + 1.0)
        except AudioError as e:
            log.warning("skipping %s", e)
            continue
        tracks.append(Track(y, labels.index(label) if label in labels else -1))
        if progress:
            progress(i + 1, len(items))
    return tracks


def noise_files(bank: Path, extra: Sequence[Path] = (), share: float = 0.25) -> list[str]:
    """The bank folder's files, plus the ``extra`` folders' files repeated so that they make up
    about ``share`` of the draws (the sampler draws files uniformly)."""
    paths = sorted(str(f) for f in bank.iterdir())
    more = sorted(str(f) for folder in extra for f in folder.iterdir())
    if not more:
        return paths
    repeat = max(1, round(share / (1 - share) * len(paths) / len(more)))
    log.info("%d bank noises + %d extra × %d (%.0f %% of draws)", len(paths), len(more), repeat,
             100 * repeat * len(more) / (len(paths) + repeat * len(more)))
    return paths + more * repeat


class PairSampler:
    """Draws (clean anchor, degraded view, label) examples from tracks, weighted by length.

    ``shift_s`` is how far the view may start from its anchor; ``degrade`` the waveform
    degradations; ``noises`` the recorded noises they mix in.
    """

    def __init__(self, tracks: list[Track], features: FeatureConfig, *, shift_s: float = 0.2,
                 degrade: DegradeConfig = DegradeConfig(), noises: list[np.ndarray] | None = None):
        if not tracks:
            raise TuneprintError("no usable training tracks")
        self.tracks, self.features, self.degrade, self.noises = tracks, features, degrade, noises or []
        lengths = np.array([len(t.samples) for t in tracks], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        f = features
        self.margin = 2 * f.hop_length  # context either side, so patch edges see real audio
        self.span = (f.patch_frames - 1) * f.hop_length + 2 * self.margin
        self.shift = int(shift_s * f.sample_rate)

    def _patch(self, segment: np.ndarray) -> np.ndarray:
        frames = self.margin // self.features.hop_length
        S = log_mel(segment, self.features)[:, frames : frames + self.features.patch_frames]
        return normalize_patch(S, self.features)

    def example(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        track = self.tracks[rng.choice(len(self.tracks), p=self.weights)]
        y = track.samples
        lo, hi = self.shift, len(y) - self.span - self.shift
        start = int(rng.integers(lo, max(lo + 1, hi)))
        anchor = self._patch(y[start : start + self.span])
        moved = start + int(rng.integers(-self.shift, self.shift + 1))
        view = degrade(y[moved : moved + self.span], self.features.sample_rate, rng, self.noises, self.degrade,
                       music=self._other_song(rng, track))
        view = mask_spectrogram(self._patch(view), rng, p=0.3)
        return anchor, view, track.label

    def _other_song(self, rng: np.random.Generator, track: Track) -> np.ndarray | None:
        """A random stretch of another training song, as interference (only drawn when that is on)."""
        if not self.degrade.p_music_noise or len(self.tracks) < 2:
            return None
        others = [t.samples for t in self.tracks if t is not track]
        return pick_noise(self.span + 2 * self.shift, rng, others)  # longer than the view: room for a speed change

    def batch(self, rng: np.random.Generator, size: int) -> dict[str, torch.Tensor]:
        """``anchor`` and ``view`` [shape=(size, 1, n_mels, patch_frames)] and ``label`` [shape=(size,)]."""
        anchors, views, labels = zip(*(self.example(rng) for _ in range(size)))
        return {"anchor": torch.from_numpy(np.stack(anchors)).unsqueeze(1),
                "view": torch.from_numpy(np.stack(views)).unsqueeze(1),
                "label": torch.tensor(labels, dtype=torch.long)}

    # -- the view-source interface of encoder.training.fit -------------------------------------
    def fixed_batch(self, size: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
        """One batch drawn from ``seed``, on ``device`` (the validation pairs)."""
        return {k: v.to(device) for k, v in self.batch(np.random.default_rng(seed), size).items()}

    def stream(self, batch_size: int, device: torch.device, seed: int) -> Generator[dict[str, torch.Tensor], None, None]:
        """Endless batches, made in a worker process so that augmentation overlaps the network's step."""
        loader = torch.utils.data.DataLoader(_BatchStream(self, batch_size, seed), batch_size=None, num_workers=1,
                                             persistent_workers=False)
        for batch in loader:
            yield {k: v.to(device) for k, v in batch.items()}


class _BatchStream(torch.utils.data.IterableDataset):
    def __init__(self, sampler: PairSampler, batch_size: int, seed: int):
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        while True:
            yield self.sampler.batch(rng, self.batch_size)


# -- in-batch retrieval: how well a network finds each view's own anchor ----------------------
def retrieval_top1(net: EncoderNet, batch: dict[str, torch.Tensor]) -> float:
    """Share of degraded views whose nearest clean anchor (among the batch) is their own."""
    with torch.no_grad():
        return in_batch_top1(net.embed(batch["anchor"]), net.embed(batch["view"]))


def in_batch_top1(anchors: torch.Tensor, views: torch.Tensor) -> float:
    """Share of ``views[i]`` whose most similar row of ``anchors`` is ``anchors[i]`` (unit vectors)."""
    return float((torch.argmax(views @ anchors.T, dim=1) == torch.arange(len(views), device=views.device)).float().mean())


def view_retrieval(nets: dict[str, EncoderNet], tracks: Sequence[Track], features: FeatureConfig,
                   noise_folders: Sequence[Path], *, degrade: DegradeConfig, pairs: int, seed: int) -> Iterator[tuple[str, dict[str, float]]]:
    """For each noise folder: the in-batch top-1 of every net on the same ``pairs`` waveform views of
    ``tracks`` (each view's nearest clean patch among the batch must be its own)."""
    for folder in noise_folders:
        noises = [load_audio(str(f), sr=features.sample_rate) for f in sorted(folder.iterdir())]
        batch = PairSampler(list(tracks), features, degrade=degrade, noises=noises).batch(np.random.default_rng(seed), pairs)
        yield folder.name, {name: round(retrieval_top1(net, batch), 4) for name, net in nets.items()}
