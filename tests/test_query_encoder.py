"""Clips shorter than a patch (encoder/short.py) and an "unknown" that holds as a library grows (index/vote.py)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.conftest import N_SONGS, SR, TEST_MODEL, cut, synth_song
from tuneprint.encoder.checkpoint import load_model
from tuneprint.encoder.features import FeatureConfig, log_mel
from tuneprint.encoder.query_encoder import DEFAULT_QUERY, crop_views, load_query_encoder, short_patches
from tuneprint.errors import MismatchError
from tuneprint.index.vote import SongVote, VoteConfig, decide, unknown_reason
from tuneprint.server.answers import confidence

FEATURES = FeatureConfig()
OUTSIDER_SEEDS = range(100, 120)


# -- partial patches --------------------------------------------------------------------------
def test_a_short_clip_is_placed_across_the_patch_and_its_offsets_say_where_the_patch_starts():
    S_db = log_mel(cut(synth_song(1), 4.0, 1.0), FEATURES)  # ≈22 frames
    patches, offsets = short_patches(S_db, FEATURES)
    assert patches.shape[1:] == (FEATURES.n_mels, FEATURES.patch_frames) and len(patches) == 5
    assert np.all(offsets <= FEATURES.frame_seconds + 1e-6) and offsets.min() < -1.5  # last placement: flush right
    for patch, offset in zip(patches, offsets):
        frames = np.flatnonzero(patch.max(axis=0) > 0)
        # the clip's frame 1 (its first whole frame) sits at patch frame -offset / frame_s
        assert frames[0] == pytest.approx(1 - offset / FEATURES.frame_seconds, abs=1)
        assert len(frames) <= S_db.shape[1] and patch.max() == pytest.approx(1.0)
    assert np.all(patches[0][:, S_db.shape[1] :] == 0)  # masked outside the clip


def test_training_crops_keep_a_stretch_levelled_to_its_own_peak():
    views = torch.rand(3, 1, 64, 64) * 0.5
    out = crop_views(views, torch.tensor([20, 30, 64]), torch.tensor([0, 34, 0]))
    assert torch.all(out[0, ..., 20:] == 0) and torch.all(out[1, ..., :34] == 0)
    assert torch.allclose(out.amax(dim=(1, 2, 3)), torch.ones(3))
    assert torch.allclose(out[2], (views[2] + 1 - views[2].max()).clamp(0, 1))  # whole: only levelled


@pytest.mark.skipif(not DEFAULT_QUERY.is_file(), reason="no query encoder is shipped")
def test_the_short_clip_encoder_refuses_another_fingerprint_encoder():
    model = load_model(TEST_MODEL)
    with pytest.raises(MismatchError, match="trained against"):
        load_query_encoder(model.net, "sha256:0000000000000000")


# -- 1-s clips in a generated library -------------------------------------------------------------
@pytest.mark.skipif(TEST_MODEL != "default" or not DEFAULT_QUERY.is_file(), reason="the shipped encoders answer 1-s clips")
def test_one_second_clips_of_added_songs_are_identified_and_of_others_unknown(library, song_dir):
    """Padded with silence and searched with the fingerprint, none of these 1-s clips is identified; the
    query encoder identifies half of them (10 of 20 when written), and no clip gets a wrong song."""
    right, wrong = 0, []
    for i in range(N_SONGS):
        for start in (3.3, 11.7):
            answer = library.identify(cut(synth_song(i), start, 1.0))
            assert answer.clip_s == pytest.approx(1.0, abs=0.05)
            if answer.match is not None and answer.match.song.title == f"song{i:02d}":
                right += 1
                assert answer.match.vote.offset_s == pytest.approx(start, abs=1.0)
            elif answer.match is not None:
                wrong.append((i, start, answer.match.song.title))
    assert right >= 0.4 * 2 * N_SONGS, f"{right} of {2 * N_SONGS} 1-s clips identified"
    assert len(wrong) <= 1, wrong
    strangers = [library.identify(cut(synth_song(seed), 6.0, 1.0)) for seed in OUTSIDER_SEEDS]
    accepted = [a.match.song.title for a in strangers if a.match is not None]
    assert len(accepted) <= 2, accepted
    assert {a.reason for a in strangers if a.match is None} <= {"no_match", "ambiguous", "not_music"}


# -- "unknown" against library size ---------------------------------------------------------------
def _stranger_votes(rng: np.random.Generator, songs: int) -> list[SongVote]:
    """The three best-verified songs of a clip from outside a library of ``songs``: every song is an
    impostor whose evidence is a draw from one distribution, so the best of them rises with ``songs``."""
    evidence = np.sort(rng.normal(0.55, 0.06, songs))[::-1][:3]
    return [SongVote(f"s{j}", 1, 0.3, float(e), 0.0, 0.5, verified=0.0) for j, e in enumerate(evidence)]


def test_the_lead_over_the_runner_up_keeps_the_false_accept_rate_as_the_library_grows():
    bar_only = VoteConfig(verify_top=3, verify_weight=0.2, min_evidence=0.7)
    with_lead = replace(bar_only, min_lead=0.05)
    rates = {}
    for songs in (30, 100, 300, 1000):
        rng = np.random.default_rng(songs)
        trials = [_stranger_votes(rng, songs) for _ in range(3000)]
        rates[songs] = {name: np.mean([decide(v, cfg) is not None for v in trials])
                        for name, cfg in (("bar", bar_only), ("lead", with_lead))}
    assert rates[1000]["bar"] > 5 * max(rates[30]["bar"], 0.01)  # a fixed bar lets ever more strangers in
    assert max(r["lead"] for r in rates.values()) <= rates[30]["lead"] + 0.01, rates  # the lead holds
    near = [SongVote("a", 1, 0.5, 0.8, 0.0, 0.5, verified=0.0), SongVote("b", 1, 0.5, 0.78, 0.0, 0.5, verified=0.0)]
    assert decide(near, with_lead) is None and unknown_reason(near, with_lead) == "ambiguous"


def test_short_clips_have_bars_of_their_own():
    cfg = VoteConfig(verify_top=3, verify_weight=0.2, min_evidence=0.7, min_lead=0.0,
                     short_bars=((1.0, 0.8, 0.1), (2.0, 0.75, 0.05), (2.97, 0.7, 0.0)))
    vote = [SongVote("a", 1, 0.5, 0.77, 0.0, 0.5, verified=0.0)]
    assert decide(vote, cfg, clip_s=3.0) is not None and decide(vote, cfg) is not None
    assert decide(vote, cfg, clip_s=1.0) is None and unknown_reason(vote, cfg, clip_s=1.0) == "no_match"
    assert cfg.bars_for(1, 1.5) == pytest.approx((0.775, 0.075))
    assert decide(vote, cfg, clip_s=2.5) is not None  # 0.7 + 0.05 · 0.47 / 0.97 ≈ 0.724 and a lead of ≈0.024


def test_a_learnt_line_trades_evidence_against_the_lead():
    # score = bias + 10 · similarity − 8 · the next verified song's similarity (the other weights 0)
    cfg = VoteConfig(verify_top=3, verify_weight=0.2, min_evidence=9.0,  # bars that would refuse everything
                     score_rule=((1.0, -4.0, 10, 0, 0, 0, -8, 0), (3.0, -2.6, 10, 0, 0, 0, -8, 0)))
    vote = lambda song, sim: SongVote(song, 1, 0.5, sim, 0.0, 0.5, verified=0.0)
    far_ahead = [vote("a", 0.7), vote("b", 0.5)]  # 7 − 4 = 3 ≥ 2.6
    barely_ahead = [vote("a", 0.8), vote("b", 0.78)]  # 8 − 6.24 < 2.6, though more evidence
    assert decide(far_ahead, cfg, 3.0) is far_ahead[0]
    assert decide(barely_ahead, cfg, 3.0) is None and unknown_reason(barely_ahead, cfg, 3.0) == "ambiguous"
    weak = [vote("a", 0.2)]
    assert decide(weak, cfg, 3.0) is None and unknown_reason(weak, cfg, 3.0) == "no_match"
    assert cfg.score_line(2.0)[0] == pytest.approx(-3.3) and cfg.score_line(None)[0] == pytest.approx(-2.6)
    assert decide(far_ahead, cfg, 1.0) is None  # a 1-s clip's line asks for more: 3 < 4
    assert decide(far_ahead, cfg, 10.0) is far_ahead[0]  # longer than the last point: its line
    assert confidence(far_ahead[0], cfg, 3.0, far_ahead[1:]) == pytest.approx(1 / (1 + np.exp(-0.4)))
    assert confidence(barely_ahead[0], cfg, 3.0, barely_ahead[1:]) < 0.5
    assert confidence(far_ahead[0], cfg, 3.0) > confidence(far_ahead[0], cfg, 3.0, far_ahead[1:])  # alone: surer
    strangers = {songs: [_stranger_votes(np.random.default_rng(songs), songs) for _ in range(3000)]
                 for songs in (30, 1000)}
    lead_line = replace(cfg, score_rule=((3.0, -1.0, 10, 0, 0, 0, -10, 0),))  # a lead of 0.1 on similarity
    rates = {n: np.mean([decide(v, lead_line, 3.0) is not None for v in t]) for n, t in strangers.items()}
    assert rates[1000] <= rates[30] + 0.01, rates


def test_the_unknown_rule_keeps_its_false_accept_rate_as_a_generated_library_grows(tmp_path):
    """Strangers' 3-s clips against a library of 8 generated songs, then of 32: the shipped rule lets no
    more of them in (within two clips of 40)."""
    from tuneprint.server.library import Library, LibrarySettings

    import soundfile as sf

    folder = tmp_path / "songs"
    folder.mkdir()
    paths = []
    for seed in range(200, 232):
        paths.append(folder / f"gen{seed}.wav")
        sf.write(paths[-1], synth_song(seed, seconds=12.0), SR)
    clips = [cut(synth_song(seed), start, 3.0) for seed in OUTSIDER_SEEDS for start in (2.0, 9.0)]
    with Library.create(tmp_path / "lib", LibrarySettings(model=TEST_MODEL)) as lib:
        accepted = {}
        for size, batch in ((8, paths[:8]), (32, paths[8:])):
            lib.add(batch)
            assert lib.catalog.song_count() == size
            accepted[size] = sum(lib.identify(c).match is not None for c in clips)
    assert accepted[32] <= accepted[8] + 2, accepted
