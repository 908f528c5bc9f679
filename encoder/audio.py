"""Decode any audio file to mono float32 at one sample rate, at the boundary.

soundfile (libsndfile) reads WAV, FLAC, Ogg Vorbis, Opus and MP3; PyAV (FFmpeg)
is the fallback for M4A/AAC, WebM and anything else FFmpeg knows. Nothing
downstream of :func:`load_audio` ever sees another rate or channel count.
:func:`stream_audio` decodes the same way a block at a time, for recordings of hours.
"""
from __future__ import annotations

import io
import logging
import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from tuneprint.errors import SampleRateError, TooShortError, UnreadableAudioError

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
# Below the telephone band a file holds too little of the spectrum to fingerprint, and a tiny file
# then decodes to hours of audio at SAMPLE_RATE; beyond any recording format, a header is damaged.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 768_000
AUDIO_EXTENSIONS = frozenset({".ogg", ".oga", ".opus", ".mp3", ".flac", ".wav", ".m4a", ".aac", ".mp4", ".webm", ".aif", ".aiff"})


@dataclass(frozen=True)
class Tags:
    title: str | None = None
    artist: str | None = None


def load_audio(source: str | os.PathLike | bytes, *, sr: int = SAMPLE_RATE, min_seconds: float = 0.0,
               max_seconds: float | None = None) -> np.ndarray:
    """Decode ``source`` (a path or the bytes of a file) to mono float32 at ``sr``.

    ``max_seconds`` reads only the start of a longer file: decoding stops there (None: read it all).

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
    SampleRateError
        A native rate below ``MIN_SAMPLE_RATE`` (or above ``MAX_SAMPLE_RATE``), refused before decoding.
    """
    name = _describe(source)
    _check_source(source)
    try:
        y, native_sr = _read_soundfile(source, max_seconds)
    except SampleRateError:
        raise
    except Exception as sf_error:  # libsndfile refuses: try FFmpeg
        log.debug("soundfile could not read %s (%s); trying PyAV", name, sf_error)
        try:
            y, native_sr = _read_pyav(source, max_seconds)
        except SampleRateError:
            raise
        except Exception as av_error:
            # FFmpeg's errno and the file name it repeats mean nothing more to a user
            cause = getattr(av_error, "strerror", None) or av_error
            raise UnreadableAudioError(f"{name}: not a readable audio file ({cause})") from av_error

    if y.size == 0:
        raise UnreadableAudioError(f"{name}: the file holds no audio samples")
    if not np.all(np.isfinite(y)):
        raise UnreadableAudioError(f"{name}: the audio holds NaN or infinite samples")
    y = to_rate(y, native_sr, sr)
    if len(y) < min_seconds * sr:
        raise TooShortError(f"{name}: {len(y) / sr:.2f} s of audio, at least {min_seconds:.1f} s needed")
    return y


def stream_audio(source: str | os.PathLike | bytes, *, sr: int = SAMPLE_RATE,
                 block_s: float = 10.0) -> Iterator[np.ndarray]:
    """Decode ``source`` block by block, as :func:`load_audio` would, for recordings of hours.

    The file is opened (and refused) before the first block; then at most about ``block_s``
    seconds of audio are held at a time. MP3 and what libsndfile cannot read go through PyAV (so
    that no block holds descriptor 2 or the stderr lock for the whole file, as mpg123's notes
    would need); soxr resamples in a stream.

    Yields
    ------
    block : np.ndarray [shape=(m,), dtype=float32], 0 < m ≤ ``block_s`` · ``sr``
        Consecutive mono samples at ``sr``.

    Raises
    ------
    UnreadableAudioError
        Missing, empty or undecodable input, or a decoding error part of the way through (the
        blocks before it have been yielded).
    SampleRateError
        A native rate outside ``MIN_SAMPLE_RATE``–``MAX_SAMPLE_RATE``.
    """
    name = _describe(source)
    _check_source(source)
    native_sr, blocks = _open_blocks(source, block_s)
    most = max(1, int(block_s * sr))
    resampler = None if native_sr == sr else _stream_resampler(native_sr, sr)
    yielded = 0
    try:
        for block in blocks:
            if not np.all(np.isfinite(block)):
                raise UnreadableAudioError(f"{name}: the audio holds NaN or infinite samples")
            out = block if resampler is None else resampler.resample_chunk(block)
            for first in range(0, len(out), most):
                yielded += len(out[first : first + most])
                yield np.ascontiguousarray(out[first : first + most], dtype=np.float32)
        nothing = np.zeros(0, np.float32)
        tail = nothing if resampler is None else resampler.resample_chunk(nothing, last=True)
    except UnreadableAudioError:
        raise
    except Exception as e:  # a damaged stretch part of the way through
        cause = getattr(e, "strerror", None) or e
        raise UnreadableAudioError(f"{name}: decoding failed after {yielded / sr:.1f} s ({cause})") from e
    if len(tail):
        yielded += len(tail)
        yield np.ascontiguousarray(tail, dtype=np.float32)
    if yielded == 0:
        raise UnreadableAudioError(f"{name}: the file holds no audio samples")


