"""Log-mel spectrograms and the 64×64 patches the encoder reads.

All functions are pure: arrays in, arrays out, configured by :class:`FeatureConfig`.
Frames and patches are converted to seconds with the same config that made them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from functools import lru_cache

import numpy as np

from .audio import SAMPLE_RATE
from tuneprint.errors import SilentAudioError, TooShortError


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 2048
    hop_length: int = 1024  # ≈46 ms at 22,050 Hz
    n_mels: int = 64
    patch_frames: int = 64  # ≈2.97 s
    top_db: float = 80.0  # dynamic range kept below each patch's loudest bin
    silence_db: float = -70.0  # a patch whose loudest mel bin is below this is silence
    min_clip_seconds: float = 1.0  # shorter queries are refused; shorter than a patch are padded

    @property
    def frame_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    @property
    def patch_seconds(self) -> float:
        return self.patch_frames * self.frame_seconds

    def to_dict(self) -> dict:
        return asdict(self)


def log_mel(y: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Log-mel power spectrogram in dB relative to full scale.

    Centred frames (zero padding), periodic Hann window, Slaney mel filters: the same
    numbers as ``librosa.feature.melspectrogram`` + ``power_to_db(ref=1)``, without
    librosa's seconds of first-call start-up.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono audio at ``cfg.sample_rate``.

    Returns
    -------
    S_db : np.ndarray [shape=(n_mels, 1 + n // hop_length), dtype=float32]
    """
    padded = np.pad(np.asarray(y, dtype=np.float32), cfg.n_fft // 2)
    n_frames = 1 + (len(padded) - cfg.n_fft) // cfg.hop_length
    frames = np.lib.stride_tricks.sliding_window_view(padded, cfg.n_fft)[:: cfg.hop_length][:n_frames]
    import scipy.fft  # here, not at import: listing a library needs FeatureConfig, not the FFT

    power = np.abs(scipy.fft.rfft(frames * _hann(cfg.n_fft), axis=1)) ** 2
    mel = _mel_filters(cfg.sample_rate, cfg.n_fft, cfg.n_mels) @ power.T
    return (10.0 * np.log10(np.maximum(mel, 1e-10))).astype(np.float32)


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f < 1000.0, f / (200.0 / 3), 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0))


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m < 15.0, m * (200.0 / 3), 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)))


def mel_band_centres(cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Centre frequency in Hz of every mel bin [shape=(n_mels,)]."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(cfg.sample_rate / 2.0), cfg.n_mels + 2))
    return edges[1:-1]


@lru_cache(maxsize=8)
def _mel_filters(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular, area-normalised (Slaney) mel filters from 0 Hz to sr/2 [shape=(n_mels, 1 + n_fft // 2)]."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def patch_starts(n_frames: int, hop_frames: int, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """First frame of every patch, ``hop_frames`` apart, the last one flush with the end.

    Returns
    -------
    starts : np.ndarray [shape=(p,), dtype=int64]
        Empty when ``n_frames < cfg.patch_frames``.
    """
    last = n_frames - cfg.patch_frames
    if last < 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, last + 1, max(1, hop_frames), dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


def normalize_patch(patch_db: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Scale dB values to [0, 1] relative to each patch's own maximum.

    Per-patch scaling makes the features blind to playback volume.

    Parameters
    ----------
    patch_db : np.ndarray [shape=(..., n_mels, patch_frames)]
    """
    peak = patch_db.max(axis=(-2, -1), keepdims=True)
    return np.clip((patch_db - peak + cfg.top_db) / cfg.top_db, 0.0, 1.0).astype(np.float32)


def cut_patches(S_db: np.ndarray, starts: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Stack normalised patches of ``S_db`` beginning at ``starts``.

    Returns
    -------
    patches : np.ndarray [shape=(len(starts), n_mels, patch_frames), dtype=float32]
    """
    if len(starts) == 0:
        return np.zeros((0, cfg.n_mels, cfg.patch_frames), dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(S_db, cfg.patch_frames, axis=1)  # (mels, t', frames)
    return normalize_patch(np.ascontiguousarray(windows[:, starts].transpose(1, 0, 2)), cfg)


def is_loud(S_db: np.ndarray, starts: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Which patches hold signal above the silence floor [shape=(p,), dtype=bool]."""
    frame_peak = S_db.max(axis=0)
    return np.array([frame_peak[s : s + cfg.patch_frames].max() >= cfg.silence_db for s in starts], dtype=bool)


def audio_to_patches(
    y: np.ndarray, *, hop_frames: int, cfg: FeatureConfig = FeatureConfig(), pad: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The patches and their offsets of :func:`audio_to_patches_and_spectrogram`."""
    patches, offsets, _ = audio_to_patches_and_spectrogram(y, hop_frames=hop_frames, cfg=cfg, pad=pad)
    return patches, offsets


def audio_to_patches_and_spectrogram(
    y: np.ndarray, *, hop_frames: int, cfg: FeatureConfig = FeatureConfig(), pad: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn audio into the non-silent patches the encoder reads, and where each starts.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    hop_frames : int
        Frames between consecutive patch starts.
    pad : bool
        Pad audio shorter than one patch with silence (for short queries).

    Returns
    -------
    patches : np.ndarray [shape=(p, n_mels, patch_frames), dtype=float32], values in [0, 1]
    offsets_s : np.ndarray [shape=(p,), dtype=float32], start of each patch in seconds
    S_db : np.ndarray [shape=(n_mels, frames), dtype=float32], the log-mel spectrogram of the
        audio as given (unpadded), for verification (index/verify.py)

    Raises
    ------
    TooShortError
        Less than one patch of audio (or than ``min_clip_seconds`` with ``pad``).
    SilentAudioError
        No patch rises above the silence floor.
    """
    seconds = len(y) / cfg.sample_rate
    n_unpadded = len(y)
    if pad:
        if seconds < cfg.min_clip_seconds:
            raise TooShortError(f"clip is {seconds:.2f} s long; at least {cfg.min_clip_seconds:.1f} s needed")
        need = (cfg.patch_frames - 1) * cfg.hop_length
        if len(y) < need:
            y = np.pad(y, (0, need - len(y)))
    S_db = log_mel(y, cfg)
    starts = patch_starts(S_db.shape[1], hop_frames, cfg)
    if len(starts) == 0:
        raise TooShortError(f"audio is {seconds:.2f} s long; one patch needs {cfg.patch_seconds:.2f} s")
    loud = is_loud(S_db, starts, cfg)
    if not loud.any():
        raise SilentAudioError("the audio is silent (no signal above the silence floor)")
    starts = starts[loud]
    unpadded_frames = 1 + n_unpadded // cfg.hop_length
    return cut_patches(S_db, starts, cfg), (starts * cfg.frame_seconds).astype(np.float32), S_db[:, :unpadded_frames]
