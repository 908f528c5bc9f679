"""Splits by song (never by snippet), deterministic from file names so every script agrees."""
from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path


def song_unit(name: str, salt: str = "tuneprint-split-v1") -> float:
    """A stable number in [0, 1) for a song, from its file name."""
    return int(hashlib.sha1(f"{salt}:{Path(name).name}".encode()).hexdigest()[:12], 16) / 16**12


def split_songs(items: list[tuple[str, str]], *, unseen_labels: Collection[str], test_share: float = 0.2,
                val_share: float = 0.1) -> dict[str, list[tuple[str, str]]]:
    """Split (path, label) items by song into train / val / test (seen labels) and unseen.

    ``unseen``: every song of ``unseen_labels`` (collections training never sees); of the
    rest, ``test_share`` go to test, ``val_share`` to val (for monitoring and for tuning
    thresholds), the others to train.
    """
    parts: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": [], "unseen": []}
    for path, label in items:
        u = song_unit(path)
        part = "unseen" if label in unseen_labels else "test" if u < test_share else "val" if u < test_share + val_share else "train"
        parts[part].append((path, label))
    return parts
