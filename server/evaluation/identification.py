"""Song identification: clips of 1, 3, 5 and 10 s cut at random offsets, clean and degraded
(:func:`server.evaluation.clips.excerpt_clips`), answered by the identification pipeline
(:func:`index.search.decide_clip`) against an index that holds the in-library songs only. Clips of
held-out songs measure the "unknown" rate.

Every clip is answered twice on the same audio: by the encoder's embeddings (the library's
vectors, its backend, its vote and verification) and by the MFCC-statistics baseline (same
patches, same vote, no verification).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from tuneprint.encoder.features import FeatureConfig, audio_to_patches_and_spectrogram
from tuneprint.errors import AudioError
from tuneprint.index.search import Decision, Neighbours, SpectrogramSource, decide_clip, find_neighbours
from tuneprint.index.vectors import IndexConfig, create_index
from tuneprint.index.vote import VoteConfig

from .clips import ClipConfig, excerpt_clips
from .data import EvalSplit, Snippets, song_rng
from .labels import Standardizer, exact_neighbours, mfcc_stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipAnswer:
    """How one method answered one clip."""

    top1: bool  # the decided answer is the clip's song
    top2: bool  # the clip's song is among the two best candidates
    unknown: bool  # the answer is "not in the library"
    offset_error_s: float | None = None  # of a right answer

    @classmethod
    def of(cls, decision: Decision, truth: str, start_s: float) -> "ClipAnswer":
        winner = decision.winner
        top1 = winner is not None and winner.song_id == truth
        return cls(top1, any(v.song_id == truth for v in decision.votes[:2]), winner is None,
                   abs(winner.offset_s - start_s) if top1 else None)


NO_ANSWER = ClipAnswer(False, False, True)  # a clip with no usable patch


@dataclass
class ClipRecord:
    song: int
    held_out: bool
    duration_s: float
    condition: str
    start_s: float
    answers: dict[str, ClipAnswer] = field(default_factory=dict)  # method → its answer


@dataclass(frozen=True)
class _BaselineQuery:
    record: ClipRecord
    stats: np.ndarray  # [shape=(n, 2 · n_mfcc)] the clip's patches' MFCC statistics
    offsets_s: np.ndarray  # [shape=(n,)]


class IdentificationRun:
    """Cuts, degrades and answers clips song by song (:meth:`visit`), then scores them (:meth:`finish`).

    The embedding answers come at once from an index of the in-library songs' stored
    vectors (the library's backend and settings). The baseline's clip features are kept
    and answered in :meth:`finish`, when its reference (every in-library song) is complete.
    ``spectrograms`` (the library's catalog) lets the embedding's answers be verified as the
    library's are, when the vote asks for it.
    """

    def __init__(self, embedder, features: FeatureConfig, index_config: IndexConfig, vote: VoteConfig,
                 query_hop_frames: int, snippets: Snippets, split: EvalSplit, cfg: ClipConfig, seed: int,
                 noises: list[np.ndarray], spectrograms: SpectrogramSource | None = None):
        self.embedder, self.features, self.vote, self.hop = embedder, features, vote, query_hop_frames
        self.spectrograms = spectrograms
        self.snippets, self.split, self.cfg, self.seed, self.noises = snippets, split, cfg, seed, noises
        index_rows = np.flatnonzero(np.isin(snippets.song, split.index))
        self.index = create_index(index_config)
        if len(index_rows):
            self.index.add(index_rows, snippets.vectors[index_rows])
        self.records: list[ClipRecord] = []
        self._baseline_queries: list[_BaselineQuery] = []
        self.failed: dict[str, int] = {}
        self.wanted = set(split.id_queries) | set(split.held_out)

    def indexed_songs(self) -> set[str]:
        """Song ids whose vectors the identification index holds (for leak checks)."""
        return {self.snippets.songs[i].song_id for i in np.unique(self.snippets.song[self.index.ids()])}

    def visit(self, song: int, y: np.ndarray) -> None:
        """Cut, degrade and answer the clips of one song (decoded at the feature rate)."""
        if song not in self.wanted:
            return
        rng = song_rng(self.seed, self.snippets.songs[song], "clips")
        held_out = song in set(self.split.held_out)
        records, features = [], []
        for clip in excerpt_clips(y, self.features.sample_rate, rng, self.noises, self.cfg):
            record = ClipRecord(song, held_out, clip.duration_s, clip.condition, clip.start_s)
            records.append(record)
            try:
                features.append((record, *audio_to_patches_and_spectrogram(clip.samples, hop_frames=self.hop,
                                                                           cfg=self.features, pad=True)))
            except AudioError as e:  # a silent clip: no answer, counted as unknown
                self.failed[type(e).__name__] = self.failed.get(type(e).__name__, 0) + 1
                record.answers["embedding"] = record.answers["baseline"] = NO_ANSWER
        self._answer_all(features)
        self.records += records

    def _answer_all(self, features: list[tuple[ClipRecord, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Embed every clip's query, answer each, keep its MFCC statistics for the baseline."""
        if not features:
            return
        # searched as the library searches a clip: with the query encoder where one fits the encoder
        # (partial patches for a clip shorter than a patch), else with the fingerprints, in one batch
        queries = [self.embedder.embed_query(p, offsets, clip_db) for _, p, offsets, clip_db in features]
        plain = [i for i, q in enumerate(queries) if q is None]
        if plain:
            vectors = self.embedder.embed_patches(np.concatenate([features[i][1] for i in plain]))
            bounds = np.cumsum([0] + [len(features[i][1]) for i in plain])
            for i, first, end in zip(plain, bounds[:-1], bounds[1:]):
                queries[i] = (vectors[first:end], features[i][2])
        for (record, patches, offsets, clip_db), (searched, searched_offsets) in zip(features, queries):
            record.answers["embedding"] = self.answer(record, searched, searched_offsets, clip_db)
            self._baseline_queries.append(_BaselineQuery(record, mfcc_stats(patches), offsets))

    def answer(self, record: ClipRecord, vectors: np.ndarray, query_offsets: np.ndarray,
               clip_db: np.ndarray | None = None) -> ClipAnswer:
        """The pipeline's answer to one clip's patch embeddings [shape=(n, D)], scored against its song."""
        neighbours = find_neighbours(vectors, self.index, self.snippets, self.vote.k)
        return self._score(record, neighbours, query_offsets, clip_db)

    def _score(self, record: ClipRecord, neighbours: Neighbours, query_offsets: np.ndarray,
               clip_db: np.ndarray | None) -> ClipAnswer:
        spectrograms = self.spectrograms if clip_db is not None else None
        decision = decide_clip(neighbours, query_offsets, clip_db, spectrograms, self.vote, self.features)
        return ClipAnswer.of(decision, self.snippets.songs[record.song].song_id, record.start_s)

    def finish(self, baseline_reference: dict[int, tuple[np.ndarray, np.ndarray]] | None) -> dict:
        """Answer the baseline's clips against ``baseline_reference`` (song → (stats, offsets)) and score all."""
        songs = [s for s in self.split.index if s in (baseline_reference or {})]
        if songs:
            self._answer_baseline(baseline_reference, songs)
        return summarize(self.records, self.cfg, failed=self.failed)

    def _answer_baseline(self, reference: dict[int, tuple[np.ndarray, np.ndarray]], songs: list[int]) -> None:
        """The baseline's answers: exact search over the in-library songs' standardised MFCC statistics."""
        stats = np.concatenate([reference[s][0] for s in songs])
        if not len(stats):
            return
        standardize = Standardizer.fit(stats)
        ref_vectors = standardize(stats)
        ref = Snippets(self.snippets.songs, ref_vectors,
                       np.concatenate([np.full(len(reference[s][0]), s) for s in songs]),
                       np.concatenate([reference[s][1] for s in songs]))
        for query in self._baseline_queries:
            sims, rows = exact_neighbours(standardize(query.stats), ref_vectors, self.vote.k)
            info = ref.lookup(rows)
            neighbours = Neighbours(sims, info.song_ids, info.offsets_s, {})
            query.record.answers["baseline"] = self._score(query.record, neighbours, query.offsets_s, None)


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
                    inl.setdefault(key, {})[condition] = _in_library_cell(mine, cfg.offset_tolerance_s)
                if theirs:
                    held.setdefault(key, {})[condition] = {"n": len(theirs), "unknown": _mean(a.unknown for a in theirs)}
        out["in_library"][method] = inl
        out["held_out"][method] = held
    return out


def _in_library_cell(answers: list[ClipAnswer], tolerance_s: float) -> dict:
    errors = [a.offset_error_s for a in answers if a.offset_error_s is not None]
    return {"n": len(answers), "top1": _mean(a.top1 for a in answers), "top2": _mean(a.top2 for a in answers),
            "unknown": _mean(a.unknown for a in answers),
            "offset_median_s": round(float(np.median(errors)), 3) if errors else None,
            "offset_within_tol": _mean(e <= tolerance_s for e in errors)}


def _mean(values) -> float | None:
    values = [float(v) for v in values]
    return round(sum(values) / len(values), 4) if values else None
