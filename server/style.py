"""Style in a library: which style head it uses, its style index, and the two questions it answers
(``similar`` and labels by neighbours).

Every song's style vector (encoder/style.py) is stored in the catalog when the song is added; the
style index (index/style_index.py) is built from them. A library whose songs were embedded
without the current style head (made by an older tuneprint, or with another head) is refused with
the "run `tuneprint reindex`" message. An encoder that has no style head (the seeded one, or one
trained by ``tuneprint train`` before ``train --style``) answers by the fingerprint neighbours, and
says so (``"by": "fingerprint"``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tuneprint.errors import CheckpointError, MismatchError

log = logging.getLogger(__name__)

STYLE_ID_KEY = "style_id"  # catalog meta: the style head that made the stored style vectors
LIBRARY_STYLE = "style.safetensors"  # a library's own style head (`tuneprint train --style`)
BY_STYLE, BY_FINGERPRINT = "style", "fingerprint"


def style_spec(root: Path, spec: str) -> str:
    """A library's style setting as a path: "default" (the shipped head) or a file in the library."""
    return spec if spec in ("default", "") or Path(spec).is_absolute() else str(root / spec)


def style_for(model_id: str | None, spec: str = "default"):
    """The style head for the encoder ``model_id`` (encoder.style.StyleModel), or None where none fits."""
    from tuneprint.encoder.style import DEFAULT_STYLE, load_style

    path = DEFAULT_STYLE if spec in ("default", "") else Path(spec)
    if model_id is None or not Path(path).is_file():
        return None
    try:
        return load_style(path, model_id)
    except (MismatchError, CheckpointError) as e:
        log.info("no style head for this encoder: %s", e)
        return None


def record_style(catalog, style) -> None:
    """Note which style head the library's style vectors come from (inside a catalog transaction)."""
    catalog.set_meta(STYLE_ID_KEY, style.style_id if style is not None else "")


def check_style(lib) -> None:
    """Refuse a library whose stored style vectors were not made by its style head: reindex it."""
    recorded = lib.catalog.get_meta(STYLE_ID_KEY)
    missing = lib.catalog.songs_without_style()
    if recorded != lib.style.style_id or missing:
        made_by = f"style head {recorded}" if recorded else "no style head (an older tuneprint)"
        raise MismatchError(f"{lib.root}: the library's style vectors were made by {made_by}"
                            f"{f', {missing} songs have none' if missing else ''}; its style head is now "
                            f"{lib.style.style_id}; run `tuneprint reindex --library {lib.root}`")


def clip_style(emb):
    """A clip's style vector: the normalised mean of its patches' (encoder.style.track_vector)."""
    from tuneprint.encoder.style import track_vector

    return track_vector(emb.style)


def rank_similar_tracks(lib, emb, track: str | None, n: int) -> tuple[list[tuple[str, float]], str]:
    """The ``n`` tracks nearest to a clip's embeddings ``emb`` or to the stored ``track`` (itself
    excluded), with their scores, and what ranked them: the style index (cosine similarity of style
    vectors), or the fingerprint neighbours where the library has no style head."""
    exclude = {track} - {None}
    if lib.style is not None:
        index = lib.style_index()
        return index.search(index.vector(track) if track is not None else clip_style(emb), n, exclude), BY_STYLE
    from tuneprint.index.search import rank_similar

    vectors = _fingerprint_vectors(lib, track) if track is not None else emb.vectors
    return rank_similar(lib.neighbours(vectors, lib.settings.similar_k), n, exclude), BY_FINGERPRINT


def _fingerprint_vectors(lib, song_id: str):
    """Up to ``similar_patches`` stored fingerprint vectors spread over a track."""
    row_ids = lib.catalog.row_ids(song_id)
    pick = np.unique(np.linspace(0, len(row_ids) - 1, min(len(row_ids), lib.settings.similar_patches)).round().astype(int))
    with lib._lock:
        return lib.index.vectors(row_ids[pick])


def labels_by_style(lib, vector, *, k: int, top: int, exclude: set[str]) -> list[tuple[str, float]]:
    """The labels of the ``k`` tracks nearest in style, by majority vote, with their vote shares."""
    from tuneprint.index.vote import vote_labels

    neighbours = lib.style_index().search(vector, k, exclude)
    labels = {song: lib.catalog.song(song).labels for song, _ in neighbours}
    return vote_labels(np.array([s for s, _ in neighbours], dtype=object), labels, top=top,
                       similarities=np.array([sim for _, sim in neighbours]))
