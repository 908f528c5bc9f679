"""server/library.py, the Python API, on the session library of 10 generated songs (tests/conftest.py).

The identification tests state what a working encoder must do; they are meant to fail with an
encoder that cannot tell songs apart (the untrained seeded initialisation).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import tuneprint.server.library as library_module
from tuneprint.errors import (
    LibraryError, MismatchError, NotFoundError, SilentAudioError, TooShortError, UnreadableAudioError,
)
from tuneprint.index.vectors import META_FILE, load_index
from tuneprint.server.library import Library, LibrarySettings
from tests.conftest import N_SONGS, SR, TEST_MODEL, add_noise, cut, synth_song

CLIP_S = 3.0
OFFSET_TOLERANCE_S = 0.5
UNKNOWN_SEEDS = range(100, 130)


def song_path(song_dir: Path, i: int) -> str:
    return str((song_dir / f"song{i:02d}.wav").resolve())


def clip_start(i: int) -> float:
    """A random offset for song ``i``'s clip, seeded, anywhere a full clip fits."""
    return float(np.random.default_rng(1000 + i).uniform(0.0, 20.0 - CLIP_S))


def write_clip(folder: Path, name: str, y: np.ndarray) -> Path:
    path = folder / f"{name}.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    return path


def describe(result) -> str:
    """Why an identification came out as it did: the candidates' ids, scores and offsets."""
    return json.dumps(result.to_dict()["candidates"])


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return tmp_path_factory.mktemp("clips")


# -- identification ---------------------------------------------------------------------------
@pytest.mark.parametrize("i", range(N_SONGS))
def test_identify_clean_clip(library, song_dir, clips, i):
    """The right song ranks first, at the right offset; if the answer is decided, it is that song."""
    start = clip_start(i)
    path = write_clip(clips, f"clean{i}", cut(synth_song(i), start, CLIP_S))
    result = library.identify(path)
    assert result.query == str(path.resolve())
    top = result.candidates[0]
    assert top.song.path == song_path(song_dir, i), f"song {i}: {describe(result)}"
    assert top.vote.offset_s == pytest.approx(start, abs=OFFSET_TOLERANCE_S)
    assert 0.0 < top.vote.score <= 1.0 and len(result.candidates) <= library.settings.vote.top
    assert result.match is None or result.match is top


def test_clean_clips_are_answered_not_unknown(library, clips):
    """The thresholds are calibrated on real music; on these synthetic songs at most one clean
    clip (misaligned with the stored patches by up to 0.19 s) may fall below them."""
    answered = [library.identify(write_clip(clips, f"clean{i}", cut(synth_song(i), clip_start(i), CLIP_S))).match
                for i in range(N_SONGS)]
    assert sum(m is not None for m in answered) >= N_SONGS - 1


