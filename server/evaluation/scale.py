"""Scale benchmark: the 30-song benchmark library grown with distractor songs up to millions of
stored vectors, and what that does to identification, speed, memory and disk.

Distractors are real fingerprints of music that is not in the library: every other song of the
development corpus (and its style collections), played faster or slower (pitch and tempo shift
together, by resampling) so that each copy is new audio. They are embedded once into a cache of
codes (the shipped codec's), offsets and verification views, then committed to the library 25
songs at a time through the library's own commit, timing each commit (the add-time curve).

At each size the same clips are answered: 3-s clips of the library's songs with recorded noise
and phone-like (`noise`, `phone`), and clean and noisy clips of songs outside it ("unknown").

Past the cached real distractors (≈1 M vectors: embedding more runs at ≈360 vectors a second on a
2-core CPU), ``copies`` rounds of *synthetic* distractors can follow: each a real distractor song
blended, patch by patch, with another one (:func:`blended_copy`), as far from its original as a
copy 3 % slower is from one 3 % faster. They measure what size alone costs (time, memory, disk)
and are a stand-in, not a measurement, for what millions of real songs do to the answers.
"""
from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.landmarks import DEFAULT as LANDMARKS, Landmarks, landmarks
from tuneprint.encoder.embeddings import Embeddings
from tuneprint.index.catalog import Song
from tuneprint.index.verify import verification_view

from .benchmark import OUTSIDER_CONDITIONS, held_out_songs
from .clips import random_clips
from .corpus import split_corpus

log = logging.getLogger(__name__)

MEMBER_CONDITIONS = ("noise", "phone")


@dataclass(frozen=True)
class ScaleConfig:
    sizes: tuple[int, ...] = (100_000, 300_000, 1_000_000)  # stored vectors at which clips are answered
    speeds: tuple[float, ...] = (0.94, 1.06, 0.97, 1.03, 0.91, 1.09, 0.88, 1.12, 0.85, 1.15, 0.82, 1.18)
    clips_per_song: int = 4  # per song and condition
    seed: int = 7
    batch_songs: int = 25  # distractor songs per commit
    copies: int = 0  # rounds of synthetic copies of the cached distractors after them (blended_copy)
    copy_mix: float = 0.5  # weight of the other song in a copy: median cosine to its original 0.90, as between a song 3 % slower and 3 % faster (0.89)


@dataclass
class SizePoint:
    vectors: int
    songs: int
    hit: dict[str, float]  # condition → share of member clips answered with the right song
    wrong: dict[str, float]  # condition → share answered with another song
    unknown: float  # share of outsider clips answered "unknown"
    p50_ms: float
    p99_ms: float
    rss_mb: float
    index_mb: float
    catalog_mb: float
    build_s: float  # commits so far (embedding of distractors excluded: it is cached)
    synthetic: int = 0  # stored vectors of synthetic copies (ScaleConfig.copies), not real songs


@dataclass
class ScaleResult:
    points: list[SizePoint] = field(default_factory=list)
    commits: list[tuple[int, float, int]] = field(default_factory=list)  # (vectors before, seconds, vectors added)
    distractor_embed_s: float = 0.0
    distractor_audio_h: float = 0.0


def distractor_sources(corpus: Path, exclude: set[str]) -> list[Path]:
    """Every music file of the corpus that is neither in the benchmark library nor kept out of it."""
    files = sorted(p for p in (corpus / "music").rglob("*") if p.suffix.lower() in {".ogg", ".mp3", ".flac", ".wav"})
    return [p for p in files if str(p) not in exclude and str(p.resolve()) not in exclude]


FASTER_VERSION = re.compile(r"_(fast|f)$")  # SuperTuxKart ships tracks again, faster: "celtic_fast", "farm_f"


def variant_key(stem: str) -> str:
    """A cache stem without a faster version's suffix: a copy of "ravenbridge_mansion_fast" played at
    0.94× is the clip's own music, not a stranger."""
    return FASTER_VERSION.sub("", stem)


