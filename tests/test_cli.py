"""server/cli/, the `tuneprint` console script: every --help, the JSON contract, exit codes,
folders and --out reports, progress and messages.

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


def test_train_run_folder_is_not_the_handler(tmp_path):
    """`--run DIR` of train is stored apart from the handler every command keeps in ``args.run``."""
    from tuneprint.server.cli.train_command import cmd_train

    args = build_parser().parse_args(["train", "--library", str(tmp_path), "--run", str(tmp_path / "run")])
    assert args.run is cmd_train and args.run_dir == tmp_path / "run"
    assert build_parser().parse_args(["train", "--library", str(tmp_path)]).run_dir is None


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
    assert rc == EXIT_PARTIAL  # one clip failed, the others were answered
    assert str(clips["missing"]) in err and "no such file" in err
    answers = json_lines(out)
    short = answers.pop(2)  # a clip too short to tell is answered "unknown", with the reason
    assert short["query"] == str(clips["short"].resolve()) and short["match"] is None
    assert short["reason"] == "too_short" and short["clip_s"] == 0.2 and short["candidates"] == []
    assert len(answers) == len(good)
    songs = {s.song_id: s for s in library.tracks()}
    for clip, answer in zip(good, answers):
        assert set(answer) == {"query", "match", "candidates", "reason", "clip_s", "music"}  # "music": the gate's
        assert answer["music"] is (True if TEST_MODEL == "default" else None)  # synthesized songs are music
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
                       clips["missing"], clips["text"], clips["silence"])
    assert rc == EXIT_PARTIAL and out == ""
    assert len([line for line in err.splitlines() if line.startswith("tuneprint: error:")]) == 3
    assert "not a readable audio file" in err and "silent" in err


def test_genre_json_contract(capsys, library_path, library, clips):
    rc, out, err = run(capsys, "genre", "--library", library_path, "--json", clips["song2"], clips["text"], clips["song5"])
    assert rc == EXIT_PARTIAL and str(clips["text"]) in err
    answers = json_lines(out)
    assert len(answers) == 2
    for clip, answer in zip([clips["song2"], clips["song5"]], answers):
        assert set(answer) - {"music", "by"} == {"query", "label", "top", "reason", "model"}  # "music": the gate's
        assert answer["model"] == "neighbours"  # the session library has no trained classifier
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
    assert set(answer) == {"query", "neighbours", "music", "reason", "by"} and answer["query"] == str(clips["song5"].resolve())
    assert answer["reason"] is None
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

    rc, out, _ = run(capsys, "similar", "--library", library_path, "--track", me)  # text output: the title, then the id
    assert rc == EXIT_OK and out.startswith(f"nearest in style to {library.song(me).title} [{me}]:")


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
    if TEST_MODEL == "default":  # the shipped gate reads the shipped encoder
        from tuneprint.server.gate import load_gate
        assert stats["music_gate"]["threshold"] == pytest.approx(load_gate().threshold) and stats["music_gate"]["cnn"]
    else:
        assert stats["music_gate"] is None
    rc, out, _ = run(capsys, "stats", "--library", library_path)
    assert rc == EXIT_OK and "songs    10" in out and "\ngate     " in out


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


# -- start-up: no heavy imports for --help, stats, tracks --------------------------------------
HEAVY = ("torch", "faiss", "annoy", "scipy", "librosa", "matplotlib", "sklearn", "flask", "waitress",
         "tuneprint.server.evaluation")

PROBE = """
import json, sys
from tuneprint.server.cli import main
heavy = {heavy!r}
found = {{}}
for argv in {argvs!r}:
    try:
        main(argv)
    except SystemExit:
        pass
    found[" ".join(argv)] = [m for m in heavy if m in sys.modules]
