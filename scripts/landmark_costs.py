#!/usr/bin/env python3
"""What landmarks cost (encoder/landmarks.py, index/landmarks.py): ingest speed with and without them,
their bytes on disk and in memory per minute of audio, the index's build time, and a search's time.

    python scripts/landmark_costs.py --corpus data/corpus --songs 20 --out docs/BENCHMARKS.md

The songs are the corpus's test songs (the first --songs of them); each library is built twice
(``LibrarySettings(landmarks=True / False)``) and the faster of two builds is kept.
"""
from __future__ import annotations

import argparse
import logging
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    p.add_argument("--songs", type=int, default=20)
    p.add_argument("--out", type=Path, help="markdown file to write the section into")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from tuneprint.encoder.audio import load_audio
    from tuneprint.encoder.landmarks import landmarks
    from tuneprint.index.landmarks import LandmarkIndex
    from tuneprint.server.evaluation.corpus import split_corpus
    from tuneprint.server.evaluation.markdown import machine, write_section
    from tuneprint.server.library import Library, LibrarySettings

    files = [path for path, _ in split_corpus(args.corpus)["test"]][: args.songs]
    audio_min = sum(len(load_audio(f, sr=8000)) for f in files) / 8000 / 60
    tmp = Path(tempfile.mkdtemp(prefix="tuneprint-landmarks-"))
    add_s = {}
    try:
        for on in (False, True, False, True):
            shutil.rmtree(tmp / "lib", ignore_errors=True)
            with Library.create(tmp / "lib", LibrarySettings(landmarks=on)) as lib:
                started = time.perf_counter()
                lib.add(files, allow_non_music=True)
                add_s[on] = min(add_s.get(on, np.inf), time.perf_counter() - started)
        with Library.open(tmp / "lib") as lib:
            songs, pairs, stored = lib.catalog.landmark_counts()
            started = time.perf_counter()
            index = LandmarkIndex(*lib.catalog.landmarks())
            build_s = time.perf_counter() - started
            rng = np.random.default_rng(0)
            search_ms = []
            for f in files:
                y = load_audio(f, sr=lib.features.sample_rate)
                start = int(rng.uniform(0, len(y) - 3 * lib.features.sample_rate))
                clip = y[start : start + 3 * lib.features.sample_rate]
                started = time.perf_counter()
                index.search(landmarks(clip, lib.features.sample_rate))
                search_ms.append(1e3 * (time.perf_counter() - started))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join([
        f"- command: `python scripts/landmark_costs.py --corpus {args.corpus} --songs {args.songs}`",
        f"- machine: {machine()}",
        f"- date: {date.today().isoformat()}",
        "",
        f"{len(files)} test songs of the corpus, {audio_min:.1f} minutes of audio.",
        "",
        "| what | figure |",
        "| --- | --- |",
        f"| `add`, without landmarks | {add_s[False]:.1f} s ({audio_min * 60 / add_s[False]:.0f}× real time) |",
        f"| `add`, with landmarks | {add_s[True]:.1f} s ({audio_min * 60 / add_s[True]:.0f}× real time) |",
        f"| peak pairs | {pairs} ({pairs / audio_min / 60:.0f} a second of audio) |",
        f"| on disk (catalog, compressed) | {stored / audio_min / 1e3:.1f} kB a minute of audio ({stored / max(pairs, 1):.2f} bytes a pair) |",
        f"| in memory once searched (`LandmarkIndex`) | {index.nbytes / audio_min / 1e3:.0f} kB a minute of audio |",
        f"| building the index from the catalog | {build_s * 1e3:.0f} ms ({build_s / audio_min * 1e3:.1f} ms a minute of audio) |",
        f"| landmarks of a 3-s clip + search, median | {np.median(search_ms):.1f} ms |",
    ])
    print(text)
    if args.out:
        write_section(args.out, "landmark-costs", "Landmarks: what they cost", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
