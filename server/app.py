"""The HTTP service: a Flask application factory over :class:`server.library.Library`.

One Blueprint per area, each a thin adapter over the library:

===========  =================================================================
``pages``    ``GET /`` — the web page (``server/static``)
``queries``  ``POST /identify``, ``POST /similar``, ``POST /genre`` — a clip in the
             multipart field ``file``; JSON with the fields of the CLI's ``--json``
``tracks``   ``GET /tracks``, ``GET /tracks/<id>``; ``POST /tracks`` and
             ``DELETE /tracks/<id>`` need ``Authorization: Bearer <token>``
``service``  ``GET /stats``, ``GET /health``, ``GET /openapi.json``
===========  =================================================================

The model and index are loaded once, in :func:`create_app` (nothing at import time),
and shared by the server's threads: the library guards its index and catalog with a
lock, and this module serialises writes (adds and removals) so two uploads of the same
song cannot race. Every error is an RFC 9457 ``application/problem+json`` answer with a
``detail`` a person can act on; a bad upload is a 4xx, never a 500.

Run it with ``tuneprint serve --library LIB`` (waitress, a production WSGI server).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass
from functools import wraps
from pathlib import Path

from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

from tuneprint.encoder.audio import load_audio
from tuneprint.errors import (AudioError, CheckpointError, LibraryError, MismatchError, NotFoundError,
                            SilentAudioError, TooShortError, TuneprintError, UnreadableAudioError)

if TYPE_CHECKING:  # the library pulls in torch: it is imported when an app is made, not here
    from tuneprint.server.library import Library

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 40.0  # a whole track as FLAC fits; a query clip is far smaller
DEFAULT_SIMILAR_N = 10
MAX_SIMILAR_N = 100
DEFAULT_TRACKS_LIMIT = 100
MAX_TRACKS_LIMIT = 1000
UPLOADS_DIR = "uploads"  # inside the library folder: tracks added over HTTP
PROBLEM_BASE = "urn:tuneprint:problem:"


# -- the application factory ------------------------------------------------------------
@dataclass
class Service:
    """What the app shares between requests: the library and the lock that serialises writes."""

    library: Library
    write_lock: threading.Lock


def create_app(library=None, *, library_path: str | os.PathLike | None = None, token: str | None = None,
               read_token: str | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               test_config: dict | None = None) -> Flask:
    """Make the tuneprint web app.

    Parameters
    ----------
    library : an open :class:`~server.library.Library` to serve; or give ``library_path``
    library_path : a library folder, opened here (model and index load once, now)
    token : bearer token that unlocks the write endpoints; without one, writes are refused (403)
    read_token : bearer token that the read endpoints then require (``token`` also works for them);
        ``/``, ``/health`` and ``/openapi.json`` stay open
    max_upload_mb : uploads larger than this are refused with 413
    test_config : Flask config overrides (``TUNEPRINT_TOKEN``, ``MAX_CONTENT_LENGTH``, ...)
    """
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config.from_mapping(
        TUNEPRINT_LIBRARY=str(library_path) if library_path is not None else None,
        TUNEPRINT_TOKEN=token or None,
        TUNEPRINT_READ_TOKEN=read_token or None,
        MAX_CONTENT_LENGTH=int(max_upload_mb * 1024 * 1024),
    )
    if test_config:
        app.config.update(test_config)
    app.json.sort_keys = False  # keep the field order of the CLI's --json

    if library is None:  # opened here, so the caller closes it: app.extensions["tuneprint"].library.close()
        if not app.config["TUNEPRINT_LIBRARY"]:
            raise ValueError("create_app needs a library or a library_path")
        from tuneprint.server.library import Library

        library = Library.open(app.config["TUNEPRINT_LIBRARY"])
    app.extensions["tuneprint"] = Service(library, threading.Lock())

    for blueprint in (pages, queries, tracks, service):
        app.register_blueprint(blueprint)
    _register_error_handlers(app)
    log.info("serving library %s (%d songs, encoder %s)", library.root, library.stats()["songs"], library.model_id)
    return app


def _service() -> Service:
    return current_app.extensions["tuneprint"]


def _library():
    return _service().library


# -- problems (RFC 9457) ----------------------------------------------------------------
class Problem(Exception):
    """An error answer: HTTP status, a short machine-readable kind, a title and a detail."""

    def __init__(self, status: int, kind: str, title: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail, self.headers = status, kind, title, detail, headers or {}


# Library exceptions → (status, kind, title); the most specific class wins.
ERROR_MAP: dict[type, tuple[int, str, str]] = {
    UnreadableAudioError: (422, "unreadable-audio", "Unreadable audio"),
    TooShortError: (422, "too-short", "Audio too short"),
    SilentAudioError: (422, "silent-audio", "Silent audio"),
    AudioError: (422, "bad-audio", "Unusable audio"),
    NotFoundError: (404, "not-found", "Not found"),
    MismatchError: (409, "library-mismatch", "Library mismatch"),
    LibraryError: (409, "library-error", "Library error"),
    CheckpointError: (500, "model-error", "Model error"),
    TuneprintError: (500, "internal-error", "Internal error"),
}


def problem_response(status: int, kind: str, title: str, detail: str, headers: dict | None = None) -> Response:
    body = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail,
            "instance": request.path}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.update(headers or {})
    return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(e: Problem):
        return problem_response(e.status, e.kind, e.title, e.detail, e.headers)

    @app.errorhandler(TuneprintError)
    def _tuneprint(e: TuneprintError):
        status, kind, title = next(v for cls, v in ERROR_MAP.items() if isinstance(e, cls))
        detail = str(e)
        name = g.get("upload_name")
        if isinstance(e, AudioError):
            detail = re.sub(r"\[Errno -?\d+\] |: '<none>'", "", detail)  # FFmpeg's codes mean nothing to a user
            if name:  # say which upload, not "upload"
                detail = f"{name}: {detail.removeprefix('upload: ')}"
        if status >= 500:
            log.exception("%s %s failed", request.method, request.path)
        return problem_response(status, kind, title, detail)

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        detail = e.description or e.name
        if e.code == 413:
            limit = current_app.config["MAX_CONTENT_LENGTH"]
            detail = f"the upload is larger than this server accepts ({limit / 1024 / 1024:g} MB)"
        headers = {k: v for k, v in e.get_headers() if k.lower() in ("allow", "www-authenticate")}
        return problem_response(e.code or 500, re.sub(r"[^a-z]+", "-", e.name.lower()).strip("-"), e.name, detail, headers)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        log.exception("%s %s failed", request.method, request.path)
        return problem_response(500, "internal-error", "Internal error",
                                "the server failed to answer this request; the error is in its log")


# -- access -----------------------------------------------------------------------------
def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _token_matches(given: str | None, *expected: str | None) -> bool:
    return given is not None and any(
        e and hmac.compare_digest(given.encode(), e.encode()) for e in expected)


def _unauthorized(what: str) -> Problem:
    given = _bearer()
    detail = (f"{what} need a token: send `Authorization: Bearer <token>`" if given is None
              else "the bearer token is not valid for this request")
    return Problem(401, "unauthorized", "Unauthorized", detail,
                   {"WWW-Authenticate": 'Bearer realm="tuneprint"' + ("" if given is None else ', error="invalid_token"')})


def read_access(view):
    """Open, unless the server was started with a read token (the write token also reads)."""
    @wraps(view)
    def guarded(*args, **kwargs):
        read_token = current_app.config["TUNEPRINT_READ_TOKEN"]
        if read_token and not _token_matches(_bearer(), read_token, current_app.config["TUNEPRINT_TOKEN"]):
            raise _unauthorized("reads on this server")
        return view(*args, **kwargs)
    return guarded


def write_access(view):
    """Needs the write token; a server started without one accepts no writes at all."""
    @wraps(view)
    def guarded(*args, **kwargs):
        token = current_app.config["TUNEPRINT_TOKEN"]
        if not token:
            raise Problem(403, "writes-disabled", "Writes disabled",
                          "this server was started without a token, so it accepts no writes; "
                          "start it with --token or TUNEPRINT_TOKEN")
        if not _token_matches(_bearer(), token):
            raise _unauthorized("writes")
        return view(*args, **kwargs)
    return guarded


# -- request helpers --------------------------------------------------------------------
def _upload() -> tuple[bytes, str]:
    """The bytes and name of the multipart field ``file`` (413 beyond the cap, 4xx when missing or empty)."""
    f = request.files.get("file")  # reading the form enforces MAX_CONTENT_LENGTH (413)
    if f is None:
        raise Problem(400, "missing-file", "Missing file",
                      "send the audio as multipart/form-data in the field `file`")
    name = _safe_name(f.filename or "") or "upload"
    g.upload_name = name
    data = f.read()
    if not data:
        raise Problem(422, "empty-upload", "Empty upload", f"{name}: the uploaded file is empty")
    return data, name


def _safe_name(filename: str) -> str:
    """The last component of an uploaded file's name, without path tricks or control characters."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*').strip().lstrip(".")
    if len(name) > 120:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 110] + dot + ext[:9]) if dot and len(ext) < 10 else name[:120]
    return name


