"""Noise the encoder never heard, for benchmarks: synthetic cafe babble and real recordings.

Training mixes the corpus's recorded game sounds (``noise/``) into its views, so a benchmark
with those sounds measures songs never trained on, but not noise never trained on. These
banks fill that gap:

- :func:`make_babble`: 3–6 synthetic voices (espeak-ng; also flite for training babble)
  reading sentences at once. ``split="train"`` makes babble for *training* that shares no
  voice and no sentence with the test babble (other espeak-ng languages, flite's voices,
  other sentences), so a benchmark on the test babble still measures speech never heard.
- :func:`fetch_world_noise`: Tux Paint's stamp collection (Debian package
  ``tuxpaint-stamps-default``, GPL-2, 161 MB): real recordings of household machines,
  tools, vehicles, animals, instruments and fireworks (``noise-world/``), and babble of
  4–7 recorded human voices in a dozen languages (``noise-world-speech/``). No training,
  tuning or calibration uses this package.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from tuneprint.encoder.audio import load_audio
from tuneprint.server.evaluation.corpus import (MAX_NOISE_SECONDS, download, duration, extract, package_root,
                                                write_atomically)

SR = 22050  # the rate the banks are written at, whatever the encoder's
WORLD_PACKAGE = "tuxpaint-stamps-default"
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


# -- mixing ----------------------------------------------------------------------------------
def crowd(voices: int, next_voice: Callable[[], np.ndarray], rng: np.random.Generator) -> np.ndarray:
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


# -- synthetic babble ------------------------------------------------------------------------
def missing_tools(split: str = "test") -> list[str]:
    """The speech synthesisers :func:`make_babble` needs for ``split`` that are not installed."""
    tools = ("espeak-ng",) + (("flite",) if split == "train" else ())
    return [tool for tool in tools if shutil.which(tool) is None]


def make_babble(out: Path, *, files: int = 24, seconds: float = 10.0, seed: int = 3, split: str = "test") -> None:
    """Write ``files`` WAVs ``babbleNN.wav`` of ``seconds`` into ``out``, each 3–6 synthetic voices at once."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)

    def fill(folder: Path) -> None:
        for i in range(files):
            mix = crowd(int(rng.integers(3, 7)), lambda: speak(rng, SR, n, split), rng)
            sf.write(folder / f"babble{i:02d}.wav", mix, SR)

    write_atomically(out, fill)


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


# -- real recordings -------------------------------------------------------------------------
def fetch_world_noise(out: Path, cache: Path, *, babble_files: int = 24, seconds: float = 10.0, seed: int = 5) -> None:
    """Write ``out/noise-world/`` (every stamp sound but the spoken ones) and ``out/noise-world-speech/``
    (``babble_files`` files of ``seconds``, each 4–7 recorded voices at once)."""
    raw = cache / "raw"
    extract(download(WORLD_PACKAGE, cache), raw)
    files = package_root(raw, WORLD_PACKAGE)
    spoken = [f for f in files if "_desc" in f.name or "symbols" in f.parts]  # descriptions, spoken numbers
    things = [f for f in files if f not in set(spoken) and 0.2 <= duration(f) <= MAX_NOISE_SECONDS]
    write_atomically(out / "noise-world", lambda d: copy_sounds(things, d))
    voices = [f for f in spoken if "_desc" in f.name]
    write_atomically(out / "noise-world-speech",
                     lambda d: write_babble(voices, d, babble_files, seconds, np.random.default_rng(seed)))


def copy_sounds(files: list[Path], folder: Path) -> None:
    """Copy each distinct file (by content) as ``<10 hash digits><ext>``."""
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
