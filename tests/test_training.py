"""Training on generated audio with a narrow ResNet18 (width is a setting), so steps take milliseconds."""
import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from tuneprint.encoder.augment import DegradeConfig
from tuneprint.encoder.checkpoint import load_checkpoint
from tuneprint.encoder.features import FeatureConfig
from tuneprint.encoder.model import EncoderNet, ModelConfig
from tuneprint.encoder.pairs import PairSampler, Track
from tuneprint.encoder.training import TrainConfig, losses, nt_xent, train
from tests.conftest import SR, synth_song

TINY = ModelConfig(width=8, embedding_dim=32)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train-songs")
    out = []
    for i in range(4):
        path = folder / f"t{i}.wav"
        sf.write(path, synth_song(50 + i, seconds=8.0), SR)
        out.append((str(path), "a" if i % 2 else "b"))
    return out


def test_variant_names():
    assert TrainConfig(variant="both").terms == {"decoder", "classifier"}
    assert TrainConfig(variant="both+contrastive").terms == {"decoder", "classifier", "contrastive"}
    with pytest.raises(ValueError):
        TrainConfig(variant="decoder+magic").terms


def test_nt_xent_prefers_matching_pairs():
    a = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    noisy = torch.nn.functional.normalize(a + 0.01 * torch.randn(8, 16), dim=1)
    assert nt_xent(a, noisy, 0.1) < nt_xent(a, noisy.roll(1, 0), 0.1)


def test_sampler_pairs_have_patch_shape_and_range():
    tracks = [Track(synth_song(7, seconds=6.0), 0)]
    sampler = PairSampler(tracks, FeatureConfig())
    batch = sampler.batch(np.random.default_rng(0), 3)
    assert batch["anchor"].shape == batch["view"].shape == (3, 1, 64, 64)
    assert 0.0 <= float(batch["view"].min()) and float(batch["anchor"].max()) <= 1.0
    assert batch["label"].tolist() == [0, 0, 0]


def test_sampler_interference_is_another_song():
    tracks = [Track(synth_song(7, seconds=6.0), 0), Track(synth_song(8, seconds=5.0), 1), Track(synth_song(9, seconds=7.0), 1)]
    sampler = PairSampler(tracks, FeatureConfig(), degrade=DegradeConfig(p_music_noise=1.0))
    rng = np.random.default_rng(0)
    for track in tracks * 3:
        other = sampler._other_song(rng, track)
        assert len(other) == sampler.span + 2 * sampler.shift
        assert not np.shares_memory(other, track.samples)
        assert any(np.shares_memory(other, t.samples) for t in tracks)
    assert PairSampler(tracks, FeatureConfig())._other_song(rng, tracks[0]) is None  # off: no draw