def _int_param(name: str, default: int, low: int, high: int) -> int:
    raw = request.values.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, "bad-parameter", "Bad parameter", f"`{name}` must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise Problem(400, "bad-parameter", "Bad parameter", f"`{name}` must be between {low} and {high}, not {value}")
    return value


# -- pages ------------------------------------------------------------------------------
pages = Blueprint("pages", __name__)


@pages.get("/")
def index():
    return current_app.send_static_file("index.html")


# -- queries ----------------------------------------------------------------------------
queries = Blueprint("queries", __name__)


@queries.post("/identify")
@read_access
def identify():
    data, name = _upload()
    return _library().identify(data, name=name).to_dict()


@queries.post("/similar")
@read_access
def similar():
    n = _int_param("n", DEFAULT_SIMILAR_N, 1, MAX_SIMILAR_N)
    track = (request.form.get("track") or "").strip() or None
    if track is not None and "file" in request.files:
        raise Problem(400, "bad-request", "Bad request", "send either a clip in `file` or a stored song id in `track`, not both")
    if track is not None:
        query, neighbours = _library().similar(track=track, n=n)
    else:
        data, name = _upload()
        query, neighbours = _library().similar(data, n=n, name=name)
    return {"query": query, "neighbours": [nb.to_dict() for nb in neighbours]}


