"""The Python API of tuneprint: a library folder that joins encoder, vector index and catalog.

The command line and the HTTP service are thin adapters over :class:`Library`.

A library folder holds::

    settings.json        LibrarySettings (format version, model, index, vote, patch hops)
    catalog.sqlite       songs, labels, snippets (row id → song, offset), meta
    index/               the vector index (FAISS or Annoy) and its index.json
    model.safetensors    the library's own encoder, after `tuneprint train`
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from tuneprint.encoder.audio import AUDIO_EXTENSIONS, load_audio, read_tags
from tuneprint.encoder.checkpoint import LoadedModel, load_model
from tuneprint.encoder.embeddings import Embedder, Embeddings
from tuneprint.encoder.features import log_mel
from tuneprint.errors import AudioError, LibraryError, MismatchError, NotFoundError
from tuneprint.index.catalog import Catalog, Song
from tuneprint.index.vectors import IndexConfig, VectorIndex, create_index, load_index, save_index
from tuneprint.index.verify import verify_and_rank
from tuneprint.index.vote import SongVote, VoteConfig, decide, vote_labels, vote_songs

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SETTINGS_FILE = "settings.json"
CATALOG_FILE = "catalog.sqlite"
INDEX_DIR = "index"
LIBRARY_MODEL = "model.safetensors"

AudioSource = "str | os.PathLike | bytes"


@dataclass(frozen=True)
class LibrarySettings:
    model: str = "default"  # "default" (shipped weights), "seeded", or a checkpoint path relative to the library
    index: IndexConfig = field(default_factory=IndexConfig)
    vote: VoteConfig | None = None  # None: the model's calibrated thresholds (or VoteConfig's defaults)
    index_hop_frames: int = 8  # ≈0.37 s between stored patches: a clip at any moment lines up within ≈0.19 s
    query_hop_frames: int = 4  # queries are cut densely; they are short
    similar_k: int = 50  # neighbours per patch when ranking similar tracks
    similar_patches: int = 48  # patches of a stored track used to look for similar tracks
    commit_every: int = 25  # files per all-or-nothing ingest step

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "LibrarySettings":
        if d.get("format_version") != FORMAT_VERSION:
            raise MismatchError(f"library settings format version {d.get('format_version')}, this tuneprint reads {FORMAT_VERSION}")
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**{**d, "index": IndexConfig(**d.get("index", {})), "vote": VoteConfig(**(d.get("vote") or {}))})


@dataclass(frozen=True)
class FileResult:
    path: str
    status: str  # "added", "duplicate" or "failed"
    song_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Match:
    song: Song
    vote: SongVote

    def to_dict(self) -> dict:
        return {"song_id": self.song.song_id, "path": self.song.path, "title": self.song.title,
                "artist": self.song.artist, "offset_s": round(self.vote.offset_s, 2),
                "score": round(self.vote.score, 4), "similarity": round(self.vote.similarity, 4),
                "votes": self.vote.votes, "labels": list(self.song.labels), "verified": _rounded(self.vote.verified)}


@dataclass(frozen=True)
class Identification:
    query: str
    match: Match | None
    candidates: list[Match]

    def to_dict(self) -> dict:
        return {"query": self.query, "match": self.match.to_dict() if self.match else None,
                "candidates": [{"song_id": c.song.song_id, "path": c.song.path, "title": c.song.title,
                                "score": round(c.vote.score, 4), "similarity": round(c.vote.similarity, 4),
                                "offset_s": round(c.vote.offset_s, 2), "verified": _rounded(c.vote.verified)}
                               for c in self.candidates]}


@dataclass(frozen=True)
class Neighbour:
    song: Song
    score: float  # mean over query patches of the best cosine similarity to this song

    def to_dict(self) -> dict:
        return {"song_id": self.song.song_id, "path": self.song.path, "title": self.song.title,
                "score": round(self.score, 4), "labels": list(self.song.labels)}


@dataclass(frozen=True)
class LabelAnswer:
    query: str
    label: str | None
    top: list[tuple[str, float]]

    def to_dict(self) -> dict:
        return {"query": self.query, "label": self.label, "top": [[lab, round(s, 4)] for lab, s in self.top]}


def find_audio_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively) to audio files, in a stable order.

    Paths named directly are kept whatever their extension (so a bad file is reported,
    not silently skipped); inside folders only known audio extensions are taken.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
        else:
            found.append(p)
    return found


def audio_hash(y: np.ndarray) -> str:
    """Content hash of decoded audio: the same recording in another container hashes the same."""
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype("<i2")
    return hashlib.sha256(pcm.tobytes()).hexdigest()


class Library:
    """A music library: add tracks, identify clips, find similar tracks, vote labels."""

    def __init__(self, root: Path, settings: LibrarySettings, catalog: Catalog, index: VectorIndex, model: LoadedModel):
        self.root = root
        self.settings = settings
        self.catalog = catalog
        self.index = index
        self.model_id = model.model_id
        self.embedder = Embedder(model)
        self.features = model.features
        self.model_vote = calibrated_vote(model)  # the encoder's own thresholds, if it was calibrated
        self._lock = threading.RLock()  # guards index + catalog writes and index reads

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, settings: LibrarySettings = LibrarySettings()) -> "Library":
        """Make a new, empty library folder."""
        root = Path(root)
        if (root / SETTINGS_FILE).exists():
            raise LibraryError(f"{root}: a library already exists here")
        if root.exists() and any(root.iterdir()):
            raise LibraryError(f"{root}: folder exists and is not empty; choose a new folder for the library")
        model = _load_library_model(root, settings.model)
        index_cfg = replace(settings.index, dim=model.net.cfg.embedding_dim)
        settings = replace(settings, index=index_cfg, vote=settings.vote or calibrated_vote(model) or VoteConfig())
        create_index(index_cfg)  # fail on a bad backend name before anything is written
        root.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(root / SETTINGS_FILE, settings.to_dict())
        catalog = Catalog(root / CATALOG_FILE)
        catalog.set_meta("model_id", model.model_id)
        index = create_index(index_cfg)
        save_index(index, root / INDEX_DIR, model_id=model.model_id)
        log.info("created library %s (backend %s, encoder %s)", root, index_cfg.backend, model.model_id)
        return cls(root, settings, catalog, index, model)

    @classmethod
    def open(cls, root: str | os.PathLike, *, check_model: bool = True) -> "Library":
        """Open an existing library; refuses one whose index does not match its catalog or encoder."""
        root = Path(root)
        if not (root / SETTINGS_FILE).is_file():
            raise LibraryError(f"{root}: not a tuneprint library (no {SETTINGS_FILE}); create one with `tuneprint add`")
        settings = LibrarySettings.from_dict(json.loads((root / SETTINGS_FILE).read_text()))
        model = _load_library_model(root, settings.model)
        catalog = Catalog(root / CATALOG_FILE)
        recorded = catalog.get_meta("model_id")
        if check_model and recorded != model.model_id:
            raise MismatchError(f"{root}: the library was embedded with encoder {recorded}, but its model is now "
                                f"{model.model_id}; run `tuneprint reindex --library {root}`")
        index = load_index(root / INDEX_DIR, model_id=recorded) if check_model else create_index(settings.index)
        lib = cls(root, settings, catalog, index, model)
        if check_model:
            lib._reconcile()
        return lib

    def _reconcile(self) -> None:
        """Make sure every catalog row has its vector; drop vectors of an ingest that never committed."""
        in_index, in_catalog = self.index.ids(), self.catalog.row_ids()
        missing = np.setdiff1d(in_catalog, in_index)
        if len(missing):
            raise MismatchError(f"{self.root}: the index lacks {len(missing)} snippets the catalog lists; "
                                f"run `tuneprint reindex --library {self.root}`")
        extra = np.setdiff1d(in_index, in_catalog)
        if len(extra):
            log.warning("dropping %d vectors of an interrupted ingest from the index", len(extra))
            self.index.remove(extra)
            save_index(self.index, self.root / INDEX_DIR, model_id=self.model_id)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------
    def add(self, paths: Sequence[str | os.PathLike], *, labels: dict[str, Sequence[str]] | None = None,
            default_labels: Sequence[str] = (), progress: Callable[[FileResult, float], None] | None = None) -> list[FileResult]:
        """Decode, embed and index audio files; every ``commit_every`` files are written all-or-nothing.

        Parameters
        ----------
        paths : audio files (folders must be expanded with :func:`find_audio_files` first)
        labels : absolute path → labels for that file (from a CSV), added to ``default_labels``
        progress : called after each file with its result and the seconds of audio it held
        """
        labels = {str(Path(k).resolve()): tuple(v) for k, v in (labels or {}).items()}
        results: list[FileResult] = []
        pending: list[tuple[Song, Embeddings]] = []
        seen_hashes: set[str] = set()
        paths = [Path(p) for p in paths]
        with ThreadPoolExecutor(max_workers=1) as pool:  # decode the next file while this one embeds
            decoded = pool.map(self._decode, paths)
            for path, (y, error) in zip(paths, decoded):
                result, seconds = self._prepare(path, y, error, labels, default_labels, seen_hashes, pending)
                results.append(result)
                if len(pending) >= self.settings.commit_every:
                    self._commit(pending)
                    pending = []
                if progress:
                    progress(result, seconds)
            self._commit(pending)
        return results

    def _decode(self, path: Path) -> tuple[np.ndarray | None, str | None]:
        try:
            return load_audio(path, sr=self.features.sample_rate, min_seconds=self.features.patch_seconds), None
        except AudioError as e:
            return None, str(e)

    def _prepare(self, path, y, error, labels, default_labels, seen_hashes, pending) -> tuple[FileResult, float]:
        absolute = str(path.resolve())
        if error:
            log.warning("skipping %s", error)
            return FileResult(absolute, "failed", error=error), 0.0
        seconds = len(y) / self.features.sample_rate
        digest = audio_hash(y)
        song_id = digest[:12]
        if digest in seen_hashes or self.catalog.song_by_hash(digest):
            return FileResult(absolute, "duplicate", song_id=song_id), seconds
        try:
            emb = self.embedder.embed_audio(y, hop_frames=self.settings.index_hop_frames)
        except AudioError as e:
            log.warning("skipping %s: %s", absolute, e)
            return FileResult(absolute, "failed", error=f"{absolute}: {e}"), seconds
        tags = read_tags(path)
        song = Song(song_id, absolute, tags.title or path.stem, tags.artist, seconds, digest,
                    tuple(sorted(set(default_labels) | set(labels.get(absolute, ())))))
        seen_hashes.add(digest)
        pending.append((song, emb))
        return FileResult(absolute, "added", song_id=song_id), seconds

    def _commit(self, pending: list[tuple[Song, Embeddings]]) -> None:
        """Write songs to catalog and index together: both change, or neither does."""
        if not pending:
            return
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._lock:
            added: list[np.ndarray] = []
            try:
                with self.catalog.transaction():
                    row = self.catalog.next_row_id()
                    for song, emb in pending:
                        ids = self.catalog.insert_song(song, emb.offsets_s, row, now)
                        self.catalog.put_spectrogram(song.song_id, emb.spectrogram)
                        self.index.add(ids, emb.vectors)
                        added.append(ids)
                        row += len(ids)
                    # Saved before the catalog commits: a crash here leaves extra vectors, dropped on open.
                    save_index(self.index, self.root / INDEX_DIR, model_id=self.model_id)
            except BaseException:
                if added:
                    self.index.remove(np.concatenate(added))
                raise
        log.info("committed %d songs", len(pending))

    def remove(self, song_id: str) -> Song:
        """Delete a song from catalog and index."""
        with self._lock:
            song = self.catalog.song(song_id)
            if song is None:
                raise NotFoundError(f"no song with id {song_id!r} in {self.root}")
            with self.catalog.transaction():
                row_ids = self.catalog.delete_song(song_id)
                vectors = self.index.vectors(row_ids)  # kept to restore the index if the write fails
                self.index.remove(row_ids)
                try:
                    save_index(self.index, self.root / INDEX_DIR, model_id=self.model_id)
                except BaseException:
                    self.index.add(row_ids, vectors)
                    raise
        return song

    def set_labels(self, song_id: str, labels: Sequence[str]) -> Song:
        with self._lock, self.catalog.transaction():
            if self.catalog.song(song_id) is None:
                raise NotFoundError(f"no song with id {song_id!r} in {self.root}")
            self.catalog.set_labels(song_id, tuple(sorted(set(labels))))
        return self.catalog.song(song_id)

    # -- reading -------------------------------------------------------------------------
    def embed_clip(self, clip: AudioSource | np.ndarray) -> Embeddings:
        """Decode and embed a query clip (a file, its bytes, or samples at the feature rate), patches cut densely."""
        if isinstance(clip, np.ndarray):
            y = clip.astype(np.float32)
        else:
            y = load_audio(clip, sr=self.features.sample_rate, min_seconds=self.features.min_clip_seconds)
        return self.embedder.embed_audio(y, hop_frames=self.settings.query_hop_frames, pad=True)

    def neighbours(self, vectors: np.ndarray, k: int):
        """The k nearest stored snippets of every vector: similarities [shape=(n, k)] and their catalog info."""
        with self._lock:
            sims, ids = self.index.search(vectors, min(k, max(len(self.index), 1)))
            info = self.catalog.lookup(ids)
        return sims, info

    def identify(self, clip: AudioSource, *, name: str | None = None) -> Identification:
        """Which song the clip comes from, where in it, how sure — or no match."""
        emb = self.embed_clip(clip)
        return self.identify_embeddings(emb, name=name or _name(clip))

    def identify_embeddings(self, emb: Embeddings, *, name: str = "") -> Identification:
        cfg = self.settings.vote.for_library(self.catalog.song_count())
        sims, info = self.neighbours(emb.vectors, cfg.k)
        votes = vote_songs(info.song_ids, sims, info.offsets_s, emb.offsets_s, cfg)
        if cfg.verifies and emb.spectrogram is not None:
            votes = verify_and_rank(votes, emb.spectrogram, self.reference_spectrogram, self.features, cfg)
        winner = decide(votes, cfg)
        candidates = [Match(self._song(v.song_id), v) for v in votes[: cfg.top]]
        match = candidates[0] if winner is not None else None
        return Identification(name, match, candidates)

    def reference_spectrogram(self, song_id: str) -> np.ndarray | None:
        """A song's log-mel spectrogram: stored at ingest; for songs of a library made before that,
        computed from the song's file once and stored. None when the file can no longer be read."""
        S_db = self.catalog.spectrogram(song_id)
        if S_db is not None:
            return S_db
        song = self._song(song_id)
        try:
            S_db = log_mel(load_audio(song.path, sr=self.features.sample_rate), self.features)
        except (AudioError, OSError) as e:
            log.warning("cannot verify %s: %s", song_id, e)
            return None
        with self._lock, self.catalog.transaction():
            if self.catalog.song(song_id) is not None:  # not removed meanwhile
                self.catalog.put_spectrogram(song_id, S_db)
        return S_db

    def similar(self, clip: AudioSource | None = None, *, track: str | None = None, n: int = 10,
                name: str | None = None) -> tuple[str, list[Neighbour]]:
        """Tracks nearest to a clip, or to a stored track (itself excluded)."""
        if (clip is None) == (track is None):
            raise ValueError("give exactly one of a clip or a track id")
        if track is not None:
            vectors = self._track_vectors(track)
            query, exclude = name or track, {track}
        else:
            vectors = self.embed_clip(clip).vectors
            query, exclude = name or _name(clip), set()
        sims, info = self.neighbours(vectors, self.settings.similar_k)
        best: dict[str, np.ndarray] = {}
        for q in range(len(vectors)):
            for j in range(sims.shape[1]):
                song = info.song_ids[q, j]
                if song is None or song in exclude:
                    continue
                row = best.setdefault(song, np.zeros(len(vectors)))
                row[q] = max(row[q], sims[q, j])
        ranked = sorted(((float(v.mean()), s) for s, v in best.items()), reverse=True)[:n]
        return query, [Neighbour(self._song(s), score) for score, s in ranked]

    def _track_vectors(self, song_id: str) -> np.ndarray:
        row_ids = self.catalog.row_ids(song_id)
        if len(row_ids) == 0:
            raise NotFoundError(f"no song with id {song_id!r} in {self.root}")
        pick = np.unique(np.linspace(0, len(row_ids) - 1, min(len(row_ids), self.settings.similar_patches)).round().astype(int))
        with self._lock:
            return self.index.vectors(row_ids[pick])

    def label(self, clip: AudioSource, *, name: str | None = None, exclude_song: str | None = None) -> LabelAnswer:
        """Label a clip by the majority of its neighbours' labels (top 2 reported)."""
        emb = self.embed_clip(clip)
        return self.label_embeddings(emb, name=name or _name(clip), exclude_song=exclude_song)

    def label_embeddings(self, emb: Embeddings, *, name: str = "", exclude_song: str | None = None) -> LabelAnswer:
        cfg = self.settings.vote
        k = cfg.k + (self.settings.similar_k if exclude_song else 0)  # room for the excluded song's own patches
        sims, info = self.neighbours(emb.vectors, k)
        song_ids = info.song_ids
        if exclude_song is not None:
            kept = [[s for s in row if s != exclude_song][: cfg.k] for row in song_ids]
            song_ids = np.array([row + [None] * (cfg.k - len(row)) for row in kept], dtype=object)
        top = vote_labels(song_ids, info.labels, top=cfg.top)
        return LabelAnswer(name, top[0][0] if top else None, top)

    def song(self, song_id: str) -> Song:
        return self._song(song_id)

    def _song(self, song_id: str) -> Song:
        song = self.catalog.song(song_id)
        if song is None:
            raise NotFoundError(f"no song with id {song_id!r} in {self.root}")
        return song

    def tracks(self, limit: int | None = None, offset: int = 0) -> list[Song]:
        return self.catalog.songs(limit=limit, offset=offset)

    def stats(self) -> dict:
        counts = self.catalog.counts()
        vote = self.settings.vote.for_library(counts["songs"])
        index_bytes = sum(f.stat().st_size for f in (self.root / INDEX_DIR).glob("*") if f.is_file())
        # songs, snippets and the songs' spectrograms for verification (SQLite and its write-ahead log)
        catalog_bytes = sum(f.stat().st_size for f in self.root.glob(CATALOG_FILE + "*") if f.is_file())
        return {"library": str(self.root), "songs": counts["songs"], "snippets": counts["snippets"],
                "hours": round(counts["hours"], 4), "labels": counts["labels"], "backend": self.settings.index.backend,
                "vectors": len(self.index), "index_bytes": index_bytes,
                "catalog_bytes": catalog_bytes, "model_id": self.model_id,
                "patch_hop_s": round(self.settings.index_hop_frames * self.features.frame_seconds, 4),
                # the similarity below which a clip is "unknown" at this library's size: 3-s clips, and
                # the lower bar of long clips (≥ 6 s when calibrated; the same when not)
                "min_similarity": round(vote.min_similarity, 4),
                "min_similarity_long": round(vote.min_similarity_for(10**6), 4),
                # spectral verification (index/verify.py): songs checked, and the bar on the evidence
                "verify_top": vote.verify_top if vote.verifies else 0, "verify_weight": vote.verify_weight,
                "min_evidence": round(vote.min_evidence, 4)}

    # -- maintenance ---------------------------------------------------------------------
    def adopt_model(self, checkpoint: str | os.PathLike) -> str:
        """Make a trained checkpoint this library's encoder (encoder part only, half precision).

        The library must then be re-embedded (:meth:`reindex`) before it answers queries again.
        """
        from tuneprint.encoder.checkpoint import load_checkpoint, save_checkpoint

        loaded = load_checkpoint(checkpoint)
        save_checkpoint(self.root / LIBRARY_MODEL, loaded.net, loaded.features, half=True, encoder_only=True,
                        extra={"source": str(Path(checkpoint).resolve()), **loaded.meta.get("extra", {})})
        self.settings = replace(self.settings, model=LIBRARY_MODEL)
        _write_json_atomic(self.root / SETTINGS_FILE, self.settings.to_dict())
        return str(self.root / LIBRARY_MODEL)

    def reindex(self, progress: Callable[[Song], None] | None = None) -> int:
        """Re-embed every song from its file with the library's current model and rebuild the index.

        The new index replaces the old one only when every song was embedded. A model that carries
        calibrated "unknown" thresholds (scripts/calibrate.py) brings them along: thresholds of
        another encoder mean nothing for the new embeddings.
        """
        songs = self.catalog.songs()
        fresh = create_index(self.settings.index)
        rows: list[tuple[Song, Embeddings]] = []
        for song in songs:
            y = load_audio(song.path, sr=self.features.sample_rate)
            rows.append((song, self.embedder.embed_audio(y, hop_frames=self.settings.index_hop_frames)))
            if progress:
                progress(song)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._lock, self.catalog.transaction():
            for song, _ in rows:
                self.catalog.delete_song(song.song_id)
            row = self.catalog.next_row_id()
            for song, emb in rows:
                ids = self.catalog.insert_song(song, emb.offsets_s, row, now)
                self.catalog.put_spectrogram(song.song_id, emb.spectrogram)
                fresh.add(ids, emb.vectors)
                row += len(ids)
            self.catalog.set_meta("model_id", self.model_id)
            save_index(fresh, self.root / INDEX_DIR, model_id=self.model_id)
            self.index = fresh
            if self.model_vote is not None and self.model_vote != self.settings.vote:
                self.settings = replace(self.settings, vote=self.model_vote)
                _write_json_atomic(self.root / SETTINGS_FILE, self.settings.to_dict())
                log.info("library %s now uses the encoder's calibrated thresholds %s", self.root, self.model_vote.to_dict())
        return len(rows)


def calibrated_vote(model: LoadedModel) -> VoteConfig | None:
    """Vote settings with the "unknown" thresholds calibrated for this model (scripts/calibrate.py), if any."""
    calibration = model.meta.get("extra", {}).get("calibration") if model.meta else None
    if not calibration:
        return None
    return VoteConfig(**{k: v for k, v in calibration.items() if k in VoteConfig.__dataclass_fields__})


def _load_library_model(root: Path, spec: str) -> LoadedModel:
    if spec not in ("default", "seeded", "") and not Path(spec).is_absolute():
        spec = str(root / spec)
    return load_model(spec)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _name(clip) -> str:
    if isinstance(clip, np.ndarray):
        return "samples"
    return "upload" if isinstance(clip, (bytes, bytearray)) else str(Path(clip).resolve())


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
