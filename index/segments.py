"""The FAISS backend: compressed vectors kept as append-only segments.

A commit writes what it added as a new segment file and a new manifest (``index.json``); the
files already there are never rewritten, so adding to a big library costs what is added, not
what is there. A removal writes a small file of removed row ids (tombstones) instead of touching
the segments. When there are more than ``config.max_segments`` segments, the smallest
``MERGE_FACTOR`` are merged into one (dropping their removed vectors): each vector is rewritten
about log(n) times over the library's life, the way log-structured stores do it.

Every segment holds codes made by one trained, empty *codec* index (``codec.faiss``), e.g.
``PCA128,PQ32``: a 128-d projection cut into 32 sub-vectors of one byte each, 32 bytes a vector
instead of 4 KiB. A codec that must be trained is trained once, on a sample: the codec shipped
with the encoder (trained on its training music, :func:`shipped_codec`), or, for another encoder,
the library's first ``config.train_min`` vectors, which wait in an exact segment until then.
The manifest records how many vectors the library held when its codec was trained
(``codec_trained_at``): `tuneprint doctor` asks for a `reindex`, which trains the codec again on
a sample spread over the whole library, once the library has grown past
``config.codec_growth_limit`` times that. Retraining from the stored codes instead (decoding,
training, re-encoding) was measured and lost accuracy: docs/BENCHMARKS.md, Scale.

Folder (LIB/index/)::

    index.json          meta and manifest: segments, removed ids, codec
    codec.faiss         the trained, empty codec ("Flat" needs none)
    seg-000007.npz      row ids and their codes, of one or more commits
    raw-000008.npz      row ids and exact vectors waiting for a codec to be trained
    removed-000009.npy  row ids removed since their segments were written

Segments hold bare codes (``codec.sa_encode``: 64 bytes a vector with ``PCA128,PQ64``), no copy of
the codec. In memory every vector sits in one searchable index made from the codec, which takes
the codes as they are (FAISS ``add_sa_codes``): nothing is re-encoded when a library opens or
segments merge.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from .vectors import META_FILE, IndexConfig, _check_vectors

log = logging.getLogger(__name__)

CODEC_FILE = "codec.faiss"
SHIPPED = "shipped"  # the manifest's codec when it is the one shipped with the encoder
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "encoder" / "weights"  # codec.faiss + codec.json beside the encoder
LEGACY_FILE = "vectors.faiss"  # the one whole-index file of libraries made before segments
MERGE_FACTOR = 4  # segments merged at a time
TRAIN_SAMPLE = 100_000  # most vectors a codec is trained on


class SegmentedFaissIndex:
    """FAISS inner-product search over segments of codes (see the module docstring)."""

    name = "faiss"
    durable = True

    def __init__(self, config: IndexConfig, codec=None, shipped: str | None = None):
        self.config = config
        self.location: Path | None = None
        self._codec = codec if codec is not None else _factory(config)  # trained or not, always empty
        self._shipped = shipped  # sha256 of the shipped codec file it is, if it is one: the library names it, no copy
        self._codes = _Searchable(self._codec) if self._codec.is_trained else None
        self._raw = _Searchable(_exact_codec(config.dim))  # exact vectors while the codec waits for training
        self._fresh: list[tuple[np.ndarray, np.ndarray]] = []  # (ids, codes) added since the last save
        self._segments: list[dict] = []  # on disk: {"file", "count", "kind"}
        self._removed: set[int] = set()  # ids removed from saved segments
        self._removed_file: str | None = None
        self._counter = 0  # numbers new files
        self._trained_at = 0  # vectors the library held when its codec was trained on them

    # -- the VectorIndex interface -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._raw) + (len(self._codes) if self._codes is not None else 0)

    @property
    def trained(self) -> bool:
        return self._codes is not None

    @property
    def codec_trained_at(self) -> int | None:
        """Vectors the library held when its codec was trained on them; None for a shipped or no codec."""
        return self._trained_at if self._codec_needs_file() else None

    def codec_covers(self, vectors: int) -> None:
        """Record that the codec's training sample was drawn from all of ``vectors`` (a reindex that
        embeds the songs in a shuffled order), so that growth counts from there."""
        if self.trained:
            self._trained_at = max(self._trained_at, int(vectors))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = _check_vectors(vectors, self.config.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.trained:
            codes = self._codec.sa_encode(vectors)
            self._codes.add_codes(ids, codes)
            self._fresh.append((ids, codes))
        else:
            self._raw.add_codes(ids, _exact_codec(self.config.dim).sa_encode(vectors))

    def remove(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        for part in self._parts():
            part.remove(ids)
        self._fresh = [(i[keep], c[keep]) for i, c in self._fresh for keep in [~np.isin(i, ids)]]
        self._removed.update(int(i) for i in ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Queries [shape=(n, D)] → similarities and ids, each [shape=(n, k)], id -1 where fewer exist."""
        queries = _check_vectors(queries, self.config.dim)
        sims = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for part in self._parts():
            if len(part):
                s, i = part.search(queries, min(k, len(part)), self.config.nprobe)
                sims, ids = _best(np.hstack([sims, s]), np.hstack([ids, i]), k)
        return sims, ids

    def ids(self) -> np.ndarray:
        return np.concatenate([part.ids for part in self._parts()] or [np.zeros(0, np.int64)])

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors, decoded from their codes and scaled back to unit norm (close to, not equal
        to, what was added)."""
        out = np.zeros((len(ids), self.config.dim), np.float32)
        for row, i in enumerate(ids):
            for part in self._parts():
                try:
                    out[row] = part.reconstruct(int(i))
                    break
                except RuntimeError:  # not in this part
                    continue
            else:
                raise KeyError(f"no vector under id {int(i)}")
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    # -- files ---------------------------------------------------------------------------------
    def manifest(self) -> dict:
        codec = CODEC_FILE if self._codec_needs_file() else SHIPPED if self._shipped else None
        return {"segments": self._segments, "removed": self._removed_file, "codec": codec,
                "codec_sha256": self._shipped, "codec_trained_at": self.codec_trained_at}

    def write(self, directory: Path) -> None:
        """Everything into ``directory`` (a new folder): one segment, the codec, no removed ids."""
        directory = Path(directory)
        self._train_if_due()
        ids, codes = self._all_codes()
        self._segments, self._removed, self._removed_file, self._fresh = [], set(), None, []
        if self._codec_needs_file():
            _write_bytes(directory / CODEC_FILE, _serialized(self._codec))
        if len(ids):
            self._segments.append(self._write_segment(directory, ids, codes, "codes"))
        if len(self._raw):
            self._segments.append(self._write_segment(directory, self._raw.ids, self._raw.codes(), "raw"))

    def save(self, directory: Path, meta: dict) -> None:
        """Write what changed since the last save into ``directory`` (where the index lives), then the
        manifest; files the new manifest no longer names are deleted after it."""
        directory = Path(directory)
        self._counter = max(self._counter, _highest_number(directory))
        if self._train_if_due():
            _write_bytes(directory / CODEC_FILE, _serialized(self._codec))
        if self._fresh:
            ids = np.concatenate([i for i, _ in self._fresh])
            codes = np.concatenate([c for _, c in self._fresh])
            if len(ids):
                self._segments.append(self._write_segment(directory, ids, codes, "codes"))
            self._fresh = []
        self._segments = [s for s in self._segments if s["kind"] != "raw"]  # small: rewritten whole
        if len(self._raw):
            self._segments.append(self._write_segment(directory, self._raw.ids, self._raw.codes(), "raw"))
        self._merge_small_segments(directory)
        self._write_removed(directory)
        _write_json(directory / META_FILE, {**meta, **self.manifest(), "count": len(self)})
        _delete_unnamed(directory, self.manifest())

    @classmethod
    def read(cls, config: IndexConfig, directory: Path) -> "SegmentedFaissIndex":
        """Open the segments the manifest names; a writer that merges meanwhile may delete one, so a
        missing file means: read the new manifest again."""
        for attempt in range(3):
            try:
                return cls._read(config, Path(directory))
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _read(cls, config: IndexConfig, directory: Path) -> "SegmentedFaissIndex":
        meta = json.loads((directory / META_FILE).read_text())
        if "segments" not in meta:  # before segments: one whole-index file of exact vectors
            meta = {"segments": [{"file": LEGACY_FILE, "count": meta.get("count"), "kind": "codes"}], "codec": None}
        codec, shipped = None, None
        if meta.get("codec") == SHIPPED:
            codec, shipped = shipped_codec(meta.get("codec_sha256")), meta.get("codec_sha256")
        elif meta.get("codec"):
            codec = _read_index(directory / meta["codec"])
        index = cls(config, codec, shipped)
        if meta.get("codec") not in (None, SHIPPED):  # older manifests do not say: it was trained when due
            index._trained_at = int(meta.get("codec_trained_at") or config.train_min)
        index._segments = meta["segments"]
        index._removed_file = meta.get("removed")
        if index._removed_file:
            index._removed = set(np.load(directory / index._removed_file).tolist())
        for segment in meta["segments"]:
            ids, codes = _read_segment(directory, segment["file"], config.dim)
            (index._codes if segment["kind"] == "codes" else index._raw).add_codes(ids, codes)
        if index._removed:
            removed = np.fromiter(index._removed, np.int64)
            for part in index._parts():
                part.remove(removed)
        index._counter = _highest_number(directory)
        return index

    # -- helpers -------------------------------------------------------------------------------
    def _parts(self) -> list["_Searchable"]:
        return [p for p in (self._codes, self._raw) if p is not None]

    def _all_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Every stored code with its id: those added since the last save as they were made; an index
        read from files re-encodes its decoded vectors (which give back their own codes)."""
        if self._codes is None:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.uint8)
        if sum(len(i) for i, _ in self._fresh) == len(self._codes):
            return (np.concatenate([i for i, _ in self._fresh] or [np.zeros(0, np.int64)]),
                    np.concatenate([c for _, c in self._fresh] or [np.zeros((0, self._codec.sa_code_size()), np.uint8)]))
        return self._codes.ids, self._codes.codes()

    def _codec_needs_file(self) -> bool:
        return self.trained and self.config.faiss_factory != "Flat" and self._shipped is None

    def _train_if_due(self) -> bool:
        """Train the codec on the waiting exact vectors once there are ``config.train_min`` of them,
        then encode them; True if it trained now."""
        if self.trained or len(self._raw) < max(self.config.train_min, 1):
            return False
        ids = self._raw.ids
        vectors = self._raw.codes().view(np.float32).reshape(len(ids), self.config.dim)
        sample = vectors[np.random.default_rng(0).permutation(len(vectors))[:TRAIN_SAMPLE]]
        log.info("training the index codec %s on %d vectors", self.config.faiss_factory, len(sample))
        self._codec.train(sample)
        self._codec = _read_back(self._codec)
        self._codes = _Searchable(self._codec)
        self._raw = _Searchable(_exact_codec(self.config.dim))
        self._trained_at = len(ids)
        self.add(ids, vectors)
        return True

    def _write_segment(self, directory: Path, ids: np.ndarray, codes: np.ndarray, kind: str) -> dict:
        self._counter += 1
        name = f"{'seg' if kind == 'codes' else 'raw'}-{self._counter:06d}.npz"
        starts, lengths = _id_runs(ids)  # a commit's row ids are a few consecutive runs: ≈0 bytes, not 8 a vector
        _write_bytes(directory / name, _npz_bytes(id_starts=starts, id_lengths=lengths, codes=codes))
        return {"file": name, "count": int(len(ids)), "kind": kind}

    def _merge_small_segments(self, directory: Path) -> None:
        """While there are more than ``config.max_segments`` code segments, merge the smallest few."""
        while True:
            codes = [s for s in self._segments if s["kind"] == "codes"]
            if len(codes) <= self.config.max_segments:
                return
            smallest = sorted(codes, key=lambda s: s["count"] or 0)[:MERGE_FACTOR]
            parts = [_read_segment(directory, s["file"], self.config.dim) for s in smallest]
            ids, merged = np.concatenate([i for i, _ in parts]), np.concatenate([c for _, c in parts])
            keep = ~np.isin(ids, np.fromiter(self._removed, np.int64, len(self._removed)))
            segment = self._write_segment(directory, ids[keep], merged[keep], "codes")
            log.info("merged %d segments into %s (%d vectors)", len(smallest), segment["file"], segment["count"])
            self._segments = [s for s in self._segments if s not in smallest] + [segment]
            self._removed -= set(ids[~keep].tolist())  # ids are never reused: these are in no other segment

    def _write_removed(self, directory: Path) -> None:
        if not self._removed:
            self._removed_file = None
            return
        self._counter += 1
        self._removed_file = f"removed-{self._counter:06d}.npy"
        _write_bytes(directory / self._removed_file, _npy_bytes(np.array(sorted(self._removed), np.int64)))


