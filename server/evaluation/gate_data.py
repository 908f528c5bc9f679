"""The clips the music / non-music gate learns from and is measured on, split by file and by package.

=========  ========================================  ==========================================
split      music (label 1)                           non-music (label 0)
=========  ========================================  ==========================================
train      train songs of the training collections   ``noise/`` files (80 % by file name),
           (:func:`corpus.split_corpus`)             speech of 11 training voices' languages,
                                                     synthetic noises, hums, drones, clicks
val        val songs of the training collections     the other 20 % of ``noise/`` files, speech
                                                     in 3 other languages, synthetic
test       test songs, and every song of the         ``noise-heldout/`` (packages never used in
           unseen collections                        training), speech in other languages,
                                                     voices and sentences, synthetic
=========  ========================================  ==========================================

Every clip lasts :attr:`GateDataConfig.clip_s`. Music clips are heard under each condition of
:mod:`.clips` (clean, noise, phone, reverb), the noise mixed in coming from the same split's
sounds and speech, so noisy or phoned music is still music. Non-music clips are single sounds
(files of at least 1 s, the shortest query), "sequences" (2–6 of the split's sounds, also the
short ones, scattered over a clip, as a game or a street sounds), speech (``espeak-ng``: a voice
reading three sentences) and synthetic sounds; each is heard under a random condition (every
condition for the held-out packages' single sounds).
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.augment import colored_noise, tonal_noise
from tuneprint.errors import AudioError

from .clips import ClipConfig, degrade_clip, noise_files
from .corpus import split_corpus
from .noise import SENTENCES, TRAIN_SENTENCES, TRAIN_VOICES, VOICES

log = logging.getLogger(__name__)

SR = 22050
SPLITS = ("train", "val", "test")
CONDITIONS = ("clean", "noise", "phone", "reverb")
CONDITION_SHARES = (0.4, 0.2, 0.2, 0.2)  # of non-music clips: mostly as recorded
# Speech voices: a language (espeak-ng voice) with a variant (timbre); no language, variant or
# sentence of the test voices is ever trained on.
SPEECH = {
    "train": (TRAIN_VOICES[:11], ("m1", "m3", "m5", "m7", "f1", "f3", "f5", "klatt", "klatt3", "croak", "antonio",
                                  "belinda", "edward", "grandpa", "iven", "linda", "max", "robert", "steph"),
              TRAIN_SENTENCES),
    "val": (TRAIN_VOICES[11:], ("m1", "m3", "f1", "f3", "klatt", "croak"), TRAIN_SENTENCES),
    "test": (VOICES, ("m2", "m4", "m6", "m8", "f2", "f4", "klatt2", "klatt4", "whisper", "whisperf", "adam", "anika",
                      "benjamin", "boris", "david", "john", "michel", "quincy", "travis", "zac"), SENTENCES),
}
SYNTHETIC = ("white", "pink", "brown", "hum", "drone", "call", "bell", "clicks", "rumble", "hiss")


@dataclass(frozen=True)
class GateDataConfig:
    clip_s: float = 3.0
    music_clips: tuple[int, int, int] = (12, 10, 12)  # per song and condition, in train / val / test
    sound_clips: int = 3  # at most, from one long sound file
    sequences: tuple[int, int, int] = (2000, 300, 400)
    utterances: tuple[int, int, int] = (240, 60, 100)  # each gives 2 clips
    synthetic: tuple[int, int, int] = (600, 150, 200)
    val_share: float = 0.2  # of noise/ files, by file name
    min_sound_s: float = 1.0  # the shortest clip a query may be
    seed: int = 20

    def count(self, values: tuple[int, int, int], split: str) -> int:
        return values[SPLITS.index(split)]


@dataclass(frozen=True)
class GateClip:
    """One clip and where it came from."""

    label: int  # 1 music, 0 not music
    kind: str  # "music", "sound", "sequence", "speech", "synthetic"
    source: str  # the song, sound file, voice or synthetic kind it was made from
    condition: str
    samples: np.ndarray  # [shape=(n,), dtype=float32]


def file_unit(path: Path) -> float:
    """A stable number in [0, 1) from a file's name (noise files are named by their content hash)."""
    return int(hashlib.sha1(f"gate-split-v1:{path.name}".encode()).hexdigest()[:12], 16) / 16**12