@pytest.mark.parametrize("snr_db,min_ranked,min_answered,max_wrong", [(10, N_SONGS - 1, N_SONGS // 2, 1), (0, N_SONGS // 2, 1, 2)])
def test_identify_noisy_clips(library, song_dir, clips, snr_db, min_ranked, min_answered, max_wrong):
    """White noise over the whole band: the right song still ranks first for most clips; a
    clip that is answered is answered rightly (an honest "unknown" beats a wrong song)."""
    ranked, answered, wrong = 0, 0, []
    for i in range(N_SONGS):
        y = add_noise(cut(synth_song(i), clip_start(i), CLIP_S), snr_db, seed=i)
        result = library.identify(write_clip(clips, f"noisy{snr_db}_{i}", np.clip(y, -1, 1)))
        ranked += result.candidates[0].song.path == song_path(song_dir, i)
        if result.match is not None:
            right = result.match.song.path == song_path(song_dir, i)
            answered += right
            if not right:
                wrong.append(f"song {i}: {describe(result)}")
    assert ranked >= min_ranked, f"right song ranked first for {ranked} of {N_SONGS} clips at {snr_db} dB"
    assert answered >= min_answered, f"{answered} of {N_SONGS} clips answered rightly at {snr_db} dB"
    assert len(wrong) <= max_wrong, "\n".join(wrong)


def test_songs_not_in_library_are_unknown_at_the_floor_rate(library, clips):
    """Issue 3's floor: at least 90 % of clips of songs never added come back "unknown".

    A rate, not every clip: thresholds calibrated to reject 90 % of outsiders on real music
    let a sound-alike through now and then (30 songs of one synthesiser share instruments).
    """
    missed = []
    for seed in UNKNOWN_SEEDS:
        result = library.identify(write_clip(clips, f"unknown{seed}", cut(synth_song(seed), 5.0, CLIP_S)))
        if result.match is not None:
            missed.append(f"seed {seed}: {describe(result)}")
        else:
            assert result.to_dict()["match"] is None
    assert len(missed) <= 0.1 * len(UNKNOWN_SEEDS), "\n".join(missed)


def test_similarity_threshold_is_raised_for_a_library_larger_than_calibrated(library_path, song_dir, clips):
    """Calibrated at 2 songs, the threshold rises for these 10 (more songs, more sound-alikes)."""
    clip = write_clip(clips, "clean0", cut(synth_song(0), clip_start(0), CLIP_S))
    with Library.open(library_path) as lib:  # a private instance: its settings are changed in memory only
        loose = replace(lib.settings.vote, min_similarity=0.5, min_share=0.0, min_margin=0.0,
                        score_rule=(), landmark_min_aligned=0)  # the bars (a learnt line rises the same way:
        # test_vote), without landmarks, which would find the clip whatever the embeddings' bar
        lib.settings = replace(lib.settings, vote=loose)
        result = lib.identify(clip)
        assert result.match is not None and result.match.song.path == song_path(song_dir, 0), describe(result)
        # 0.5 + 0.5 · ln(10 / 2) ≈ 1.30: out of reach of any cosine similarity
        lib.settings = replace(lib.settings, vote=replace(loose, reference_songs=2, similarity_slope=0.5))
        assert lib.identify(clip).match is None
        assert lib.stats()["min_similarity"] == pytest.approx(0.5 + 0.5 * np.log(5), abs=1e-3)


def test_identify_bytes_upload(library, song_dir):
    import io

    buffer = io.BytesIO()
    sf.write(buffer, cut(synth_song(4), 6.0, CLIP_S), SR, format="WAV")
    result = library.identify(buffer.getvalue())
    assert result.query == "upload"
    assert result.match is not None and result.match.song.path == song_path(song_dir, 4)


@pytest.mark.parametrize("bad,error", [
    ("missing", UnreadableAudioError), ("empty", UnreadableAudioError), ("text", UnreadableAudioError),
    ("silence", SilentAudioError),
])
def test_identify_bad_input(library, tmp_path, bad, error):
    with pytest.raises(error):
        library.identify(make_bad_file(tmp_path, bad))


def test_a_clip_too_short_to_tell_is_unknown_with_the_reason(library, tmp_path):
    answer = library.identify(make_bad_file(tmp_path, "short"))
    assert answer.match is None and answer.candidates == [] and answer.reason == "too_short"
    assert 0 < answer.clip_s < library.features.min_clip_seconds
    assert answer.to_dict()["reason"] == "too_short"
    with pytest.raises(TooShortError):  # the other questions still need a clip's worth of audio
        library.similar(make_bad_file(tmp_path, "short"))


# -- similar and labels -----------------------------------------------------------------------
def test_similar_by_track_excludes_itself(library):
    songs = library.tracks()
    me = songs[3].song_id
    query, neighbours = library.similar(track=me, n=5)
    assert query == me
    ids = [n.song.song_id for n in neighbours]
    assert len(ids) == 5 and len(set(ids)) == 5 and me not in ids
    assert set(ids) <= {s.song_id for s in songs}
    scores = [n.score for n in neighbours]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    _, everyone = library.similar(track=me, n=50)
    assert len(everyone) == N_SONGS - 1  # every other song is ranked


def test_similar_by_clip_ranks_its_own_song_first(library, song_dir, clips):
    path = write_clip(clips, "similar7", cut(synth_song(7), 9.0, CLIP_S))
    query, neighbours = library.similar(path, n=3)
    assert query == str(path.resolve())
    assert neighbours[0].song.path == song_path(song_dir, 7)
    with pytest.raises(ValueError):
        library.similar(path, track=neighbours[0].song.song_id)
    with pytest.raises(NotFoundError):
        library.similar(track="no-such-song")


@pytest.mark.parametrize("i", [0, 1, 6, 9])
def test_label_vote(library, clips, i):
    path = write_clip(clips, f"label{i}", cut(synth_song(i), clip_start(i), CLIP_S))
    answer = library.label(path)
    expected = "alpha" if i % 2 == 0 else "beta"
    assert answer.label == expected, f"song {i}: {answer.top}"
    assert answer.top[0][0] == expected and len(answer.top) <= 2
    assert {label for label, _ in answer.top} <= {"alpha", "beta"}
    assert sum(share for _, share in answer.top) == pytest.approx(1.0)  # only two labels exist
    assert answer.to_dict()["top"][0][0] == expected


def test_label_excluding_the_song_itself(library, clips):
    me = next(s for s in library.tracks() if s.path.endswith("song02.wav"))
    path = write_clip(clips, "label_exclude", cut(synth_song(2), 4.0, CLIP_S))
    answer = library.label(path, exclude_song=me.song_id)
    assert answer.label in {"alpha", "beta"} and answer.top


def test_a_steady_tone_gets_no_clear_label_and_music_of_the_same_length_does(library, clips):
    t = np.arange(int(10 * SR)) / SR
    tone = library.label(write_clip(clips, "tone440", 0.3 * np.sin(2 * np.pi * 440 * t)))
    assert tone.label is None and tone.reason == "no_clear_label" and tone.to_dict()["reason"] == "no_clear_label"
    music = library.label(write_clip(clips, "music10s", cut(synth_song(3), 2.0, 10.0)))
    assert music.label == "beta" and music.reason is None


def test_stats(library, song_dir):
    stats = library.stats()
    assert stats["songs"] == N_SONGS and stats["backend"] == "faiss"
    assert stats["labels"] == {"alpha": N_SONGS // 2, "beta": N_SONGS // 2}
    assert stats["hours"] == pytest.approx(N_SONGS * 20.0 / 3600, abs=1e-3)
    assert stats["vectors"] == stats["snippets"] == sum(s.n_snippets for s in library.tracks())
    assert stats["snippets"] >= N_SONGS * 40  # ≈47 overlapping patches per 20-s song
    assert stats["index_bytes"] > 0 and stats["model_id"] == library.model_id
    # compact: 64-byte codes (+ 8-byte ids) and the verification views, not 4-KiB vectors and float16 log-mels
    assert stats["index_config"]["faiss_factory"] == "PCA128,PQ64"
    assert stats["index_bytes"] < stats["vectors"] * 100 + 200_000  # the codec file is ≈0.7 MB... of which
    minutes = stats["hours"] * 60
    assert stats["bytes_per_audio_minute"]["total"] == pytest.approx((stats["index_bytes"] + stats["catalog_bytes"]) / minutes, rel=1e-3)
    assert all(library.catalog.spectrogram(s.song_id) is not None for s in library.tracks())
    assert stats["min_similarity"] == pytest.approx(library.settings.vote.for_library(N_SONGS).min_similarity, abs=1e-4)
    assert stats["min_similarity_long"] <= stats["min_similarity"]
    assert {s.path for s in library.tracks()} == {song_path(song_dir, i) for i in range(N_SONGS)}
    song = library.song(library.tracks()[0].song_id)
    assert song.title == "song00" and song.duration_s == pytest.approx(20.0)


# -- writing ----------------------------------------------------------------------------------
def test_readding_the_same_audio_is_a_no_op(library_copy, song_dir, tmp_path):
    renamed = tmp_path / "renamed.wav"
    shutil.copy(song_dir / "song01.wav", renamed)
    as_flac = tmp_path / "song01.flac"
    y, sr = sf.read(song_dir / "song01.wav", dtype="int16")
    sf.write(as_flac, y, sr, subtype="PCM_16")  # the same samples in another container
    with Library.open(library_copy) as lib:
        before = lib.stats()
        results = lib.add([song_dir / "song01.wav", renamed, as_flac])
        assert [r.status for r in results] == ["duplicate"] * 3
        original = next(s for s in lib.tracks() if s.path == song_path(song_dir, 1))
        assert {r.song_id for r in results} == {original.song_id}
        assert lib.stats() == before
    with Library.open(library_copy) as lib:
        assert lib.stats()["songs"] == N_SONGS
        assert lib.song(original.song_id).path == song_path(song_dir, 1)  # the first path is kept


def test_same_audio_twice_in_one_call(library_copy, tmp_path):
    a = write_clip(tmp_path, "new_a", synth_song(200, seconds=6.0))
    b = tmp_path / "new_b.wav"
    shutil.copy(a, b)
    with Library.open(library_copy) as lib:
        results = lib.add([a, b], default_labels=["gamma"])
        assert [r.status for r in results] == ["added", "duplicate"]
        assert lib.stats()["songs"] == N_SONGS + 1
        assert lib.song(results[0].song_id).labels == ("gamma",)


def test_remove(library_copy, song_dir, tmp_path):
    with Library.open(library_copy) as lib:
        before = lib.stats()
        victim = next(s for s in lib.tracks() if s.path == song_path(song_dir, 5))
        rows = lib.catalog.row_ids(victim.song_id)
        assert len(rows) == victim.n_snippets > 0
        assert lib.remove(victim.song_id).song_id == victim.song_id
        after = lib.stats()
        assert after["songs"] == before["songs"] - 1
        assert after["snippets"] == after["vectors"] == before["snippets"] - victim.n_snippets
        assert not set(lib.index.ids().tolist()) & set(rows.tolist())
        assert after["labels"]["beta"] == before["labels"]["beta"] - 1
        with pytest.raises(NotFoundError):
            lib.remove(victim.song_id)
        with pytest.raises(NotFoundError):
            lib.song(victim.song_id)
    clip = write_clip(tmp_path, "removed", cut(synth_song(5), clip_start(5), CLIP_S))
    with Library.open(library_copy) as lib:  # the removal was saved
        assert lib.stats()["songs"] == before["songs"] - 1
        assert len(load_index(library_copy / "index", model_id=lib.model_id)) == after["vectors"]
        result = lib.identify(clip)
        assert result.match is None or result.match.song.song_id != victim.song_id
        assert victim.song_id not in {c.song.song_id for c in result.candidates}


def make_bad_file(folder: Path, kind: str) -> Path:
    path = folder / {"missing": "missing.wav", "empty": "empty.wav", "text": "notes.mp3",
                     "short": "blip.wav", "silence": "silence.wav"}[kind]
    if kind == "empty":
        path.touch()
    elif kind == "text":
        path.write_text("not a song, just text that happens to be named .mp3\n" * 10)
    elif kind == "short":
        sf.write(path, synth_song(300, seconds=0.2), SR)
    elif kind == "silence":
        sf.write(path, np.zeros(5 * SR, np.float32), SR)
    return path


BAD_MESSAGES = {"missing": "no such file", "empty": "empty", "text": "not a readable audio file",
                "short": "0.20 s", "silence": "silent"}


def test_bad_input_fails_clearly_and_the_rest_is_added(library_copy, tmp_path):
    good_a = write_clip(tmp_path, "good_a", synth_song(201, seconds=6.0))
    good_b = write_clip(tmp_path, "good_b", synth_song(202, seconds=6.0))
    bad = {kind: make_bad_file(tmp_path, kind) for kind in BAD_MESSAGES}
    paths = [good_a, *bad.values(), good_b]
    with Library.open(library_copy) as lib:
        before = lib.stats()
        results = lib.add(paths)
        assert [r.status for r in results] == ["added"] + ["failed"] * len(bad) + ["added"]
        for (kind, path), r in zip(bad.items(), results[1:-1]):
            assert r.path == str(path.resolve()) and r.song_id is None
            assert BAD_MESSAGES[kind] in r.error and str(path) in r.error, (kind, r.error)
        after = lib.stats()
        assert after["songs"] == before["songs"] + 2
        assert {s.path for s in lib.tracks()} >= {str(good_a.resolve()), str(good_b.resolve())}
        assert not {str(p.resolve()) for p in bad.values()} & {s.path for s in lib.tracks()}
        assert after["vectors"] == after["snippets"]


def test_only_bad_input_leaves_the_library_unchanged(library_copy, tmp_path):
    index_before = (library_copy / "index" / META_FILE).read_text()
    with Library.open(library_copy) as lib:
        before = lib.stats()
        results = lib.add([make_bad_file(tmp_path, kind) for kind in BAD_MESSAGES])
        assert {r.status for r in results} == {"failed"}
        assert lib.stats() == before
    assert (library_copy / "index" / META_FILE).read_text() == index_before


@pytest.mark.parametrize("stage", ["save_index", "insert_song"])
def test_interrupted_ingest_leaves_library_as_it_was(library_copy, tmp_path, monkeypatch, stage):
    new = write_clip(tmp_path, "new", synth_song(203, seconds=6.0))
    with Library.open(library_copy) as lib:
        before, ids_before = lib.stats(), sorted(lib.index.ids().tolist())

        def crash(*args, **kwargs):
            raise RuntimeError(f"power cut in {stage}")

        if stage == "save_index":
            monkeypatch.setattr(library_module, "save_index", crash)
        else:
            monkeypatch.setattr(lib.catalog, "insert_song", crash)
        with pytest.raises(RuntimeError, match="power cut"):
            lib.add([new])
        monkeypatch.undo()
        assert lib.stats() == before
        assert sorted(lib.index.ids().tolist()) == ids_before
    with Library.open(library_copy) as lib:  # and on disk
        assert lib.stats() == before
        assert sorted(lib.index.ids().tolist()) == sorted(lib.catalog.row_ids().tolist()) == ids_before
        assert [r.status for r in lib.add([new])] == ["added"]  # not mistaken for a duplicate
        assert lib.stats()["songs"] == before["songs"] + 1


def test_interrupted_remove_keeps_the_song(library_copy, monkeypatch):
    with Library.open(library_copy) as lib:
        before = lib.stats()
        victim = lib.tracks()[0]

        def crash(*args, **kwargs):
            raise RuntimeError("power cut")

        monkeypatch.setattr(library_module, "save_index", crash)
        with pytest.raises(RuntimeError):
            lib.remove(victim.song_id)
        monkeypatch.undo()
        assert lib.stats() == before
        assert lib.song(victim.song_id).n_snippets == victim.n_snippets
    with Library.open(library_copy) as lib:
        assert lib.stats() == before


def test_vectors_of_an_uncommitted_ingest_are_dropped_on_open(library_copy, song_dir):
    """A crash after the index was saved but before the catalog committed leaves extra vectors."""
    with Library.open(library_copy) as lib:
        before = lib.stats()
        extra_ids = np.array([10_000_000, 10_000_001])
        lib.index.add(extra_ids, lib.index.vectors(lib.index.ids()[:2]))
        library_module.save_index(lib.index, library_copy / "index", model_id=lib.model_id)
    with Library.open(library_copy) as lib:
        after = lib.stats()
        # the index file sizes move (an appended segment, a list of removed ids); nothing else does
        ignore = ("index_bytes", "bytes_per_audio_minute")
        assert {k: v for k, v in after.items() if k not in ignore} == {k: v for k, v in before.items() if k not in ignore}
        assert not set(extra_ids.tolist()) & set(lib.index.ids().tolist())


def test_reopening_with_another_encoder_is_refused(library_copy):
    meta_path = library_copy / "index" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "model_id": "sha256:someotherencoder"}))
    with pytest.raises(MismatchError, match="someotherencoder"):
        Library.open(library_copy)
    meta_path.write_text(json.dumps(meta))
    Library.open(library_copy).close()

    import sqlite3

    with sqlite3.connect(library_copy / "catalog.sqlite") as conn:
        conn.execute("UPDATE meta SET value = 'seeded:1:deadbeef' WHERE key = 'model_id'")
    with pytest.raises(MismatchError, match="reindex"):
        Library.open(library_copy)


def test_index_missing_catalog_rows_is_refused(library_copy):
    with Library.open(library_copy) as lib:
        lib.index.remove(lib.index.ids()[:5])
        library_module.save_index(lib.index, library_copy / "index", model_id=lib.model_id)
    with pytest.raises(MismatchError, match="lacks 5 snippets"):
        Library.open(library_copy)


def test_create_and_open_refusals(library_path, tmp_path):
    with pytest.raises(LibraryError, match="already exists"):
        Library.create(library_path, LibrarySettings(model=TEST_MODEL))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    with pytest.raises(LibraryError, match="not empty"):
        Library.create(tmp_path / "busy", LibrarySettings(model=TEST_MODEL))
    with pytest.raises(LibraryError, match="not a tuneprint library"):
        Library.open(tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="unknown index backend"):
        from tuneprint.index.vectors import IndexConfig

        Library.create(tmp_path / "new", LibrarySettings(model=TEST_MODEL, index=IndexConfig(backend="nope")))
    assert not (tmp_path / "new").exists()


def test_annoy_library_end_to_end(song_dir, tmp_path):
    from tuneprint.index.vectors import IndexConfig

    files = [song_dir / f"song{i:02d}.wav" for i in (0, 1, 2)]
    root = tmp_path / "annoy-lib"
    with Library.create(root, LibrarySettings(model=TEST_MODEL, index=IndexConfig(backend="annoy"))) as lib:
        assert [r.status for r in lib.add(files, default_labels=["x"])] == ["added"] * 3
    clip = write_clip(tmp_path, "annoy_clip", cut(synth_song(1), 11.0, CLIP_S))
    with Library.open(root) as lib:
        stats = lib.stats()
        assert stats["backend"] == "annoy" and stats["songs"] == 3 and stats["vectors"] == stats["snippets"]
        assert (root / "index" / "forest.ann").is_file()
        result = lib.identify(clip)
        assert result.match is not None and result.match.song.path == song_path(song_dir, 1), describe(result)
        assert result.match.vote.offset_s == pytest.approx(11.0, abs=OFFSET_TOLERANCE_S)
        assert lib.label(clip).label == "x"
        lib.remove(result.match.song.song_id)
    with Library.open(root) as lib:
        assert lib.stats()["songs"] == 2
        result = lib.identify(clip)
        assert result.match is None or result.match.song.path != song_path(song_dir, 1)


def test_reindex_recovers_a_refused_library(tmp_path):
    """The way out of a MismatchError: reindex re-embeds every song with the library's encoder."""
    import sqlite3

    files = [write_clip(tmp_path, f"short{i}", synth_song(500 + i, seconds=6.0)) for i in range(2)]
    clip = write_clip(tmp_path, "clip", cut(synth_song(501), 1.0, CLIP_S))
    root = tmp_path / "lib"
    with Library.create(root, LibrarySettings(model=TEST_MODEL)) as lib:
        lib.add(files, default_labels=["x"])
        before, answer = lib.stats(), lib.identify(clip).to_dict()
    with sqlite3.connect(root / "catalog.sqlite") as conn:
        conn.execute("UPDATE meta SET value = 'an-older-encoder' WHERE key = 'model_id'")
    with pytest.raises(MismatchError):
        Library.open(root)
    with Library.open(root, check_model=False) as lib:
        assert lib.reindex() == 2
    with Library.open(root) as lib:
        after = lib.stats()
        assert {k: after[k] for k in ("songs", "snippets", "vectors", "labels")} == \
               {k: before[k] for k in ("songs", "snippets", "vectors", "labels")}
        assert lib.identify(clip).to_dict() == answer  # the same encoder gives the same answer


def test_reindex_turns_an_exact_library_compact(tmp_path, capsys):
    """A library made with exact vectors (as before compact codes) is re-encoded by
    `tuneprint reindex --faiss-factory`, answers the same, and keeps the codec in its settings."""
    from tuneprint.index.vectors import IndexConfig
    from tuneprint.server.cli import main

    files = [write_clip(tmp_path, f"song{i}", synth_song(520 + i, seconds=8.0)) for i in range(2)]
    clip = write_clip(tmp_path, "clip", cut(synth_song(521, seconds=8.0), 2.0, CLIP_S))
    root = tmp_path / "lib"
    with Library.create(root, LibrarySettings(model=TEST_MODEL, index=IndexConfig(faiss_factory="Flat"))) as lib:
        lib.add(files)
        exact_bytes, answer = lib.stats()["index_bytes"], lib.identify(clip)
    assert main(["reindex", "--library", str(root), "--faiss-factory", "PCA128,PQ64"]) == 0
    with Library.open(root) as lib:
        stats = lib.stats()
        assert stats["index_config"]["faiss_factory"] == "PCA128,PQ64" and stats["vectors"] == stats["snippets"]
        assert stats["index_bytes"] < exact_bytes / 10
        assert lib.identify(clip).match.song.song_id == answer.match.song.song_id


def test_reindex_brings_the_encoders_calibrated_thresholds(tmp_path):
    """Thresholds stored for an older encoder are replaced by those calibrated for the current one."""
    root = tmp_path / "lib"
    with Library.create(root, LibrarySettings(model=TEST_MODEL)) as lib:
        lib.add([write_clip(tmp_path, "short", synth_song(510, seconds=6.0))])
        calibrated = lib.model_vote
    if calibrated is None:
        pytest.skip(f"the test encoder {TEST_MODEL!r} carries no calibration")
    settings = json.loads((root / "settings.json").read_text())
    settings["vote"].update(min_similarity=0.123, reference_songs=0, similarity_slope=0.0)  # an older encoder's
    (root / "settings.json").write_text(json.dumps(settings))
    with Library.open(root) as lib:
        assert lib.settings.vote.min_similarity == 0.123
        lib.reindex()
    with Library.open(root) as lib:
        assert lib.settings.vote == calibrated


# -- spectral verification ----------------------------------------------------------------------
VERIFYING = dict(verify_top=3, verify_weight=0.5, min_share=0.0, min_margin=0.0, score_rule=())  # the evidence bar decides


def test_every_added_song_keeps_its_verification_view(library, song_dir):
    from tuneprint.encoder.audio import load_audio
    from tuneprint.encoder.features import log_mel
    from tuneprint.index.catalog import RANGE_DB, SILENCE_DB, STEP_DB
    from tuneprint.index.verify import verification_view

    for song in library.tracks():
        S_db = library.catalog.spectrogram(song.song_id)
        view = verification_view(log_mel(load_audio(song.path, sr=SR), library.features), library.features)
        assert S_db is not None and S_db.shape == view.shape
        # each frame pair's louder cell in steps, relative to the loudest: never much below the frame's own
        kept = view - view.max() > -RANGE_DB + STEP_DB
        assert np.all(S_db[kept] >= (view - view.max())[kept] - STEP_DB / 2 - 1e-3) and S_db.min() >= SILENCE_DB


def test_verification_reports_how_much_of_the_clip_each_candidate_explains(library_path, song_dir, clips):
    clip = write_clip(clips, "noisy_verify", np.clip(add_noise(cut(synth_song(4), clip_start(4), CLIP_S), 0.0, 4), -1, 1))
    with Library.open(library_path) as lib:
        lib.settings = replace(lib.settings, vote=replace(lib.settings.vote, **VERIFYING, min_evidence=0.0))
        result = lib.identify(clip)
        answer = result.to_dict()
        assert result.match is not None and result.match.song.path == song_path(song_dir, 4), describe(result)
        checked = [c["verified"] for c in answer["candidates"]]
        assert all(v is not None and 0.0 <= v <= 1.0 for v in checked)
        assert answer["match"]["verified"] == checked[0] == max(checked)  # the best-explained song answers
        # an evidence bar above similarity + weight (both at most 1) rejects every clip
        lib.settings = replace(lib.settings, vote=replace(lib.settings.vote, min_evidence=1.6))
        assert lib.identify(clip).match is None


def test_outsiders_stay_unknown_with_verification_calibrated_as_shipped(library, clips):
    """With the shipped thresholds (verification on, if the encoder was calibrated with it), clips of
    songs not in the library come back "unknown" at the project's floor rate, as without it."""
    if not library.settings.vote.verifies:
        pytest.skip("the encoder under test was not calibrated with verification")
    unknown = sum(library.identify(write_clip(clips, f"unknown{s}", cut(synth_song(s), 5.0, CLIP_S))).match is None
                  for s in UNKNOWN_SEEDS)
    assert unknown >= 0.9 * len(UNKNOWN_SEEDS)


def test_a_library_made_before_verification_gets_its_spectrograms_when_opened(library_copy, song_dir, clips):
    """Opening stores what an older library lacks, so that queries only read."""
    with Library.open(library_copy) as lib:
        with lib.catalog.transaction():
            lib.catalog.db.execute("DELETE FROM spectra")
    with Library.open(library_copy) as lib:
        assert lib.catalog.songs_without_spectrogram() == []
        lib.settings = replace(lib.settings, vote=replace(lib.settings.vote, **VERIFYING, min_evidence=0.0))
        clip = write_clip(clips, "clean_ondemand", cut(synth_song(2), clip_start(2), CLIP_S))
        result = lib.identify(clip)
        assert result.match.song.path == song_path(song_dir, 2) and result.match.vote.verified > 0.8


def test_a_song_whose_file_is_gone_is_judged_without_verification(library_copy, song_dir, clips, tmp_path):
    """No spectrogram stored and its file moved away: the clip is judged by similarity, not by the bonus
    of the songs that could be checked."""
    with Library.open(library_copy) as lib:
        target = next(s for s in lib.tracks() if s.path == song_path(song_dir, 3))
        with lib.catalog.transaction():
            lib.catalog.db.execute("DELETE FROM spectra WHERE song_id = ?", [target.song_id])
            lib.catalog.db.execute("UPDATE songs SET path = ? WHERE song_id = ?", [str(tmp_path / "gone.wav"), target.song_id])
    with Library.open(library_copy) as lib:  # cannot store the spectrogram: the file is gone
        lib.settings = replace(lib.settings, vote=replace(lib.settings.vote, **VERIFYING, min_evidence=0.0))
        result = lib.identify(write_clip(clips, "clean_gone", cut(synth_song(3), clip_start(3), CLIP_S)))
        top = result.candidates[0]
        assert top.song.song_id == target.song_id and top.vote.verified is None
        assert result.match is None or result.match is top


# -- ingest in worker processes, opening without the encoder, answer fields ---------------------
def test_add_in_worker_processes_builds_the_same_library(library, song_dir, tmp_path):
    """jobs=2 decodes and embeds in two processes; songs, snippets and vectors match the serial library's."""
    files = sorted(song_dir.glob("*.wav"))[:4]
    with Library.create(tmp_path / "parallel", LibrarySettings(model=library.settings.model)) as lib:
        results = lib.add(files + files[:1], jobs=2)
        assert [r.status for r in results] == ["added"] * 4 + ["duplicate"]
        for song in lib.tracks():
            serial = library.song(song.song_id)
            assert (song.path, song.n_snippets) == (serial.path, serial.n_snippets)
            mine, theirs = lib.catalog.row_ids(song.song_id), library.catalog.row_ids(song.song_id)
            np.testing.assert_allclose(lib.index.vectors(mine), library.index.vectors(theirs), atol=1e-5)


def test_a_library_opens_without_its_encoder_for_listing(library_path):
    """load_encoder=False: tracks and stats without the model; what needs the encoder says so."""
    with Library.open(library_path, load_encoder=False) as light, Library.open(library_path) as full:
        assert [s.song_id for s in light.tracks()] == [s.song_id for s in full.tracks()]
        assert light.stats() == full.stats()
        with pytest.raises(LibraryError, match="without its encoder"):
            light.identify(song_path(Path(full.tracks()[0].path).parent, 0))


def test_identify_answers_carry_confidence_reason_and_clip_length(library, clips):
    matched = library.identify(write_clip(clips, "conf_clean", cut(synth_song(4), clip_start(4), CLIP_S)))
    d = matched.to_dict()
    assert d["clip_s"] == pytest.approx(CLIP_S, abs=0.1)
    if matched.match is not None:
        assert d["reason"] is None and 0.5 <= d["match"]["confidence"] <= 1.0
    stranger = library.identify(write_clip(clips, "conf_stranger", cut(synth_song(UNKNOWN_SEEDS[0]), 5.0, CLIP_S)))
    if stranger.match is None:
        assert stranger.reason in ("no_match", "ambiguous")
        assert all(c["confidence"] < 0.5 for c in stranger.to_dict()["candidates"])
