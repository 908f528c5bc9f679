"""encoder/checkpoint.py: safetensors checkpoints that carry config + format version; clear refusals."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import tuneprint.encoder.checkpoint as checkpoint
from tuneprint.encoder.checkpoint import load_checkpoint, load_model, save_checkpoint, seeded_model
from tuneprint.errors import CheckpointError
from tuneprint.encoder.features import FeatureConfig
from tuneprint.encoder.model import EncoderNet, ModelConfig

SMALL = ModelConfig(width=8, embedding_dim=64, decoder=True, n_classes=3)
FEATURES = FeatureConfig(hop_length=512, silence_db=-60.0)  # not the defaults: they must round-trip too


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    return torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def trained(patches) -> EncoderNet:
    """A small net whose weights and BatchNorm statistics are no longer the initialisation."""
    net = EncoderNet(SMALL)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        net.train()
        for _ in range(3):
            net(patches)  # moves the running means and variances
    return net.eval()


def outputs(net: EncoderNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return net.eval()(x)


def test_round_trip_same_outputs(trained, patches, tmp_path):
    path = save_checkpoint(tmp_path / "run" / "model.safetensors", trained, FEATURES, extra={"step": 7})
    loaded = load_checkpoint(path)
    assert loaded.net.cfg == SMALL and loaded.features == FEATURES
    assert not loaded.net.training
    assert loaded.meta["extra"] == {"step": 7}
    assert loaded.model_id.startswith("sha256:")
    want, got = outputs(trained, patches), outputs(loaded.net, patches)
    assert set(got) == set(want) == {"z", "embedding", "reconstruction", "logits"}
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=0, rtol=0)
    assert not list(tmp_path.glob("run/*.tmp"))  # written atomically
    # the same file always gets the same id; other weights another one
    assert load_checkpoint(path).model_id == loaded.model_id
    other = save_checkpoint(tmp_path / "other.safetensors", EncoderNet(SMALL), FEATURES)
    assert load_checkpoint(other).model_id != loaded.model_id


def test_half_precision_encoder_only_export(trained, patches, tmp_path):
    full = save_checkpoint(tmp_path / "full.safetensors", trained, FEATURES)
    small = save_checkpoint(tmp_path / "export.safetensors", trained, FEATURES, half=True, encoder_only=True)
    assert small.stat().st_size < full.stat().st_size / 2
    loaded = load_checkpoint(small)
    assert loaded.net.decoder is None and loaded.net.classifier is None
    assert loaded.net.cfg.embedding_dim == SMALL.embedding_dim
    assert all(p.dtype == torch.float32 for p in loaded.net.parameters())  # loaded back as float32
    with torch.no_grad():
        got, want = loaded.net.embed(patches), trained.embed(patches)
    assert torch.nn.functional.cosine_similarity(got, want).min() > 0.999


def test_wrong_format_version_refused(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", checkpoint.FORMAT_VERSION + 1)
    path = save_checkpoint(tmp_path / "future.safetensors", trained, FEATURES)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(path)


def test_safetensors_without_our_metadata_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupted_file_refused(trained, tmp_path, damage):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, trained, FEATURES)
    data = path.read_bytes()
    path.write_bytes({"garbage": b"not a checkpoint at all" * 10, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_config_refused(trained, tmp_path):
    path = save_checkpoint(tmp_path / "model.safetensors", trained, FEATURES)
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    lying = {**meta, "model_config": json.dumps({**json.loads(meta["model_config"]), "width": 16})}
    save_file(state, str(tmp_path / "lying.safetensors"), metadata=lying)
    with pytest.raises(CheckpointError, match="do not fit"):  # shapes disagree with the config
        load_checkpoint(tmp_path / "lying.safetensors")
    headless = {k: v for k, v in state.items() if not k.startswith("projection.")}
    save_file(headless, str(tmp_path / "headless.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "headless.safetensors")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nowhere.safetensors")
    with pytest.raises(CheckpointError):
        load_model(str(tmp_path / "nowhere.safetensors"))


def test_seeded_model_is_reproducible(patches):
    a, b = seeded_model(), seeded_model()
    assert a.model_id == b.model_id and a.model_id.startswith("seeded:")
    assert a.features == FeatureConfig()
    with torch.no_grad():
        torch.testing.assert_close(a.net.embed(patches), b.net.embed(patches), atol=0, rtol=0)
    assert seeded_model(ModelConfig(init_seed=5)).model_id != a.model_id
    assert load_model("seeded").model_id == a.model_id


def test_load_model_by_path_and_default(trained, tmp_path):
    path = save_checkpoint(tmp_path / "model.safetensors", trained, FEATURES)
    assert load_model(str(path)).net.cfg == SMALL
    default = load_model("default")
    if checkpoint.DEFAULT_WEIGHTS.is_file():
        assert default.model_id == load_checkpoint(checkpoint.DEFAULT_WEIGHTS).model_id
    else:
        assert default.model_id == seeded_model().model_id
    assert load_model(None).model_id == default.model_id
