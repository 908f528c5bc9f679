"""index/milvus.py on Milvus Lite (a file, no server): exact search, changes, save and reopen, the
reindex swap, a library end to end and `tuneprint add --index milvus`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from tuneprint.index.milvus import LITE_FILE, STORE_FILE, MilvusIndex, _connect, _disconnect  # noqa: E402
from tuneprint.index.vectors import META_FILE, IndexConfig, create_index, load_index, save_index  # noqa: E402
from tuneprint.server.cli import EXIT_OK, main  # noqa: E402
from tuneprint.server.library import Library, LibrarySettings  # noqa: E402
from tests.conftest import SR, TEST_MODEL, cut, synth_song  # noqa: E402

DIM = 64


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    """400 unit vectors under ids that are not positions, and 20 noisy copies as queries."""
    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal((400, DIM)))
    ids = np.arange(len(base), dtype=np.int64) * 3 + 1000
    queries = unit(base[rng.integers(0, len(base), 20)] + 0.1 * rng.standard_normal((20, DIM)))
    return ids, base, queries


def exact_search(base, ids, queries, k):
    sims = queries @ base.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


def build(ids, vectors, **cfg) -> MilvusIndex:
    index = create_index(IndexConfig(backend="milvus", dim=DIM, **cfg))
    index.add(ids, vectors)
    return index


def collections(folder) -> list[str]:
    """The collections of the Milvus Lite file beside ``folder``."""
    store = str((folder.parent / LITE_FILE).absolute())
    client = _connect(store)
    try:
        return client.list_collections()
    finally:
        _disconnect(store, client)


def test_flat_equals_exact_search_before_and_after_saving(data, tmp_path):
    ids, base, queries = data
    index = build(ids, base)
    assert isinstance(index, MilvusIndex) and index.durable and index.location is None
    exact_sims, exact_ids = exact_search(base, ids, queries, 10)
    for _ in range(2):  # a new index (a scratch file), then in the file beside its folder
        sims, found = index.search(queries, 10)
        np.testing.assert_array_equal(found, exact_ids)
        np.testing.assert_allclose(sims, exact_sims, atol=1e-5)
        assert sims.dtype == np.float32 and found.dtype == np.int64
        save_index(index, tmp_path / "index", model_id="enc-1")
    assert index.location == tmp_path / "index"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", LITE_FILE]  # the vectors live beside the folder


def test_add_remove_ids_vectors(data, tmp_path):
    ids, base, _ = data
    for saved in (False, True):  # kept in memory before the first save, in Milvus after
        index = build(ids[:100], base[:100])
        if saved:
            save_index(index, tmp_path / f"index{int(saved)}", model_id="m")
        index.add(ids[100:150], base[100:150])
        assert len(index) == 150
        assert sorted(index.ids().tolist()) == sorted(ids[:150].tolist())
        np.testing.assert_allclose(index.vectors(ids[[5, 120, 7]]), base[[5, 120, 7]], atol=1e-6)
        assert index.vectors(np.zeros(0, np.int64)).shape == (0, DIM)
        with pytest.raises(ValueError, match="no vectors"):
            index.vectors(np.array([1], np.int64))

        gone = ids[:50]
        index.remove(gone)
        assert len(index) == 100
        assert not set(index.ids().tolist()) & set(gone.tolist())
        _, found = index.search(base[:50], 10)
        assert not set(found.ravel().tolist()) & set(gone.tolist())
        _, found = index.search(base[[60, 130]], 1)  # a stored vector finds itself first
        assert found[:, 0].tolist() == [ids[60], ids[130]]


def test_empty_and_short_index_pad_with_minus_one(data):
    ids, base, queries = data
    index = create_index(IndexConfig(backend="milvus", dim=DIM))
    sims, found = index.search(queries[:3], 5)
    assert found.shape == (3, 5) and np.all(found == -1) and np.all(np.isneginf(sims))
    index.add(ids[:3], base[:3])
    sims, found = index.search(queries[:2], 5)
    assert found.shape == (2, 5) and np.all(np.diff(sims[:, :3], axis=1) <= 1e-6)
    assert np.all(np.sort(found[:, :3], axis=1) == np.sort(ids[:3])) and np.all(found[:, 3:] == -1)
    assert np.all(np.isneginf(sims[:, 3:]))


def test_save_load_reopen_gives_the_same_results(data, tmp_path):
    ids, base, queries = data
    index = build(ids[:300], base[:300])
    save_index(index, tmp_path / "index", model_id="enc-1")
    index.remove(ids[10:20])
    save_index(index, tmp_path / "index", model_id="enc-1")  # in place: the collection is flushed
    before = index.search(queries, 10)
    meta = json.loads((tmp_path / "index" / META_FILE).read_text())
    assert meta["count"] == 290 and meta["config"]["backend"] == "milvus"
    record = json.loads((tmp_path / "index" / STORE_FILE).read_text())
    assert record["uri"] == "" and record["collection"].startswith("tuneprint_")

    loaded = load_index(tmp_path / "index", model_id="enc-1")
    assert type(loaded) is MilvusIndex and loaded.config == index.config and loaded.location == tmp_path / "index"
    assert sorted(loaded.ids().tolist()) == sorted(index.ids().tolist())
    after = loaded.search(queries, 10)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)

    loaded.add(ids[300:310], base[300:310])  # a loaded index still changes, and saves in place
    save_index(loaded, tmp_path / "index", model_id="enc-1")
    assert len(load_index(tmp_path / "index", model_id="enc-1")) == 300
    assert json.loads((tmp_path / "index" / META_FILE).read_text())["count"] == 300


def test_a_fresh_index_saved_over_a_folder_replaces_it(data, tmp_path):
    """What reindex does: the new collection is filled beside the live one, the folder's rename
    switches, and the old collection is dropped."""
    ids, base, queries = data
    save_index(build(ids[:200], base[:200]), tmp_path / "index", model_id="m")
    live = load_index(tmp_path / "index", model_id="m")  # noqa: F841 (open meanwhile, as a library's is)
    old = json.loads((tmp_path / "index" / STORE_FILE).read_text())["collection"]

    fresh = build(ids[200:], base[200:])
    save_index(fresh, tmp_path / "index", model_id="m")
    record = json.loads((tmp_path / "index" / STORE_FILE).read_text())
    assert record["collection"] != old and record["replaces"] == old
    assert collections(tmp_path / "index") == [record["collection"]]  # the old one no longer answers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", LITE_FILE]

    reopened = load_index(tmp_path / "index", model_id="m")
    assert sorted(reopened.ids().tolist()) == sorted(ids[200:].tolist())
    _, found = reopened.search(queries, 5)
    np.testing.assert_array_equal(found, exact_search(base[200:], ids[200:], queries, 5)[1])


def test_ivf_flat(data, tmp_path):
    ids, base, queries = data
    index = build(ids, base, milvus_index="IVF_FLAT", nlist=8, nprobe=8)  # every list probed: exact
    save_index(index, tmp_path / "index", model_id="m")
    _, found = load_index(tmp_path / "index", model_id="m").search(queries, 5)
    np.testing.assert_array_equal(found, exact_search(base, ids, queries, 5)[1])


def write_clip(folder, seed: int, start_s: float):
    path = folder / f"clip{seed}.wav"
    sf.write(path, cut(synth_song(seed), start_s, 3.0), SR, subtype="FLOAT")
    return path


def test_library_end_to_end(song_dir, tmp_path):
    files = [song_dir / f"song{i:02d}.wav" for i in (0, 1, 2)]
    root = tmp_path / "lib"
    with Library.create(root, LibrarySettings(model=TEST_MODEL, index=IndexConfig(backend="milvus"))) as lib:
        assert [r.status for r in lib.add(files)] == ["added"] * 3
    assert (root / LITE_FILE).exists() and (root / "index" / STORE_FILE).is_file()
    clip, other = write_clip(tmp_path, 1, 11.0), write_clip(tmp_path, 2, 5.0)
    with Library.open(root) as lib:
        stats = lib.stats()
        assert stats["backend"] == "milvus" and stats["songs"] == 3 and stats["vectors"] == stats["snippets"]
        result = lib.identify(clip)
        assert result.match is not None and result.match.song.path == str(files[1].resolve())
        assert result.match.vote.offset_s == pytest.approx(11.0, abs=0.5)
        lib.remove(result.match.song.song_id)
    with Library.open(root) as lib:
        assert lib.stats()["songs"] == 2 and lib.stats()["vectors"] == lib.stats()["snippets"]
        result = lib.identify(clip)
        assert result.match is None or result.match.song.path != str(files[1].resolve())
        before = lib.identify(other).to_dict()
        assert lib.reindex() == 2  # a new collection, swapped in; the old one dropped
        assert lib.identify(other).to_dict() == before
    assert collections(root / "index") == [json.loads((root / "index" / STORE_FILE).read_text())["collection"]]
    with Library.open(root) as lib:
        assert lib.identify(other).to_dict() == before


def test_cli_add_with_the_milvus_index(capsys, tmp_path):
    song = tmp_path / "one.wav"
    sf.write(song, synth_song(403, seconds=5.0), SR)
    lib = tmp_path / "lib"
    assert main(["add", "--library", str(lib), "--model", TEST_MODEL, "--index", "milvus", str(song)]) == EXIT_OK
    assert "library now holds 1 songs" in capsys.readouterr().out
    assert main(["stats", "--library", str(lib), "--json"]) == EXIT_OK
    stats = json.loads(capsys.readouterr().out)
    assert stats["backend"] == "milvus" and stats["songs"] == 1
    assert (lib / LITE_FILE).exists()


def test_a_milvus_server_by_uri(data, tmp_path):
    """The same code on a server: Milvus Lite's own gRPC server stands in for a cluster."""
    from milvus_lite.server_manager import server_manager_instance

    ids, base, queries = data
    uri = server_manager_instance.start_and_get_uri(str(tmp_path / "server.db"))
    try:
        index = build(ids[:200], base[:200], uri=uri)  # on a server, a new index fills its collection at once
        first = index._collection
        save_index(index, tmp_path / "index", model_id="m")
        record = json.loads((tmp_path / "index" / STORE_FILE).read_text())
        assert record == {"format_version": 1, "uri": uri, "collection": first, "replaces": None}
        assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "server.db"]  # no Lite file beside

        loaded = load_index(tmp_path / "index", model_id="m")
        _, found = loaded.search(queries, 5)
        np.testing.assert_array_equal(found, exact_search(base[:200], ids[:200], queries, 5)[1])

        save_index(build(ids[200:], base[200:], uri=uri), tmp_path / "index", model_id="m")  # a reindex
        reopened = load_index(tmp_path / "index", model_id="m")
        assert sorted(reopened.ids().tolist()) == sorted(ids[200:].tolist())
        assert first not in reopened._connected().list_collections()
    finally:
        server_manager_instance.release_server(str(tmp_path / "server.db"))
