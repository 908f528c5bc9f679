"""What an evaluation measures on what: the library's stored snippets, the model's training
provenance, and the splits by song (never by snippet).

- Identification: the index holds the *in-library* songs; clips of the *held-out* songs (never
  in that index) measure how often an unknown song is answered "unknown".
- Labels: leave-one-song-out; a query song's own snippets are never its neighbours.
- Generalisation: songs the library's model was trained on are not queried (they stay in the
  index and among the neighbours, as the library holds them), when the training run is known.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneprint.encoder.splits import song_unit
from tuneprint.index.catalog import Song, SnippetInfo

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Snippets:
    """Every stored snippet of a library, in catalog order.

    vectors : np.ndarray [shape=(n, D), dtype=float32], unit norm
    song : np.ndarray [shape=(n,), dtype=int64], position of the snippet's song in ``songs``
    offsets_s : np.ndarray [shape=(n,), dtype=float32], start of the snippet in its song
    """

    songs: list[Song]
    vectors: np.ndarray
    song: np.ndarray
    offsets_s: np.ndarray

    def __len__(self) -> int:
        return len(self.vectors)

    def rows_of(self, song_index: int) -> np.ndarray:
        """Positions of one song's snippets, in offset order."""
        rows = np.flatnonzero(self.song == song_index)
        return rows[np.argsort(self.offsets_s[rows], kind="stable")]

    def lookup(self, rows: np.ndarray) -> SnippetInfo:
        """Song id and offset of every snippet position in ``rows`` (any shape; -1 = none), as
        :meth:`index.catalog.Catalog.lookup` gives them, so an index of snippet positions serves
        :func:`index.search.find_neighbours`. No labels: identification does not need them."""
        song_ids = np.array([s.song_id for s in self.songs] + [None], dtype=object)  # -1 → None
        song_ids = song_ids[np.where(rows >= 0, self.song[np.maximum(rows, 0)], -1)]
        return SnippetInfo(song_ids, np.where(rows >= 0, self.offsets_s[np.maximum(rows, 0)], np.nan))


def load_snippets(lib) -> Snippets:
    """Read every stored vector with its song and offset from a :class:`server.library.Library`."""
    songs = lib.tracks()
    vectors, owner, offsets = [], [], []
    for i, song in enumerate(songs):
        row_ids = lib.catalog.row_ids(song.song_id)
        if len(row_ids) == 0:
            continue
        vectors.append(np.asarray(lib.index.vectors(row_ids), dtype=np.float32))
        offsets.append(lib.catalog.lookup(row_ids).offsets_s.astype(np.float32))
        owner.append(np.full(len(row_ids), i, dtype=np.int64))
    dim = lib.embedder.dim
    if not vectors:
        return Snippets(songs, np.zeros((0, dim), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))
    return Snippets(songs, np.concatenate(vectors), np.concatenate(owner), np.concatenate(offsets))


def subtrack_rows(offsets_s: np.ndarray, spacing_s: float) -> np.ndarray:
    """Positions (into sorted ``offsets_s``) of snippets at least ``spacing_s`` apart, from the first on.

    Sub-tracks are non-overlapping 3-s patches; the index stores overlapping ones.
    """
    keep, last = [], -np.inf
    for i, t in enumerate(offsets_s):
        if t >= last + spacing_s - 1e-3:
            keep.append(i)
            last = t
    return np.array(keep, dtype=np.int64)


def track_key(path: str) -> str:
    """Collection folder and file name: matches a track across machines and moved corpora."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}".lower()


# -- provenance ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Provenance:
    """What the library's encoder was trained on, as far as can be told.

    ``train_keys`` None means unknown; an empty set means trained on nothing (seeded init).
    ``seen_labels`` None means unknown.
    """

    source: str
    train_keys: frozenset[str] | None = None
    seen_labels: tuple[str, ...] | None = None
    config_path: str | None = None

    def trained_on(self, song: Song) -> bool:
        return bool(self.train_keys) and track_key(song.path) in self.train_keys

    def to_dict(self) -> dict:
        return {"source": self.source, "config": self.config_path,
                "train_tracks": None if self.train_keys is None else len(self.train_keys),
                "seen_labels": None if self.seen_labels is None else list(self.seen_labels)}


def provenance_from_config(path: str | Path, source: str | None = None) -> Provenance:
    """Read a training run's ``config.json`` (written by ``encoder.training.train``)."""
    path = Path(path)
    cfg = json.loads(path.read_text())
    tracks = cfg.get("train_tracks") or []
    labels = cfg.get("labels")
    return Provenance(source or f"training run {path.parent}", frozenset(track_key(t) for t in tracks),
                      tuple(labels) if labels is not None else None, str(path))


def checkpoint_provenance(checkpoint: str | Path) -> Provenance | None:
    """The training run that wrote ``checkpoint`` (its folder's config.json, or the run its
    metadata names), or None when none is found."""
    for cfg in _config_candidates(Path(checkpoint), _checkpoint_extra(Path(checkpoint))):
        try:
            return provenance_from_config(cfg)
        except (OSError, ValueError) as e:
            log.warning("could not read %s: %s", cfg, e)
    return None


