"""index/vectors.py: FAISS and Annoy against exact NumPy search; add/remove; atomic save and load."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tuneprint.errors import MismatchError
from tuneprint.index.vectors import META_FILE, IndexConfig, create_index, load_index, save_index

DIM = 256
BACKENDS = ["faiss", "annoy"]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    """Song-like unit vectors: 60 'songs' of 50 snippets, each song a smooth walk around its centre.

    Queries are noisy copies of stored snippets; ids are offset so that they are not positions.
    """
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((60, DIM))
    walks = np.cumsum(rng.standard_normal((60, 50, DIM)) * 0.15, axis=1)
    base = unit((centres[:, None, :] + walks).reshape(-1, DIM))
    ids = np.arange(len(base), dtype=np.int64) * 3 + 1000
    queries = unit(base[rng.integers(0, len(base), 100)] + 0.1 * rng.standard_normal((100, DIM)))
    return ids, base, queries


def exact_search(base, ids, queries, k):
    sims = queries @ base.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


def build(backend: str, ids, vectors, **cfg):
    index = create_index(IndexConfig(backend=backend, dim=DIM, **cfg))
    index.add(ids, vectors)
    return index


def test_faiss_flat_equals_exact_search(data):
    ids, base, queries = data
    sims, found = build("faiss", ids, base).search(queries, 10)
    exact_sims, exact_ids = exact_search(base, ids, queries, 10)
    np.testing.assert_array_equal(found, exact_ids)
    np.testing.assert_allclose(sims, exact_sims, atol=1e-5)
    assert sims.dtype == np.float32 and found.dtype == np.int64


def test_annoy_recall_against_exact_search(data):
    ids, base, queries = data
    sims, found = build("annoy", ids, base).search(queries, 10)  # the default 32 trees
    _, exact_ids = exact_search(base, ids, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact_ids)])
    assert recall >= 0.9, f"Annoy recall@10 {recall:.3f}"
    assert np.mean(found[:, 0] == exact_ids[:, 0]) >= 0.95
    # Annoy's angular distances are turned back into the same cosine similarities
    position = {int(i): p for p, i in enumerate(ids)}
    true = np.array([[base[position[int(i)]] @ q for i in row] for q, row in zip(queries, found)])
    np.testing.assert_allclose(sims, true, atol=1e-4)
    assert np.all(np.diff(sims, axis=1) <= 1e-6), "neighbours come best first"


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_remove_ids_vectors(backend, data):
    ids, base, _ = data
    index = build(backend, ids[:100], base[:100])
    index.add(ids[100:150], base[100:150])  # a second add (Annoy rebuilds its forest)
    assert len(index) == 150
    assert sorted(index.ids().tolist()) == sorted(ids[:150].tolist())
    np.testing.assert_allclose(index.vectors(ids[[5, 120, 7]]), base[[5, 120, 7]], atol=1e-6)
    assert index.vectors(np.zeros(0, np.int64)).shape == (0, DIM)

    # a stored vector finds itself first
    _, found = index.search(base[[3, 130]], 1)
    assert found[:, 0].tolist() == [ids[3], ids[130]]

    gone = ids[:50]
    index.remove(gone)
    assert len(index) == 100
    assert not set(index.ids().tolist()) & set(gone.tolist())
    _, found = index.search(base[:50], 10)
    assert not set(found.ravel().tolist()) & set(gone.tolist())


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_and_short_index_pad_with_minus_one(backend, data):
    ids, base, queries = data
    index = create_index(IndexConfig(backend=backend, dim=DIM))
    sims, found = index.search(queries[:3], 5)
    assert found.shape == (3, 5) and np.all(found == -1) and np.all(np.isneginf(sims))
    index.add(ids[:3], base[:3])
    sims, found = index.search(queries[:2], 5)
    assert found.shape == (2, 5)
    assert np.all(np.sort(found[:, :3], axis=1) == np.sort(ids[:3])) and np.all(found[:, 3:] == -1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_dimension_refused(backend):
    index = create_index(IndexConfig(backend=backend, dim=DIM))
    with pytest.raises(ValueError, match="shape"):
        index.add(np.arange(2), np.zeros((2, DIM + 1), np.float32))


def test_unknown_backend_refused():
    with pytest.raises(ValueError, match="unknown index backend"):
        create_index(IndexConfig(backend="hnswlib"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_round_trip(backend, data, tmp_path):
    ids, base, queries = data
    index = build(backend, ids[:500], base[:500], annoy_trees=16)
    index.remove(ids[10:20])
    before = index.search(queries, 10)
    save_index(index, tmp_path / "index", model_id="enc-1")
    meta = json.loads((tmp_path / "index" / META_FILE).read_text())
    assert meta["model_id"] == "enc-1" and meta["count"] == 490 and meta["config"]["backend"] == backend

    loaded = load_index(tmp_path / "index", model_id="enc-1")
    assert type(loaded) is type(index) and loaded.config == index.config
    assert sorted(loaded.ids().tolist()) == sorted(index.ids().tolist())
    np.testing.assert_allclose(loaded.vectors(ids[[0, 499]]), base[[0, 499]], atol=1e-6)
    after = loaded.search(queries, 10)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)
    # a loaded index can still change
    loaded.add(ids[500:510], base[500:510])
    assert len(loaded) == 500


def test_load_refuses_another_encoder_or_format(data, tmp_path):
    ids, base, _ = data
    save_index(build("faiss", ids[:10], base[:10]), tmp_path / "index", model_id="enc-1")
    with pytest.raises(MismatchError, match="encoder"):
        load_index(tmp_path / "index", model_id="enc-2")
    meta_path = tmp_path / "index" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(MismatchError, match="format version"):
        load_index(tmp_path / "index", model_id="enc-1")
    with pytest.raises(MismatchError, match="no index"):
        load_index(tmp_path / "nowhere", model_id="enc-1")


@pytest.mark.parametrize("backend", BACKENDS)
def test_failed_save_leaves_the_previous_index_readable(backend, data, tmp_path, monkeypatch):
    ids, base, _ = data
    index = build(backend, ids[:20], base[:20])
    save_index(index, tmp_path / "index", model_id="m")
    index.add(ids[20:40], base[20:40])

    def crash(directory, *args):
        (directory / "seg-000099.faiss").write_bytes(b"half a file")
        raise OSError("disk full")

    # FAISS saves in place (a new segment, then the manifest); Annoy writes a new folder
    monkeypatch.setattr(index, "_write_segment" if backend == "faiss" else "write", crash)
    with pytest.raises(OSError, match="disk full"):
        save_index(index, tmp_path / "index", model_id="m")
    loaded = load_index(tmp_path / "index", model_id="m")
    assert sorted(loaded.ids().tolist()) == sorted(ids[:20].tolist())

    monkeypatch.undo()
    save_index(index, tmp_path / "index", model_id="m")  # the next save cleans the staging folder
    assert len(load_index(tmp_path / "index", model_id="m")) == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_save_interrupted_between_renames_recovers(data, tmp_path):
    ids, base, _ = data
    save_index(build("faiss", ids[:20], base[:20]), tmp_path / "index", model_id="m")
    os.replace(tmp_path / "index", tmp_path / "index.old")  # the state between save_index's two renames
    assert len(load_index(tmp_path / "index", model_id="m")) == 20
