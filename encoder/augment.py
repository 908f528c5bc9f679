"""Degradations that users' clips really have, and the design's spectrogram augmentations.

Waveform degradations (for training views, benchmarks and evaluation): background noise at
a chosen SNR, room reverb, a phone's 300–3400 Hz band at 8 kHz through a lossy codec,
small speed changes and gain. Spectrogram augmentations (of the design, docs/ARCHITECTURE.md): frequency and
time masking (rolling is done by cutting patches at shifted starts).

Every function is pure given its ``rng``: arrays in, arrays out, shapes kept.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.fft import next_fast_len
from scipy.signal import fftconvolve

from .audio import to_rate


@dataclass(frozen=True)
class DegradeConfig:
    p_noise: float = 0.9
    snr_db: tuple[float, float] = (0.0, 10.0)
    p_bank_noise: float = 0.7  # share of noise drawn from recorded sounds rather than coloured noise
    p_vary_noise: float = 0.0  # share of recorded noise re-shaped (rate, EQ, a second sound layered): new noises
    noise_rate: tuple[float, float] = (0.7, 1.4)  # re-shaped noise plays this many times faster (pitch with it)
    p_tonal_noise: float = 0.0  # share of noise synthesized as pitched sounds (notes, calls, drones, bells)
    p_music_noise: float = 0.0  # share of noise that is another song (a radio, a neighbour's band), when one is given
    music_snr_db: tuple[float, float] = (4.0, 14.0)  # kept above 0 dB: the louder song is the one to identify
    p_reverb: float = 0.5
    rt60_s: tuple[float, float] = (0.2, 0.9)
    p_phone: float = 0.35
    p_speed: float = 0.3
    speed: tuple[float, float] = (0.97, 1.03)
    gain_db: tuple[float, float] = (-12.0, 6.0)

    def to_dict(self) -> dict:
        return asdict(self)


def signal_power(y: np.ndarray) -> float:
    """Mean power of the louder half of 50-ms frames, so pauses do not lower the SNR reference."""
    n = 1102
    frames = y[: len(y) // n * n].reshape(-1, n) if len(y) >= n else y[None]
    power = np.sort((frames.astype(np.float64) ** 2).mean(axis=1))
    return float(power[len(power) // 2 :].mean()) + 1e-12


def mix_at_snr(y: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` (looped or cropped to ``len(y)``) at ``snr_db`` below the signal.

    Parameters
    ----------
    y, noise : np.ndarray [shape=(n,)], [shape=(m,)]
    """
    if len(noise) < len(y):
        noise = np.tile(noise, int(np.ceil(len(y) / max(len(noise), 1))))
    noise = noise[: len(y)].astype(np.float32)
    scale = np.sqrt(signal_power(y) / (signal_power(noise) * 10 ** (snr_db / 10)))
    return (y + scale * noise).astype(np.float32)


def colored_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with a 1/f^exponent power spectrum: 0 white, 1 pink, 2 brown [shape=(n,)]."""
    m = next_fast_len(n, real=True)  # an FFT of a length with large prime factors is 10-20× slower
    spectrum = np.fft.rfft(rng.standard_normal(m))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spectrum / f ** (exponent / 2), m)[:n]
    return (y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def room_impulse(sr: int, rng: np.random.Generator, rt60_s: float) -> np.ndarray:
    """A synthetic room impulse response: direct path, sparse early echoes, exponential tail."""
    n = int(sr * rt60_s)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)  # −60 dB at rt60
    early = np.zeros(n)
    for _ in range(6):
        early[rng.integers(int(0.002 * sr), int(0.05 * sr))] += rng.uniform(0.2, 0.7) * rng.choice([-1, 1])
    ir = 0.4 * tail / (np.abs(tail).max() + 1e-9) + early
    ir[0] = 1.0
    return (ir / np.sqrt((ir**2).sum())).astype(np.float32)


def reverb(y: np.ndarray, sr: int, rng: np.random.Generator, rt60_s: float) -> np.ndarray:
    """Convolve with a synthetic room of reverberation time ``rt60_s``; length is kept."""
    wet = fftconvolve(y, room_impulse(sr, rng, rt60_s))[: len(y)]
    return (wet * np.sqrt(signal_power(y) / signal_power(wet))).astype(np.float32)


def phone(y: np.ndarray, sr: int, rng: np.random.Generator, codec: str | None = None) -> np.ndarray:
    """A phone line: 300–3400 Hz at 8 kHz, through low-bitrate MP3 or GSM, back at ``sr``."""
    from pedalboard import GSMFullRateCompressor, HighpassFilter, LowpassFilter, MP3Compressor, Pedalboard

    narrow = to_rate(y, sr, 8000)
    band = Pedalboard([HighpassFilter(300.0), LowpassFilter(3400.0)])(narrow[None], 8000)
    codec = codec or rng.choice(["mp3", "gsm"])
    fx = MP3Compressor(vbr_quality=float(rng.uniform(6.0, 9.5))) if codec == "mp3" else GSMFullRateCompressor()
    coded = fx(band, 8000)[0][: len(narrow)]
    out = to_rate(coded, 8000, sr)
    return np.pad(out, (0, max(0, len(y) - len(out))))[: len(y)].astype(np.float32)


def change_speed(y: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch together, as a tape or sox `speed`)."""
    return to_rate(y, int(round(sr * factor)), sr)