class _Searchable:
    """One FAISS index built from a codec that takes the codec's codes as they are, with int64 ids."""

    def __init__(self, codec):
        import faiss

        self._codec = codec
        self._keep = faiss.clone_index(codec)  # owns what the objects below point into
        if isinstance(self._keep, faiss.IndexPreTransform):
            inner = faiss.downcast_index(self._keep.index)
            self._outer, self._inner = self._keep, self._wrap(inner)
            self._keep.own_fields = False  # the id map below is Python's to free
            self._keep.index = self._inner
            self._inner_codec = inner
        else:
            self._outer = self._inner = self._wrap(self._keep)
        self.ids = np.zeros(0, np.int64)

    @staticmethod
    def _wrap(index):
        import faiss

        if isinstance(index, faiss.IndexIVF):  # keeps its own ids; find them by id to reconstruct
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
            return index
        return faiss.IndexIDMap2(index)

    def __len__(self) -> int:
        return int(self._inner.ntotal)

    def add_codes(self, ids: np.ndarray, codes: np.ndarray) -> None:
        if len(ids):
            self._inner.add_sa_codes(np.ascontiguousarray(codes, dtype=np.uint8), np.ascontiguousarray(ids, dtype=np.int64))
            self._outer.ntotal = self._inner.ntotal
            self.ids = np.concatenate([self.ids, ids])

    def remove(self, ids: np.ndarray) -> None:
        if len(ids) and len(self.ids):
            self._inner.remove_ids(ids)
            self._outer.ntotal = self._inner.ntotal
            self.ids = self.ids[~np.isin(self.ids, ids)]

    def search(self, queries: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        try:
            faiss.extract_index_ivf(self._outer).nprobe = nprobe
        except RuntimeError:  # a codec without inverted lists
            pass
        sims, ids = self._outer.search(queries, k)
        return sims.astype(np.float32), ids.astype(np.int64)

    def reconstruct(self, i: int) -> np.ndarray:
        """The vector under id ``i``, decoded (and projected back where the codec projects)."""
        import faiss

        y = self._inner.reconstruct(i)[None]
        if isinstance(self._outer, faiss.IndexPreTransform):
            for k in reversed(range(self._outer.chain.size())):
                y = faiss.downcast_VectorTransform(self._outer.chain.at(k)).reverse_transform(y)
        return y[0]

    def codes(self) -> np.ndarray:
        """Every stored code [shape=(len, code_size)], in the order of :attr:`ids` (re-encoded from the
        decoded vectors: exact for the codecs used here, whose codes decode to their own centroids)."""
        return self._codec.sa_encode(np.stack([self.reconstruct(int(i)) for i in self.ids])) if len(self.ids) else \
            np.zeros((0, self._codec.sa_code_size()), np.uint8)


def shipped_codec(sha256: str | None = None, directory: Path = SHIPPED_DIR):
    """The codec shipped with the encoder (``directory``/codec.faiss), checked against ``sha256``
    when given: a library names the codec it was encoded with instead of keeping a copy."""
    from tuneprint.errors import MismatchError

    path = directory / CODEC_FILE
    data = path.read_bytes() if path.is_file() else b""
    if sha256 is not None and file_sha256(data) != sha256:
        raise MismatchError(f"the index was encoded with a shipped codec ({sha256[:16]}) this tuneprint does not "
                            "have; run `tuneprint reindex` to re-encode the library")
    import faiss

    return faiss.deserialize_index(np.frombuffer(data, np.uint8)) if data else None


def file_sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _factory(config: IndexConfig):
    import faiss

    return _read_back(faiss.index_factory(config.dim, config.faiss_factory, faiss.METRIC_INNER_PRODUCT))


def _exact_codec(dim: int):
    import faiss

    return faiss.IndexFlatIP(dim)


def _read_back(index):
    """``index`` as it reads back from a file: codecs compare equal only as the same types."""
    import faiss

    return faiss.deserialize_index(faiss.serialize_index(index))


def _serialized(index) -> bytes:
    import faiss

    return faiss.serialize_index(index).tobytes()


def _best(sims: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar of each row, best first (ids -1 sort last)."""
    sims = np.where(ids < 0, -np.inf, sims)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, 1).astype(np.float32), np.take_along_axis(ids, order, 1)


def _read_segment(directory: Path, name: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, codes) of a segment file; a whole-index file of an earlier version gives its exact vectors."""
    import faiss

    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(path)
    if name == LEGACY_FILE:
        old = faiss.read_index(str(path))
        ids = faiss.vector_to_array(old.id_map).astype(np.int64)
        vectors = np.stack([old.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, dim), np.float32)
        return ids, vectors.view(np.uint8).reshape(len(ids), -1)
    import zipfile

    try:
        with np.load(path) as data:
            ids = np.concatenate([np.arange(a, a + n, dtype=np.int64) for a, n in zip(data["id_starts"], data["id_lengths"])]
                                 or [np.zeros(0, np.int64)])
            return ids, data["codes"]
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path}: damaged segment ({e})") from None


def _id_runs(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` as runs of consecutive numbers: (first id of each run, its length)."""
    if not len(ids):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = np.r_[0, breaks]
    return ids[starts].astype(np.int64), np.diff(np.r_[starts, len(ids)]).astype(np.int64)


def _read_index(path: Path):
    import faiss

    if not path.is_file():
        raise FileNotFoundError(path)
    return faiss.read_index(str(path))


def _npz_bytes(**arrays) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
def _write_bytes(path: Path, data: bytes) -> None:
    """A new file, whole on disk before anything names it."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    _write_bytes(path, json.dumps(data, indent=2).encode())


def _highest_number(directory: Path) -> int:
    numbers = [int(p.stem.split("-")[-1]) for p in directory.glob("*-[0-9]*.*") if p.stem.split("-")[-1].isdigit()]
    return max(numbers, default=0)


def _delete_unnamed(directory: Path, manifest: dict) -> None:
    """Segments and removal lists the manifest no longer names (merged away, or left by a crash)."""
    named = {s["file"] for s in manifest["segments"]} | {manifest["removed"], manifest["codec"], META_FILE}
    for path in directory.iterdir():
        if path.name not in named and (path.suffix in (".faiss", ".npz", ".npy", ".tmp")):
            path.unlink(missing_ok=True)
