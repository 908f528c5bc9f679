"""The catalog: songs, their labels and tags, and their snippets (vector row id → song, offset), in SQLite.

A song's snippets are one *run* of consecutive row ids with their offsets in one blob: a row per
snippet cost ≈80 bytes each with its index, more than a compressed vector (schema version 3;
older catalogs are converted on open).

The vector index stores row ids only; this is where they get a meaning. A song's *labels* (its
genre or style: what the nearest-neighbour vote and the single-label classifier learn) and its
*tags* (moods, instruments, anything several of which fit at once) share one table, told apart
by its ``kind`` column. What verification (index/verify.py) reads of each song's log-mel spectrogram
is kept here too, and each song's landmarks (encoder/landmarks.py): written in the same
transaction as the song, so an interrupted ingest leaves neither behind. New songs keep their verification view in 3-dB steps, compressed; libraries of
earlier versions hold whole log-mels in float16, which are read as they are.
"""
from __future__ import annotations

import logging
import lzma
import os
import sqlite3
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlite_utils

from tuneprint.encoder.landmarks import Landmarks

log = logging.getLogger(__name__)

DELTAS = "deltas"  # runs packing: zlib of float32 steps between offsets (NULL: raw float32 offsets)
STEPPED = "stepped"  # spectra format "stepped/POOL/xz": uint8 steps below the loudest cell, frames pooled, LZMA (NULL: float16 dB)
STEP_DB, RANGE_DB = 3.0, 60.0  # a step is verification's tolerance; cells below the range are kept as silence
SILENCE_DB = -300.0  # what a cell below the range reads back as: never "loud", never explaining anything
TIME_POOL = 3  # frames merged (their maximum) in a stored view
SCHEMA_VERSION = 3  # 2: labels.kind ("label" or "tag"); 3: snippet runs; older catalogs are migrated on open
LABEL, TAG = "label", "tag"


@dataclass(frozen=True)
class Song:
    song_id: str
    path: str
    title: str | None
    artist: str | None
    duration_s: float
    audio_hash: str
    labels: tuple[str, ...] = ()
    n_snippets: int = 0
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"song_id": self.song_id, "path": self.path, "title": self.title, "artist": self.artist,
                "duration_s": round(self.duration_s, 3), "labels": list(self.labels), "tags": list(self.tags),
                "snippets": self.n_snippets}


@dataclass(frozen=True)
class SnippetInfo:
    """Song, offset and labels for a batch of row ids, aligned with the ids asked for."""

    song_ids: np.ndarray  # [shape=ids.shape, dtype=object], None where an id is unknown
    offsets_s: np.ndarray  # [shape=ids.shape, dtype=float32]
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # song_id → labels (not tags)


