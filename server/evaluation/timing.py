"""Search timing, with the recall that makes a speed figure meaningful.

On a sample of the library's own embeddings: build time, the time for one query of 10, 30
and 1000 nearest neighbours, memory, and recall@k against exact search, for exact search
(NumPy brute force, scikit-learn NearestNeighbors), Annoy and FAISS (Flat, HNSW, IVF-PQ).
The queries are snippets left out of the indexed sample.
"""
from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tuneprint.index.vectors import IndexConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimingConfig:
    max_vectors: int = 20000  # indexed sample of the library's snippets (a 2-core machine's sane size)
    queries: int = 50  # single-vector queries, each timed; also the recall sample
    ks: tuple[int, ...] = (10, 30, 1000)  # 10: the library's vote; 30 and 1000: a small and a large neighbourhood
    annoy_trees: int = IndexConfig.annoy_trees  # Annoy's build knob, as libraries use it
    annoy_search_k: int = IndexConfig.annoy_search_k  # Annoy's query knob, as libraries use it (-1: trees × k)
    hnsw_m: int = 32
    hnsw_ef_search: int = 64  # candidates kept while searching; raised to k when k is larger
    ivf_nlist: int = 0  # 0: 4·√n, at most n/39 (FAISS's points per centroid)
    pq_m: int = 32  # sub-quantizers (1024-d → 32-d pieces), 8 bits each where n allows
    ivf_nprobe: int = 32
    train_points: int = 5000  # IVF-PQ trains on a sample (PQ training is minutes on a CPU without AVX2)
    refine_k_factor: int = 4  # IVF-PQ + RFlat: candidates re-ranked with the full vectors
    threads: int = 1  # every backend on one thread: a fair comparison (Annoy queries single-threaded)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def recall_at_k(found: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean share of the exact ``k`` nearest ids that the search found in its first ``k``.

    Parameters
    ----------
    found, exact : np.ndarray [shape=(q, ≥k)], ids best first; -1 = none (never a hit)
    """
    hits = []
    for f, e in zip(found, exact):
        truth = {int(i) for i in e[:k] if i >= 0}
        if truth:
            hits.append(len(truth & {int(i) for i in f[:k] if i >= 0}) / len(truth))
    return float(np.mean(hits)) if hits else float("nan")


def tie_aware_recall(found: np.ndarray, queries: np.ndarray, base: np.ndarray, kth_similarity: np.ndarray, k: int,
                     tol: float = 1e-5) -> float:
    """Recall@k where any vector as similar as the exact k-th neighbour counts as a true neighbour.

    Overlapping snippets give near-identical vectors; which of two equally near ones an exact
    search returns depends on rounding, so plain :func:`recall_at_k` would fault exact search.

    Parameters
    ----------
    found : np.ndarray [shape=(q, ≥k)], ids best first; -1 = none
    kth_similarity : np.ndarray [shape=(q,)], similarity of each query's exact k-th neighbour
    """
    k_eff = min(k, len(base))
    f = found[:, :k_eff]
    sims = np.einsum("qd,qkd->qk", queries, base[np.maximum(f, 0)])
    good = (f >= 0) & (sims >= kth_similarity[:, None] - tol)
    unique = [len({int(i) for i, g in zip(row, ok) if g}) for row, ok in zip(f, good)]
    return float(np.mean(unique) / k_eff)


def _sample(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    return x if len(x) <= n else x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]


def numpy_search(base: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product k-NN of one or more queries by brute force → ids [shape=(q, k)]."""
    sims = np.atleast_2d(query) @ base.T
    k = min(k, base.shape[0])
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


@dataclass
class Backend:
    name: str
    build: Callable[[np.ndarray], object]  # base vectors → searcher
    search: Callable[[object, np.ndarray, int], np.ndarray]  # (searcher, one query [1, D], k) → ids [1, k]
    size: Callable[[object], int | None] = lambda s: None
    exact: bool = False
    note: str = ""


