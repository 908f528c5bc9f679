"""The gate's second opinion: a small CNN that reads a patch's log-mel directly.

The gate's logistic regression reads the fingerprint embedding and hand-made statistics; this
network learns its own view of the 64×64 dB patch (4 blocks of two 3×3 convolutions, channels
:data:`CHANNELS`, max-pooled; mean and max over the last map; one logit). The gate averages the two
probabilities. Trained by :func:`train_cnn` (``scripts/train_gate.py``); stored in the gate file as
plain arrays, so the gate stays one file and loads without torch until a clip is judged.
"""
from __future__ import annotations

import numpy as np

CHANNELS = (16, 32, 64, 96)
FLOOR_DB = -80.0  # the CNN and the log-mel statistics see a patch relative to its loudest bin, at most this far below


def cnn_input(spectra: list[np.ndarray], patch_frames: int) -> np.ndarray:
    """dB log-mel patches [shape=(n_mels, ≤ patch_frames)] each → network input
    [shape=(n, 1, n_mels, patch_frames), float32]: relative to the patch's peak, floored, scaled to
    ≈[-1, 1]; a patch cut short (a padded clip's last) is filled with its own quietest value."""
    out = []
    for s in spectra:
        s = np.asarray(s, dtype=np.float32)
        full = np.full((s.shape[0], patch_frames), s.min() if s.size else FLOOR_DB, dtype=np.float32)
        full[:, : s.shape[1]] = s[:, :patch_frames]
        out.append(np.maximum(full - full.max(), FLOOR_DB) / 40.0 + 1.0)
    return np.stack(out)[:, None]


def build_net():
    """The network (torch), untrained."""
    import torch
    import torch.nn as nn

    def block(i: int, o: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                             nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    class SpectrumNet(nn.Module):
        def __init__(self):
            super().__init__()
            widths = (1, *CHANNELS)
            self.features = nn.Sequential(*[block(i, o) for i, o in zip(widths, widths[1:])])
            self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(2 * CHANNELS[-1], 1))

        def forward(self, x):
            z = self.features(x)
            return self.head(torch.cat([z.mean((2, 3)), z.amax((2, 3))], 1))[:, 0]

    return SpectrumNet()


class GateCNN:
    """A trained network as arrays (``state``); the torch module is built on first use."""

    def __init__(self, state: dict[str, np.ndarray]):
        self.state = state
        self._net = None

    def probabilities(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        """P(music) of each input patch (:func:`cnn_input`) [shape=(n,)]."""
        import torch

        if self._net is None:
            net = build_net()
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.state.items()})
            self._net = net.eval()
        with torch.no_grad():
            logits = [self._net(torch.from_numpy(x[i : i + batch])) for i in range(0, len(x), batch)]
        return torch.sigmoid(torch.cat(logits)).numpy().astype(np.float64)

    @property
    def weight_count(self) -> int:
        return sum(v.size for k, v in self.state.items() if "running" not in k and "num_batches" not in k)


def train_cnn(x: np.ndarray, y: np.ndarray, w: np.ndarray, *, epochs: int = 14, seed: int = 0) -> dict[str, np.ndarray]:
    """Train on patches ``x`` (:func:`cnn_input`), labels ``y`` (1 music) and weights ``w``; returns
    the state as arrays. Views: a random circular shift in time and two frequency and two time
    masks of up to 8 bins/frames (SpecAugment-style); AdamW with a one-cycle schedule."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = build_net()
        xt, yt, wt = torch.from_numpy(x), torch.tensor(y, dtype=torch.float32), torch.tensor(w, dtype=torch.float32)
        opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
        steps = epochs * (len(xt) // 128 + 1)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
        net.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(xt)).split(128):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(_view(xt[batch], rng)), yt[batch],
                                                                            weight=wt[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                schedule.step()
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def _view(x, rng: np.random.Generator):
    """A training view of a batch of patches (a copy)."""
    import torch

    x = torch.roll(x, int(rng.integers(-16, 17)), dims=3).clone()
    for _ in range(2):
        f0, t0 = rng.integers(0, x.shape[2] - 8), rng.integers(0, x.shape[3] - 8)
        x[:, :, f0 : f0 + rng.integers(0, 8)] = 0.0
        x[:, :, :, t0 : t0 + rng.integers(0, 8)] = 0.0
    return x