@pytest.mark.parametrize("variant", ["decoder", "classifier", "both+contrastive"])
def test_a_few_steps_lower_the_loss(variant):
    torch.manual_seed(0)
    cfg = TrainConfig(variant=variant, classifier_scale=1.0)
    net = EncoderNet(ModelConfig(width=8, embedding_dim=32, n_classes=2, decoder=True))
    tracks = [Track(synth_song(8 + i, seconds=6.0), i % 2) for i in range(2)]
    batch = PairSampler(tracks, FeatureConfig(), shift_s=cfg.shift_s, degrade=cfg.degrade).batch(np.random.default_rng(1), 8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    first = losses(net, batch, cfg)["loss"].item()
    for _ in range(15):
        out = losses(net, batch, cfg)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert losses(net, batch, cfg)["loss"].item() < 0.8 * first


def test_train_writes_a_run_and_resumes_from_the_saved_step(items, tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(variant="both+contrastive", epochs=1, batch_size=4, patches_per_epoch=8, val_pairs=4,
                      checkpoint_every=1)
    weights = train(items[:3], run, cfg=cfg, val_items=items[3:], model_cfg=TINY, progress=False)
    for name in ("config.json", "metrics.csv", "loss.png", "model.safetensors", "state.pt"):
        assert (run / name).is_file(), name
    loaded = load_checkpoint(weights)
    assert loaded.meta["extra"]["step"] == 2 and loaded.net.classifier is not None
    # Resume to two epochs: the run continues at step 3, it does not start over.
    train(items[:3], run, cfg=TrainConfig(epochs=2), val_items=items[3:], resume=True, progress=False)
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv"))]
    assert steps == [1, 2, 3, 4]
    import json

    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2  # the run's new length
    assert load_checkpoint(weights).meta["extra"]["step"] == 4


def test_train_refuses_a_used_run_folder_and_a_missing_resume(items, tmp_path):
    from tuneprint.errors import TuneprintError

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(TuneprintError):
        train(items, tmp_path / "used", cfg=TrainConfig(epochs=1), model_cfg=TINY, progress=False)
    with pytest.raises(TuneprintError):
        train(items, tmp_path / "fresh", cfg=TrainConfig(epochs=1), model_cfg=TINY, resume=True, progress=False)


def test_fine_tuning_starts_from_the_given_weights(items, tmp_path):
    from tuneprint.encoder.checkpoint import save_checkpoint

    torch.manual_seed(3)
    start = EncoderNet(TINY)
    with torch.no_grad():
        for p in start.parameters():
            p.add_(0.1 * torch.randn_like(p))  # weights the seeded init could not produce
    init = save_checkpoint(tmp_path / "init.safetensors", start, FeatureConfig(), encoder_only=True)
    # A learning rate of zero keeps the weights: what the run saves is what it started from.
    cfg = TrainConfig(variant="contrastive+classifier", epochs=1, batch_size=4, patches_per_epoch=4, lr=0.0, lr_min=0.0)
    weights = train(items, tmp_path / "run", cfg=cfg, model_cfg=TINY, init_weights=str(init), progress=False)
    tuned = load_checkpoint(weights).net.state_dict()
    for name, value in start.named_parameters():  # parameters; batch-norm statistics move in training mode
        if name.startswith(("backbone.", "projection.")):
            assert torch.equal(tuned[name], value.detach()), name


def test_learning_rate_warms_up_then_follows_the_cosine_over_steps_or_minutes():
    from tuneprint.encoder.training import LoopConfig, learning_rate

    cfg = TrainConfig(lr=1e-3, lr_min=1e-5)
    by_steps = LoopConfig(total_steps=100)
    assert learning_rate(cfg, by_steps, 0, 0.0) == pytest.approx(1e-3)
    assert learning_rate(cfg, by_steps, 50, 0.0) == pytest.approx((1e-3 + 1e-5) / 2)
    warm = LoopConfig(total_steps=100, warmup=10)
    assert learning_rate(cfg, warm, 0, 0.0) == pytest.approx(1e-4)
    assert learning_rate(cfg, warm, 9, 0.0) == learning_rate(cfg, by_steps, 9, 0.0)  # warm: the cosine rules
    by_time = LoopConfig(minutes=2.0)
    assert learning_rate(cfg, by_time, 999, 60.0) == pytest.approx((1e-3 + 1e-5) / 2)


class RandomViews:
    """A view source of random patches: the loop does not care where views come from."""

    def fixed_batch(self, size, device, seed):
        g = torch.Generator().manual_seed(seed)
        return {"anchor": torch.rand(size, 1, 64, 64, generator=g).to(device), "view": torch.rand(size, 1, 64, 64, generator=g).to(device)}

    def stream(self, batch_size, device, seed):
        while True:
            yield self.fixed_batch(batch_size, device, seed)
            seed += 1


def test_fit_trains_from_any_view_source_and_writes_one_kind_of_run(tmp_path):
    from tuneprint.encoder.run_folder import RunFolder
    from tuneprint.encoder.training import METRICS, LoopConfig, fit

    net = EncoderNet(TINY)
    run = RunFolder(tmp_path / "run", FeatureConfig(), METRICS, extra={"variant": "contrastive"})
    loop = LoopConfig(total_steps=5, val_every=2, val_at_start=True, log_every=2, speed_every=2, checkpoint_every=2)
    cfg = TrainConfig(variant="contrastive", batch_size=4, val_pairs=4, device="cpu")
    fitted = fit(net, RandomViews(), run, cfg=cfg, loop=loop, val_views=RandomViews())
    assert fitted.steps == 5 and 0 <= fitted.val_top1 <= 1
    rows = list(csv.DictReader(open(run.metrics)))
    assert [int(r["step"]) for r in rows] == [0, 2, 4, 5]  # start, logged/validated steps, the last step
    assert rows[1]["loss"] and rows[1]["val_loss"] and not rows[0]["loss"]
    meta = load_checkpoint(run.weights).meta["extra"]
    assert meta["step"] == 5 and meta["variant"] == "contrastive" and "partial" not in meta
    assert (run.path / "loss.png").is_file() and torch.load(run.path / "state.pt")["step"] == 5


def test_noise_files_repeat_extra_folders_to_their_share(tmp_path):
    from tuneprint.encoder.pairs import noise_files

    bank, extra = tmp_path / "bank", tmp_path / "extra"
    bank.mkdir(), extra.mkdir()
    for i in range(9):
        (bank / f"n{i}.wav").write_bytes(b"")
    (extra / "x.wav").write_bytes(b"")
    files = noise_files(bank, [extra], share=0.25)
    assert len(files) == 12 and files.count(str(extra / "x.wav")) == 3
    assert noise_files(bank) == sorted(str(f) for f in bank.iterdir())