def sound_files(corpus: Path, split: str, cfg: GateDataConfig) -> list[Path]:
    """The non-music recordings of ``split``: ``noise/`` by file for train and val, ``noise-heldout/`` for test."""
    if split == "test":
        return noise_files(corpus / "noise-heldout")
    files = noise_files(corpus / "noise")
    return [f for f in files if (file_unit(f) < cfg.val_share) == (split == "val")]


def load_sounds(files: list[Path]) -> list[tuple[str, np.ndarray]]:
    sounds = []
    for f in files:
        try:
            y = load_audio(f, sr=SR)
        except AudioError as e:
            log.warning("gate data: skipping %s", e)
            continue
        if len(y) and np.abs(y).max() > 1e-4:
            sounds.append((f.name, y))
    return sounds


# -- speech ----------------------------------------------------------------------------------
def missing_speech_tool() -> str | None:
    return None if shutil.which("espeak-ng") else "espeak-ng (apt-get install espeak-ng)"


def utterances(split: str, count: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """``count`` readings of three sentences each by the voices of ``split`` (voice name, audio)."""
    languages, variants, sentences = SPEECH[split]
    out = []
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "voice.wav"
        for _ in range(count):
            voice = f"{rng.choice(languages)}+{rng.choice(variants)}"
            text = " ".join(rng.choice(sentences, size=3, replace=False))
            subprocess.run(["espeak-ng", "-v", voice, "-p", str(int(rng.integers(20, 80))),
                            "-s", str(int(rng.integers(130, 200))), "-w", str(wav), text], check=True, capture_output=True)
            out.append((voice, load_audio(wav, sr=SR)))
    return out


# -- synthetic sounds ------------------------------------------------------------------------
def synthetic_sound(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """A non-music sound of ``n`` samples, peak 1: coloured noise, mains hum, a drifting drone, calls,
    struck glass, clicks, a rumbling motor or a hiss swelling and fading."""
    t = np.arange(n) / SR
    if kind in ("white", "pink", "brown"):
        y = colored_noise(n, rng, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])
    elif kind == "hum":
        f0 = rng.choice([50.0, 60.0, 100.0, 120.0]) * rng.uniform(0.98, 1.02)
        y = sum(rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in range(1, 9))
        y = y + colored_noise(n, rng, 1.0) * 10 ** (rng.uniform(-40, -10) / 20)
    elif kind in ("drone", "call", "bell"):
        y = tonal_noise(n, SR, rng, kind)
    elif kind == "clicks":
        y = np.zeros(n)
        period = rng.uniform(0.05, 1.2)
        if rng.random() < 0.5:  # a ticking clock, a dripping tap
            times = np.arange(rng.uniform(0, period), n / SR, period)
        else:  # typing, rain on a roof
            times = np.sort(rng.uniform(0, n / SR, rng.integers(3, 40)))
        click = colored_noise(int(0.004 * SR), rng, 0.0) * np.exp(-np.arange(int(0.004 * SR)) / (0.001 * SR))
        for s in (times * SR).astype(int):
            seg = y[s : s + len(click)]
            seg += click[: len(seg)] * rng.uniform(0.3, 1.0)
    elif kind == "rumble":
        y = colored_noise(n, rng, 2.0) * (1 + 0.6 * np.sin(2 * np.pi * rng.uniform(2, 40) * t))
    else:  # hiss
        y = colored_noise(n, rng, rng.uniform(0, 1)) * np.clip(np.sin(np.pi * t / t[-1]) * rng.uniform(1, 3), 0, 1)
    y = np.asarray(y, dtype=np.float64)
    return (y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def sequence(sounds: list[tuple[str, np.ndarray]], n: int, rng: np.random.Generator) -> np.ndarray:
    """2–6 of ``sounds`` at random places and levels over ``n`` samples, with a faint background."""
    y = colored_noise(n, rng, float(rng.choice([0.0, 1.0, 2.0]))) * 10 ** (rng.uniform(-60, -30) / 20)
    for j in rng.integers(len(sounds), size=int(rng.integers(2, 7))):
        s = sounds[j][1][: n]
        start = int(rng.integers(0, max(1, n - len(s) // 2)))
        seg = y[start : start + len(s)]
        seg += s[: len(seg)] / (np.abs(s).max() + 1e-9) * 10 ** (rng.uniform(-20, 0) / 20)
    return (0.9 * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


# -- the clips of a split --------------------------------------------------------------------
def gate_clips(corpus: str | Path, split: str, cfg: GateDataConfig = GateDataConfig()) -> Iterator[GateClip]:
    """Every clip of ``split`` (see the module's docstring), drawn from ``cfg.seed``."""
    corpus = Path(corpus)
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split)])
    n = int(round(cfg.clip_s * SR))
    files = sound_files(corpus, split, cfg)
    sounds = load_sounds(files)
    speech = utterances(split, cfg.count(cfg.utterances, split), rng)
    noises = [y for _, y in sounds] + [y for _, y in speech]  # what music is heard against
    log.info("gate data %s: %d sounds, %d utterances", split, len(sounds), len(speech))
    yield from music_clips(corpus, split, cfg, noises, rng)
    everything = split == "test"  # the held-out packages' sounds under every condition
    for name, y in sounds:
        if len(y) < cfg.min_sound_s * SR:
            continue
        for start in _starts(len(y), n, cfg.sound_clips, rng):
            excerpt = y[start : start + n]
            for condition in CONDITIONS if everything else (_condition(rng),):
                yield GateClip(0, "sound", name, condition, _degrade(excerpt, condition, noises, rng))
    for _ in range(cfg.count(cfg.sequences, split)):
        condition = _condition(rng)
        yield GateClip(0, "sequence", "sequence", condition, _degrade(sequence(sounds, n, rng), condition, noises, rng))
    for voice, y in speech:
        for start in _starts(len(y), n, 2, rng):
            condition = _condition(rng)
            yield GateClip(0, "speech", voice, condition, _degrade(y[start : start + n], condition, noises, rng))
    for i in range(cfg.count(cfg.synthetic, split)):
        kind, condition = SYNTHETIC[i % len(SYNTHETIC)], _condition(rng)
        y = synthetic_sound(kind, n, rng) * 10 ** (rng.uniform(-30, 0) / 20)
        yield GateClip(0, "synthetic", kind, condition, _degrade(y, condition, noises, rng))


def music_clips(corpus: Path, split: str, cfg: GateDataConfig, noises: list[np.ndarray],
                rng: np.random.Generator) -> Iterator[GateClip]:
    """``cfg.music_clips`` excerpts per song and condition, each at its own random offset."""
    parts = split_corpus(corpus)
    songs = parts["test"] + parts["unseen"] if split == "test" else parts[split]
    clip_cfg = ClipConfig()
    for path, collection in songs:
        try:
            y = load_audio(path, sr=SR)
        except AudioError as e:
            log.warning("gate data: skipping %s", e)
            continue
        for condition in CONDITIONS:
            for _ in range(cfg.count(cfg.music_clips, split)):
                start = float(rng.uniform(0, len(y) / SR - cfg.clip_s - 0.05))
                samples = degrade_clip(y, SR, start, cfg.clip_s, condition, rng, noises, clip_cfg)
                yield GateClip(1, "music", f"{collection}/{Path(path).name}", condition, samples)


def _starts(length: int, n: int, most: int, rng: np.random.Generator) -> list[int]:
    """Where to cut up to ``most`` clips of ``n`` samples from ``length`` (one, from 0, when shorter)."""
    if length <= n:
        return [0]
    return sorted(int(s) for s in rng.integers(0, length - n, size=min(most, int(np.ceil(length / n)))))


def _condition(rng: np.random.Generator) -> str:
    return str(rng.choice(CONDITIONS, p=CONDITION_SHARES))


def _degrade(y: np.ndarray, condition: str, noises: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``y`` as ``condition`` hears it (lengths kept: a short sound stays short)."""
    return degrade_clip(y, SR, 0.0, len(y) / SR, condition, rng, noises)
