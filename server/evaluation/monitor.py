"""Monitoring benchmark: mixes made from songs the encoder never trained on, walked by
:meth:`server.library.Library.monitor` as `tuneprint monitor` walks a recording.

Each mix strings excerpts of library songs (the identification benchmark's held-out members,
:func:`server.evaluation.benchmark.held_out_songs`), crossfaded, some with talk-over noise (recorded
sounds and speech of CORPUS/noise over part of the excerpt), with gaps of music the library does
not hold (the held-out outsiders) between some of them. The truth is known to the sample: each
stretch's song, its place in the song, and a boundary at the middle of each crossfade.

Reported: the share of the recording's seconds labelled right (the right song, or "no match" where
no library song plays), of library seconds given a wrong song, of outsider seconds given any song;
the boundary error (each true boundary to the nearest reported one) and reported boundaries that
match no true one; the offset error inside right stretches; speed against real time.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from tuneprint.encoder.audio import load_audio
from tuneprint.index.vectors import IndexConfig
from tuneprint.server.answers import Stretch
from tuneprint.server.library import Library, LibrarySettings

from .benchmark import held_out_songs

log = logging.getLogger(__name__)

GRID_S = 0.1  # seconds between the points at which labels are compared
LEVEL_RMS = 0.1  # every excerpt is brought to this level, as a DJ matches levels
STRAY_BOUNDARY_S = 5.0  # a reported boundary farther than this from every true one splits a stretch wrongly


@dataclass(frozen=True)
class MonitorBenchmarkConfig:
    model: str = "default"
    backend: str = "faiss"
    mixes: int = 8
    songs_per_mix: int = 6  # library songs in each mix
    excerpt_s: tuple[float, float] = (20.0, 45.0)  # each library song's excerpt
    crossfade_s: tuple[float, float] = (0.0, 6.0)
    gap_chance: float = 0.4  # after each library song, a stretch of outsider music with this chance
    gap_s: tuple[float, float] = (10.0, 30.0)
    talk_chance: float = 0.5  # a library excerpt gets talk-over noise with this chance
    talk_snr_db: tuple[float, float] = (0.0, 10.0)
    talk_s: tuple[float, float] = (5.0, 15.0)
    noise_files: int = 60  # recorded noises drawn from CORPUS/noise for the talk-over
    outsider_share: float = 0.33  # as the identification benchmark: held-out songs kept out of the library
    library_songs: int | None = None  # members put in the library (None: all); mixes draw from these
    seed: int = 11
    window_s: float = 4.0
    hop_s: float = 1.0


@dataclass(frozen=True)
class Part:
    """One stretch of a mix's truth: a library song (``song_id``) or outsider music (None)."""

    song_id: str | None
    start_s: float  # in the mix, at the middle of the crossfade into it
    end_s: float
    anchor_s: float | None = None  # the song's offset minus the time in the mix
    talk: bool = False


@dataclass
class MixOutcome:
    truth: list[Part]
    stretches: list[Stretch]
    seconds: float
    walk_s: float  # wall-clock seconds monitor took
    scores: dict = field(default_factory=dict)


def make_mix(rng: np.random.Generator, members: Sequence[tuple[str, str]], outsiders: Sequence[tuple[str, str]],
             noises: Sequence[np.ndarray], cfg: MonitorBenchmarkConfig, sr: int) -> tuple[np.ndarray, list[Part]]:
    """A mix and its truth. ``members`` are (song id, path) of library songs, ``outsiders`` paths
    of songs not in the library (as (path, label))."""
    order = [members[i] for i in rng.choice(len(members), size=min(cfg.songs_per_mix, len(members)), replace=False)]
    pieces: list[tuple[str | None, np.ndarray, float, bool]] = []  # (song id, samples, song offset, talk)
    for song_id, path in order:
        pieces.append((song_id, *_excerpt(load_audio(path, sr=sr), rng, cfg.excerpt_s, sr), False))
        if rng.random() < cfg.talk_chance and noises:
            _, samples, offset, _ = pieces[-1]
            pieces[-1] = (song_id, _talk_over(samples, rng, noises, cfg, sr), offset, True)
        if rng.random() < cfg.gap_chance and outsiders:
            path, _ = outsiders[rng.integers(len(outsiders))]
            pieces.append((None, *_excerpt(load_audio(path, sr=sr), rng, cfg.gap_s, sr), False))
    y = np.zeros(0, np.float32)
    truth: list[Part] = []
    for song_id, samples, offset, talk in pieces:
        fade = min(int(rng.uniform(*cfg.crossfade_s) * sr), len(y) // 3, len(samples) // 3) if len(y) else 0
        begins = len(y) - fade  # where this piece starts to sound
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        y = np.concatenate([y[: len(y) - fade], y[len(y) - fade:] * ramp[::-1] + samples[:fade] * ramp, samples[fade:]])
        middle = (begins + fade / 2) / sr
        if truth:
            truth[-1] = Part(truth[-1].song_id, truth[-1].start_s, middle, truth[-1].anchor_s, truth[-1].talk)
        truth.append(Part(song_id, middle if truth else 0.0, len(y) / sr,
                          offset - begins / sr if song_id is not None else None, talk))
    return np.clip(y, -1.0, 1.0), _merged(truth)


def _excerpt(y: np.ndarray, rng: np.random.Generator, seconds: tuple[float, float],
             sr: int) -> tuple[np.ndarray, float]:
    """A random excerpt of ``y`` (as long as drawn, or all of a shorter song) at the common level,
    and where in the song it starts."""
    n = min(int(rng.uniform(*seconds) * sr), len(y))
    first = int(rng.integers(0, len(y) - n + 1))
    x = y[first : first + n]
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) or 1.0
    return (x * (LEVEL_RMS / rms)).astype(np.float32), first / sr


