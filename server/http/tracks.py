"""The library's tracks: list and read them; add (upload) and remove them with the write token."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from flask import Blueprint, request, url_for

from tuneprint.server.http.auth import read_access, write_access
from tuneprint.server.http.errors import Problem
from tuneprint.server.http.service import current_library, current_service
from tuneprint.server.http.uploads import int_param, upload

# Bounds of the `limit` field; openapi.json states the same (tests compare them).
DEFAULT_TRACKS_LIMIT = 100
MAX_TRACKS_LIMIT = 1000
UPLOADS_DIR = "uploads"  # inside the library folder: tracks added over HTTP

blueprint = Blueprint("tracks", __name__)


@blueprint.get("/tracks")
@read_access
def list_tracks():
    limit = int_param("limit", DEFAULT_TRACKS_LIMIT, 1, MAX_TRACKS_LIMIT)
    offset = int_param("offset", 0, 0, 2**31)
    lib = current_library()
    return {"total": lib.stats()["songs"], "limit": limit, "offset": offset,
            "tracks": [song.to_dict() for song in lib.tracks(limit=limit, offset=offset)]}


@blueprint.get("/tracks/<song_id>")
@read_access
def get_track(song_id: str):
    return current_library().song(song_id).to_dict()


@blueprint.post("/tracks")
@write_access
def add_track():
    """Store the upload as ``LIB/uploads/<sha256[:16]>/<name>`` and add that file to the library."""
    data, name = upload()
    labels = sorted({label.strip() for label in request.form.getlist("label") if label.strip()})
    lib = current_library()
    _check_audio(lib, data)
    folder = lib.root / UPLOADS_DIR / hashlib.sha256(data).hexdigest()[:16]
    path = (folder / name).resolve()
    with current_service().write_lock:
        fresh = not path.exists()
        if fresh:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.part"
            tmp.write_bytes(data)
            os.replace(tmp, path)
        [result] = lib.add([path], default_labels=labels)
        if result.status != "added" and fresh and (result.status == "failed" or lib.song(result.song_id).path != str(path)):
            _remove_upload(lib.root, path)
    if result.status == "failed":
        raise Problem(422, "bad-audio", "Unusable audio", (result.error or "").replace(str(path), name))
    song = lib.song(result.song_id)
    if result.status == "duplicate":
        return {"status": "duplicate", "song": song.to_dict()}, 200
    return {"status": "added", "song": song.to_dict()}, 201, {"Location": url_for("tracks.get_track", song_id=song.song_id)}


@blueprint.delete("/tracks/<song_id>")
@write_access
def delete_track(song_id: str):
    lib = current_library()
    with current_service().write_lock:
        song = lib.remove(song_id)
        _remove_upload(lib.root, Path(song.path))
    return {"status": "removed", "song": song.to_dict()}


def _check_audio(lib, data: bytes) -> None:
    """Decode and cut the upload here, for a precise 4xx (unreadable, too short, silent) before storing it.

    The library decodes the stored file again when it adds it.
    """
    from tuneprint.encoder.audio import load_audio
    from tuneprint.encoder.features import audio_to_patches  # librosa: imported on use, not by `tuneprint --help`

    y = load_audio(data, sr=lib.features.sample_rate, min_seconds=lib.features.patch_seconds)
    audio_to_patches(y, hop_frames=lib.settings.index_hop_frames, cfg=lib.features)


def _remove_upload(root: Path, path: Path) -> None:
    """Delete a file this service stored under LIB/uploads (never a file added from elsewhere)."""
    uploads = (root / UPLOADS_DIR).resolve()
    if path.parent.parent != uploads:
        return
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass  # another upload shares the folder