def find_provenance(lib, train_config: str | Path | None = None) -> Provenance:
    """Where the library's encoder comes from: an explicit run config, the run beside its
    checkpoint, the run named in the checkpoint's metadata, or the seeded initialisation."""
    if train_config:
        return provenance_from_config(train_config, f"training run config {train_config} (given)")
    if str(lib.model_id).startswith("seeded:"):
        return Provenance("untrained seeded initialisation: trained on nothing, every label is unseen",
                          frozenset(), ())
    checkpoint = _library_checkpoint(lib)
    if checkpoint is not None:
        found = checkpoint_provenance(checkpoint)
        if found is not None:
            return found
        # `tuneprint train` writes its runs under LIBRARY/runs/NAME; match the adopted weights by content.
        runs = sorted((lib.root / "runs").glob("*/config.json")) if (lib.root / "runs").is_dir() else []
        digest = str(lib.model_id).removeprefix("sha256:")
        for cfg in runs:
            weights = cfg.parent / "model.safetensors"
            if weights.is_file() and hashlib.sha256(weights.read_bytes()).hexdigest()[:16] == digest:
                return provenance_from_config(cfg)
        if len(runs) == 1:
            return provenance_from_config(runs[0], f"training run {runs[0].parent} (the library's only run; assumed)")
    return Provenance("unknown: no training run found for the encoder; results may include songs it was trained on "
                      "(pass --train-config RUN/config.json)")


def _library_checkpoint(lib) -> Path | None:
    spec = lib.settings.model
    if spec in ("seeded",):
        return None
    if spec in ("default", "", None):
        from tuneprint.encoder.checkpoint import DEFAULT_WEIGHTS

        return DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None
    path = Path(spec)
    return path if path.is_absolute() else lib.root / path


def _checkpoint_extra(path: Path) -> dict:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("extra", "{}"))
    except Exception:  # metadata is a hint; a missing or odd file just gives none
        return {}


def _config_candidates(checkpoint: Path, extra: dict) -> list[Path]:
    """Run configs that may describe ``checkpoint``: beside it, or the run its metadata names."""
    found = [checkpoint.parent / "config.json", checkpoint.with_suffix(".json")]
    run = extra.get("run")
    if run:
        run = Path(run)
        found += [run / "config.json"] if run.is_absolute() else [Path.cwd() / run / "config.json", REPO_ROOT / run / "config.json"]
    return [p for p in dict.fromkeys(found) if p.is_file() and "train_tracks" in _read_keys(p)]


def _read_keys(path: Path) -> set[str]:
    try:
        d = json.loads(path.read_text())
        return set(d) if isinstance(d, dict) else set()
    except (OSError, ValueError):
        return set()


# -- splits ----------------------------------------------------------------------------------
@dataclass
class EvalSplit:
    """Song positions (into ``Snippets.songs``) for each role; built by :func:`plan_split`."""

    index: list[int]  # in the identification index
    held_out: list[int]  # never in the identification index: their clips should come back "unknown"
    id_queries: list[int]  # in-library songs whose clips are identified
    label_queries: list[int]  # labelled songs labelled by their neighbours (leave-one-song-out)
    trained: list[int] = field(default_factory=list)  # songs the model was trained on
    notes: list[str] = field(default_factory=list)

    def to_dict(self, songs: list[Song]) -> dict:
        return {"index_songs": len(self.index), "held_out_songs": len(self.held_out),
                "identification_query_songs": len(self.id_queries), "label_query_songs": len(self.label_queries),
                "trained_songs_in_library": len(self.trained), "notes": list(self.notes),
                "held_out": [songs[i].song_id for i in self.held_out]}


def plan_split(songs: list[Song], provenance: Provenance, *, holdout: float, seed: int,
               include_trained: bool = False) -> EvalSplit:
    """Split the library's songs by song, deterministically from their file names and ``seed``.

    ``round(holdout · n)`` songs are held out of the identification index (at least one when
    ``holdout > 0`` and the library has two songs or more), chosen among songs the model was
    not trained on first. Songs the model was trained on are not queried unless
    ``include_trained`` or no other song is left (then a note says so).
    """
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    n = len(songs)
    trained = [i for i, s in enumerate(songs) if provenance.trained_on(s)]
    trained_set = set(trained)
    n_hold = 0 if holdout == 0 or n < 2 else min(n - 1, max(1, int(round(holdout * n))))
    order = sorted(range(n), key=lambda i: (i in trained_set, song_unit(songs[i].path, salt=f"tuneprint-eval:{seed}"),
                                             songs[i].song_id))
    held_out = sorted(order[:n_hold])
    held = set(held_out)
    index = [i for i in range(n) if i not in held]
    notes = []
    if provenance.train_keys is None:
        notes.append("the encoder's training songs are unknown: queries may include songs it was trained on")
    elif trained:
        notes.append(f"{len(trained)} songs the encoder was trained on stay in the index and among the neighbours "
                     f"but are {'also queried (--include-trained)' if include_trained else 'not queried'}")

    def untrained(items: list[int], what: str) -> list[int]:
        if include_trained:
            return items
        kept = [i for i in items if i not in trained_set]
        if not kept and items:
            notes.append(f"every {what} song was in the encoder's training set: {what} numbers are on trained songs "
                         "and are optimistic")
            return items
        return kept

    id_queries = untrained(index, "identification")
    label_queries = untrained([i for i in range(n) if songs[i].labels], "label")
    if any(i in trained_set for i in held_out):
        notes.append("some held-out songs were in the encoder's training set")
    return EvalSplit(index, held_out, id_queries, label_queries, trained, notes)


def song_rng(seed: int, song: Song, purpose: str) -> np.random.Generator:
    """A generator per (seed, song, purpose): results do not depend on the order songs are visited."""
    digest = hashlib.sha256(f"{seed}:{song.song_id}:{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
