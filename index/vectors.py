"""Vector indexes behind one narrow interface; backends chosen by name: "faiss" (the default,
segments of compressed codes, index/segments.py), "annoy", "milvus" (index/milvus.py).

An index holds unit-norm float32 vectors under int64 row ids and nothing else:
songs, offsets and labels live in the catalog. Search returns cosine similarities.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from tuneprint.errors import MismatchError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "index.json"


@dataclass(frozen=True)
class IndexConfig:
    backend: str = "faiss"
    dim: int = 1024
    annoy_trees: int = 32  # Annoy's build knob: more trees, better recall, bigger file
    annoy_search_k: int = 5000  # Annoy's query knob (nodes inspected): on real snippet vectors, recall@10 0.70 at -1 (trees × k), 0.97 at 5000
    faiss_factory: str = "PCA128,PQ64"  # the codec of every segment (index/segments.py): 64 bytes a vector; "Flat" exact
    train_min: int = 20_000  # vectors a codec that must be trained waits for (exact until then)
    codec_growth_limit: float = 16.0  # growth since a codec was trained on the library past which `doctor` asks for a reindex (18× measured to hold)
    max_segments: int = 8  # segments kept before the smallest are merged
    nlist: int = 0  # inverted lists of an IVF index (FAISS "IVF{nlist}", Milvus IVF_*); 0: the backend's choice
    nprobe: int = 16  # lists an IVF search visits: more, better recall, slower
    uri: str = ""  # Milvus: "" keeps a Milvus Lite file beside the index folder; else a server, e.g. http://host:19530
    milvus_index: str = "FLAT"  # Milvus index type (FLAT, IVF_FLAT, IVF_PQ, HNSW, AUTOINDEX)

    def to_dict(self) -> dict:
        return asdict(self)


class VectorIndex(Protocol):
    """What every backend offers. Backends that keep their own files up to date (``durable = True``)
    also have ``save(directory, meta)``: make the changes since the last save durable in
    ``directory``, the folder they were read from, writing ``meta`` last; their ``location`` is that
    folder (None for a new index), and :func:`save_index` uses ``save`` there instead of rewriting."""

    config: IndexConfig

    def __len__(self) -> int: ...
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, ids: np.ndarray) -> None: ...
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def ids(self) -> np.ndarray: ...
    def vectors(self, ids: np.ndarray) -> np.ndarray: ...
    def write(self, directory: Path) -> None: ...
    @classmethod
    def read(cls, config: IndexConfig, directory: Path) -> "VectorIndex": ...


class AnnoyIndex:
    """Spotify's Annoy (the design's choice). Annoy cannot add after building, so the vectors
    are kept beside the trees and the forest is rebuilt lazily after any change."""

    name = "annoy"

    def __init__(self, config: IndexConfig, ids: np.ndarray | None = None, vectors: np.ndarray | None = None, forest=None):
        self.config = config
        self._ids = np.zeros(0, np.int64) if ids is None else ids.astype(np.int64)
        self._vectors = np.zeros((0, config.dim), np.float32) if vectors is None else vectors.astype(np.float32)
        self._forest = forest

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._ids = np.concatenate([self._ids, np.asarray(ids, np.int64)])
        self._vectors = np.concatenate([self._vectors, _check_vectors(vectors, self.config.dim)])
        self._forest = None

    def remove(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self._ids, ids)
        self._ids, self._vectors, self._forest = self._ids[keep], self._vectors[keep], None

    def _build(self):
        from annoy import AnnoyIndex as Forest

        forest = Forest(self.config.dim, "angular")
        for row, vector in enumerate(self._vectors):  # Annoy items are positions; ids map back via self._ids
            forest.add_item(row, vector)
        forest.build(self.config.annoy_trees, n_jobs=1)
        return forest

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check_vectors(queries, self.config.dim)
        sims = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        if len(self) == 0:
            return sims, ids
        if self._forest is None:
            self._forest = self._build()
        for q, vector in enumerate(queries):
            rows, dists = self._forest.get_nns_by_vector(vector, k, search_k=self.config.annoy_search_k, include_distances=True)
            n = len(rows)
            ids[q, :n] = self._ids[rows]
            sims[q, :n] = 1.0 - np.square(dists) / 2.0  # angular distance = sqrt(2 - 2 cos)
        return sims, ids

    def ids(self) -> np.ndarray:
        return self._ids.copy()

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        position = {int(i): p for p, i in enumerate(self._ids)}
        return self._vectors[[position[int(i)] for i in ids]] if len(ids) else np.zeros((0, self.config.dim), np.float32)

    def write(self, directory: Path) -> None:
        if self._forest is None and len(self):
            self._forest = self._build()
        if self._forest is not None:
            self._forest.save(str(directory / "forest.ann"))
        np.save(directory / "ids.npy", self._ids)
        np.save(directory / "vectors.npy", self._vectors)

    @classmethod
    def read(cls, config: IndexConfig, directory: Path) -> "AnnoyIndex":
        from annoy import AnnoyIndex as Forest

        ids, vectors = np.load(directory / "ids.npy"), np.load(directory / "vectors.npy")
        forest = None
        if (directory / "forest.ann").is_file() and len(ids):
            forest = Forest(config.dim, "angular")
            forest.load(str(directory / "forest.ann"))
        return cls(config, ids, vectors, forest)


BACKENDS: dict[str, type] = {"annoy": AnnoyIndex}
LAZY_BACKENDS = {"faiss": ("tuneprint.index.segments", "SegmentedFaissIndex"),
                 "milvus": ("tuneprint.index.milvus", "MilvusIndex")}  # imported when first named


def backend_class(name: str) -> type:
    if name not in BACKENDS and name in LAZY_BACKENDS:
        import importlib

        module, attr = LAZY_BACKENDS[name]
        BACKENDS[name] = getattr(importlib.import_module(module), attr)
    if name not in BACKENDS:
        raise ValueError(f"unknown index backend {name!r}; choose one of {sorted({*BACKENDS, *LAZY_BACKENDS})}")
    return BACKENDS[name]


def create_index(config: IndexConfig) -> VectorIndex:
    return backend_class(config.backend)(config)


def index_meta(index: VectorIndex, model_id: str) -> dict:
    meta = {"format_version": FORMAT_VERSION, "config": index.config.to_dict(), "model_id": model_id, "count": len(index)}
    return {**meta, **index.manifest()} if hasattr(index, "manifest") else meta


def save_index(index: VectorIndex, directory: str | os.PathLike, *, model_id: str) -> None:
    """Write the index to ``directory`` atomically: a reader sees the old or the new index, never half.

    A durable backend read from ``directory`` saves only what changed, in place; any other index is
    written whole beside it and swapped in by renaming."""
    directory = Path(directory)
    if getattr(index, "durable", False) and getattr(index, "location", None) == directory:
        index.save(directory, index_meta(index, model_id))
        return
    staging, previous = directory.with_name(directory.name + ".new"), directory.with_name(directory.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    index.write(staging)
    (staging / META_FILE).write_text(json.dumps(index_meta(index, model_id), indent=2))
    shutil.rmtree(previous, ignore_errors=True)
    if directory.exists():
        os.replace(directory, previous)
    os.replace(staging, directory)
    shutil.rmtree(previous, ignore_errors=True)
    if getattr(index, "durable", False):
        index.location = directory


def load_index(directory: str | os.PathLike, *, model_id: str) -> VectorIndex:
    """Read an index written by :func:`save_index`; refuse one of another format or encoder."""
    directory = Path(directory)
    previous = directory.with_name(directory.name + ".old")
    if not directory.exists() and previous.exists():  # interrupted between the two renames
        os.replace(previous, directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise MismatchError(f"{directory}: no index found (missing {META_FILE})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise MismatchError(f"{directory}: index format version {meta.get('format_version')}, this tuneprint reads {FORMAT_VERSION}")
    if meta.get("model_id") != model_id:
        raise MismatchError(
            f"{directory}: the index was built with encoder {meta.get('model_id')}, but the library's encoder is "
            f"{model_id}; run `tuneprint reindex` to re-embed the library"
        )
    config = IndexConfig(**meta["config"])
    index = backend_class(config.backend).read(config, directory)
    if getattr(index, "durable", False):
        index.location = directory
    return index


def _check_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {vectors.shape}")
    return vectors
