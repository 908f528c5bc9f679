"""encoder/model.py: ResNet18 encoder → 1024-d unit vectors; decoder and classifier heads."""
from __future__ import annotations

import math

import pytest
import torch

from tuneprint.encoder.model import BasicBlock, Classifier, EncoderNet, ModelConfig

B = 3


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(B, 1, 64, 64, generator=g)


@pytest.fixture(scope="module")
def net() -> EncoderNet:
    return EncoderNet(ModelConfig(decoder=True, n_classes=7)).eval()


def test_backbone_is_resnet18():
    net = EncoderNet()
    assert sum(isinstance(m, BasicBlock) for m in net.modules()) == 8
    assert net.backbone.out_dim == 512
    # torchvision's resnet18 without its fc layer has 11,176,512 parameters for 3 input channels;
    # one input channel saves 2 × 7 × 7 × 64 of them
    assert sum(p.numel() for p in net.backbone.parameters()) == 11_176_512 - 2 * 7 * 7 * 64
    assert net.decoder is None and net.classifier is None


def test_embedding_shape_norm_finite(net, patches):
    with torch.no_grad():
        emb = net.embed(patches)
    assert emb.shape == (B, 1024) and emb.dtype == torch.float32
    assert torch.isfinite(emb).all()
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(B), atol=1e-5, rtol=0)


def test_embedding_of_extreme_patches_is_finite(net):
    x = torch.stack([torch.zeros(1, 64, 64), torch.ones(1, 64, 64)])
    with torch.no_grad():
        emb = net.embed(x)
    assert torch.isfinite(emb).all()
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2), atol=1e-5, rtol=0)


def test_forward_heads(net, patches):
    with torch.no_grad():
        out = net(patches)
    assert set(out) == {"z", "embedding", "reconstruction", "logits"}
    assert out["z"].shape == (B, 1024)
    torch.testing.assert_close(out["embedding"], net.embed(patches).detach())
    rec = out["reconstruction"]
    assert rec.shape == (B, 1, 64, 64)
    assert rec.min() >= 0.0 and rec.max() <= 1.0
    assert out["logits"].shape == (B, 7) and torch.isfinite(out["logits"]).all()


def test_forward_without_heads(patches):
    net = EncoderNet(ModelConfig()).eval()
    with torch.no_grad():
        assert set(net(patches)) == {"z", "embedding"}


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_classifier_layers(layers):
    head = Classifier(1024, 5, n_layers=layers)
    assert sum(isinstance(m, torch.nn.Linear) for m in head.modules()) == layers
    assert head(torch.randn(4, 1024)).shape == (4, 5)


def test_eval_mode_is_batch_independent(net, patches):
    with torch.no_grad():
        together = net.embed(patches)
        alone = torch.cat([net.embed(patches[i : i + 1]) for i in range(B)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_seeded_init_is_reproducible(patches):
    a, b = EncoderNet(ModelConfig()), EncoderNet(ModelConfig())
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    torch.manual_seed(12345)  # the global RNG state must not matter
    c = EncoderNet(ModelConfig()).eval()
    with torch.no_grad():
        torch.testing.assert_close(c.embed(patches), a.eval().embed(patches), atol=0, rtol=0)
    other = EncoderNet(ModelConfig(init_seed=1))
    assert not torch.equal(other.projection.weight, a.projection.weight)


def test_creating_a_model_leaves_the_global_rng_alone():
    torch.manual_seed(99)
    before = torch.get_rng_state()
    EncoderNet(ModelConfig(width=8, embedding_dim=32, decoder=True, n_classes=3))
    assert torch.equal(torch.get_rng_state(), before)


def test_same_seed_same_weights_drawn_from_the_init_seed():
    cfg = ModelConfig(width=8, embedding_dim=32, decoder=True, n_classes=3)
    a, b = EncoderNet(cfg), EncoderNet(cfg)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    # The first weights drawn (the stem's convolution) are those of the CPU generator seeded with
    # ``init_seed``, as when the model reseeded torch's global generator.
    torch.manual_seed(cfg.init_seed)
    expected = torch.empty_like(a.backbone.stem[0].weight)
    torch.nn.init.kaiming_uniform_(expected, a=math.sqrt(5))
    assert torch.equal(a.backbone.stem[0].weight, expected)


def test_small_width_and_embedding_dim(patches):
    net = EncoderNet(ModelConfig(width=8, embedding_dim=32, decoder=True)).eval()
    with torch.no_grad():
        out = net(patches)
    assert net.backbone.out_dim == 64
    assert out["embedding"].shape == (B, 32) and out["reconstruction"].shape == (B, 1, 64, 64)


def test_config_round_trip():
    cfg = ModelConfig(width=16, stage_blocks=(1, 1, 1, 1), n_classes=4, decoder=True)
    d = cfg.to_dict()
    d["stage_blocks"] = list(d["stage_blocks"])  # as JSON gives it back
    d["from_a_newer_version"] = True  # unknown keys are ignored
    assert ModelConfig.from_dict(d) == cfg
