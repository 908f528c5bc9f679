"""encoder/audio.py: every format decodes to mono float32 at 22,050 Hz; bad input fails clearly.

Every file is written here: soundfile (libsndfile) for WAV/FLAC/Ogg/Opus/MP3, PyAV (FFmpeg)
for M4A/AAC and WebM/Opus.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from tuneprint.encoder.audio import SAMPLE_RATE, load_audio, read_tags, to_rate
from tuneprint.errors import AudioError, TooShortError, UnreadableAudioError

SECONDS = 2.0
AMPLITUDE = 0.5
CODEC_SLACK_S = 0.1  # encoder priming/padding of lossy codecs (AAC 1024 samples, MP3 ≈1100, Opus 312)


def tone(freq: float = 440.0, sr: int = SAMPLE_RATE, seconds: float = SECONDS, amplitude: float = AMPLITUDE) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def spectral_peaks(y: np.ndarray, n: int = 1, sr: int = SAMPLE_RATE) -> list[float]:
    """Frequencies (Hz) of the ``n`` strongest, well-separated spectral peaks."""
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    peaks = []
    for _ in range(n):
        i = int(np.argmax(spectrum))
        peaks.append(float(freqs[i]))
        spectrum[np.abs(freqs - freqs[i]) < 50] = 0
    return sorted(peaks)


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def assert_decoded_tone(y: np.ndarray, *, lossless: bool, native_sr: int, native_len: int):
    assert y.dtype == np.float32 and y.ndim == 1
    expected = native_len * SAMPLE_RATE / native_sr
    if lossless:
        assert abs(len(y) - expected) <= 2, (len(y), expected)
    else:
        assert abs(len(y) - expected) <= CODEC_SLACK_S * SAMPLE_RATE, (len(y) / SAMPLE_RATE, expected / SAMPLE_RATE)
    assert np.all(np.abs(y) <= 1.0)
    assert spectral_peaks(y) == [pytest.approx(440.0, abs=2.0)]
    # the level is kept: no normalisation, no lost channel
    assert rms(y) == pytest.approx(AMPLITUDE / math.sqrt(2), rel=0.1 if lossless else 0.2)


def require(fmt: str, subtype: str):
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")


SOUNDFILE_CASES = [
    # (extension, libsndfile format, subtype, native rate, lossless)
    ("wav", "WAV", "PCM_U8", 8000, True),
    ("wav", "WAV", "PCM_16", 11025, True),
    ("wav", "WAV", "PCM_16", 16000, True),
    ("wav", "WAV", "PCM_24", 22050, True),
    ("wav", "WAV", "FLOAT", 32000, True),
    ("wav", "WAV", "PCM_16", 44100, True),
    ("wav", "WAV", "PCM_24", 48000, True),
    ("flac", "FLAC", "PCM_16", 44100, True),
    ("flac", "FLAC", "PCM_24", 48000, True),
    ("ogg", "OGG", "VORBIS", 44100, False),
    ("opus", "OGG", "OPUS", 48000, False),
    ("mp3", "MP3", "MPEG_LAYER_III", 44100, False),
]


@pytest.mark.parametrize("ext,fmt,subtype,sr,lossless", SOUNDFILE_CASES,
                         ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in SOUNDFILE_CASES])
def test_soundfile_formats(tmp_path, ext, fmt, subtype, sr, lossless):
    require(fmt, subtype)
    y = tone(sr=sr)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, y, sr, format=fmt, subtype=subtype)
    assert_decoded_tone(load_audio(path), lossless=lossless, native_sr=sr, native_len=len(y))


def write_pyav(path, y: np.ndarray, sr: int, codec: str, container: str) -> None:
    """Encode mono ``y`` with FFmpeg's ``codec`` into ``container`` (as a browser or phone would)."""
    import av

    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(y[None, :], format="fltp", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


PYAV_CASES = [("m4a", "aac", "mp4", 44100), ("webm", "libopus", "webm", 48000)]


@pytest.mark.parametrize("ext,codec,container,sr", PYAV_CASES, ids=[c[0] for c in PYAV_CASES])
def test_pyav_formats(tmp_path, ext, codec, container, sr):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    y = tone(sr=sr)
    path = tmp_path / f"tone.{ext}"
    write_pyav(path, y, sr, codec, container)
    with pytest.raises(RuntimeError):  # libsndfile cannot: the PyAV fallback is what reads it
        sf.info(str(path))
    assert_decoded_tone(load_audio(path), lossless=False, native_sr=sr, native_len=len(y))
    # an upload arrives as bytes, without a file name
    assert_decoded_tone(load_audio(path.read_bytes()), lossless=False, native_sr=sr, native_len=len(y))


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = tone(440.0), tone(880.0, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    y = load_audio(path)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)
    assert spectral_peaks(y, 2) == [pytest.approx(440.0, abs=2.0), pytest.approx(880.0, abs=2.0)]


def test_stereo_48k_flac_resampled(tmp_path):
    sr = 48000
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([tone(440.0, sr), tone(440.0, sr)], axis=1), sr, subtype="PCM_24")
    assert_decoded_tone(load_audio(path), lossless=True, native_sr=sr, native_len=int(SECONDS * sr))


