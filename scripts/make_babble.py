#!/usr/bin/env python3
"""Cafe babble the encoder never heard: several synthetic voices (espeak-ng) talking at once.

Training mixes the corpus's recorded sounds (``data/corpus/noise``) into its views, so a
benchmark with those sounds measures songs never trained on, but not noise never trained on.
This writes ``--out`` (default ``data/corpus/noise-babble``): ``--files`` WAVs of ``--seconds``,
each the sum of 3–6 voices (languages, pitches and speeds drawn at random) reading sentences.

``--split train`` writes babble for *training* that shares no voice and no sentence with the
test babble: other espeak-ng languages, the flite engine's voices, and other sentences. A
benchmark on the test babble then still measures speech the encoder never heard.

    apt-get install espeak-ng flite
    python scripts/make_babble.py                      # test babble: data/corpus/noise-babble
    python scripts/make_babble.py --split train --out data/corpus/noise-train-speech --files 60 --seed 101
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

from tuneprint.encoder.audio import load_audio
from fetch_corpus import write_atomically

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
# Training babble: disjoint voices (other languages, and another synthesis engine) and sentences.
TRAIN_VOICES = ("en-gb-scotland", "en-029", "ru", "cs", "fi", "hu", "el", "ro", "da", "ca", "hr", "id", "tr", "af")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
TRAIN_SENTENCES = (
    "Two more minutes and the soup is ready, go and wash your hands.",
    "The printer on the second floor has been broken since Monday.",
    "If it rains tomorrow we can still go to the museum instead.",
    "He finally fixed the bicycle, but now the bell does not ring.",
    "Our neighbours have a dog that barks at every single bird.",
    "I read somewhere that the bridge will be closed all summer.",
    "Put the boxes by the door, we will carry them down later.",
    "Nobody told me the shop closes early on Saturdays now.",
    "The garden looks wonderful after all that work in April.",
    "Let us meet at the station and take the bus from there.",
    "Her sister plays the violin in a small orchestra downtown.",
    "Do you remember the name of that film with the long chase?",
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/corpus/noise-babble"))
    p.add_argument("--files", type=int, default=24)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="test: the benchmark's babble; train: other voices, engines and sentences")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for tool in ("espeak-ng",) + (("flite",) if args.split == "train" else ()):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: apt-get install {tool}")

    rng = np.random.default_rng(args.seed)
    sr, n = 22050, int(args.seconds * 22050)

    def fill(folder: Path) -> None:
        for i in range(args.files):
            mix = crowd(int(rng.integers(3, 7)), lambda: speak(rng, sr, n, args.split), rng)
            sf.write(folder / f"babble{i:02d}.wav", mix, sr)

    write_atomically(args.out, fill)
    return 0


def crowd(voices: int, next_voice, rng: np.random.Generator) -> np.ndarray:
    """``voices`` excerpts from ``next_voice()`` at random levels, summed and peak-normalised to 0.9."""
    mix = None
    for _ in range(voices):
        voice = next_voice()
        mix = (0 if mix is None else mix) + voice * rng.uniform(0.3, 1.0) / (np.abs(voice).max() + 1e-9)
    return (0.9 * mix / (np.abs(mix).max() + 1e-9)).astype(np.float32)


def excerpt(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``y`` (looped) from a random point."""
    y = np.tile(y, int(np.ceil(2 * n / max(len(y), 1))))
    start = int(rng.integers(0, len(y) - n))
    return y[start : start + n]


def speak(rng: np.random.Generator, sr: int, n: int, split: str = "test") -> np.ndarray:
    """One voice reading random sentences for at least ``n`` samples, starting at a random point."""
    text = " ".join(rng.choice(SENTENCES if split == "test" else TRAIN_SENTENCES, size=8))
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "voice.wav"
        if split == "train" and rng.random() < 0.5:
            command = ["flite", "-voice", str(rng.choice(FLITE_VOICES)),
                       "--setf", f"duration_stretch={rng.uniform(0.8, 1.25):.2f}",
                       "--setf", f"int_f0_target_mean={int(rng.integers(90, 220))}", "-t", text, "-o", str(wav)]
        else:
            command = ["espeak-ng", "-v", str(rng.choice(VOICES if split == "test" else TRAIN_VOICES)),
                       "-p", str(int(rng.integers(20, 80))), "-s", str(int(rng.integers(140, 200))), "-w", str(wav), text]
        subprocess.run(command, check=True, capture_output=True)
        return excerpt(load_audio(wav, sr=sr), n, rng)


if __name__ == "__main__":
    sys.exit(main())