class Catalog:
    """SQLite catalog of one library. Thread-safe: one connection behind a lock.

    ``read_only``: opened as an immutable file, for libraries on read-only media or folders
    (SQLite's write-ahead log would otherwise need to create files beside it).
    """

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        if read_only:
            conn = _connect_read_only(self.path)
        else:
            conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        if not read_only:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._ensure_schema()
        # a read-only catalog of an earlier schema cannot be migrated: it is read as it is (looked up once)
        self._has_kinds = "kind" in self.db["labels"].columns_dict if "labels" in self.db.table_names() else True
        tables = set(self.db.table_names())
        self._runs = "runs" if "runs" in tables or "snippets" not in tables else (
            "(SELECT song_id, MIN(row_id) AS first_row_id, COUNT(*) AS count, NULL AS offsets, NULL AS packing "
            "FROM snippets GROUP BY song_id)")
        self._runs_packing = "packing" if self._runs != "runs" or "packing" in self.db["runs"].columns_dict else "NULL"
        self._spectra_format = "format" if "format" in self.db["spectra"].columns_dict else "NULL"

    def _ensure_schema(self) -> None:
        with self._lock, self.db.atomic():
            if "songs" not in self.db.table_names():
                self.db["songs"].create(
                    {"song_id": str, "path": str, "title": str, "artist": str, "duration_s": float,
                     "audio_hash": str, "added_at": str}, pk="song_id")
                self.db["songs"].create_index(["audio_hash"], unique=True)
                _create_labels_table(self.db)
                self.db["labels"].create_index(["label"])
                _create_runs_table(self.db)
                self.db["meta"].create({"key": str, "value": str}, pk="key")
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            if "kind" not in self.db["labels"].columns_dict:  # a catalog of schema version 1: labels only
                _migrate_labels_table(self.db)
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            if "runs" in self.db.table_names() and "packing" not in self.db["runs"].columns_dict:
                self.db["runs"].add_column("packing", str)  # earlier runs: raw float32 offsets (NULL)
            if "snippets" in self.db.table_names():  # a catalog of schema version 2: a row per snippet
                _migrate_snippets_to_runs(self.db)
                self.set_meta("schema_version", str(SCHEMA_VERSION))
            if "styles" not in self.db.table_names():  # libraries made before style vectors get the table empty
                self.db["styles"].create({"song_id": str, "dim": int, "data": bytes}, pk="song_id",
                                         foreign_keys=[("song_id", "songs", "song_id")])
            if "spectra" not in self.db.table_names():  # libraries made before verification get the table empty
                self.db["spectra"].create({"song_id": str, "n_mels": int, "frames": int, "data": bytes, "format": str},
                                          pk="song_id", foreign_keys=[("song_id", "songs", "song_id")])
            if "format" not in self.db["spectra"].columns_dict:  # float16 rows of earlier versions: format NULL
                self.db["spectra"].add_column("format", str)
            if "landmarks" not in self.db.table_names():  # libraries made before landmarks get the table empty
                self.db["landmarks"].create({"song_id": str, "count": int, "data": bytes}, pk="song_id",
                                            foreign_keys=[("song_id", "songs", "song_id")])

    def close(self) -> None:
        with self._lock:  # never under a query of another thread
            self.checkpoint()  # a copy or a read-only mount of the folder is whole
            self.db.conn.close()

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the catalog file (what sizes on disk then say is what stays)."""
        with self._lock:
            if not self.read_only:
                try:
                    self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass  # another connection is reading; its own close will do it

    @contextmanager
    def transaction(self):
        """All-or-nothing writes: commit on success, roll back on any error or interrupt."""
        with self._lock, self.db.atomic():
            yield self

    # -- meta --------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self.db["meta"].upsert({"key": key, "value": value}, pk="key")

    def generation(self) -> int:
        """How many times the library was changed: readers in other processes reload when it moves."""
        return int(self.get_meta("generation", "0"))

    # -- writes (call inside transaction()) --------------------------------------------
    def bump_generation(self) -> int:
        generation = self.generation() + 1
        self.set_meta("generation", str(generation))
        return generation

    def next_row_id(self) -> int:
        row = self.db.execute(f"SELECT COALESCE(MAX(first_row_id + count), 0) FROM {self._runs}").fetchone()
        return max(int(row[0]), int(self.get_meta("next_row_id", "0")))

    def insert_song(self, song: Song, offsets_s: np.ndarray, first_row_id: int, added_at: str) -> np.ndarray:
        """Insert a song and its snippets; returns the snippet row ids given to its vectors."""
        row_ids = np.arange(first_row_id, first_row_id + len(offsets_s), dtype=np.int64)
        self.db["songs"].insert({"song_id": song.song_id, "path": song.path, "title": song.title,
                                 "artist": song.artist, "duration_s": song.duration_s,
                                 "audio_hash": song.audio_hash, "added_at": added_at})
        self.set_labels(song.song_id, song.labels)
        self.set_labels(song.song_id, song.tags, kind=TAG)
        self.db["runs"].insert({"song_id": song.song_id, "first_row_id": first_row_id, "count": len(offsets_s),
                                "offsets": _pack_offsets(offsets_s), "packing": DELTAS})
        # Row ids are never reused, so a stale vector can never be mistaken for a new song's.
        self.set_meta("next_row_id", str(first_row_id + len(offsets_s)))
        return row_ids

    def delete_song(self, song_id: str) -> np.ndarray:
        """Delete a song, its labels and snippets; returns the row ids to drop from the index."""
        row_ids = self.row_ids(song_id)
        self.db.execute("DELETE FROM runs WHERE song_id = ?", [song_id])
        self.db.execute("DELETE FROM labels WHERE song_id = ?", [song_id])
        self.db.execute("DELETE FROM spectra WHERE song_id = ?", [song_id])
        self.db.execute("DELETE FROM landmarks WHERE song_id = ?", [song_id])
        if "styles" in self.db.table_names():
            self.db.execute("DELETE FROM styles WHERE song_id = ?", [song_id])
        self.db.execute("DELETE FROM songs WHERE song_id = ?", [song_id])
        return row_ids

    def put_spectrogram(self, song_id: str, S_db: np.ndarray) -> None:
        """Store a song's (view of its) log-mel spectrogram [shape=(bins, frames)] in dB: in steps of
        ``STEP_DB`` below its loudest cell, down to ``RANGE_DB`` (verification's gain is relative)."""
        bins, frames = S_db.shape
        padded = np.pad(S_db, ((0, 0), (0, -frames % TIME_POOL)), mode="edge")
        pooled = padded.reshape(bins, -1, TIME_POOL).max(axis=2)  # the louder frame of each pair: still "under the clip"
        # level 0 is silence: a floor at the range's edge would look loud next to a quiet passage
        levels = np.clip(np.round((pooled - pooled.max()) / STEP_DB) + RANGE_DB / STEP_DB, 0, RANGE_DB / STEP_DB)
        data = lzma.compress(np.ascontiguousarray(levels, dtype=np.uint8).tobytes(), preset=9 | lzma.PRESET_EXTREME)
        self.db["spectra"].upsert({"song_id": song_id, "n_mels": bins, "frames": frames, "data": data,
                                   "format": f"{STEPPED}/{TIME_POOL}/xz"}, pk="song_id")

    def put_style(self, song_id: str, vector: np.ndarray) -> None:
        """Store a song's style vector [shape=(d,)] (encoder/style.py), as float32."""
        data = np.ascontiguousarray(vector, dtype="<f4")
        self.db["styles"].upsert({"song_id": song_id, "dim": len(data), "data": data.tobytes()}, pk="song_id")

    def put_landmarks(self, song_id: str, lm: Landmarks) -> None:
        """Store a song's landmarks (encoder/landmarks.py): hashes and frame steps, zlib-compressed."""
        steps = np.diff(lm.frames, prepend=0).astype("<u4")  # frames rise: small steps compress
        data = zlib.compress(np.ascontiguousarray(lm.hashes, dtype="<u4").tobytes() + steps.tobytes(), 6)
        self.db["landmarks"].upsert({"song_id": song_id, "count": len(lm), "data": data}, pk="song_id")

    def landmarks(self) -> tuple[list[str], list[Landmarks]]:
        """Every stored song's landmarks, by song id (none in a library made before landmarks)."""
        if "landmarks" not in self.db.table_names():
            return [], []
        with self._lock:
            rows = self.db.execute("SELECT song_id, count, data FROM landmarks ORDER BY song_id").fetchall()
        out = []
        for _, count, data in rows:
            raw = np.frombuffer(zlib.decompress(data), dtype="<u4")
            out.append(Landmarks(raw[:count].astype(np.uint32), np.cumsum(raw[count:]).astype(np.int32)))
        return [r[0] for r in rows], out

    def landmark_counts(self) -> tuple[int, int, int]:
        """(songs with landmarks, their pairs, the bytes stored)."""
        if "landmarks" not in self.db.table_names():
            return 0, 0, 0
        with self._lock:
            n, pairs, size = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(count), 0), COALESCE(SUM(LENGTH(data)), 0) FROM landmarks").fetchone()
        return int(n), int(pairs), int(size)

    def set_labels(self, song_id: str, labels: tuple[str, ...], kind: str = LABEL) -> None:
        """Replace a song's labels (``kind`` "label") or its tags (``kind`` "tag")."""
        self.db.execute("DELETE FROM labels WHERE song_id = ? AND kind = ?", [song_id, kind])
        self.db["labels"].insert_all([{"song_id": song_id, "kind": kind, "label": label} for label in labels])

    # -- reads -------------------------------------------------------------------------
    def song(self, song_id: str) -> Song | None:
        songs = self.songs(where="songs.song_id = ?", params=[song_id])
        return songs[0] if songs else None

    def song_by_hash(self, audio_hash: str) -> Song | None:
        songs = self.songs(where="songs.audio_hash = ?", params=[audio_hash])
        return songs[0] if songs else None

    def songs(self, where: str = "1", params: list | None = None, limit: int | None = None, offset: int = 0) -> list[Song]:
        sql = f"""
            SELECT songs.*, (SELECT COALESCE(SUM(count), 0) FROM {self._runs} r WHERE r.song_id = songs.song_id) AS n_snippets,
                   (SELECT GROUP_CONCAT(label, char(31)) FROM labels l
                    WHERE l.song_id = songs.song_id AND {self._kind_is(LABEL)}) AS label_list,
                   (SELECT GROUP_CONCAT(label, char(31)) FROM labels l
                    WHERE l.song_id = songs.song_id AND {self._kind_is(TAG)}) AS tag_list
            FROM songs WHERE {where} ORDER BY songs.path
            {'LIMIT ? OFFSET ?' if limit is not None else ''}"""
        args = list(params or []) + ([limit, offset] if limit is not None else [])
        with self._lock:
            rows = list(self.db.query(sql, args))
        return [Song(r["song_id"], r["path"], r["title"], r["artist"], r["duration_s"], r["audio_hash"],
                     _split(r["label_list"]), r["n_snippets"], _split(r["tag_list"])) for r in rows]

    def row_ids(self, song_id: str | None = None) -> np.ndarray:
        """Row ids of one song's snippets in offset order, or of every snippet in id order."""
        with self._lock:
            if song_id is None:
                runs = self.db.execute(f"SELECT first_row_id, count FROM {self._runs} ORDER BY first_row_id").fetchall()
            else:
                runs = self.db.execute(f"SELECT first_row_id, count FROM {self._runs} WHERE song_id = ?", [song_id]).fetchall()
        return np.concatenate([np.arange(f, f + n, dtype=np.int64) for f, n in runs] or [np.zeros(0, np.int64)])

    def lookup(self, row_ids: np.ndarray) -> SnippetInfo:
        """Song, offset and labels of every row id in ``row_ids`` (any shape; -1 = none)."""
        flat = np.asarray(row_ids, dtype=np.int64).ravel()
        found: dict[int, tuple[str, float]] = {}
        run = None  # (song, first row id, offsets): ids are visited in order, so each run is read once
        with self._lock:
            for r in sorted({int(i) for i in flat if i >= 0}):
                if run is None or not run[1] <= r < run[1] + len(run[2]):
                    run = self._run_at(r)
                    if run is None:
                        continue
                found[r] = (run[0], float(run[2][r - run[1]]))
            songs = sorted({s for s, _ in found.values()})
            labels: dict[str, list[str]] = {s: [] for s in songs}
            for chunk in _chunks(songs, 900):
                marks = ",".join("?" * len(chunk))
                for s, label in self.db.execute(f"SELECT song_id, label FROM labels WHERE song_id IN ({marks}) "
                                                f"AND {self._kind_is(LABEL)}", chunk):
                    labels[s].append(label)
        song_ids = np.array([found.get(int(i), (None, 0.0))[0] for i in flat], dtype=object).reshape(np.shape(row_ids))
        offsets = np.array([found.get(int(i), (None, np.nan))[1] for i in flat], dtype=np.float32).reshape(np.shape(row_ids))
        return SnippetInfo(song_ids, offsets, {s: tuple(sorted(v)) for s, v in labels.items()})

    def _run_at(self, row_id: int) -> tuple[str, int, np.ndarray] | None:
        """The run (song, first row id, offsets) that holds ``row_id``, if any."""
        row = self.db.execute(f"SELECT song_id, first_row_id, count, offsets, {self._runs_packing} FROM {self._runs} "
                              "WHERE first_row_id <= ? ORDER BY first_row_id DESC LIMIT 1", [row_id]).fetchone()
        if row is None or row_id >= row[1] + row[2]:
            return None
        song, first, _, blob, packing = row
        if blob is None:  # a read-only catalog of schema version 2
            offsets = [o for (o,) in self.db.execute("SELECT offset_s FROM snippets WHERE song_id = ? ORDER BY row_id", [song])]
            return song, first, np.array(offsets, dtype=np.float32)
        return song, first, _unpack_offsets(blob, packing)

    def spectrogram(self, song_id: str) -> np.ndarray | None:
        """A song's stored log-mel spectrogram [shape=(n_mels, frames), dtype=float32], None if not stored."""
        with self._lock:
            row = self.db.execute(f"SELECT n_mels, frames, data, {self._spectra_format} FROM spectra WHERE song_id = ?",
                                  [song_id]).fetchone()
        if row is None:
            return None
        n_mels, frames, data, form = row
        if form and form.startswith(STEPPED):
            _, pool, packing = (form.split("/") + ["zlib"])[:3]
            raw = lzma.decompress(data) if packing == "xz" else zlib.decompress(data)
            levels = np.frombuffer(raw, dtype=np.uint8).reshape(n_mels, -1)
            db = np.where(levels > 0, (levels.astype(np.float32) - RANGE_DB / STEP_DB) * STEP_DB, SILENCE_DB)
            return np.repeat(db, int(pool), axis=1)[:, :frames]
        return np.frombuffer(data, dtype="<f2").reshape(n_mels, frames).astype(np.float32)



    def styles(self) -> tuple[list[str], np.ndarray]:
        """Every stored style vector: (song ids, vectors [shape=(n, d), dtype=float32]), by song id."""
        if "styles" not in self.db.table_names():  # a read-only catalog of a library made before styles
            return [], np.zeros((0, 0), np.float32)
        with self._lock:
            rows = self.db.execute("SELECT song_id, dim, data FROM styles ORDER BY song_id").fetchall()
        if not rows:
            return [], np.zeros((0, 0), np.float32)
        return [r[0] for r in rows], np.stack([np.frombuffer(r[2], dtype="<f4") for r in rows]).astype(np.float32)

    def style_bytes(self) -> tuple[int, int]:
        """(how many songs have a style vector, the bytes of those vectors)."""
        if "styles" not in self.db.table_names():
            return 0, 0
        with self._lock:
            n, size = self.db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM styles").fetchone()
        return int(n), int(size)

    def songs_without_style(self) -> int:
        """How many songs have no style vector (added by a tuneprint without style, or without a style head)."""
        if "styles" not in self.db.table_names():
            return self.song_count()
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM songs WHERE song_id NOT IN "
                                       "(SELECT song_id FROM styles)").fetchone()[0])

    def audio_hashes(self) -> frozenset[str]:
        """Content hashes of every stored song (to skip re-embedding audio that is already here)."""
        with self._lock:
            return frozenset(r[0] for r in self.db.execute("SELECT audio_hash FROM songs").fetchall())

    def songs_without_spectrogram(self) -> list[str]:
        """Ids of songs stored before the catalog kept spectrograms (libraries made by older versions)."""
        with self._lock:
            rows = self.db.execute("SELECT song_id FROM songs WHERE song_id NOT IN (SELECT song_id FROM spectra) "
                                   "ORDER BY song_id").fetchall()
        return [r[0] for r in rows]

    def song_count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM songs").fetchone()[0])

    def counts(self) -> dict:
        with self._lock:
            songs, hours = self.db.execute("SELECT COUNT(*), COALESCE(SUM(duration_s), 0) / 3600.0 FROM songs").fetchone()
            snippets = self.db.execute(f"SELECT COALESCE(SUM(count), 0) FROM {self._runs}").fetchone()[0]
            labels = dict(self.db.execute(f"SELECT label, COUNT(*) FROM labels WHERE {self._kind_is(LABEL)} "
                                          "GROUP BY label ORDER BY label").fetchall())
        return {"songs": songs, "snippets": snippets, "hours": hours, "labels": labels}

    def tag_counts(self) -> dict[str, int]:
        """How many songs carry each tag."""
        with self._lock:
            return dict(self.db.execute(f"SELECT label, COUNT(*) FROM labels WHERE {self._kind_is(TAG)} "
                                        "GROUP BY label ORDER BY label").fetchall())

    def _kind_is(self, kind: str) -> str:
        """SQL condition on the labels table's kind (a read-only catalog of schema version 1: labels only)."""
        if self._has_kinds:
            return f"kind = '{kind}'"
        return "1" if kind == LABEL else "0"


