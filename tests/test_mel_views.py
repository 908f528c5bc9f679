"""The mel-domain views (encoder/mel_views.py) and training from a spectrogram pack (encoder/mel_pack.py)."""
import json

import numpy as np
import pytest
import torch

from tuneprint.encoder.augment import phone as waveform_phone
from tuneprint.encoder.checkpoint import load_checkpoint
from tuneprint.encoder.features import FeatureConfig, log_mel, mel_band_centres
from tuneprint.encoder.mel_views import (MelBank, MelPairs, MelViewConfig, POWER_FLOOR, mix, phone, quantize_db, resample_view,
                               reverb, signal_power, to_patch, tonal_noise, tone_table, bins_per_band)
from tests.conftest import SR, add_noise, synth_song

F = FeatureConfig()


def power_of(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(10 ** (log_mel(y) / 10))[None]


@pytest.fixture(scope="module")
def song_power():
    return power_of(synth_song(1, seconds=8.0))


def bank(seeds, seconds) -> MelBank:
    packed = [quantize_db(log_mel(add_noise(synth_song(s, seconds=seconds), 30.0, seed=s))) for s in seeds]
    return MelBank.from_packed(np.concatenate([q for q, _ in packed]), np.array([r for _, r in packed]),
                               np.array([len(q) for q, _ in packed]), None, "cpu")


def test_quantized_bank_keeps_the_spectrogram_within_a_quarter_db():
    db = log_mel(synth_song(2, seconds=5.0))
    q, ref = quantize_db(db)
    b = MelBank.from_packed(q, np.array([ref]), np.array([len(q)]), None, "cpu")
    kept = db > db.max() - 120
    back = b.db.float().numpy().T
    assert np.abs(back - db)[kept].max() <= 0.25 + 0.05  # half a step, plus float16 rounding


def test_to_patch_matches_normalize_patch(song_power):
    from tuneprint.encoder.features import normalize_patch

    db = 10 * np.log10(np.maximum(song_power[0, :, :64].numpy(), 1e-10))
    assert np.allclose(to_patch(song_power[:, :, :64], F)[0].numpy(), normalize_patch(db), atol=1e-4)


def test_mix_hits_the_requested_snr(song_power):
    g = torch.Generator().manual_seed(0)
    noise = power_of(np.random.default_rng(0).standard_normal(len(synth_song(1, seconds=8.0))).astype(np.float32) * 0.1)
    for snr in (0.0, 10.0):
        mixed = mix(song_power, noise, torch.tensor([snr]), g, bins_per_band(F, "cpu"))
        assert mixed.shape == song_power.shape and bool((mixed >= POWER_FLOOR).all())
        added = (mixed - song_power).clamp_min(1e-12)
        measured = 10 * torch.log10(signal_power(song_power) / signal_power(added))
        assert float(measured) == pytest.approx(snr, abs=1.5)


def test_reverb_adds_a_decaying_tail_and_keeps_the_direct_sound(song_power):
    x = torch.zeros(1, F.n_mels, 80)
    x[:, :, 10] = 1.0
    wet = reverb(x, torch.tensor([0.8]), torch.tensor([0.0]), F.frame_seconds)
    assert wet.shape == x.shape
    assert torch.allclose(wet[:, :, 10], x[:, :, 10], atol=1e-5)  # the direct path
    tail = wet[0, 0, 11:40]
    assert float(tail.sum()) == pytest.approx(1.0, rel=0.05)  # 0 dB direct-to-reverberant
    assert bool((tail[1:] <= tail[:-1] + 1e-7).all()) and float(wet[0, 0, :10].max()) < 1e-6  # causal, decaying


def test_phone_matches_the_waveform_phone_on_average():
    y = synth_song(4, seconds=6.0)
    clean = log_mel(y)
    real = log_mel(waveform_phone(y, SR, np.random.default_rng(0), codec="mp3")) - clean
    approx = 10 * np.log10(phone(power_of(y), F, torch.Generator().manual_seed(0))[0].numpy()) - clean
    hz = mel_band_centres(F)
    inside, above = (hz > 500) & (hz < 3000), hz > 4500
    loud = clean[inside] > clean.max() - 40  # quiet cells are the codec's noise floor in both
    assert abs(np.median(approx[inside][loud]) - np.median(real[inside][loud])) < 2.0
    assert np.mean(approx[above]) < -40 and np.mean(real[above]) < -40


def test_speed_change_moves_a_tone_up_the_bands():
    t = np.arange(int(SR * 4)) / SR
    y = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    p = power_of(y)
    g = torch.tensor
    same = resample_view(p, g([4.0]), 64, g([1.0]), g([1.0]), F)
    faster = resample_view(p, g([4.0]), 64, g([1.25]), g([1.25]), F)
    assert int(same[0].mean(dim=1).argmax()) < int(faster[0].mean(dim=1).argmax())
    hz = mel_band_centres(F)
    assert hz[int(faster[0].mean(dim=1).argmax())] == pytest.approx(1250, rel=0.08)


def test_tonal_noise_is_pitched_and_finite():
    out = tonal_noise(8, F, 64, torch.Generator().manual_seed(3), tone_table(F, "cpu"))
    assert out.shape == (8, F.n_mels, 64) and bool(torch.isfinite(out).all()) and bool((out >= 0).all())
    peaky = out.mean(dim=2).amax(dim=1) / out.mean(dim=2).mean(dim=1)
    assert bool((peaky > 3).all())  # energy sits in a few bands, not spread like noise


def test_pairs_keep_shapes_and_ranges():
    pairs = MelPairs(bank([1, 2, 3], 8.0), bank([7, 8], 1.0), MelViewConfig(p_noise=1.0, p_reverb=0.5, p_phone=0.5))
    batch = pairs.batch(12, torch.Generator().manual_seed(0))
    for key in ("anchor", "view"):
        x = batch[key]
        assert x.shape == (12, 1, F.n_mels, F.patch_frames) and x.dtype == torch.float32
        assert float(x.min()) >= 0.0 and float(x.max()) == pytest.approx(1.0) and bool(torch.isfinite(x).all())
    assert batch["song"].shape == (12,) and int(batch["song"].max()) < 3
    assert not torch.allclose(batch["anchor"], batch["view"])


def test_trainer_runs_a_few_steps_and_writes_a_loadable_encoder(tmp_path):
    from tuneprint.encoder.mel_pack import train_on_pack
    from tuneprint.encoder.training import TrainConfig

    arrays = {}
    for name, seeds, seconds in (("train", [1, 2, 3], 8.0), ("val", [4, 5], 8.0), ("noise", [7, 8], 1.0)):
        packed = [quantize_db(log_mel(synth_song(s, seconds=seconds))) for s in seeds]
        arrays.update({f"{name}_q": np.concatenate([q for q, _ in packed]), f"{name}_ref": np.array([r for _, r in packed]),
                       f"{name}_length": np.array([len(q) for q, _ in packed]),
                       f"{name}_paths": np.array([f"synth/song{s:02d}.wav" for s in seeds])})
    arrays.update(noise_weight=np.ones(2), labels=np.array(["synth"]))
    np.savez(tmp_path / "pack.npz", **arrays)
    out = tmp_path / "run"
    cfg = TrainConfig(batch_size=8, val_pairs=8, lr=1e-4, lr_min=1e-6, device="cpu")
    train_on_pack(tmp_path / "pack.npz", out, init="seeded", cfg=cfg, max_steps=3, warmup=1, val_every=2, part_mb=5)
    assert not (out / "model.safetensors").exists() and not (out / "state.pt").exists()
    joined = tmp_path / "joined.safetensors"
    joined.write_bytes(b"".join(p.read_bytes() for p in sorted(out.glob("model.safetensors.part*"))))
    loaded = load_checkpoint(joined)
    assert loaded.meta["extra"]["step"] == 3 and "partial" not in loaded.meta["extra"]
    assert loaded.net.decoder is None and loaded.net.classifier is None  # the encoder only
    config = json.loads((out / "config.json").read_text())
    assert config["train_tracks"] == ["synth/song01.wav", "synth/song02.wav", "synth/song03.wav"]
    assert (out / "loss.png").stat().st_size > 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["0", "2", "3"]  # start, every 2, end


def test_new_songs_warp_anchor_and_view_alike():
    music = bank([1, 2], 10.0)
    plain = MelPairs(music, bank([7], 1.0), MelViewConfig(p_noise=0, p_reverb=0, p_phone=0, p_speed=0, p_mask=0))
    warped = MelPairs(music, bank([7], 1.0), MelViewConfig(p_noise=0, p_reverb=0, p_phone=0, p_speed=0, p_mask=0,
                                                           p_new_song=1.0, new_song_rate=(1.05, 1.06)))
    a = plain.batch(6, torch.Generator().manual_seed(5))
    b = warped.batch(6, torch.Generator().manual_seed(5))
    assert b["anchor"].shape == a["anchor"].shape and not torch.allclose(a["anchor"], b["anchor"], atol=1e-3)
    # the view still matches its own (warped) anchor better than the unwarped one
    own = (b["view"] - b["anchor"]).abs().mean()
    other = (b["view"] - a["anchor"]).abs().mean()
    assert float(own) < float(other)
