"""The style embedding: one trunk, two heads; its training, its index in a library, and what uses it."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from tuneprint.encoder.checkpoint import load_model
from tuneprint.encoder.style import (StyleConfig, StyleHead, StyleModel, load_style, save_style, track_vector,
                                     trunk_forward)
from tuneprint.encoder.style_training import StyleTrainConfig, collect_statistics, contrastive_loss, fit_style_head
from tuneprint.errors import MismatchError
from tuneprint.server.doctor import check
from tuneprint.server.library import Library, LibrarySettings
from tuneprint.server.style import STYLE_ID_KEY

from .conftest import SR, TEST_MODEL

SECONDS = 12.0


def styled_track(style: str, seed: int) -> np.ndarray:
    """Two synthetic 'styles', many tracks each: soft low sine chords played slowly ("pad") or
    bright, fast square-wave staccato over noise hits ("chip"). Key, tempo and notes vary per seed."""
    rng = np.random.default_rng(seed)
    n = int(SECONDS * SR)
    y = np.zeros(n)
    t_all = np.arange(n) / SR
    if style == "pad":
        beat = 60 / rng.uniform(50, 70)
        for start in np.arange(0, SECONDS, 2 * beat):
            i0 = int(start * SR)
            t = t_all[: min(int(2 * beat * SR), n - i0)]
            for midi in rng.integers(40, 60, 3):
                f = 440 * 2 ** ((midi - 69) / 12)
                y[i0 : i0 + len(t)] += 0.2 * np.sin(2 * np.pi * f * t) * np.sin(np.pi * t / t[-1])
    else:
        beat = 60 / rng.uniform(150, 180)
        for start in np.arange(0, SECONDS, beat / 2):
            i0 = int(start * SR)
            t = t_all[: min(int(beat / 4 * SR), n - i0)]
            f = 440 * 2 ** ((int(rng.integers(72, 90)) - 69) / 12)
            y[i0 : i0 + len(t)] += 0.2 * np.sign(np.sin(2 * np.pi * f * t)) * np.exp(-t * 20)
            hit = t_all[: min(int(0.05 * SR), n - i0)]
            y[i0 : i0 + len(hit)] += 0.3 * rng.standard_normal(len(hit)) * np.exp(-hit * 60)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


@pytest.fixture(scope="module")
def style_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("styles")
    files = {}
    for style in ("pad", "chip"):
        for seed in range(6):
            path = folder / f"{style}-{seed}.wav"
            sf.write(path, styled_track(style, 100 * (style == "chip") + seed), SR)
            files[path] = style
    return files


@pytest.fixture(scope="module")
def model():
    return load_model(TEST_MODEL)


@pytest.fixture(scope="module")
def trained_style(style_files, model, tmp_path_factory):
    """A small style head trained on four tracks of each style (supervised contrastive)."""
    train = [(str(p), s) for p, s in style_files.items() if int(p.stem.split("-")[1]) < 4]
    tracks = collect_statistics(train, model, hop_frames=16, augment=True)
    head, summary = fit_style_head(tracks, StyleTrainConfig(objective="both", steps=60, tracks_per_step=8,
                                                            head=StyleConfig(hidden=64, out_dim=16)))
    path = tmp_path_factory.mktemp("head") / "style.safetensors"
    save_style(path, StyleModel(model.model_id, head, summary))
    return path


def test_trunk_forward_gives_the_fingerprint_and_statistics(model):
    x = torch.rand(3, 1, 64, 64)
    with torch.inference_mode():
        embedding, stats = trunk_forward(model.net, x)
        assert torch.equal(embedding, model.net.embed(x))
    assert stats.shape == (3, 2 * (64 + 128 + 256 + 512))
    assert torch.all(stats >= 0)  # every stage ends in a ReLU: means and stds are non-negative
    with torch.inference_mode():
        again, some = trunk_forward(model.net, x, torch.tensor([0, 2]))
    assert torch.equal(again, embedding) and torch.allclose(some, stats[[0, 2]], atol=1e-6)


def test_contrastive_loss_is_low_when_groups_cluster():
    groups = torch.tensor([0, 0, 1, 1])
    clustered = torch.nn.functional.normalize(torch.tensor([[1.0, 0.01], [1.0, -0.01], [0.01, 1.0], [-0.01, 1.0]]), dim=1)
    mixed = torch.nn.functional.normalize(torch.tensor([[1.0, 0.01], [0.01, 1.0], [1.0, -0.01], [-0.01, 1.0]]), dim=1)
    assert contrastive_loss(clustered, groups, 0.1) < contrastive_loss(mixed, groups, 0.1)


def test_two_styles_are_closer_within_than_across(trained_style, style_files, model):
    """Held-out tracks (never trained on) of the same synthetic style are nearer to each other."""
    style = load_style(trained_style, model.model_id)
    held_out = [(str(p), s) for p, s in style_files.items() if int(p.stem.split("-")[1]) >= 4]
    tracks = collect_statistics(held_out, model, hop_frames=16)
    vectors = np.stack([track_vector(style.vectors(t.stats.astype(np.float32))) for t in tracks])
    labels = [t.label for t in tracks]
    sims = vectors @ vectors.T
    within = [sims[i, j] for i in range(len(labels)) for j in range(i + 1, len(labels)) if labels[i] == labels[j]]
    across = [sims[i, j] for i in range(len(labels)) for j in range(len(labels)) if labels[i] != labels[j]]
    assert min(within) > max(across)


def test_style_head_file_round_trips_and_names_its_encoder(trained_style, model, tmp_path):
    style = load_style(trained_style, model.model_id)
    x = np.random.default_rng(0).random((5, 1920)).astype(np.float32)
    again = load_style(trained_style)
    assert np.array_equal(style.vectors(x), again.vectors(x))
    assert style.style_id.startswith(model.model_id) and style.meta["config"]["objective"] == "both"
    with pytest.raises(MismatchError, match="train --style"):
        load_style(trained_style, "sha256:another-encoder")


def test_fit_refuses_an_unknown_objective():
    head = StyleHead(StyleConfig(hidden=8, out_dim=4))
    assert head(torch.rand(2, 1920)).shape == (2, 4)
    with pytest.raises(ValueError, match="objective"):
        fit_style_head([], StyleTrainConfig(objective="decoder"))


@pytest.fixture()
def style_library(tmp_path, style_files, trained_style):
    lib = Library.create(tmp_path / "lib", LibrarySettings(model=TEST_MODEL, style=str(trained_style)))
    lib.add(list(style_files), labels={str(p): [s] for p, s in style_files.items()}, allow_non_music=True)
    lib.gate = None  # synthetic tones are not music to the gate; here the style path is under test
    yield lib
    lib.close()


def test_style_index_round_trips_through_the_catalog(style_library):
    lib = style_library
    song_ids, vectors = lib.catalog.styles()
    assert len(song_ids) == lib.catalog.song_count() == 12 and vectors.shape == (12, 16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    index = lib.style_index()
    song = lib.tracks()[0]
    assert index.search(index.vector(song.song_id), 1)[0][0] == song.song_id
    lib.remove(song.song_id)
    assert song.song_id not in lib.style_index() and lib.catalog.songs_without_style() == 0
    lib.close()
    with Library.open(lib.root) as again:
        assert np.array_equal(again.catalog.styles()[1], np.delete(vectors, song_ids.index(song.song_id), axis=0))


def test_similar_and_genre_search_the_style_index(style_library, style_files):
    lib = style_library
    pad = next(s for s in lib.tracks() if s.labels == ("pad",))
    answer = lib.similar(track=pad.song_id, n=4)
    assert answer.by == "style"
    assert [n.song.labels for n in answer.neighbours] == [("pad",)] * 4
    assert all(n.shared_labels == ("pad",) for n in answer.neighbours)
    assert pad.song_id not in {n.song.song_id for n in answer.neighbours}
    clip = styled_track("chip", 999)[: 6 * SR]  # a track of neither the library nor training
    sims = lib.similar(clip, n=3)
    assert [n.song.labels for n in sims.neighbours] == [("chip",)] * 3
    label = lib.label_embeddings(lib.embed_clip(clip))
    assert label.label == "chip" and label.by == "style"
    assert label.top[0] == ("chip", 0.6)  # all six chip tracks are among the 10 nearest of 12


def test_an_old_library_without_style_vectors_is_refused_until_reindexed(style_library):
    lib = style_library
    with lib.catalog.transaction():  # what a library made before style vectors looks like
        lib.catalog.db.execute("DELETE FROM styles")
        lib.catalog.db.execute("DELETE FROM meta WHERE key = ?", [STYLE_ID_KEY])
        lib._generation = lib.catalog.bump_generation()
    song = lib.tracks()[0]
    with pytest.raises(MismatchError, match="run `tuneprint reindex --library"):
        lib.similar(track=song.song_id)
    with pytest.raises(MismatchError, match="reindex"):
        lib.label(styled_track("pad", 5)[: 5 * SR])
    assert lib.identify(styled_track("pad", 0)[: 5 * SR]).match is not None  # identify never needs style
    assert [f.file for f in check(lib.root)] == ["styles"]  # tuneprint doctor says so, and what to do
    assert lib.reindex() == 12
    assert check(lib.root) == []
    assert lib.similar(track=song.song_id, n=2).by == "style"


def test_without_a_style_head_the_fingerprint_ranks_and_says_so(tmp_path, style_files):
    lib = Library.create(tmp_path / "lib", LibrarySettings(model=TEST_MODEL, style=str(tmp_path / "no-head.safetensors")))
    files = sorted(style_files)[:3]
    lib.add(files, labels={str(p): [style_files[p]] for p in files}, allow_non_music=True)
    lib.gate = None
    assert lib.style is None and lib.stats()["style_id"] is None
    track = lib.tracks()[0].song_id
    answer = lib.similar(track=track, n=2)
    assert answer.by == "fingerprint" and track not in {n.song.song_id for n in answer.neighbours}
    assert lib.label(styled_track("pad", 7)[: 5 * SR]).by == "fingerprint"
    lib.close()


def test_train_style_gives_the_library_its_own_head(tmp_path, style_files, capsys):
    from tuneprint.server.cli import main
    from tuneprint.server.folder import read_settings

    root = tmp_path / "lib"
    with Library.create(root, LibrarySettings(model=TEST_MODEL)) as lib:
        lib.add(sorted(style_files)[:4], allow_non_music=True)
    server = Library.open(root)  # a long-lived reader (a server) while another process trains
    before = server.style and server.style.style_id
    assert main(["train", "--library", str(root), "--style", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "style head trained (track, 4 tracks" in out and "re-embedded 4 songs" in out
    assert read_settings(root).style == "style.safetensors" and (root / "style.safetensors").is_file()
    with Library.open(root) as lib:
        assert lib.style.meta["trained_on"] == str(root)
        assert lib.catalog.get_meta(STYLE_ID_KEY) == lib.style.style_id
        lib.gate = None
        assert lib.similar(track=lib.tracks()[0].song_id, n=3).by == "style"
    assert server.refresh() and server.style.style_id != before  # takes the new head, no restart
    server.gate = None
    assert server.similar(track=server.tracks()[0].song_id, n=3).by == "style"
    server.close()
