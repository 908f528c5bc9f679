"""server/evaluation/corpus.py: the corpus's splits, its manifest, fetch helpers and the package cache."""
from __future__ import annotations

import logging

import pytest

from tuneprint.encoder.splits import split_songs
from tuneprint.server.evaluation import corpus


def write_manifest(folder, rows):
    lines = ["path,label,seconds,sha256"] + [f"music/{label}/{name},{label},60.0,h{i}" for i, (name, label) in enumerate(rows)]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")


def test_split_corpus_sends_every_unseen_collection_to_unseen_and_is_deterministic(tmp_path):
    rows = [(f"song{i:02d}.ogg", label) for i in range(40) for label in ("wesnoth", "pushover")]
    write_manifest(tmp_path, rows)
    parts = corpus.split_corpus(tmp_path)
    assert {label for _, label in parts["unseen"]} == {"pushover"} and len(parts["unseen"]) == 40
    seen = parts["train"] + parts["val"] + parts["test"]
    assert {label for _, label in seen} == {"wesnoth"} and len(seen) == 40
    assert corpus.split_corpus(tmp_path) == parts
    assert all(path.startswith(str(tmp_path.resolve())) for path, _ in seen)  # absolute paths


def test_split_songs_takes_the_unseen_collections_as_a_parameter():
    items = [("a/x.ogg", "one"), ("b/y.ogg", "two")]
    assert split_songs(items, unseen_labels=("two",))["unseen"] == [("b/y.ogg", "two")]
    assert split_songs(items, unseen_labels=())["unseen"] == []
    with pytest.raises(TypeError):
        split_songs(items)  # no corpus names built in


def test_unseen_labels_are_collections_of_the_corpus():
    assert set(corpus.UNSEEN_LABELS) < set(corpus.MUSIC)


def test_write_atomically_replaces_the_folder_and_leaves_no_partial(tmp_path):
    target = tmp_path / "noise-x"
    target.mkdir()
    (target / "old.wav").write_bytes(b"old")
    corpus.write_atomically(target, lambda d: (d / "new.wav").write_bytes(b"new"))
    assert [p.name for p in target.iterdir()] == ["new.wav"]
    assert not (tmp_path / "noise-x.partial").exists()


def test_copy_noise_names_files_by_content_and_copies_each_content_once(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "A.OGG").write_bytes(b"same")
    (src / "b.ogg").write_bytes(b"same")
    seen: set[str] = set()
    for f in sorted(src.iterdir()):
        corpus.copy_noise(f, "0123456789abcdef", out, seen)
    assert [p.name for p in out.iterdir()] == ["0123456789.ogg"]


def test_package_root_lists_the_audio_files_of_one_package(tmp_path):
    raw = tmp_path / "raw"
    (raw / "usr/share/game/music").mkdir(parents=True)
    for name in ("a.ogg", "b.txt", "c.wav"):
        (raw / "usr/share/game/music" / name).write_bytes(b"x")
    (raw / ".extracted").mkdir()
    listing = "\n".join(f"-rw-r--r-- root/root 1 2024-01-01 00:00 ./usr/share/game/music/{n}" for n in ("a.ogg", "b.txt", "c.wav"))
    (raw / ".extracted" / "game-data_1.0_all.deb").write_text(listing)
    assert [p.name for p in corpus.package_root(raw, "game-data")] == ["a.ogg", "c.wav"]
    assert corpus.package_root(raw, "other-data") == []


def test_packages_to_download_skips_what_is_fetched_or_cached(tmp_path):
    out, cache = tmp_path / "corpus", tmp_path / "debs"
    cache.mkdir()
    (cache / "funnyboat_1.5-11_all.deb").write_bytes(b"x")
    wanted = corpus.packages_to_download(out, cache)
    assert "funnyboat" not in wanted and "wesnoth-1.16-music" in wanted and "solarwolf" in wanted
    (out / "noise").mkdir(parents=True)
    (out / "manifest.csv").write_text("path,label,seconds,sha256\n")
    assert corpus.packages_to_download(out, cache) == corpus.HELDOUT_NOISE
    (out / "noise-heldout").mkdir()
    assert corpus.packages_to_download(out, cache) == []


def test_remove_cache_deletes_the_folder_and_says_how_much_it_held(tmp_path):
    cache = tmp_path / "debs"
    (cache / "raw/usr").mkdir(parents=True)
    (cache / "a_1_all.deb").write_bytes(b"x" * 1000)
    (cache / "raw/usr/f.ogg").write_bytes(b"y" * 234)
    assert corpus.folder_bytes(cache) == 1234
    assert corpus.remove_cache(cache) == 1234
    assert not cache.exists() and corpus.folder_bytes(cache) == 0


def test_ticker_logs_progress_lines_when_a_step_takes_long(caplog, monkeypatch):
    clock = iter([0.0, 1.0, 20.0, 21.0, 40.0])
    monkeypatch.setattr(corpus.time, "monotonic", lambda: next(clock))
    with caplog.at_level(logging.INFO, logger=corpus.__name__):
        ticker = corpus.Ticker("music: files scanned", 4, seconds=15.0)
        for _ in range(4):
            ticker.step()
    assert [r.getMessage() for r in caplog.records] == ["music: files scanned: 2/4", "music: files scanned: 4/4"]
