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
import logging
import sys
from pathlib import Path

from tuneprint.server.evaluation.noise import fetch_world_noise


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/corpus"), help="corpus folder (default data/corpus)")
    p.add_argument("--cache", type=Path, default=Path("data/debs"), help="where .deb files are kept")
    p.add_argument("--babble-files", type=int, default=24)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fetch_world_noise(args.out, args.cache, babble_files=args.babble_files, seconds=args.seconds, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
