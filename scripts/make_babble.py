#!/usr/bin/env python3
"""Cafe babble the encoder never heard: several synthetic voices (espeak-ng) talking at once.

Training mixes the corpus's recorded sounds (``data/corpus/noise``) into its views, so a
benchmark with those sounds measures songs never trained on, but not noise never trained on.
This writes ``--out`` (default ``data/corpus/noise-babble``): ``--files`` WAVs of ``--seconds``,
each the sum of 3–6 voices (languages, pitches and speeds drawn at random) reading sentences.

    apt-get install espeak-ng
    python scripts/make_babble.py
    python scripts/benchmark.py --noise-dir data/corpus/noise-babble --out docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from encoder.audio import load_audio

log = logging.getLogger("make_babble")
VOICES = ("en", "en-us", "de", "fr", "es", "it", "nl", "pl", "pt", "sv")
SENTENCES = (
    "Did you see the match last night, it went on until the very end.",
    "I will have a coffee and a piece of the apple cake, please.",
    "The train was late again, so we walked the last part of the way.",
    "She said the meeting moved to Thursday afternoon at three.",
    "Could you pass me the salt and the pepper, thank you.",
    "We should book the tickets before the prices go up again.",
    "My brother is moving to the coast next spring with his family.",
    "The new place around the corner makes the best noodles in town.",
    "Honestly I have no idea where I left my keys this morning.",
    "They are painting the whole building, it will take weeks.",
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/corpus/noise-babble"))
    p.add_argument("--files", type=int, default=24)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed: apt-get install espeak-ng")

    rng = np.random.default_rng(args.seed)
    sr = 22050
    tmp = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i in range(args.files):
        n = int(args.seconds * sr)
        mix = np.zeros(n, dtype=np.float32)
        for _ in range(int(rng.integers(3, 7))):
            voice = speak(rng, sr, n)
            mix += voice * rng.uniform(0.3, 1.0) / (np.abs(voice).max() + 1e-9)
        sf.write(tmp / f"babble{i:02d}.wav", 0.9 * mix / (np.abs(mix).max() + 1e-9), sr)
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    log.info("wrote %d babble files of %.0f s to %s", args.files, args.seconds, args.out)
    return 0


def speak(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """One voice reading random sentences for at least ``n`` samples, starting at a random point."""
    text = " ".join(rng.choice(SENTENCES, size=8))
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "voice.wav"
        subprocess.run(["espeak-ng", "-v", str(rng.choice(VOICES)), "-p", str(int(rng.integers(20, 80))),
                        "-s", str(int(rng.integers(140, 200))), "-w", str(wav), text], check=True, capture_output=True)
        y = load_audio(wav, sr=sr)
    y = np.tile(y, int(np.ceil(2 * n / len(y))))
    start = int(rng.integers(0, len(y) - n))
    return y[start : start + n]


if __name__ == "__main__":
    sys.exit(main())
