"""The benchmarks' real phone chains (server/evaluation/phone_chain.py): FFmpeg filters and codecs."""
import numpy as np
import pytest

from tuneprint.server.evaluation.phone_chain import CHAINS, PHONE_RATE, drop_packets, narrowband, phone_call

SR = 22050


def band_power(y: np.ndarray, sr: int, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def music(seconds: float = 3.0) -> np.ndarray:
    """Tones across the spectrum: 100 Hz (under the band), 1 kHz (in it), 6 kHz (over it)."""
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 100 * t) + 0.3 * np.sin(2 * np.pi * 1000 * t)
            + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)


@pytest.mark.parametrize("name", list(CHAINS))
def test_the_chain_is_band_limited_and_at_the_codecs_rate(name):
    rng = np.random.default_rng(0)
    noise = np.random.default_rng(1).standard_normal(SR).astype(np.float32) * 0.01
    for _ in range(4):  # each draw of codec and AGC
        coded, drawn = narrowband(music(), SR, noise, CHAINS[name], rng)
        assert abs(len(coded) - 3 * PHONE_RATE) < 0.1 * PHONE_RATE  # 8 kHz: a 3-s clip is ≈24,000 samples
        inside = band_power(coded, PHONE_RATE, 800, 1200)
        assert band_power(coded, PHONE_RATE, 50, 150) < 0.05 * inside, drawn  # 100 Hz is gone
        assert drawn["bit_rate"] <= 16_000 and drawn["codec"] in {c.name for c in CHAINS[name].codecs}


def test_the_far_end_is_back_at_the_library_rate_and_keeps_no_high_band():
    y = music()
    out, drawn = phone_call(y, SR, np.zeros(100, np.float32), CHAINS["phone-call"], np.random.default_rng(3))
    assert len(out) == len(y) and out.dtype == np.float32
    assert band_power(out, SR, 5000, 7000) < 0.01 * band_power(out, SR, 800, 1200)
    assert np.corrcoef(out, y)[0, 1] < 0.9  # a codec and a band-pass: not the same samples


def test_packet_loss_silences_whole_frames():
    y = np.ones(PHONE_RATE, np.float32)
    lost = drop_packets(y, PHONE_RATE, 0.3, np.random.default_rng(0))
    frames = lost.reshape(-1, int(0.02 * PHONE_RATE))
    assert set(np.unique(frames.max(axis=1))) == {0.0, 1.0}
    assert 0.15 < (frames.max(axis=1) == 0).mean() < 0.45
