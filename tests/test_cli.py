"""server/cli.py, the `tuneprint` console script: every --help, the JSON contract, exit codes.

Commands run in-process through ``server.cli.main([...])``; one real subprocess proves the
console script is installed. What the answers are is tested in test_library.py; here, that the
adapter passes them on faithfully and keeps its contract.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tuneprint.server.cli import EXIT_LIBRARY, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, build_parser, main
from tests.conftest import N_SONGS, SR, TEST_MODEL, cut, synth_song


def subcommands() -> list[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


def run(capsys, *argv) -> tuple[int, str, str]:
    """Run ``tuneprint ARGV...`` in-process; returns (exit status, stdout, stderr)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse: --help, usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def write(folder: Path, name: str, y: np.ndarray, **kw) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, SR, **kw)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli-clips")
    return {
        "song2": write(folder, "song2.wav", cut(synth_song(2), 7.5, 3.0)),
        "song5": write(folder, "song5.flac", cut(synth_song(5), 12.0, 3.0)),
        "stranger": write(folder, "stranger.wav", cut(synth_song(100), 4.0, 3.0)),
        "missing": folder / "missing.wav",
        "text": _text_mp3(folder / "notes.mp3"),
        "short": write(folder, "blip.wav", cut(synth_song(3), 0.0, 0.2)),
        "silence": write(folder, "silence.wav", np.zeros(4 * SR, np.float32)),
    }


def _text_mp3(path: Path) -> Path:
    path.write_text("just text with an .mp3 name\n" * 10)
    return path


# -- help -------------------------------------------------------------------------------------
def test_main_help(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and "usage: tuneprint" in out
    for name in ("add", "identify", "similar", "genre", "stats", "remove"):
        assert name in out
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.startswith("tuneprint ")


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_help(capsys, command):
    rc, out, _ = run(capsys, command, "--help")
    assert rc == 0
    assert f"usage: tuneprint {command}" in out and "--library" in out


def test_usage_errors(capsys, tmp_path):
    rc, _, err = run(capsys, "identify", "clip.wav")  # no --library
    assert rc == EXIT_USAGE and "--library" in err
    rc, _, err = run(capsys, "frobnicate")
    assert rc == EXIT_USAGE and "invalid choice" in err


def test_console_script_is_installed():
    script = shutil.which("tuneprint") or str(Path(sys.executable).with_name("tuneprint"))
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: tuneprint" in done.stdout


# -- add --------------------------------------------------------------------------------------
def test_add_end_to_end(capsys, tmp_path):
    music = tmp_path / "music"
    a = write(music, "a.wav", synth_song(400, seconds=6.0))
    b = write(music, "sub/dir/b.flac", synth_song(401, seconds=6.0))
    (music / "cover.jpg").write_bytes(b"\xff\xd8 not audio")  # inside a folder: skipped, not an error
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\nmusic/sub/dir/b.flac,folk\n")
    lib = tmp_path / "lib"

    rc, out, err = run(capsys, "add", "--library", lib, "--model", TEST_MODEL, "--label", "demo",
                       "--labels", labels, "--json", music)
    assert rc == EXIT_OK, err
    results = json_lines(out)
    assert [(r["path"], r["status"]) for r in results] == [(str(a.resolve()), "added"), (str(b.resolve()), "added")]
    assert all(r["song_id"] and r["error"] is None for r in results)

    rc, out, _ = run(capsys, "stats", "--library", lib, "--json")
    stats = json.loads(out)
    assert rc == EXIT_OK and stats["songs"] == 2 and stats["backend"] == "faiss"
    assert stats["labels"] == {"demo": 2, "folk": 1}

    rc, out, _ = run(capsys, "add", "--library", lib, a)  # again: a no-op, in words this time
    assert rc == EXIT_OK and "added 0, already present 1, failed 0" in out

    c = write(tmp_path, "c.ogg", synth_song(402, seconds=6.0), format="OGG", subtype="VORBIS")
    bad = [tmp_path / "missing.wav", _text_mp3(tmp_path / "notes.mp3"), write(tmp_path, "silence.wav", np.zeros(4 * SR))]
    rc, out, err = run(capsys, "add", "--library", lib, bad[0], c, bad[1], bad[2])
    assert rc == EXIT_PARTIAL
    assert "added 1, already present 0, failed 3" in out
    for path, reason in zip(bad, ["no such file", "not a readable audio file", "silent"]):
        assert any(str(path) in line and reason in line for line in err.splitlines()), (path, err)
    rc, out, _ = run(capsys, "stats", "--library", lib, "--json")
    assert json.loads(out)["songs"] == 3

    rc, out, _ = run(capsys, "tracks", "--library", lib, "--json")
    tracks = json_lines(out)
    assert rc == EXIT_OK and {t["path"] for t in tracks} == {str(p.resolve()) for p in (a, b, c)}
    assert next(t for t in tracks if t["path"] == str(b.resolve()))["labels"] == ["demo", "folk"]


def test_add_annoy_library_with_relative_paths(capsys, tmp_path, monkeypatch):
    song = write(tmp_path, "one.wav", synth_song(403, seconds=5.0))
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, "add", "--library", "lib", "--model", TEST_MODEL, "--index", "annoy", "one.wav")
    assert rc == EXIT_OK, err
    rc, out, _ = run(capsys, "stats", "--library", "lib", "--json")
    assert json.loads(out)["backend"] == "annoy" and json.loads(out)["songs"] == 1
    rc, out, _ = run(capsys, "tracks", "--library", tmp_path / "lib", "--json")
    assert json_lines(out)[0]["path"] == str(song.resolve())  # stored absolute