def apply_gain(y: np.ndarray, gain_db: float) -> np.ndarray:
    return np.clip(y * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32)


def degrade(y: np.ndarray, sr: int, rng: np.random.Generator, noises: list[np.ndarray] | None = None,
            cfg: DegradeConfig = DegradeConfig(), music: np.ndarray | None = None) -> np.ndarray:
    """A random chain of the degradations above, as a phone in a noisy room would record.

    ``music``, another song's audio, is the interference of a ``cfg.p_music_noise`` share of noisy
    views: sustained pitched sounds are what the encoder confuses with music most (docs/BENCHMARKS.md).
    """
    length = len(y)
    if rng.random() < cfg.p_speed:
        y = change_speed(y, sr, rng.uniform(*cfg.speed))
    if rng.random() < cfg.p_reverb:
        y = reverb(y, sr, rng, rng.uniform(*cfg.rt60_s))
    if rng.random() < cfg.p_noise:
        snr_db = cfg.snr_db
        if music is not None and cfg.p_music_noise and rng.random() < cfg.p_music_noise:  # no draw when off
            noise, snr_db = random_eq(loop_to(music, len(y)), sr, rng), cfg.music_snr_db
        elif cfg.p_tonal_noise and rng.random() < cfg.p_tonal_noise:  # no draw when off: old runs replay
            noise = tonal_noise(len(y), sr, rng)
        elif noises and rng.random() < cfg.p_bank_noise:
            noise = pick_noise(len(y), rng, noises)
            if cfg.p_vary_noise and rng.random() < cfg.p_vary_noise:  # no draw when off: old runs replay
                noise = vary_noise(loop_to(noise, len(y)), sr, rng, noises, cfg.noise_rate)
        else:
            noise = colored_noise(len(y), rng, rng.choice([0.0, 1.0, 2.0]))
        y = mix_at_snr(y, noise, rng.uniform(*snr_db))
    if rng.random() < cfg.p_phone:
        y = phone(y, sr, rng)
    y = apply_gain(y / max(1.0, float(np.abs(y).max())), rng.uniform(*cfg.gain_db))
    return np.pad(y, (0, max(0, length - len(y))))[:length]


