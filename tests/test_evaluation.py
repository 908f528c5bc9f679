"""`tuneprint evaluate` on the generated library: every section is produced, the metrics are
right on hand-built cases, and the splits never leak a song across index and query."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from tuneprint.index.catalog import Song
from tuneprint.index.vote import vote_labels
from tuneprint.encoder.augment import CONDITIONS
from tuneprint.server.evaluation import EvalConfig, evaluate
from tuneprint.server.evaluation.clips import ClipConfig, degrade_clip
from tuneprint.server.evaluation.data import EvalSplit, Provenance, Snippets, plan_split, subtrack_rows, track_key
from tuneprint.server.evaluation.identification import ClipRecord, IdentificationRun
from tuneprint.server.evaluation.labels import (TrackAnswer, aggregate, exact_neighbours, knn_track_answers,
                                                label_matrix, neighbour_label_shares, precision_recall, score_tracks)
from tuneprint.server.evaluation.timing import TimingConfig, recall_at_k, search_timing

SR = 22050
TRAINED = 3  # songs 0–2 play the training set of a fake run
FAST = TimingConfig(max_vectors=400, queries=10, ks=(10, 30), pq_m=8)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, library_path):
    """One quick evaluation of a copy of the session library where songs 8 and 9 carry a third
    label, 'gamma', that a fake training run (songs 0–2, labels alpha and beta, a classifier
    head with two classes) never saw; every third song is tagged 'bright', the others 'dark'."""
    from tuneprint.encoder.checkpoint import save_checkpoint
    from tuneprint.encoder.features import FeatureConfig
    from tuneprint.encoder.model import EncoderNet, ModelConfig
    from tuneprint.server.library import Library

    root = tmp_path_factory.mktemp("eval")
    lib_root = root / "library"
    shutil.copytree(library_path, lib_root)
    run = root / "run"
    run.mkdir()
    with Library.open(lib_root) as lib:
        songs = lib.tracks()
        for song in songs[8:]:
            lib.set_labels(song.song_id, ["gamma"])
        for i, song in enumerate(songs):
            lib.set_tags(song.song_id, ["bright" if i % 3 == 0 else "dark"])
        songs = lib.tracks()
    net = EncoderNet(ModelConfig(n_classes=2, width=16, embedding_dim=64))
    save_checkpoint(run / "model.safetensors", net, FeatureConfig())
    (run / "config.json").write_text(json.dumps({"labels": ["alpha", "beta"],
                                                 "train_tracks": [s.path for s in songs[:TRAINED]]}))
    cfg = EvalConfig.quick(train_config=str(run / "config.json"), classifier=str(run / "model.safetensors"),
                           map_points=60, timing=FAST, clips=ClipConfig(durations_s=(1.0, 3.0), clips_per_song=1),
                           cnn_inputs=("mel", "cqt"), cnn_epochs=1)
    out = root / "out"
    with Library.open(lib_root) as lib:
        report = evaluate(lib, cfg, out_dir=out)
    return {"report": report, "out": out, "songs": songs, "library": lib_root}


# -- every section ------------------------------------------------------------------------------
def test_report_files_and_sections(evaluated):
    out, report = evaluated["out"], evaluated["report"]
    assert json.loads((out / "report.json").read_text())["headline"] == report["headline"]
    md = (out / "report.md").read_text()
    for heading in ("Song identification", "Labels by neighbours", "Aggregation", "embedding map", "Search timing",
                    "Baseline", "Classifiers trained on the library's labels"):
        assert heading in md
    for png in ("identification.png", "confusion_neighbours.png", "confusion_baseline.png", "confusion_classifier.png",
                "map_tsne.png", "map_pca.png", "confusion_classifiers.png"):
        assert (out / png).stat().st_size > 1000, png
        assert png in md


def test_identification_section(evaluated):
    ident = evaluated["report"]["sections"]["identification"]
    for method in ("embedding", "baseline"):
        for duration in ("1s", "3s"):
            cells = ident["in_library"][method][duration]
            assert set(cells) == set(CONDITIONS)
            for cell in cells.values():
                assert cell["n"] == 5  # 10 songs − 2 held out − 3 trained, one clip each
                assert 0 <= cell["top1"] <= cell["top2"] <= 1
                assert cell["top1"] + cell["unknown"] <= 1
            assert all(c["n"] == 2 for c in ident["held_out"][method][duration].values())


def test_labels_seen_unseen_and_aggregation(evaluated):
    sections = evaluated["report"]["sections"]
    labels = sections["labels"]
    assert labels["groups"] == {"all": 7, "seen": 5, "unseen": 2}  # trained songs 0–2 are not queried
    for group in ("all", "seen", "unseen"):
        scores = labels[group]
        assert {"raw", "max_probability", "majority", "subtrack_top2", "track_top2", "per_label"} <= set(scores)
        assert scores["subtracks"] >= scores["tracks"]
    assert set(labels["all"]["per_label"]) == {"alpha", "beta", "gamma"}
    assert sections["baseline"]["all"]["tracks"] == 7
    clf = sections["classifier"]
    assert clf["labels"] == ["alpha", "beta"]
    assert clf["all"]["tracks"] == 5 and "not trained on" in clf["note"]  # gamma tracks left out
    md = (evaluated["out"] / "report.md").read_text()
    assert "classifier head" in md and "max probability" in md


def test_labels_by_style_as_genre_answers(evaluated):
    style = evaluated["report"]["sections"]["style_labels"]
    assert style["k"] == 10 and style["all"]["tracks"] == 7 and style["unseen"]["tracks"] == 2
    assert style["all"]["subtracks"] == 7  # one whole-track vector per query track
    assert 0.0 <= style["all"]["max_probability"] <= 1.0
    assert "Labels by style" in (evaluated["out"] / "report.md").read_text()


def test_map_and_timing_sections(evaluated):
    sections = evaluated["report"]["sections"]
    emap = sections["map"]
    assert 0 < emap["points"] <= 60
    assert set(emap["silhouette"]) == {"embedding", "mfcc_baseline"}
    rows = sections["timing"]["rows"]
    assert [r["backend"].split()[0] for r in rows] == ["NumPy", "scikit-learn", "Annoy"] + ["FAISS"] * 4
    for row in rows:
        assert row["build_s"] >= 0 and row["query_10nn_ms"] > 0
        if row["exact"]:
            assert row["recall@10"] == row["recall@30"] == 1.0


def test_provenance_noted(evaluated):
    report = evaluated["report"]
    assert report["split"]["trained_songs_in_library"] == TRAINED
    assert report["model"]["provenance"]["seen_labels"] == ["alpha", "beta"]
    assert any("not queried" in note for note in report["split"]["notes"])
    queried = {t["song_id"] for t in report["tracks"]}
    assert not queried & {s.song_id for s in evaluated["songs"][:TRAINED]}


def test_trained_classifiers_section(evaluated):
    """Head, 10-NN vote and the CNN on mel and CQT, learnt from training songs, measured on held-out ones."""
    trained = evaluated["report"]["sections"]["classifiers"]
    songs = evaluated["songs"]
    assert "skipped" not in trained
    assert [r["method"] for r in trained["results"]] == ["head on embeddings", "10-NN vote (training songs)",
                                                         "CNN on log-mel", "CNN on CQT"]
    assert trained["labels"] == ["alpha", "beta", "gamma"]
    # one held-out track per label, none of them a song the encoder was trained on (songs 0–2)
    assert trained["heldout_tracks"] == 3 and trained["train_tracks"] == 7
    held = {s.song_id: s for s in songs if s.song_id in trained["held_out"]}
    assert sorted(s.labels[0] for s in held.values()) == ["alpha", "beta", "gamma"]
    assert not set(held) & {s.song_id for s in songs[:TRAINED]}
    for result in trained["results"]:
        for how in ("raw", "max", "majority"):
            assert [x["name"] for x in result["per_label"][how]] == trained["labels"]
            assert {"precision", "recall", "f1", "ap", "support"} <= set(result["per_label"][how][0])
            assert 0 <= result["accuracy"][how] <= 1 and result["micro"][how]["support"] == 3
            assert np.asarray(result["confusion"][how]).sum() == 3
    assert trained["tags"] == ["bright", "dark"] and set(trained["tag_scores"]) == {"raw", "max", "majority"}
    md = (evaluated["out"] / "report.md").read_text()
    section = md[md.index("Classifiers trained on the library's labels"):]
    for text in ("| head on embeddings | majority |", "| CNN on CQT | raw |", "| gamma |", "| macro |",
                 "Tags (multi-label", "confusion_classifiers.png"):
        assert text in section
    assert any(k.startswith("trained head on embeddings") for k in evaluated["report"]["headline"])


def test_classifiers_skipped_without_labels(library_copy, tmp_path):
    from tuneprint.server.library import Library

    with Library.open(library_copy) as lib:
        for song in lib.tracks():
            lib.set_labels(song.song_id, [])
        report = evaluate(lib, EvalConfig.quick(sections=("classifiers",)), out_dir=tmp_path / "out")
    trained = report["sections"]["classifiers"]
    assert "at least two labels" in trained["skipped"] and "results" not in trained
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Not measured: the classifiers need tracks of at least two labels" in md
    assert not (tmp_path / "out" / "confusion_classifiers.png").exists()


def test_split_labelled_by_song():
    from tuneprint.server.evaluation.classifiers import split_labelled

    songs = _songs(20)  # labels col0 (7 songs), col1 (7), col2 (6)
    split = split_labelled(songs, holdout=0.3, seed=0)
    assert split.skipped is None and set(split.parts) == {s.song_id for s in songs}
    held = [s for s in songs if split.parts[s.song_id] == "test"]
    assert sorted(s.labels[0] for s in held) == ["col0"] * 2 + ["col1"] * 2 + ["col2"] * 2
    assert split_labelled(songs, holdout=0.3, seed=0) == split
    assert split_labelled(songs, holdout=0.3, seed=1).parts != split.parts
    # songs the encoder was trained on are held out only when a label has no other
    trained = {s.song_id for s in songs[:12]}
    split = split_labelled(songs, holdout=0.3, seed=0, trained_on=lambda s: s.song_id in trained)
    assert not {s for s, part in split.parts.items() if part == "test"} & trained
    # a label with a single track is learnt, not measured; too few to split, or one label: skipped
    split = split_labelled(songs[:4], holdout=0.3, seed=0)
    assert list(split.parts.values()).count("test") == 1 and any("single track" in n for n in split.notes)
    assert "single track" in split_labelled(songs[:3], holdout=0.3, seed=0).skipped
    assert "two labels" in split_labelled(songs[::3], holdout=0.3, seed=0).skipped
    assert "two labels" in split_labelled([replace(s, labels=()) for s in songs], holdout=0.3, seed=0).skipped
    assert "--holdout 0" in split_labelled(songs, holdout=0.0, seed=0).skipped


# -- splits never leak ---------------------------------------------------------------------------
def _songs(n: int) -> list[Song]:
    return [Song(f"id{i:02d}", f"/music/col{i % 3}/song{i:02d}.ogg", f"song{i}", None, 60.0, f"h{i}", (f"col{i % 3}",))
            for i in range(n)]


@pytest.mark.parametrize("holdout", [0.0, 0.2, 0.5])
def test_split_by_song_never_leaks(holdout):
    songs = _songs(20)
    trained = Provenance("test", frozenset(track_key(s.path) for s in songs[:6]), ("col0",))
    split = plan_split(songs, trained, holdout=holdout, seed=3)
    assert not set(split.index) & set(split.held_out)
    assert sorted(split.index + split.held_out) == list(range(20))
    assert len(split.held_out) == round(holdout * 20)
    assert set(split.id_queries) <= set(split.index)
    assert not set(split.id_queries) & set(range(6)) and not set(split.label_queries) & set(range(6))
    assert not set(split.held_out) & set(range(6))  # held-out songs come from untrained songs first
    assert plan_split(songs, trained, holdout=holdout, seed=3) == split
    if holdout:
        assert plan_split(songs, trained, holdout=holdout, seed=4).held_out != split.held_out


def test_split_falls_back_when_everything_was_trained():
    songs = _songs(5)
    split = plan_split(songs, Provenance("test", frozenset(track_key(s.path) for s in songs)), holdout=0.2, seed=0)
    assert split.id_queries == split.index and any("optimistic" in n for n in split.notes)


def test_identification_index_holds_in_library_songs_only(library):
    from tuneprint.server.evaluation.data import find_provenance, load_snippets

    snippets = load_snippets(library)
    split = plan_split(snippets.songs, find_provenance(library), holdout=0.3, seed=0)
    run = IdentificationRun(library.embedder, library.features, library.settings.index, library.settings.vote,
                            library.settings.query_hop_frames, snippets, split, ClipConfig(), 0, [])
    assert run.indexed_songs() == {snippets.songs[i].song_id for i in split.index}
    assert not run.indexed_songs() & {snippets.songs[i].song_id for i in split.held_out}


def test_leave_one_song_out():
    # Song 0's snippets are each other's nearest neighbours; excluded, song 1 (nearer than song 2) answers.
    v = np.array([[1, 0, 0], [1, 0.01, 0], [0.8, 0.6, 0], [0, 1, 0]], np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    song = np.array([0, 0, 1, 2])
    M = label_matrix([("a",), ("b",), ("c",)], ["a", "b", "c"])
    answers = knn_track_answers(v, song, {0: np.array([0, 1])}, M, {0: (0,)}, k=1)
    assert answers[0].probs.tolist() == [[0, 1, 0], [0, 1, 0]]
    _, rows = exact_neighbours(v[:1], v, 4, exclude=np.array([0, 1]))
    assert rows.tolist() == [[2, 3, -1, -1]]


# -- metrics on hand-built cases ---------------------------------------------------------------------
def test_aggregation_three_ways_disagree_as_the_seed_explains():
    # Two sub-tracks lean to 'b'; one is certain of 'a'.
    probs = np.array([[0.4, 0.6], [0.45, 0.55], [1.0, 0.0]])
    agg = aggregate(probs)
    assert agg["raw"].tolist() == [1, 1, 0]
    assert agg["max_probability"] == 0  # summed: a 1.85, b 1.15
    assert agg["majority"] == 1  # counted: b 2, a 1
    scores = score_tracks([TrackAnswer(0, (0,), probs)], ["a", "b"])
    assert scores["raw"] == round(1 / 3, 4) and scores["max_probability"] == 1.0 and scores["majority"] == 0.0
    assert scores["subtrack_top2"] == 1.0 and scores["confusion"]["matrix"] == [[1, 2, 0], [0, 0, 0]]


def test_aggregation_of_unanswered_subtracks():
    agg = aggregate(np.array([[0.0, 0.0], [0.0, 1.0]]))
    assert agg["raw"].tolist() == [-1, 1] and agg["majority"] == 1 and agg["max_probability"] == 1
    assert aggregate(np.zeros((2, 3)))["max_probability"] == -1


def test_precision_recall_on_a_hand_made_confusion():
    # rows truth a, b; columns predicted a, b, none
    precision, recall = precision_recall(np.array([[3, 1, 0], [2, 4, 1]]))
    assert precision == pytest.approx([3 / 5, 4 / 5])
    assert recall == pytest.approx([3 / 4, 4 / 7])
    precision, recall = precision_recall(np.array([[0, 0], [1, 1]]))  # no true 'a'; one 'b' taken for 'a'
    assert precision.tolist()[0] == 0.0 and precision[1] == 1.0 and np.isnan(recall[0]) and recall[1] == 0.5
    precision, recall = precision_recall(np.array([[2, 0, 1], [0, 0, 3]]))  # 'b' never predicted
    assert precision[0] == 1.0 and np.isnan(precision[1]) and recall.tolist() == [2 / 3, 0.0]


def test_label_shares_count_as_the_library_votes():
    rng = np.random.default_rng(0)
    song_labels = [("a",), ("b",), ("a", "c"), ()]
    labels = ["a", "b", "c"]
    neighbours = rng.integers(-1, 4, size=(6, 10))
    shares = neighbour_label_shares(neighbours, label_matrix(song_labels, labels))
    ids = np.array([[f"s{j}" if j >= 0 else None for j in row] for row in neighbours], dtype=object)
    for q in range(6):
        expected = vote_labels(ids[q : q + 1], {f"s{i}": l for i, l in enumerate(song_labels)}, top=3)
        assert [(labels[j], pytest.approx(shares[q, j])) for j in np.argsort(-shares[q], kind="stable")
                if shares[q, j] > 0] == expected


def test_recall_at_k():
    assert recall_at_k(np.array([[1, 2, 3]]), np.array([[1, 2, 4]]), 3) == pytest.approx(2 / 3)
    assert recall_at_k(np.array([[5, -1]]), np.array([[5, 6]]), 2) == 0.5


def test_exact_search_recall_is_one():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    result = search_timing(x, replace(FAST, ks=(10, 100)))
    assert result["vectors"] == 290 and result["queries"] == 10
    exact = [r for r in result["rows"] if r["exact"]]
    assert len(exact) == 3 and all(r["recall@10"] == r["recall@100"] == 1.0 for r in exact)
    assert all(0.0 <= r["recall@10"] <= 1.0 for r in result["rows"])


@pytest.mark.parametrize("backend", ["faiss", "annoy"])
def test_identification_vote_with_a_known_answer(backend):
    # Two songs of 8-d snippets; a clip made of song 1's snippets 4–6 must be song 1 at 4 · 0.5 s.
    from tuneprint.encoder.features import FeatureConfig
    from tuneprint.index.vectors import IndexConfig
    from tuneprint.index.vote import VoteConfig

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((20, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    snippets = Snippets(_songs(2), vectors, np.repeat([0, 1], 10), np.tile(np.arange(10) * 0.5, 2).astype(np.float32))
    split = EvalSplit(index=[0, 1], held_out=[], id_queries=[0, 1], label_queries=[])
    run = IdentificationRun(None, FeatureConfig(), IndexConfig(backend=backend, dim=8), VoteConfig(k=1), 4, snippets, split,
                            ClipConfig(), 0, [])
    record = ClipRecord(song=1, held_out=False, duration_s=3.0, condition="clean", start_s=2.0)
    answer = run.answer(record, vectors[14:17] + 0.01, np.array([0.0, 0.5, 1.0], np.float32))
    assert answer.top1 and answer.top2 and not answer.unknown
    assert answer.offset_error_s == pytest.approx(0.0)
    wrong = ClipRecord(song=0, held_out=False, duration_s=3.0, condition="clean", start_s=2.0)
    assert not run.answer(wrong, vectors[14:17], np.array([0.0, 0.5, 1.0], np.float32)).top1


def test_subtracks_are_a_patch_apart():
    offsets = np.arange(0, 20, 0.3715, dtype=np.float32)
    rows = subtrack_rows(offsets, 2.97)
    assert np.all(np.diff(offsets[rows]) >= 2.97 - 1e-3) and rows[0] == 0
    assert np.all(np.diff(offsets[rows]) < 2.97 + 0.3715)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_degraded_clips_keep_length(condition):
    t = np.arange(6 * SR) / SR
    y = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2).astype(np.float32)
    clip = degrade_clip(y, SR, 1.0, 3.0, condition, np.random.default_rng(0), [])
    assert clip.shape == (3 * SR,) and clip.dtype == np.float32
    assert np.all(np.isfinite(clip)) and np.abs(clip).max() <= 1.0 and np.abs(clip).max() > 0.01


# -- command line ------------------------------------------------------------------------------------
def test_cli_evaluate(library_path, tmp_path, capsys):
    from tuneprint.server.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "--holdout" in capsys.readouterr().out
    skip = [a for s in ("identification", "classifier", "baseline", "map", "timing", "classifiers") for a in ("--skip", s)]
    assert main(["evaluate", "--library", str(library_path), "--out", str(tmp_path / "out"), "--json", *skip]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sections"]["labels"]["all"]["tracks"] == 10
    assert "classifiers" not in report["sections"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Classifiers trained" not in md and not (tmp_path / "out" / "confusion_classifiers.png").exists()


def test_cli_evaluate_classifiers_on_two_labels(library_path, tmp_path, capsys):
    """The session library (alpha and beta, no tags): the head and the vote only (no CNN)."""
    from tuneprint.server.cli import main

    skip = [a for s in ("identification", "labels", "classifier", "baseline", "map", "timing") for a in ("--skip", s)]
    out = tmp_path / "out"
    assert main(["evaluate", "--library", str(library_path), "--out", str(out), "--json", "--quick", *skip,
                 "--cnn-inputs"]) == 0
    trained = json.loads(capsys.readouterr().out)["sections"]["classifiers"]
    assert trained["labels"] == ["alpha", "beta"] and trained["cnn_inputs"] == []
    assert [r["method"] for r in trained["results"]] == ["head on embeddings", "10-NN vote (training songs)"]
    assert trained["heldout_tracks"] == 2 and trained["train_tracks"] == 8 and not trained["tags"]
    assert any("no tags" in note for note in trained["notes"])
    md = (out / "report.md").read_text()
    assert "| alpha |" in md and "| beta |" in md and "the tag part is left out" in md
    assert (out / "confusion_classifiers.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, inputs, epochs", [([], ("mel", "cqt"), 10), (["--quick"], ("mel", "cqt"), 3),
                                                  (["--cnn-inputs"], (), 10),
                                                  (["--cnn-inputs", "cqt", "--cnn-epochs", "4"], ("cqt",), 4)])
def test_cli_evaluate_cnn_options(argv, inputs, epochs):
    from tuneprint.server.cli import build_parser
    from tuneprint.server.cli.evaluate_command import config_from_args

    cfg = config_from_args(build_parser().parse_args(["evaluate", "--library", "lib", *argv]))
    assert (cfg.cnn_inputs, cfg.cnn_epochs) == (inputs, epochs)


def test_a_section_is_replaced_by_its_key_and_never_takes_another_keys_section_of_the_same_title(tmp_path):
    from tuneprint.server.evaluation.markdown import write_section

    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Speed\n\nold, written before markers\n\n## Other\n\nkept\n")
    write_section(path, "speed", "Speed", "first")  # takes the unmarked section of its title
    write_section(path, "speed-big", "Speed", "second")  # same title, another key: a section of its own
    write_section(path, "speed", "Speed", "third")
    text = path.read_text()
    assert "old, written" not in text and "first" not in text and "## Other\n\nkept" in text
    assert text.count("<!-- section:speed -->") == 1 and "third" in text
    assert text.count("<!-- section:speed-big -->") == 1 and "second" in text