def audio_seconds(source: str | os.PathLike) -> float | None:
    """The length of an audio file from its header, without decoding it; None where it does not say."""
    try:
        import soundfile as sf

        info = sf.info(str(source))
        if info.frames > 0 and info.samplerate > 0:
            return info.frames / info.samplerate
    except Exception:
        pass
    try:
        import av

        with av.open(str(source)) as container:
            if container.duration:
                return container.duration / 1_000_000  # av.time_base
            stream = container.streams.audio[0]
            return float(stream.duration * stream.time_base) if stream.duration else None
    except Exception:
        return None


def _open_blocks(source, block_s: float) -> tuple[int, Iterator[np.ndarray]]:
    """The native rate of ``source`` and a generator of its mono blocks at that rate (soundfile,
    else PyAV); raises here, before any block, if neither can open it."""
    if not _looks_like_mp3(source):
        try:
            return _soundfile_blocks(source, block_s)
        except SampleRateError:
            raise
        except Exception as sf_error:
            log.debug("soundfile could not open %s (%s); trying PyAV", _describe(source), sf_error)
    try:
        return _pyav_blocks(source, block_s)
    except SampleRateError:
        raise
    except Exception as av_error:
        cause = getattr(av_error, "strerror", None) or av_error
        raise UnreadableAudioError(f"{_describe(source)}: not a readable audio file ({cause})") from av_error


def _soundfile_blocks(source, block_s: float) -> tuple[int, Iterator[np.ndarray]]:
    import soundfile as sf

    f = sf.SoundFile(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source))
    native_sr = int(f.samplerate)
    try:
        _check_rate(source, native_sr)
    except SampleRateError:
        f.close()
        raise

    def blocks() -> Iterator[np.ndarray]:
        with f:
            while len(data := f.read(max(1, int(block_s * native_sr)), dtype="float32", always_2d=True)):
                yield data.mean(axis=1)
    return native_sr, blocks()


def _pyav_blocks(source, block_s: float) -> tuple[int, Iterator[np.ndarray]]:
    import av

    container = av.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source))
    try:
        stream, native_sr = _audio_stream(container, source)
    except BaseException:
        container.close()
        raise

    def blocks() -> Iterator[np.ndarray]:
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=native_sr)
        pending, have, most = [], 0, max(1, int(block_s * native_sr))
        with container:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray()[0])
                    have += len(pending[-1])
                if have >= most:
                    yield np.concatenate(pending).astype(np.float32)
                    pending, have = [], 0
            pending += [out.to_ndarray()[0] for out in resampler.resample(None)]
        if pending:
            yield np.concatenate(pending).astype(np.float32)
    return int(native_sr), blocks()


def _stream_resampler(orig_sr: int, sr: int):
    import soxr

    return soxr.ResampleStream(orig_sr, sr, 1, dtype="float32", quality="HQ")


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


def _check_source(source) -> None:
    """Refuse a missing or empty file or upload before any decoder sees it."""
    name = _describe(source)
    if not isinstance(source, (bytes, bytearray)):
        path = Path(source)
        if not path.is_file():
            raise UnreadableAudioError(f"{name}: no such file")
        if path.stat().st_size == 0:
            raise UnreadableAudioError(f"{name}: the file is empty")
    elif len(source) == 0:
        raise UnreadableAudioError(f"{name}: the upload is empty")


