"""The index codec shipped with the encoder (encoder/weights/codec.faiss): which new indexes start
trained, and how it is fitted (scripts/train_codec.py).

A compressed index (index/segments.py) needs a trained codec before it stores its first code.
The shipped one was fitted on the encoder's training music, so a new library of that encoder is
compact from its first song; any other encoder's library trains its own on its first vectors.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from tuneprint.index.segments import CODEC_FILE, SHIPPED_DIR, file_sha256, shipped_codec
from tuneprint.index.vectors import IndexConfig, VectorIndex, create_index

log = logging.getLogger(__name__)

WEIGHTS = SHIPPED_DIR
CODEC_INFO = "codec.json"


def shipped_codec_for(model_id: str, factory: str, weights: Path = WEIGHTS):
    """(the shipped codec, its sha256) if it was fitted for ``model_id`` with ``factory``; else None."""
    info_path = weights / CODEC_INFO
    if not info_path.is_file():
        return None
    info = json.loads(info_path.read_text())
    if info.get("model_id") != model_id or info.get("factory") != factory:
        return None
    sha256 = file_sha256((weights / CODEC_FILE).read_bytes())
    return shipped_codec(sha256, weights), sha256


def new_index(config: IndexConfig, model_id: str) -> VectorIndex:
    """An empty index for ``config``; a FAISS one starts with the shipped codec where it fits."""
    if config.backend == "faiss" and config.faiss_factory != "Flat":
        from tuneprint.index.segments import SegmentedFaissIndex

        shipped = shipped_codec_for(model_id, config.faiss_factory)
        if shipped is not None:
            return SegmentedFaissIndex(config, *shipped)
    return create_index(config)


def fit_codec(corpus: Path, model: str, factory: str, cache: Path):
    """Fit ``factory`` on the fingerprints of the corpus's train split (embedded once into ``cache``)."""
    import faiss

    from tuneprint.encoder.checkpoint import load_model

    loaded = load_model(model)
    vectors, songs = _train_vectors(corpus, loaded, cache)
    codec = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    codec.train(vectors)
    info = {"model_id": loaded.model_id, "factory": factory, "vectors": int(len(vectors)), "songs": songs,
            "split": "train", "code_bytes": int(codec.sa_code_size()), "fit_s": round(time.perf_counter() - started, 1)}
    return codec, info


def write_codec(codec, info: dict, out: Path) -> None:
    import faiss

    out.mkdir(parents=True, exist_ok=True)
    for pca in _pca_transforms(codec):  # its d×d eigenvector matrix only serves training: 4 MB less
        pca.PCAMat.resize(0)
    faiss.write_index(codec, str(out / CODEC_FILE))
    (out / CODEC_INFO).write_text(json.dumps(info, indent=2) + "\n")


def _pca_transforms(codec) -> list:
    import faiss

    if not isinstance(codec, faiss.IndexPreTransform):
        return []
    chain = [faiss.downcast_VectorTransform(codec.chain.at(i)) for i in range(codec.chain.size())]
    return [vt for vt in chain if isinstance(vt, faiss.PCAMatrix)]


def _train_vectors(corpus: Path, model, cache: Path) -> tuple[np.ndarray, int]:
    from tuneprint.encoder.audio import load_audio
    from tuneprint.encoder.embeddings import Embedder
    from tuneprint.server.evaluation.corpus import split_corpus
    from tuneprint.server.folder import LibrarySettings

    items = split_corpus(corpus)["train"]
    if cache.is_file():
        return np.load(cache), len(items)
    embedder = Embedder(model)
    vectors = []
    for i, (path, _) in enumerate(items):
        y = load_audio(corpus / path, sr=model.features.sample_rate)
        vectors.append(embedder.embed_audio(y, hop_frames=LibrarySettings.index_hop_frames).vectors)
        log.info("embedded %d/%d train songs", i + 1, len(items))
    stacked = np.concatenate(vectors)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, stacked)
    return stacked, len(items)
