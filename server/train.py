"""`tuneprint train`: train the encoder on a library's own tracks, then re-embed the library.

:func:`train_on_library` trains (the loop of :mod:`tuneprint.encoder.training`, views made on
the CPU from the library's files); :func:`adopt_encoder` makes the result the library's encoder
and re-embeds every song with it. The command line calls one, reports, then the other.

``train --style`` trains only the style head (encoder/style_training.py) on the library's tracks:
:func:`train_style_on_library` writes it into the library; the command line then re-embeds the songs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tuneprint.errors import LibraryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LibraryRun:
    weights: Path  # the run's final weights (every head, float32)
    run_dir: Path  # config.json, metrics.csv, loss.png, state.pt
    songs: int  # tracks in the library, trained on or held out


@dataclass(frozen=True)
class Adopted:
    model_path: str  # where the library now keeps its encoder
    model_id: str | None
    reembedded: int | None  # songs re-embedded; None when that is left for `tuneprint reindex`


def train_on_library(root: Path, *, cfg=None, run_dir: Path | None = None, noise_dir: Path | None = None,
                     val_share: float = 0.0, from_default: bool = False, resume: bool = False) -> LibraryRun:
    """Train on the library's tracks (their first label feeds the classifier) into ``run_dir``
    (default ``root/runs/VARIANT``).

    ``cfg`` is an :class:`tuneprint.encoder.training.TrainConfig` (its defaults when None);
    ``noise_dir``: recorded noises (every audio file under it) mixed into the views;
    ``val_share``: share of songs (by file name) held out to monitor retrieval;
    ``from_default``: start from the shipped weights rather than the seeded initialisation.
    """
    from tuneprint.encoder.audio import AUDIO_EXTENSIONS
    from tuneprint.encoder.checkpoint import DEFAULT_WEIGHTS
    from tuneprint.encoder.splits import song_unit
    from tuneprint.encoder.training import TrainConfig, train
    from tuneprint.server.library import Library

    cfg = cfg or TrainConfig()
    with Library.open(root, check_model=False) as lib:
        songs = lib.tracks()
    if not songs:
        raise LibraryError(f"{root}: the library holds no tracks")
    items = [(s.path, s.labels[0] if s.labels else None) for s in songs]
    val = [it for it in items if song_unit(it[0]) < val_share]
    items = [it for it in items if it not in val]
    noise = sorted(str(f) for f in noise_dir.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS) if noise_dir else []
    run_dir = run_dir or root / "runs" / cfg.variant.replace("+", "-")
    init = str(DEFAULT_WEIGHTS) if from_default and DEFAULT_WEIGHTS.is_file() else None
    weights = train(items, run_dir, cfg=cfg, val_items=val, noise_paths=noise, resume=resume, init_weights=init)
    return LibraryRun(weights, run_dir, len(songs))


def adopt_encoder(root: Path, weights: Path, *, reindex: bool = True,
                  progress: Callable[[object], None] | None = None) -> Adopted:
    """Make ``weights`` the library's encoder and, with ``reindex``, re-embed every song with it
    (``progress`` is called once per song)."""
    from tuneprint.server.library import Library

    with Library.open(root, check_model=False) as lib:
        model_path = lib.adopt_model(weights)
    if not reindex:
        return Adopted(model_path, None, None)
    with Library.open(root, check_model=False) as lib:
        n = lib.reindex(progress=progress)
        return Adopted(model_path, lib.model_id, n)


@dataclass(frozen=True)
class StyleRun:
    path: Path  # the library's style head
    summary: dict  # encoder.style_training.fit_style_head's summary


def train_style_on_library(root: Path, *, cfg=None, progress: Callable[[int, int], None] | None = None) -> StyleRun:
    """Train a style head on the library's tracks and make it the library's (``settings.style``);
    then :meth:`Library.reindex` gives every song its vector by the new head (until then `similar`
    and `genre` refuse the library).

    Objective "track" needs no labels; "supcon" and "both" learn the tracks' first labels (tracks
    without one count as their own label). ``progress(done, total)`` follows the statistics pass.
    """
    from dataclasses import replace

    from tuneprint.encoder.style import StyleModel, save_style
    from tuneprint.encoder.style_training import StyleTrainConfig, collect_statistics, fit_style_head
    from tuneprint.server.folder import write_settings
    from tuneprint.server.library import Library
    from tuneprint.server.style import LIBRARY_STYLE

    cfg = cfg or StyleTrainConfig(objective="track")
    with Library.open(root) as lib:
        songs = lib.tracks()
        if len(songs) < 2:
            raise LibraryError(f"{root}: style training needs at least two tracks; the library holds {len(songs)}")
        # "track" is label-free: every track is its own label, so every track draws equally
        items = [(s.path, s.labels[0] if s.labels and cfg.objective != "track" else s.song_id) for s in songs]
        tracks = collect_statistics(items, lib.model, augment=True, progress=progress)
        head, summary = fit_style_head(tracks, cfg)
        path = save_style(root / LIBRARY_STYLE, StyleModel(lib.model_id, head, {"trained_on": str(root), **summary}))
        with lib.writing():
            write_settings(lib.root, replace(lib.settings, style=LIBRARY_STYLE))
            with lib.catalog.transaction():
                lib._generation = lib.catalog.bump_generation()
    return StyleRun(path, summary)