def _describe(source) -> str:
    return "upload" if isinstance(source, (bytes, bytearray)) else str(source)


def _check_rate(source, native_sr: int) -> None:
    if not MIN_SAMPLE_RATE <= native_sr <= MAX_SAMPLE_RATE:
        raise SampleRateError(f"{_describe(source)}: recorded at {native_sr} Hz; tuneprint reads "
                              f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")


def _frames(max_seconds: float | None, native_sr: int) -> int:
    """Frames to read at ``native_sr`` (-1: all)."""
    return -1 if max_seconds is None else max(int(max_seconds * native_sr), 1)


def _read_soundfile(source, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    import soundfile as sf  # here, not at the top: the encoder's other parts run where no codec is installed (an accelerator)

    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source)
    with _mpg123_notes_to_log(source), sf.SoundFile(handle) as f:
        native_sr = int(f.samplerate)
        _check_rate(source, native_sr)
        data = f.read(_frames(max_seconds, native_sr), dtype="float32", always_2d=True)
    return data.mean(axis=1), native_sr


_STDERR_LOCK = threading.Lock()
_MPG123_NOTE = re.compile(r"^(Note|Warning|Error): |^\[src/libmpg123/")


@contextmanager
def _mpg123_notes_to_log(source):
    """libsndfile's MP3 decoder (mpg123) prints notes on a damaged file ("Note: Illegal Audio-MPEG-Header
    ...") straight to file descriptor 2: for MP3 input, catch what reaches it meanwhile, log mpg123's
    lines at debug level and pass the rest (other threads' output) on.

    The lock keeps two threads from swapping descriptor 2 over each other.
    """
    if not _looks_like_mp3(source):
        yield
        return
    with _STDERR_LOCK, tempfile.TemporaryFile() as caught:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no descriptor 2 to borrow: decode as it is
            yield
            return
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            _pass_on(source, caught.read().decode("utf-8", "replace"))


def _pass_on(source, caught: str) -> None:
    """mpg123's lines to the debug log, anything else back to stderr."""
    lines = caught.splitlines(keepends=True)
    notes = [line.strip() for line in lines if _MPG123_NOTE.match(line)]
    others = "".join(line for line in lines if not _MPG123_NOTE.match(line))
    if notes:
        log.debug("%s: decoder notes: %s", _describe(source), " / ".join(notes))
    if others:
        sys.stderr.write(others)
        sys.stderr.flush()


def _looks_like_mp3(source) -> bool:
    """An .mp3 name, an ID3 tag or an MPEG frame sync at the start: what libsndfile hands to mpg123."""
    if isinstance(source, (bytes, bytearray)):
        head = bytes(source[:3])
    else:
        if str(source).lower().endswith((".mp3", ".mp2")):
            return True
        with open(source, "rb") as f:
            head = f.read(3)
    return head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _audio_stream(container, source):
    """The container's first audio stream and its sample rate (checked: a plausible one)."""
    if not container.streams.audio:
        raise ValueError("no audio stream")
    stream = container.streams.audio[0]
    native_sr = stream.codec_context.sample_rate or stream.rate
    if not native_sr:
        raise ValueError("no sample rate")
    _check_rate(source, native_sr)
    return stream, native_sr


def _read_pyav(source, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    import av

    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source)
    with av.open(handle) as container:
        stream, native_sr = _audio_stream(container, source)
        # Resample inside FFmpeg to planar float mono at the stream's own rate.
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=native_sr)
        wanted = _frames(max_seconds, native_sr)
        chunks, have = [], 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray()[0])
                have += len(chunks[-1])
            if 0 <= wanted <= have:  # enough: the rest of the file is never decoded
                break
        else:
            chunks += [out.to_ndarray()[0] for out in resampler.resample(None)]
    if not chunks:
        raise ValueError("no decodable audio frames")
    y = np.concatenate(chunks)
    return (y if wanted < 0 else y[:wanted]).astype(np.float32), int(native_sr)