def _talk_over(samples: np.ndarray, rng: np.random.Generator, noises: Sequence[np.ndarray],
               cfg: MonitorBenchmarkConfig, sr: int) -> np.ndarray:
    """``samples`` with recorded noise (speech, sound effects) over ``cfg.talk_s`` of them, at ``cfg.talk_snr_db``."""
    n = min(int(rng.uniform(*cfg.talk_s) * sr), len(samples))
    first = int(rng.integers(0, len(samples) - n + 1))
    noise = noises[rng.integers(len(noises))]
    noise = np.tile(noise, int(np.ceil(n / len(noise))))[:n]
    music = samples[first : first + n]
    snr = rng.uniform(*cfg.talk_snr_db)
    gain = np.sqrt(np.mean(music.astype(np.float64) ** 2) / max(np.mean(noise.astype(np.float64) ** 2), 1e-12)
                   / 10 ** (snr / 10))
    out = samples.copy()
    out[first : first + n] += (gain * noise).astype(np.float32)
    return out


def _merged(truth: list[Part]) -> list[Part]:
    """Neighbouring outsider parts as one (two pieces of music the library does not know)."""
    out = truth[:1]
    for part in truth[1:]:
        if part.song_id is None and out[-1].song_id is None:
            out[-1] = Part(None, out[-1].start_s, part.end_s)
        else:
            out.append(part)
    return out


def score_mix(truth: list[Part], stretches: list[Stretch], seconds: float) -> dict:
    """Seconds labelled right, boundary and offset errors of one mix (see the module's docstring)."""
    grid = np.arange(0.0, seconds, GRID_S)
    true_label = _labels(grid, [(p.song_id, p.start_s, p.end_s) for p in truth])
    said = _labels(grid, [(s.song.song_id if s.song else None, s.start_s, s.end_s) for s in stretches])
    library = np.array([t is not None for t in true_label])
    right = np.array([t == s for t, s in zip(true_label, said)])
    wrong_song = np.array([s is not None and s != t for t, s in zip(true_label, said)])
    true_bounds = np.array([p.start_s for p in truth[1:]])
    said_bounds = np.array([s.start_s for s in stretches[1:]])
    errors = [float(np.min(np.abs(said_bounds - b))) if len(said_bounds) else float(seconds) for b in true_bounds]
    stray = sum(1 for b in said_bounds if not len(true_bounds) or np.min(np.abs(true_bounds - b)) > STRAY_BOUNDARY_S)
    offsets = []
    for s in stretches:
        middle = (s.start_s + s.end_s) / 2
        part = next((p for p in truth if p.start_s <= middle < p.end_s), None)
        if s.song is not None and part is not None and part.song_id == s.song.song_id:
            offsets.append(abs((s.offset_s + middle - s.start_s) - (part.anchor_s + middle)))
    return {"points": len(grid), "right": int(right.sum()), "library_points": int(library.sum()),
            "library_right": int((right & library).sum()), "wrong_song": int((wrong_song & library).sum()),
            "outsider_points": int((~library).sum()), "outsider_said_song": int((wrong_song & ~library).sum()),
            "boundary_errors": errors, "stray_boundaries": stray, "offset_errors": offsets}


def _labels(grid: np.ndarray, spans: list[tuple[str | None, float, float]]) -> list[str | None]:
    out: list[str | None] = [None] * len(grid)
    for label, start, end in spans:
        for k in np.nonzero((grid >= start) & (grid < end))[0]:
            out[k] = label
    return out


