"""A library folder: its layout, its settings (``settings.json``), and reading or creating its parts.

A library folder holds::

    settings.json        LibrarySettings (format version, model, index, vote, patch hops)
    catalog.sqlite       songs, labels, snippet runs (row ids → song, offsets), verification views, meta
    index/               the vector index and its index.json: FAISS segments of codes (index/segments.py),
                         Annoy's forest, or the name of a Milvus collection
    milvus.db            a Milvus Lite index's vectors (``--index milvus`` without ``--uri``)
    model.safetensors    the library's own encoder, after `tuneprint train`
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from tuneprint.errors import BusyError, DamagedLibraryError, LibraryError, MismatchError
from tuneprint.index.catalog import Catalog, Song
from tuneprint.index.vectors import IndexConfig, VectorIndex, save_index
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
    style: str = "default"  # style head: "default" (shipped) or a file relative to the library (train --style)
    style_k: int = 10  # nearest tracks in style whose labels vote (genre by neighbours)
    similar_k: int = 50  # neighbours per patch when ranking similar tracks by fingerprint (no style head)
    similar_patches: int = 48  # patches of a stored track used to look for similar tracks
    commit_every: int = 25  # files per all-or-nothing ingest step
    # "no clear label" for a steady sound (a held tone, a hum): a clip of at least label_steady_patches
    # query patches whose patches are this alike (median pairwise cosine). Music changes over seconds:
    # 172 held-out 10-s music clips stay at or below 0.73, tones and hum reach 1.0; noise does not
    # (docs/BENCHMARKS.md, "Labels: steady sounds get no clear label"; scripts/steady_sounds.py)
    label_steady_similarity: float = 0.9
    label_steady_patches: int = 8
    # store each song's landmarks (encoder/landmarks.py) and search them for clips the embeddings leave
    # "unknown": ≈56 kB a minute of audio on disk and 250 kB in memory once searched, so a library of
    # many thousands of songs may do without (docs/BENCHMARKS.md, "Landmarks: what they cost")
    landmarks: bool = True

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


CALIBRATION_FILE = Path(__file__).resolve().parents[1] / "encoder" / "weights" / "calibration.json"


QUERY_ENCODER_FILE = CALIBRATION_FILE.with_name("query.safetensors")  # encoder/query_encoder.DEFAULT_QUERY


def query_encoder_id(model_id: str | None, path: Path = QUERY_ENCODER_FILE) -> str | None:
    """The id of the shipped query encoder if it was trained against ``model_id``, else None — from the
    file's safetensors header alone, so that `stats` loads no network (encoder/query_encoder.py loads it)."""
    if model_id is None or not path.is_file() or _safetensors_metadata(path).get("model_id") != model_id:
        return None
    return f"{model_id}/sha256:{_file_digest(path, path.stat().st_mtime_ns, path.stat().st_size)}"


def gate_summary(model_id: str | None, path: Path | None = None) -> dict | None:
    """The shipped music gate (server/gate.py) if it reads ``model_id``'s embeddings, from its header
    alone: threshold, whether it holds a CNN, when it was trained; else None (answers say "music": null)."""
    from .gate import DEFAULT_GATE, READS_FORMATS

    path = path or DEFAULT_GATE
    if model_id is None or not path.is_file():
        return None
    header = _safetensors_header(path)
    meta = header.get("__metadata__", {})
    if meta.get("model_id") != model_id or meta.get("format_version") not in READS_FORMATS:
        return None
    return {"threshold": float(meta["threshold"]), "cnn": any(k.startswith("cnn.") for k in header),
            "trained": json.loads(meta.get("meta", "{}")).get("trained")}


def _safetensors_metadata(path: Path) -> dict:
    """A safetensors file's metadata, read from its header (no tensor is loaded)."""
    return _safetensors_header(path).get("__metadata__", {})


def _safetensors_header(path: Path) -> dict:
    import struct

    with open(path, "rb") as f:
        return json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))


