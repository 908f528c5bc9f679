"""server/monitor.py and `tuneprint monitor`: a long recording walked in bounded memory, its windows
joined into stretches (a song, where in it, how sure, or no match).

The must-show test: a generated mix of two library songs with a stranger (a song not in the
library) between them, crossfaded, gives the three stretches with boundaries and offsets within a second.
"""
from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from tuneprint.encoder.audio import audio_seconds, load_audio, stream_audio
from tuneprint.errors import TooShortError, UnreadableAudioError
from tuneprint.server.cli import EXIT_OK, EXIT_PARTIAL, main
from tuneprint.server.cli import monitor_command
from tuneprint.server.monitor import MonitorConfig, WindowAnswer, _Windows, segment
from tests.conftest import SR, add_noise, cut, synth_song

CROSSFADE_S = 3.0
# the mix: song02 from 4 s in, the stranger (seed 100, not in the library), song05 from 3 s in
A_FROM_S, B_FROM_S = 4.0, 3.0
A_SEED, STRANGER_SEED, B_SEED = 2, 100, 5


def crossfaded(parts: list[np.ndarray], seconds: float = CROSSFADE_S) -> np.ndarray:
    """The parts one after the other, each fading linearly into the next over ``seconds``."""
    n = int(seconds * SR)
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    out = parts[0]
    for part in parts[1:]:
        out = np.concatenate([out[:-n], out[-n:] * ramp[::-1] + part[:n] * ramp, part[n:]])
    return out


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    """The mix as a FLAC file, and the truth: (song seed or None, start_s, end_s, anchor_s) per
    stretch, a boundary at each crossfade's centre; anchor = song offset − time in the mix."""
    a = synth_song(A_SEED)[int(A_FROM_S * SR):]
    stranger = synth_song(STRANGER_SEED, 15.0)
    b = synth_song(B_SEED)[int(B_FROM_S * SR):]
    y = add_noise(crossfaded([a, stranger, b]), 20.0, seed=1)  # a little hiss over everything
    path = tmp_path_factory.mktemp("mix") / "mix.flac"
    sf.write(path, y, SR)
    la, ls = len(a) / SR, len(stranger) / SR
    first = la - CROSSFADE_S / 2
    b_starts = la + ls - 2 * CROSSFADE_S  # where song05 begins to fade in
    second = b_starts + CROSSFADE_S / 2
    truth = [(A_SEED, 0.0, first, A_FROM_S), (None, first, second, None),
             (B_SEED, second, len(y) / SR, B_FROM_S - b_starts)]
    return path, truth


@pytest.fixture(scope="module")
def stretches(library, mix):
    return list(library.monitor(mix[0]))


def song_id(library, seed: int) -> str:
    (song,) = [s for s in library.tracks() if s.title == f"song{seed:02d}"]
    return song.song_id


def test_a_mix_with_a_stranger_in_the_middle_gives_the_right_stretches(library, mix, stretches):
    path, truth = mix
    assert len(stretches) == len(truth), [s.to_dict() for s in stretches]
    for stretch, (seed, start, end, anchor) in zip(stretches, truth):
        if seed is None:
            assert stretch.song is None
        else:
            assert stretch.song is not None and stretch.song.song_id == song_id(library, seed)
            assert stretch.offset_s == pytest.approx(anchor + stretch.start_s, abs=1.0)  # where in the song
            assert stretch.score > 0.5  # above the "unknown" bar
        assert stretch.start_s == pytest.approx(start, abs=1.0)
        assert stretch.end_s == pytest.approx(end, abs=1.0)
    # the stretches tile the recording
    assert stretches[0].start_s == 0.0 and stretches[-1].end_s == pytest.approx(audio_seconds(path), abs=0.01)
    assert all(s.end_s == t.start_s for s, t in zip(stretches, stretches[1:]))


def test_the_json_contract(stretches, mix):
    for stretch in stretches:
        d = stretch.to_dict()
        assert {"recording", "start_s", "end_s", "match"} <= set(d)
        assert d["recording"] == str(mix[0].resolve())
        if d["match"] is not None:
            assert {"song_id", "path", "offset_s", "score"} <= set(d["match"])
        json.dumps(d)


# -- joining windows into stretches (hand-built answers) --------------------------------------------
def answers(*spec: str, anchors: dict[str, float] | None = None) -> list[WindowAnswer]:
    """One window a second: "A" names song A (anchored at ``anchors``, 0 by default), "." nothing,
    "A+5" song A anchored 5 s later, "a" nothing but song A among the candidates."""
    out = []
    for i, s in enumerate(spec):
        song, _, shift = s.partition("+")
        anchor = (anchors or {}).get(song.upper(), 0.0) + float(shift or 0)
        if song == ".":
            out.append(WindowAnswer(float(i), None))
        elif song.islower():
            out.append(WindowAnswer(float(i), None, near=((song.upper(), anchor),)))
        else:
            out.append(WindowAnswer(float(i), song, anchor, 0.8, ((song, anchor),)))
    return out


