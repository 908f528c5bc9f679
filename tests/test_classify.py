"""server/classify/: heads and a CNN learnt from a library's labels and tags, their aggregation,
the "unknown" outcome, storage; the catalog's tags; the `classify` and `label` commands and
the HTTP endpoints.

A small library of two synthetic genres ("calm": slow held organ chords, no drums; "beat": fast
drums under short bright notes), each track tagged, is built once for the module. These sketches
are plainer than music, and the music gate (tested in test_gate.py) would refuse some of them:
here libraries open without it, and one test gives the classifier a gate that says "not music".
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import SR, TEST_MODEL, _drum, _INSTRUMENTS, cut
from tuneprint.errors import LibraryError, MismatchError
from tuneprint.server.classify.aggregate import aggregate, ranked
from tuneprint.server.classify.config import OTHERS, ClassifierConfig
from tuneprint.server.cli import EXIT_LIBRARY, EXIT_OK, EXIT_USAGE, main

SECONDS = 12.0


def genre_song(genre: str, seed: int, seconds: float = SECONDS) -> np.ndarray:
    """A 'calm' song (slow held organ chords, low, no drums) or a 'beat' song (fast drums and
    short bright notes, high). Mono float32 at SR, peak 0.3."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    y = np.zeros(n)
    root = int(rng.integers(45, 52)) if genre == "calm" else int(rng.integers(60, 67))
    beat = 60.0 / (rng.uniform(55, 70) if genre == "calm" else rng.uniform(140, 170))
    t0 = 0.0
    while t0 < seconds:
        if genre == "calm":
            dur = 4 * beat
            for k in (0, 4, 7):
                _note(y, t0, dur, root + k + int(rng.integers(0, 3)), _INSTRUMENTS[0], 0.3)
        else:
            dur = beat / 2
            _note(y, t0, dur, root + int(rng.choice([0, 3, 5, 7, 10, 12])), _INSTRUMENTS[3], 0.4)
            _drum(y, t0, SR, "kick" if int(t0 / dur) % 2 == 0 else "snare", rng)
            _drum(y, t0 + dur / 2, SR, "hat", rng)
        t0 += dur
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def _note(y: np.ndarray, start_s: float, dur_s: float, midi: int, instrument, gain: float) -> None:
    i0 = int(start_s * SR)
    if i0 >= len(y):
        return
    t = np.arange(min(int(dur_s * SR), len(y) - i0)) / SR
    y[i0 : i0 + len(t)] += gain * instrument(440.0 * 2 ** ((midi - 69) / 12), t, dur_s)


