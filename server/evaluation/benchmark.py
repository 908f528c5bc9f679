"""Identification benchmark on the development corpus.

Builds a library from songs the shipped model never trained on (the seen collections' test songs
and every song of the unseen collections, :func:`server.evaluation.corpus.split_corpus`), keeps a
share of them out as "not in the library", then measures:

- hit rate of clips at random offsets (:func:`server.evaluation.clips.random_clips`): clean, with
  recorded sound effects/speech mixed in at 0–10 dB SNR, phone-like (300–3400 Hz at 8 kHz,
  MP3/GSM, noise at 10–20 dB), reverberant (RT60 0.3–0.9 s) and sped up or slowed down, and the
  share answered wrongly / "unknown";
- the share of clips of songs not in the library answered "unknown";
- ingest speed as a multiple of real time, index size per minute of audio, query latency.

Every clip is answered by :meth:`server.library.Library.identify_embeddings`, the library's own
pipeline (:func:`index.search.decide_clip`).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.augment import CONDITIONS
from tuneprint.encoder.splits import song_unit
from tuneprint.index.vectors import IndexConfig
from tuneprint.server.library import Library, LibrarySettings

from .clips import load_noises, random_clips
from .corpus import split_corpus

log = logging.getLogger(__name__)

OUTSIDER_CONDITIONS = ("clean", "noise")  # clips of songs not in the library
SNR_BANDS = ((0.0, 2.5), (2.5, 5.0), (5.0, 7.5), (7.5, 10.0))


@dataclass(frozen=True)
class BenchmarkConfig:
    model: str = "default"  # 'default', 'seeded' or a checkpoint path
    backend: str = "faiss"
    faiss_factory: str = IndexConfig.faiss_factory  # the FAISS codec ("Flat": exact vectors)
    clips_per_song: int = 8  # clips per song and condition
    clip_seconds: float = 3.0
    outsider_share: float = 0.33  # share of the held-out songs kept out of the library
    seed: int = 7  # of the clips' offsets and degradations
    noise_dir: Path | None = None  # recorded noises to mix in; None: CORPUS/noise
    index_hop_frames: int = LibrarySettings.index_hop_frames  # frames between stored patches

    def section(self) -> tuple[str, str]:
        """The key and title of this run's docs/BENCHMARKS.md section: a re-draw of the clips, another
        noise bank or another clip length gets its own."""
        default = BenchmarkConfig()
        key, title = f"identify-{self.backend}", self.backend
        if self.backend == "faiss" and self.faiss_factory != default.faiss_factory:
            key, title = f"{key}-{self.faiss_factory.replace(',', '-')}", f"{title} {self.faiss_factory}"
        if self.seed != default.seed:
            key, title = f"{key}-seed{self.seed}", f"{title}, clip seed {self.seed}"
        if self.noise_dir:
            key, title = f"{key}-{Path(self.noise_dir).name}", f"{title}, noise from {Path(self.noise_dir).name}/"
        seconds = f"{self.clip_seconds:g}"
        if self.clip_seconds != default.clip_seconds:
            key = f"{key}-{seconds}s"
        return key, f"Identification of {seconds}-s clips ({title})"


@dataclass(frozen=True)
class ClipOutcome:
    """How the library answered one benchmark clip (one row of the benchmark's JSON)."""

    path: str
    label: str
    member: bool  # the song is in the library
    condition: str
    start_s: float
    truth: str | None  # the song's id, None for outsiders
    match: str | None  # the answer, None for "unknown"
    offset_s: float | None  # where the answer places the clip
    top: str | None  # the first candidate, even when the answer is "unknown"
    top_share: float
    top_similarity: float
    top_verified: float | None
    snr_db: float | None
    noise_index: int | None  # into the noise folder's sorted file names

    @property
    def hit(self) -> bool:
        return self.match == self.truth

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BenchmarkResult:
    outcomes: list[ClipOutcome]
    latencies_s: list[float]
    stats: dict  # Library.stats() of the benchmark library
    ingest_s: float
    members: int
    outsiders: int
    noise_files: int
    model_id: str

    @property
    def audio_s(self) -> float:
        return self.stats["hours"] * 3600


def held_out_songs(corpus: Path, outsider_share: float, noise_dir: Path | None = None, noise_limit: int | None = None):
    """Songs no training run sees (test + unseen collections), split into library members and
    outsiders (kept out of the library), and the recorded noises to mix into clips (``noise_limit``
    of them, drawn by :func:`load_noises`; all when None)."""
    parts = split_corpus(corpus)
    held_out = parts["test"] + parts["unseen"]
    outsiders = [it for it in held_out if song_unit(it[0], "outsider") < outsider_share]
    members = [it for it in held_out if it not in outsiders]
    return members, outsiders, load_noises(noise_dir or corpus / "noise", limit=noise_limit)


def identify_clips(lib: Library, members, outsiders, noises, clips_per_song: int, seed: int,
                   conditions: Sequence[str] = CONDITIONS, seconds: float = 3.0) -> tuple[list[ClipOutcome], list[float]]:
    """Identify clips of ``seconds`` at random offsets: every condition for members, clean and noise for outsiders.

    Returns every clip's outcome and the seconds each answer took (embedding, search, vote, verification).
    """
    rng = np.random.default_rng(seed)
    sr = lib.features.sample_rate
    outcomes, latencies = [], []
    song_of_path = {s.path: s.song_id for s in lib.tracks()}
    for path, label in members + outsiders:
        y = load_audio(path, sr=sr)
        member = path in song_of_path
        for clip in random_clips(y, sr, rng, noises, conditions if member else OUTSIDER_CONDITIONS, clips_per_song,
                                 seconds):
            t0 = time.perf_counter()
            answer = lib.identify_embeddings(lib.embed_clip(clip.samples), name=path)
            latencies.append(time.perf_counter() - t0)
            m = answer.match
            top = answer.candidates[0] if answer.candidates else None
            outcomes.append(ClipOutcome(
                path, label, member, clip.condition, round(clip.start_s, 2), song_of_path.get(path),
                m.song.song_id if m else None, round(m.vote.offset_s, 2) if m else None,
                top.song.song_id if top else None, top.vote.share if top else 0.0,
                top.vote.similarity if top else 0.0, top.vote.verified if top else None, clip.snr_db, clip.noise_index))
    return outcomes, latencies


def run_benchmark(corpus: Path, cfg: BenchmarkConfig = BenchmarkConfig(), library: Path | None = None) -> BenchmarkResult:
    """Build the benchmark library (in ``library``, or a temporary folder removed afterwards) and identify its clips."""
    members, outsiders, noises = held_out_songs(corpus, cfg.outsider_share, cfg.noise_dir)
    root = library or Path(tempfile.mkdtemp(prefix="tuneprint-bench-")) / "library"
    shutil.rmtree(root, ignore_errors=True)
    settings = LibrarySettings(model=cfg.model, index=IndexConfig(backend=cfg.backend, faiss_factory=cfg.faiss_factory),
                               index_hop_frames=cfg.index_hop_frames)
    try:
        with Library.create(root, settings) as lib:
            started = time.perf_counter()
            lib.add([path for path, _ in members], labels={path: [label] for path, label in members},
                    allow_non_music=True)  # the corpus's songs as listed, its one spoken track included
            ingest_s = time.perf_counter() - started
            lib.catalog.checkpoint()  # sizes on disk without the write-ahead log still to be folded in
            stats = lib.stats()
            audio_s = stats["hours"] * 3600
            log.info("ingested %d songs, %.1f min of audio in %.1f s (%.0fx real time)",
                     stats["songs"], audio_s / 60, ingest_s, audio_s / ingest_s)
            outcomes, latencies = identify_clips(lib, members, outsiders, noises, cfg.clips_per_song, cfg.seed,
                                                 seconds=cfg.clip_seconds)
            return BenchmarkResult(outcomes, latencies, stats, ingest_s, len(members), len(outsiders), len(noises),
                                   lib.model_id)
    finally:
        if library is None:
            shutil.rmtree(root.parent, ignore_errors=True)


def noise_by_snr(outcomes: list[ClipOutcome]) -> str:
    """Hit rate of the member clips of the "noise" condition in bands of their SNR, in words."""
    noisy = [o for o in outcomes if o.member and o.condition == "noise" and o.snr_db is not None]
    parts = []
    for low, high in SNR_BANDS:
        band = [o.hit for o in noisy if low <= o.snr_db < high]
        if band:
            parts.append(f"{low:g}–{high:g} dB {np.mean(band):.1%} ({len(band)})")
    return ", ".join(parts) or "not recorded"


def verification(stats: dict) -> str:
    """How the answers were decided, in words (the library's thresholds at its size)."""
    if not stats.get("verify_top"):
        return (f"Decided by similarity alone (\"unknown\" below {stats['min_similarity']:.3f}); "
                "no spectral verification.")
    ranked = (f"Spectral verification (index/verify.py) of the top {stats['verify_top']} songs: the answer is the song "
              f"with the most evidence = similarity + {stats['verify_weight']:g} × share of the clip its spectrogram "
              "explains, ")
    if stats.get("score_rule"):
        return ranked + ("\"unknown\" below the learnt line over its figures and the runner-up's "
                         "(encoder/weights/calibration.json).")
    return ranked + f"\"unknown\" below {stats['min_evidence']:.3f}."


def condition_rows(outcomes: list[ClipOutcome]) -> list[str]:
    """One table row per condition of the member clips."""
    rows = []
    for condition in CONDITIONS:
        clips = [o for o in outcomes if o.member and o.condition == condition]
        if not clips:
            continue
        hit = np.mean([o.hit for o in clips])
        wrong = np.mean([o.match is not None and o.match != o.truth for o in clips])
        unknown = np.mean([o.match is None for o in clips])
        top1 = np.mean([o.top == o.truth for o in clips])
        offset_err = [abs(o.offset_s - o.start_s) for o in clips if o.hit]
        rows.append(f"| {condition} | {len(clips)} | {hit:.1%} | {wrong:.1%} | {unknown:.1%} | {top1:.1%} | "
                    f"{np.median(offset_err) if offset_err else float('nan'):.2f} |")
    return rows


def summarize(result: BenchmarkResult, cfg: BenchmarkConfig, noise_folder: str) -> str:
    """The benchmark's markdown: the library, one row per condition, outsiders, ingest, size and latency."""
    stats, audio_s, ingest_s = result.stats, result.audio_s, result.ingest_s
    outs = [o for o in result.outcomes if not o.member]
    unknown_rate = np.mean([o.match is None for o in outs]) if outs else float("nan")
    ms = 1000 * np.array(result.latencies_s)
    return f"""
Library: {result.members} songs the model never trained on ({audio_s / 60:.0f} min, backend `{stats['backend']}`,
encoder `{result.model_id}`, patch hop {stats['patch_hop_s']} s); {result.outsiders} further held-out songs stay
outside the library. {cfg.clips_per_song} clips of {cfg.clip_seconds:g} s per song and condition, random offsets, seed {cfg.seed}.
{verification(stats)}

| condition | clips | hit (right song) | wrong song | "unknown" | right song ranked first | median offset error (s) |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(condition_rows(result.outcomes))}

- noisy clips identified by SNR: {noise_by_snr(result.outcomes)}
- clips of songs **not** in the library answered "unknown": **{unknown_rate:.1%}** of {len(outs)} (clean and noisy)
- ingest: {audio_s / 60:.1f} min of audio in {ingest_s:.1f} s = **{audio_s / ingest_s:.0f}× real time** (decode + features + embedding + index)
- index size: {stats['index_bytes'] / 1e6:.1f} MB for {stats['vectors']} vectors = **{stats['index_bytes'] / 1024 / (audio_s / 60):.0f} KiB per minute of audio**; catalog (with the songs' spectrograms) {stats['catalog_bytes'] / 1e6:.1f} MB = {stats['catalog_bytes'] / 1024 / (audio_s / 60):.0f} KiB per minute
- query latency ({cfg.clip_seconds:g}-s clip in memory → answer; embedding, search, vote): median **{np.median(ms):.1f} ms**, p95 {np.percentile(ms, 95):.1f} ms

Conditions: *noise* = a recorded sound effect or voice from `{noise_folder}/` ({result.noise_files} files) mixed in at 0–10 dB SNR;
*phone* = recorded noise at 10–20 dB SNR, then 300–3400 Hz at 8 kHz through low-bitrate MP3 or GSM;
*reverb* = a synthetic room (RT60 0.3–0.9 s).
"""
