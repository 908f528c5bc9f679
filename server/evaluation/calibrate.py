"""Calibrating a model's "unknown" thresholds on validation songs, never on test songs.

The library holds the model's training songs plus half of the validation songs; clips (clean,
noise, phone, reverb; :func:`server.evaluation.clips.random_clips`) of those validation members
must be identified, clips of the other validation songs must come back "unknown". Each clip's
neighbours, its verified shares and its best similarity to every song are kept (in memory, or in
a ``.npz`` cache), then every setting of the grids is decided again through the identification
pipeline (:func:`index.search.rank_songs`, :func:`index.vote.rank_verified`, :func:`index.vote.decide`)
and chosen by :mod:`index.calibration`:

- the vote temperature and the similarity, share and margin bars;
- the similarity bar of ``long_clip_seconds`` clips (stored as ``similarity_by_patches``);
- the verification weight and evidence bar, kept when they beat the similarity rule;
- ``reference_songs`` (the calibration library's size) and ``similarity_slope``, the rise of the
  best impostor similarity with ln(songs) beyond it.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.features import FeatureConfig
from tuneprint.encoder.splits import song_unit
from tuneprint.index import calibration
from tuneprint.index.calibration import CalibrationConfig, TopVotes
from tuneprint.index.search import Neighbours, find_neighbours, rank_songs
from tuneprint.index.verify import verify
from tuneprint.index.vote import SongVote, VoteConfig, decide, rank_verified
from tuneprint.server.library import Library, LibrarySettings

from .clips import load_noises, random_clips
from .corpus import split_corpus

log = logging.getLogger(__name__)

# what --write stores in the checkpoint: VoteConfig's fields, then the size rule's
VOTE_KEYS = ("temperature", "min_similarity", "min_share", "min_margin", "similarity_by_patches",
             "verify_top", "verify_weight", "min_evidence")
SIZE_KEYS = ("reference_songs", "similarity_slope")


class CalibrationError(ValueError):
    """No setting reaches the target, or a cache cannot be read."""


@dataclass(frozen=True)
class CalibrationRun:
    """What the calibration measures on: the clips, the library and the grids."""

    model: str  # the checkpoint to calibrate
    clips_per_song: int = 12
    clip_seconds: float = 3.0
    long_clip_seconds: float = 6.0  # also calibrate the bar of clips this long (0 = off)
    seed: int = 11
    train_songs: int = 0  # index only this many training songs (0 = all; for a quick check)
    index_hop_frames: int = LibrarySettings.index_hop_frames
    noise_dir: Path | None = None  # recorded noises for the noisy clips (None: CORPUS/noise)
    grids: CalibrationConfig = field(default_factory=CalibrationConfig)

    @property
    def lengths(self) -> list[float]:
        return [self.clip_seconds] + ([self.long_clip_seconds] if self.long_clip_seconds > self.clip_seconds else [])


@dataclass(frozen=True)
class CalibrationClip:
    """One calibration clip, all that re-deciding it needs."""

    member: bool
    condition: str
    truth: str | None  # its song's id; None for outsiders
    neighbours: Neighbours
    query_offsets_s: np.ndarray  # [shape=(patches,)]
    song_best: np.ndarray  # [shape=(songs,), dtype=float32] best similarity to every song of the library
    verified: dict[str, float]  # verified share of every song the grids' votes put in their top


@dataclass(frozen=True)
class ClipSet:
    clips: list[CalibrationClip]
    songs: list[str]  # the library's songs: the columns of song_best
    features: FeatureConfig

    def column(self, name: str) -> np.ndarray:
        return np.array([getattr(c, name) for c in self.clips])

    def ranked(self, clip: CalibrationClip, cfg: VoteConfig) -> list[SongVote]:
        """The pipeline's ranking of ``clip`` under ``cfg``; with ``cfg.verify_top``, its top songs re-ranked
        by their cached verified shares as :func:`index.search.verify_votes` ranks them."""
        votes = rank_songs(clip.neighbours, clip.query_offsets_s, None, None, cfg, self.features)
        if cfg.verify_top:
            shares = {v.song_id: clip.verified[v.song_id] for v in votes[: cfg.verify_top] if v.song_id in clip.verified}
            votes = rank_verified(votes, shares, cfg)
        return votes

    def tops(self, cfg: VoteConfig) -> TopVotes:
        """Every clip's first song under ``cfg``."""
        return TopVotes.of([(self.ranked(c, cfg) or [None])[0] for c in self.clips], [c.truth for c in self.clips])

    def outcome(self, cfg: VoteConfig) -> dict:
        """Member clips identified and outsider clips answered "unknown" when ``cfg`` decides."""
        winners = [decide(self.ranked(c, cfg), cfg) for c in self.clips]
        accepted = np.array([w is not None for w in winners])
        right = np.array([w is not None and w.song_id == c.truth for w, c in zip(winners, self.clips)])
        return calibration.rates(accepted, right, self.column("member"))

    def median_patches(self) -> int:
        return int(np.median([len(c.query_offsets_s) for c in self.clips]))