def runs(spec: str, **kw) -> list[tuple[str | None, int, int]]:
    return [(r.song_id, r.first, r.last) for r in segment(answers(*spec.split()), MonitorConfig(**kw))]


def test_a_stray_window_does_not_split_a_stretch():
    assert runs("A A A B A A A") == [("A", 0, 6)]
    assert runs("A A A . B A A") == [("A", 0, 6)]
    assert runs("A A A A+9 A A") == [("A", 0, 5)]  # same song, elsewhere in it, once
    assert runs("A A A B B A A") == [("A", 0, 6)]  # a song opens with 3 agreeing windows
    assert runs("A A A B B A A", min_windows=2) == [("A", 0, 2), ("B", 3, 4), ("A", 5, 6)]


def test_songs_and_gaps():
    assert runs("A A A . . . . B B B") == [("A", 0, 2), (None, 3, 6), ("B", 7, 9)]
    assert runs("A A A . . B B B") == [("A", 0, 3), ("B", 4, 7)]  # two strays: one each
    assert runs("A A A A+20 A+20 A+20") == [("A", 0, 2), ("A", 3, 5)]  # the song again, from elsewhere
    # stray songs that never agree are "no match" too
    assert runs("A A A C . D . E B B B", gap_s=3.0) == [("A", 0, 2), (None, 3, 7), ("B", 8, 10)]
    assert runs(". . . . .") == [(None, 0, 4)]
    assert runs("A") == [("A", 0, 0)]
    assert runs("") == []


def test_edges_move_over_windows_that_hear_the_song_below_the_bar():
    assert runs("A A A a . . . b B B B") == [("A", 0, 3), (None, 4, 6), ("B", 7, 10)]
    assert runs("A A A a+9 . . . B B B") == [("A", 0, 2), (None, 3, 6), ("B", 7, 9)]  # elsewhere in A: no