def loop_to(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` repeated or cut to exactly ``n`` samples."""
    return np.tile(y, int(np.ceil(n / max(len(y), 1))))[:n] if len(y) else np.zeros(n, np.float32)


def random_eq(y: np.ndarray, sr: int, rng: np.random.Generator, max_db: float = 12.0) -> np.ndarray:
    """Filter through a smooth random curve: gains of ±``max_db`` at 6 log-spaced frequencies."""
    m = next_fast_len(len(y), real=True)  # zero-padded to a fast FFT length (see colored_noise)
    spectrum = np.fft.rfft(y, m)
    freqs = np.fft.rfftfreq(m, 1.0 / sr)
    nodes = np.geomspace(50.0, sr / 2, 6)
    gain_db = np.interp(np.log(np.maximum(freqs, 50.0)), np.log(nodes), rng.uniform(-max_db, max_db, len(nodes)))
    return np.fft.irfft(spectrum * 10 ** (gain_db / 20), m)[: len(y)].astype(np.float32)


def vary_noise(noise: np.ndarray, sr: int, rng: np.random.Generator, noises: list[np.ndarray],
               rate: tuple[float, float] = (0.7, 1.4)) -> np.ndarray:
    """A noise the bank does not hold: ``noise`` played faster or slower (pitch with it), through
    a random EQ, and half the time with a second recording layered under it (a busier room).

    Training on a fixed set of recordings teaches the encoder those recordings; re-shaping
    them each time is what lets it meet sounds it never heard (see docs/BENCHMARKS.md).
    """
    n = len(noise)
    factor = rng.uniform(*rate)
    y = loop_to(change_speed(loop_to(noise, int(np.ceil(n * factor)) + 1), sr, factor), n)
    if rng.random() < 0.5:
        other = loop_to(pick_noise(n, rng, noises), n)
        y = y + other * np.sqrt(signal_power(y) / signal_power(other)) * 10 ** (rng.uniform(-10.0, 0.0) / 20)
    return random_eq(y, sr, rng)


TONAL_KINDS = ("notes", "call", "drone", "bell")


def tonal_noise(n: int, sr: int, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """A synthesized pitched sound of ``n`` samples, peak 1: interference that looks like music.

    Recorded noise banks are mostly broadband; what fools a music encoder is a sustained or
    gliding harmonic sound (a neighbour's instrument, an animal, a whining motor, a glass).
    Every draw has a new pitch, timbre and contour, so no sound is learnt by heart:

    - ``notes``: a few instrument-like notes (harmonic, attack–decay envelope, vibrato);
    - ``call``: gliding or warbling calls with gaps, as birds, animals or sirens make;
    - ``drone``: one long tone drifting slowly, as a motor, a mosquito or a held note;
    - ``bell``: struck inharmonic partials decaying at different rates (glass, bells, metal).
    """
    kind = kind or str(rng.choice(TONAL_KINDS))
    if kind == "bell":
        y = _struck_partials(n, sr, rng)
    else:
        f0, envelope = _contour(kind, n, sr, rng)
        y = _harmonic(f0, sr, rng) * envelope
    y = y + colored_noise(n, rng, float(rng.choice([0.0, 1.0, 2.0]))) * 10 ** (rng.uniform(-40.0, -15.0) / 20)
    return (y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def _contour(kind: str, n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental frequency [Hz] and amplitude envelope per sample for notes, calls and drones."""
    t = np.arange(n) / sr
    if kind == "drone":
        f0 = np.exp(rng.uniform(np.log(60.0), np.log(900.0))) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t
                                                                                       + rng.uniform(0, 6.3)))
        envelope = np.ones(n)
    else:
        f0, envelope = np.zeros(n), np.zeros(n)
        low, high = (80.0, 1500.0) if kind == "notes" else (200.0, 3000.0)
        start = int(rng.integers(0, max(1, n // 4)))
        while start < n:
            length = int(sr * (rng.uniform(0.15, 1.2) if kind == "notes" else rng.uniform(0.1, 0.8)))
            end = min(n, start + length)
            u = np.linspace(0.0, 1.0, end - start)
            pitch = np.exp(rng.uniform(np.log(low), np.log(high)))
            if kind == "call":  # a glide up or down, sometimes bent, sometimes warbling
                pitch = pitch * 2 ** (rng.uniform(-1.5, 1.5) * u + rng.uniform(0, 0.5) * np.sin(np.pi * u)
                                      + rng.uniform(0, 0.15) * np.sin(2 * np.pi * rng.uniform(5, 30) * u * length / sr))
            f0[start:end] = pitch
            attack = max(1, int(sr * rng.uniform(0.005, 0.08)))
            ramp = np.arange(end - start)
            shape = (np.minimum(1.0, ramp / attack) * np.minimum(1.0, (ramp[::-1] + 1) / (0.01 * sr))  # no clicks
                     * np.exp(-u * rng.uniform(0.0, 4.0)))
            envelope[start:end] = shape * rng.uniform(0.4, 1.0)
            start = end + int(sr * rng.uniform(0.0, 0.5 if kind == "notes" else 0.6))
        f0[f0 == 0] = 100.0  # gaps are silent; any pitch keeps the phase running
        vibrato = rng.uniform(0.0, 0.02) * np.sin(2 * np.pi * rng.uniform(4.0, 7.0) * t)
        f0 = f0 * (1 + vibrato)
    return f0, envelope


def _harmonic(f0: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Harmonics of ``f0`` with a random spectral tilt (odd ones only, sometimes: a clarinet, a square wave)."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    tilt, odd_only = rng.uniform(0.3, 2.5), rng.random() < 0.25
    y = np.zeros(len(f0))
    for k in range(1, int(rng.integers(1, 16)) + 1):
        if odd_only and k % 2 == 0:
            continue
        audible = f0 * k < sr / 2 - 500  # no aliasing
        y += audible * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) * k ** -tilt * rng.uniform(0.5, 1.0)
    return y


def _struck_partials(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One to four strikes of inharmonic partials, each partial decaying on its own."""
    t = np.arange(n) / sr
    y = np.zeros(n)
    base = np.exp(rng.uniform(np.log(200.0), np.log(2500.0)))
    ratios = np.concatenate([[1.0], np.sort(rng.uniform(1.2, 6.0, int(rng.integers(2, 8))))])
    ratios = ratios[base * ratios < sr / 2 - 500]
    for onset in np.sort(rng.uniform(0, t[-1] * 0.8, int(rng.integers(1, 5)))):
        later = np.clip(t - onset, 0, None)
        for r in ratios:
            y += (t >= onset) * np.sin(2 * np.pi * base * r * later) * np.exp(-later * rng.uniform(0.5, 6.0) * r ** 0.5) / r
    return y


def mask_spectrogram(patch: np.ndarray, rng: np.random.Generator, *, max_bins: int = 8, max_frames: int = 8,
                     p: float = 0.5) -> np.ndarray:
    """Seed-style frequency and time masking of a normalised patch [shape=(n_mels, frames)]."""
    patch = patch.copy()
    if rng.random() < p:
        width = rng.integers(1, max_bins + 1)
        start = rng.integers(0, patch.shape[0] - width + 1)
        patch[start : start + width, :] = 0.0
    if rng.random() < p:
        width = rng.integers(1, max_frames + 1)
        start = rng.integers(0, patch.shape[1] - width + 1)
        patch[:, start : start + width] = 0.0
    return patch


# The fixed test conditions of benchmarks and evaluations: one per clip, named.
CONDITIONS = ("clean", "noise", "phone", "reverb", "speed")


@dataclass(frozen=True)
class ConditionConfig:
    snr_db: tuple[float, float] = (0.0, 10.0)  # "noise": background at this SNR
    phone_snr_db: tuple[float, float] = (10.0, 20.0)  # "phone": some noise, then 300–3400 Hz at 8 kHz via MP3/GSM
    rt60_s: tuple[float, float] = (0.3, 0.9)  # "reverb": a synthetic room of this reverberation time
    speed_change: tuple[float, float] = (0.01, 0.03)  # "speed": faster or slower by this much


def pick_noise(n: int, rng: np.random.Generator, noises: list[np.ndarray] | None, info: dict | None = None) -> np.ndarray:
    """A stretch of a recorded noise (looped when short), or white/pink/brown noise when none are given.
    ``info``, when given, receives the index of the recording in ``noises`` (``noise_index``)."""
    if not noises:
        return colored_noise(n, rng, float(rng.choice([0.0, 1.0, 2.0])))
    index = int(rng.integers(len(noises)))
    if info is not None:
        info["noise_index"] = index
    noise = noises[index]
    start = int(rng.integers(max(1, len(noise) - n)))
    return noise[start : start + n]


def speed_factor(condition: str, rng: np.random.Generator, cfg: ConditionConfig = ConditionConfig()) -> float:
    """How much faster a condition plays (1.0 for all but "speed"); draw it before cutting the excerpt."""
    if condition != "speed":
        return 1.0
    return 1.0 + float(rng.choice([-1.0, 1.0])) * rng.uniform(*cfg.speed_change)


def apply_condition(clip: np.ndarray, condition: str, sr: int, rng: np.random.Generator,
                    noises: list[np.ndarray] | None = None, cfg: ConditionConfig = ConditionConfig(),
                    factor: float | None = None, info: dict | None = None) -> np.ndarray:
    """Degrade ``clip`` as one named condition (see :class:`ConditionConfig`), peak kept ≤ 1.

    "speed" plays the clip ``factor`` times faster (drawn here unless given), so its length
    changes; cut the excerpt ``factor`` times longer to get a clip of a given duration.
    ``info``, when given, receives what was drawn (``snr_db`` and ``noise_index`` for noisy
    conditions), so a benchmark can break results down without changing the random draws.
    """
    info = {} if info is None else info
    if condition == "clean":
        out = clip
    elif condition == "noise":
        noise = pick_noise(len(clip), rng, noises, info)
        info["snr_db"] = float(rng.uniform(*cfg.snr_db))
        out = mix_at_snr(clip, noise, info["snr_db"])
    elif condition == "phone":
        noise = pick_noise(len(clip), rng, noises, info)
        info["snr_db"] = float(rng.uniform(*cfg.phone_snr_db))
        out = phone(mix_at_snr(clip, noise, info["snr_db"]), sr, rng)
    elif condition == "reverb":
        out = reverb(clip, sr, rng, rng.uniform(*cfg.rt60_s))
    elif condition == "speed":
        out = change_speed(clip, sr, factor if factor is not None else speed_factor(condition, rng, cfg))
    else:
        raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")
    return (out / max(1.0, float(np.abs(out).max()))).astype(np.float32)
