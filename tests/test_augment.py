import numpy as np
import pytest

from tuneprint.encoder.augment import (DegradeConfig, apply_gain, change_speed, colored_noise, degrade, loop_to, mask_spectrogram,
                             mix_at_snr, phone, random_eq, reverb, room_impulse, signal_power, tonal_noise,
                             vary_noise, TONAL_KINDS)
from tests.conftest import SR, synth_song


@pytest.fixture(scope="module")
def clip():
    return synth_song(3, seconds=3.5)


def test_mix_at_snr_hits_the_requested_snr(clip):
    noise = colored_noise(len(clip) // 3, np.random.default_rng(0), 0.0)  # shorter: gets looped
    for snr in (0.0, 10.0):
        mixed = mix_at_snr(clip, noise, snr)
        added = mixed - clip
        assert mixed.shape == clip.shape and mixed.dtype == np.float32
        assert 10 * np.log10(signal_power(clip) / signal_power(added)) == pytest.approx(snr, abs=1.0)


def test_colored_noise_slopes():
    rng = np.random.default_rng(1)
    spectra = [np.abs(np.fft.rfft(colored_noise(2**16, rng, e))) ** 2 for e in (0.0, 2.0)]
    low, high = slice(10, 200), slice(20000, 30000)
    white_tilt = spectra[0][low].mean() / spectra[0][high].mean()
    brown_tilt = spectra[1][low].mean() / spectra[1][high].mean()
    assert white_tilt < 2 and brown_tilt > 100


def test_reverb_keeps_length_and_level_and_smears(clip):
    rng = np.random.default_rng(2)
    wet = reverb(clip, SR, rng, 0.8)
    assert wet.shape == clip.shape and np.isfinite(wet).all()
    assert signal_power(wet) == pytest.approx(signal_power(clip), rel=0.05)
    ir = room_impulse(SR, rng, 0.5)
    assert np.sum(ir**2) == pytest.approx(1.0, rel=1e-3)


def test_phone_band_limits(clip):
    out = phone(clip, SR, np.random.default_rng(3), codec="mp3")
    assert out.shape == clip.shape and np.isfinite(out).all()
    spectrum = np.abs(np.fft.rfft(out)) ** 2
    freqs = np.fft.rfftfreq(len(out), 1 / SR)
    assert spectrum[freqs > 4500].sum() < 0.01 * spectrum.sum()
    assert phone(clip, SR, np.random.default_rng(3), codec="gsm").shape == clip.shape


def test_speed_changes_duration_as_asked(clip):
    assert len(change_speed(clip, SR, 1.03)) == pytest.approx(len(clip) / 1.03, rel=0.01)
    assert np.abs(apply_gain(clip, 40.0)).max() <= 1.0


def test_degrade_keeps_shape_dtype_and_range(clip):
    rng = np.random.default_rng(4)
    noises = [colored_noise(SR, rng, 1.0)]
    cfg = DegradeConfig(p_noise=1.0, p_reverb=1.0, p_phone=1.0, p_speed=1.0, p_bank_noise=1.0, p_vary_noise=1.0)
    tonal = DegradeConfig(p_noise=1.0, p_reverb=1.0, p_phone=1.0, p_speed=1.0, p_tonal_noise=1.0)
    music = DegradeConfig(p_noise=1.0, p_reverb=1.0, p_phone=1.0, p_speed=1.0, p_music_noise=1.0)
    for cfg in [cfg] * 4 + [tonal] * 4 + [music] * 4:
        out = degrade(clip, SR, rng, noises, cfg, music=colored_noise(SR // 2, rng, 0.0))
        assert out.shape == clip.shape and out.dtype == np.float32
        assert np.isfinite(out).all() and np.abs(out).max() <= 1.0


def test_music_interference_is_mixed_at_its_own_snr(clip):
    cfg = DegradeConfig(p_noise=1.0, p_reverb=0.0, p_phone=0.0, p_speed=0.0, gain_db=(0.0, 0.0),
                        p_music_noise=1.0, music_snr_db=(10.0, 10.0))
    other = np.sin(2 * np.pi * 1234.0 * np.arange(len(clip)) / SR).astype(np.float32)
    out = degrade(clip, SR, np.random.default_rng(3), None, cfg, music=other)
    added = out * max(1.0, float(np.abs(clip + 0.5 * other).max())) - clip  # undo the peak normalisation's scale
    ratio_db = 10 * np.log10(signal_power(clip) / signal_power(added))
    assert 6.0 < ratio_db < 16.0  # 10 dB, give or take the random EQ and normalisation
    assert np.array_equal(degrade(clip, SR, np.random.default_rng(3), None, cfg),  # no song given: no interference
                          degrade(clip, SR, np.random.default_rng(3), None, DegradeConfig(**{**cfg.to_dict(), "p_music_noise": 0.0})))


def test_mask_spectrogram_keeps_shape_and_range():
    rng = np.random.default_rng(5)
    patch = rng.uniform(0.1, 1.0, (64, 64)).astype(np.float32)
    masked = mask_spectrogram(patch, rng, p=1.0)
    assert masked.shape == patch.shape and masked.min() >= 0.0 and masked.max() <= 1.0
    assert (masked == 0).any() and (patch != 0).all()  # masked a copy, not the input


def band_power(y: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_loop_to_gives_exact_length():
    y = np.arange(5, dtype=np.float32)
    assert loop_to(y, 12).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert len(loop_to(y, 3)) == 3 and len(loop_to(np.zeros(0, np.float32), 4)) == 4


def test_random_eq_stays_within_its_gain_range():
    rng = np.random.default_rng(6)
    white = colored_noise(SR * 2, rng, 0.0)
    out = random_eq(white, SR, rng, max_db=12.0)
    assert out.shape == white.shape and out.dtype == np.float32
    gains = [10 * np.log10(band_power(out, lo, lo * 1.5) / band_power(white, lo, lo * 1.5)) for lo in (100, 400, 1600, 6400)]
    assert all(abs(g) <= 12.5 for g in gains)
    assert max(gains) - min(gains) > 1.0  # it did reshape the spectrum


def test_vary_noise_moves_a_tone_by_the_drawn_rate():
    t = np.arange(int(0.2 * SR)) / SR
    tone = loop_to(np.sin(2 * np.pi * 1000 * t).astype(np.float32), SR * 2)
    out = vary_noise(tone, SR, np.random.default_rng(7), [tone], rate=(1.3, 1.3))
    assert out.shape == tone.shape and np.isfinite(out).all()
    # Played 1.3 times faster, the 1000-Hz tone sits at 1300 Hz (a layered copy may stay at 1000 Hz).
    assert band_power(out, 1280, 1320) > 10 * band_power(out, 1500, 3000)


def test_apply_condition_reports_the_drawn_snr_without_changing_the_draws(clip):
    from tuneprint.encoder.augment import apply_condition

    noises = [colored_noise(SR, np.random.default_rng(8), 1.0)]
    drawn: dict = {}
    with_info = apply_condition(clip, "noise", SR, np.random.default_rng(9), noises, info=drawn)
    without = apply_condition(clip, "noise", SR, np.random.default_rng(9), noises)
    assert np.array_equal(with_info, without)
    assert 0.0 <= drawn["snr_db"] <= 10.0 and drawn["noise_index"] == 0
    clean: dict = {}
    apply_condition(clip, "clean", SR, np.random.default_rng(9), noises, info=clean)
    assert "snr_db" not in clean


def peak_share(y: np.ndarray) -> float:
    """Median over loud 93-ms frames of the share of a frame's power in its top 3 % of bins."""
    import librosa

    power = np.abs(librosa.stft(y, n_fft=2048)) ** 2
    energy = power.sum(axis=0)
    power = power[:, energy > 0.1 * energy.max()]
    return float(np.median(np.sort(power, axis=0)[::-1][: power.shape[0] // 33].sum(axis=0) / power.sum(axis=0)))


@pytest.mark.parametrize("kind", TONAL_KINDS)
def test_tonal_noise_is_pitched_new_each_draw_and_in_range(kind):
    draws = [tonal_noise(2 * SR, SR, np.random.default_rng(seed), kind) for seed in range(12)]
    for y in draws:
        assert y.shape == (2 * SR,) and y.dtype == np.float32 and np.isfinite(y).all()
        assert np.abs(y).max() == pytest.approx(1.0, abs=1e-4)
    # Pitched: a few spectral peaks carry most of each frame's power, unlike broadband noise.
    assert np.median([peak_share(y) for y in draws]) > 0.85
    assert peak_share(colored_noise(2 * SR, np.random.default_rng(0), 0.0)) < 0.3
    assert not np.allclose(draws[0], draws[1])