def _create_labels_table(db: sqlite_utils.Database, name: str = "labels") -> None:
    db[name].create({"song_id": str, "kind": str, "label": str}, pk=("song_id", "kind", "label"),
                    foreign_keys=[("song_id", "songs", "song_id")])


def _migrate_labels_table(db: sqlite_utils.Database) -> None:
    """Schema 1 → 2: every stored label stays a label ("kind" is part of the key, so a name can be
    a song's label and its tag at once). Runs inside the caller's transaction."""
    log.info("catalog: adding tags beside labels (schema version %d)", SCHEMA_VERSION)
    _create_labels_table(db, "labels_v2")
    db.execute(f"INSERT INTO labels_v2 (song_id, kind, label) SELECT song_id, '{LABEL}', label FROM labels")
    db.execute("DROP TABLE labels")
    db.execute("ALTER TABLE labels_v2 RENAME TO labels")
    db["labels"].create_index(["label"], if_not_exists=True)


def _create_runs_table(db: sqlite_utils.Database) -> None:
    db["runs"].create({"song_id": str, "first_row_id": int, "count": int, "offsets": bytes, "packing": str},
                      pk="song_id", foreign_keys=[("song_id", "songs", "song_id")])
    db["runs"].create_index(["first_row_id"], unique=True)


