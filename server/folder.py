"""A library folder's settings (``settings.json``) and its layout.

A library folder holds::

    settings.json        LibrarySettings (format version, model, index, vote, patch hops)
    catalog.sqlite       songs, labels, snippets (row id → song, offset), spectrograms, meta
    index/               the vector index (FAISS or Annoy) and its index.json
    model.safetensors    the library's own encoder, after `tuneprint train`
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tuneprint.errors import MismatchError
from tuneprint.index.vectors import IndexConfig
from tuneprint.index.vote import VoteConfig

FORMAT_VERSION = 1
SETTINGS_FILE = "settings.json"
CATALOG_FILE = "catalog.sqlite"
INDEX_DIR = "index"
LIBRARY_MODEL = "model.safetensors"


@dataclass(frozen=True)
class LibrarySettings:
    model: str = "default"  # "default" (shipped weights), "seeded", or a checkpoint path relative to the library
    index: IndexConfig = field(default_factory=IndexConfig)
    vote: VoteConfig | None = None  # None: the model's calibrated thresholds (or VoteConfig's defaults)
    index_hop_frames: int = 8  # ≈0.37 s between stored patches: a clip at any moment lines up within ≈0.19 s
    query_hop_frames: int = 4  # queries are cut densely; they are short
    similar_k: int = 50  # neighbours per patch when ranking similar tracks
    similar_patches: int = 48  # patches of a stored track used to look for similar tracks
    commit_every: int = 25  # files per all-or-nothing ingest step
    # "no clear label" below this median best-neighbour similarity: the clip sounds like nothing stored
    # (a test tone, noise); docs/BENCHMARKS.md, "Labels by neighbours", measures where music lies
    label_min_similarity: float = 0.0

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "LibrarySettings":
        if d.get("format_version") != FORMAT_VERSION:
            raise MismatchError(f"library settings format version {d.get('format_version')}, this tuneprint reads {FORMAT_VERSION}")
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**{**d, "index": IndexConfig(**d.get("index", {})), "vote": VoteConfig(**(d.get("vote") or {}))})


def read_settings(root: Path) -> LibrarySettings:
    return LibrarySettings.from_dict(json.loads((root / SETTINGS_FILE).read_text()))


def write_settings(root: Path, settings: LibrarySettings) -> None:
    write_json_atomic(root / SETTINGS_FILE, settings.to_dict())


def write_json_atomic(path: Path, data: dict) -> None:
    """Write a JSON file through a temporary sibling and a rename: readers see the old or the new file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
