"""Real phone chains for the benchmarks: FFmpeg's filters and speech codecs, through PyAV.

The phone condition the encoder trains on and the one the older benchmarks measure are made by the
project's own code (``encoder.augment.phone``: pedalboard's MP3 and GSM models;
``encoder.mel_views.phone`` in the mel domain). Measured with the same code, the figure measures
that code: 97–99 % there fell to about 70 % with a real chain. This module shares nothing with
them. A chain is:

    music + recorded noise at an SNR (a phone in a room)
      >> FFmpeg highpass 300 Hz, lowpass 3400 Hz (the telephone band), aresample to 8 kHz
      >> automatic gain control (FFmpeg ``acompressor`` or ``dynaudnorm``)
      >> a real encoder and decoder at a low bitrate (libmp3lame, libopencore_amrnb, libopus)
      >> lost packets: 20-ms frames dropped to silence, as a call without concealment
      >> back to the library's rate

Two chains are named (:data:`CHAINS`): ``phone-call`` (the issue's phone-in-a-noisy-room call,
5–15 dB, MP3 at 16 kb/s or AMR-NB at 12.2 kb/s) and ``phone-harsh`` (0–10 dB, 4.75–8 kb/s codecs,
heavy AGC and 3 % packet loss).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

PHONE_RATE = 8000
FRAME_S = 0.02  # a speech codec's packet


@dataclass(frozen=True)
class Codec:
    name: str  # FFmpeg encoder
    container: str  # FFmpeg muxer that carries it
    bit_rate: int  # bits per second


@dataclass(frozen=True)
class PhoneChain:
    snr_db: tuple[float, float]  # recorded noise under the music, drawn uniformly
    codecs: tuple[Codec, ...]  # one drawn per clip
    agc: tuple[str, ...]  # FFmpeg filters, one drawn per clip ("" = none)
    packet_loss: float = 0.0  # share of 20-ms frames lost


CHAINS = {
    "phone-call": PhoneChain(
        snr_db=(5.0, 15.0),
        codecs=(Codec("libmp3lame", "mp3", 16_000), Codec("libopencore_amrnb", "amr", 12_200)),
        agc=("", "acompressor=threshold=0.125:ratio=3:attack=5:release=100")),
    "phone-harsh": PhoneChain(
        snr_db=(0.0, 10.0),
        codecs=(Codec("libopencore_amrnb", "amr", 4_750), Codec("libopencore_amrnb", "amr", 7_400),
                Codec("libopus", "ogg", 6_000), Codec("libmp3lame", "mp3", 8_000)),
        agc=("dynaudnorm=f=100:g=5", "acompressor=threshold=0.06:ratio=8:attack=2:release=50"),
        packet_loss=0.03),
}


def mix_at_snr(music: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``music`` with a random stretch of ``noise`` (looped when shorter) at ``snr_db`` (mean power)."""
    n = len(music)
    reps = int(np.ceil((n + 1) / max(len(noise), 1)))
    looped = np.tile(noise, reps)
    start = int(rng.integers(0, max(1, len(looped) - n)))
    stretch = looped[start : start + n]
    p_music, p_noise = float(np.mean(music**2)), float(np.mean(stretch**2))
    if p_noise <= 0 or p_music <= 0:
        return music.astype(np.float32)
    gain = np.sqrt(p_music / (p_noise * 10 ** (snr_db / 10)))
    mixed = music + gain * stretch
    return (mixed / max(1.0, float(np.abs(mixed).max()))).astype(np.float32)


def ffmpeg_filter(y: np.ndarray, sr: int, filters: str) -> tuple[np.ndarray, int]:
    """``y`` through an FFmpeg filter chain (``"highpass=f=300,aresample=8000"``); returns samples and rate."""
    import av

    graph = av.filter.Graph()
    nodes = [graph.add_abuffer(format="flt", sample_rate=sr, layout="mono")]
    for spec in filters.split(","):
        name, _, args = spec.partition("=")
        nodes.append(graph.add(name, args or None))
    nodes.append(graph.add("aformat", "sample_fmts=flt:channel_layouts=mono"))
    nodes.append(graph.add("abuffersink"))
    graph.link_nodes(*nodes).configure()
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y, dtype=np.float32)[None, :], format="flt", layout="mono")
    frame.sample_rate, frame.pts = sr, 0
    graph.push(frame)
    graph.push(None)
    out, rate = [], sr
    while True:
        try:
            f = graph.pull()
        except (av.error.EOFError, av.error.BlockingIOError):
            break
        out.append(f.to_ndarray().reshape(-1))
        rate = f.sample_rate
    return (np.concatenate(out) if out else np.zeros(0, np.float32)).astype(np.float32), rate


def codec_round_trip(y: np.ndarray, sr: int, codec: Codec) -> np.ndarray:
    """``y`` (mono at ``sr``) encoded by FFmpeg's ``codec`` into its container in memory and decoded again."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=codec.container) as out:
        stream = out.add_stream(codec.name, rate=sr, layout="mono")
        stream.bit_rate = codec.bit_rate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y, dtype=np.float32)[None, :], format="flt", layout="mono")
        frame.sample_rate = sr
        resampler = av.AudioResampler(format=stream.codec_context.codec.audio_formats[0].name, layout="mono", rate=sr)
        for part in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(part):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buffer.seek(0)
    decoded = []
    with av.open(buffer) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        for frame in container.decode(audio=0):
            decoded += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        decoded += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(decoded).astype(np.float32)[: len(y)] if decoded else np.zeros(0, np.float32)


def drop_packets(y: np.ndarray, sr: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """``y`` with ``share`` of its 20-ms frames lost (silence)."""
    if share <= 0:
        return y
    frame = int(round(FRAME_S * sr))
    lost = rng.random(int(np.ceil(len(y) / frame))) < share
    mask = np.repeat(~lost, frame)[: len(y)]
    return (y * mask).astype(np.float32)


BAND = "highpass=f=300:poles=2,highpass=f=300:poles=2,lowpass=f=3400:poles=2,lowpass=f=3400:poles=2"  # 4th order each


def narrowband(y: np.ndarray, sr: int, noise: np.ndarray, chain: PhoneChain,
               rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """``y`` (mono at ``sr``) through ``chain`` up to the far end's decoder: samples at :data:`PHONE_RATE`,
    and what was drawn (SNR, codec, bitrate, AGC)."""
    snr = float(rng.uniform(*chain.snr_db))
    codec = chain.codecs[int(rng.integers(len(chain.codecs)))]
    agc = chain.agc[int(rng.integers(len(chain.agc)))]
    filters = f"{BAND},aresample={PHONE_RATE}" + (f",{agc}" if agc else "")
    narrow, rate = ffmpeg_filter(mix_at_snr(y, noise, snr, rng), sr, filters)
    coded = drop_packets(codec_round_trip(narrow, rate, codec), rate, chain.packet_loss, rng)
    return coded, {"snr_db": round(snr, 2), "codec": codec.name, "bit_rate": codec.bit_rate, "agc": agc}


def phone_call(y: np.ndarray, sr: int, noise: np.ndarray, chain: PhoneChain, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """``y`` (mono at ``sr``) as heard at the far end of ``chain``, back at ``sr`` and as long as ``y``."""
    coded, drawn = narrowband(y, sr, noise, chain, rng)
    back, _ = ffmpeg_filter(coded, PHONE_RATE, f"aresample={sr}")
    return np.pad(back, (0, max(0, len(y) - len(back))))[: len(y)].astype(np.float32), drawn