def song_stem(path: str) -> str:
    """How the distractor cache names a song's copies (``collection--file stem``), faster versions folded."""
    p = Path(path)
    return variant_key(f"{p.parent.name}--{p.stem}")


def cached_distractors(cache: Path, exclude: list[str]) -> list[Path]:
    """The cached distractor files, in their fixed order, without copies of the songs at ``exclude``
    (paths) or of their faster versions: those are the clips' own music, not strangers."""
    stems = {song_stem(path) for path in exclude}
    return [f for f in sorted(cache.glob("*.npz")) if variant_key(f.stem.rsplit("--", 1)[0]) not in stems]


def shifted(y: np.ndarray, speed: float) -> np.ndarray:
    """``y`` played ``speed`` times as fast (pitch and tempo together), by polyphase resampling."""
    ratio = Fraction(speed).limit_denominator(100)
    from scipy.signal import resample_poly

    return resample_poly(y, ratio.denominator, ratio.numerator).astype(np.float32)


def make_distractors(lib, sources: list[Path], speeds, target: int, cache: Path) -> tuple[float, float]:
    """Embed shifted copies of ``sources`` into ``cache`` (one .npz a copy: codes, offsets, view) until
    it holds ``target`` vectors; returns (seconds spent embedding now, hours of audio in the cache)."""
    cache.mkdir(parents=True, exist_ok=True)
    codec = library_codec(lib)
    have = sum(int(np.load(f)["offsets"].shape[0]) for f in cache.glob("*.npz"))
    spent, sr = 0.0, lib.features.sample_rate
    for speed in speeds:
        for path in sources:
            if have >= target:
                return spent, _cache_hours(cache)
            out = cache / f"{path.parent.name}--{path.stem}--x{speed:.2f}.npz"
            if out.exists():
                continue
            started = time.perf_counter()
            try:
                y = shifted(load_audio(path, sr=sr), speed)
            except Exception as e:  # an unreadable file is skipped, not fatal
                log.warning("skipping %s: %s", path, e)
                continue
            emb = lib.embedder.embed_audio(y, hop_frames=lib.settings.index_hop_frames)
            codes = codec.sa_encode(np.ascontiguousarray(emb.vectors))
            view = verification_view(emb.spectrogram, lib.features).astype(np.float16)
            np.savez(out, codes=codes, offsets=emb.offsets_s, view=view, seconds=len(y) / sr)
            if emb.landmarks is not None:
                _save_landmarks(cache, out, emb.landmarks)
            have += len(codes)
            spent += time.perf_counter() - started
            log.info("distractors: %d vectors (%s x%.2f)", have, path.name, speed)
    return spent, _cache_hours(cache)


def library_codec(lib):
    """The codec shipped with the library's encoder: distractors are cached as its codes, whatever codec
    the library itself encodes with (a library with another one, e.g. an IVF codec, encodes the decoded
    vectors again)."""
    from tuneprint.index.vectors import IndexConfig
    from tuneprint.server.codec import shipped_codec_for

    shipped = shipped_codec_for(lib.model_id, IndexConfig.faiss_factory)
    if shipped is None:
        raise ValueError(f"no shipped codec for encoder {lib.model_id} and {IndexConfig.faiss_factory!r}")
    return shipped[0]


def _cache_hours(cache: Path) -> float:
    return sum(float(np.load(f)["seconds"]) for f in cache.glob("*.npz")) / 3600


def distractor_batches(lib, cache: Path, batch: int, files: list[Path] | None = None, copies: int = 0,
                       mix: float = ScaleConfig.copy_mix, seed: int = 0):
    """The cached distractors as (Song, Embeddings) batches of ``batch`` songs, in a fixed order (or
    those of ``files``, in theirs); then ``copies`` rounds of synthetic copies of them."""
    codec = library_codec(lib)
    files = sorted(cache.glob("*.npz")) if files is None else files
    rows = []
    for round_ in range(copies + 1):
        rng = np.random.default_rng([seed, round_])
        for f in files:
            row = _distractor(codec, f, with_landmarks=not round_)  # a blended copy has no audio, so no landmarks
            if round_:
                row = blended_copy(row, _distractor(codec, _other_song(files, f, rng), with_landmarks=False), mix, round_)
            rows.append(row)
            if len(rows) == batch:
                yield rows
                rows = []
    if rows:
        yield rows


