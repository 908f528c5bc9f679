"""A CNN trained from scratch on the library's own spectrograms: the "network trained on the
user's data" to compare with heads over the encoder's embeddings.

Two parallel pipelines read the same spectrogram segment: one with kernels long in time
(rhythm, onsets), one with kernels tall in frequency (timbre, chords); each is one
convolution block ("shallow") or four ("deep"), pooled over what is left of time and
frequency, then joined by a dense layer. One trunk serves both outputs: the label logits
(softmax) and the tag logits (sigmoid), so the network is trained once. The input is first
averaged to half its resolution in time and frequency: four times less work, and lower
resolution is known not to cost small CNNs on mel-spectrograms accuracy.

    IN [1, bins, frames] >> AvgPool(2) >> {time: [Conv(3×9) BN LeakyReLU MaxPool]×n | freq: [Conv(9×3) …]×n}
       >> [avg ‖ max pool] >> Dropout >> Dense(hidden) >> LeakyReLU >> Dense(labels + tags)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

CHANNELS = {"shallow": (16,), "deep": (16, 32, 48, 64)}


def _pipeline(kernel: tuple[int, int], channels: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = 1
    for c in channels:
        pad = (kernel[0] // 2, kernel[1] // 2)
        layers += [nn.Conv2d(width, c, kernel, padding=pad), nn.BatchNorm2d(c), nn.LeakyReLU(0.1),
                   nn.MaxPool2d(2, ceil_mode=True)]
        width = c
    return nn.Sequential(*layers)


class SegmentCNN(nn.Module):
    """Spectrogram segments [shape=(n, bins, frames)] → logits [shape=(n, n_labels + n_tags)]."""

    def __init__(self, n_labels: int, n_tags: int, network: str = "shallow", hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        channels = CHANNELS[network]
        self.n_labels, self.n_tags = n_labels, n_tags
        self.reduce = nn.AvgPool2d(2, ceil_mode=True)
        self.time = _pipeline((3, 9), channels)
        self.freq = _pipeline((9, 3), channels)
        self.top = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * channels[-1], hidden), nn.LeakyReLU(0.1),
                                 nn.Linear(hidden, n_labels + n_tags))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x.unsqueeze(1))
        t, f = self.time(x), self.freq(x)
        pooled = [t.mean(dim=(2, 3)), t.amax(dim=(2, 3)), f.mean(dim=(2, 3)), f.amax(dim=(2, 3))]
        return self.top(torch.cat(pooled, dim=1))


class JointLoss(nn.Module):
    """Cross-entropy over the labels plus binary cross-entropy over the tags, the latter only for
    segments of tracks that carry tags (targets: [label shares | tags | has-tags mask])."""

    def __init__(self, n_labels: int, n_tags: int, label_weights: np.ndarray | None,
                 tag_pos_weights: np.ndarray | None):
        super().__init__()
        self.n_labels, self.n_tags = n_labels, n_tags
        self.w = torch.from_numpy(label_weights) if label_weights is not None else None
        pos = torch.from_numpy(tag_pos_weights) if tag_pos_weights is not None else None
        self.bce = nn.BCEWithLogitsLoss(reduction="none", pos_weight=pos)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        L, T = self.n_labels, self.n_tags
        per = -(target[:, :L] * torch.log_softmax(logits[:, :L], dim=1))
        loss = (per * self.w if self.w is not None else per).sum(dim=1).mean()
        if T:
            mask = target[:, L + T]
            tag_loss = self.bce(logits[:, L:], target[:, L : L + T]).mean(dim=1)
            loss = loss + (tag_loss * mask).sum() / torch.clamp(mask.sum(), min=1.0)
        return loss


def segment_batch(rows: np.ndarray) -> torch.Tensor:
    """Stored (float16) segments → the network's float32 input."""
    return torch.from_numpy(np.asarray(rows, dtype=np.float32))


def predict_joint(net: SegmentCNN, x: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Label softmax [shape=(n, labels)] and tag sigmoids [shape=(n, tags)] of segments ``x``."""
    labels, tags = [], []
    net.eval()
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            logits = net(segment_batch(x[i : i + batch_size]))
            labels.append(torch.softmax(logits[:, : net.n_labels], dim=1).numpy())
            tags.append(torch.sigmoid(logits[:, net.n_labels :]).numpy())
    if not labels:
        return np.zeros((0, net.n_labels)), np.zeros((0, net.n_tags))
    return np.concatenate(labels).astype(np.float64), np.concatenate(tags).astype(np.float64)