@functools.lru_cache(maxsize=8)
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    """The first 16 hex digits of the file's sha256; read again only when the file changed."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def write_calibration(model_id: str, vote: dict, report: dict, path: Path = CALIBRATION_FILE) -> Path:
    """Ship "unknown" thresholds for the encoder ``model_id`` beside its weights (the checkpoint keeps
    its bytes, and so its id, which libraries, codec, style head and gate are tied to)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"model_id": model_id, "vote": vote, "report": report}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def shipped_calibration(model_id: str, path: Path = CALIBRATION_FILE) -> dict | None:
    """The vote settings of ``path`` when they were calibrated for ``model_id``."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data["vote"] if data.get("model_id") == model_id else None


def vote_of(calibration: dict) -> VoteConfig:
    """Calibrated vote settings as VoteConfig (keys it does not know are left out)."""
    return VoteConfig(**{k: v for k, v in calibration.items() if k in VoteConfig.__dataclass_fields__})


def shipped_vote(model_id: str, path: Path = CALIBRATION_FILE) -> VoteConfig | None:
    """:func:`shipped_calibration` as vote settings."""
    shipped = shipped_calibration(model_id, path)
    return vote_of(shipped) if shipped else None


def calibrated_vote(model) -> VoteConfig | None:
    """Vote settings with the "unknown" thresholds calibrated for this model, if any: those shipped in
    encoder/weights/calibration.json for it (scripts/identification_sizes.py), else the checkpoint's own
    (scripts/calibrate.py)."""
    calibration = shipped_calibration(model.model_id)
    calibration = calibration or (model.meta.get("extra", {}).get("calibration") if model.meta else None)
    return vote_of(calibration) if calibration else None


def write_empty_library(folder: Path, settings: LibrarySettings, model, style=None) -> None:
    from .style import record_style

    write_settings(folder, settings)
    catalog = Catalog(folder / CATALOG_FILE)
    record_model(catalog, model)
    record_style(catalog, style)
    catalog.close()
    from .codec import new_index

    save_index(new_index(settings.index, model.model_id), folder / INDEX_DIR, model_id=model.model_id)


def build_atomically(root: Path, fill: Callable[[Path], None]) -> None:
    """Fill a hidden sibling folder, then rename it to ``root``: a library is there whole or not at all."""
    staging = root.with_name(f".{root.name}.creating-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir()
    try:
        fill(staging)
        os.rename(staging, root)  # replaces an empty folder the user made, never a full one
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def open_catalog(root: Path) -> Catalog:
    """The catalog, read-only when this process may not write in the folder (the library is still searched)."""
    path = root / CATALOG_FILE
    if not path.is_file():
        raise FileNotFoundError("missing")
    writable = os.access(root, os.W_OK) and os.access(path, os.W_OK)
    catalog = Catalog(path, read_only=not writable)
    catalog.generation()  # reads a table: a file that is not a catalog fails here, not in the middle of a query
    return catalog


def read_part(path: Path, read):
    """``read()`` one part of a library folder; damage becomes one clear sentence naming the file."""
    try:
        return read()
    except (LibraryError, BusyError):
        raise
    except (OSError, ValueError, TypeError, AttributeError, KeyError, RuntimeError, sqlite3.Error) as e:
        root = path.parent
        raise DamagedLibraryError(f"{path}: cannot be read ({type(e).__name__}: {e}); run "
                                  f"`tuneprint doctor --library {root}` to check and repair the library") from None


def model_spec(root: Path, spec: str) -> str:
    if spec not in ("default", "seeded", "") and not Path(spec).is_absolute():
        return str(root / spec)
    return spec


def load_library_model(root: Path, spec: str):
    from tuneprint.encoder.checkpoint import load_model

    return load_model(model_spec(root, spec))


def embedder_for(model, style=None, landmarks: bool = True):
    """The embedder of ``model``: with its style head, the query encoder that fits it, and landmarks if asked."""
    from tuneprint.encoder.embeddings import Embedder
    from tuneprint.encoder.query_encoder import query_encoder_for

    return Embedder(model, style=style, query=query_encoder_for(model), landmarks=landmarks)


def record_model(catalog: Catalog, model) -> None:
    """What a library opened without its encoder needs to know of it: its id and feature settings."""
    catalog.set_meta("model_id", model.model_id)
    catalog.set_meta("features", json.dumps(model.features.to_dict()))


def recorded_features(catalog: Catalog):
    from tuneprint.encoder.features import FeatureConfig

    recorded = catalog.get_meta("features")
    return FeatureConfig(**json.loads(recorded)) if recorded else FeatureConfig()


def recorded_vector_count(root: Path) -> int:
    from tuneprint.index.vectors import META_FILE

    meta = root / INDEX_DIR / META_FILE
    return int(json.loads(meta.read_text()).get("count", 0)) if meta.is_file() else 0


def insert_songs(catalog: Catalog, index: VectorIndex, rows: list[tuple[Song, object]]) -> list[np.ndarray]:
    """Insert songs with their snippets, spectrograms, landmarks and vectors (inside a catalog transaction).

    Returns the row ids given to each song's vectors.
    """
    from tuneprint.index.verify import verification_view

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    row = catalog.next_row_id()
    features = recorded_features(catalog)
    added = []
    for song, emb in rows:
        ids = catalog.insert_song(song, emb.offsets_s, row, now)
        catalog.put_spectrogram(song.song_id, verification_view(emb.spectrogram, features))
        if emb.landmarks is not None:
            catalog.put_landmarks(song.song_id, emb.landmarks)
        if emb.style is not None:
            from tuneprint.encoder.style import track_vector

            catalog.put_style(song.song_id, track_vector(emb.style))
        index.add(ids, emb.vectors)
        added.append(ids)
        row += len(ids)
    return added


def library_stats(lib) -> dict:
    """Counts, sizes and the identification settings of an open library (``Library.stats``)."""
    counts = lib.catalog.counts()
    vote = lib.settings.vote.for_library(counts["songs"])
    index_files = [*(lib.root / INDEX_DIR).glob("*"), lib.root / "milvus.db"]  # a Milvus Lite file sits beside
    index_bytes = sum(f.stat().st_size for f in index_files if f.is_file())
    # songs, snippets and the songs' spectrograms for verification (SQLite and its write-ahead log)
    catalog_bytes = sum(f.stat().st_size for f in lib.root.glob(CATALOG_FILE + "*") if f.is_file())
    style_vectors, style_bytes = lib.catalog.style_bytes()  # inside catalog_bytes
    minutes = counts["hours"] * 60

    def per_minute(n: int) -> float | None:
        return round(n / minutes, 1) if minutes else None
    return {"library": str(lib.root), "songs": counts["songs"], "snippets": counts["snippets"],
            "hours": round(counts["hours"], 4), "labels": counts["labels"], "tags": lib.catalog.tag_counts(), "backend": lib.settings.index.backend,
            "vectors": len(lib.index) if lib.index is not None else recorded_vector_count(lib.root),
            "index_bytes": index_bytes, "catalog_bytes": catalog_bytes, "model_id": lib.model_id,
            # the style index: one vector per song, stored in the catalog (server/style.py)
            "style_id": lib.catalog.get_meta("style_id") or None, "style_vectors": style_vectors,
            "style_bytes": style_bytes,
            "bytes_per_audio_minute": {"index": per_minute(index_bytes), "catalog": per_minute(catalog_bytes),
                                       "style": per_minute(style_bytes), "total": per_minute(index_bytes + catalog_bytes)},
            # how the fingerprints are stored and searched (index/vectors.IndexConfig, recorded in settings)
            "index_config": lib.settings.index.to_dict(),
            # vectors the library held when its codec was trained on them (None: the shipped codec)
            "codec_trained_at": getattr(lib.index, "codec_trained_at", None),
            "patch_hop_s": round(lib.settings.index_hop_frames * lib.features.frame_seconds, 4),
            # the similarity below which a clip is "unknown" at this library's size: 3-s clips, and
            # the lower bar of long clips (≥ 6 s when calibrated; the same when not)
            "min_similarity": round(vote.min_similarity, 4),
            "min_similarity_long": round(vote.min_similarity_for(10**6), 4),
            # spectral verification (index/verify.py): songs checked, and the bar on the evidence
            "verify_top": vote.verify_top if vote.verifies else 0, "verify_weight": vote.verify_weight,
            "min_evidence": round(vote.min_evidence, 4),
            # the lead over the runner-up's evidence, and the bars of clips shorter than a patch
            # ([seconds, min_evidence, min_lead] points)
            "min_lead": round(vote.min_lead, 4), "short_bars": [list(p) for p in vote.short_bars],
            # the learnt line that replaces those bars when calibrated (index/vote.VoteConfig.score_rule):
            # [clip seconds, bias, weights of index/vote.DECISION_FEATURES] points
            "score_rule": [list(p) for p in vote.score_rule] if vote.verifies else [],
            # the query encoder identification searches with (encoder/query_encoder.py), if one fits
            "query_encoder": query_encoder_id(lib.model_id),
            # the music gate that answers "music" (server/gate.py), if one fits
            "music_gate": gate_summary(lib.model_id),
            # peak pairs (encoder/landmarks.py) that answer clips the embeddings leave "unknown"
            "landmarks": landmark_summary(lib, vote)}


def landmark_summary(lib, vote) -> dict:
    """Songs with landmarks, their pairs and bytes (inside ``catalog_bytes``), and the bars a match needs
    (``min_aligned`` 0: landmarks are not searched)."""
    songs, pairs, size = lib.catalog.landmark_counts()
    return {"enabled": lib.settings.landmarks, "songs": songs, "pairs": pairs, "bytes": size,
            "min_aligned": vote.landmark_min_aligned if lib.settings.landmarks else 0, "min_ratio": vote.landmark_min_ratio}