def backends(cfg: TimingConfig, n: int, dim: int) -> list[Backend]:
    """The searchers compared, configured from ``cfg`` for ``n`` vectors of ``dim``."""
    import faiss
    from annoy import AnnoyIndex
    from sklearn.neighbors import NearestNeighbors  # imported here, not inside the timed build

    def sklearn_build(base):
        return NearestNeighbors(n_neighbors=min(max(cfg.ks), n)).fit(base)

    def annoy_build(base):
        forest = AnnoyIndex(dim, "angular")
        for i, v in enumerate(base):
            forest.add_item(i, v)
        forest.build(cfg.annoy_trees, n_jobs=1)
        return forest

    def annoy_size(forest):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "forest.ann"
            forest.save(str(path))
            size = path.stat().st_size
            forest.unload()
        return size

    trained: dict[str, object] = {}  # the IVF-PQ index, re-used by its re-ranking row

    def faiss_build(factory: str, **params):
        def build(base):
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                index.train(_sample(base, cfg.train_points, cfg.seed))
            index.add(base)
            _set_params(index, params)
            trained[factory] = index
            return index
        return build

    def refine_build(factory: str, **params):
        def build(base):
            coarse = faiss.clone_index(trained[factory]) if factory in trained else faiss_build(factory)(base)
            coarse.reset()  # keep the training, drop the vectors: the refine index adds them to both
            index = faiss.IndexRefineFlat(coarse)
            index.referenced_objects = [coarse]  # the C++ index does not own it
            index.add(base)
            _set_params(index, params)
            return index
        return build

    def _set_params(index, params):
        ps = faiss.ParameterSpace()
        for key, value in params.items():
            ps.set_index_parameter(index, key, value)

    def faiss_search(index, q, k):
        return index.search(q, min(k, index.ntotal))[1]

    def hnsw_search(index, q, k):
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(cfg.hnsw_ef_search, k)  # fewer candidates than k cannot hold k neighbours
        return index.search(q, min(k, index.ntotal), params=params)[1]

    def faiss_size(index):
        return int(faiss.serialize_index(index).size)

    n_train = min(n, cfg.train_points)
    nlist = cfg.ivf_nlist or max(1, min(int(4 * math.sqrt(n)), n_train // 39))  # ≥39 training points per list
    nbits = max(1, min(8, int(math.log2(max(n_train / 16, 2)))))  # ≥16 training points per codeword
    m = max(d for d in range(1, min(cfg.pq_m, dim) + 1) if dim % d == 0)
    ivfpq = f"IVF{nlist},PQ{m}x{nbits}"
    return [
        Backend("NumPy brute force", lambda base: base, lambda base, q, k: numpy_search(base, q, k),
                lambda base: base.nbytes, exact=True),
        Backend("scikit-learn NearestNeighbors", sklearn_build,
                lambda nn, q, k: nn.kneighbors(q, n_neighbors=min(k, n), return_distance=False), exact=True,
                note="euclidean on unit vectors (same order as cosine)"),
        Backend(f"Annoy ({cfg.annoy_trees} trees)", annoy_build,
                lambda forest, q, k: np.array([forest.get_nns_by_vector(q[0], k, search_k=cfg.annoy_search_k)]),
                annoy_size, note=f"search_k {cfg.annoy_search_k} (-1: trees × k)"),
        Backend("FAISS Flat", faiss_build("Flat"), faiss_search, faiss_size, exact=True),
        Backend(f"FAISS HNSW{cfg.hnsw_m}", faiss_build(f"HNSW{cfg.hnsw_m}"), hnsw_search, faiss_size,
                note=f"efSearch max({cfg.hnsw_ef_search}, k)"),
        Backend(f"FAISS {ivfpq}", faiss_build(ivfpq, nprobe=min(cfg.ivf_nprobe, nlist)), faiss_search, faiss_size,
                note=f"nprobe {min(cfg.ivf_nprobe, nlist)}"),
        Backend(f"FAISS {ivfpq} + exact re-rank", refine_build(ivfpq, nprobe=min(cfg.ivf_nprobe, nlist),
                                                                 k_factor_rf=cfg.refine_k_factor),
                faiss_search, faiss_size,
                note=f"{cfg.refine_k_factor}·k candidates re-ranked with the full vectors; build: the re-rank store, "
                     "on top of the row above"),
    ]


def search_timing(vectors: np.ndarray, cfg: TimingConfig = TimingConfig(), progress=None) -> dict:
    """Time and score every backend of :func:`backends` on ``vectors`` [shape=(n, D)], unit norm.

    BLAS and OpenMP run on ``cfg.threads`` threads meanwhile (spinning OpenMP threads on a
    busy machine can make FAISS's training hundreds of times slower).
    """
    import faiss
    from threadpoolctl import threadpool_limits

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(cfg.threads)
    try:
        with threadpool_limits(limits=cfg.threads):
            return _search_timing(vectors, cfg, progress)
    finally:
        faiss.omp_set_num_threads(before)


def _search_timing(vectors: np.ndarray, cfg: TimingConfig, progress) -> dict:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(vectors))
    n_queries = min(cfg.queries, max(0, len(vectors) // 5))
    queries = vectors[order[:n_queries]]
    base = np.ascontiguousarray(vectors[order[n_queries : n_queries + cfg.max_vectors]])
    if n_queries == 0 or len(base) < 2:
        return {"skipped": f"too few snippets ({len(vectors)}) to time search"}
    exact = numpy_search(base, queries, max(cfg.ks))
    exact_sims = np.einsum("qd,qkd->qk", queries, base[exact])
    rows = []
    found_backends = backends(cfg, len(base), base.shape[1])
    for done, backend in enumerate(found_backends, 1):
        started = time.perf_counter()
        searcher = backend.build(base)
        row = {"backend": backend.name, "exact": backend.exact, "note": backend.note,
               "build_s": round(time.perf_counter() - started, 4)}
        for k in cfg.ks:
            found, elapsed = [], []
            for q in queries:
                t0 = time.perf_counter()
                ids = np.asarray(backend.search(searcher, q[None], k))
                elapsed.append(time.perf_counter() - t0)
                found.append(np.pad(ids[0], (0, max(0, k - ids.shape[1])), constant_values=-1)[:k])
            row[f"query_{k}nn_ms"] = round(1000 * float(np.median(elapsed)), 3)
            kth = exact_sims[:, min(k, exact.shape[1]) - 1]
            row[f"recall@{k}"] = round(tie_aware_recall(np.array(found), queries, base, kth, k), 4)
        row["bytes"] = backend.size(searcher)
        rows.append(row)
        log.info("search timing: %s", row)
        if progress:
            progress(done, len(found_backends))
    return {"vectors": int(len(base)), "dim": int(base.shape[1]), "queries": int(n_queries),
            "threads": cfg.threads, "config": cfg.to_dict(), "rows": rows}