def test_add_missing_labels_csv(capsys, tmp_path):
    song = write(tmp_path, "one.wav", synth_song(404, seconds=4.0))
    rc, _, err = run(capsys, "add", "--library", tmp_path / "lib", "--model", TEST_MODEL,
                     "--labels", tmp_path / "nope.csv", song)
    assert rc == EXIT_USAGE and "nope.csv" in err and "Traceback" not in err
    assert not (tmp_path / "lib").exists()


def test_add_nothing_found(capsys, tmp_path):
    (tmp_path / "empty-folder").mkdir()
    rc, _, err = run(capsys, "add", "--library", tmp_path / "lib", "--model", TEST_MODEL, tmp_path / "empty-folder")
    assert rc == EXIT_PARTIAL and "no audio files" in err
    assert not (tmp_path / "lib").exists()


# -- identify / genre / similar / stats: the JSON contract ------------------------------------
def check_number(x, lo=-1.0, hi=1.0):
    assert isinstance(x, (int, float)) and not isinstance(x, bool) and lo <= x <= hi, x


def test_identify_json_contract(capsys, library_path, library, clips):
    good = [clips["song2"], clips["stranger"], clips["song5"]]
    rc, out, err = run(capsys, "identify", "--library", library_path, "--json",
                       good[0], clips["missing"], good[1], clips["short"], good[2])
    assert rc == EXIT_PARTIAL  # two clips failed, the others were answered
    assert str(clips["missing"]) in err and "no such file" in err and "0.20 s" in err
    answers = json_lines(out)
    assert len(answers) == len(good)
    songs = {s.song_id: s for s in library.tracks()}
    for clip, answer in zip(good, answers):
        assert set(answer) == {"query", "match", "candidates"}
        assert answer["query"] == str(clip.resolve())
        match = answer["match"]
        if match is not None:
            assert {"song_id", "path", "title", "offset_s", "score"} <= set(match)
            assert match["song_id"] in songs and match["path"] == songs[match["song_id"]].path
            assert Path(match["path"]).is_absolute() and Path(match["path"]).is_file()
            assert isinstance(match["title"], str)
            check_number(match["offset_s"], 0.0, 20.0)
            check_number(match["score"], 0.0, 1.0)
            assert answer["candidates"][0]["song_id"] == match["song_id"]
        assert 1 <= len(answer["candidates"]) <= library.settings.vote.top
        for c in answer["candidates"]:
            assert {"song_id", "path", "score"} <= set(c)
            assert c["path"] == songs[c["song_id"]].path and Path(c["path"]).is_absolute()
            check_number(c["score"], 0.0, 1.0)
        assert answer == library.identify(clip).to_dict()  # the adapter adds and loses nothing


def test_identify_text_output(capsys, library_path, library, clips):
    rc, out, _ = run(capsys, "identify", "--library", library_path, clips["song2"])
    assert rc == EXIT_OK
    result = library.identify(clips["song2"])
    assert out.startswith(f"{clips['song2']}: ")
    if result.match is not None:
        assert result.match.song.song_id in out and result.match.song.path in out
    else:
        assert "not in the library" in out


def test_identify_only_bad_clips(capsys, library_path, clips):
    rc, out, err = run(capsys, "identify", "--library", library_path, "--json",
                       clips["missing"], clips["text"], clips["short"], clips["silence"])
    assert rc == EXIT_PARTIAL and out == ""
    assert len([line for line in err.splitlines() if line.startswith("tuneprint: error:")]) == 4
    assert "not a readable audio file" in err and "silent" in err


