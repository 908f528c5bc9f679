#!/usr/bin/env python3
"""Real recorded noise the encoder never heard: everyday sounds and people talking.

Training mixes game sound effects (``data/corpus/noise``) and synthetic babble into its views.
A phone in a room hears other things. Tux Paint's stamp collection (Debian package
``tuxpaint-stamps-default``, GPL-2, 161 MB) holds real recordings of household machines, tools,
vehicles, animals, instruments and fireworks, and thousands of spoken descriptions recorded by
people in a dozen languages. No training, tuning or calibration uses this package. This writes,
for benchmarks only:

- ``--out``/noise-world/: the everyday sounds (every stamp sound but the spoken ones), one file each;
- ``--out``/noise-world-speech/: ``--babble-files`` files of ``--seconds``, each 4–7 recorded
  voices talking at once (real cafe babble).

    python scripts/fetch_world_noise.py
    python scripts/benchmark.py --noise-dir data/corpus/noise-world --out docs/BENCHMARKS.md
    python scripts/benchmark.py --noise-dir data/corpus/noise-world-speech --out docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from tuneprint.encoder.audio import load_audio
from fetch_corpus import MAX_NOISE_SECONDS, download, duration, extract, package_root, write_atomically
from make_babble import crowd, excerpt

log = logging.getLogger("fetch_world_noise")
PACKAGE = "tuxpaint-stamps-default"
SR = 22050


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/corpus"), help="corpus folder (default data/corpus)")
    p.add_argument("--cache", type=Path, default=Path("data/debs"), help="where .deb files are kept")
    p.add_argument("--babble-files", type=int, default=24)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    raw = args.cache / "raw"
    extract(download(PACKAGE, args.cache), raw)
    files = package_root(raw, PACKAGE)
    spoken = [f for f in files if "_desc" in f.name or "symbols" in f.parts]  # descriptions, spoken numbers
    things = [f for f in files if f not in set(spoken) and 0.2 <= duration(f) <= MAX_NOISE_SECONDS]
    write_atomically(args.out / "noise-world", lambda d: copy_sounds(things, d))
    voices = [f for f in spoken if "_desc" in f.name]
    write_atomically(args.out / "noise-world-speech",
                     lambda d: write_babble(voices, d, args.babble_files, args.seconds, np.random.default_rng(args.seed)))
    return 0


def copy_sounds(files: list[Path], folder: Path) -> None:
    seen = set()
    for f in files:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()[:10]
        if digest not in seen:
            seen.add(digest)
            shutil.copy2(f, folder / f"{digest}{f.suffix.lower()}")


def write_babble(voices: list[Path], folder: Path, count: int, seconds: float, rng: np.random.Generator) -> None:
    """Each file: 4–7 speakers, each reading random descriptions back to back from a random point."""
    n = int(seconds * SR)

    def talk() -> np.ndarray:
        readings = rng.choice(len(voices), size=8, replace=False)
        return excerpt(np.concatenate([load_audio(voices[j], sr=SR) for j in readings]), n, rng)

    for i in range(count):
        sf.write(folder / f"speech{i:02d}.wav", crowd(int(rng.integers(4, 8)), talk, rng), SR)


if __name__ == "__main__":
    sys.exit(main())
