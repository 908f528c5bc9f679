"""Keeping a library in shape: re-embedding with a new encoder, adopting a trained one, and storing
what libraries made by older versions lack. Functions over an open :class:`server.library.Library`,
run under its writer lock.
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from tuneprint.index.catalog import Song
from tuneprint.index.vectors import IndexConfig, save_index

from .folder import INDEX_DIR, LIBRARY_MODEL, insert_songs, record_model, write_settings
from .style import record_style

log = logging.getLogger(__name__)


def store_missing_spectrograms(lib) -> None:
    """Libraries made before the catalog kept spectrograms get them once, here, from the songs'
    files, so that a query only ever reads. A song whose file is gone is judged by similarity alone."""
    from tuneprint.encoder.audio import load_audio
    from tuneprint.encoder.features import log_mel
    from tuneprint.errors import AudioError
    from tuneprint.index.verify import verification_view

    missing = lib.catalog.songs_without_spectrogram()
    if not missing or not lib._may_write_now():
        return
    log.info("storing the spectrograms of %d songs (library made by an older tuneprint)", len(missing))
    for song_id in missing:
        try:
            S_db = verification_view(log_mel(load_audio(lib._song(song_id).path, sr=lib.features.sample_rate), lib.features),
                                     lib.features)
        except (AudioError, OSError) as e:
            log.warning("cannot verify %s: %s", song_id, e)
            continue
        with lib.writing(wait_s=0), lib.catalog.transaction():
            lib.catalog.put_spectrogram(song_id, S_db)


def adopt_model(lib, checkpoint: str | os.PathLike) -> str:
    """Make a trained checkpoint this library's encoder (encoder part only, half precision).

    The library must then be re-embedded (:meth:`reindex`) before it answers queries again.
    """
    from tuneprint.encoder.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(checkpoint)
    with lib.writing():
        save_checkpoint(lib.root / LIBRARY_MODEL, loaded.net, loaded.features, half=True, encoder_only=True,
                        extra={"source": str(Path(checkpoint).resolve()), **loaded.meta.get("extra", {})})
        lib.settings = replace(lib.settings, model=LIBRARY_MODEL)
        write_settings(lib.root, lib.settings)
    return str(lib.root / LIBRARY_MODEL)


def reindex(lib, progress: Callable[[Song], None] | None = None, index: IndexConfig | None = None) -> int:
    """Re-embed every song from its file with the library's current model and rebuild the index.

    The new index replaces the old one only when every song was embedded. A model that carries
    calibrated "unknown" thresholds (index/calibration.py) brings them along: thresholds of
    another encoder mean nothing for the new embeddings. ``index`` stores the vectors anew another
    way (e.g. a library made before compact codes: ``faiss_factory="PCA128,PQ64"``); the library's
    settings take it once the new index is in place.
    """
    from tuneprint.encoder.audio import load_audio

    from .codec import new_index

    lib._require_encoder()
    with lib.writing():  # held throughout: a song added meanwhile would miss the new index
        songs = lib.catalog.songs()
        config = index or lib.settings.index
        fresh = new_index(config, lib.model_id)
        with lib.catalog.transaction():  # a song at a time: memory holds the new index, not every embedding
            record_model(lib.catalog, lib.model)  # its features are what the songs' views are cut by
            # in a shuffled order: a codec trained on the library learns from its first vectors, which
            # should come from all over it, not from its oldest songs
            for i in np.random.default_rng(0).permutation(len(songs)):
                song = songs[i]
                y = load_audio(song.path, sr=lib.features.sample_rate)
                emb = lib.embedder.embed_audio(y, hop_frames=lib.settings.index_hop_frames)
                lib.catalog.delete_song(song.song_id)
                insert_songs(lib.catalog, fresh, [(song, emb)])
                if progress:
                    progress(song)
            record_style(lib.catalog, lib.style)
            if hasattr(fresh, "codec_covers"):  # a codec trained here learnt from the whole library
                fresh.codec_covers(len(fresh))
            save_index(fresh, lib.root / INDEX_DIR, model_id=lib.model_id)
            if config != lib.settings.index:
                lib.settings = replace(lib.settings, index=config)
                write_settings(lib.root, lib.settings)
            if lib.model_vote is not None and lib.model_vote != lib.settings.vote:
                lib.settings = replace(lib.settings, vote=lib.model_vote)
                write_settings(lib.root, lib.settings)
                log.info("library %s now uses the encoder's calibrated thresholds %s", lib.root, lib.model_vote.to_dict())
            lib._generation = lib.catalog.bump_generation()
            lib.index = fresh
    return len(songs)
