"""Training views through real speech and music codecs: a bank of the training songs as a phone hears them.

The mel-domain phone of :mod:`encoder.mel_views` (a filter response and a few dB of random error)
is a model of a codec; real low-bitrate codecs (AMR-NB, Opus, MP3 at 8 kHz) smear and drop whole
bands, and a fingerprint that only saw the model identified ≈40 % of 3-s clips of real phone calls.
Running a codec per training view is too slow on a CPU, so each training song is coded once per
chain here, and the views are cut from the coded spectrograms, aligned frame for frame with the
clean ones (:class:`CodecPairs`).

A chain here: zero-phase Butterworth band-pass 300–3400 Hz (scipy), polyphase resampling to 8 kHz,
an FFmpeg encoder and decoder (PyAV) at a bitrate of :data:`TRAIN_CODECS`, and back. The
benchmarks' chains (server/evaluation/phone_chain.py) are separate code with other bitrates, FFmpeg's
own filters, AGC, packet loss and held-out noises.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from .features import FeatureConfig, log_mel
from .mel_views import MelBank, MelViewConfig, bins_per_band, mix, quantize_db, to_patch, uniform

log = logging.getLogger(__name__)

PHONE_RATE = 8000
# (FFmpeg encoder, muxer, bits per second): each training song is coded by every one
TRAIN_CODECS = (("libopencore_amrnb", "amr", 12_200), ("libopencore_amrnb", "amr", 5_900),
                ("libopus", "ogg", 10_000), ("libmp3lame", "mp3", 16_000))
MAX_LAG_FRAMES = 12  # codec delays searched when aligning a coded song with its clean one


def coded(y: np.ndarray, sr: int, codec: tuple[str, str, int]) -> np.ndarray:
    """``y`` band-passed, at 8 kHz through ``codec`` and back at ``sr`` (not yet aligned).

    The benchmarks' chain (server/evaluation/phone_chain.py) drives PyAV the same way but is kept
    apart on purpose: what is measured must not be the code that made the training views."""
    import av
    from scipy.signal import butter, resample_poly, sosfiltfilt

    band = sosfiltfilt(butter(4, [300.0, 3400.0], "bandpass", fs=sr, output="sos"), y).astype(np.float32)
    ratio = Fraction(PHONE_RATE, sr)
    narrow = resample_poly(band, ratio.numerator, ratio.denominator).astype(np.float32)
    name, container, bit_rate = codec
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(name, rate=PHONE_RATE, layout="mono")
        stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(narrow[None, :], format="flt", layout="mono")
        frame.sample_rate = PHONE_RATE
        resampler = av.AudioResampler(format=stream.codec_context.codec.audio_formats[0].name, layout="mono",
                                      rate=PHONE_RATE)
        for part in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(part):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buffer.seek(0)
    parts = []
    with av.open(buffer) as container_in:  # decoders may answer at another rate (Opus: 48 kHz)
        back = av.AudioResampler(format="flt", layout="mono", rate=PHONE_RATE)
        for frame in container_in.decode(audio=0):
            parts += [f.to_ndarray().reshape(-1) for f in back.resample(frame)]
        parts += [f.to_ndarray().reshape(-1) for f in back.resample(None)]
    decoded = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return resample_poly(decoded, ratio.denominator, ratio.numerator).astype(np.float32)


def aligned_db(clean_db: np.ndarray, coded_db: np.ndarray) -> np.ndarray:
    """``coded_db`` shifted by the codec delay that best matches ``clean_db``'s frame loudness in the
    band, and cut or padded to its length [shape=clean_db.shape]."""
    t = clean_db.shape[1]
    band = slice(8, 40)  # ≈300–3400 Hz of the 64 mel bins
    a = clean_db[band].max(axis=0)[: t - MAX_LAG_FRAMES]
    best, best_lag = -np.inf, 0
    for lag in range(0, MAX_LAG_FRAMES + 1):
        b = coded_db[band, lag : lag + len(a)].max(axis=0)
        if len(b) < len(a):
            break
        score = np.corrcoef(a, b)[0, 1]
        if score > best:
            best, best_lag = score, lag
    out = coded_db[:, best_lag : best_lag + t]
    if out.shape[1] < t:
        out = np.pad(out, ((0, 0), (0, t - out.shape[1])), constant_values=float(out.min()) if out.size else -100.0)
    return out


def build_codec_bank(paths: Sequence[str], lengths: Sequence[int], features: FeatureConfig,
                     load: Callable[[str], np.ndarray],
                     progress: Callable[[Iterable], Iterable] = iter) -> dict[str, np.ndarray]:
    """For every codec of :data:`TRAIN_CODECS`, the coded log-mel of every file of ``paths``, aligned with
    its clean pack spectrogram of ``lengths[i]`` frames (keys ``q{k}``, ``ref{k}``; ``codecs``)."""
    qs = {k: [] for k in range(len(TRAIN_CODECS))}
    refs = {k: [] for k in range(len(TRAIN_CODECS))}
    for path, length in progress(list(zip(paths, lengths))):
        y = load(path)
        clean_db = log_mel(y, features)[:, :length]
        for k, codec in enumerate(TRAIN_CODECS):
            db = aligned_db(clean_db, log_mel(coded(y, features.sample_rate, codec), features))
            q, ref = quantize_db(db)
            qs[k].append(q)
            refs[k].append(ref)
    out = {"codecs": np.array([f"{n}@{b}" for n, _, b in TRAIN_CODECS]), "length": np.array(lengths, np.int64)}
    for k in qs:
        out[f"q{k}"] = np.concatenate(qs[k])
        out[f"ref{k}"] = np.array(refs[k], np.float32)
    return out


class CodecPairs:
    """(clean anchor, coded view) batches: the same frames of a training song, clean and through one of
    the bank's codecs (± a few frames), often with a recorded noise mixed in before."""

    def __init__(self, music: MelBank, coded_banks: list[MelBank], noise: MelBank, cfg: MelViewConfig = MelViewConfig(),
                 features: FeatureConfig = FeatureConfig(), snr_db: tuple[float, float] = (0.0, 20.0), p_noise: float = 0.8):
        self.music, self.coded, self.noise, self.cfg, self.features = music, coded_banks, noise, cfg, features
        self.snr_db, self.p_noise = snr_db, p_noise
        self.bins = bins_per_band(features, music.db.device)

    def batch(self, b: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        f, t = self.features, self.features.patch_frames
        songs = self.music.draw(b, g)
        room = (self.music.length[songs] - t - 8).clamp_min(1)
        first = 4 + (torch.rand(b, generator=g) * room).long()
        anchor = to_patch(self.music.frames(songs, first, t), f)
        which = torch.randint(0, len(self.coded), (b,), generator=g)
        shift = torch.randint(-3, 4, (b,), generator=g)
        views = torch.stack([bank.frames(songs, first + shift, t) for bank in self.coded])[which, torch.arange(b)]
        files = self.noise.draw(b, g)
        noise = self.noise.frames(files, (torch.rand(b, generator=g) * self.noise.length[files]).long(), t, loop=True)
        noisy = torch.rand(b, generator=g) < self.p_noise
        band_limited_noise = noise * views.mean(dim=2, keepdim=True) / views.mean(dim=2, keepdim=True).clamp_min(1e-12).amax(dim=1, keepdim=True)
        mixed = mix(views, band_limited_noise, uniform(b, *self.snr_db, g, views.device), g, self.bins)
        views = torch.where(noisy[:, None, None], mixed, views)
        return {"anchor": anchor[:, None], "view": to_patch(views, f)[:, None], "song": songs}
