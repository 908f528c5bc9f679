"""The Python API of tuneprint: a library folder that joins encoder, vector index and catalog.

The command line and the HTTP service are thin adapters over :class:`Library`. A clip's way:
:meth:`Library.identify` decodes it (encoder/audio.py), embeds it (encoder/embeddings.py) and
hands the vectors to the identification pipeline (index/search.py); the answer is shaped by
server/answers.py. The folder's layout is in server/folder.py.
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from tuneprint.errors import BusyError, LibraryError, MismatchError, NotFoundError
from tuneprint.index.catalog import LABEL, TAG, Catalog, Song
from tuneprint.index.landmarks import LandmarkIndex, LandmarkRule, confidence as landmark_confidence, winner
from tuneprint.index.vectors import VectorIndex, create_index, load_index, save_index
from tuneprint.index.vote import SongVote, VoteConfig

from .answers import TOO_SHORT, FileResult, Identification, LabelAnswer, Match, Neighbour, SimilarAnswer, Stretch, confidence
from .gate import add_refusal, gate_for, music_verdict
from .style import STYLE_ID_KEY, rank_similar_tracks, style_for, style_spec
from .ingest import PreparedFile, audio_hash, find_audio_files, prepare_files
from .distributed import RayIngest
from .folder import (CATALOG_FILE, INDEX_DIR, SETTINGS_FILE, LibrarySettings, build_atomically, calibrated_vote,
                     embedder_for, insert_songs, load_library_model, model_spec, open_catalog, read_part,
                     library_stats, read_settings, recorded_features, write_empty_library)
from .maintenance import adopt_model, reindex, store_missing_spectrograms
from .monitor import MonitorConfig, monitor
from .writelock import DEFAULT_WAIT_S, writer_lock

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
        self.features = model.features if model is not None else recorded_features(catalog)
        self.style = style_for(self.model_id, style_spec(root, settings.style)) if model is not None else None
        self.embedder = embedder_for(model, self.style, settings.landmarks) if model is not None else None
        self.model_vote = calibrated_vote(model) if model is not None else None  # the encoder's own thresholds
        self.gate = gate_for(self.model_id) if model is not None else None  # music or not (server/gate.py)
        self.write_wait_s = DEFAULT_WAIT_S  # how long a write waits for another process's (then BusyError)
        self._generation = catalog.generation()  # the catalog's change count this index and settings match
        self._lock = threading.RLock()  # guards index + catalog writes and index reads in this process
        self._style_index = None  # (generation, StyleIndex), built from the catalog when first searched
        self._landmark_index = None  # (generation, LandmarkIndex), likewise

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, settings: LibrarySettings = LibrarySettings()) -> "Library":
        """Make a new, empty library folder."""
        root = Path(root)
        if (root / SETTINGS_FILE).exists():
            raise LibraryError(f"{root}: a library already exists here")
        if root.exists() and any(root.iterdir()):
            raise LibraryError(f"{root}: folder exists and is not empty; choose a new folder for the library")
        model = load_library_model(root, settings.model)
        index_cfg = replace(settings.index, dim=model.net.cfg.embedding_dim)
        settings = replace(settings, index=index_cfg, vote=settings.vote or calibrated_vote(model) or VoteConfig())
        create_index(index_cfg)  # fail on a bad backend name before anything is written
        style = style_for(model.model_id, style_spec(root, settings.style))
        build_atomically(root, lambda folder: write_empty_library(folder, settings, model, style))
        log.info("created library %s (backend %s, encoder %s)", root, index_cfg.backend, model.model_id)
        return cls(root, settings, Catalog(root / CATALOG_FILE), load_index(root / INDEX_DIR, model_id=model.model_id),
                   model)

    @classmethod
    def open(cls, root: str | os.PathLike, *, check_model: bool = True, load_encoder: bool = True) -> "Library":
        """Open an existing library; refuses one whose index does not match its catalog or encoder."""
        root = Path(root)
        if not (root / SETTINGS_FILE).is_file():
            raise LibraryError(f"{root}: not a tuneprint library (no {SETTINGS_FILE}); create one with `tuneprint add`")
        settings = read_part(root / SETTINGS_FILE, lambda: read_settings(root))
        catalog = read_part(root / CATALOG_FILE, lambda: open_catalog(root))
        if not load_encoder:
            return cls(root, settings, catalog, None)
        model = load_library_model(root, settings.model)
        recorded = catalog.get_meta("model_id")
        if check_model and recorded != model.model_id:
            raise MismatchError(f"{root}: the library was embedded with encoder {recorded}, but its model is now "
                                f"{model.model_id}; run `tuneprint reindex --library {root}`")
        index = (read_part(root / INDEX_DIR, lambda: load_index(root / INDEX_DIR, model_id=recorded)) if check_model
                 else create_index(settings.index))
        lib = cls(root, settings, catalog, index, model)
        if check_model:
            lib._reconcile()
            store_missing_spectrograms(lib)
        return lib

    def _reconcile(self) -> None:
        """Make sure every catalog row has its vector; drop vectors of an ingest that never committed."""
        in_index, in_catalog = self.index.ids(), self.catalog.row_ids()
        missing = np.setdiff1d(in_catalog, in_index)
        if len(missing):
            raise MismatchError(f"{self.root}: the index lacks {len(missing)} snippets the catalog lists; "
                                f"run `tuneprint doctor --library {self.root}`")
        extra = np.setdiff1d(in_index, in_catalog)
        if len(extra):  # harmless to searches (no song); dropped from the file when no writer is at work
            self.index.remove(extra)
            if self._may_write_now():
                with self.writing(wait_s=0):
                    log.warning("dropping %d vectors of an interrupted ingest from the index", len(extra))
                    save_index(self.index, self.root / INDEX_DIR, model_id=self.model_id)

    def close(self) -> None:
        self.catalog.close()

    # -- one writer at a time, readers that follow ------------------------------------------
    @contextmanager
    def writing(self, wait_s: float | None = None):
        """Hold the writer lock (this process's and the folder's), with this object caught up with
        what other processes wrote meanwhile."""
        if self.catalog.read_only:
            raise LibraryError(f"{self.root}: the library is read-only here; it can be searched, not changed")
        with self._lock, writer_lock(self.root, self.write_wait_s if wait_s is None else wait_s):
            self.refresh()
            yield

    def refresh(self) -> bool:
        """Reload index and settings if another process changed the library since; True if it did."""
        generation = self.catalog.generation()
        if generation == self._generation:
            return False
        with self._lock:
            self.settings = read_settings(self.root)
            if self.index is not None:
                self.index = load_index(self.root / INDEX_DIR, model_id=self.model_id)
            if self.model is not None:
                self._reload_style()
            self._generation = generation
        log.info("library %s changed on disk (generation %d): reloaded", self.root, generation)
        return True

    def _reload_style(self) -> None:
        """Take the style head the settings name once the catalog's style vectors come from another
        head than ours: another process trained the library its own (`tuneprint train --style`) and
        re-embedded it. Most changes (an `add`) leave the head alone, and nothing is read then."""
        recorded = self.catalog.get_meta(STYLE_ID_KEY)
        if not recorded or recorded == (self.style and self.style.style_id):
            return
        style = style_for(self.model_id, style_spec(self.root, self.settings.style))
        self.style, self.embedder, self._style_index = style, embedder_for(self.model, style, self.settings.landmarks), None

    def _may_write_now(self) -> bool:
        """Whether this process can take the writer lock at once (not read-only, no other writer)."""
        if self.catalog.read_only:
            return False
        try:
            with writer_lock(self.root, 0):
                return True
        except (BusyError, OSError):
            return False

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------
    def add(self, paths: Sequence[str | os.PathLike], *, labels: dict[str, Sequence[str]] | None = None,
            default_labels: Sequence[str] = (), tags: dict[str, Sequence[str]] | None = None,
            default_tags: Sequence[str] = (), progress: Callable[[FileResult, float], None] | None = None,
            on_commit: Callable[[list[FileResult]], None] | None = None, jobs: int = 1,
            commit_every: int | None = None, allow_non_music: bool = False,
            ray: RayIngest | None = None) -> list[FileResult]:
        """Decode, embed and index audio files; every ``commit_every`` files are written all-or-nothing.
        Files the music gate calls non-music fail unless ``allow_non_music``.

        Parameters
        ----------
        paths : audio files (folders must be expanded with :func:`find_audio_files` first)
        labels : absolute path → labels for that file (from a CSV), added to ``default_labels``
        tags : absolute path → tags for that file, added to ``default_tags``
        progress : called after each file is decoded and embedded, with its tentative result and the
            seconds of audio it held (for progress bars: "added" is not final until its commit)
        on_commit : called after each batch is durably written, with that batch's final results
            (what to report as added: a crash later loses none of them)
        jobs : worker processes that decode and embed (1: this process)
        ray : decode and embed on Ray actors instead (server/distributed.py); the commits stay here
        commit_every : files per commit (default: the library's setting)
        """
        self._require_encoder()
        labels, tags = ({str(Path(k).resolve()): tuple(v) for k, v in (d or {}).items()} for d in (labels, tags))

        def marks(path: str) -> dict:  # a file's labels and tags: those given for every file and its own
            return {"labels": tuple(sorted({*default_labels, *labels.get(path, ())})),
                    "tags": tuple(sorted({*default_tags, *tags.get(path, ())}))}
        results: list[FileResult] = []
        batch: list[FileResult] = []
        pending: list[tuple[Song, object]] = []
        seen_hashes: set[str] = set()
        prepared_files = prepare_files([Path(p) for p in paths], self.embedder, self.settings.index_hop_frames,
                                       known_hashes=self.catalog.audio_hashes(), jobs=jobs,
                                       model_spec=model_spec(self.root, self.settings.model), ray=ray)
        for prepared in prepared_files:
            batch.append(self._accept(prepared, marks, seen_hashes, pending, allow_non_music))
            if progress:
                progress(batch[-1], prepared.seconds)
            if len(pending) >= (commit_every or self.settings.commit_every):
                results += self._commit_batch(batch, pending, on_commit)
                batch, pending = [], []
        results += self._commit_batch(batch, pending, on_commit)
        return results

    def _commit_batch(self, batch: list[FileResult], pending: list[tuple[Song, object]],
                      on_commit: Callable[[list[FileResult]], None] | None) -> list[FileResult]:
        """Commit ``pending``; songs another process stored meanwhile become duplicates."""
        stored = self._commit(pending)
        final = [replace(r, status="duplicate") if r.status == "added" and r.song_id not in stored else r for r in batch]
        if on_commit and final:
            on_commit(final)
        return final

    def _accept(self, prepared: PreparedFile, marks, seen_hashes, pending, allow_non_music=False) -> FileResult:
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
        if not allow_non_music and (refusal := add_refusal(self.gate, prepared.path, prepared.embeddings)):
            return FileResult(prepared.path, "failed", error=refusal)
        song = Song(song_id, prepared.path, prepared.title, prepared.artist, prepared.seconds, prepared.audio_hash,
                    **marks(prepared.path))
        seen_hashes.add(prepared.audio_hash)
        pending.append((song, prepared.embeddings))
        return FileResult(prepared.path, "added", song_id=song_id)

    def _commit(self, pending: list[tuple[Song, object]]) -> set[str]:
        """Write songs to catalog and index together: both change, or neither does.

        Returns the ids of the songs written (those another writer stored meanwhile are skipped).
        """
        if not pending:
            return set()
        with self.writing():
            pending = [(song, emb) for song, emb in pending if self.catalog.song_by_hash(song.audio_hash) is None]
            added: list[np.ndarray] = []
            try:
                with self.catalog.transaction():
                    added = insert_songs(self.catalog, self.index, pending)
                    # Saved before the catalog commits: a crash here leaves extra vectors, dropped on open.
                    save_index(self.index, self.root / INDEX_DIR, model_id=self.model_id)
                    self._generation = self.catalog.bump_generation()
            except BaseException:
                if added:
                    self.index.remove(np.concatenate(added))
                raise
        log.info("committed %d songs", len(pending))
        return {song.song_id for song, _ in pending}

    def remove(self, song_id: str) -> Song:
        """Delete a song from catalog and index."""
        self._require_encoder()
        with self.writing():
            song = self._song(song_id)
            with self.catalog.transaction():
                row_ids = self.catalog.delete_song(song_id)
                vectors = self.index.vectors(row_ids)  # kept to restore the index if the write fails
                self.index.remove(row_ids)
                try:
                    save_index(self.index, self.root / INDEX_DIR, model_id=self.model_id)
                    self._generation = self.catalog.bump_generation()
                except BaseException:
                    self.index.add(row_ids, vectors)
                    raise
        return song

    def set_labels(self, song_id: str, labels: Sequence[str], kind: str = LABEL) -> Song:
        with self.writing(), self.catalog.transaction():
            self._song(song_id)
            self.catalog.set_labels(song_id, tuple(sorted(set(labels))), kind)
            self._generation = self.catalog.bump_generation()
        return self.catalog.song(song_id)

    def set_tags(self, song_id: str, tags: Sequence[str]) -> Song:
        return self.set_labels(song_id, tags, TAG)

    # -- reading -------------------------------------------------------------------------
    def embed_clip(self, clip: AudioSource | np.ndarray, *, landmarks: bool = True):
        """Decode and embed a query clip (a file, its bytes, or samples at the feature rate), patches cut
        densely; with its landmarks where the library keeps them and ``landmarks`` is true."""
        self._require_encoder()
        y = self.decode_clip(clip, min_seconds=self.features.min_clip_seconds)
        return self.embedder.embed_audio(y, hop_frames=self.settings.query_hop_frames, pad=True, landmarks=landmarks)

    def decode_clip(self, clip: AudioSource | np.ndarray, *, min_seconds: float) -> np.ndarray:
        """A query clip as samples at the feature rate (samples are taken as they are)."""
        from tuneprint.encoder.audio import load_audio

        if isinstance(clip, np.ndarray):
            return clip.astype(np.float32)
        return load_audio(clip, sr=self.features.sample_rate, min_seconds=min_seconds)

    def neighbours(self, vectors: np.ndarray, k: int):
        """The k nearest stored snippets of every vector (index.search.Neighbours)."""
        from tuneprint.index.search import find_neighbours

        self._require_encoder()
        with self._lock:
            self.refresh()
            return find_neighbours(vectors, self.index, self.catalog, k)

    def identify(self, clip: AudioSource, *, name: str | None = None) -> Identification:
        """Which song the clip comes from, where in it, how sure — or no match, and why (a clip shorter
        than ``features.min_clip_seconds`` is answered "unknown" with the reason "too_short")."""
        y = self.decode_clip(clip, min_seconds=0.0)
        clip_s = len(y) / self.features.sample_rate
        if clip_s < self.features.min_clip_seconds:
            return Identification(name or _name(clip), None, [], TOO_SHORT, clip_s)
        return self.identify_embeddings(self.embed_clip(y), name=name or _name(clip))

    def identify_embeddings(self, emb, *, name: str = "") -> Identification:
        from tuneprint.index.search import decide_clip

        cfg = self.settings.vote.for_library(self.catalog.song_count())
        vectors, offsets_s = emb.search_view()
        decision = decide_clip(self.neighbours(vectors, cfg.k), offsets_s, emb.spectrogram, self.catalog,
                               cfg, self.features)
        if decision.winner is None and emb.query is not None and emb.spectrogram.shape[1] >= self.features.patch_frames:
            # the query encoder learnt music; a stored copy of anything else (a jingle, a sound effect
            # kept with --allow-non-music) is still found by its own fingerprint (VoteConfig.copy_similarity)
            by_fingerprint = decide_clip(self.neighbours(emb.vectors, cfg.k), emb.offsets_s, emb.spectrogram,
                                         self.catalog, cfg, self.features)
            if by_fingerprint.winner is not None and by_fingerprint.winner.similarity >= cfg.copy_similarity:
                decision = by_fingerprint
        clip_s = emb.spectrogram.shape[1] * self.features.frame_seconds if emb.spectrogram is not None else None
        candidates = [Match(self._song(v.song_id), v, confidence(v, cfg, clip_s, [o for o in decision.votes if o is not v]))
                      for v in decision.votes[: cfg.top]]
        match, reason = (candidates[0] if decision.winner is not None else None), decision.reason
        if match is None and (found := self._landmark_answer(emb, cfg, decision.votes)) is not None:
            match, reason = found, None
            # the embeddings' candidates stay listed after it (calibration re-judges them, sizes.rejudge)
            candidates = [found, *(c for c in candidates if c.song.song_id != found.song.song_id)]
        return Identification(name, match, candidates, reason, clip_s).judged(self.music(emb))

    def _landmark_answer(self, emb, cfg: VoteConfig, votes: list[SongVote]) -> Match | None:
        """The song holding most of the clip's peak pairs at one offset, if it clears the landmark bars
        (``VoteConfig.landmark_min_aligned``); its vote is the embeddings' for it, at the landmarks' offset."""
        if not cfg.landmark_min_aligned or emb.landmarks is None or not len(emb.landmarks):
            return None
        rule = LandmarkRule(cfg.landmark_min_aligned, cfg.landmark_min_ratio)
        found = winner(self.landmark_index().search(emb.landmarks, rule), rule)
        if found is None:
            return None
        vote = next((v for v in votes if v.song_id == found.song_id), None)
        vote = replace(vote, offset_s=found.offset_s) if vote else SongVote(found.song_id, 0, 0.0, 0.0, found.offset_s, 0.0)
        return Match(self._song(found.song_id), vote, landmark_confidence(found, rule), by="landmarks", landmarks=found)

    def landmark_index(self):
        """Every stored song's landmarks, searchable (index/landmarks.py); rebuilt when the catalog changed."""
        with self._lock:
            self.refresh()
            if self._landmark_index is None or self._landmark_index[0] != self._generation:
                self._landmark_index = (self._generation, LandmarkIndex(*self.catalog.landmarks()))
            return self._landmark_index[1]

    def monitor(self, recording: str | os.PathLike | bytes, *, window_s: float = MonitorConfig.window_s,
                hop_s: float = MonitorConfig.hop_s, progress: Callable[[float], None] | None = None,
                name: str | None = None) -> Iterator[Stretch]:
        """Every stretch of a long recording, a song (where in it, how sure) or no match, decoded and
        answered a block at a time (server/monitor.py); ``progress`` gets the seconds walked so far."""
        return monitor(self, recording, MonitorConfig(window_s=window_s, hop_s=hop_s), progress=progress, name=name)

    def similar(self, clip: AudioSource | None = None, *, track: str | None = None, n: int = 10,
                name: str | None = None) -> SimilarAnswer:
        """Tracks nearest in style to a clip, or to a stored track (itself excluded); unpacks as
        ``query, neighbours``. Without a style head for the encoder, the fingerprint neighbours rank them."""
        if (clip is None) == (track is None):
            raise ValueError("give exactly one of a clip or a track id")
        query_song = self._song(track) if track is not None else None
        emb = self.embed_clip(clip) if clip is not None else None
        query = name or (track if track is not None else _name(clip))
        ranked, by = rank_similar_tracks(self, emb, track, n)
        own = set(query_song.labels + query_song.tags) if query_song else set()
        neighbours = [Neighbour(song, score, tuple(sorted(own & {*song.labels, *song.tags})))
                      for song, score in ((self._song(s), score) for s, score in ranked)]
        return SimilarAnswer(query, neighbours, by=by).judged(self.music(emb))

    def style_index(self):
        """The library's style index (index/style_index.py), rebuilt when the catalog changed."""
        from tuneprint.index.style_index import StyleIndex

        from .style import check_style

        with self._lock:
            self.refresh()
            if self._style_index is None or self._style_index[0] != self._generation:
                check_style(self)
                self._style_index = (self._generation, StyleIndex.from_catalog(self.catalog))
            return self._style_index[1]

    def label(self, clip: AudioSource, *, name: str | None = None, exclude_song: str | None = None) -> LabelAnswer:
        """Label a clip by the majority of its neighbours' labels (top 2 reported)."""
        return self.label_embeddings(self.embed_clip(clip), name=name or _name(clip), exclude_song=exclude_song)

    def label_embeddings(self, emb, *, name: str = "", exclude_song: str | None = None) -> LabelAnswer:
        """The library's trained classifier answers when it has one, else the neighbours' label vote
        (server/classify/genre.py); ``exclude_song``'s own snippets never vote."""
        from .classify.genre import label_clip

        return label_clip(self, emb, name=name, exclude_song=exclude_song).judged(self.music(emb))

    def music(self, emb) -> bool | None:
        """Whether a clip's embeddings are music by the gate (server/gate.py); None without a gate or clip."""
        return music_verdict(self.gate, emb)[0] if emb is not None else None

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
        if self.index is not None:
            self.refresh()  # a long-lived server reports what other processes wrote too
        return library_stats(self)

    # -- maintenance (server/maintenance.py) -------------------------------------------------
    def adopt_model(self, checkpoint: str | os.PathLike) -> str:
        """Make a trained checkpoint this library's encoder; then :meth:`reindex` before querying."""
        return adopt_model(self, checkpoint)

    def reindex(self, progress: Callable[[Song], None] | None = None, *, faiss_factory: str | None = None) -> int:
        """Re-embed every song from its file with the library's model and rebuild the index (with
        ``faiss_factory``: its FAISS codec from now on, e.g. "PCA128,PQ64" for an exact library)."""
        index = replace(self.settings.index, faiss_factory=faiss_factory) if faiss_factory else None
        return reindex(self, progress, index)

    def _require_encoder(self) -> None:
        if self.embedder is None:
            raise LibraryError(f"{self.root}: opened without its encoder (load_encoder=False); open it again to do this")


def _name(clip) -> str:
    if isinstance(clip, np.ndarray):
        return "samples"
    return "upload" if isinstance(clip, (bytes, bytearray)) else str(Path(clip).resolve())