def test_genre_json_contract(capsys, library_path, library, clips):
    rc, out, err = run(capsys, "genre", "--library", library_path, "--json", clips["song2"], clips["text"], clips["song5"])
    assert rc == EXIT_PARTIAL and str(clips["text"]) in err
    answers = json_lines(out)
    assert len(answers) == 2
    for clip, answer in zip([clips["song2"], clips["song5"]], answers):
        assert set(answer) == {"query", "label", "top"}
        assert answer["query"] == str(clip.resolve())
        assert 1 <= len(answer["top"]) <= 2
        for pair in answer["top"]:
            assert isinstance(pair, list) and len(pair) == 2 and pair[0] in {"alpha", "beta"}
            check_number(pair[1], 0.0, 1.0)
        assert answer["label"] == answer["top"][0][0]
        assert answer == library.label(clip).to_dict()


def test_similar_json_contract(capsys, library_path, library, clips):
    songs = {s.song_id: s for s in library.tracks()}
    rc, out, _ = run(capsys, "similar", "--library", library_path, "--json", "-n", "4", clips["song5"])
    assert rc == EXIT_OK
    answer = json.loads(out)
    assert set(answer) == {"query", "neighbours"} and answer["query"] == str(clips["song5"].resolve())
    assert 1 <= len(answer["neighbours"]) <= 4
    for n in answer["neighbours"]:
        assert {"song_id", "path", "score"} <= set(n)
        assert n["path"] == songs[n["song_id"]].path and Path(n["path"]).is_absolute()
        check_number(n["score"])
    scores = [n["score"] for n in answer["neighbours"]]
    assert scores == sorted(scores, reverse=True)

    me = library.tracks()[0].song_id
    rc, out, _ = run(capsys, "similar", "--library", library_path, "--json", "--track", me)
    answer = json.loads(out)
    assert rc == EXIT_OK and answer["query"] == me
    ids = [n["song_id"] for n in answer["neighbours"]]
    # every song found among the track's neighbours is ranked once; the track itself never
    assert me not in ids and len(ids) == len(set(ids)) and N_SONGS // 2 <= len(ids) <= min(10, N_SONGS - 1)

    rc, out, _ = run(capsys, "similar", "--library", library_path, "--track", me)  # text output
    assert rc == EXIT_OK and out.startswith(f"nearest to {me}:")


def test_similar_needs_one_query(capsys, library_path, clips):
    rc, _, err = run(capsys, "similar", "--library", library_path)
    assert rc == EXIT_USAGE and "--track" in err
    rc, _, err = run(capsys, "similar", "--library", library_path, clips["song2"], "--track", "abc")
    assert rc == EXIT_USAGE
    rc, _, err = run(capsys, "similar", "--library", library_path, "--track", "no-such-song")
    assert rc == EXIT_LIBRARY and "no-such-song" in err


def test_stats_json(capsys, library_path):
    rc, out, _ = run(capsys, "stats", "--library", library_path, "--json")
    stats = json.loads(out)
    assert rc == EXIT_OK
    assert {"songs", "snippets", "hours", "labels", "backend"} <= set(stats)
    assert stats["songs"] == N_SONGS and stats["labels"] == {"alpha": 5, "beta": 5} and stats["backend"] == "faiss"
    rc, out, _ = run(capsys, "stats", "--library", library_path)
    assert rc == EXIT_OK and "songs    10" in out


def test_remove(capsys, library_copy):
    rc, out, _ = run(capsys, "tracks", "--library", library_copy, "--json")
    victim = json_lines(out)[4]
    rc, out, err = run(capsys, "remove", "--library", library_copy, victim["song_id"], "no-such-song")
    assert rc == EXIT_PARTIAL
    assert f"removed {victim['song_id']}" in out and "no-such-song" in err
    rc, out, _ = run(capsys, "stats", "--library", library_copy, "--json")
    stats = json.loads(out)
    assert stats["songs"] == N_SONGS - 1 and stats["vectors"] == stats["snippets"]
    rc, out, _ = run(capsys, "tracks", "--library", library_copy, "--json")
    assert victim["song_id"] not in {t["song_id"] for t in json_lines(out)}


def test_not_a_library(capsys, tmp_path, clips):
    for command in (["identify", clips["song2"]], ["genre", clips["song2"]], ["stats"], ["remove", "abc"]):
        rc, out, err = run(capsys, command[0], "--library", tmp_path / "nowhere", *command[1:])
        assert rc == EXIT_LIBRARY and out == "", command
        assert "not a tuneprint library" in err


def test_library_of_another_encoder_refused(capsys, library_copy, clips):
    meta = library_copy / "index" / "index.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "model_id": "sha256:0000"}))
    rc, out, err = run(capsys, "identify", "--library", library_copy, clips["song2"])
    assert rc == EXIT_LIBRARY and out == "" and "encoder" in err