def run_monitor_benchmark(corpus: Path, cfg: MonitorBenchmarkConfig = MonitorBenchmarkConfig(),
                          library: Path | None = None, keep_mixes: Path | None = None) -> tuple[list[MixOutcome], dict]:
    """Build (or reuse, when ``library`` holds one) the library of held-out members, make
    ``cfg.mixes`` mixes and monitor each. Returns the mixes' outcomes and the library's stats."""
    members, outsiders, noises = held_out_songs(corpus, cfg.outsider_share, noise_limit=cfg.noise_files)
    if cfg.library_songs is not None:
        picked = np.random.default_rng(cfg.seed).permutation(len(members))[: cfg.library_songs]
        members = [members[i] for i in sorted(picked)]
    temp = Path(tempfile.mkdtemp(prefix="tuneprint-monitor-"))
    root = library or temp / "library"
    try:
        reuse = (root / "settings.json").exists()
        with (Library.open(root) if reuse else
              Library.create(root, LibrarySettings(model=cfg.model, index=IndexConfig(backend=cfg.backend)))) as lib:
            if not reuse:
                lib.add([p for p, _ in members], allow_non_music=True)  # the corpus's songs as listed
            in_library = {s.path: s.song_id for s in lib.tracks()}
            pool = [(in_library[p], p) for p, _ in members if p in in_library]
            stranger = [(p, label) for p, label in outsiders if p not in in_library]
            rng = np.random.default_rng(cfg.seed)
            outcomes = [_monitor_mix(lib, k, rng, pool, stranger, noises, cfg, keep_mixes or temp)
                        for k in range(cfg.mixes)]
            return outcomes, lib.stats()
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _monitor_mix(lib: Library, k: int, rng, pool, outsiders, noises, cfg: MonitorBenchmarkConfig,
                 folder: Path) -> MixOutcome:
    sr = lib.features.sample_rate
    y, truth = make_mix(rng, pool, outsiders, noises, cfg, sr)
    path = folder / f"mix{k:02d}.flac"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr)
    started = time.perf_counter()
    stretches = list(lib.monitor(path, window_s=cfg.window_s, hop_s=cfg.hop_s))
    outcome = MixOutcome(truth, stretches, len(y) / sr, time.perf_counter() - started)
    outcome.scores = score_mix(truth, stretches, outcome.seconds)
    log.info("mix %d: %.0f s, %d parts, %d stretches, %.1f%% of seconds right", k, outcome.seconds, len(truth),
             len(stretches), 100 * outcome.scores["right"] / outcome.scores["points"])
    return outcome


def summarize(outcomes: list[MixOutcome], stats: dict, cfg: MonitorBenchmarkConfig) -> str:
    """The benchmark's markdown section."""
    total = {key: sum(o.scores[key] for o in outcomes) for key in
             ("points", "right", "library_points", "library_right", "wrong_song", "outsider_points",
              "outsider_said_song", "stray_boundaries")}
    bounds = np.array([e for o in outcomes for e in o.scores["boundary_errors"]])
    offsets = np.array([e for o in outcomes for e in o.scores["offset_errors"]])
    seconds, walked = sum(o.seconds for o in outcomes), sum(o.walk_s for o in outcomes)
    parts = [p for o in outcomes for p in o.truth]

    def share(a: int, b: int) -> str:
        return f"{a / b:.1%}" if b else "n/a"

    def stat(values: np.ndarray, f) -> str:
        return f"{f(values):.2f}" if len(values) else "n/a"
    return f"""
Library: {stats['songs']} held-out songs the encoder never trained on (backend `{stats['backend']}`); {cfg.mixes} mixes
of {cfg.songs_per_mix} library songs each ({seconds / 60:.1f} min in all), excerpts of {cfg.excerpt_s[0]:g}–{cfg.excerpt_s[1]:g} s
from random places, crossfades of {cfg.crossfade_s[0]:g}–{cfg.crossfade_s[1]:g} s, talk-over noise (CORPUS/noise, {cfg.talk_snr_db[0]:g}–{cfg.talk_snr_db[1]:g} dB SNR,
{cfg.talk_s[0]:g}–{cfg.talk_s[1]:g} s) on {sum(p.talk for p in parts)} of {sum(p.song_id is not None for p in parts)} excerpts, and
{sum(p.song_id is None for p in parts)} gaps of {cfg.gap_s[0]:g}–{cfg.gap_s[1]:g} s of held-out songs kept out of the library; seed {cfg.seed}.
`tuneprint monitor` defaults: windows of {cfg.window_s:g} s every {cfg.hop_s:g} s.

| measure | value |
| --- | --- |
| seconds labelled right (the right song, or "no match" where no library song plays) | **{share(total['right'], total['points'])}** |
| library seconds labelled with their song | {share(total['library_right'], total['library_points'])} |
| library seconds labelled with a wrong song | {share(total['wrong_song'], total['library_points'])} |
| outsider seconds labelled with a library song | {share(total['outsider_said_song'], total['outsider_points'])} |
| boundary error, median / 90th percentile / max (s), {len(bounds)} boundaries | **{stat(bounds, np.median)}** / {stat(bounds, lambda v: np.percentile(v, 90))} / {stat(bounds, np.max)} |
| reported boundaries more than {STRAY_BOUNDARY_S:g} s from any true one | {total['stray_boundaries']} |
| offset error in the song, median (s) | {stat(offsets, np.median)} |
| speed | {seconds / walked:.1f}× real time |

Boundaries are true at the middle of each crossfade; "labelled right" is compared every {GRID_S:g} s.
"""
