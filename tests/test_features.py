"""encoder/features.py: log-mel shapes, 64×64 patches in [0, 1], offsets in seconds, silence, short clips."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SR, synth_song
from tuneprint.errors import SilentAudioError, TooShortError
from tuneprint.encoder.features import (
    FeatureConfig, audio_to_patches, cut_patches, is_loud, log_mel, normalize_patch, patch_starts,
)

CFG = FeatureConfig()


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return synth_song(3, seconds=10.0)


def test_config_seconds():
    assert CFG.n_mels == 64 and CFG.patch_frames == 64 and CFG.hop_length == 1024
    assert CFG.frame_seconds == pytest.approx(1024 / 22050)  # ≈46 ms
    assert CFG.patch_seconds == pytest.approx(2.97, abs=0.01)
    assert FeatureConfig(**CFG.to_dict()) == CFG


def test_log_mel_shape(song):
    S = log_mel(song)
    assert S.dtype == np.float32
    assert S.shape == (64, 1 + len(song) // CFG.hop_length)
    assert np.all(np.isfinite(S)) and S.min() >= -100.0 - 1e-3  # power floored at 1e-10 (−100 dB)
    assert np.all(log_mel(np.zeros(SR, np.float32)) <= -100.0 + 1e-3)


def test_patch_starts():
    np.testing.assert_array_equal(patch_starts(63, 8), [])
    np.testing.assert_array_equal(patch_starts(64, 8), [0])
    np.testing.assert_array_equal(patch_starts(100, 8), [0, 8, 16, 24, 32, 36])  # the last one flush with the end
    np.testing.assert_array_equal(patch_starts(96, 8), [0, 8, 16, 24, 32])  # already flush: no duplicate
    np.testing.assert_array_equal(patch_starts(70, 0), np.arange(7))  # a zero hop still advances


@pytest.mark.parametrize("hop_frames", [4, 8, 32])
def test_patches_shape_range_and_offsets(song, hop_frames):
    patches, offsets = audio_to_patches(song, hop_frames=hop_frames)
    n_frames = 1 + len(song) // CFG.hop_length
    starts = patch_starts(n_frames, hop_frames)
    assert patches.shape == (len(starts), 64, 64) and patches.dtype == np.float32
    assert offsets.shape == (len(starts),) and offsets.dtype == np.float32
    assert patches.min() >= 0.0 and patches.max() <= 1.0
    np.testing.assert_allclose(patches.max(axis=(1, 2)), 1.0)  # each patch scaled to its own peak
    # offsets in seconds, hop_frames × hop_length apart, the last patch flush with the end
    np.testing.assert_allclose(offsets, starts * CFG.hop_length / CFG.sample_rate, rtol=1e-6)
    np.testing.assert_allclose(np.diff(offsets)[:-1], hop_frames * CFG.frame_seconds, rtol=1e-5)
    assert offsets[-1] + CFG.patch_seconds == pytest.approx((n_frames) * CFG.frame_seconds, abs=1e-4)
    assert offsets[-1] + CFG.patch_seconds == pytest.approx(len(song) / SR, abs=CFG.frame_seconds)


def test_patch_at_an_offset_is_the_spectrogram_there(song):
    patches, offsets = audio_to_patches(song, hop_frames=8)
    S = log_mel(song)
    for i in (0, 3, len(offsets) - 1):
        frame = int(round(offsets[i] / CFG.frame_seconds))
        np.testing.assert_allclose(patches[i], normalize_patch(S[:, frame : frame + 64]), atol=1e-6)


def test_offsets_follow_another_config():
    cfg = FeatureConfig(hop_length=512)
    y = synth_song(1, seconds=5.0)
    patches, offsets = audio_to_patches(y, hop_frames=10, cfg=cfg)
    assert patches.shape[1:] == (64, 64)
    np.testing.assert_allclose(np.diff(offsets)[:-1], 10 * 512 / SR, rtol=1e-5)
    assert offsets[-1] + cfg.patch_seconds == pytest.approx(len(y) / SR, abs=cfg.frame_seconds)


def test_normalize_patch_range():
    rng = np.random.default_rng(0)
    db = rng.uniform(-150, -5, size=(3, 64, 64)).astype(np.float32)
    out = normalize_patch(db)
    assert out.min() == 0.0 and np.all(out.max(axis=(1, 2)) == 1.0)
    # values more than top_db below the peak are floored at 0
    peak = db.max(axis=(1, 2), keepdims=True)
    assert np.all(out[db < peak - CFG.top_db] == 0.0)
    assert cut_patches(db[0], np.zeros(0, np.int64)).shape == (0, 64, 64)


def test_gain_invariance(song):
    loud, offsets = audio_to_patches(song, hop_frames=8)
    quiet, quiet_offsets = audio_to_patches(song * 0.05, hop_frames=8)  # −26 dB
    np.testing.assert_array_equal(offsets, quiet_offsets)
    np.testing.assert_allclose(quiet, loud, atol=1e-4)


def test_silent_patches_dropped():
    y = synth_song(5, seconds=12.0)
    y[int(3 * SR) : int(9 * SR)] = 0.0  # six seconds of digital silence in the middle
    all_starts = patch_starts(1 + len(y) // CFG.hop_length, 8)
    patches, offsets = audio_to_patches(y, hop_frames=8)
    assert 0 < len(offsets) < len(all_starts)
    margin = CFG.n_fft / SR  # the STFT window reaches this far into the silence
    for o in offsets:  # no kept patch lies wholly inside the silence
        assert not (3.0 + margin <= o and o + CFG.patch_seconds <= 9.0 - margin)
    # and every patch that touches the music is kept
    touching = [s * CFG.frame_seconds for s in all_starts
                if s * CFG.frame_seconds < 3.0 - margin or s * CFG.frame_seconds + CFG.patch_seconds > 9.0 + margin]
    assert set(np.round(touching, 4)) <= set(np.round(offsets.astype(np.float64), 4))
    loud = is_loud(log_mel(y), all_starts)
    assert loud.dtype == bool and loud.sum() == len(offsets)


@pytest.mark.parametrize("kind", ["zeros", "hiss"])
def test_all_silent_raises(kind):
    rng = np.random.default_rng(0)
    y = np.zeros(5 * SR, np.float32) if kind == "zeros" else (1e-5 * rng.standard_normal(5 * SR)).astype(np.float32)
    with pytest.raises(SilentAudioError, match="silent"):
        audio_to_patches(y, hop_frames=8)
    with pytest.raises(SilentAudioError):
        audio_to_patches(y[: SR * 2], hop_frames=4, pad=True)


def test_short_clip_padding_and_refusal():
    y = synth_song(7, seconds=5.0)
    with pytest.raises(TooShortError, match="0.20 s"):  # a 0.2-s clip is refused, padded or not
        audio_to_patches(y[: int(0.2 * SR)], hop_frames=4, pad=True)
    with pytest.raises(TooShortError, match="one patch"):
        audio_to_patches(y[: int(0.2 * SR)], hop_frames=4)
    with pytest.raises(TooShortError):
        audio_to_patches(y[: int(1.5 * SR)], hop_frames=4)  # shorter than a patch, not padded
    patches, offsets = audio_to_patches(y[: int(1.5 * SR)], hop_frames=4, pad=True)
    assert patches.shape == (1, 64, 64) and offsets.tolist() == [0.0]
    # padding is silence: the padded part of the patch is at the floor
    S = log_mel(np.pad(y[: int(1.5 * SR)], (0, 63 * 1024 - int(1.5 * SR))))
    np.testing.assert_allclose(patches[0], normalize_patch(S[:, :64]), atol=1e-6)
    assert patches[0][:, -10:].max() == 0.0
    patches, _ = audio_to_patches(y[: int(CFG.min_clip_seconds * SR)], hop_frames=4, pad=True)
    assert len(patches) == 1  # exactly the minimum is accepted