@queries.post("/genre")
@read_access
def genre():
    data, name = _upload()
    return _library().label(data, name=name).to_dict()


# -- tracks -----------------------------------------------------------------------------
tracks = Blueprint("tracks", __name__)


@tracks.get("/tracks")
@read_access
def list_tracks():
    limit = _int_param("limit", DEFAULT_TRACKS_LIMIT, 1, MAX_TRACKS_LIMIT)
    offset = _int_param("offset", 0, 0, 2**31)
    lib = _library()
    return {"total": lib.stats()["songs"], "limit": limit, "offset": offset,
            "tracks": [song.to_dict() for song in lib.tracks(limit=limit, offset=offset)]}


@tracks.get("/tracks/<song_id>")
@read_access
def get_track(song_id: str):
    return _library().song(song_id).to_dict()


@tracks.post("/tracks")
@write_access
def add_track():
    """Store the upload as ``LIB/uploads/<sha256[:16]>/<name>`` and add that file to the library."""
    data, name = _upload()
    labels = sorted({label.strip() for label in request.form.getlist("label") if label.strip()})
    lib = _library()
    from tuneprint.encoder.features import audio_to_patches  # librosa: imported on use, not by `tuneprint --help`

    # Check here, for a precise 4xx (unreadable, too short, silent); the library decodes the file again.
    y = load_audio(data, sr=lib.features.sample_rate, min_seconds=lib.features.patch_seconds)
    audio_to_patches(y, hop_frames=lib.settings.index_hop_frames, cfg=lib.features)
    folder = lib.root / UPLOADS_DIR / hashlib.sha256(data).hexdigest()[:16]
    path = (folder / name).resolve()
    with _service().write_lock:
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