def test_other_target_rate():
    y = tone(sr=SAMPLE_RATE)
    out = to_rate(y, SAMPLE_RATE, 16000)
    assert out.dtype == np.float32 and len(out) == int(SECONDS * 16000)
    assert spectral_peaks(out, sr=16000) == [pytest.approx(440.0, abs=2.0)]
    np.testing.assert_array_equal(to_rate(y, SAMPLE_RATE, SAMPLE_RATE), y)


def test_tags_are_read(tmp_path):
    path = tmp_path / "tagged.flac"
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, format="FLAC") as f:
        f.title, f.artist = "Night Train", "The Generators"
        f.write(tone())
    tags = read_tags(path)
    assert (tags.title, tags.artist) == ("Night Train", "The Generators")
    sf.write(tmp_path / "plain.wav", tone(), SAMPLE_RATE)
    assert read_tags(tmp_path / "plain.wav").title is None
    assert read_tags(tmp_path / "missing.wav").title is None  # tags are a courtesy, never an error


# -- bad input ------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(UnreadableAudioError, match="no such file"):
        load_audio(tmp_path / "nowhere.mp3")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    with pytest.raises(UnreadableAudioError, match="empty"):
        load_audio(path)
    with pytest.raises(UnreadableAudioError, match="empty"):
        load_audio(b"")


def test_text_file_named_mp3(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("These are my shopping notes, not a song.\n" * 20)
    with pytest.raises(UnreadableAudioError, match="not a readable audio file") as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_wav_without_samples(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(UnreadableAudioError):
        load_audio(path)


def test_non_finite_samples(tmp_path):
    y = tone()
    y[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, y, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(UnreadableAudioError, match="NaN"):
        load_audio(path)


@pytest.mark.parametrize("ext,fmt,subtype", [("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS")])
@pytest.mark.parametrize("keep", ["header", "half"])
def test_truncated_file(tmp_path, ext, fmt, subtype, keep):
    require(fmt, subtype)
    whole = tmp_path / f"whole.{ext}"
    sf.write(whole, tone(sr=44100), 44100, format=fmt, subtype=subtype)
    data = whole.read_bytes()
    path = tmp_path / f"truncated.{ext}"
    path.write_bytes(data[:40] if keep == "header" else data[: len(data) // 2])
    with pytest.raises(UnreadableAudioError, match="not a readable audio file"):
        load_audio(path)


def test_too_short(tmp_path):
    path = tmp_path / "blip.wav"
    sf.write(path, tone(seconds=0.2), SAMPLE_RATE)
    with pytest.raises(TooShortError, match=r"0\.20 s") as info:
        load_audio(path, min_seconds=1.0)
    assert isinstance(info.value, AudioError)
    assert len(load_audio(path)) == int(0.2 * SAMPLE_RATE)  # no minimum asked: it decodes


# -- bounded work: rates below 8 kHz refused, only the start of a long file read ----------------
@pytest.mark.parametrize("rate", [25, 100, 7999])
def test_a_rate_below_8khz_is_refused_before_decoding(tmp_path, rate):
    import time

    from tuneprint.errors import SampleRateError

    path = tmp_path / "hum.wav"
    sf.write(path, np.zeros(int(rate * 4000), np.float32), rate)  # thousands of seconds in a small file
    started = time.perf_counter()
    with pytest.raises(SampleRateError, match=f"{rate} Hz") as info:
        load_audio(path)
    assert time.perf_counter() - started < 1.0 and isinstance(info.value, AudioError)
    with pytest.raises(SampleRateError):
        load_audio(path.read_bytes())


def test_8khz_is_read():
    import io

    buf = io.BytesIO()
    sf.write(buf, tone(sr=8000), 8000, format="WAV")
    assert len(load_audio(buf.getvalue())) == pytest.approx(SECONDS * SAMPLE_RATE, abs=2)


@pytest.mark.parametrize("ext,fmt,subtype", [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"),
                                             ("mp3", "MP3", "MPEG_LAYER_III")])
def test_max_seconds_reads_only_the_start(tmp_path, ext, fmt, subtype):
    require(fmt, subtype)
    path = tmp_path / f"long.{ext}"
    sf.write(path, tone(sr=44100, seconds=12.0), 44100, format=fmt, subtype=subtype)
    assert len(load_audio(path, max_seconds=2.5)) == pytest.approx(2.5 * SAMPLE_RATE, abs=2)
    assert len(load_audio(path, max_seconds=60.0)) == pytest.approx(12.0 * SAMPLE_RATE, abs=CODEC_SLACK_S * SAMPLE_RATE)


def test_max_seconds_stops_ffmpeg_decoding(tmp_path):
    import av

    if "aac" not in av.codecs_available:
        pytest.skip("this FFmpeg build has no aac encoder")
    path = tmp_path / "long.m4a"
    write_pyav(path, tone(sr=44100, seconds=12.0), 44100, "aac", "mp4")
    y = load_audio(path, max_seconds=2.5)
    assert len(y) == pytest.approx(2.5 * SAMPLE_RATE, abs=2)
    assert spectral_peaks(y) == [pytest.approx(440.0, abs=2.0)]
