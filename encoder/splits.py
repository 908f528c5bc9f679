"""Splits by song (never by snippet), deterministic from file names so every script agrees."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

# Collections of the development corpus that training never sees: their labels are "unseen".
UNSEEN_LABELS = ("extremetuxracer", "pushover", "xmoto", "frozenbubble", "funnyboat")


def song_unit(name: str, salt: str = "tuneprint-split-v1") -> float:
    """A stable number in [0, 1) for a song, from its file name."""
    return int(hashlib.sha1(f"{salt}:{Path(name).name}".encode()).hexdigest()[:12], 16) / 16**12


def split_songs(items: list[tuple[str, str]], *, unseen_labels=UNSEEN_LABELS, test_share: float = 0.2,
                val_share: float = 0.1) -> dict[str, list[tuple[str, str]]]:
    """Split (path, label) items by song into train / val / test (seen labels) and unseen.

    ``unseen``: every song of ``unseen_labels``; of the rest, ``test_share`` go to test,
    ``val_share`` to val (for monitoring and for tuning thresholds), the others to train.
    """
    parts: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": [], "unseen": []}
    for path, label in items:
        u = song_unit(path)
        part = "unseen" if label in unseen_labels else "test" if u < test_share else "val" if u < test_share + val_share else "train"
        parts[part].append((path, label))
    return parts


def read_manifest(corpus: str | Path) -> list[tuple[str, str]]:
    """(absolute path, label) of the corpus written by scripts/fetch_corpus.py."""
    corpus = Path(corpus)
    with open(corpus / "manifest.csv", newline="") as f:
        return [(str((corpus / r["path"]).resolve()), r["label"]) for r in csv.DictReader(f)]
