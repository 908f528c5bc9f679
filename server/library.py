"""The Python API of tuneprint: a library folder that joins encoder, vector index and catalog.

The command line and the HTTP service are thin adapters over :class:`Library`. A clip's way:
:meth:`Library.identify` decodes it (encoder/audio.py), embeds it (encoder/embeddings.py) and
hands the vectors to the identification pipeline (index/search.py); the answer is shaped by
server/answers.py. The folder's layout is in server/settings.py.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tuneprint.errors import LibraryError, MismatchError, NotFoundError
from tuneprint.index.catalog import Catalog, Song
from tuneprint.index.vectors import VectorIndex, create_index, load_index, save_index
from tuneprint.index.vote import VoteConfig

from .answers import FileResult, Identification, LabelAnswer, Match, Neighbour, confidence
from .ingest import PreparedFile, audio_hash, find_audio_files, prepare_files
from .settings import (CATALOG_FILE, INDEX_DIR, LIBRARY_MODEL, SETTINGS_FILE, LibrarySettings, read_settings,
                       write_settings)

log = logging.getLogger(__name__)

AudioSource = "str | os.PathLike | bytes"
__all__ = ["Library", "LibrarySettings", "FileResult", "Identification", "LabelAnswer", "Match", "Neighbour",
           "find_audio_files", "audio_hash", "calibrated_vote"]


class Library:
    """A music library: add tracks, identify clips, find similar tracks, vote labels.

    Opened with ``load_encoder=False`` it reads settings and catalog only (no model, no index):
    :meth:`tracks`, :meth:`song` and :meth:`stats` work, and start in a fraction of a second.
    """

    def __init__(self, root: Path, settings: LibrarySettings, catalog: Catalog, index: VectorIndex | None, model=None):
        self.root = root
        self.settings = settings
        self.catalog = catalog
        self.index = index
        self.model = model
        self.model_id = model.model_id if model is not None else catalog.get_meta("model_id")
        self.features = model.features if model is not None else _recorded_features(catalog)
        self.embedder = _embedder(model) if model is not None else None
        self.model_vote = calibrated_vote(model) if model is not None else None  # the encoder's own thresholds
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
        write_settings(root, settings)
        catalog = Catalog(root / CATALOG_FILE)
        _record_model(catalog, model)
        index = create_index(index_cfg)
        save_index(index, root / INDEX_DIR, model_id=model.model_id)
        log.info("created library %s (backend %s, encoder %s)", root, index_cfg.backend, model.model_id)
        return cls(root, settings, catalog, index, model)

    @classmethod
    def open(cls, root: str | os.PathLike, *, check_model: bool = True, load_encoder: bool = True) -> "Library":
        """Open an existing library; refuses one whose index does not match its catalog or encoder."""
        root = Path(root)
        if not (root / SETTINGS_FILE).is_file():
            raise LibraryError(f"{root}: not a tuneprint library (no {SETTINGS_FILE}); create one with `tuneprint add`")
        settings = read_settings(root)
        if not load_encoder:
            return cls(root, settings, Catalog(root / CATALOG_FILE), None)
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
            lib._store_missing_spectrograms()
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

    def _store_missing_spectrograms(self) -> None:
        """Libraries made before the catalog kept spectrograms get them once, here, from the songs'
        files, so that a query only ever reads. A song whose file is gone is judged by similarity alone."""
        from tuneprint.encoder.audio import load_audio
        from tuneprint.encoder.features import log_mel
        from tuneprint.errors import AudioError

        missing = self.catalog.songs_without_spectrogram()
        if missing:
            log.info("storing the spectrograms of %d songs (library made by an older tuneprint)", len(missing))
        for song_id in missing:
            try:
                S_db = log_mel(load_audio(self._song(song_id).path, sr=self.features.sample_rate), self.features)
            except (AudioError, OSError) as e:
                log.warning("cannot verify %s: %s", song_id, e)
                continue
            with self._lock, self.catalog.transaction():
                self.catalog.put_spectrogram(song_id, S_db)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------
    def add(self, paths: Sequence[str | os.PathLike], *, labels: dict[str, Sequence[str]] | None = None,
            default_labels: Sequence[str] = (), progress: Callable[[FileResult, float], None] | None = None,
            jobs: int = 1) -> list[FileResult]:
        """Decode, embed and index audio files; every ``commit_every`` files are written all-or-nothing.

        Parameters
        ----------
        paths : audio files (folders must be expanded with :func:`find_audio_files` first)
        labels : absolute path → labels for that file (from a CSV), added to ``default_labels``
        progress : called after each file with its result and the seconds of audio it held
        jobs : worker processes that decode and embed (1: this process)
        """
        self._require_encoder()
        labels = {str(Path(k).resolve()): tuple(v) for k, v in (labels or {}).items()}
        results: list[FileResult] = []
        pending: list[tuple[Song, object]] = []
        seen_hashes: set[str] = set()
        prepared_files = prepare_files([Path(p) for p in paths], self.embedder, self.settings.index_hop_frames,
                                       known_hashes=self.catalog.audio_hashes(), jobs=jobs,
                                       model_spec=_model_spec(self.root, self.settings.model))
        for prepared in prepared_files:
            result = self._accept(prepared, labels, default_labels, seen_hashes, pending)
            results.append(result)
            if len(pending) >= self.settings.commit_every:
                self._commit(pending)
                pending = []
            if progress:
                progress(result, prepared.seconds)
        self._commit(pending)
        return results

    def _accept(self, prepared: PreparedFile, labels, default_labels, seen_hashes, pending) -> FileResult:
        """Queue a prepared file for the next commit, or say why not (duplicate, failed)."""
        if prepared.audio_hash is None:
            log.debug("skipping %s", prepared.error)
            return FileResult(prepared.path, "failed", error=prepared.error)
        song_id = prepared.audio_hash[:12]
        if prepared.audio_hash in seen_hashes or self.catalog.song_by_hash(prepared.audio_hash):
            return FileResult(prepared.path, "duplicate", song_id=song_id)
        if prepared.error:
            log.debug("skipping %s", prepared.error)
            return FileResult(prepared.path, "failed", error=prepared.error)
        song = Song(song_id, prepared.path, prepared.title, prepared.artist, prepared.seconds, prepared.audio_hash,
                    tuple(sorted(set(default_labels) | set(labels.get(prepared.path, ())))))
        seen_hashes.add(prepared.audio_hash)
        pending.append((song, prepared.embeddings))
        return FileResult(prepared.path, "added", song_id=song_id)

    def _commit(self, pending: list[tuple[Song, object]]) -> None:
        """Write songs to catalog and index together: both change, or neither does."""
        if not pending:
            return
        with self._lock:
            added: list[np.ndarray] = []
            try:
                with self.catalog.transaction():
                    added = _insert(self.catalog, self.index, pending)
                    # Saved before the catalog commits: a crash here leaves extra vectors, dropped on open.
                    save_index(self.index, self.root / INDEX_DIR, model_id=self.model_id)
            except BaseException:
                if added:
                    self.index.remove(np.concatenate(added))
                raise
        log.info("committed %d songs", len(pending))

    def remove(self, song_id: str) -> Song:
        """Delete a song from catalog and index."""
        self._require_encoder()
        with self._lock:
            song = self._song(song_id)
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
            self._song(song_id)
            self.catalog.set_labels(song_id, tuple(sorted(set(labels))))
        return self.catalog.song(song_id)

    # -- reading -------------------------------------------------------------------------
    def embed_clip(self, clip: AudioSource | np.ndarray):
        """Decode and embed a query clip (a file, its bytes, or samples at the feature rate), patches cut densely."""
        from tuneprint.encoder.audio import load_audio

        self._require_encoder()
        if isinstance(clip, np.ndarray):
            y = clip.astype(np.float32)
        else:
            y = load_audio(clip, sr=self.features.sample_rate, min_seconds=self.features.min_clip_seconds)
        return self.embedder.embed_audio(y, hop_frames=self.settings.query_hop_frames, pad=True)

    def neighbours(self, vectors: np.ndarray, k: int):
        """The k nearest stored snippets of every vector (index.search.Neighbours)."""
        from tuneprint.index.search import find_neighbours

        self._require_encoder()
        with self._lock:
            return find_neighbours(vectors, self.index, self.catalog, k)

    def identify(self, clip: AudioSource, *, name: str | None = None) -> Identification:
        """Which song the clip comes from, where in it, how sure — or no match, and why."""
        return self.identify_embeddings(self.embed_clip(clip), name=name or _name(clip))

    def identify_embeddings(self, emb, *, name: str = "") -> Identification:
        from tuneprint.index.search import decide_clip

        cfg = self.settings.vote.for_library(self.catalog.song_count())
        decision = decide_clip(self.neighbours(emb.vectors, cfg.k), emb.offsets_s, emb.spectrogram, self.catalog,
                               cfg, self.features)
        candidates = [Match(self._song(v.song_id), v, confidence(v, cfg)) for v in decision.votes[: cfg.top]]
        match = candidates[0] if decision.winner is not None else None
        clip_s = emb.spectrogram.shape[1] * self.features.frame_seconds if emb.spectrogram is not None else None
        return Identification(name, match, candidates, decision.reason, clip_s)

    def similar(self, clip: AudioSource | None = None, *, track: str | None = None, n: int = 10,
                name: str | None = None) -> tuple[str, list[Neighbour]]:
        """Tracks nearest to a clip, or to a stored track (itself excluded)."""
        from tuneprint.index.search import rank_similar

        if (clip is None) == (track is None):
            raise ValueError("give exactly one of a clip or a track id")
        if track is not None:
            vectors, query, exclude = self._track_vectors(track), name or track, {track}
        else:
            vectors, query, exclude = self.embed_clip(clip).vectors, name or _name(clip), set()
        ranked = rank_similar(self.neighbours(vectors, self.settings.similar_k), n, exclude)
        return query, [Neighbour(self._song(s), score) for s, score in ranked]

    def _track_vectors(self, song_id: str) -> np.ndarray:
        self._require_encoder()
        row_ids = self.catalog.row_ids(song_id)
        if len(row_ids) == 0:
            raise NotFoundError(f"no song with id {song_id!r} in {self.root}")
        pick = np.unique(np.linspace(0, len(row_ids) - 1, min(len(row_ids), self.settings.similar_patches)).round().astype(int))
        with self._lock:
            return self.index.vectors(row_ids[pick])

    def label(self, clip: AudioSource, *, name: str | None = None, exclude_song: str | None = None) -> LabelAnswer:
        """Label a clip by the majority of its neighbours' labels (top 2 reported)."""
        return self.label_embeddings(self.embed_clip(clip), name=name or _name(clip), exclude_song=exclude_song)

    def label_embeddings(self, emb, *, name: str = "", exclude_song: str | None = None) -> LabelAnswer:
        from tuneprint.index.search import label_votes

        cfg = self.settings.vote
        k = cfg.k + (self.settings.similar_k if exclude_song else 0)  # room for the excluded song's own patches
        neighbours = self.neighbours(emb.vectors, k)
        if exclude_song is not None:
            neighbours = neighbours.without(exclude_song, cfg.k)
        top = label_votes(neighbours, top=cfg.top)
        if top and float(np.median(neighbours.sims.max(axis=1))) < self.settings.label_min_similarity:
            return LabelAnswer(name, None, top, "no_clear_label")
        return LabelAnswer(name, top[0][0] if top else None, top, None if top else "no_clear_label")

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
                "vectors": len(self.index) if self.index is not None else _recorded_vector_count(self.root),
                "index_bytes": index_bytes, "catalog_bytes": catalog_bytes, "model_id": self.model_id,
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
        write_settings(self.root, self.settings)
        return str(self.root / LIBRARY_MODEL)

    def reindex(self, progress: Callable[[Song], None] | None = None) -> int:
        """Re-embed every song from its file with the library's current model and rebuild the index.

        The new index replaces the old one only when every song was embedded. A model that carries
        calibrated "unknown" thresholds (index/calibration.py) brings them along: thresholds of
        another encoder mean nothing for the new embeddings.
        """
        from tuneprint.encoder.audio import load_audio

        self._require_encoder()
        songs = self.catalog.songs()
        fresh = create_index(self.settings.index)
        rows: list[tuple[Song, object]] = []
        for song in songs:
            y = load_audio(song.path, sr=self.features.sample_rate)
            rows.append((song, self.embedder.embed_audio(y, hop_frames=self.settings.index_hop_frames)))
            if progress:
                progress(song)
        with self._lock, self.catalog.transaction():
            for song, _ in rows:
                self.catalog.delete_song(song.song_id)
            _insert(self.catalog, fresh, rows)
            _record_model(self.catalog, self.model)
            save_index(fresh, self.root / INDEX_DIR, model_id=self.model_id)
            self.index = fresh
            if self.model_vote is not None and self.model_vote != self.settings.vote:
                self.settings = replace(self.settings, vote=self.model_vote)
                write_settings(self.root, self.settings)
                log.info("library %s now uses the encoder's calibrated thresholds %s", self.root, self.model_vote.to_dict())
        return len(rows)

    def _require_encoder(self) -> None:
        if self.embedder is None:
            raise LibraryError(f"{self.root}: opened without its encoder (load_encoder=False); open it again to do this")


