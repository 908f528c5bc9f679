"""Landmarks (encoder/landmarks.py, index/landmarks.py): peak pairs that find a 1-s clip of a stored song."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.conftest import SR, TEST_MODEL, add_noise, cut, synth_song
from tuneprint.encoder.landmarks import DEFAULT, Landmarks, landmarks
from tuneprint.index.catalog import Catalog, Song
from tuneprint.index.landmarks import LandmarkIndex, LandmarkMatch, LandmarkRule, confidence, winner

SONGS = range(4)
RULE = LandmarkRule(min_aligned=12, min_ratio=3.0)  # generated songs share exact notes: chance pairs run higher than in music


@pytest.fixture(scope="module")
def index() -> LandmarkIndex:
    return LandmarkIndex([f"song{i}" for i in SONGS], [landmarks(synth_song(i), SR) for i in SONGS])


def test_pairs_are_packed_hashes_in_time_order():
    lm = landmarks(synth_song(0), SR)
    seconds = len(synth_song(0)) / SR
    assert 50 * seconds < len(lm) <= DEFAULT.peaks_per_s * DEFAULT.fan_out * seconds
    assert lm.hashes.dtype == np.uint32 and int(lm.hashes.max()) < 1 << 21
    assert np.all(np.diff(lm.frames) >= 0)
    assert len(landmarks(np.zeros(SR, np.float32), SR)) == 0  # silence has no peaks worth pairing
    assert len(landmarks(np.zeros(100, np.float32), SR)) == 0  # shorter than one frame


@pytest.mark.parametrize("song", SONGS)
def test_a_one_second_clip_is_found_at_its_offset(index, song):
    start = 4.37 + song  # not on a frame boundary
    found = winner(index.search(landmarks(cut(synth_song(song), start, 1.0), SR)), RULE)
    assert found is not None and found.song_id == f"song{song}"
    assert found.offset_s == pytest.approx(start, abs=2 * DEFAULT.frame_seconds)
    assert 0.5 <= confidence(found, RULE) <= 1.0


@pytest.mark.parametrize("song", SONGS)
def test_a_noisy_clip_is_still_found(index, song):
    clip = add_noise(cut(synth_song(song), 8.0, 3.0), snr_db=10.0, seed=3)  # white noise over every band
    found = winner(index.search(landmarks(clip, SR)), RULE)
    assert found is not None and found.song_id == f"song{song}"


@pytest.mark.parametrize("stranger", range(100, 106))
def test_clips_of_other_songs_have_no_winner(index, stranger):
    for start in (2.0, 9.0):
        matches = index.search(landmarks(cut(synth_song(stranger), start, 3.0), SR))
        assert winner(matches, RULE) is None


def test_the_rule_needs_enough_pairs_and_a_lead():
    def match(song, aligned):
        return LandmarkMatch(song, aligned, 0.0, 100)
    assert winner([match("a", 20), match("b", 5)], RULE).song_id == "a"
    assert winner([match("a", 11)], RULE) is None  # too few
    assert winner([match("a", 20), match("b", 7)], RULE) is None  # a runner-up too close
    assert winner([], RULE) is None
    assert confidence(match("a", 12), RULE) == pytest.approx(0.5)


def test_an_empty_index_finds_nothing():
    assert LandmarkIndex([], []).search(landmarks(synth_song(0), SR)) == []


def test_catalog_keeps_landmarks_with_the_song(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    lm = landmarks(synth_song(1), SR)
    with catalog.transaction():
        catalog.insert_song(Song("s1", "/x.wav", None, None, 30.0, "h1"), np.zeros(3, np.float32), 0, "now")
        catalog.put_landmarks("s1", lm)
    ids, stored = catalog.landmarks()
    assert ids == ["s1"]
    np.testing.assert_array_equal(stored[0].hashes, lm.hashes)
    np.testing.assert_array_equal(stored[0].frames, lm.frames)
    assert catalog.landmark_counts()[:2] == (1, len(lm))
    assert catalog.landmark_counts()[2] < 6 * len(lm)  # compressed below the raw 8 bytes a pair
    with catalog.transaction():
        catalog.delete_song("s1")
    assert catalog.landmarks() == ([], [])
    catalog.close()


def test_a_library_answers_short_clips_by_landmarks_where_embeddings_do_not(library):
    """With landmarks on, every 1-s clip of a stored song is answered with its song (by landmarks where the
    embeddings leave it "unknown"), and no stranger is answered."""
    saved = library.settings
    vote = saved.vote.for_library(library.catalog.song_count())

    def identify(clip, min_aligned):
        library.settings = replace(saved, vote=replace(vote, landmark_min_aligned=min_aligned, landmark_min_ratio=RULE.min_ratio))
        try:
            return library.identify(clip)
        finally:
            library.settings = saved
    for i in range(4):
        clip = cut(synth_song(i), 5.3 + i, 1.0)
        without, with_ = identify(clip, 0), identify(clip, RULE.min_aligned)
        assert with_.match is not None and with_.match.song.path.endswith(f"song{i:02d}.wav")
        assert with_.match.vote.offset_s == pytest.approx(5.3 + i, abs=0.5)
        if without.match is None:
            assert with_.match.by == "landmarks" and with_.match.landmarks.aligned >= RULE.min_aligned
            assert with_.to_dict()["match"]["landmarks"]["aligned"] == with_.match.landmarks.aligned
        else:
            assert with_.match.by == "embedding" and with_.to_dict()["match"]["landmarks"] is None
    for stranger in (100, 101):
        assert identify(cut(synth_song(stranger), 4.0, 1.0), RULE.min_aligned).match is None


def test_a_library_made_without_landmarks_keeps_none(tmp_path, song_dir):
    from tuneprint.server.library import Library, LibrarySettings

    files = sorted(song_dir.glob("*.wav"))[:2]
    with Library.create(tmp_path / "without", LibrarySettings(model=TEST_MODEL, landmarks=False)) as lib:
        lib.add(files)
        assert lib.catalog.landmark_counts() == (0, 0, 0)
        assert lib.stats()["landmarks"]["enabled"] is False and lib.stats()["landmarks"]["min_aligned"] == 0
    with Library.create(tmp_path / "with", LibrarySettings(model=TEST_MODEL)) as lib:
        lib.add(files)
        songs, pairs, _ = lib.catalog.landmark_counts()
        assert songs == 2 and pairs > 0 and lib.stats()["landmarks"]["pairs"] == pairs
        lib.remove(lib.tracks()[0].song_id)
        assert lib.catalog.landmark_counts()[0] == 1


def test_saved_answers_are_rejudged_with_landmarks_and_the_bars_chosen_without_added_errors():
    from tuneprint.index.vote import VoteConfig
    from tuneprint.server.evaluation.sizes import ClipAnswer, choose_landmark_rule, rejudge

    def clip(member, truth, aligned, runner_up):
        return ClipAnswer(member, 1.0, "clean", truth, None, "no_match", [],
                          [{"song_id": truth or "x", "aligned": aligned, "offset_s": 0.0, "pairs": 300},
                           {"song_id": "y", "aligned": runner_up, "offset_s": 0.0, "pairs": 300}])
    answers = [clip(True, "a", 30, 2), clip(True, "b", 14, 3), clip(False, None, 10, 2)]  # a stranger: 10 pairs
    judged = rejudge(answers, VoteConfig(landmark_min_aligned=12, landmark_min_ratio=2.0))
    assert [a.answer for a in judged] == ["a", "b", None] and judged[2].reason == "no_match"
    assert [a.answer for a in rejudge(answers, VoteConfig())] == [None, None, None]  # bars 0: not searched
    chosen = choose_landmark_rule({100: answers}, VoteConfig(), grid=((6, 9, 11, 16), (2.0,)))
    assert (chosen["min_aligned"], chosen["min_ratio"]) == (11, 2.0)  # 6 and 9 accept the stranger, 16 loses "b"
    assert chosen["member_hit_rate"] == 1.0 and chosen["member_hit_rate_without"] == 0.0
    assert chosen["tried"]["6 2"]["added_errors"] == 1