def _migrate_snippets_to_runs(db: sqlite_utils.Database) -> None:
    """Schema 2 → 3: a song's snippet rows (consecutive row ids) become one run. Runs inside the
    caller's transaction."""
    log.info("catalog: storing each song's snippets as one run (schema version %d)", SCHEMA_VERSION)
    _create_runs_table(db)
    songs = [r[0] for r in db.execute("SELECT DISTINCT song_id FROM snippets").fetchall()]
    for song in songs:
        rows = db.execute("SELECT row_id, offset_s FROM snippets WHERE song_id = ? ORDER BY row_id", [song]).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        if np.any(np.diff(ids) != 1):
            raise ValueError(f"catalog: song {song} has non-consecutive snippet rows; run `tuneprint doctor --repair`")
        db["runs"].insert({"song_id": song, "first_row_id": int(ids[0]), "count": len(ids),
                           "offsets": _pack_offsets(np.array([r[1] for r in rows])), "packing": DELTAS})
    db.execute("DROP TABLE snippets")


def _pack_offsets(offsets_s: np.ndarray) -> bytes:
    """A run's offsets as compressed steps: patches a hop apart make one step repeated (≈0.1 kB a
    minute of audio instead of 0.65)."""
    steps = np.diff(np.asarray(offsets_s, dtype=np.float64), prepend=0.0).astype("<f4")
    return zlib.compress(steps.tobytes(), 9)


def _unpack_offsets(blob: bytes, packing: str | None) -> np.ndarray:
    if packing == DELTAS:
        return np.cumsum(np.frombuffer(zlib.decompress(blob), dtype="<f4").astype(np.float64)).astype(np.float32)
    return np.frombuffer(blob, dtype="<f4")  # raw float32, as the first catalogs of schema 3 kept them


def _split(joined: str | None) -> tuple[str, ...]:
    return tuple(sorted(joined.split("\x1f"))) if joined else ()


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """Read without writing anything: through the write-ahead log when SQLite may use it, else (no
    write access at all) as an immutable file, which a closed library has whole (see Catalog.close)."""
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]
