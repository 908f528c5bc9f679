"""The music / non-music gate (server/gate.py) and what it changes in the library, the command
line and the HTTP API. Generated audio only: synthesized songs against noise, clicks, a
vowel-like buzz and a hum."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import SR, TEST_MODEL, cut, synth_song
from tuneprint.encoder.augment import colored_noise
from tuneprint.encoder.features import FeatureConfig
from tuneprint.errors import MismatchError
from tuneprint.server.gate import (DEFAULT_GATE, N_STATISTICS, Gate, gate_for, load_gate, logmel_statistics,
                                   save_gate)

SHIPPED = TEST_MODEL == "default" and DEFAULT_GATE.is_file()
needs_gate = pytest.mark.skipif(not SHIPPED, reason="the shipped gate reads the shipped encoder's embeddings")


# -- generated non-music --------------------------------------------------------------------
def white(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.3 * colored_noise(int(seconds * SR), np.random.default_rng(seed), 0.0)).astype(np.float32)


def pink(seconds: float, seed: int = 1) -> np.ndarray:
    return (0.3 * colored_noise(int(seconds * SR), np.random.default_rng(seed), 1.0)).astype(np.float32)


def clicks(seconds: float, seed: int = 2) -> np.ndarray:
    """Sharp clicks at random moments, as a keyboard or a Geiger counter."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * SR), np.float32)
    for start in rng.integers(0, len(y) - 200, size=int(6 * seconds)):
        y[start : start + 200] += rng.uniform(0.2, 0.8) * rng.standard_normal(200) * np.exp(-np.arange(200) / 30)
    return np.clip(y, -1, 1)


def vowel_buzz(seconds: float, seed: int = 3) -> np.ndarray:
    """A voice-like buzz: a gliding pulse train through formants that change every syllable."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 120 * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t) + 0.03 * rng.standard_normal() )
    phase = np.cumsum(f0) / SR
    source = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)  # one pulse per period
    formants = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480)]
    y = np.zeros(n)
    syllable = int(0.25 * SR)
    for i, start in enumerate(range(0, n, syllable)):
        seg = source[start : start + syllable]
        out = np.zeros(len(seg))
        for f in formants[rng.integers(len(formants))]:  # a damped resonance per formant, by convolution
            k = np.arange(int(0.02 * SR)) / SR
            out += np.convolve(seg, np.exp(-k * 300) * np.sin(2 * np.pi * f * k))[: len(seg)]
        y[start : start + len(seg)] = out * (i % 3 != 2)  # a pause every third syllable
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def hum(seconds: float, seed: int = 4) -> np.ndarray:
    """Quiet mains hum with a little hiss: a room with nothing playing."""
    t = np.arange(int(seconds * SR)) / SR
    y = sum(0.01 / k * np.sin(2 * np.pi * 50 * k * t) for k in range(1, 6))
    return (y + 0.001 * colored_noise(len(t), np.random.default_rng(seed), 1.0)).astype(np.float32)


NON_MUSIC = {"white noise": white, "pink noise": pink, "clicks": clicks, "vowel buzz": vowel_buzz, "hum": hum}


def write(folder: Path, name: str, y: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / name, y, SR)
    return folder / name


@pytest.fixture(scope="module")
def embedder():
    from tuneprint.encoder.checkpoint import load_model
    from tuneprint.encoder.embeddings import Embedder

    return Embedder(load_model(TEST_MODEL))


def embed(embedder, y: np.ndarray, hop_frames: int = 4):
    return embedder.embed_audio(y, hop_frames=hop_frames, pad=True)


# -- the gate itself ------------------------------------------------------------------------
def test_log_mel_statistics_have_their_size_and_ignore_volume():
    rng = np.random.default_rng(0)
    patch = rng.uniform(-60, 0, (64, 64))
    stats = logmel_statistics(patch, FeatureConfig().frame_seconds)
    assert stats.shape == (N_STATISTICS,) and np.isfinite(stats).all()
    np.testing.assert_allclose(logmel_statistics(patch - 20.0, FeatureConfig().frame_seconds), stats, atol=1e-5)
    assert np.isfinite(logmel_statistics(patch[:, :3], FeatureConfig().frame_seconds)).all()  # a short last patch


def test_a_saved_gate_loads_the_same_and_a_clip_is_the_mean_of_its_patches(tmp_path, embedder):
    rng = np.random.default_rng(1)
    d = embedder.dim + N_STATISTICS
    layers = ((rng.standard_normal((d, 4)).astype(np.float32), np.zeros(4, np.float32)),
              (rng.standard_normal((4, 1)).astype(np.float32), np.array([0.1], np.float32)))
    gate = Gate(embedder.model_id, 0.4, rng.standard_normal(d).astype(np.float32), np.ones(d, np.float32), layers,
                embedder.features, {"note": "hand-made"})
    loaded = load_gate(save_gate(tmp_path / "gate.safetensors", gate), model_id=embedder.model_id)
    emb = embed(embedder, cut(synth_song(7), 2.0, 6.0))
    assert loaded.threshold == 0.4 and loaded.meta == {"note": "hand-made"}
    np.testing.assert_allclose(loaded.patch_probabilities(emb), gate.patch_probabilities(emb), rtol=1e-5)
    assert loaded.music_probability(emb) == pytest.approx(float(gate.patch_probabilities(emb).mean()))
    assert len(gate.patch_probabilities(emb)) == len(emb.vectors) > 1


def test_training_features_are_the_features_the_gate_reads(embedder):
    """server/evaluation/gate.py keeps embeddings and log-mel frames and computes the features from
    them; they must equal what server/gate.py computes from a query's embeddings."""
    from tuneprint.server.evaluation.gate import embed_clips
    from tuneprint.server.evaluation.gate_data import GateClip
    from tuneprint.server.gate import patch_features

    clips = [GateClip(1, "music", "song", "clean", cut(synth_song(3), 2.0, 3.0)),
             GateClip(0, "sound", "short", "clean", clicks(1.5, 5))]  # shorter than a patch: padded
    data = embed_clips(clips, embedder)
    want = np.concatenate([patch_features(embed(embedder, c.samples), embedder.features) for c in clips])
    assert data.x.shape == want.shape and list(np.bincount(data.clip)) == [2, 1]
    np.testing.assert_allclose(data.x, want, atol=2e-3)  # the log-mel is kept in float16