@tracks.delete("/tracks/<song_id>")
@write_access
def delete_track(song_id: str):
    lib = _library()
    with _service().write_lock:
        song = lib.remove(song_id)
        _remove_upload(lib.root, Path(song.path))
    return {"status": "removed", "song": song.to_dict()}


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


# -- service ----------------------------------------------------------------------------
service = Blueprint("service", __name__)


@service.get("/stats")
@read_access
def stats():
    return _library().stats()


@service.get("/health")
def health():
    lib = _library()
    return {"status": "ok", "songs": lib.stats()["songs"], "model_id": lib.model_id, "version": _version()}


@service.get("/openapi.json")
def openapi():
    return openapi_document()


# -- the OpenAPI document ---------------------------------------------------------------
def _problem_responses(*codes: int) -> dict:
    reasons = {400: "Malformed request (missing `file`, bad parameter)", 401: "Missing or wrong bearer token",
               403: "Writes are disabled (the server has no token)", 404: "No such song",
               405: "Method not allowed", 413: "Upload larger than the server's cap",
               422: "The upload is not usable audio: empty, unreadable (not audio, truncated), too short or silent",
               500: "Server error"}
    return {str(c): {"description": reasons[c], "content": {"application/problem+json": {"schema": _ref("Problem")}}}
            for c in (*codes, 500)}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: dict, headers: dict | None = None) -> dict:
    out = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _obj(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties) if required is None else required,
            "additionalProperties": False}


_STR, _NUM, _INT = {"type": "string"}, {"type": "number"}, {"type": "integer"}
_NSTR = {"type": ["string", "null"]}
_VERIFIED = {"type": ["number", "null"], "minimum": 0, "maximum": 1,
             "description": "share of the clip this song's own spectrogram explains (null: not checked)"}


def _clip_body(extra: dict | None = None, required: tuple[str, ...] = ("file",)) -> dict:
    props = {"file": {"type": "string", "format": "binary",
                      "description": "the clip: WAV, FLAC, MP3, Ogg (Vorbis/Opus), WebM/Opus, M4A/AAC, …"}}
    props.update(extra or {})
    return {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "properties": props, "required": list(required)}}}}


