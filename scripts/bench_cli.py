"""How fast the command line starts and adds: `tuneprint --help` and `tuneprint stats`, cold and
warm (median of --runs), and `tuneprint add --jobs N` throughput on corpus files.

Cold: before each run the page cache of the Python installation, the repository and the library
is dropped for those files (posix_fadvise DONTNEED: no root needed), so imports read the disk.
Warm: the same command ran just before.

    python scripts/bench_cli.py                      # 10 runs, 8 corpus files, --jobs 1 and 2
    python scripts/bench_cli.py --no-write --files 4 # print only
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from tuneprint.server.evaluation.markdown import write_section

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus", help="fetched corpus (manifest.csv)")
    parser.add_argument("--files", type=int, default=8, help="corpus files added per run (default 8)")
    parser.add_argument("--jobs", default="1,2", help="values of add --jobs to compare (default 1,2)")
    parser.add_argument("--add-runs", type=int, default=3, help="runs of each add (default 3; the median is kept)")
    parser.add_argument("--runs", type=int, default=10, help="runs of each start-up command (default 10)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    args = parser.parse_args(argv)

    exe = shutil.which("tuneprint") or str(Path(sys.executable).with_name("tuneprint"))
    files, audio_s = corpus_files(args.corpus, args.files)
    jobs = [int(j) for j in args.jobs.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        adds: dict[int, list[float]] = {j: [] for j in jobs}
        for run in range(args.add_runs):  # interleaved, so that a change in the machine's load hits every --jobs
            for j in jobs:
                adds[j].append(measure_add(exe, files, Path(tmp) / f"lib-{j}-{run}", j))
                print(f"add --jobs {j}, run {run + 1}: {adds[j][-1]:.1f} s", file=sys.stderr)
        library = Path(tmp) / f"lib-{jobs[0]}-0"
        starts = {name: measure_start(exe, argv_, library, args.runs)
                  for name, argv_ in (("tuneprint --help", ["--help"]),
                                      ("tuneprint stats --library LIB", ["stats", "--library", str(library)]))}
    body = report(starts, adds, len(files), audio_s, args.runs, args.add_runs)
    if args.no_write:
        print(body)
    else:
        write_section(args.out, "cli", "Command line: start-up and add --jobs", body)
        print(f"wrote the section 'cli' of {args.out}\n\n{body}")
    return 0


def corpus_files(corpus: Path, n: int) -> tuple[list[Path], float]:
    """``n`` files spread evenly over the corpus manifest (every collection, short and long songs)."""
    with open(corpus / "manifest.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["path"])
    if not rows:
        raise SystemExit(f"{corpus}: empty manifest; fetch the corpus with scripts/fetch_corpus.py")
    picked = [rows[round(i * (len(rows) - 1) / max(n - 1, 1))] for i in range(min(n, len(rows)))]
    return [corpus / r["path"] for r in picked], sum(float(r["seconds"]) for r in picked)


def measure_add(exe: str, files: list[Path], library: Path, jobs: int) -> float:
    """Wall seconds of `tuneprint add --jobs JOBS` of ``files`` into the new library ``library``."""
    started = time.perf_counter()
    subprocess.run([exe, "add", "--library", str(library), "--jobs", str(jobs), *map(str, files)],
                   check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def measure_start(exe: str, argv: list[str], library: Path, runs: int) -> dict[str, list[float]]:
    """Wall seconds of ``tuneprint ARGV``, cold and warm, ``runs`` of each."""
    cold, warm = [], []
    for _ in range(runs):
        evict([Path(sys.prefix), Path(sys.base_prefix), Path(sysconfig.get_paths()["stdlib"]), ROOT, library])
        cold.append(timed([exe, *argv]))
    timed([exe, *argv])
    for _ in range(runs):
        warm.append(timed([exe, *argv]))
    return {"cold": cold, "warm": warm}


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def evict(folders: list[Path]) -> None:
    """Drop the page cache of every file under ``folders`` (what a cold start reads again)."""
    for folder in folders:
        for dirpath, _, names in os.walk(folder):
            for name in names:
                try:
                    fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                except OSError:
                    pass
                finally:
                    os.close(fd)


def report(starts: dict, adds: dict[int, list[float]], n_files: int, audio_s: float, runs: int, add_runs: int) -> str:
    lines = [f"Start-up, median of {runs} runs (cold: the page cache of Python, the packages and the "
             "repository dropped before each run):", "",
             "| command | cold | warm |", "| --- | --- | --- |"]
    for name, t in starts.items():
        lines.append(f"| `{name}` | {statistics.median(t['cold']):.2f} s | {statistics.median(t['warm']):.2f} s |")
    base = statistics.median(next(iter(adds.values())))
    lines += ["", f"`tuneprint add` of {n_files} corpus files ({audio_s / 60:.1f} min of audio) into a new library, "
              f"median of {add_runs} runs (model loading included):", "",
              "| --jobs | wall | files/s | × real time | speed-up |", "| --- | --- | --- | --- | --- |"]
    for jobs, t in adds.items():
        m = statistics.median(t)
        lines.append(f"| {jobs} | {m:.1f} s | {n_files / m:.2f} | {audio_s / m:.0f}× | {base / m:.2f}× |")
    lines += ["", "Each run (s): " + "; ".join(f"add --jobs {j}: {', '.join(f'{x:.1f}' for x in t)}"
                                           for j, t in adds.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
