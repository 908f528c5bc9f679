"""index/verify.py: a song's own spectrogram explains clips of it under added noise; others' do not."""
from __future__ import annotations

import numpy as np
import pytest

from tuneprint.encoder.augment import phone
from tuneprint.encoder.features import FeatureConfig, log_mel
from tuneprint.index.verify import VerifyConfig, band_mask, explained_share, verify
from tests.conftest import SR, add_noise, cut, synth_song

FEATURES = FeatureConfig()


@pytest.fixture(scope="module")
def songs():
    return {seed: synth_song(seed) for seed in (1, 2, 3)}


@pytest.fixture(scope="module")
def spectra(songs):
    return {seed: log_mel(y) for seed, y in songs.items()}


def tonal(n: int, seed: int = 0) -> np.ndarray:
    """A sustained harmonic tone with vibrato: the kind of interference that looks like music."""
    t = np.arange(n) / SR
    f0 = 330.0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    return sum(np.sin(h * phase) / h for h in range(1, 6)).astype(np.float32)


def mix(y: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    noise = noise * np.sqrt((y**2).mean() / ((noise**2).mean() * 10 ** (snr_db / 10)))
    return (y + noise).astype(np.float32)


def test_a_clip_of_the_song_is_explained_almost_wholly(songs, spectra):
    clip = cut(songs[1], 6.0)
    assert verify(log_mel(clip), spectra[1], 6.0, FEATURES) > 0.95


def test_the_song_explains_a_noisy_clip_better_than_other_songs_do(songs, spectra):
    for seed, noise in ((0, None), (1, tonal)):
        clip = cut(songs[1], 8.0)
        noisy = add_noise(clip, 0.0, seed) if noise is None else mix(clip, noise(len(clip)), 0.0)
        clip_db = log_mel(noisy)
        own = verify(clip_db, spectra[1], 8.0, FEATURES)
        others = [verify(clip_db, spectra[s], 8.0, FEATURES) for s in (2, 3)]
        # the view (band bins merged in pairs) leaves less margin under white noise at 0 dB than whole
        # log-mels did (0.07 against 0.1); docs/BENCHMARKS.md "Compact index" measures what it costs
        assert own > 0.3 and own > max(others) + 0.05, (own, others)


def test_a_wrong_offset_of_the_right_song_explains_little(songs, spectra):
    clip_db = log_mel(cut(songs[1], 4.0))
    right = verify(clip_db, spectra[1], 4.0, FEATURES)
    wrong = verify(clip_db, spectra[1], 14.0, FEATURES)
    assert wrong < right - 0.3


def test_the_offset_is_searched_a_few_frames_either_way(songs, spectra):
    clip_db = log_mel(cut(songs[1], 5.0))
    near = 5.0 + 6 * FEATURES.frame_seconds  # the vote's offset, six frames off
    assert verify(clip_db, spectra[1], near, FEATURES) > 0.95
    assert verify(clip_db, spectra[1], near, FEATURES, VerifyConfig(max_shift_frames=0)) < 0.9


def test_level_does_not_matter(songs, spectra):
    clip = cut(songs[2], 3.0)
    loud = verify(log_mel(clip), spectra[2], 3.0, FEATURES)
    quiet = verify(log_mel(clip * 0.01), spectra[2], 3.0, FEATURES)
    assert quiet == pytest.approx(loud, abs=0.02)


def test_a_phone_band_clip_still_verifies(songs, spectra):
    clip = phone(cut(songs[3], 7.0), SR, np.random.default_rng(0), codec="gsm")
    clip_db = log_mel(clip)
    own = verify(clip_db, spectra[3], 7.0, FEATURES)
    assert own > 0.6
    assert own > max(verify(clip_db, spectra[s], 7.0, FEATURES) for s in (1, 2)) + 0.2


def test_offsets_past_the_end_and_songs_shorter_than_the_clip_score_zero(songs, spectra):
    clip_db = log_mel(cut(songs[1], 2.0))
    assert verify(clip_db, spectra[1], 1000.0, FEATURES) == 0.0
    assert verify(clip_db, spectra[1][:, :10], 0.0, FEATURES) == 0.0


def test_explained_share_keeps_the_batch_shape_and_range(songs, spectra):
    clip_db = log_mel(cut(songs[1], 2.0))
    t = clip_db.shape[1]
    windows = np.stack([spectra[s][:, 40 : 40 + t] for s in (1, 2, 3)] * 2).reshape(2, 3, FEATURES.n_mels, t)
    shares = explained_share(clip_db, windows, band_mask(FEATURES))
    assert shares.shape == (2, 3)
    assert np.all((shares >= 0) & (shares <= 1))


def test_the_band_is_the_phone_band():
    mask = band_mask(FEATURES)
    assert 20 < mask.sum() < FEATURES.n_mels
    assert not mask[0] and not mask[-1]


class Spectra:
    """A spectrogram source (as the catalog is one) over song ids "s1", "s2", "s3"; "gone" has none."""

    def __init__(self, spectra):
        self.spectra = {f"s{seed}": S for seed, S in spectra.items()}

    def spectrogram(self, song_id):
        return self.spectra.get(song_id)


def test_verify_votes_ranks_the_song_the_clip_is_made_of_first(songs, spectra):
    from tuneprint.index.search import verify_votes
    from tuneprint.index.vote import SongVote, VoteConfig

    clip_db = log_mel(add_noise(cut(songs[1], 8.0), 0.0, 0))
    vote = lambda song, similarity: SongVote(song, 10, 0.3, similarity, 8.0, 0.5)  # noqa: E731
    votes = [vote("s2", 0.80), vote("s1", 0.78), vote("s3", 0.70)]  # the vote alone prefers s2
    cfg = VoteConfig(verify_top=3, verify_weight=0.5)
    ranked = verify_votes(votes, clip_db, Spectra(spectra), FEATURES, cfg)
    assert ranked[0].song_id == "s1" and all(v.verified is not None for v in ranked)
    assert ranked[0].verified > max(v.verified for v in ranked[1:]) + 0.05  # white noise at 0 dB (see above)
    # only the top verify_top are checked; a first song without a spectrogram leaves the vote as it is
    assert [v.verified is None for v in verify_votes(votes, clip_db, Spectra(spectra), FEATURES,
                                                     VoteConfig(verify_top=1, verify_weight=0.5))] == [False, True, True]
    unknown = [vote("gone", 0.9)] + votes
    assert verify_votes(unknown, clip_db, Spectra(spectra), FEATURES, cfg) == unknown


def test_the_stored_view_keeps_the_band_in_merged_pairs(spectra):
    from tuneprint.index.verify import VIEW_POOL, verification_view

    S = spectra[1]
    view = verification_view(S, FEATURES)
    bands = np.flatnonzero(band_mask(FEATURES))
    assert view.shape == (len(bands) // VIEW_POOL, S.shape[1])
    power = 10 ** (S[bands[:2]] / 10)
    np.testing.assert_allclose(view[0], 10 * np.log10(power.mean(axis=0)), atol=1e-3)
    assert verification_view(view, FEATURES) is view  # a view passes through