def openapi_document() -> dict:
    """The OpenAPI 3.1 description of this service (tests check it against the routes and answers)."""
    read = [{}, {"bearer": []}]  # open, unless the server was started with a read token
    write = [{"bearer": []}]
    schemas = {
        "Problem": _obj({"type": _STR, "title": _STR, "status": _INT, "detail": _STR, "instance": _STR}),
        "Match": _obj({"song_id": _STR, "path": _STR, "title": _NSTR, "artist": _NSTR,
                       "offset_s": {**_NUM, "description": "where in the song the clip starts, in seconds"},
                       "score": {**_NUM, "minimum": 0, "maximum": 1, "description": "confidence in [0, 1]"},
                       "similarity": _NUM, "votes": _INT, "labels": {"type": "array", "items": _STR},
                       "verified": _VERIFIED}),
        "Candidate": _obj({"song_id": _STR, "path": _STR, "title": _NSTR, "score": _NUM, "similarity": _NUM,
                           "offset_s": _NUM, "verified": _VERIFIED}),
        "Identification": _obj({"query": _STR,
                                "match": {"oneOf": [_ref("Match"), {"type": "null"}],
                                          "description": "null: not in the library"},
                                "candidates": {"type": "array", "items": _ref("Candidate")}}),
        "Neighbour": _obj({"song_id": _STR, "path": _STR, "title": _NSTR, "score": _NUM,
                           "labels": {"type": "array", "items": _STR}}),
        "SimilarTracks": _obj({"query": _STR, "neighbours": {"type": "array", "items": _ref("Neighbour")}}),
        "LabelVotes": _obj({"query": _STR, "label": _NSTR,
                            "top": {"type": "array", "description": "[label, share of the votes]",
                                    "items": {"type": "array", "prefixItems": [_STR, _NUM], "minItems": 2, "maxItems": 2}}}),
        "Song": _obj({"song_id": _STR, "path": _STR, "title": _NSTR, "artist": _NSTR, "duration_s": _NUM,
                      "labels": {"type": "array", "items": _STR}, "snippets": _INT}),
        "TrackList": _obj({"total": _INT, "limit": _INT, "offset": _INT, "tracks": {"type": "array", "items": _ref("Song")}}),
        "TrackChange": _obj({"status": {"type": "string", "enum": ["added", "duplicate", "removed"]}, "song": _ref("Song")}),
        "Stats": _obj({"library": _STR, "songs": _INT, "snippets": _INT, "hours": _NUM,
                       "labels": {"type": "object", "additionalProperties": _INT}, "backend": _STR, "vectors": _INT,
                       "index_bytes": _INT, "catalog_bytes": _INT, "model_id": _STR, "patch_hop_s": _NUM,
                       "min_similarity": _NUM, "min_similarity_long": _NUM,
                       "verify_top": _INT, "verify_weight": _NUM, "min_evidence": _NUM}),
        "Health": _obj({"status": {"const": "ok"}, "songs": _INT, "model_id": _STR, "version": _STR}),
    }
    song_id = {"name": "song_id", "in": "path", "required": True, "schema": _STR}
    n_field = {"type": "integer", "minimum": 1, "maximum": MAX_SIMILAR_N, "default": DEFAULT_SIMILAR_N,
               "description": "how many tracks"}
    paths = {
        "/": {"get": {"operationId": "page", "summary": "The web page: record or drop a clip, see the answer",
                      "tags": ["pages"], "security": [],
                      "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": _STR}}},
                                    **_problem_responses()}}},
        "/static/{filename}": {"get": {
            "operationId": "static", "summary": "The web page's scripts and styles", "tags": ["pages"], "security": [],
            "parameters": [{"name": "filename", "in": "path", "required": True, "schema": _STR}],
            "responses": {"200": {"description": "the file", "content": {"*/*": {"schema": _STR}}},
                          **_problem_responses(404)}}},
        "/identify": {"post": {
            "operationId": "identify", "tags": ["queries"], "security": read,
            "summary": "Which song a clip comes from, where in it and how sure — or not in the library",
            "requestBody": _clip_body(),
            "responses": {"200": _json("the answer of `tuneprint identify --json`", _ref("Identification")),
                          **_problem_responses(400, 401, 413, 422)}}},
        "/similar": {"post": {
            "operationId": "similar", "tags": ["queries"], "security": read,
            "summary": "Tracks nearest to a clip (`file`) or to a stored track (`track`, itself excluded)",
            "requestBody": _clip_body({"track": {"type": "string", "description": "a stored song id instead of a clip"},
                                       "n": n_field}, required=()),
            "responses": {"200": _json("the answer of `tuneprint similar --json`", _ref("SimilarTracks")),
                          **_problem_responses(400, 401, 404, 413, 422)}}},
        "/genre": {"post": {
            "operationId": "genre", "tags": ["queries"], "security": read,
            "summary": "Label a clip by the majority of its nearest neighbours' labels (top 2)",
            "requestBody": _clip_body(),
            "responses": {"200": _json("the answer of `tuneprint genre --json`", _ref("LabelVotes")),
                          **_problem_responses(400, 401, 413, 422)}}},
        "/tracks": {
            "get": {"operationId": "listTracks", "tags": ["tracks"], "security": read, "summary": "The library's tracks",
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                    "maximum": MAX_TRACKS_LIMIT, "default": DEFAULT_TRACKS_LIMIT}},
                        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}}],
                    "responses": {"200": _json("a page of tracks, ordered by path", _ref("TrackList")),
                                  **_problem_responses(400, 401)}},
            "post": {"operationId": "addTrack", "tags": ["tracks"], "security": write,
                     "summary": "Upload a track (stored in the library folder) with optional labels",
                     "requestBody": _clip_body({"label": {"type": "array", "items": _STR,
                                                          "description": "labels (repeat the field for several)"}}),
                     "responses": {
                         "201": _json("added", _ref("TrackChange"), {"Location": {"schema": _STR, "description": "the new track"}}),
                         "200": _json("the same audio is already in the library (labels unchanged)", _ref("TrackChange")),
                         **_problem_responses(400, 401, 403, 413, 422)}}},
        "/tracks/{song_id}": {
            "get": {"operationId": "getTrack", "tags": ["tracks"], "security": read, "summary": "One track",
                    "parameters": [song_id],
                    "responses": {"200": _json("the track", _ref("Song")), **_problem_responses(401, 404)}},
            "delete": {"operationId": "removeTrack", "tags": ["tracks"], "security": write,
                       "summary": "Remove a track from catalog and index (and its file, if it was uploaded here)",
                       "parameters": [song_id],
                       "responses": {"200": _json("removed", _ref("TrackChange")), **_problem_responses(401, 403, 404)}}},
        "/stats": {"get": {"operationId": "stats", "tags": ["service"], "security": read,
                           "summary": "Counts: songs, snippets, hours, labels, backend",
                           "responses": {"200": _json("the answer of `tuneprint stats --json`", _ref("Stats")),
                                         **_problem_responses(401)}}},
        "/health": {"get": {"operationId": "health", "tags": ["service"], "security": [], "summary": "Liveness and readiness",
                            "responses": {"200": _json("the library is open and answers", _ref("Health")),
                                          **_problem_responses()}}},
        "/openapi.json": {"get": {"operationId": "openapi", "tags": ["service"], "security": [],
                                  "summary": "This document",
                                  "responses": {"200": _json("OpenAPI 3.1", {"type": "object"}), **_problem_responses()}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "tuneprint", "version": _version(),
                 "description": "Identify what is playing from a few seconds of audio, find similar tracks, "
                                "label clips by their neighbours. Errors are application/problem+json (RFC 9457)."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "the token the server was started with"}}},
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tuneprint")
    except PackageNotFoundError:
        return "dev"