@pytest.fixture(scope="module", autouse=True)
def no_gate():
    """Libraries opened in this module have no music gate (see the module's docstring)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tuneprint.server.library.gate_for", lambda *args, **kwargs: None)
        yield


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# -- pure parts -------------------------------------------------------------------------------
def test_aggregation_gives_known_answers():
    probs = np.array([[0.6, 0.4, 0.0],
                      [0.6, 0.4, 0.0],
                      [0.0, 0.1, 0.9]])
    np.testing.assert_allclose(aggregate(probs, "raw"), [0.4, 0.3, 0.3])
    np.testing.assert_allclose(aggregate(probs, "max"), np.array([0.6, 0.4, 0.9]) / 1.9)
    np.testing.assert_allclose(aggregate(probs, "majority"), [2 / 3, 0.0, 1 / 3])
    # the three disagree: raw and majority pick the first label, max the third (one confident segment)
    assert [int(np.argmax(aggregate(probs, how))) for how in ("raw", "max", "majority")] == [0, 2, 0]
    tags = np.array([[0.9, 0.2], [0.4, 0.6], [0.8, 0.1]])
    np.testing.assert_allclose(aggregate(tags, "raw", multi_label=True), [0.7, 0.3])
    np.testing.assert_allclose(aggregate(tags, "max", multi_label=True), [0.9, 0.6])
    np.testing.assert_allclose(aggregate(tags, "majority", multi_label=True, threshold=0.5), [2 / 3, 1 / 3])
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(probs, "median")
    with pytest.raises(ValueError, match="at least one segment"):
        aggregate(np.zeros((0, 3)), "raw")


def test_ranked_breaks_ties_by_the_mean():
    assert ranked(["a", "b", "c"], np.array([0.5, 0.5, 0.0]), tiebreak=np.array([0.2, 0.7, 0.1])) == \
        [("b", 0.5), ("a", 0.5), ("c", 0.0)]
    assert [n for n, _ in ranked(["a", "b"], np.array([0.5, 0.5]))] == ["a", "b"]


def test_rare_tags_fold_into_others():
    from tuneprint.server.classify.heads import fold_rare_tags

    names, folded = fold_rare_tags([("fast", "vinyl"), ("fast",), ("slow", "harp"), ("slow",), ()], min_tracks=2)
    assert names == ["fast", "slow", OTHERS]
    assert folded == [("Others", "fast"), ("fast",), ("Others", "slow"), ("slow",), ()]
    assert fold_rare_tags([("fast", "vinyl"), ("fast",)], min_tracks=0)[0] == ["fast", "vinyl"]


def test_segments_are_whole_windows_of_patches():
    from tuneprint.server.classify.inputs import segment_means, spectrogram_segments, windows

    offsets = np.arange(0, 20, 0.5)  # a patch every 0.5 s, each 3 s long: 23 s of audio
    assert [len(w) for w in windows(offsets, 3.0, 3.0)] == [1] * len(offsets)  # a 3-s segment is one patch
    tens = windows(offsets, 3.0, 10.0, hop_s=5.0)
    assert [offsets[w].tolist()[::14] for w in tens] == [[0.0, 7.0], [5.0, 12.0], [10.0, 17.0]]
    assert [len(w) for w in windows(offsets[:4], 3.0, 10.0)] == [4]  # shorter than a segment: one segment
    # 4-s windows of 3-s patches, 4 s apart: one whole window, of the patches at 0, 0.5 and 1 s; unit norm
    x = segment_means(np.eye(4, dtype=np.float32)[[0, 0, 1, 1]], np.array([0.0, 0.5, 1.0, 1.5]), 3.0, 4.0, 4.0)
    np.testing.assert_allclose(x, [[2 / 5**0.5, 1 / 5**0.5, 0, 0]], atol=1e-6)
    S = np.random.default_rng(0).normal(-40, 10, (16, 100)).astype(np.float32)
    segs = spectrogram_segments(S, 0.05, 2.0, 1.0)
    assert segs.shape[1:] == (16, 40) and segs.max() <= 1.0 and segs.min() >= -1.0
    assert spectrogram_segments(S[:, :10], 0.05, 2.0).shape == (1, 16, 40)  # padded at the floor


def test_settings_are_checked():
    for bad in ({"model": "svm"}, {"aggregate": "mean"}, {"depth": -1}, {"segment_s": 0.2}, {"lr_decay": 0},
                {"unknown": "never"}):
        with pytest.raises(ValueError):
            ClassifierConfig(**bad)
    cfg = ClassifierConfig(depth=0, aggregate="max")
    assert ClassifierConfig.from_dict({**cfg.to_dict(), "unknown_field": 1}) == cfg


def test_distance_rule_tells_near_from_far():
    from tuneprint.server.classify.heads import distance, distance_bar, fit_subspace

    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(32, 4)))[0].T  # the training segments lie in 4 dimensions
    x = rng.normal(size=(400, 4)) @ basis + 0.01 * rng.normal(size=(400, 32))
    track = np.repeat(np.arange(20), 20)
    sub = fit_subspace(x, dims=4)
    bar = distance_bar(x, track, quantile=0.03, dims=4)
    near = rng.normal(size=(10, 4)) @ basis
    far = near + 0.5 * rng.normal(size=(10, 32))
    assert (distance(near, sub) < bar).all() and (distance(far, sub) > bar).all()


# -- a library of two genres, with tags ------------------------------------------------------------
GENRES = ("calm", "beat")
N_PER_GENRE = 4


@pytest.fixture(scope="module")
def genre_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("genres")
    for g in GENRES:
        for i in range(N_PER_GENRE):
            sf.write(folder / f"{g}{i}.wav", genre_song(g, 100 * GENRES.index(g) + i), SR)
    return folder


@pytest.fixture(scope="module")
def genre_library(tmp_path_factory, genre_dir) -> Path:
    """Labels calm/beat; tags slow+keys / fast+drums, and "vinyl" on one track only (folded into Others)."""
    from tuneprint.server.library import Library, LibrarySettings

    root = tmp_path_factory.mktemp("genre-lib") / "library"
    files = sorted(genre_dir.glob("*.wav"))
    labels = {str(f.resolve()): [f.stem.rstrip("0123456789")] for f in files}
    tags = {str(f.resolve()): ["slow", "keys"] if f.stem.startswith("calm") else ["fast", "drums"] for f in files}
    tags[str((genre_dir / "beat0.wav").resolve())].append("vinyl")
    with Library.create(root, LibrarySettings(model=TEST_MODEL)) as lib:
        assert all(r.status == "added" for r in lib.add(files, labels=labels, tags=tags))
    return root


@pytest.fixture(scope="module")
def trained(genre_library, tmp_path_factory):
    """A copy of the genre library with a head trained on it (and its training report)."""
    import shutil

    from tuneprint.server.classify.api import train_classifier
    from tuneprint.server.library import Library

    root = tmp_path_factory.mktemp("trained") / "library"
    shutil.copytree(genre_library, root)
    lib = Library.open(root)
    report = train_classifier(lib, ClassifierConfig(epochs=40))
    yield lib, report
    lib.close()


def held_out_clip(genre: str, seed: int, start_s: float = 2.0, seconds: float = 4.0) -> np.ndarray:
    return cut(genre_song(genre, seed, seconds=start_s + seconds + 1), start_s, seconds)


def test_a_head_learns_two_genres_and_their_tags(trained):
    from tuneprint.server.classify.api import classify

    lib, report = trained
    assert report.labels == ["beat", "calm"] and report.tracks == 2 * N_PER_GENRE
    assert report.tags == ["drums", "fast", "keys", "slow", OTHERS]  # "vinyl" is on one track only
    assert (lib.root / "classifier.json").is_file() and (lib.root / "classifier.safetensors").is_file()
    right = 0
    for i, g in enumerate(GENRES * 3):
        answer = classify(lib, held_out_clip(g, 900 + i), name=f"{g}-{i}")
        d = answer.to_dict()
        assert set(d) >= {"query", "music", "label", "labels", "tags", "model"} and d["model"] == "head"
        assert d["query"] == f"{g}-{i}" and abs(sum(p for _, p in d["labels"]) - 1.0) < 1e-3
        right += d["labels"][0][0] == g
        applied = set(answer.applied_tags())
        expected = {"slow", "keys"} if g == "calm" else {"fast", "drums"}
        assert expected <= applied and not applied & ({"fast", "drums", "slow", "keys"} - expected), (g, d["tags"])
    assert right == 6


def test_genre_answers_from_the_head_when_there_is_one(trained, library):
    lib, _ = trained
    answer = lib.label(held_out_clip("beat", 950)).to_dict()
    assert answer["model"] == "head" and answer["label"] == "beat" and answer["top"][0][0] == "beat"
    assert library.label(cut(genre_song("calm", 3), 1.0, 4.0)).to_dict()["model"] == "neighbours"


def test_unknown_outcome(trained):
    from dataclasses import replace

    from tuneprint.server.classify.api import classify_embeddings
    from tuneprint.server.classify.store import load_classifier

    lib, _ = trained
    clf = load_classifier(lib)
    emb = lib.embed_clip(held_out_clip("calm", 960))
    assert classify_embeddings(lib, emb, clf=clf).label == "calm"
    unsure = replace(clf, config=replace(clf.config, unknown="probability", min_probability=1.0))
    far = replace(clf, distance_bar=-1.0)  # every clip lies beyond this bar
    for variant in (unsure, far):
        answer = classify_embeddings(lib, emb, clf=variant).to_dict()
        assert answer["label"] is None and answer["reason"] == "unknown" and answer["labels"][0][0] == "calm"
    off = replace(far, config=replace(clf.config, unknown="off"))
    assert classify_embeddings(lib, emb, clf=off).label == "calm"


def test_not_music_by_the_gate(trained):
    from tuneprint.server.classify.api import classify_embeddings

    class Deaf:  # a gate that hears no music in anything
        threshold = 0.5

        def music_probability(self, emb):
            return 0.0

    lib, _ = trained
    emb = lib.embed_clip(held_out_clip("calm", 965))
    assert classify_embeddings(lib, emb).music is None  # no gate: "music" is null
    lib.gate = Deaf()
    try:
        answer = classify_embeddings(lib, emb).to_dict()
        assert answer["music"] is False and answer["reason"] == "not_music"
        assert answer["label"] is None and answer["labels"] == [] and answer["tags"] == []
        genre = lib.label_embeddings(emb).to_dict()
        assert genre["music"] is False and genre["label"] is None and genre["model"] == "head"
    finally:
        lib.gate = None


def test_store_round_trip_and_encoder_mismatch(trained, tmp_path):
    import shutil

    from tuneprint.server.classify.api import classify_embeddings
    from tuneprint.server.classify.store import load_classifier, save_classifier

    lib, _ = trained
    clf = load_classifier(lib)
    emb = lib.embed_clip(held_out_clip("beat", 970))
    before = classify_embeddings(lib, emb, clf=clf).to_dict()
    copy = tmp_path / "lib"
    shutil.copytree(lib.root, copy)
    save_classifier(copy, clf)
    lib.root, original = copy, lib.root
    try:
        again = load_classifier(lib)
        assert again is not clf and again.labels == clf.labels and again.config == clf.config
        assert classify_embeddings(lib, emb, clf=again).to_dict() == before
        meta = json.loads((copy / "classifier.json").read_text())
        (copy / "classifier.json").write_text(json.dumps({**meta, "model_id": "sha256:0000"}))
        with pytest.raises(MismatchError, match="train it again"):
            load_classifier(lib)
        (copy / "classifier.json").write_text(json.dumps({**meta, "stamp": "another"}))
        with pytest.raises(LibraryError, match="different trainings"):
            load_classifier(lib)
    finally:
        lib.root = original


def test_a_cnn_on_mel_or_cqt(genre_library, tmp_path):
    import shutil

    from tuneprint.server.classify.api import classify, train_classifier
    from tuneprint.server.library import Library

    copy = tmp_path / "lib"
    shutil.copytree(genre_library, copy)
    with Library.open(copy) as lib:
        report = train_classifier(lib, ClassifierConfig(model="cnn", epochs=6, max_segments=30))
        assert report.model == "cnn" and report.labels == ["beat", "calm"]
        answer = classify(lib, held_out_clip("calm", 980)).to_dict()
        assert answer["model"] == "cnn" and len(answer["labels"]) == 2 and len(answer["tags"]) == len(report.tags)
        assert lib.label(held_out_clip("calm", 981)).model == "cnn"  # a mel CNN reads what genre has
        train_classifier(lib, ClassifierConfig(model="cnn", input="cqt", network="deep", epochs=1, max_segments=8))
        assert classify(lib, held_out_clip("beat", 982)).to_dict()["model"] == "cnn"
        assert lib.label(held_out_clip("beat", 983)).model == "neighbours"  # a CQT CNN needs the samples


def test_what_cannot_be_learnt_is_refused(library_copy, genre_library):
    from tuneprint.server.classify.api import train_classifier
    from tuneprint.server.library import Library

    with Library.open(genre_library) as lib:
        with pytest.raises(LibraryError, match="unknown label 'jazz'.*beat, calm"):
            train_classifier(lib, labels=["jazz"])
        with pytest.raises(LibraryError, match="unknown tag 'loud'"):
            train_classifier(lib, tags=["loud"])
        with pytest.raises(LibraryError, match="at least two labels"):
            train_classifier(lib, labels=["calm"])
    with Library.open(library_copy) as lib:
        for song in lib.tracks():
            lib.set_labels(song.song_id, [])
        with pytest.raises(LibraryError, match="no labelled tracks"):
            train_classifier(lib)


# -- the catalog's tags --------------------------------------------------------------------------
def test_tags_beside_labels(library_copy):
    from tuneprint.server.library import Library

    with Library.open(library_copy, load_encoder=False) as lib:
        song = lib.tracks()[0]
        assert song.tags == () and song.to_dict()["tags"] == []
        tagged = lib.set_tags(song.song_id, ["piano", "calm", "piano"])
        assert tagged.tags == ("calm", "piano") and tagged.labels == song.labels
        relabelled = lib.set_labels(song.song_id, ["jazz", "calm"])
        assert relabelled.labels == ("calm", "jazz") and relabelled.tags == ("calm", "piano")
        assert lib.stats()["labels"].get("piano") is None  # tags are not labels
        assert lib.catalog.tag_counts() == {"calm": 1, "piano": 1}


# -- command line -------------------------------------------------------------------------------
def test_classify_commands(capsys, genre_library, genre_dir, tmp_path):
    import shutil

    lib = tmp_path / "lib"
    shutil.copytree(genre_library, lib)
    rc, out, err = run(capsys, "classify", "predict", "--library", lib, genre_dir / "calm0.wav")
    assert rc == EXIT_LIBRARY and "no trained classifier" in err and "classify train" in err
    rc, out, err = run(capsys, "classify", "train", "--library", lib, "--depth", "0", "--epochs", "20", "--json")
    assert rc == EXIT_OK, err
    report = json.loads(out)
    assert report["labels"] == ["beat", "calm"] and report["tracks"] == 8 and report["path"].endswith("classifier.json")
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "calm.wav", held_out_clip("calm", 990), SR)
    sf.write(clips / "beat.flac", held_out_clip("beat", 991), SR)
    (clips / "notes.mp3").write_text("not audio\n" * 10)
    rc, out, err = run(capsys, "classify", "predict", "--library", lib, clips, "--json")
    assert rc == 1 and "notes.mp3" in err and "3 clips: 2 labelled, 0 unknown, 0 not music, 1 failed" in err
    answers = {Path(a["query"]).stem: a for a in map(json.loads, out.splitlines())}
    assert answers["calm"]["label"] == "calm" and answers["beat"]["label"] == "beat"
    rc, out, _ = run(capsys, "classify", "predict", "--library", lib, clips / "calm.wav")
    assert rc == EXIT_OK and out.startswith(f"{clips / 'calm.wav'}: calm ") and "tags: " in out
    rc, _, _ = run(capsys, "classify", "predict", "--library", lib, clips / "beat.flac", "--out", tmp_path / "a.csv")
    assert rc == EXIT_OK and "beat" in (tmp_path / "a.csv").read_text().splitlines()[1]
    rc, out, _ = run(capsys, "genre", "--library", lib, clips / "beat.flac", "--json")
    assert json.loads(out)["model"] == "head"


def test_classify_usage_and_library_errors(capsys, genre_library, library_path):
    rc, _, err = run(capsys, "classify", "train", "--library", genre_library, "--depth", "9")
    assert rc == EXIT_USAGE and "depth" in err
    rc, _, err = run(capsys, "classify", "train", "--library", genre_library, "--labels", "jazz,calm")
    assert rc == EXIT_LIBRARY and "unknown label 'jazz'" in err
    rc, _, err = run(capsys, "classify")
    assert rc == EXIT_USAGE and "ACTION" in err
    rc, _, err = run(capsys, "classify", "predict", "--library", library_path.parent / "nowhere", "x.wav")
    assert rc == EXIT_LIBRARY and "not a tuneprint library" in err


def test_label_command_and_add_with_tags(capsys, library_copy, tmp_path):
    from tests.conftest import synth_song

    rc, out, _ = run(capsys, "tracks", "--library", library_copy, "--json")
    song_id = json.loads(out.splitlines()[0])["song_id"]
    rc, out, _ = run(capsys, "label", "--library", library_copy, song_id, "calm", "piano", "--label", "jazz", "--json")
    assert rc == EXIT_OK and json.loads(out)["tags"] == ["calm", "piano"] and json.loads(out)["labels"] == ["jazz"]
    rc, out, _ = run(capsys, "label", "--library", library_copy, song_id, "--clear-tags", "--json")
    assert rc == EXIT_OK and json.loads(out)["tags"] == [] and json.loads(out)["labels"] == ["jazz"]
    rc, _, err = run(capsys, "label", "--library", library_copy, song_id)
    assert rc == EXIT_USAGE and "TAG" in err
    rc, _, err = run(capsys, "label", "--library", library_copy, "nosuchsong", "calm")
    assert rc == EXIT_LIBRARY and "nosuchsong" in err

    music = tmp_path / "music"
    music.mkdir()
    for i in (0, 1):
        sf.write(music / f"t{i}.wav", synth_song(700 + i, seconds=6.0), SR)
    (tmp_path / "labels.csv").write_text("path,tags,label\nmusic/t0.wav,calm; strings,ambient\nmusic/t1.wav,,rock\n")
    lib = tmp_path / "lib"
    rc, _, err = run(capsys, "add", "--library", lib, music, "--labels", tmp_path / "labels.csv", "--tag", "demo")
    assert rc == EXIT_OK, err
    rc, out, _ = run(capsys, "tracks", "--library", lib, "--json")
    tracks = {Path(t["path"]).stem: t for t in map(json.loads, out.splitlines())}
    assert tracks["t0"]["labels"] == ["ambient"] and tracks["t0"]["tags"] == ["calm", "demo", "strings"]
    assert tracks["t1"]["labels"] == ["rock"] and tracks["t1"]["tags"] == ["demo"]


def test_help_of_the_new_commands_imports_nothing_heavy():
    from tests.test_cli import probe_imports

    helps = [["classify", "--help"], ["classify", "train", "--help"], ["classify", "predict", "--help"],
             ["label", "--help"]]
    assert probe_imports(helps) == {" ".join(argv): [] for argv in helps}


# -- HTTP ----------------------------------------------------------------------------------------
def wav_bytes(y: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_http_classify_and_tags(trained, library):
    import io

    from tests.test_api import TOKEN, make_app

    lib, _ = trained
    client = make_app(lib, token=TOKEN).test_client()
    answer = client.post("/classify", data={"file": (io.BytesIO(wav_bytes(held_out_clip("calm", 995))), "c.wav")})
    assert answer.status_code == 200 and answer.json["label"] == "calm" and answer.json["query"] == "c.wav"
    assert client.post("/genre", data={"file": (io.BytesIO(wav_bytes(held_out_clip("calm", 996))), "c.wav")}
                       ).json["model"] == "head"
    bare = make_app(library, token=TOKEN).test_client()  # the session library has no classifier
    refused = bare.post("/classify", data={"file": (io.BytesIO(wav_bytes(held_out_clip("calm", 995))), "c.wav")})
    assert refused.status_code == 409 and "classify train" in refused.json["detail"]


def test_http_set_tags(genre_library, tmp_path):
    import shutil

    from tests.test_api import TOKEN, make_app

    copy = tmp_path / "lib"
    shutil.copytree(genre_library, copy)
    app = make_app(library_path=copy, token=TOKEN)
    client, auth = app.test_client(), {"Authorization": f"Bearer {TOKEN}"}
    song_id = client.get("/tracks").json["tracks"][0]["song_id"]
    assert client.put(f"/tracks/{song_id}/tags", json={"tags": ["x"]}).status_code == 401
    changed = client.put(f"/tracks/{song_id}/tags", json={"tags": ["warm", "solo"], "labels": ["lounge"]}, headers=auth)
    assert changed.status_code == 200 and changed.json["status"] == "updated"
    assert changed.json["song"]["tags"] == ["solo", "warm"] and changed.json["song"]["labels"] == ["lounge"]
    assert client.get(f"/tracks/{song_id}").json["tags"] == ["solo", "warm"]
    for body in ({"tags": "warm"}, {"tags": [1]}, {"mood": ["x"]}, ["warm"]):
        assert client.put(f"/tracks/{song_id}/tags", json=body, headers=auth).status_code == 400, body
    assert client.put("/tracks/nosuchsong/tags", json={"tags": ["x"]}, headers=auth).status_code == 404
    app.extensions["tuneprint"].library.close()