def test_segment_holds_few_answers():
    """Runs come out as the next one opens, not at the end: a long recording is never held."""
    def endless():
        for i in range(10**6):
            yield WindowAnswer(float(i), "AB"[(i // 50) % 2], 0.0, 0.8)
    first_three = []
    for run in segment(endless()):
        first_three.append((run.song_id, run.first, run.last))
        if len(first_three) == 3:
            break
    assert first_three == [("A", 0, 49), ("B", 50, 99), ("A", 100, 149)]


# -- decoding and windows in bounded memory --------------------------------------------------------
def test_stream_audio_blocks_are_bounded_and_decode_like_load_audio(tmp_path):
    y = synth_song(7, 12.0)
    for name, sr in (("x.wav", 44100), ("x.mp3", 44100), ("x.flac", SR)):
        path = tmp_path / name
        sf.write(path, load_audio_at(y, sr), sr)
        blocks = list(stream_audio(path, block_s=2.0))
        assert all(b.dtype == np.float32 and 0 < len(b) <= 2.0 * SR for b in blocks)
        whole, streamed = load_audio(path), np.concatenate(blocks)
        assert len(streamed) == len(whole)
        assert np.abs(streamed - whole).max() < 1e-3


def load_audio_at(y: np.ndarray, sr: int) -> np.ndarray:
    from tuneprint.encoder.audio import to_rate

    return to_rate(y, SR, sr)


def test_stream_audio_refuses_bad_input_before_the_first_block(tmp_path):
    text = tmp_path / "notes.mp3"
    text.write_text("not audio\n" * 20)
    for bad in (tmp_path / "missing.wav", text):
        with pytest.raises(UnreadableAudioError):
            next(stream_audio(bad))


def test_windows_are_cut_in_bounded_memory():
    """10 minutes of audio streamed through the window cutter: every window is whole and at its
    hop, and the cutter holds about a window and a block, never the recording."""
    block, minutes = SR, 10

    def blocks():
        for i in range(60 * minutes):
            yield np.full(block, i, np.float32)
    cutter = _Windows(4.0, 1.0, SR)
    tracemalloc.start()
    count = 0
    for start, window in cutter.cut(blocks()):
        assert len(window) == 4 * SR and start == count * SR and window[0] == count
        count += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 60 * minutes - 3
    assert cutter.seen == 60 * minutes * SR
    assert peak < 10 * (4 + 1) * SR * 4  # bytes: a few windows' worth; the recording is 53 MB


def test_a_recording_shorter_than_a_window():
    (only,) = list(_Windows(4.0, 1.0, SR, least_s=1.0).cut([np.ones(2 * SR, np.float32)]))
    assert only[0] == 0 and len(only[1]) == 2 * SR
    with pytest.raises(TooShortError):
        list(_Windows(4.0, 1.0, SR, least_s=1.0).cut([np.ones(SR // 2, np.float32)]))


# -- the command ----------------------------------------------------------------------------------
def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_defaults_are_the_library_defaults():
    assert (monitor_command.WINDOW_S, monitor_command.HOP_S) == (MonitorConfig.window_s, MonitorConfig.hop_s)


def test_cli_json_gives_one_object_per_stretch(capsys, library_path, library, mix):
    rc, out, err = run(capsys, "monitor", "--library", library_path, "--json", "--hop", "2", mix[0])
    assert rc == EXIT_OK, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["match"] and d["match"]["song_id"] for d in lines] == [song_id(library, A_SEED), None,
                                                                    song_id(library, B_SEED)]
    for d in lines:
        assert {"recording", "start_s", "end_s", "match"} <= set(d)


def test_cli_text_and_a_bad_file(capsys, library_path, library, tmp_path):
    clip = tmp_path / "short.wav"
    sf.write(clip, cut(synth_song(A_SEED), 6.0, 7.0), SR)
    bad = tmp_path / "notes.ogg"
    bad.write_text("not audio\n" * 20)
    rc, out, err = run(capsys, "monitor", "--library", library_path, clip, bad)
    assert rc == EXIT_PARTIAL
    assert f"{clip}:" in out
    (line,) = [line for line in out.splitlines() if line.startswith("  ")]
    assert line.strip().startswith("0:00:00.0–0:00:07.0  song02 [") and "at 0:06" in line and "confidence" in line
    assert "notes.ogg" in err and "error" in err
    assert "2 recordings" in out


# -- the benchmark's mixes and scores (server/evaluation/monitor.py) --------------------------------
def test_benchmark_mix_truth_and_a_perfect_score(tmp_path):
    from tuneprint.index.catalog import Song
    from tuneprint.server.answers import Stretch
    from tuneprint.server.evaluation.monitor import MonitorBenchmarkConfig, make_mix, score_mix

    files = {}
    for seed in (1, 2, 3, 100):
        files[seed] = tmp_path / f"s{seed}.wav"
        sf.write(files[seed], synth_song(seed, 12.0), SR)
    members = [(f"id{seed}", str(files[seed])) for seed in (1, 2, 3)]
    cfg = MonitorBenchmarkConfig(songs_per_mix=3, excerpt_s=(6.0, 9.0), crossfade_s=(1.0, 2.0), gap_chance=1.0,
                                 gap_s=(4.0, 6.0), talk_chance=1.0, talk_s=(1.0, 2.0))
    noise = [np.random.default_rng(0).standard_normal(SR).astype(np.float32)]
    y, truth = make_mix(np.random.default_rng(3), members, [(str(files[100]), "x")], noise, cfg, SR)
    assert [p.song_id is None for p in truth] == [False, True] * 3
    assert truth[0].start_s == 0.0 and truth[-1].end_s == pytest.approx(len(y) / SR)
    assert all(p.end_s == q.start_s for p, q in zip(truth, truth[1:]))
    # the anchor places the song: in a part's clean middle, the mix sounds like the song there (plus talk-over)
    first = truth[0]
    song = load_audio(files[int(first.song_id[2:])])
    t = (first.start_s + first.end_s) / 2
    mixed, original = cut(y, t, 0.5), cut(song, t + first.anchor_s, 0.5)
    assert np.corrcoef(mixed, original)[0, 1] > 0.5

    said = [Stretch("mix", p.start_s, p.end_s, Song(p.song_id, "", None, None, 1.0, "") if p.song_id else None,
                    p.anchor_s + p.start_s if p.song_id else None, 0.9, 1, 1) for p in truth]
    scores = score_mix(truth, said, len(y) / SR)
    assert scores["right"] == scores["points"] and max(scores["boundary_errors"]) == 0.0
    assert scores["stray_boundaries"] == 0 and max(scores["offset_errors"]) < 1e-6
    late = [replace(s, start_s=s.start_s + 0.5 if s.start_s else 0.0) for s in said]
    assert score_mix(truth, late, len(y) / SR)["boundary_errors"] == pytest.approx([0.5] * (len(truth) - 1))