# -- the `tuneprint serve` command ------------------------------------------------------
def add_cli(command) -> None:
    p = command("serve", "Serve the library over HTTP: the JSON API and the web page (waitress).", cmd_serve)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--token", default=None,
                   help="bearer token for the write endpoints (default: env TUNEPRINT_TOKEN; none: writes are refused)")
    p.add_argument("--read-token", default=None,
                   help="bearer token the read endpoints then require (default: env TUNEPRINT_READ_TOKEN; none: reads are open)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest upload accepted, in MB (default {DEFAULT_MAX_UPLOAD_MB:g}; larger gets 413)")
    p.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")


def cmd_serve(args) -> int:
    from waitress import create_server

    from tuneprint.server.library import Library

    if args.max_upload_mb <= 0 or args.threads < 1:
        print("tuneprint serve: error: --max-upload-mb must be > 0 and --threads >= 1", file=sys.stderr)
        return 2
    token = args.token or os.environ.get("TUNEPRINT_TOKEN") or None
    read_token = args.read_token or os.environ.get("TUNEPRINT_READ_TOKEN") or None
    with Library.open(args.library) as lib:
        app = create_app(lib, token=token, read_token=read_token, max_upload_mb=args.max_upload_mb)
        cap = app.config["MAX_CONTENT_LENGTH"]
        # waitress buffers a body before Flask sees it: let through a little more than the cap so
        # Flask answers 413 as problem+json; far larger bodies waitress refuses itself.
        server = create_server(app, host=args.host, port=args.port, threads=args.threads,
                               max_request_body_size=2 * cap + (1 << 20), ident="tuneprint")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # close the library on a polite stop
        host = f"[{server.effective_host}]" if ":" in str(server.effective_host) else server.effective_host
        try:
            print(f"tuneprint: serving {lib.root} ({lib.stats()['songs']} songs) on http://{host}:{server.effective_port}/ "
                  f"with {args.threads} threads; writes {'need the token' if token else 'disabled (no --token)'}",
                  file=sys.stderr, flush=True)
            server.run()  # returns on Ctrl-C or SIGTERM
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    return 0
