"""Song identification (seed 004 §6.3): clips of 1, 3, 5 and 10 s cut at random offsets,
clean and degraded, answered by the library's k-NN song vote against an index that holds
the in-library songs only. Clips of held-out songs measure the "unknown" rate.

Every clip is answered twice on the same audio: by the encoder's embeddings (the library's
vectors, its backend, its vote) and by the MFCC-statistics baseline (same patches, same vote).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from tuneprint.encoder.augment import CONDITIONS, ConditionConfig, apply_condition, speed_factor
from tuneprint.errors import AudioError
from tuneprint.encoder.features import audio_to_patches_and_spectrogram
from tuneprint.index.vectors import IndexConfig, create_index
from tuneprint.index.verify import verify_and_rank
from tuneprint.index.vote import VoteConfig, decide, vote_songs

from .eval_data import EvalSplit, Snippets, song_rng
from .eval_labels import Standardizer, exact_neighbours, mfcc_stats

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ClipConfig:
    durations_s: tuple[float, ...] = (1.0, 3.0, 5.0, 10.0)
    conditions: tuple[str, ...] = CONDITIONS
    clips_per_song: int = 3  # random offsets per song and duration; every condition degrades the same excerpt
    snr_db: tuple[float, float] = (0.0, 10.0)  # "noise": background at this SNR
    phone_snr_db: tuple[float, float] = (10.0, 20.0)  # "phone": some noise, then 300–3400 Hz at 8 kHz via MP3/GSM
    rt60_s: tuple[float, float] = (0.3, 0.9)  # "reverb": a synthetic room of this reverberation time
    speed_change: tuple[float, float] = (0.01, 0.03)  # "speed": faster or slower by this much (tempo and pitch)
    offset_tolerance_s: float = 1.0  # an offset answer within this of the truth counts as right

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def degradations(self) -> ConditionConfig:
        return ConditionConfig(self.snr_db, self.phone_snr_db, self.rt60_s, self.speed_change)


def degrade_clip(y: np.ndarray, sr: int, start_s: float, duration_s: float, condition: str,
                 rng: np.random.Generator, noises: list[np.ndarray], cfg: ClipConfig = ClipConfig()) -> np.ndarray:
    """The clip of ``duration_s`` starting at ``start_s`` in ``y``, as ``condition`` hears it.

    Returns exactly ``round(duration_s · sr)`` samples [shape=(n,), float32]; for "speed" the
    excerpt is taken longer or shorter so that, played faster or slower, it lasts ``duration_s``.
    """
    n_out = int(round(duration_s * sr))
    factor = speed_factor(condition, rng, cfg.degradations)
    first = int(round(start_s * sr))
    clip = y[first : first + int(round(n_out * factor))].astype(np.float32)
    clip = apply_condition(clip, condition, sr, rng, noises, cfg.degradations, factor=factor)
    return np.pad(clip, (0, max(0, n_out - len(clip))))[:n_out].astype(np.float32)


@dataclass
class ClipRecord:
    song: int
    held_out: bool
    duration_s: float
    condition: str
    start_s: float
    answers: dict[str, dict] = field(default_factory=dict)  # method → {top1, top2, unknown, offset_error_s}


class IdentificationRun:
    """Cuts, degrades and answers clips song by song (:meth:`visit`), then scores them (:meth:`finish`).

    The embedding answers come at once from an index of the in-library songs' stored
    vectors (the library's backend and settings). The baseline's clip features are kept
    and answered in :meth:`finish`, when its reference (every in-library song) is complete.
    """

    def __init__(self, embedder, features, index_config: IndexConfig, vote: VoteConfig, query_hop_frames: int,
                 snippets: Snippets, split: EvalSplit, cfg: ClipConfig, seed: int, noises: list[np.ndarray],
                 spectrogram_of: Callable[[str], np.ndarray | None] | None = None):
        self.embedder, self.features, self.vote, self.hop = embedder, features, vote, query_hop_frames
        # a song id → its log-mel spectrogram (Library.reference_spectrogram): the embedding's answers are
        # verified as the library's are when the vote asks for it
        self.spectrogram_of = spectrogram_of
        self.snippets, self.split, self.cfg, self.seed, self.noises = snippets, split, cfg, seed, noises
        self.song_ids = np.array([s.song_id for s in snippets.songs] + [None], dtype=object)
        in_index = np.isin(snippets.song, split.index)
        self.index_rows = np.flatnonzero(in_index)
        self.index = create_index(index_config)
        if len(self.index_rows):
            self.index.add(self.index_rows, snippets.vectors[self.index_rows])
        self.records: list[ClipRecord] = []
        self._baseline_queries: list[tuple[ClipRecord, np.ndarray, np.ndarray]] = []
        self.failed: dict[str, int] = {}
        self.wanted = set(split.id_queries) | set(split.held_out)

    def indexed_songs(self) -> set[str]:
        """Song ids whose vectors the identification index holds (for leak checks)."""
        return {self.song_ids[i] for i in np.unique(self.snippets.song[self.index.ids()])}

    def visit(self, song: int, y: np.ndarray) -> None:
        if song not in self.wanted:
            return
        sr = self.features.sample_rate
        rng = song_rng(self.seed, self.snippets.songs[song], "clips")
        held_out = song in set(self.split.held_out)
        seconds = len(y) / sr
        clips, records = [], []
        for duration in self.cfg.durations_s:
            room = seconds - duration * (1.0 + self.cfg.speed_change[1]) - 0.05
            if room < 0:
                continue
            for _ in range(self.cfg.clips_per_song):
                start = float(rng.uniform(0.0, room))
                for condition in self.cfg.conditions:
                    clips.append(degrade_clip(y, sr, start, duration, condition, rng, self.noises, self.cfg))
                    records.append(ClipRecord(song, held_out, duration, condition, start))
        patches, offsets, spectra, owner = [], [], [], []
        for i, clip in enumerate(clips):
            try:
                p, o, S_db = audio_to_patches_and_spectrogram(clip, hop_frames=self.hop, cfg=self.features, pad=True)
            except AudioError as e:  # a silent clip: no answer, counted as unknown
                self.failed[type(e).__name__] = self.failed.get(type(e).__name__, 0) + 1
                continue
            patches.append(p)
            offsets.append(o)
            spectra.append(S_db)
            owner.append(i)
        vectors = self.embedder.embed_patches(np.concatenate(patches)) if patches else np.zeros((0, 1), np.float32)
        stats = mfcc_stats(np.concatenate(patches)) if patches else np.zeros((0, 1), np.float32)
        answered = set(owner)
        start = 0
        for i, o, S_db in zip(owner, offsets, spectra):
            rec, n = records[i], len(o)
            rec.answers["embedding"] = self._answer(rec, vectors[start : start + n], o, S_db)
            self._baseline_queries.append((rec, stats[start : start + n], o))
            start += n
        for i, rec in enumerate(records):
            if i not in answered:
                rec.answers["embedding"] = rec.answers["baseline"] = _no_answer()
        self.records += records

    def _answer(self, rec: ClipRecord, vectors: np.ndarray, query_offsets: np.ndarray,
                clip_db: np.ndarray | None = None) -> dict:
        k = min(self.vote.k, max(len(self.index), 1))
        sims, rows = self.index.search(vectors, k)
        return self._vote(rec, sims, rows, query_offsets, clip_db)

    def _vote(self, rec: ClipRecord, sims: np.ndarray, rows: np.ndarray, query_offsets: np.ndarray,
              clip_db: np.ndarray | None = None) -> dict:
        song_ids = self.song_ids[np.where(rows >= 0, self.snippets.song[np.maximum(rows, 0)], -1)]
        offsets = np.where(rows >= 0, self.snippets.offsets_s[np.maximum(rows, 0)], np.nan)
        votes = vote_songs(song_ids, sims, offsets, query_offsets, self.vote)
        if self.vote.verifies and clip_db is not None and self.spectrogram_of is not None:
            votes = verify_and_rank(votes, clip_db, self.spectrogram_of, self.features, self.vote)
        return self._score(rec, votes)

    def _score(self, rec: ClipRecord, votes) -> dict:
        """top1: the decided answer is the clip's song; top2: it is among the two best candidates."""
        winner = decide(votes, self.vote)
        truth = self.snippets.songs[rec.song].song_id
        top1 = winner is not None and winner.song_id == truth
        return {"top1": top1, "top2": any(v.song_id == truth for v in votes[:2]), "unknown": winner is None,
                "offset_error_s": abs(winner.offset_s - rec.start_s) if top1 else None}

    def finish(self, baseline_reference: dict[int, tuple[np.ndarray, np.ndarray]] | None) -> dict:
        """Answer the baseline's clips against ``baseline_reference`` (song → (stats, offsets)) and score all."""
        if baseline_reference:
            songs = [s for s in self.split.index if s in baseline_reference]
            ref = np.concatenate([baseline_reference[s][0] for s in songs]) if songs else np.zeros((0, 1))
            if len(ref):
                standardize = Standardizer.fit(ref)
                ref_vectors = standardize(ref)
                ref_song = np.concatenate([np.full(len(baseline_reference[s][0]), s) for s in songs])
                ref_offsets = np.concatenate([baseline_reference[s][1] for s in songs])
                for rec, stats, offsets in self._baseline_queries:
                    sims, nn = exact_neighbours(standardize(stats), ref_vectors, self.vote.k)
                    song_ids = self.song_ids[np.where(nn >= 0, ref_song[np.maximum(nn, 0)], -1)]
                    votes = vote_songs(song_ids, sims, np.where(nn >= 0, ref_offsets[np.maximum(nn, 0)], np.nan),
                                       offsets, self.vote)
                    rec.answers["baseline"] = self._score(rec, votes)
        return summarize(self.records, self.cfg, failed=self.failed)


def _no_answer() -> dict:
    return {"top1": False, "top2": False, "unknown": True, "offset_error_s": None}


def summarize(records: list[ClipRecord], cfg: ClipConfig, failed: dict | None = None) -> dict:
    """Hit rates per method, duration and condition; unknown rate for held-out songs.

    ``in_library[method][duration][condition]``: n, top1, top2, unknown (a wrong "unknown"),
    offset_median_s and offset_within_tol (share of top-1 hits whose offset is within
    ``cfg.offset_tolerance_s``). ``held_out[method][duration][condition]``: n, unknown.
    """
    methods = sorted({m for r in records for m in r.answers}, key=lambda m: (m != "embedding", m))
    out: dict = {"in_library": {}, "held_out": {}, "clips": len(records), "unanswerable_clips": dict(failed or {}),
                 "offset_tolerance_s": cfg.offset_tolerance_s}
    for method in methods:
        inl, held = {}, {}
        for duration in cfg.durations_s:
            key = f"{duration:g}s"
            for condition in cfg.conditions:
                rs = [r for r in records if r.duration_s == duration and r.condition == condition and method in r.answers]
                mine = [r.answers[method] for r in rs if not r.held_out]
                theirs = [r.answers[method] for r in rs if r.held_out]
                if mine:
                    errors = [a["offset_error_s"] for a in mine if a["offset_error_s"] is not None]
                    inl.setdefault(key, {})[condition] = {
                        "n": len(mine), "top1": _mean(a["top1"] for a in mine), "top2": _mean(a["top2"] for a in mine),
                        "unknown": _mean(a["unknown"] for a in mine),
                        "offset_median_s": round(float(np.median(errors)), 3) if errors else None,
                        "offset_within_tol": _mean(e <= cfg.offset_tolerance_s for e in errors)}
                if theirs:
                    held.setdefault(key, {})[condition] = {"n": len(theirs), "unknown": _mean(a["unknown"] for a in theirs)}
        out["in_library"][method] = inl
        out["held_out"][method] = held
    return out


def _mean(values) -> float | None:
    values = [float(v) for v in values]
    return round(sum(values) / len(values), 4) if values else None
