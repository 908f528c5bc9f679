"""index/segments.py: compressed codes against exact search, appends and removals that leave the
other segments' files untouched, codecs trained on a sample (and when), merges, a kill between a
segment and its manifest, and indexes written before segments."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tuneprint.index.segments import SegmentedFaissIndex
from tuneprint.index.vectors import META_FILE, IndexConfig, create_index, load_index, save_index

DIM = 64
COMPACT = dict(dim=DIM, faiss_factory="PCA32,PQ32", train_min=2000)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    """Song-like vectors: 80 'songs' of 60 snippets, each a smooth walk that lives mostly in 24
    dimensions (as fingerprints do: their energy sits in few principal directions)."""
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
    scale = np.r_[np.ones(24), np.full(DIM - 24, 0.15)]
    walks = rng.standard_normal((80, 1, DIM)) + np.cumsum(rng.standard_normal((80, 60, DIM)) * 0.2, axis=1)
    base = unit((walks.reshape(-1, DIM) * scale) @ basis.T)
    ids = np.arange(len(base), dtype=np.int64) + 500
    picks = rng.integers(0, len(base), 200)
    queries = unit(base[picks] + 0.05 * rng.standard_normal((200, DIM)) @ basis.T * scale)
    return ids, base, queries, ids[picks]


def files(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in directory.iterdir() if p.name != META_FILE}


def test_compressed_codes_find_what_exact_search_finds(data):
    ids, base, queries, truth = data
    index = create_index(IndexConfig(**COMPACT))
    index.add(ids, base)  # 4800 vectors: past train_min, so the codec is fitted on them at the first save
    index._train_if_due()
    assert index.trained and len(index._raw) == 0
    sims, found = index.search(queries, 10)
    exact = ids[np.argsort(-(queries @ base.T), axis=1)[:, :10]]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
    assert recall >= 0.85, f"recall@10 {recall:.2f}"
    assert np.mean([t in row for t, row in zip(truth, found)]) >= 0.95  # the snippet a query was cut from
    assert np.mean((found[:, 0] - 500) // 60 == (truth - 500) // 60) >= 0.95  # its song comes first
    assert np.all(np.diff(sims, axis=1) <= 1e-6) and found.dtype == np.int64
    error = np.abs(sims[:, 0] - np.sum(queries * base[found[:, 0] - 500], axis=1))  # cosines from codes: approximate
    assert np.median(error) < 0.05 and error.max() < 0.25


def test_appends_and_removals_leave_the_other_segments_untouched(data, tmp_path):
    ids, base, queries, _ = data
    folder = tmp_path / "index"
    index = create_index(IndexConfig(**COMPACT))
    index.add(ids[:3000], base[:3000])
    save_index(index, folder, model_id="m")
    before = files(folder)
    assert {json.loads((folder / META_FILE).read_text())["segments"][0]["kind"]} == {"codes"}

    index.add(ids[3000:3600], base[3000:3600])  # a commit appends one segment
    save_index(index, folder, model_id="m")
    after = files(folder)
    assert all(after[name] == before[name] for name in before), "an append rewrote an existing file"
    assert len(after) == len(before) + 1

    index.remove(ids[10:70])  # a removal writes a list of removed ids, not the segments
    save_index(index, folder, model_id="m")
    removed = files(folder)
    assert all(removed[name] == after[name] for name in after)
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["removed"] and meta["count"] == 3600 - 60

    loaded = load_index(folder, model_id="m")
    assert len(loaded) == 3540 and not set(ids[10:70]) & set(loaded.ids().tolist())
    np.testing.assert_array_equal(loaded.search(queries, 5)[1], index.search(queries, 5)[1])


def test_a_codec_is_trained_on_a_sample_once_there_are_enough_vectors(data, tmp_path):
    ids, base, queries, _ = data
    folder = tmp_path / "index"
    index = create_index(IndexConfig(**{**COMPACT, "faiss_factory": "PCA32,IVF16,PQ32", "nprobe": 16}))
    index.add(ids[:1000], base[:1000])
    save_index(index, folder, model_id="m")
    assert not index.trained  # too few to fit 256 centroids a sub-vector: kept exact meanwhile
    sims, found = index.search(queries[:5], 3)
    exact = np.sort(queries[:5] @ base[:1000].T, axis=1)[:, ::-1][:, :3]
    np.testing.assert_allclose(sims, exact, atol=1e-5)

    index.add(ids[1000:2500], base[1000:2500])
    save_index(index, folder, model_id="m")
    meta = json.loads((folder / META_FILE).read_text())
    assert index.trained and meta["codec"] == "codec.faiss" and meta["codec_trained_at"] == 2500
    assert [s["kind"] for s in meta["segments"]] == ["codes"] and meta["count"] == 2500
    assert not list(folder.glob("raw-*"))
    loaded = load_index(folder, model_id="m")
    assert loaded.trained and len(loaded) == 2500 and loaded.codec_trained_at == 2500
    assert np.mean(loaded.search(queries, 1)[1][:, 0] == index.search(queries, 1)[1][:, 0]) == 1.0


def test_small_segments_are_merged_and_removed_vectors_dropped_with_them(data, tmp_path):
    ids, base, queries, _ = data
    folder = tmp_path / "index"
    index = create_index(IndexConfig(**{**COMPACT, "max_segments": 3}))
    index.add(ids[:2000], base[:2000])
    save_index(index, folder, model_id="m")
    index.remove(ids[:5])
    for start in range(2000, 4800, 400):  # seven more commits
        index.add(ids[start : start + 400], base[start : start + 400])
        save_index(index, folder, model_id="m")
        meta = json.loads((folder / META_FILE).read_text())
        assert len(meta["segments"]) <= 3
    assert sorted(p.name for p in folder.glob("seg-*")) == sorted(s["file"] for s in meta["segments"])
    loaded = load_index(folder, model_id="m")
    assert len(loaded) == 4795 and not set(ids[:5]) & set(loaded.ids().tolist())
    np.testing.assert_array_equal(loaded.search(queries, 5)[1], index.search(queries, 5)[1])


KILL_BEFORE_MANIFEST = """
    import os
    import numpy as np
    from pathlib import Path
    import tuneprint.index.segments as segments
    from tuneprint.index.vectors import load_index, save_index
    folder = Path({folder})
    index = load_index(folder, model_id="m")
    rng = np.random.default_rng(5)
    v = rng.standard_normal((300, {dim})).astype(np.float32)
    index.add(np.arange(9000, 9300), v / np.linalg.norm(v, axis=1, keepdims=True))
    segments._write_json = lambda *a: os._exit(9)  # the segment is on disk, the manifest not yet
    save_index(index, folder, model_id="m")
    """


def test_a_kill_between_a_segment_and_its_manifest_loses_nothing_saved(data, tmp_path):
    ids, base, queries, _ = data
    folder = tmp_path / "index"
    index = create_index(IndexConfig(**COMPACT))
    index.add(ids[:2500], base[:2500])
    save_index(index, folder, model_id="m")
    code = textwrap.dedent(KILL_BEFORE_MANIFEST).format(folder=repr(str(folder)), dim=DIM)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert child.returncode == 9, child.stderr
    assert len(list(folder.glob("seg-*.npz"))) == 2  # the orphan segment is there, unnamed

    loaded = load_index(folder, model_id="m")  # what the manifest names: the state before the kill
    assert len(loaded) == 2500 and loaded.ids().max() < 9000
    loaded.add(ids[2500:2600], base[2500:2600])
    save_index(loaded, folder, model_id="m")  # the next save deletes the orphan
    meta = json.loads((folder / META_FILE).read_text())
    assert sorted(p.name for p in folder.glob("seg-*.npz")) == sorted(s["file"] for s in meta["segments"])
    assert len(load_index(folder, model_id="m")) == 2600


def test_an_index_written_before_segments_is_read_and_grows_by_segments(data, tmp_path):
    import faiss

    ids, base, queries, _ = data
    folder = tmp_path / "index"
    folder.mkdir()
    old = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))  # the one file of earlier versions, exact vectors
    old.add_with_ids(base[:500], ids[:500])
    faiss.write_index(old, str(folder / "vectors.faiss"))
    config = IndexConfig(dim=DIM).to_dict() | {"faiss_factory": "Flat"}
    (folder / META_FILE).write_text(json.dumps({"format_version": 1, "config": config, "model_id": "m", "count": 500}))
    index = load_index(folder, model_id="m")
    assert isinstance(index, SegmentedFaissIndex) and len(index) == 500
    index.add(ids[500:600], base[500:600])
    save_index(index, folder, model_id="m")
    assert (folder / "vectors.faiss").read_bytes() == faiss.serialize_index(old).tobytes()
    loaded = load_index(folder, model_id="m")
    sims, found = loaded.search(queries, 1)
    exact = np.argmax(queries @ base[:600].T, axis=1)
    np.testing.assert_array_equal(found[:, 0], ids[exact])
