"""Files → songs ready to store: decode, hash, embed. In this process (the next file decodes while
this one embeds), in worker processes (``jobs`` > 1) or on Ray actors (server/distributed.py), each
with its own copy of the encoder.

The library decides what to keep (duplicates) and writes; nothing here touches a library folder.
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from tuneprint.encoder.audio import AUDIO_EXTENSIONS, load_audio, read_tags
from tuneprint.errors import AudioError

log = logging.getLogger(__name__)


@dataclass
class PreparedFile:
    """One decoded and embedded file, or why it could not be."""

    path: str  # absolute
    seconds: float = 0.0
    audio_hash: str | None = None
    title: str | None = None
    artist: str | None = None
    embeddings: object | None = None  # encoder.embeddings.Embeddings
    error: str | None = None


def find_audio_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively) to audio files, in a stable order.

    Paths named directly are kept whatever their extension (so a bad file is reported,
    not silently skipped); inside folders only known audio extensions are taken.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
        else:
            found.append(p)
    return found


def audio_hash(y: np.ndarray) -> str:
    """Content hash of decoded audio: the same recording in another container hashes the same."""
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype("<i2")
    return hashlib.sha256(pcm.tobytes()).hexdigest()


def prepare_files(paths: list[Path], embedder, hop_frames: int, *, known_hashes: frozenset[str] = frozenset(),
                  jobs: int = 1, model_spec: str | None = None, ray=None) -> Iterator[PreparedFile]:
    """Decode and embed ``paths`` in order, yielding each as it is ready; audio whose hash is in
    ``known_hashes`` (already stored) is decoded and hashed but not embedded.

    ``jobs`` > 1 spreads the files over that many worker processes, each loading ``model_spec``
    (a checkpoint path, "default" or "seeded") once, with the embedder's style head; otherwise ``embedder`` embeds here while a
    thread decodes the next file. ``ray`` (a server.distributed.RayIngest) spreads them over Ray
    actors instead, each holding a copy of ``embedder``.
    """
    if ray is not None:
        if jobs > 1:
            raise ValueError("give jobs or ray, not both")
        from .distributed import prepare_on_ray  # Ray is an optional extra: imported only when asked for

        yield from prepare_on_ray(paths, embedder, hop_frames, known_hashes, ray)
        return
    if jobs > 1 and len(paths) > 1:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_start_worker,
                                 initargs=(model_spec, embedder.style, hop_frames, known_hashes, embedder.landmarks)) as pool:
            yield from pool.map(_prepare_in_worker, paths)
        return
    sr, min_seconds = embedder.features.sample_rate, embedder.features.patch_seconds
    with ThreadPoolExecutor(max_workers=1) as pool:  # decode the next file while this one embeds
        for path, (y, error) in zip(paths, pool.map(lambda p: _decode(p, sr, min_seconds), paths)):
            yield _embed(path, y, error, embedder, hop_frames, known_hashes)


def prepare_file(path: Path, embedder, hop_frames: int, known_hashes: frozenset[str]) -> PreparedFile:
    """Decode, hash and embed one file with ``embedder`` (what one worker does with each file)."""
    y, error = _decode(path, embedder.features.sample_rate, embedder.features.patch_seconds)
    return _embed(path, y, error, embedder, hop_frames, known_hashes)


def _decode(path: Path, sr: int, min_seconds: float) -> tuple[np.ndarray | None, str | None]:
    try:
        return load_audio(path, sr=sr, min_seconds=min_seconds), None
    except AudioError as e:
        return None, str(e)


def _embed(path: Path, y: np.ndarray | None, error: str | None, embedder, hop_frames: int,
           known_hashes: frozenset[str]) -> PreparedFile:
    absolute = str(path.resolve())
    if error:
        return PreparedFile(absolute, error=error)
    prepared = PreparedFile(absolute, len(y) / embedder.features.sample_rate, audio_hash(y))
    if prepared.audio_hash in known_hashes:
        return prepared  # a duplicate: the library reports it without embedding it again
    try:
        prepared.embeddings = embedder.embed_audio(y, hop_frames=hop_frames)
    except AudioError as e:
        prepared.error = f"{absolute}: {e}"
        return prepared
    tags = read_tags(path)
    prepared.title, prepared.artist = tags.title or path.stem, tags.artist
    return prepared


_worker: dict = {}


def _start_worker(model_spec: str | None, style, hop_frames: int, known_hashes: frozenset[str], landmarks: bool) -> None:
    import torch

    from tuneprint.encoder.checkpoint import load_model
    from tuneprint.encoder.embeddings import Embedder

    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism
    _worker.update(embedder=Embedder(load_model(model_spec), style=style, landmarks=landmarks), hop_frames=hop_frames,
                   known_hashes=known_hashes)


def _prepare_in_worker(path: Path) -> PreparedFile:
    return prepare_file(path, _worker["embedder"], _worker["hop_frames"], _worker["known_hashes"])
