"""Decode any audio file to mono float32 at one sample rate, at the boundary.

soundfile (libsndfile) reads WAV, FLAC, Ogg Vorbis, Opus and MP3; PyAV (FFmpeg)
is the fallback for M4A/AAC, WebM and anything else FFmpeg knows. Nothing
downstream of :func:`load_audio` ever sees another rate or channel count.
"""
from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneprint.errors import TooShortError, UnreadableAudioError

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
AUDIO_EXTENSIONS = frozenset({".ogg", ".oga", ".opus", ".mp3", ".flac", ".wav", ".m4a", ".aac", ".mp4", ".webm", ".aif", ".aiff"})


@dataclass(frozen=True)
class Tags:
    title: str | None = None
    artist: str | None = None


def load_audio(source: str | os.PathLike | bytes, *, sr: int = SAMPLE_RATE, min_seconds: float = 0.0) -> np.ndarray:
    """Decode ``source`` (a path or the bytes of a file) to mono float32 at ``sr``.

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]
        Samples in [-1, 1].

    Raises
    ------
    UnreadableAudioError
        Missing, empty or undecodable input.
    TooShortError
        Fewer than ``min_seconds`` of audio.
    """
    name = _describe(source)
    if not isinstance(source, (bytes, bytearray)):
        path = Path(source)
        if not path.is_file():
            raise UnreadableAudioError(f"{name}: no such file")
        if path.stat().st_size == 0:
            raise UnreadableAudioError(f"{name}: the file is empty")
    elif len(source) == 0:
        raise UnreadableAudioError(f"{name}: the upload is empty")

    try:
        y, native_sr = _read_soundfile(source)
    except Exception as sf_error:  # libsndfile refuses: try FFmpeg
        log.debug("soundfile could not read %s (%s); trying PyAV", name, sf_error)
        try:
            y, native_sr = _read_pyav(source)
        except Exception as av_error:
            raise UnreadableAudioError(f"{name}: not a readable audio file ({av_error})") from av_error

    if y.size == 0:
        raise UnreadableAudioError(f"{name}: the file holds no audio samples")
    if not np.all(np.isfinite(y)):
        raise UnreadableAudioError(f"{name}: the audio holds NaN or infinite samples")
    y = to_rate(y, native_sr, sr)
    if len(y) < min_seconds * sr:
        raise TooShortError(f"{name}: {len(y) / sr:.2f} s of audio, at least {min_seconds:.1f} s needed")
    return y


def to_rate(y: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """Resample mono ``y`` from ``orig_sr`` to ``sr`` (soxr, high quality)."""
    if orig_sr == sr:
        return np.ascontiguousarray(y, dtype=np.float32)
    import soxr

    return soxr.resample(y.astype(np.float32), orig_sr, sr, quality="HQ").astype(np.float32)


def read_tags(path: str | os.PathLike) -> Tags:
    """Title and artist from the file's tags, where it has them."""
    try:
        import av

        with av.open(str(path)) as container:
            meta = {k.lower(): v for k, v in container.metadata.items()}
            for stream in container.streams.audio:
                meta.update({k.lower(): v for k, v in stream.metadata.items() if k.lower() not in meta})
    except Exception:  # tags are a courtesy: an untagged or odd file still indexes
        return Tags()
    return Tags(title=meta.get("title") or None, artist=meta.get("artist") or meta.get("album_artist") or None)


def _describe(source) -> str:
    return "upload" if isinstance(source, (bytes, bytearray)) else str(source)


def _read_soundfile(source) -> tuple[np.ndarray, int]:
    import soundfile as sf  # here, not at the top: the encoder's other parts run where no codec is installed (an accelerator)

    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source)
    data, native_sr = sf.read(handle, dtype="float32", always_2d=True)
    return data.mean(axis=1), int(native_sr)


def _read_pyav(source) -> tuple[np.ndarray, int]:
    import av

    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source)
    with av.open(handle) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        native_sr = stream.codec_context.sample_rate or stream.rate
        # Resample inside FFmpeg to planar float mono at the stream's own rate.
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=native_sr)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray()[0])
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray()[0])
    if not chunks:
        raise ValueError("no decodable audio frames")
    return np.concatenate(chunks).astype(np.float32), int(native_sr)
