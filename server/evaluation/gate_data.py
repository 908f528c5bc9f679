"""The clips the music / non-music gate learns from and is measured on, split by song and by package.

=========  ==========================================  =========================================
split      music (label 1)                             non-music (label 0)
=========  ==========================================  =========================================
train      train songs of the identification corpus    ``noise/`` files (80 % by file name), the
           (:func:`corpus.split_corpus`) and the       short sounds of the train collections'
           style collections' train songs              packages, speech of 11 training voices'
           (:func:`corpus.split_style_corpus`)         languages, synthetic noises, hums, clicks
val        val songs of the identification corpus      the other 20 % of ``noise/`` files, the
           and every song of the style val             short sounds of the val collections'
           collections                                 packages, speech in 3 other languages,
                                                       synthetic
test       test songs, every song of the unseen        ``noise-heldout/`` and the short sounds of
           collections, the style collections'         the unseen collections' packages (none
           held-out songs and unseen collections       ever trained on; fillets-ng-data's are
                                                       mostly actors' lines), speech in other
                                                       languages, voices and sentences, synthetic
=========  ==========================================  =========================================

No song, sound file or voice of a test split is trained on; the packages of the val and test
splits' sounds are not those of training. A package's short sounds (:func:`package_sounds`) are
read from the unpacked Debian packages (``data/debs/raw``, :func:`corpus.package_root`).

Every clip lasts :attr:`GateDataConfig.clip_s`. Music clips are heard under each condition of
:mod:`.clips` (clean, noise, phone, reverb), the noise mixed in coming from the same split's
sounds and speech, so noisy or phoned music is still music; a collection's clips are spread over
its songs (:meth:`GateDataConfig.per_song`), so the big collections do not outweigh the rest.
Non-music clips are single sounds (files of at least 1 s, the shortest query), "sequences" (2–6
of the split's sounds, also the short ones, scattered over a clip, as a game or a street sounds),
speech (``espeak-ng``: a voice reading three sentences) and synthetic sounds; each is heard under
a random condition, except the held-out packages' single sounds (val and test), heard under every
condition.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.augment import colored_noise, tonal_noise
from tuneprint.errors import AudioError

from .clips import ClipConfig, degrade_clip, noise_files
from .corpus import (MAX_NOISE_SECONDS, MIN_MUSIC_SECONDS, STYLE_MUSIC, STYLE_UNSEEN_COLLECTIONS,
                     STYLE_VAL_COLLECTIONS, duration, is_style_fetched, package_root, split_corpus,
                     split_style_corpus)
from .noise import SENTENCES, TRAIN_SENTENCES, TRAIN_VOICES, VOICES, WORLD_PACKAGE

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


DATA_VERSION = "gate-data-v3"  # what gate_clips makes; part of the cache's name
# Short files a package's own scripts play as music, though they sit among its sound effects: in
# fillets-ng-data's viking1 level the three Vikings sing (script/viking1/code.lua plays d1-z-v*,
# d1-z-b*, d1-z-p* as MELODAK_SONG, BASAK_SONG, PISKAC_SONG; "They stopped playing!" when they stop).
SONG_SOUNDS = {"fillets-ng-data": ("d1-z-",)}
# And the reverse: a corpus "song" its package plays as a sound effect: supertuxkart's
# nolok_speech.ogg, a villain's spoken monologue, is an sfx-emitter of the intro cut scene
# (tracks/introcutscene2/scene.xml; the scene's music is intro2.ogg). Not music for the gate.
SPOKEN_TRACKS = frozenset({"supertuxkart/nolok_speech.ogg"})


@dataclass(frozen=True)
class GateDataConfig:
    clip_s: float = 3.0
    collection_clips: tuple[int, int, int] = (120, 60, 60)  # music clips per collection and condition, spread
    song_clips: tuple[tuple[int, int], ...] = ((3, 12), (3, 10), (3, 8))  # over its songs: at least, at most per song
    sound_clips: int = 3  # at most, from one long sound file
    sequences: tuple[int, int, int] = (2000, 300, 400)
    utterances: tuple[int, int, int] = (240, 60, 100)  # each gives 2 clips
    synthetic: tuple[int, int, int] = (600, 150, 200)
    val_share: float = 0.2  # of noise/ files, by file name
    min_sound_s: float = 1.0  # the shortest clip a query may be
    seed: int = 20

    def count(self, values: tuple[int, int, int], split: str) -> int:
        return values[SPLITS.index(split)]

    def per_song(self, songs_in_collection: int, split: str) -> int:
        """Music clips per condition from each song of a collection that has this many songs in ``split``."""
        lo, hi = self.song_clips[SPLITS.index(split)]
        return int(np.clip(round(self.count(self.collection_clips, split) / max(1, songs_in_collection)), lo, hi))


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
    """The corpus's non-music recordings of ``split``: ``noise/`` by file for train and val,
    ``noise-heldout/`` for test."""
    if split == "test":
        return noise_files(corpus / "noise-heldout")
    files = noise_files(corpus / "noise")
    return [f for f in files if (file_unit(f) < cfg.val_share) == (split == "val")]


def sound_collections(split: str) -> tuple[str, ...]:
    """The style collections (corpus.STYLE_MUSIC) whose packages' short sounds are ``split``'s: those
    whose music the gate trains on for train, the style val and unseen collections for val and test."""
    held_out = {"val": STYLE_VAL_COLLECTIONS, "test": STYLE_UNSEEN_COLLECTIONS}
    if split in held_out:
        return tuple(c for c in STYLE_MUSIC if c in held_out[split])
    return tuple(c for c in STYLE_MUSIC if c not in STYLE_VAL_COLLECTIONS + STYLE_UNSEEN_COLLECTIONS)


def package_sounds(raw: Path, package: str, music_folders: tuple[str, ...] = ()) -> list[Path]:
    """The short sounds of a Debian package unpacked under ``raw``: audio files of 0.2–30 s, none
    under a folder named for music, none beside the package's music (in ``music_folders``) in its
    own format (a short file next to the songs, made as they are, is a jingle: music), none that the
    package plays as a song (:data:`SONG_SOUNDS`), each content once."""
    files = package_root(raw, package)
    seconds = {f: duration(f) for f in files}
    music_kinds = {(f.parent, f.suffix.lower()) for f, s in seconds.items()
                   if s >= MIN_MUSIC_SECONDS and f.parent.name in music_folders}
    out, seen = [], set()
    for f in files:
        if not 0.2 <= seconds[f] <= MAX_NOISE_SECONDS or (f.parent, f.suffix.lower()) in music_kinds:
            continue
        if any("music" in part.lower() for part in f.relative_to(raw).parts):
            continue
        if f.stem.startswith(SONG_SOUNDS.get(package, ())):
            continue
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append(f)
    return out


def split_sounds(corpus: Path, split: str, cfg: GateDataConfig,
                 raw: Path | None) -> list[tuple[str, Path, bool]]:
    """(name, file, held out) of every non-music recording of ``split``: the corpus's (named by file)
    and the split's packages' short sounds (named ``package:file``). "Held out": a package training
    never hears (val and test)."""
    out = [(f.name, f, split == "test") for f in sound_files(corpus, split, cfg)]
    for collection in sound_collections(split) if raw is not None else ():
        package, music_folders = STYLE_MUSIC[collection]
        files = package_sounds(raw, package, tuple(music_folders))
        log.info("gate data %s: %d short sounds of %s", split, len(files), package)
        out += [(f"{package}:{f.name}", f, split != "train") for f in files]
    return out


def load_sounds(files: list[tuple[str, Path, bool]]) -> list[tuple[str, np.ndarray, bool]]:
    sounds = []
    for name, f, held_out in files:
        try:
            y = load_audio(f, sr=SR)
        except AudioError as e:
            log.warning("gate data: skipping %s", e)
            continue
        if len(y) and np.abs(y).max() > 1e-4:
            sounds.append((name, y, held_out))
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
def gate_clips(corpus: str | Path, split: str, cfg: GateDataConfig = GateDataConfig(),
               raw: str | Path | None = None) -> Iterator[GateClip]:
    """Every clip of ``split`` (see the module's docstring), drawn from ``cfg.seed``; ``raw``: the
    unpacked Debian packages (``data/debs/raw``) whose short sounds join the non-music (None: none)."""
    corpus = Path(corpus)
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split)])
    n = int(round(cfg.clip_s * SR))
    sounds = load_sounds(split_sounds(corpus, split, cfg, None if raw is None else Path(raw)))
    speech = utterances(split, cfg.count(cfg.utterances, split), rng)
    noises = [y for _, y, _ in sounds] + [y for _, y in speech]  # what music is heard against
    log.info("gate data %s: %d sounds, %d utterances", split, len(sounds), len(speech))
    yield from music_clips(corpus, split, cfg, noises, rng)
    for name, y, held_out in sounds:
        if len(y) < cfg.min_sound_s * SR:
            continue
        for start in _starts(len(y), n, cfg.sound_clips, rng):
            excerpt = y[start : start + n]
            for condition in CONDITIONS if held_out else (_condition(rng),):
                yield GateClip(0, "sound", name, condition, _degrade(excerpt, condition, noises, rng))
    pool = [(name, y) for name, y, _ in sounds]
    for _ in range(cfg.count(cfg.sequences, split)):
        condition = _condition(rng)
        yield GateClip(0, "sequence", "sequence", condition, _degrade(sequence(pool, n, rng), condition, noises, rng))
    for voice, y in speech:
        for start in _starts(len(y), n, 2, rng):
            condition = _condition(rng)
            yield GateClip(0, "speech", voice, condition, _degrade(y[start : start + n], condition, noises, rng))
    for i in range(cfg.count(cfg.synthetic, split)):
        kind, condition = SYNTHETIC[i % len(SYNTHETIC)], _condition(rng)
        y = synthetic_sound(kind, n, rng) * 10 ** (rng.uniform(-30, 0) / 20)
        yield GateClip(0, "synthetic", kind, condition, _degrade(y, condition, noises, rng))


# -- real recordings nobody trained on (benchmark only) --------------------------------------
WORLD_LEFT_OUT = ("hobbies/music", "symbols")  # instruments playing; letters and numbers read out


def world_clips(raw: str | Path, cfg: GateDataConfig = GateDataConfig(), speakers: int = 300) -> Iterator[GateClip]:
    """Clips of Tux Paint's stamp sounds (:data:`.noise.WORLD_PACKAGE`, unpacked by
    scripts/fetch_world_noise.py; no training reads it): real recordings of animals, machines,
    tools, vehicles and weather (kind "world"; up to :attr:`GateDataConfig.sound_clips` excerpts of
    each file of ≥ 1 s), and ``speakers`` of its spoken descriptions of ≥ 1 s, people reading a
    sentence in one of a dozen languages (kind "speech"), all as recorded. None is music."""
    raw = Path(raw)
    rng = np.random.default_rng([cfg.seed, 99])
    n = int(round(cfg.clip_s * SR))
    files = [f for f in package_root(raw, WORLD_PACKAGE)
             if not any(part in f.relative_to(raw).as_posix() for part in WORLD_LEFT_OUT)]
    things = [f for f in files if "_desc" not in f.name and duration(f) >= cfg.min_sound_s]
    spoken = [f for f in files if "_desc" in f.name and duration(f) >= cfg.min_sound_s]
    picked = [spoken[i] for i in sorted(rng.choice(len(spoken), size=min(speakers, len(spoken)), replace=False))]
    for kind, chosen in (("world", things), ("speech", picked)):
        for f in chosen:
            try:
                y = load_audio(f, sr=SR)
            except AudioError as e:  # e.g. a 5 kHz recording, which tuneprint refuses
                log.info("gate world clips: skipping %s", e)
                continue
            for start in _starts(len(y), n, cfg.sound_clips if kind == "world" else 1, rng):
                yield GateClip(0, kind, f.relative_to(raw).as_posix(), "clean", y[start : start + n])


def music_songs(corpus: Path, split: str) -> list[tuple[str, str]]:
    """(path, collection) of the songs of ``split``: the identification corpus's (train, val; test
    and unseen for test) and, where fetched, the style collections' (:func:`corpus.split_style_corpus`:
    train, val; seen_test and unseen for test). Identification val songs, which style trains on,
    stay in val. :data:`SPOKEN_TRACKS` are left out."""
    ident = split_corpus(corpus)
    songs = ident["test"] + ident["unseen"] if split == "test" else list(ident[split])
    if is_style_fetched(corpus):
        style = split_style_corpus(corpus)
        held = {p for part in ("val", "test", "unseen") for p, _ in ident[part]}
        extra = {"train": [s for s in style["train"] if s[0] not in held], "val": style["val"],
                 "test": style["seen_test"] + style["unseen"]}[split]
        known = {p for p, _ in songs}
        songs += [s for s in extra if s[0] not in known]
    return [(p, c) for p, c in songs if f"{c}/{Path(p).name}" not in SPOKEN_TRACKS]


def music_clips(corpus: Path, split: str, cfg: GateDataConfig, noises: list[np.ndarray],
                rng: np.random.Generator) -> Iterator[GateClip]:
    """:meth:`GateDataConfig.per_song` excerpts per song and condition, each at its own random offset."""
    songs = music_songs(corpus, split)
    per_collection = Counter(collection for _, collection in songs)
    clip_cfg = ClipConfig()
    for path, collection in songs:
        try:
            y = load_audio(path, sr=SR)
        except AudioError as e:
            log.warning("gate data: skipping %s", e)
            continue
        for condition in CONDITIONS:
            for _ in range(cfg.per_song(per_collection[collection], split)):
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