def _distractor(codec, f: Path, with_landmarks: bool = True) -> tuple[Song, Embeddings]:
    data = np.load(f)
    vectors = codec.sa_decode(data["codes"])
    song = Song(f"distractor-{f.stem}", str(f), f.stem, None, float(data["seconds"]), f"distractor:{f.stem}",
                ("distractor",))
    return song, Embeddings(vectors.astype(np.float32), data["offsets"], data["view"].astype(np.float32),
                            landmarks=_cached_landmarks(f) if with_landmarks else None)


LANDMARKS_DIR = "landmarks"  # beside the cache's .npz files: each distractor's landmarks (encoder/landmarks.py)


def _landmarks_file(f: Path) -> Path:
    return f.parent / LANDMARKS_DIR / f.name


def _save_landmarks(cache: Path, f: Path, lm: Landmarks) -> None:
    (cache / LANDMARKS_DIR).mkdir(exist_ok=True)
    path = _landmarks_file(f)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # two runs filling one cache never read half a file
    np.savez(tmp, hashes=lm.hashes, frames=lm.frames)
    os.replace(tmp, path)


def _cached_landmarks(f: Path) -> Landmarks | None:
    path = _landmarks_file(f)
    if not path.is_file():
        return None
    data = np.load(path)
    return Landmarks(data["hashes"], data["frames"])


def cache_landmarks(files: list[Path], corpus: Path, progress=None) -> int:
    """Give the cached distractors ``files`` that have none their landmarks, from their source songs in
    ``corpus`` (caches filled before landmarks existed); returns how many were computed."""
    done = 0
    for f in files:
        if _landmarks_file(f).is_file():
            continue
        collection, stem, speed = f.stem.split("--")
        source = next((corpus / "music" / collection).glob(f"{stem}.*"), None)
        if source is None:
            log.warning("no source song for %s in %s", f.name, corpus)
            continue
        y = shifted(load_audio(source, sr=LANDMARKS.sample_rate), float(speed.removeprefix("x")))
        _save_landmarks(f.parent, f, landmarks(y, LANDMARKS.sample_rate))
        done += 1
        if progress:
            progress(f)
    return done


def _other_song(files: list[Path], f: Path, rng: np.random.Generator) -> Path:
    """A random distractor of another source song than ``f``."""
    own = f.stem.rsplit("--", 1)[0]
    while True:
        other = files[int(rng.integers(len(files)))]
        if other.stem.rsplit("--", 1)[0] != own or len(files) == 1:
            return other


def blended_copy(row: tuple[Song, Embeddings], other: tuple[Song, Embeddings], mix: float,
                 round_: int) -> tuple[Song, Embeddings]:
    """A synthetic distractor song: each patch vector of ``row`` plus ``mix`` times the vector of
    ``other`` at the same position (cycled), normalised; offsets and verification view are ``row``'s.
    Time-coherent like a real song, and on the fingerprints' manifold, but not the embedding of audio."""
    song, emb = row
    v, u = emb.vectors, other[1].vectors
    blended = v + mix * u[np.arange(len(v)) % len(u)]
    blended /= np.maximum(np.linalg.norm(blended, axis=1, keepdims=True), 1e-12)
    copy = Song(f"{song.song_id}-copy{round_}", song.path, f"{song.title} (copy {round_})", None, song.duration_s,
                f"{song.audio_hash}-copy{round_}", song.labels)
    return copy, Embeddings(blended.astype(np.float32), emb.offsets_s, emb.spectrogram)