# -- the clips ----------------------------------------------------------------------------------
def calibration_songs(corpus: Path) -> tuple[dict, list, list]:
    """The corpus split by song, and its validation songs split into members and outsiders."""
    parts = split_corpus(corpus)
    outsiders = [it for it in parts["val"] if song_unit(it[0], "calibrate") < 0.5]
    members = [it for it in parts["val"] if it not in outsiders]
    return parts, members, outsiders


def cut_clips(lib: Library, members, outsiders, noises, run: CalibrationRun, seconds: float) -> ClipSet:
    """Every calibration clip of ``seconds``: its neighbours in ``lib``, its best similarity to every
    song, and the verified share of every song the grids' votes put in their top."""
    rng = np.random.default_rng(run.seed)
    sr = lib.features.sample_rate
    truth = {s.path: s.song_id for s in lib.tracks()}
    songs, song_of_vector, stored = stored_vectors(lib)
    spectra = {s: lib.catalog.spectrogram(s) for s in songs}
    clips = []
    for path, _ in members + outsiders:
        y = load_audio(path, sr=sr)
        for clip in random_clips(y, sr, rng, noises, run.grids.conditions, run.clips_per_song, seconds):
            emb = lib.embed_clip(clip.samples)
            neighbours = find_neighbours(emb.vectors, lib.index, lib.catalog, lib.settings.vote.k)
            best = np.full(len(songs), -1.0, dtype=np.float32)
            np.maximum.at(best, song_of_vector, (emb.vectors @ stored.T).max(axis=0))
            clips.append(CalibrationClip(path in truth, clip.condition, truth.get(path), neighbours, emb.offsets_s, best,
                                         verify_candidates(emb.spectrogram, neighbours, emb.offsets_s, spectra,
                                                           lib.features, run.grids)))
    return ClipSet(clips, songs, lib.features)


def verify_candidates(clip_db, neighbours: Neighbours, query_offsets_s, spectra: dict, features: FeatureConfig,
                      grids: CalibrationConfig) -> dict[str, float]:
    """Verified share of every song among the top ``grids.verify_top`` of the vote at any temperature
    the grid tries (at the offset of the first vote that ranks it there)."""
    scores: dict[str, float] = {}
    for temperature in grids.temperatures:
        votes = rank_songs(neighbours, query_offsets_s, None, None, VoteConfig(temperature=temperature), features)
        for v in votes[: grids.verify_top]:
            if v.song_id not in scores:
                scores[v.song_id] = verify(clip_db, spectra[v.song_id], v.offset_s, features)
    return scores


def stored_vectors(lib: Library) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The library's songs, the song (index into them) of every stored vector, and the vectors."""
    ids = lib.index.ids()
    song_ids = lib.catalog.lookup(ids).song_ids
    songs = sorted(set(song_ids))
    position = {s: i for i, s in enumerate(songs)}
    return songs, np.array([position[s] for s in song_ids]), lib.index.vectors(ids)


def build_clip_sets(corpus: Path, run: CalibrationRun, wanted: list[float]) -> dict[float, ClipSet]:
    """Build the calibration library (training songs and the validation members) in a temporary
    folder and cut the clips of every length in ``wanted``."""
    parts, members, outsiders = calibration_songs(corpus)
    noises = load_noises(run.noise_dir or corpus / "noise")
    tmp = Path(tempfile.mkdtemp(prefix="tuneprint-calibrate-"))
    try:
        settings = LibrarySettings(model=str(Path(run.model).resolve()), vote=VoteConfig(),
                                   index_hop_frames=run.index_hop_frames)
        with Library.create(tmp / "library", settings) as lib:
            lib.add([path for path, _ in parts["train"][: run.train_songs or None] + members], allow_non_music=True)
            return {seconds: cut_clips(lib, members, outsiders, noises, run, seconds) for seconds in wanted}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- the cache: one .npz per clip length, no pickles -------------------------------------------------
def cache_path(cache: Path, run: CalibrationRun, seconds: float) -> Path:
    """The cache file of the clips of ``seconds``: ``cache`` itself for the short clips."""
    return cache if seconds == run.clip_seconds else cache.with_name(f"{cache.stem}-{seconds:g}s{cache.suffix}")


def save_clips(path: Path, clip_set: ClipSet) -> None:
    clips = clip_set.clips
    song_ids = np.concatenate([c.neighbours.song_ids for c in clips])
    with open(path, "wb") as f:  # np.savez would append .npz to another suffix
        np.savez(f, member=clip_set.column("member"), condition=clip_set.column("condition").astype(str),
                 truth=np.array([c.truth or "" for c in clips]), patches=np.array([len(c.query_offsets_s) for c in clips]),
                 song_ids=np.where(song_ids == None, "", song_ids).astype(str),  # noqa: E711 (elementwise)
                 sims=np.concatenate([c.neighbours.sims for c in clips]),
                 offsets_s=np.concatenate([c.neighbours.offsets_s for c in clips]),
                 query_offsets_s=np.concatenate([c.query_offsets_s for c in clips]),
                 song_best=np.stack([c.song_best for c in clips]), songs=np.array(clip_set.songs),
                 verified=np.array(json.dumps([c.verified for c in clips])),
                 features=np.array(json.dumps(clip_set.features.to_dict())))