print("PROBE" + json.dumps(found))
"""


def probe_imports(argvs: list[list[str]]) -> dict[str, list[str]]:
    """Run the commands one after another in one fresh interpreter; the heavy modules loaded after each."""
    code = PROBE.format(heavy=HEAVY, argvs=argvs)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("PROBE")]
    return json.loads(line[len("PROBE"):])


def test_help_imports_nothing_heavy(library_path):
    helps = [["--help"]] + [[command, "--help"] for command in subcommands()]
    assert probe_imports(helps) == {" ".join(argv): [] for argv in helps}


def test_stats_and_tracks_load_no_model(library_path):
    argvs = [["stats", "--library", str(library_path)], ["tracks", "--library", str(library_path), "--json"]]
    found = probe_imports(argvs)
    # scipy comes with the feature settings the catalog records (encoder/features.py); no network, no index
    assert {argv: [m for m in heavy if m != "scipy"] for argv, heavy in found.items()} == {" ".join(a): [] for a in argvs}


def test_parser_defaults_agree_with_the_library_code():
    """Defaults written out in the light command modules are those of the code they call."""
    import inspect

    from tuneprint.server.cli import evaluate_command, serve_command

    serve = pytest.importorskip("tuneprint.server.http.serve").serve
    defaults = {name: p.default for name, p in inspect.signature(serve).parameters.items()}
    assert (defaults["host"], defaults["port"], defaults["threads"], defaults["max_upload_mb"]) == (
        serve_command.DEFAULT_HOST, serve_command.DEFAULT_PORT, serve_command.DEFAULT_THREADS,
        serve_command.DEFAULT_MAX_UPLOAD_MB)
    evaluation = pytest.importorskip("tuneprint.server.evaluation")
    sections = getattr(evaluation, "SECTIONS", None)
    if sections is None:
        sections = pytest.importorskip("tuneprint.server.evaluation.run").SECTIONS
    assert tuple(sections) == evaluate_command.SECTIONS


# -- folders, --out reports, summaries -----------------------------------------------------------
@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    """Three good clips (one in a sub-folder), a silent one, and a file that is not audio."""
    folder = tmp_path_factory.mktemp("clip-folder")
    write(folder, "a-song2.wav", cut(synth_song(2), 7.5, 3.0))
    write(folder, "sub/b-song5.flac", cut(synth_song(5), 12.0, 3.0))
    write(folder, "c-stranger.wav", cut(synth_song(100), 4.0, 3.0))
    write(folder, "d-silence.wav", np.zeros(4 * SR, np.float32))
    (folder / "cover.jpg").write_bytes(b"\xff\xd8 not audio")  # not an audio extension: not a clip
    return folder


def folder_clips(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.suffix in (".wav", ".flac"))


def test_identify_folder_to_jsonl(capsys, library_path, library, clip_folder, tmp_path):
    report = tmp_path / "answers.jsonl"
    rc, out, err = run(capsys, "identify", "--library", library_path, clip_folder, "--out", report)
    assert rc == EXIT_PARTIAL  # the silent clip failed; the others were answered
    lines = json_lines(report.read_text())
    clips = folder_clips(clip_folder)
    assert [line["query"] for line in lines] == [str(c.resolve()) for c in clips]
    silent = clip_folder / "d-silence.wav"
    for clip, line in zip(clips, lines):
        if clip == silent:
            assert line == {"query": str(clip.resolve()), "error": line["error"]} and "silent" in line["error"]
        else:
            assert line == library.identify(clip).to_dict()
    identified = sum(line.get("match") is not None for line in lines)
    unknown = sum("match" in line and line["match"] is None for line in lines)
    assert out.strip() == f"4 clips: {identified} identified, {unknown} unknown, 1 failed; answers in {report}"
    assert [line for line in err.splitlines() if "error" in line] == [f"tuneprint: error: {silent}: the audio is silent "
                                                                      "(no signal above the silence floor)"]


def test_identify_folder_to_csv(capsys, library_path, library, clip_folder, tmp_path):
    import csv

    report = tmp_path / "answers.csv"
    rc, out, _ = run(capsys, "identify", "--library", library_path, "--json", clip_folder, "--out", report)
    assert rc == EXIT_PARTIAL and out == ""  # with --json the summary goes to stderr: stdout stays JSON
    with open(report, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["query"] for row in rows] == [str(c.resolve()) for c in folder_clips(clip_folder)]
    assert {"query", "status", "song_id", "title", "offset_s", "confidence", "score", "reason", "error"} <= set(rows[0])
    for row in rows:
        if row["status"] == "failed":
            assert row["query"].endswith("d-silence.wav") and "silent" in row["error"]
            continue
        answer = library.identify(row["query"]).to_dict()
        assert row["status"] == ("identified" if answer["match"] else "unknown")
        if answer["match"]:
            assert row["song_id"] == answer["match"]["song_id"] and float(row["score"]) == answer["match"]["score"]


def test_genre_and_similar_take_folders(capsys, library_path, library, clip_folder, tmp_path):
    import csv

    report = tmp_path / "labels.csv"
    rc, out, _ = run(capsys, "genre", "--library", library_path, clip_folder, "--out", report)
    assert rc == EXIT_PARTIAL
    with open(report, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["status"] for row in rows].count("failed") == 1 and len(rows) == 4
    labelled = sum(row["status"] == "labelled" for row in rows)
    assert out.strip().startswith(f"4 clips: {labelled} labelled, {3 - labelled} no clear label, 1 failed")

    report = tmp_path / "similar.jsonl"
    rc, out, _ = run(capsys, "similar", "--library", library_path, "-n", "3", clip_folder / "sub", clip_folder / "a-song2.wav",
                     "--out", report)
    assert rc == EXIT_OK
    answers = json_lines(report.read_text())
    assert [a["query"] for a in answers] == [str((clip_folder / name).resolve()) for name in ("sub/b-song5.flac", "a-song2.wav")]
    assert all(1 <= len(a["neighbours"]) <= 3 for a in answers)
    assert "2 clips: 2 answered, 0 failed" in out


def test_text_answers_in_words(capsys, library_path, library, clip_folder):
    rc, out, _ = run(capsys, "identify", "--library", library_path, clip_folder / "a-song2.wav", clip_folder / "c-stranger.wav")
    assert rc == EXIT_OK
    lines = out.splitlines()
    for clip, line in zip(("a-song2.wav", "c-stranger.wav"), lines):
        answer = library.identify(clip_folder / clip).to_dict()
        if answer["match"]:
            assert f"confidence {answer['match']['confidence']:.0%}" in line and repr(answer["match"]["title"]) in line
        else:  # "unknown" says why
            assert "not in the library — " in line and ("fits" in line or "fit" in line)
    assert lines[-1] == f"2 clips: {sum('confidence' in l and 'not in' not in l for l in lines[:2])} identified, " \
                        f"{sum('not in the library' in l for l in lines[:2])} unknown, 0 failed"


def test_out_needs_csv_or_jsonl(capsys, library_path, clips, tmp_path):
    for command in ("identify", "genre", "similar"):
        rc, _, err = run(capsys, command, "--library", library_path, clips["song2"], "--out", tmp_path / "answers.txt")
        assert rc == EXIT_USAGE and "answers.txt" in err and ".csv or .jsonl" in err, command
    assert not (tmp_path / "answers.txt").exists()
    rc, _, err = run(capsys, "identify", "--library", library_path, clips["song2"], "--out", tmp_path / "no" / "dir.csv")
    assert rc == EXIT_USAGE and "dir.csv" in err


def test_folder_without_audio(capsys, library_path, tmp_path):
    (tmp_path / "empty").mkdir()
    rc, out, err = run(capsys, "identify", "--library", library_path, tmp_path / "empty")
    assert rc == EXIT_PARTIAL and out == "" and "no audio files" in err


# -- progress -----------------------------------------------------------------------------------
def test_progress_lines_when_not_on_a_terminal(capsys, library_path, clip_folder, monkeypatch):
    monkeypatch.setenv("TUNEPRINT_PROGRESS_EVERY_S", "0")
    rc, out, err = run(capsys, "identify", "--library", library_path, "--json", clip_folder)
    assert rc == EXIT_PARTIAL and len(json_lines(out)) == 3  # progress never on stdout
    lines = [line for line in err.splitlines() if line.startswith("tuneprint: identifying: ")]
    assert [line.split(": ")[2].split(",")[0] for line in lines] == [f"{i}/4 clips ({i / 4:.0%})" for i in range(1, 5)]
    assert "ETA" in lines[0] and "took" in lines[-1] and "clips/s" in lines[0]


def test_short_jobs_print_no_progress(capsys, library_path, clip_folder, monkeypatch):
    monkeypatch.delenv("TUNEPRINT_PROGRESS_EVERY_S", raising=False)  # the default: a line every 10 s
    rc, _, err = run(capsys, "genre", "--library", library_path, clip_folder / "a-song2.wav")
    assert rc == EXIT_OK and "labelling:" not in err


def test_progress_counts_speed_and_time_left():
    import io

    from tuneprint.server.cli.progress import Progress

    stream = io.StringIO()
    with Progress(4, desc="adding", unit="file", every_s=0, stream=stream) as bar:
        bar.update(audio_s=60.0)
        bar.update(2, audio_s=120.0)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("tuneprint: adding: 1/4 files (25%), ") and "× real time" in lines[0] and "ETA" in lines[0]
    assert lines[1].startswith("tuneprint: adding: 3/4 files (75%), ")
    quiet = io.StringIO()
    with Progress(4, desc="adding", every_s=3600, stream=quiet) as bar:
        bar.update(4)
    assert quiet.getvalue() == ""


def test_add_reports_progress_and_each_bad_file_once(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEPRINT_PROGRESS_EVERY_S", "0")
    good = [write(tmp_path / "music", f"s{i}.wav", synth_song(410 + i, seconds=5.0)) for i in range(2)]
    silent = write(tmp_path / "music", "quiet.wav", np.zeros(4 * SR, np.float32))
    rc, out, err = run(capsys, "add", "--library", tmp_path / "lib", "--model", TEST_MODEL, tmp_path / "music")
    assert rc == EXIT_PARTIAL and "added 2, already present 0, failed 1" in out
    assert [line for line in err.splitlines() if "quiet.wav" in line] == [
        f"tuneprint: error: {silent.resolve()}: the audio is silent (no signal above the silence floor)"]
    progress = [line for line in err.splitlines() if line.startswith("tuneprint: adding: ")]
    assert progress[-1].startswith("tuneprint: adding: 3/3 files (100%), ") and "real time" in progress[-1]
    assert all(str(p.resolve()) not in err for p in good)


def test_add_in_parallel(capsys, tmp_path):
    music = [write(tmp_path / "music", f"p{i}.wav", synth_song(420 + i, seconds=5.0)) for i in range(3)]
    bad = _text_mp3(tmp_path / "music" / "notes.mp3")
    rc, out, err = run(capsys, "add", "--library", tmp_path / "lib", "--model", TEST_MODEL, "--jobs", "2", "--json",
                       *music, bad)
    assert rc == EXIT_PARTIAL
    results = json_lines(out)
    assert [(r["path"], r["status"]) for r in results] == [(str(p.resolve()), "added") for p in music] + [
        (str(bad.resolve()), "failed")]
    assert len([line for line in err.splitlines() if "notes.mp3" in line]) == 1
    rc, _, err = run(capsys, "add", "--library", tmp_path / "lib", "--jobs", "0", music[0])
    assert rc == EXIT_USAGE and "--jobs" in err


# -- messages -----------------------------------------------------------------------------------
def _corrupt_mp3(path: Path) -> Path:
    """An ID3 header over random bytes: the MP3 decoder inside libsndfile complains on fd 2."""
    rng = np.random.default_rng(0)
    path.write_bytes(b"ID3" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return path


def test_decoder_chatter_is_not_shown(capfd, library_path, clips, tmp_path):
    corrupt = _corrupt_mp3(tmp_path / "corrupt.mp3")
    try:
        rc = main(["identify", "--library", str(library_path), str(corrupt), str(clips["silence"])])
    except SystemExit as e:
        rc = e.code
    out, err = capfd.readouterr()
    assert rc == EXIT_PARTIAL and out == "2 clips: 0 identified, 0 unknown, 2 failed\n"
    assert err.splitlines() == [f"tuneprint: error: {corrupt}: not a readable audio file (Invalid data found when "
                                "processing input)",
                                f"tuneprint: error: {clips['silence']}: the audio is silent (no signal above the silence floor)"]
