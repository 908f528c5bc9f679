"""index/catalog.py: songs, labels and snippets in SQLite; all-or-nothing transactions."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from tuneprint.index.catalog import SCHEMA_VERSION, Catalog, Song

NOW = "2024-06-01T00:00:00+00:00"


def song(i: int, labels=("rock",)) -> Song:
    return Song(f"song{i}", f"/music/song{i}.wav", f"Song {i}", None, 20.0 + i, f"hash{i}", tuple(labels))


@pytest.fixture
def catalog(tmp_path):
    c = Catalog(tmp_path / "catalog.sqlite")
    yield c
    c.close()


def insert(catalog: Catalog, s: Song, n: int) -> np.ndarray:
    with catalog.transaction():
        offsets = np.arange(n, dtype=np.float32) * 0.5
        return catalog.insert_song(s, offsets, catalog.next_row_id(), NOW)


def test_new_catalog_is_empty_and_versioned(catalog):
    assert catalog.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert catalog.counts() == {"songs": 0, "snippets": 0, "hours": 0.0, "labels": {}}
    assert catalog.next_row_id() == 0
    assert catalog.songs() == []


def test_insert_and_lookup(catalog):
    ids0 = insert(catalog, song(0, ("rock", "live")), 3)
    ids1 = insert(catalog, song(1, ()), 2)
    np.testing.assert_array_equal(ids0, [0, 1, 2])
    np.testing.assert_array_equal(ids1, [3, 4])

    stored = catalog.song("song0")
    assert stored.path == "/music/song0.wav" and stored.title == "Song 0"
    assert stored.labels == ("live", "rock") and stored.n_snippets == 3
    assert catalog.song_by_hash("hash1").song_id == "song1"
    assert catalog.song("nope") is None and catalog.song_by_hash("nope") is None

    info = catalog.lookup(np.array([[4, 0, -1], [2, 99, 3]]))
    assert info.song_ids.shape == (2, 3)
    assert info.song_ids.tolist() == [["song1", "song0", None], ["song0", None, "song1"]]
    np.testing.assert_allclose(info.offsets_s[0, :2], [0.5, 0.0])
    assert np.isnan(info.offsets_s[0, 2]) and np.isnan(info.offsets_s[1, 1])
    assert info.labels == {"song0": ("live", "rock"), "song1": ()}

    counts = catalog.counts()
    assert counts["songs"] == 2 and counts["snippets"] == 5
    assert counts["hours"] == pytest.approx((20.0 + 21.0) / 3600)
    assert counts["labels"] == {"live": 1, "rock": 1}
    np.testing.assert_array_equal(catalog.row_ids(), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(catalog.row_ids("song1"), [3, 4])


def test_lookup_many_ids_beyond_sqlite_parameter_limit(catalog):
    insert(catalog, song(0), 2500)
    info = catalog.lookup(np.arange(2500))
    assert set(info.song_ids.tolist()) == {"song0"}
    np.testing.assert_allclose(info.offsets_s, np.arange(2500) * 0.5)


def test_same_audio_hash_is_refused(catalog):
    insert(catalog, song(0), 1)
    twin = Song("other", "/music/copy.flac", None, None, 20.0, "hash0")
    with pytest.raises(sqlite3.IntegrityError):
        insert(catalog, twin, 1)
    assert [s.song_id for s in catalog.songs()] == ["song0"]


def test_delete(catalog):
    insert(catalog, song(0), 3)
    insert(catalog, song(1), 2)
    with catalog.transaction():
        removed = catalog.delete_song("song0")
    np.testing.assert_array_equal(removed, [0, 1, 2])
    assert catalog.song("song0") is None
    assert catalog.lookup(np.array([0, 1, 2, 3])).song_ids.tolist() == [None, None, None, "song1"]
    assert catalog.counts()["songs"] == 1 and catalog.counts()["snippets"] == 2
    # row ids are never reused, even when the deleted song held the highest ones
    with catalog.transaction():
        catalog.delete_song("song1")
    assert catalog.next_row_id() == 5
    np.testing.assert_array_equal(insert(catalog, song(2), 1), [5])


def test_set_labels(catalog):
    insert(catalog, song(0, ("rock",)), 1)
    with catalog.transaction():
        catalog.set_labels("song0", ("jazz", "live"))
    assert catalog.song("song0").labels == ("jazz", "live")
    assert catalog.counts()["labels"] == {"jazz": 1, "live": 1}


def test_transaction_rollback_leaves_nothing(catalog):
    insert(catalog, song(0), 2)
    before = (catalog.counts(), catalog.next_row_id(), catalog.get_meta("next_row_id"))
    with pytest.raises(RuntimeError):
        with catalog.transaction():
            catalog.insert_song(song(1, ("jazz",)), np.arange(4, dtype=np.float32), catalog.next_row_id(), NOW)
            catalog.delete_song("song0")
            raise RuntimeError("crash mid-commit")
    assert (catalog.counts(), catalog.next_row_id(), catalog.get_meta("next_row_id")) == before
    assert catalog.song("song1") is None and catalog.song("song0") is not None
    assert catalog.lookup(np.array([2, 3, 4, 5])).song_ids.tolist() == [None] * 4


def test_reopen_keeps_data(tmp_path):
    path = tmp_path / "catalog.sqlite"
    c = Catalog(path)
    insert(c, song(0), 2)
    c.set_meta("model_id", "m1")
    c.close()
    c = Catalog(path)
    try:
        assert c.song("song0").n_snippets == 2
        assert c.get_meta("model_id") == "m1"
        assert c.get_meta("missing", "fallback") == "fallback"
    finally:
        c.close()


def test_spectrogram_is_kept_in_steps_and_goes_with_its_song(catalog):
    from tuneprint.index.catalog import RANGE_DB, SILENCE_DB, STEP_DB, TIME_POOL

    insert(catalog, song(0), 2)
    S_db = np.random.default_rng(0).uniform(-40, 30, size=(14, 321)).astype(np.float32)
    S_db[:, 100:120] = -80.0  # a quiet passage, far below the range
    assert catalog.spectrogram("song0") is None
    with catalog.transaction():
        catalog.put_spectrogram("song0", S_db)
    back = catalog.spectrogram("song0")
    assert back.shape == (14, 321) and back.dtype == np.float32
    relative = S_db - S_db.max()
    padded = np.pad(relative, ((0, 0), (0, -321 % TIME_POOL)), mode="edge")
    pooled = np.maximum.reduceat(padded, np.arange(0, padded.shape[1], TIME_POOL), axis=1)
    expected = np.repeat(pooled, TIME_POOL, axis=1)[:, :321]
    kept = expected >= -RANGE_DB + STEP_DB / 2
    assert np.abs(back - expected)[kept].max() <= STEP_DB / 2 + 1e-4  # each group of frames' loudest cell, to a step
    assert np.all(back[:, 102:117] == SILENCE_DB)  # silence stays silence, not a floor that would look loud
    with catalog.transaction():
        catalog.delete_song("song0")
    assert catalog.spectrogram("song0") is None


def test_a_float16_spectrogram_of_an_earlier_version_is_read_as_it_is(catalog):
    insert(catalog, song(0), 2)
    S_db = np.random.default_rng(0).uniform(-100, 30, size=(64, 100)).astype(np.float32)
    with catalog.transaction():
        catalog.db["spectra"].insert({"song_id": "song0", "n_mels": 64, "frames": 100,
                                      "data": S_db.astype("<f2").tobytes(), "format": None})
    np.testing.assert_allclose(catalog.spectrogram("song0"), S_db, atol=0.07)


def test_a_catalog_made_before_spectra_gets_the_table(tmp_path):
    c = Catalog(tmp_path / "catalog.sqlite")
    c.db["spectra"].drop()
    c.close()
    c = Catalog(tmp_path / "catalog.sqlite")
    assert "spectra" in c.db.table_names() and c.spectrogram("any") is None
    c.close()


def test_tags_beside_labels_and_a_version_1_catalog_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)  # the schema of version 1: labels only, keyed (song_id, label)
    conn.executescript("""
        CREATE TABLE songs (song_id TEXT PRIMARY KEY, path TEXT, title TEXT, artist TEXT, duration_s FLOAT,
                            audio_hash TEXT, added_at TEXT);
        CREATE TABLE labels (song_id TEXT REFERENCES songs(song_id), label TEXT, PRIMARY KEY (song_id, label));
        CREATE TABLE snippets (row_id INTEGER PRIMARY KEY, song_id TEXT REFERENCES songs(song_id), offset_s FLOAT);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO songs VALUES ('a', '/a.wav', 'A', NULL, 10.0, 'ha', 'then');
        INSERT INTO labels VALUES ('a', 'rock'), ('a', 'live');
    """)
    conn.commit()
    conn.close()
    old = Catalog(path, read_only=True)  # cannot be migrated: read as labels only
    assert old.song("a").labels == ("live", "rock") and old.song("a").tags == () and old.tag_counts() == {}
    old.close()

    catalog = Catalog(path)
    assert catalog.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert catalog.song("a").labels == ("live", "rock") and catalog.song("a").tags == ()
    with catalog.transaction():
        catalog.set_labels("a", ("rock", "calm"), kind="tag")  # a name may be a label and a tag at once
    insert(catalog, Song("b", "/b.wav", "B", None, 5.0, "hb", ("jazz",), tags=("piano",)), 2)
    assert catalog.song("a").tags == ("calm", "rock") and catalog.song("a").labels == ("live", "rock")
    assert catalog.song("b").to_dict()["tags"] == ["piano"]
    assert catalog.counts()["labels"] == {"jazz": 1, "live": 1, "rock": 1}  # tags are not labels
    assert catalog.tag_counts() == {"calm": 1, "piano": 1, "rock": 1}
    assert catalog.lookup(np.array([0, 1])).labels == {"b": ("jazz",)}
    catalog.close()


def test_a_version_2_catalog_keeps_its_snippets_as_runs(tmp_path):
    path = tmp_path / "v2.sqlite"
    conn = sqlite3.connect(path)  # schema version 2: one row per snippet
    conn.executescript("""
        CREATE TABLE songs (song_id TEXT PRIMARY KEY, path TEXT, title TEXT, artist TEXT, duration_s FLOAT,
                            audio_hash TEXT, added_at TEXT);
        CREATE TABLE labels (song_id TEXT REFERENCES songs(song_id), kind TEXT, label TEXT,
                             PRIMARY KEY (song_id, kind, label));
        CREATE TABLE snippets (row_id INTEGER PRIMARY KEY, song_id TEXT REFERENCES songs(song_id), offset_s FLOAT);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '2');
        INSERT INTO songs VALUES ('a', '/a.wav', 'A', NULL, 10.0, 'ha', 'then'), ('b', '/b.wav', 'B', NULL, 5.0, 'hb', 'then');
        INSERT INTO labels VALUES ('a', 'label', 'rock');
        INSERT INTO snippets VALUES (0, 'a', 0.0), (1, 'a', 0.5), (2, 'a', 1.25), (3, 'b', 0.0), (4, 'b', 0.5);
    """)
    conn.commit()
    conn.close()
    old = Catalog(path, read_only=True)  # not converted: read through the old table
    info = old.lookup(np.array([[2, 4], [-1, 9]]))
    assert info.song_ids.tolist() == [["a", "b"], [None, None]] and info.offsets_s[0].tolist() == [1.25, 0.5]
    assert old.song("a").n_snippets == 3 and old.counts()["snippets"] == 5
    old.close()

    catalog = Catalog(path)
    assert catalog.get_meta("schema_version") == str(SCHEMA_VERSION) and "snippets" not in catalog.db.table_names()
    info = catalog.lookup(np.array([[2, 4], [-1, 9]]))
    assert info.song_ids.tolist() == [["a", "b"], [None, None]] and info.offsets_s[0].tolist() == [1.25, 0.5]
    assert info.labels == {"a": ("rock",), "b": ()}
    assert catalog.row_ids("a").tolist() == [0, 1, 2] and catalog.row_ids().tolist() == [0, 1, 2, 3, 4]
    assert catalog.next_row_id() == 5 and catalog.song("b").n_snippets == 2
    catalog.close()