def load_clips(path: Path) -> ClipSet:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CalibrationError(f"{path}: not a calibration cache of this version ({e}); delete it and run again") from e
    song_ids = np.where(data["song_ids"] == "", None, data["song_ids"].astype(object))
    bounds = np.concatenate([[0], np.cumsum(data["patches"])])
    verified = json.loads(str(data["verified"]))
    clips = [CalibrationClip(bool(data["member"][i]), str(data["condition"][i]), str(data["truth"][i]) or None,
                             Neighbours(data["sims"][a:b], song_ids[a:b], data["offsets_s"][a:b], {}),
                             data["query_offsets_s"][a:b], data["song_best"][i], verified[i])
             for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    return ClipSet(clips, [str(s) for s in data["songs"]], FeatureConfig(**json.loads(str(data["features"]))))


def clip_sets(corpus: Path, run: CalibrationRun, cache: Path | None = None) -> list[ClipSet]:
    """The clips of every length of ``run``, from ``cache`` where it holds them (and into it where not)."""
    paths = {s: cache_path(cache, run, s) if cache else None for s in run.lengths}
    found = {s: load_clips(p) for s, p in paths.items() if p is not None and p.is_file()}
    missing = [s for s in run.lengths if s not in found]
    if missing:
        for seconds, clip_set in build_clip_sets(corpus, run, missing).items():
            found[seconds] = clip_set
            if paths[seconds] is not None:
                save_clips(paths[seconds], clip_set)
    return [found[s] for s in run.lengths]


# -- choosing ------------------------------------------------------------------------------------
def calibrate(corpus: Path, run: CalibrationRun, cache: Path | None = None) -> dict:
    """The chosen thresholds (the keys of :data:`VOTE_KEYS` and :data:`SIZE_KEYS`) and how they do."""
    short, *longer = clip_sets(corpus, run, cache)
    return choose(short, longer[0] if longer else None, run)


def choose(short: ClipSet, long: ClipSet | None, run: CalibrationRun) -> dict:
    """Every choice of :mod:`index.calibration` on the clips, in the order the report lists them."""
    grids = run.grids
    best = vote_rule(short, grids)
    if best is None:
        raise CalibrationError("no threshold reaches the target unknown rate")
    best["similarity_by_patches"] = []
    if long is not None:
        best["similarity_by_patches"], best["long_clips"] = long_clip_point(short, long, best, run)
    best.update(verification_rule(short, best, grids))
    if not best["verify_top"]:
        log.info("verification does not beat the similarity rule on these clips: left off")
    if long is not None and best["verify_top"]:
        best["long_clips_verified"] = long.outcome(VoteConfig(**{k: best[k] for k in VOTE_KEYS}))
    best["separation_auc"] = calibration.separation(short.tops(VoteConfig(temperature=best["temperature"])),
                                                    short.column("member"))
    best["reference_songs"] = len(short.songs)
    own = np.array([short.songs.index(c.truth) if c.truth in short.songs else -1 for c in short.clips])
    best["similarity_slope"], best["impostor_similarity_by_library_size"] = calibration.size_slope(
        np.stack([c.song_best for c in short.clips]), own, run.seed, grids)
    return best


def vote_rule(clips: ClipSet, grids: CalibrationConfig) -> dict | None:
    """:func:`index.calibration.choose_vote_rule` on the clips' votes at every temperature of the grid."""
    tops = {t: clips.tops(VoteConfig(temperature=t)) for t in grids.temperatures}
    return calibration.choose_vote_rule(tops, clips.column("member"), clips.column("condition"), grids)


def verification_rule(clips: ClipSet, best: dict, grids: CalibrationConfig) -> dict:
    """:func:`index.calibration.choose_verification` on the clips re-ranked by their verified shares at
    every weight of the grid (and 0), at the vote rule's temperature."""
    verified = {w: clips.tops(VoteConfig(temperature=best["temperature"], verify_top=grids.verify_top, verify_weight=w))
                for w in (0.0,) + grids.verify_weights}
    return calibration.choose_verification(verified, clips.column("member"), clips.column("condition"), best, grids)


def long_clip_point(short: ClipSet, long: ClipSet, best: dict, run: CalibrationRun) -> tuple[list[list], dict]:
    """(patches, threshold) points of the short and the long clips (:func:`index.calibration.long_clip_threshold`),
    and the long clips' report."""
    threshold, rates = calibration.long_clip_threshold(long.tops(VoteConfig(temperature=best["temperature"])),
                                                        long.column("member"), best, run.grids.target_unknown)
    patches = short.median_patches(), long.median_patches()
    report = {"seconds": run.long_clip_seconds, "patches": patches[1], "min_similarity": threshold, **rates}
    return [[patches[0], best["min_similarity"]], [patches[1], threshold]], report


def stored(best: dict) -> tuple[dict, dict]:
    """What ``--write`` puts into the checkpoint: the settings, and the rest as their report."""
    keys = VOTE_KEYS + SIZE_KEYS
    return {k: best[k] for k in keys}, {k: v for k, v in best.items() if k not in keys}