def _insert(catalog: Catalog, index: VectorIndex, rows: list[tuple[Song, object]]) -> list[np.ndarray]:
    """Insert songs with their snippets, spectrograms and vectors (inside a catalog transaction).

    Returns the row ids given to each song's vectors.
    """
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    row = catalog.next_row_id()
    added = []
    for song, emb in rows:
        ids = catalog.insert_song(song, emb.offsets_s, row, now)
        catalog.put_spectrogram(song.song_id, emb.spectrogram)
        index.add(ids, emb.vectors)
        added.append(ids)
        row += len(ids)
    return added


def calibrated_vote(model) -> VoteConfig | None:
    """Vote settings with the "unknown" thresholds calibrated for this model (index/calibration.py), if any."""
    calibration = model.meta.get("extra", {}).get("calibration") if model.meta else None
    if not calibration:
        return None
    return VoteConfig(**{k: v for k, v in calibration.items() if k in VoteConfig.__dataclass_fields__})


def _model_spec(root: Path, spec: str) -> str:
    if spec not in ("default", "seeded", "") and not Path(spec).is_absolute():
        return str(root / spec)
    return spec


def _load_library_model(root: Path, spec: str):
    from tuneprint.encoder.checkpoint import load_model

    return load_model(_model_spec(root, spec))


def _embedder(model):
    from tuneprint.encoder.embeddings import Embedder

    return Embedder(model)


def _record_model(catalog: Catalog, model) -> None:
    """What a library opened without its encoder needs to know of it: its id and feature settings."""
    catalog.set_meta("model_id", model.model_id)
    catalog.set_meta("features", json.dumps(model.features.to_dict()))


def _recorded_features(catalog: Catalog):
    from tuneprint.encoder.features import FeatureConfig

    recorded = catalog.get_meta("features")
    return FeatureConfig(**json.loads(recorded)) if recorded else FeatureConfig()


def _recorded_vector_count(root: Path) -> int:
    from tuneprint.index.vectors import META_FILE

    meta = root / INDEX_DIR / META_FILE
    return int(json.loads(meta.read_text()).get("count", 0)) if meta.is_file() else 0


def _name(clip) -> str:
    if isinstance(clip, np.ndarray):
        return "samples"
    return "upload" if isinstance(clip, (bytes, bytearray)) else str(Path(clip).resolve())