def cut_query_clips(lib, members, outsiders, noises, cfg: ScaleConfig) -> list[tuple[str | None, str, object]]:
    """(true song id or None, condition, embeddings) of every clip, embedded once."""
    rng = np.random.default_rng(cfg.seed)
    sr = lib.features.sample_rate
    truth = {s.path: s.song_id for s in lib.tracks()}
    clips = []
    for path, _ in members + outsiders:
        y = load_audio(path, sr=sr)
        member = path in truth
        for clip in random_clips(y, sr, rng, noises, MEMBER_CONDITIONS if member else OUTSIDER_CONDITIONS,
                                 cfg.clips_per_song, 3.0):
            clips.append((truth.get(path), clip.condition, lib.embed_clip(clip.samples)))
    return clips


def answer_clips(lib, clips) -> tuple[dict, dict, float, list[float]]:
    """Hit and wrong-song rates by condition, the outsiders' "unknown" rate, and each answer's seconds."""
    counts: dict[str, list[int]] = {}
    unknown, outsiders, latencies = 0, 0, []
    for truth, condition, emb in clips:
        started = time.perf_counter()
        answer = lib.identify_embeddings(emb)
        latencies.append(time.perf_counter() - started)
        got = answer.match.song.song_id if answer.match else None
        if truth is None:
            outsiders += 1
            unknown += got is None
            continue
        c = counts.setdefault(condition, [0, 0, 0])
        c[0] += 1
        c[1] += got == truth
        c[2] += got is not None and got != truth
    hit = {k: v[1] / v[0] for k, v in counts.items()}
    wrong = {k: v[2] / v[0] for k, v in counts.items()}
    return hit, wrong, unknown / max(outsiders, 1), latencies


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_scale(lib, corpus: Path, cache: Path, cfg: ScaleConfig = ScaleConfig(), progress=None) -> ScaleResult:
    """Grow ``lib`` (the benchmark library, its members added) with cached distractors, measuring at each size."""
    members, outsiders, noises = held_out_songs(corpus, 0.33)
    sources = distractor_sources(corpus, {p for p, _ in members + outsiders})
    result = ScaleResult()
    real = max(cfg.sizes) // (cfg.copies + 1)  # real vectors wanted: copies make up the rest
    result.distractor_embed_s, result.distractor_audio_h = make_distractors(lib, sources, cfg.speeds, real, cache)
    clips = cut_query_clips(lib, members, outsiders, noises, cfg)
    sizes = sorted(cfg.sizes)
    build_s = 0.0
    point = _measure(lib, clips, build_s)
    result.points.append(point)
    files = cached_distractors(cache, [p for p, _ in members + outsiders])
    synthetic = 0
    for batch in distractor_batches(lib, cache, cfg.batch_songs, files, cfg.copies, cfg.copy_mix, cfg.seed):
        if not sizes:
            break
        before = len(lib.index)
        started = time.perf_counter()
        lib._commit(batch)
        spent = time.perf_counter() - started
        build_s += spent
        synthetic += sum(len(emb.vectors) for song, emb in batch if "-copy" in song.song_id)
        result.commits.append((before, spent, len(lib.index) - before))
        if len(lib.index) >= sizes[0]:
            sizes.pop(0)
            result.points.append(_measure(lib, clips, build_s, synthetic))
            if progress:
                progress(result.points[-1])
    return result


def _measure(lib, clips, build_s: float, synthetic: int = 0) -> SizePoint:
    stats = lib.stats()
    hit, wrong, unknown, latencies = answer_clips(lib, clips)
    ms = np.array(latencies) * 1000
    point = SizePoint(stats["vectors"], stats["songs"], hit, wrong, unknown, float(np.percentile(ms, 50)),
                      float(np.percentile(ms, 99)), rss_mb(), stats["index_bytes"] / 1e6, stats["catalog_bytes"] / 1e6,
                      build_s, synthetic)
    log.info("scale point: %s", json.dumps(point.__dict__))
    return point
