"""The design's network: ResNet18 encoder → 1024-d embedding, with a decoder and a classifier head.

One-line architecture::

    patch (B, 1, 64, 64) >> ResNet18 [stem, 4 stages × 2 BasicBlocks] >> avg-pool (B, 512)
        >> Linear → 1024 >> L2-normalise                       (embedding, for search)
    embedding >> Linear → 512×2×2 >> [Upsample ×2, Conv3×3, BN, ReLU]×5 >> Conv → (B, 1, 64, 64)  (decoder)
    embedding >> MLP (1–3 layers) → n_classes                  (classifier)

ResNet18 is defined here (torchvision's wheel does not import with the CPU build of torch).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    embedding_dim: int = 1024
    width: int = 64  # channels of the first ResNet stage (64 in ResNet18)
    stage_blocks: tuple[int, ...] = (2, 2, 2, 2)
    in_channels: int = 1
    n_classes: int = 0  # classifier head size; 0 = no classifier
    classifier_layers: int = 2
    decoder: bool = False
    init_seed: int = 20240601  # seeded initialisation, so an untrained model is reproducible

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d["stage_blocks"] = tuple(d.get("stage_blocks", (2, 2, 2, 2)))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with BasicBlocks; ``stage_blocks=(2, 2, 2, 2)`` is ResNet18. (B, C, H, W) → (B, 8·width)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.width
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages, cin = [], w
        for i, n in enumerate(cfg.stage_blocks):
            cout = w * 2**i
            blocks = [BasicBlock(cin, cout, 1 if i == 0 else 2)] + [BasicBlock(cout, cout, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.out_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1)


class Decoder(nn.Module):
    """Embedding (B, D) → reconstructed patch (B, 1, 64, 64) in [0, 1]."""

    def __init__(self, embedding_dim: int, width: int = 64):
        super().__init__()
        self.channels = width * 8
        self.fc = nn.Linear(embedding_dim, self.channels * 2 * 2)
        layers, c = [], self.channels
        for _ in range(5):  # 2 → 4 → 8 → 16 → 32 → 64
            cout = max(c // 2, 16)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, cout, 3, 1, 1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            c = cout
        layers += [nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, self.channels, 2, 2)
        return torch.sigmoid(self.net(x))


class Classifier(nn.Module):
    """Embedding (B, D) → logits (B, n_classes), ``n_layers`` linear layers."""

    def __init__(self, embedding_dim: int, n_classes: int, n_layers: int = 2, hidden: int = 512):
        super().__init__()
        layers, d = [], embedding_dim
        for _ in range(n_layers - 1):
            layers += [nn.Linear(d, hidden), nn.ReLU(inplace=True), nn.Dropout(0.2)]
            d = hidden
        layers.append(nn.Linear(d, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class EncoderNet(nn.Module):
    """Encoder–classifier–decoder. ``embed`` is all that search needs."""

    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        # The initial weights come from torch's CPU generator seeded with ``init_seed``; forking it
        # leaves the caller's random state as it was (CUDA generators are not touched).
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(cfg.init_seed)
            self.backbone = ResNet(cfg)
            self.projection = nn.Linear(self.backbone.out_dim, cfg.embedding_dim)
            self.decoder = Decoder(cfg.embedding_dim, cfg.width) if cfg.decoder else None
            self.classifier = (
                Classifier(cfg.embedding_dim, cfg.n_classes, cfg.classifier_layers) if cfg.n_classes > 0 else None
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Patches (B, 1, 64, 64) → raw embedding (B, D), not normalised."""
        return self.projection(self.backbone(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patches (B, 1, 64, 64) → unit-norm embedding (B, D) for cosine search."""
        return F.normalize(self.forward_features(x), dim=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.forward_features(x)
        out = {"z": z, "embedding": F.normalize(z, dim=1)}
        if self.decoder is not None:
            out["reconstruction"] = self.decoder(z)
        if self.classifier is not None:
            out["logits"] = self.classifier(z)
        return out