def test_the_threshold_is_the_one_closest_to_meeting_both_floors():
    """gate.choose_threshold on validation clips: where music and sounds separate, a threshold
    between them meets both floors; where they overlap, no threshold leaves them nearer."""
    from types import SimpleNamespace

    from tuneprint.server.evaluation.gate import THRESHOLDS, choose_threshold, floor_gap

    rng = np.random.default_rng(0)
    label = np.repeat([1, 0, 0], 200)
    data = SimpleNamespace(label=label, kind=np.repeat(["music", "sound", "sequence"], 200))
    apart = np.concatenate([rng.uniform(0.6, 1.0, 200), rng.uniform(0.0, 0.3, 400)])
    t = choose_threshold(apart, data)
    assert apart[200:].max() < t <= apart[:200].min() and floor_gap(apart, data, t) == 0.0
    overlap = np.concatenate([rng.beta(5, 2, 200), rng.beta(2, 5, 400)])
    t = choose_threshold(overlap, data)
    assert floor_gap(overlap, data, t) > 1.0
    assert all(floor_gap(overlap, data, t) <= floor_gap(overlap, data, other) for other in THRESHOLDS)


def test_a_packages_short_sounds_leave_out_its_music_its_jingles_its_songs_and_repeats(tmp_path, monkeypatch):
    """gate_data.package_sounds: what a Debian package adds to the non-music, read from its unpacked
    files (the listing under raw/.extracted names them, as dpkg -c does)."""
    from tuneprint.server.evaluation import gate_data
    from tuneprint.server.evaluation.gate_data import package_sounds

    monkeypatch.setattr(gate_data, "SONG_SOUNDS", {"g-data": ("sing-",)})

    raw = tmp_path / "raw"
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    files = {"usr/share/games/g/sounds/shot.wav": tone[: SR // 2],  # a sound effect
             "usr/share/games/g/sounds/boom.wav": clicks(2.0),
             "usr/share/games/g/sounds/copy.wav": clicks(2.0),  # the same content again
             "usr/share/games/g/sounds/tick.wav": tone[: SR // 10],  # under 0.2 s
             "usr/share/games/g/sounds/sing-1.wav": tone * 0.9,  # the package plays it as a song
             "usr/share/games/g/sounds/stage1.ogg": np.tile(tone, 31),  # the package's music (≥ 30 s)
             "usr/share/games/g/sounds/jingle.ogg": np.tile(tone, 5),  # short, beside it in its format
             "usr/share/games/g/music/intro.ogg": np.tile(tone, 8)}  # short, in a music folder
    for name, y in files.items():
        write(raw / Path(name).parent, Path(name).name, y)
    listing = "\n".join(f"-rw-r--r-- root/root 1 2020-01-01 00:00 ./{name}" for name in files)
    (raw / ".extracted").mkdir()
    (raw / ".extracted" / "g-data_1.0_all.deb").write_text(listing)
    found = package_sounds(raw, "g-data", ("sounds",))
    assert sorted(f.name for f in found) in (["boom.wav", "shot.wav"], ["copy.wav", "shot.wav"])
    assert package_sounds(raw, "other-data", ("sounds",)) == []



def test_world_clips_are_everyday_sounds_and_speakers_without_instruments_or_letters(tmp_path):
    """gate_data.world_clips: the benchmark-only real recordings (Tux Paint's stamps)."""
    from tuneprint.server.evaluation.gate_data import WORLD_PACKAGE, world_clips

    raw = tmp_path / "raw"
    files = {"usr/share/tuxpaint/stamps/animals/dog.ogg": clicks(2.0),
             "usr/share/tuxpaint/stamps/animals/dog_desc_fr.ogg": clicks(1.5, seed=3),
             "usr/share/tuxpaint/stamps/animals/cat.ogg": clicks(0.5),  # shorter than any query
             "usr/share/tuxpaint/stamps/hobbies/music/violin.ogg": clicks(2.0, seed=4),
             "usr/share/tuxpaint/stamps/symbols/a_desc.ogg": clicks(2.0, seed=5)}
    for name, y in files.items():
        write(raw / Path(name).parent, Path(name).name, y)
    (raw / ".extracted").mkdir()
    (raw / ".extracted" / f"{WORLD_PACKAGE}_1.0_all.deb").write_text(
        "\n".join(f"-rw-r--r-- root/root 1 2020-01-01 00:00 ./{n}" for n in files))
    clips = list(world_clips(raw))
    assert {(c.kind, Path(c.source).name) for c in clips} == {("world", "dog.ogg"), ("speech", "dog_desc_fr.ogg")}
    assert all(c.label == 0 and c.condition == "clean" and 0 < len(c.samples) for c in clips)
    assert list(world_clips(tmp_path / "nothing-here")) == []


def test_gate_splits_share_no_song_and_spread_a_collections_clips_over_its_songs(tmp_path, monkeypatch):
    from tuneprint.server.evaluation import gate_data
    from tuneprint.server.evaluation.gate_data import GateDataConfig, music_songs, sound_collections

    monkeypatch.setattr(gate_data, "SPOKEN_TRACKS", frozenset({"supertuxkart/s3.ogg"}))  # a monologue: not music
    cfg = GateDataConfig()
    lo, hi = cfg.song_clips[0]
    per_song = [cfg.per_song(n, "train") for n in range(1, 200)]
    assert per_song[0] == hi and per_song[-1] == lo and per_song == sorted(per_song, reverse=True)
    assert not set(sound_collections("train")) & (set(sound_collections("val")) | set(sound_collections("test")))
    assert not set(sound_collections("val")) & set(sound_collections("test"))

    rows = [(f"music/{c}/s{i}.ogg", c) for c in ("wesnoth", "hedgewars", "supertuxkart", "pushover") for i in range(12)]
    rows += [(f"music/{c}/s{i}.ogg", c) for c in ("ufoai", "singularity", "hyperrogue") for i in range(6)]
    for name, chosen in (("manifest.csv", rows[:48]), ("style-manifest.csv", rows)):
        (tmp_path / name).write_text("path,label,seconds,sha256\n" + "".join(f"{p},{c},60,x\n" for p, c in chosen))
    splits = {split: {p for p, _ in music_songs(tmp_path, split)} for split in ("train", "val", "test")}
    assert not splits["train"] & (splits["val"] | splits["test"]) and not splits["val"] & splits["test"]
    assert sum(len(v) for v in splits.values()) == len(rows) - 1
    assert "music/supertuxkart/s3.ogg" not in set.union(*splits.values())
    collections = {split: {Path(p).parent.name for p in v} for split, v in splits.items()}
    assert "singularity" in collections["val"] and "hyperrogue" in collections["test"]
    assert "singularity" not in collections["train"] | collections["test"]
    assert not {"pushover", "hyperrogue"} & collections["train"]


def test_a_gate_is_refused_for_another_encoder(tmp_path, embedder):
    d = embedder.dim + N_STATISTICS
    gate = Gate("sha256:someone-else", 0.5, np.zeros(d, np.float32), np.ones(d, np.float32),
                ((np.zeros((d, 1), np.float32), np.zeros(1, np.float32)),), embedder.features)
    path = save_gate(tmp_path / "gate.safetensors", gate)
    with pytest.raises(MismatchError, match="trained on encoder sha256:someone-else"):
        load_gate(path, model_id=embedder.model_id)
    assert gate_for(embedder.model_id, path) is None and gate_for("sha256:someone-else", path) is not None
    assert gate_for(embedder.model_id, tmp_path / "missing.safetensors") is None


@needs_gate
@pytest.mark.parametrize("seed", [0, 3, 100, 401])
def test_the_shipped_gate_calls_synthesized_songs_music(embedder, seed):
    gate = load_gate(model_id=embedder.model_id)
    song = synth_song(seed)
    assert gate.is_music(embedder.embed_audio(song, hop_frames=8))  # a whole file, as `add` judges it
    for start in (1.0, 8.0, 15.0):  # 3-s clips, as queries
        p = gate.music_probability(embed(embedder, cut(song, start, 3.0)))
        assert p >= gate.threshold, f"seed {seed} at {start} s: P(music) {p:.3f}"


@needs_gate
@pytest.mark.parametrize("kind", list(NON_MUSIC))
def test_the_shipped_gate_calls_noise_and_speech_like_sounds_not_music(embedder, kind):
    gate = load_gate(model_id=embedder.model_id)
    for seed in (10, 11):
        y = NON_MUSIC[kind](6.0, seed)
        assert not gate.is_music(embedder.embed_audio(y, hop_frames=8)), kind
        p = gate.music_probability(embed(embedder, y[: 3 * SR]))
        assert p < gate.threshold, f"{kind} (seed {seed}): P(music) {p:.3f}"


# -- the library, the command line and the HTTP API ------------------------------------------
@needs_gate
def test_add_refuses_a_noise_file_unless_non_music_is_allowed(library_copy, tmp_path):
    from tuneprint.server.library import Library

    noise = write(tmp_path / "in", "traffic.wav", pink(8.0))
    with Library.open(library_copy) as lib:
        songs = lib.stats()["songs"]
        [refused] = lib.add([noise])
        assert refused.status == "failed" and refused.song_id is None
        assert refused.error.startswith(f"{noise.resolve()}: not music (gate p=")
        assert refused.error.endswith("add --allow-non-music to keep it")
        assert lib.stats()["songs"] == songs
        [kept] = lib.add([noise], allow_non_music=True)
        assert kept.status == "added" and lib.stats()["songs"] == songs + 1


@needs_gate
def test_a_sound_kept_with_allow_non_music_is_still_identified(library_copy, tmp_path):
    """The gate says what a clip is; a recording the library holds is found all the same."""
    from tuneprint.server.library import Library

    rng = np.random.default_rng(9)
    sound = np.concatenate([clicks(4.0, 30), vowel_buzz(4.0, 31), white(4.0, 32) * 0.3]).astype(np.float32)
    rng.shuffle(sound.reshape(-1, 2205))  # a 12-s collage of non-music
    path = write(tmp_path / "in", "collage.wav", sound)
    with Library.open(library_copy) as lib:
        [kept] = lib.add([path], allow_non_music=True)
        answer = lib.identify(write(tmp_path, "excerpt.wav", sound[22050 * 4 : 22050 * 7]))
    assert answer.music is False
    assert answer.match is not None and answer.match.song.song_id == kept.song_id and answer.reason is None


@needs_gate
def test_the_add_command_refuses_noise_and_keeps_it_with_allow_non_music(library_copy, tmp_path, capsys):
    from tuneprint.server.cli import EXIT_OK, EXIT_PARTIAL, main

    noise = write(tmp_path / "in", "fan.wav", white(6.0))
    assert main(["add", "--library", str(library_copy), str(noise)]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert f"{noise.resolve()}: not music" in err and "--allow-non-music" in err
    assert main(["add", "--library", str(library_copy), "--allow-non-music", str(noise)]) == EXIT_OK
    assert "added 1" in capsys.readouterr().out


@needs_gate
def test_identify_similar_and_genre_of_a_noise_clip_say_not_music(library, tmp_path):
    clip = write(tmp_path, "keys.wav", clicks(4.0, 20))
    identification = library.identify(clip).to_dict()
    assert identification["music"] is False and identification["reason"] == "not_music"
    assert identification["match"] is None
    genre = library.label(clip).to_dict()
    assert genre["music"] is False and genre["reason"] == "not_music" and genre["label"] is None
    similar = library.similar(clip).to_dict()
    assert similar == {"query": str(clip.resolve()), "neighbours": [], "music": False, "reason": "not_music",
                       "by": similar["by"]}

    song = write(tmp_path, "song.wav", cut(synth_song(2), 5.0, 3.0))
    assert library.identify(song).to_dict()["music"] is True
    assert library.label(song).to_dict()["music"] is True
    answer = library.similar(song)
    query, neighbours = answer  # unpacks as before
    assert answer.music is True and answer.reason is None and neighbours


@needs_gate
def test_the_http_api_answers_not_music_with_200(library, tmp_path):
    """The answers fit the OpenAPI document (the test client checks every response against it)."""
    from tests.test_api import files, make_app

    client = make_app(library).test_client()
    data = write(tmp_path, "keys.wav", clicks(4.0, 21)).read_bytes()
    for endpoint in ("/identify", "/genre", "/similar"):
        response = client.post(endpoint, data=files(data, "keys.wav"))
        assert response.status_code == 200
        body = response.get_json()
        assert body["music"] is False and body["reason"] == "not_music", body


@needs_gate
def test_an_upload_that_is_not_music_is_refused_unless_allowed(library_copy, tmp_path):
    from tests.test_api import TOKEN, bearer, files, make_app, wav

    app = make_app(library_path=library_copy, token=TOKEN)
    try:
        client = app.test_client()
        data = wav(pink(6.0))
        refused = client.post("/tracks", data=files(data, "rain.wav"), headers=bearer(TOKEN))
        assert refused.status_code == 422
        detail = refused.get_json()["detail"]
        assert detail.startswith("rain.wav: not music") and "allow_non_music=true" in detail
        kept = client.post("/tracks", data=files(data, "rain.wav", allow_non_music="true"), headers=bearer(TOKEN))
        assert kept.status_code == 201 and kept.get_json()["status"] == "added"
    finally:
        app.extensions["tuneprint"].library.close()


def test_a_library_on_another_encoder_has_no_gate_and_answers_music_null(tmp_path):
    from tuneprint.server.library import Library, LibrarySettings

    song = write(tmp_path / "in", "song.wav", synth_song(5, seconds=8.0))
    with Library.create(tmp_path / "lib", LibrarySettings(model="seeded")) as lib:
        assert lib.gate is None
        assert [r.status for r in lib.add([song])] == ["added"]
        assert lib.identify(song).to_dict()["music"] is None
        assert lib.similar(song).to_dict()["music"] is None


# -- the gate's CNN (server/gate_cnn.py) ------------------------------------------------------
class CountingCNN:
    """A GateCNN that remembers how many patches it was shown."""

    def __init__(self, cnn):
        self.cnn, self.shown = cnn, []

    def probabilities(self, x):
        self.shown.append(len(x))
        return self.cnn.probabilities(x)


def test_a_gate_with_a_cnn_averages_both_opinions_and_round_trips(tmp_path, embedder):
    import torch

    from tuneprint.server.gate_cnn import GateCNN, build_net, cnn_input
    from tuneprint.server.gate import patch_spectra

    torch.manual_seed(0)
    state = {k: v.numpy().copy() for k, v in build_net().state_dict().items()}
    d = embedder.dim + N_STATISTICS
    rng = np.random.default_rng(2)
    layers = ((rng.standard_normal((d, 1)).astype(np.float32) * 0.01, np.zeros(1, np.float32)),)
    gate = Gate(embedder.model_id, 0.5, np.zeros(d, np.float32), np.ones(d, np.float32), layers, embedder.features,
                cnn=GateCNN(state), cnn_patches=3)
    loaded = load_gate(save_gate(tmp_path / "gate.safetensors", gate), model_id=embedder.model_id)
    assert loaded.cnn is not None and loaded.cnn_patches == 3 and loaded.weight_count == gate.weight_count

    clip = embed(embedder, cut(synth_song(7), 2.0, 3.0))
    spectra = patch_spectra(clip.offsets_s, clip.spectrogram, embedder.features)
    cnn_p = GateCNN(state).probabilities(cnn_input(spectra, embedder.features.patch_frames)).mean()
    want = 0.5 * (gate.patch_probabilities(clip).mean() + cnn_p)
    assert gate.music_probability(clip) == pytest.approx(want, abs=1e-6)
    assert loaded.music_probability(clip) == pytest.approx(want, abs=1e-4)

    song = embedder.embed_audio(synth_song(7), hop_frames=8)  # a whole file: the CNN reads 3 patches of it
    counting = CountingCNN(loaded.cnn)
    from dataclasses import replace
    replace(loaded, cnn=counting).music_probability(song)
    assert len(song.vectors) > 3 and counting.shown == [3]


def test_the_gate_cnn_learns_held_tones_from_noise():
    """A few epochs on generated log-mel patches: harmonic lines (held notes) against flat noise."""
    from tuneprint.server.gate_cnn import GateCNN, cnn_input, train_cnn

    rng = np.random.default_rng(0)

    def patch(tonal: bool) -> np.ndarray:
        db = rng.normal(-60.0, 6.0, size=(64, 64))
        if tonal:
            f0 = rng.integers(2, 12)
            for h in range(1, 5):
                if f0 * h < 64:
                    db[f0 * h, :] = rng.uniform(-10, 0)
        return db

    def data(n: int):
        y = np.arange(n) % 2
        return cnn_input([patch(bool(t)) for t in y], 64), y

    x, y = data(384)
    state = train_cnn(x, y, np.ones(len(y)), epochs=8, seed=0)
    x_test, y_test = data(64)
    p = GateCNN(state).probabilities(x_test)
    # ranked, not thresholded: after 24 steps the batch-norm statistics have not settled (the
    # gate's threshold is chosen on validation clips for the trained network anyway)
    pairs = p[y_test == 1][:, None] > p[y_test == 0][None, :]
    assert pairs.mean() >= 0.95


def test_a_gate_file_of_the_first_format_still_loads_and_a_later_one_is_refused(tmp_path, embedder, monkeypatch):
    from tuneprint.errors import CheckpointError
    from tuneprint.server import gate as gate_module

    d = embedder.dim + N_STATISTICS
    gate = Gate(embedder.model_id, 0.5, np.zeros(d, np.float32), np.ones(d, np.float32),
                ((np.zeros((d, 1), np.float32), np.zeros(1, np.float32)),), embedder.features)
    monkeypatch.setattr(gate_module, "FORMAT_VERSION", 1)  # as the second version of the gate was written
    assert load_gate(save_gate(tmp_path / "v1.safetensors", gate)).cnn is None
    monkeypatch.setattr(gate_module, "FORMAT_VERSION", 3)
    with pytest.raises(CheckpointError, match="gate format '3'"):
        load_gate(save_gate(tmp_path / "v3.safetensors", gate))


def test_stats_describes_the_gate_from_its_header(tmp_path, embedder):
    from tuneprint.server.folder import gate_summary
    from tuneprint.server.gate_cnn import GateCNN, build_net

    d = embedder.dim + N_STATISTICS
    dense = Gate(embedder.model_id, 0.42, np.zeros(d, np.float32), np.ones(d, np.float32),
                 ((np.zeros((d, 1), np.float32), np.zeros(1, np.float32)),), embedder.features, {"trained": "2026-01-02"})
    path = save_gate(tmp_path / "dense.safetensors", dense)
    assert gate_summary(embedder.model_id, path) == {"threshold": 0.42, "cnn": False, "trained": "2026-01-02"}
    assert gate_summary("sha256:someone-else", path) is None and gate_summary(None, path) is None
    state = {k: v.numpy().copy() for k, v in build_net().state_dict().items()}
    from dataclasses import replace
    path = save_gate(tmp_path / "cnn.safetensors", replace(dense, cnn=GateCNN(state)))
    assert gate_summary(embedder.model_id, path)["cnn"] is True
    assert gate_summary(embedder.model_id, tmp_path / "missing.safetensors") is None
