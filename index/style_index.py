"""The style index: one unit-norm style vector per track (encoder/style.py), keyed by song id.

Separate from the fingerprint index: ``similar`` and ``genre`` search it, ``identify`` never
does. The vectors live in the catalog (written in the same transaction as their song, so a
crash can never leave one without the other); this index is built from them in memory, an
exact FAISS inner-product search (cosine on unit vectors) — 100,000 tracks of 128 floats are
51 MB and a query scans them in milliseconds.
"""
from __future__ import annotations

import numpy as np


class StyleIndex:
    def __init__(self, song_ids: list[str], vectors: np.ndarray):
        import faiss

        self.song_ids = list(song_ids)
        self._row = {s: i for i, s in enumerate(self.song_ids)}
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.dim = self.vectors.shape[1] if len(self.song_ids) else 0
        self._faiss = faiss.IndexFlatIP(max(self.dim, 1))
        if len(self.song_ids):
            self._faiss.add(self.vectors)

    @classmethod
    def from_catalog(cls, catalog) -> "StyleIndex":
        return cls(*catalog.styles())

    def __len__(self) -> int:
        return len(self.song_ids)

    def __contains__(self, song_id: str) -> bool:
        return song_id in self._row

    def vector(self, song_id: str) -> np.ndarray:
        return self.vectors[self._row[song_id]]

    def search(self, vector: np.ndarray, k: int, exclude: set[str] = frozenset()) -> list[tuple[str, float]]:
        """The ``k`` tracks nearest to ``vector`` [shape=(d,)] by cosine similarity, best first."""
        if not len(self.song_ids) or k <= 0:
            return []
        want = min(len(self.song_ids), k + len(exclude))
        sims, rows = self._faiss.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), want)
        found = [(self.song_ids[r], float(s)) for r, s in zip(rows[0], sims[0]) if r >= 0]
        return [(song, sim) for song, sim in found if song not in exclude][:k]

