"""The library's tracks: list and read them; add (upload) and remove them with the write token.

Clients without the write token see tracks' file names, not where they lie on the server (auth.py).
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from flask import Blueprint, request, url_for

from tuneprint.server.gate import KEEP_HINT
from tuneprint.server.http.auth import for_client, read_access, write_access
from tuneprint.server.http.errors import Problem
from tuneprint.server.http.limits import rate_limited
from tuneprint.server.http.service import current_library, current_service
from tuneprint.server.http.uploads import Upload, int_param, upload

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
    return for_client({"total": lib.stats()["songs"], "limit": limit, "offset": offset,
                       "tracks": [song.to_dict() for song in lib.tracks(limit=limit, offset=offset)]})


@blueprint.get("/tracks/<song_id>")
@read_access
def get_track(song_id: str):
    return for_client(current_library().song(song_id).to_dict())


@blueprint.post("/tracks")
@write_access
@rate_limited
def add_track():
    """Store the upload as ``LIB/uploads/<sha256[:16]>/<name>`` and add that file to the library."""
    up = upload()
    labels = sorted({label.strip() for label in request.form.getlist("label") if label.strip()})
    lib = current_library()
    _check_audio(lib, up)
    folder = lib.root / UPLOADS_DIR / _sha256(up.path)[:16]
    path = (folder / up.name).resolve()
    with current_service().write_lock:
        fresh = not path.exists()
        if fresh:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{up.name}.part"
            shutil.copyfile(up.path, tmp)
            os.replace(tmp, path)
        try:
            [result] = lib.add([path], default_labels=labels, allow_non_music=_allow_non_music())
        except BaseException:  # busy library, full disk: keep no file the library does not list
            if fresh:
                _remove_upload(lib.root, path)
            raise
        if result.status != "added" and fresh and (result.status == "failed" or lib.song(result.song_id).path != str(path)):
            _remove_upload(lib.root, path)
    if result.status == "failed":
        detail = (result.error or "").replace(str(path), up.name)
        raise Problem(422, "bad-audio", "Unusable audio", detail.replace(KEEP_HINT, "send allow_non_music=true to keep it"))
    song = lib.song(result.song_id).to_dict()  # to the write token's holder: the server's path
    if result.status == "duplicate":
        return {"status": "duplicate", "song": song}, 200
    return {"status": "added", "song": song}, 201, {"Location": url_for("tracks.get_track", song_id=song["song_id"])}


@blueprint.delete("/tracks/<song_id>")
@write_access
def delete_track(song_id: str):
    lib = current_library()
    with current_service().write_lock:
        song = lib.remove(song_id)
        _remove_upload(lib.root, Path(song.path))
    return {"status": "removed", "song": song.to_dict()}


def _allow_non_music() -> bool:
    """The form field ``allow_non_music``: keep a file the music gate calls non-music."""
    return request.form.get("allow_non_music", "").strip().lower() in ("1", "true", "yes", "on")


def _check_audio(lib, up: Upload) -> None:
    """Decode and cut the upload here, for a precise 4xx (unreadable, too short, silent, too long)
    before storing it; at most ``max_track_seconds`` (and one more) of it is decoded.

    The library decodes the stored file again when it adds it.
    """
    from tuneprint.encoder.audio import load_audio
    from tuneprint.encoder.features import audio_to_patches  # librosa: imported on use, not by `tuneprint --help`

    cap, sr = current_service().limits.max_track_seconds, lib.features.sample_rate
    y = load_audio(up.path, sr=sr, min_seconds=lib.features.patch_seconds, max_seconds=cap + 1.0)
    if len(y) > cap * sr:
        raise Problem(422, "too-long", "Audio too long",
                      f"{up.name}: longer than the {cap / 60:g} minutes this server accepts for a track")
    audio_to_patches(y, hop_frames=lib.settings.index_hop_frames, cfg=lib.features)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
