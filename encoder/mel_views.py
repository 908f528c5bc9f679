"""Degraded views made directly on log-mel power, in torch, for training on an accelerator.

The waveform degradations of :mod:`encoder.augment` cost tens of milliseconds of CPU per view, so
a GPU trained on them waits for the CPU. These functions approximate the same rooms, noises and
phones on mel *power* spectrograms, batched, on whatever device the tensors live on:

- noise only adds power: ``P = music + noise`` plus a random cross term, strongest in the low
  bands where a mel band spans few FFT bins (its phase does not average out);
- a room smears each band's power with an exponential tail (:func:`reverb`);
- speed changes scale time and frequency together (:func:`resample_view`, which also places the view
  a fraction of a frame off the anchor);
- a phone keeps 300–3400 Hz and nothing above 4 kHz; its codec errs by a few dB per cell (:func:`phone`);
- new noises are recorded ones re-shaped (rate, EQ), coloured noise, pitched sounds synthesized in
  the mel domain (:func:`tonal_noise`), or another song.

Tensors are power in linear units, shape ``(B, n_mels, T)``; :func:`to_patch` turns them into the
normalised patches of :func:`encoder.features.normalize_patch`. The anchor is never approximated:
it is the clean log-mel the index stores.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Generator

import numpy as np
import torch
import torch.nn.functional as F

from .features import FeatureConfig, _hz_to_mel, _mel_filters, mel_band_centres

POWER_FLOOR = 1e-10  # features.log_mel's floor


@dataclass(frozen=True)
class MelViewConfig:
    p_noise: float = 0.9
    snr_db: tuple[float, float] = (-3.0, 10.0)
    noise_mix: tuple[float, float, float, float] = (0.55, 0.15, 0.15, 0.15)  # recorded, coloured, tonal, another song
    music_snr_db: tuple[float, float] = (4.0, 14.0)
    p_second_noise: float = 0.3  # a second source in the same room
    p_vary_noise: float = 0.6  # recorded noise re-shaped: rate and EQ
    noise_rate: tuple[float, float] = (0.7, 1.4)
    eq_db: float = 12.0
    p_reverb: float = 0.6
    rt60_s: tuple[float, float] = (0.2, 1.0)
    drr_db: tuple[float, float] = (-6.0, 8.0)  # direct-to-reverberant energy ratio
    p_phone: float = 0.35
    p_speed: float = 0.3
    speed: tuple[float, float] = (0.97, 1.03)
    shift_frames: float = 4.3  # the view starts up to this far from the anchor (±0.2 s)
    p_mask: float = 0.3
    p_new_song: float = 0.0  # share of pairs whose song (anchor and view alike) is first played faster or slower:
    new_song_rate: tuple[float, float] = (0.94, 1.06)  # a recording the network has not memorised

    def to_dict(self) -> dict:
        return asdict(self)


def uniform(shape, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g, device=device)


def to_patch(power: torch.Tensor, features: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """Power (B, n_mels, T) → normalised patches in [0, 1], as ``normalize_patch(log_mel)``."""
    db = 10.0 * torch.log10(power.clamp_min(POWER_FLOOR))
    peak = db.amax(dim=(-2, -1), keepdim=True)
    return ((db - peak + features.top_db) / features.top_db).clamp(0.0, 1.0)


def signal_power(power: torch.Tensor) -> torch.Tensor:
    """Mean power of the louder half of frames (augment.signal_power's reference) [shape=(B,)]."""
    frames = power.sum(dim=1)
    top = frames.sort(dim=1).values[:, frames.shape[1] // 2 :]
    return top.mean(dim=1) + 1e-12


def mix(music: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor, g: torch.Generator,
        bins_per_band: torch.Tensor) -> torch.Tensor:
    """``music + noise`` with the noise scaled to ``snr_db`` below the music, plus the random cross
    term 2√(MN)·cos φ, averaged over the FFT bins each band spans."""
    scale = signal_power(music) / (signal_power(noise) * 10 ** (snr_db / 10))
    noise = noise * scale[:, None, None]
    cross = torch.randn(music.shape, generator=g, device=music.device) / bins_per_band.sqrt()[None, :, None]
    return (music + noise + 2.0 * (music * noise).sqrt() * cross.clamp(-0.7, 0.7)).clamp_min(POWER_FLOOR)


def reverb(power: torch.Tensor, rt60_s: torch.Tensor, drr_db: torch.Tensor, frame_s: float) -> torch.Tensor:
    """Each band's power convolved with a direct path plus an exponential tail (−60 dB at the band's
    RT60; high bands decay up to twice as fast), the tail carrying ``drr_db`` less energy than the direct path."""
    b, m, t = power.shape
    k = torch.arange(1, t, device=power.device, dtype=power.dtype)
    band_rt = rt60_s[:, None] * torch.linspace(1.0, 0.5, m, device=power.device)[None, :]  # (B, M)
    tail = torch.exp(-13.8 * k[None, None, :] * frame_s / band_rt[..., None])  # (B, M, t-1)
    tail = tail * (10 ** (-drr_db / 10))[:, None, None] / tail.sum(dim=-1, keepdim=True)
    kernel = torch.cat([torch.ones(b, m, 1, device=power.device, dtype=power.dtype), tail], dim=-1)
    n = 2 * t
    out = torch.fft.irfft(torch.fft.rfft(power, n=n) * torch.fft.rfft(kernel, n=n), n=n)[..., :t]
    return out.clamp_min(POWER_FLOOR)


@lru_cache(maxsize=8)
def band_hz(features: FeatureConfig, device) -> torch.Tensor:
    """Each mel band's centre frequency on ``device`` [shape=(n_mels,)]; made once, used every batch."""
    return torch.tensor(mel_band_centres(features), dtype=torch.float32, device=device)


def _band_position(hz: torch.Tensor, features: FeatureConfig) -> torch.Tensor:
    """Where frequencies ``hz`` fall on the band axis, as fractional band indices (Slaney mel is
    linear below 1 kHz, logarithmic above; band centres are equally spaced in mel)."""
    mel = torch.where(hz < 1000.0, hz / (200.0 / 3), 15.0 + torch.log(hz.clamp_min(1e-9) / 1000.0) / (np.log(6.4) / 27.0))
    top = float(_hz_to_mel(features.sample_rate / 2.0))
    step = top / (features.n_mels + 1)
    return mel / step - 1.0


def resample_view(region: torch.Tensor, start: torch.Tensor, frames: int, time_rate: torch.Tensor,
                  freq_ratio: torch.Tensor, features: FeatureConfig) -> torch.Tensor:
    """``frames`` frames of ``region`` (B, M, W) from fractional frame ``start``, read ``time_rate``
    frames per frame, with every frequency multiplied by ``freq_ratio`` (linear interpolation of power).

    A sound played ``r`` times as fast has ``time_rate = r`` and ``freq_ratio = r``.
    """
    b, m, w = region.shape
    device = region.device
    t = start[:, None] + torch.arange(frames, device=device)[None, :] * time_rate[:, None]  # (B, T)
    x = 2.0 * t / (w - 1) - 1.0
    hz = band_hz(features, device)
    y = _band_position(hz[None, :] / freq_ratio[:, None], features)  # (B, M): fractional band of each source frequency
    y = 2.0 * y / (m - 1) - 1.0
    grid = torch.stack([x[:, None, :].expand(b, m, frames), y[:, :, None].expand(b, m, frames)], dim=-1)
    out = F.grid_sample(region[:, None], grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]
    return out.clamp_min(POWER_FLOOR)


def random_eq(power: torch.Tensor, db: float, g: torch.Generator) -> torch.Tensor:
    """A smooth random EQ of ±``db`` across the bands (6 control points, interpolated)."""
    b, m, _ = power.shape
    points = uniform((b, 1, 6), -db, db, g, power.device)
    curve = F.interpolate(points, size=m, mode="linear", align_corners=True)[:, 0]
    return power * (10 ** (curve / 10))[:, :, None]


def coloured_noise(b: int, features: FeatureConfig, frames: int, g: torch.Generator, device,
                   bins_per_band: torch.Tensor) -> torch.Tensor:
    """White to brown noise (power ∝ f^−e, e in [0, 2]), with each cell's power fluctuating as the
    FFT bins it sums do, and a slow random swell."""
    hz = band_hz(features, device)
    e = uniform((b, 1, 1), 0.0, 2.0, g, device)
    shape = (hz[None, :, None] / 1000.0) ** (-e)
    dof = bins_per_band[None, :, None].clamp_min(1.0)
    fluct = torch.distributions.Gamma(dof.expand(b, -1, frames), dof.expand(b, -1, frames)).sample()
    swell = 10 ** (uniform((b, 1, 1), 0, 1, g, device) * 0.6 * torch.sin(
        torch.linspace(0, 6.28, frames, device=device)[None, None, :] * uniform((b, 1, 1), 0.2, 2.0, g, device)))
    return shape * fluct * swell


def tone_table(features: FeatureConfig, device) -> torch.Tensor:
    """Mel power of a unit sinusoid centred on each FFT bin, through the periodic Hann window's main
    lobe [shape=(n_fft // 2 + 1, n_mels)]."""
    filters = _mel_filters(features.sample_rate, features.n_fft, features.n_mels)  # (M, K)
    k = filters.shape[1]
    lobe = np.zeros((k, k), dtype=np.float32)
    for offset, w in ((-1, 0.25), (0, 1.0), (1, 0.25)):
        idx = np.arange(k) + offset
        ok = (idx >= 0) & (idx < k)
        lobe[np.arange(k)[ok], idx[ok]] = w
    return torch.from_numpy(lobe @ filters.T).to(device)


def tonal_noise(b: int, features: FeatureConfig, frames: int, g: torch.Generator, table: torch.Tensor) -> torch.Tensor:
    """Pitched sounds that are not the song: notes, drones, calls and bells, rendered straight into
    mel power — a harmonic series (f0 80–1500 Hz, 1–16 partials, random brightness), with vibrato,
    glides and an envelope (sustained, repeated notes, or decaying strikes)."""
    device = table.device
    n_partials = 16
    bin_hz = features.sample_rate / features.n_fft
    t = torch.arange(frames, device=device, dtype=torch.float32)[None, :]  # (1, T)
    f0 = torch.exp(uniform((b, 1), np.log(80.0), np.log(1500.0), g, device))
    vibrato = uniform((b, 1), 0.0, 0.03, g, device) * torch.sin(
        2 * np.pi * t * features.frame_seconds * uniform((b, 1), 3.0, 8.0, g, device) + uniform((b, 1), 0, 6.28, g, device))
    glide = uniform((b, 1), -0.3, 0.3, g, device) * t / frames * (torch.rand((b, 1), generator=g, device=device) < 0.3)
    pitch = f0 * (1.0 + vibrato) * torch.exp(glide)  # (B, T)
    h = torch.arange(1, n_partials + 1, device=device, dtype=torch.float32)[None, :]
    count = torch.randint(1, n_partials + 1, (b, 1), generator=g, device=device)
    inharmonic = uniform((b, 1), 0.0, 0.02, g, device) * (torch.rand((b, 1), generator=g, device=device) < 0.25)
    partial_hz = pitch[:, :, None] * (h * (1 + inharmonic * h ** 2))[:, None, :]  # (B, T, H)
    brightness = uniform((b, 1), 0.5, 3.0, g, device)
    amp = h ** (-brightness) * (h <= count) * uniform((b, n_partials), 0.3, 1.0, g, device)  # (B, H)
    pos = (partial_hz / bin_hz).clamp(0, table.shape[0] - 1.001)
    low = pos.floor().long()
    frac = (pos - low)[..., None]
    rows = table[low] * (1 - frac) + table[low + 1] * frac  # (B, T, H, M)
    audible = (partial_hz < features.sample_rate / 2 - bin_hz).float()[..., None]
    power = (rows * audible * amp[:, None, :, None] ** 2).sum(dim=2).transpose(1, 2)  # (B, M, T)
    return power * _envelopes(b, frames, g, device)[:, None, :]


def _envelopes(b: int, frames: int, g: torch.Generator, device) -> torch.Tensor:
    """Per example one of: sustained, repeated notes, decaying strikes [shape=(B, T)]."""
    t = torch.arange(frames, device=device, dtype=torch.float32)[None, :]
    kind = torch.randint(0, 3, (b, 1), generator=g, device=device)
    period = uniform((b, 1), 6.0, 30.0, g, device)
    phase = uniform((b, 1), 0.0, 1.0, g, device) * period
    within = torch.remainder(t + phase, period)
    duty = uniform((b, 1), 0.3, 0.9, g, device)
    repeated = (within < duty * period).float() + 1e-4
    decay = torch.exp(-within / uniform((b, 1), 2.0, 15.0, g, device))
    return torch.where(kind == 0, torch.ones_like(t).expand(b, -1), torch.where(kind == 1, repeated, decay))


def phone(power: torch.Tensor, features: FeatureConfig, g: torch.Generator) -> torch.Tensor:
    """A phone line: first-order 300 Hz high-pass and 3400 Hz low-pass, −20 dB from 3.7 kHz and
    nothing above 4 kHz (8 kHz sampling), and the codec's per-cell error of a few dB.

    Fitted to encoder.augment.phone (pedalboard filters, MP3/GSM at 8 kHz) on val songs: −11 dB at
    50 Hz, −2 dB at 3.1 kHz, −20 dB at 3.8 kHz; coded cells are within −5…+4 dB of the uncoded ones.
    """
    hz = band_hz(features, power.device)
    response = 1.0 / (1.0 + (300.0 / hz) ** 2) / (1.0 + (hz / 3400.0) ** 2)
    response = response * torch.where(hz < 3700.0, 1.0, 0.01) * (hz < 4000.0) + POWER_FLOOR
    b = power.shape[0]
    spread = uniform((b, 1, 1), 1.0, 3.0, g, power.device)
    error_db = -1.0 + spread * torch.randn(power.shape, generator=g, device=power.device)
    return (power * response[None, :, None] * 10 ** (error_db / 10)).clamp_min(POWER_FLOOR)


def mask(patches: torch.Tensor, p: float, g: torch.Generator, max_bins: int = 8, max_frames: int = 8) -> torch.Tensor:
    """Seed-style frequency and time masking of normalised patches (B, M, T), as augment.mask_spectrogram."""
    b, m, t = patches.shape
    device = patches.device
    out = patches.clone()
    for size, axis, limit in ((m, 1, max_bins), (t, 2, max_frames)):
        on = torch.rand(b, generator=g, device=device) < p
        width = torch.randint(1, limit + 1, (b,), generator=g, device=device)
        start = (torch.rand(b, generator=g, device=device) * (size - width + 1)).long()
        idx = torch.arange(size, device=device)[None, :]
        hit = on[:, None] & (idx >= start[:, None]) & (idx < (start + width)[:, None])
        out = out.masked_fill(hit[:, :, None] if axis == 1 else hit[:, None, :], 0.0)
    return out


def bins_per_band(features: FeatureConfig, device) -> torch.Tensor:
    """How many FFT bins each mel band sums (its filter's support) [shape=(n_mels,)]."""
    filters = _mel_filters(features.sample_rate, features.n_fft, features.n_mels)
    return torch.tensor((filters > 0).sum(axis=1).clip(1, None), dtype=torch.float32, device=device)


# --- spectrogram banks and pairs -------------------------------------------------------------

QUANT_STEP_DB = 0.5  # packed spectrograms: uint8 steps of 0.5 dB below each file's loudest cell (127.5 dB kept)


def quantize_db(db: np.ndarray) -> tuple[np.ndarray, float]:
    """A (n_mels, T) dB spectrogram → (T, n_mels) uint8 and the dB of code 0 (loudest − 127.5 dB)."""
    ref = float(db.max()) - 255 * QUANT_STEP_DB
    q = np.clip(np.round((db - ref) / QUANT_STEP_DB), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(q.T), ref


@dataclass
class MelBank:
    """Many spectrograms end to end on one device: ``db[start[i] : start[i] + length[i]]`` is file i,
    frames × bands, in dB; ``weight`` is how often a draw picks each file (in proportion to its length
    unless given)."""
    db: torch.Tensor  # (frames, n_mels), float16
    start: torch.Tensor  # (files,), int64
    length: torch.Tensor  # (files,), int64
    weight: torch.Tensor  # (files,), float32, sums to 1

    @classmethod
    def from_packed(cls, q: np.ndarray, ref: np.ndarray, length: np.ndarray, weight: np.ndarray | None, device) -> "MelBank":
        length_t = torch.as_tensor(length, dtype=torch.long)
        start = torch.cumsum(length_t, 0) - length_t
        per_frame_ref = torch.repeat_interleave(torch.as_tensor(ref, dtype=torch.float32), length_t)
        db = torch.as_tensor(q).float() * QUANT_STEP_DB + per_frame_ref[:, None]
        w = torch.as_tensor(weight, dtype=torch.float32) if weight is not None else length_t.float()
        return cls(db.half().to(device), start.to(device), length_t.to(device), (w / w.sum()).to(device))

    def draw(self, b: int, g: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.weight, b, replacement=True, generator=g)

    def frames(self, files: torch.Tensor, first: torch.Tensor, width: int, loop: bool = False) -> torch.Tensor:
        """Power of ``width`` frames of each file from frame ``first`` [shape=(B, n_mels, width)];
        ``loop`` wraps around short files, else frames are clamped to the file."""
        idx = first[:, None] + torch.arange(width, device=first.device)[None, :]
        n = self.length[files][:, None]
        idx = torch.remainder(idx, n) if loop else idx.clamp(torch.zeros_like(n), n - 1)
        db = self.db[self.start[files][:, None] + idx].float()  # (B, width, M)
        return (10 ** (db / 10)).transpose(1, 2)


class MelPairs:
    """(clean anchor, degraded view, song) batches drawn on the device from packed spectrograms."""

    context = 28  # frames of room before the view: a 1-s reverb tail, the shift and a speed change

    def __init__(self, music: MelBank, noise: MelBank, cfg: MelViewConfig = MelViewConfig(),
                 features: FeatureConfig = FeatureConfig()):
        self.music, self.noise, self.cfg, self.features = music, noise, cfg, features
        device = music.db.device
        self.bins = bins_per_band(features, device)
        self.table = tone_table(features, device)

    def batch(self, b: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        cfg, f, device = self.cfg, self.features, self.music.db.device
        t, c = f.patch_frames, self.context
        songs = self.music.draw(b, g)
        room = (self.music.length[songs] - t - 2 * c).clamp_min(1)
        first = (torch.rand(b, generator=g, device=device) * room).long()  # region start; the anchor is at + c
        region = self.music.frames(songs, first, t + 2 * c)
        if cfg.p_new_song:
            region = self._new_songs(songs, first, region, g)
        anchor = to_patch(region[:, :, c : c + t], f)

        on = lambda p: torch.rand(b, generator=g, device=device) < p
        rt60 = uniform(b, *cfg.rt60_s, g, device)
        drr = uniform(b, *cfg.drr_db, g, device)
        reverberant = on(cfg.p_reverb)
        region = torch.where(reverberant[:, None, None], reverb(region, rt60, drr, f.frame_seconds), region)
        rate = torch.where(on(cfg.p_speed), uniform(b, *cfg.speed, g, device), torch.ones(b, device=device))
        shift = uniform(b, -cfg.shift_frames, cfg.shift_frames, g, device)
        start = c + shift - (rate - 1) * t / 2  # keep the view's middle near the anchor's
        view = resample_view(region, start, t, rate, rate, f)

        noisy = on(cfg.p_noise)
        noise, is_song = self.noise_patches(b, songs, g)
        second, _ = self.noise_patches(b, songs, g)
        layered = on(cfg.p_second_noise)[:, None, None]
        noise = noise + layered * second * 10 ** (uniform((b, 1, 1), -6.0, 6.0, g, device) / 10) * (signal_power(noise) / signal_power(second))[:, None, None]
        snr = torch.where(is_song, uniform(b, *cfg.music_snr_db, g, device), uniform(b, *cfg.snr_db, g, device))
        view = torch.where(noisy[:, None, None], mix(view, noise, snr, g, self.bins), view)
        view = torch.where(on(cfg.p_phone)[:, None, None], phone(view, f, g), view)
        view = mask(to_patch(view, f), cfg.p_mask, g)
        return {"anchor": anchor[:, None], "view": view[:, None], "song": songs}

    # -- the view-source interface of encoder.training.fit -------------------------------------
    def fixed_batch(self, size: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
        """One batch drawn from ``seed`` (the validation pairs); it is made where the bank lives."""
        return self.batch(size, torch.Generator(device=self.music.db.device).manual_seed(seed))

    def stream(self, batch_size: int, device: torch.device, seed: int) -> Generator[dict[str, torch.Tensor], None, None]:
        """Endless batches from a generator seeded with ``seed``, made where the bank lives."""
        g = torch.Generator(device=self.music.db.device).manual_seed(seed)
        while True:
            yield self.batch(batch_size, g)

    def _new_songs(self, songs: torch.Tensor, first: torch.Tensor, region: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Replace a ``p_new_song`` share of regions by the same music played ``new_song_rate`` times as
        fast (tempo and pitch): on 73 songs the network memorises its training songs, and this makes
        more of them."""
        cfg, f, device = self.cfg, self.features, region.device
        b, _, width = region.shape
        rate = uniform(b, *cfg.new_song_rate, g, device)
        wide = self.music.frames(songs, first, int(np.ceil(width * cfg.new_song_rate[1])) + 2)
        warped = resample_view(wide, torch.zeros(b, device=device), width, rate, rate, f)
        chosen = torch.rand(b, generator=g, device=device) < cfg.p_new_song
        return torch.where(chosen[:, None, None], warped, region)

    def noise_patches(self, b: int, songs: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One noise patch per example, of the kind ``cfg.noise_mix`` draws; and which are another song."""
        cfg, f, device = self.cfg, self.features, self.music.db.device
        t = f.patch_frames
        # every kind is made for the whole batch and one picked per example: cheap on a GPU, no ragged batches
        kind = torch.multinomial(torch.tensor(cfg.noise_mix, dtype=torch.float32, device=device), b, replacement=True, generator=g)
        # recorded sounds, often re-shaped: played faster or slower (pitch with it) and re-equalised
        files = self.noise.draw(b, g)
        varied = torch.rand(b, generator=g, device=device) < cfg.p_vary_noise
        rate = torch.where(varied, torch.exp(uniform(b, *np.log(cfg.noise_rate), g, device)), torch.ones(b, device=device))
        width = int(np.ceil(t * cfg.noise_rate[1])) + 2
        first = (torch.rand(b, generator=g, device=device) * self.noise.length[files]).long()
        recorded = resample_view(self.noise.frames(files, first, width, loop=True), torch.zeros(b, device=device), t, rate, rate, f)
        recorded = torch.where(varied[:, None, None], random_eq(recorded, cfg.eq_db, g), recorded)
        coloured = coloured_noise(b, f, t, g, device, self.bins)
        tonal = tonal_noise(b, f, t, g, self.table)
        others = torch.remainder(songs + 1 + torch.randint(0, max(1, len(self.music.length) - 1), (b,), generator=g, device=device),
                                 len(self.music.length))
        room = (self.music.length[others] - t).clamp_min(1)
        song = self.music.frames(others, (torch.rand(b, generator=g, device=device) * room).long(), t)
        noise = torch.stack([recorded, coloured, tonal, song])[kind, torch.arange(b, device=device)]
        return noise.clamp_min(POWER_FLOOR), kind == 3
