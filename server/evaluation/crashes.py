"""Crash and concurrency harness (scripts/crash_harness.py): real `tuneprint` processes killed at
random moments, run two at a time, and writing while `tuneprint serve` holds the library open.

Every run is judged on the library it leaves: it must open (or not exist at all, when the kill came
before its creation finished), hold every song a process reported "added", store no recording
twice, and a re-run of the same `add` must complete it.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneprint.errors import TuneprintError

from .corpus import read_manifest

log = logging.getLogger(__name__)
TOKEN = "harness-token"


@dataclass(frozen=True)
class CrashConfig:
    songs: int = 12  # the shortest songs of the corpus: many commits per run
    commit_every: int = 2  # files per commit in the harness's adds: kills land between and inside commits
    kills: int = 50
    pairs: int = 20
    serve_runs: int = 10
    seed: int = 7


@dataclass
class HarnessResults:
    runs: dict[str, int] = field(default_factory=dict)  # kind → runs
    unusable: int = 0  # libraries that did not open after a run
    lost: int = 0  # songs reported "added" that the library then lacked
    duplicates: int = 0  # recordings stored twice
    incomplete: int = 0  # re-runs of the same add that did not end with every song
    busy_exits: int = 0  # adds that gave up with "library is busy" (allowed; counted)
    reported_added: int = 0
    kill_points_s: list[float] = field(default_factory=list)
    found_by_server: int = 0  # songs added by the CLI that the running server then identified
    notes: list[str] = field(default_factory=list)


def run_harness(corpus: Path, cfg: CrashConfig, work: Path | None = None) -> HarnessResults:
    files = shortest_songs(corpus, cfg.songs)
    work = Path(work or tempfile.mkdtemp(prefix="tuneprint-crash-"))
    rng = np.random.default_rng(cfg.seed)
    results = HarnessResults()
    full_add_s = _timed_add(work / "timing", files, cfg)
    log.info("a full add of %d songs takes %.1f s; kills fall in [0, %.1f] s", len(files), full_add_s, full_add_s)
    for i in range(cfg.kills):
        kill_run(work / f"kill{i}", files, float(rng.uniform(0.0, full_add_s)), cfg, results)
    for i in range(cfg.pairs):
        pair_run(work / f"pair{i}", files, rng, cfg, results)
    for i in range(cfg.serve_runs):
        serve_run(work / f"serve{i}", files, rng, cfg, results)
    shutil.rmtree(work, ignore_errors=True)
    return results


def shortest_songs(corpus: Path, n: int) -> list[Path]:
    """The ``n`` shortest songs of the corpus (short songs: many commits, and quick runs)."""
    import soundfile as sf

    paths = [Path(path) for path, _ in read_manifest(corpus)]
    return sorted(paths, key=lambda p: (sf.info(str(p)).duration, str(p)))[:n]


def tuneprint_cmd(*args: str) -> list[str]:
    exe = Path(sys.executable).parent / "tuneprint"
    return [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "tuneprint.server.cli"]), *args]


def start_add(library: Path, files: list[Path], cfg: CrashConfig) -> subprocess.Popen:
    # --allow-non-music: the corpus's one spoken track is not what this harness is about
    return subprocess.Popen(tuneprint_cmd("add", "--library", str(library), "--json", "--allow-non-music",
                                          "--commit-every", str(cfg.commit_every), *map(str, files)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def reported(stdout: str) -> set[str]:
    """Song ids a process reported "added" (JSON lines; a line cut by the kill is ignored)."""
    ids = set()
    for line in stdout.splitlines():
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if answer.get("status") == "added":
            ids.add(answer["song_id"])
    return ids


def _timed_add(library: Path, files: list[Path], cfg: CrashConfig) -> float:
    started = time.monotonic()
    out, err = start_add(library, files, cfg).communicate(timeout=1800)
    if len(reported(out)) != len(files):
        raise TuneprintError(f"the reference add did not add every song: {err[-500:]}")
    return time.monotonic() - started


def judge(library: Path, promised: set[str], files: list[Path], cfg: CrashConfig, results: HarnessResults) -> None:
    """Check the library a run left, then re-run the add and check it ends complete."""
    from tuneprint.server.library import Library

    results.reported_added += len(promised)
    if not (library / "settings.json").is_file():
        if promised:
            results.lost += len(promised)
            results.notes.append(f"{library.name}: no library, yet {len(promised)} songs were reported added")
        if library.exists() and any(library.iterdir()):
            results.unusable += 1
            results.notes.append(f"{library.name}: a folder without settings.json was left behind")
        return
    try:
        with Library.open(library) as lib:
            songs = lib.tracks()
    except TuneprintError as e:
        results.unusable += 1
        results.notes.append(f"{library.name}: {e}")
        return
    stored = {s.song_id for s in songs}
    results.lost += len(promised - stored)
    results.duplicates += len(songs) - len({s.audio_hash for s in songs})
    out, _ = start_add(library, files, cfg).communicate(timeout=1800)
    with Library.open(library) as lib:
        if len(lib.tracks()) != len(files) or len(lib.index) != lib.catalog.counts()["snippets"]:
            results.incomplete += 1


def kill_run(library: Path, files: list[Path], after_s: float, cfg: CrashConfig, results: HarnessResults) -> None:
    proc = start_add(library, files, cfg)
    try:
        proc.wait(timeout=after_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    results.runs["kill"] = results.runs.get("kill", 0) + 1
    results.kill_points_s.append(after_s)
    judge(library, reported(out), files, cfg, results)


def pair_run(library: Path, files: list[Path], rng: np.random.Generator, cfg: CrashConfig,
             results: HarnessResults) -> None:
    """Two adds of overlapping halves at once, into one library (new in odd runs, existing in even)."""
    order = rng.permutation(len(files))
    first, second = [files[i] for i in order[: 2 * len(files) // 3]], [files[i] for i in order[len(files) // 3 :]]
    if results.runs.get("pair", 0) % 2 == 0:
        start_add(library, files[:1], cfg).communicate(timeout=600)
    procs = [start_add(library, part, cfg) for part in (first, second)]
    outputs = [p.communicate(timeout=1800) for p in procs]
    results.busy_exits += sum("busy" in err for _, err in outputs)
    promised = [reported(out) for out, _ in outputs]
    results.runs["pair"] = results.runs.get("pair", 0) + 1
    if promised[0] & promised[1]:
        results.duplicates += len(promised[0] & promised[1])
        results.notes.append(f"{library.name}: both adds reported {len(promised[0] & promised[1])} same songs added")
    judge(library, promised[0] | promised[1], files, cfg, results)


def serve_run(library: Path, files: list[Path], rng: np.random.Generator, cfg: CrashConfig,
              results: HarnessResults) -> None:
    """`serve` holds the library; the CLI adds songs; the server must find them; an HTTP DELETE follows."""
    half = len(files) // 2
    start_add(library, files[:half], cfg).communicate(timeout=1800)
    server = subprocess.Popen(tuneprint_cmd("serve", "--library", str(library), "--port", "0"),
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "TUNEPRINT_TOKEN": TOKEN})
    try:
        url = _server_url(server)
        out, _ = start_add(library, files[half:], cfg).communicate(timeout=1800)
        added = sorted(reported(out))
        for song_id in added[:2]:
            results.found_by_server += _server_finds(url, library, song_id)
        victim = added[int(rng.integers(len(added)))] if added else None
        if victim:
            request = urllib.request.Request(f"{url}tracks/{victim}", method="DELETE",
                                             headers={"Authorization": f"Bearer {TOKEN}"})
            urllib.request.urlopen(request, timeout=60).read()
    finally:
        server.terminate()
        server.wait(timeout=60)
    results.runs["serve"] = results.runs.get("serve", 0) + 1
    promised = set(added) - {victim}
    judge(library, promised, files, cfg, results)


def _server_url(server: subprocess.Popen) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        found = re.search(r"(http://[\w.\-\[\]:]+/)", line)
        if found:
            return found.group(1)
        if server.poll() is not None:
            break
    raise TuneprintError("tuneprint serve did not start")


def _server_finds(url: str, library: Path, song_id: str) -> bool:
    """Whether the server identifies a clip of a song another process added after it started."""
    import io

    import soundfile as sf

    from tuneprint.encoder.audio import load_audio
    from tuneprint.server.library import Library

    with Library.open(library, load_encoder=False) as lib:
        path = lib.song(song_id).path
    y = load_audio(path, sr=22050)
    buf = io.BytesIO()
    sf.write(buf, y[22050 * 5 : 22050 * 10], 22050, format="WAV")
    boundary = "harness"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + buf.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}identify", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    answer = json.loads(urllib.request.urlopen(request, timeout=120).read())
    return bool(answer.get("match")) and answer["match"]["song_id"] == song_id


def summary_markdown(results: HarnessResults, cfg: CrashConfig) -> str:
    runs = ", ".join(f"{n} × {kind}" for kind, n in results.runs.items())
    kills = np.array(results.kill_points_s) if results.kill_points_s else np.zeros(1)
    notes = "".join(f"\n  - {n}" for n in results.notes[:10]) or " none"
    served = results.runs.get("serve", 0) * 2
    return f"""
Runs: {runs}, each on the {cfg.songs} shortest songs of the corpus, `add --commit-every {cfg.commit_every}`
(kills fall {kills.min():.1f}–{kills.max():.1f} s into a run, library creation included).

| check | result |
| --- | --- |
| libraries that did not open after a run | **{results.unusable}** |
| songs reported "added" but missing | **{results.lost}** (of {results.reported_added} reported) |
| recordings stored twice | **{results.duplicates}** |
| re-runs of the same `add` that did not complete the library | {results.incomplete} |
| adds that gave up with "library is busy" | {results.busy_exits} |
| songs added by the CLI that the running server then identified | {results.found_by_server} of {served} |

Notes:{notes}
"""
