"""Every error as an RFC 9457 ``application/problem+json`` answer.

Library exceptions map to a status and a short machine-readable kind (``ERROR_MAP``);
views raise :class:`Problem` for what only the HTTP layer knows (a missing field, a token).
"""
from __future__ import annotations

import logging
import re

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from tuneprint.errors import (AudioError, BusyError, CheckpointError, DamagedLibraryError, LibraryError,
                              MismatchError, NotFoundError, SampleRateError, SilentAudioError, TooShortError,
                              TuneprintError, UnreadableAudioError)
from tuneprint.server.http.service import current_library

log = logging.getLogger(__name__)

PROBLEM_BASE = "urn:tuneprint:problem:"
RETRY_BUSY_S = 10  # Retry-After of a "library busy" answer: another process's batch of adds is seconds long


class Problem(Exception):
    """An error answer: HTTP status, a short machine-readable kind, a title and a detail."""

    def __init__(self, status: int, kind: str, title: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail, self.headers = status, kind, title, detail, headers or {}


# Library exceptions → (status, kind, title); the most specific class wins (subclasses first).
# A 5xx only where the server cannot answer whatever the client sends: another process holds the
# library (503, retry), or the library's files are damaged (500, until its owner repairs it).
ERROR_MAP: dict[type, tuple[int, str, str]] = {
    UnreadableAudioError: (422, "unreadable-audio", "Unreadable audio"),
    TooShortError: (422, "too-short", "Audio too short"),
    SilentAudioError: (422, "silent-audio", "Silent audio"),
    SampleRateError: (422, "bad-sample-rate", "Unsupported sample rate"),
    AudioError: (422, "bad-audio", "Unusable audio"),
    NotFoundError: (404, "not-found", "Not found"),
    BusyError: (503, "library-busy", "Library busy"),
    DamagedLibraryError: (500, "library-damaged", "Library damaged"),
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


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(Problem, _problem)
    app.register_error_handler(TuneprintError, _library_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _problem(e: Problem) -> Response:
    return problem_response(e.status, e.kind, e.title, e.detail, e.headers)


def _library_error(e: TuneprintError) -> Response:
    status, kind, title = next(v for cls, v in ERROR_MAP.items() if isinstance(e, cls))
    detail = str(e)
    name = g.get("upload_name")
    if isinstance(e, AudioError):
        detail = re.sub(r"\[Errno -?\d+\] |: '<none>'", "", detail)  # FFmpeg's codes mean nothing to a user
        if name:  # say which upload, not the file it was spooled to
            detail = detail.replace(g.get("upload_path") or "upload", "upload")
            detail = f"{name}: {detail.removeprefix('upload: ')}"
    root = str(current_library().root)
    detail = detail.replace(f"{root}: ", "").replace(root, "the library")  # not where it lies on the server
    if isinstance(e, BusyError):
        log.warning("%s %s: %s", request.method, request.path, e)
    elif status >= 500:
        log.exception("%s %s failed", request.method, request.path)
    headers = {"Retry-After": str(RETRY_BUSY_S)} if isinstance(e, BusyError) else None
    return problem_response(status, kind, title, detail, headers)


def _http_error(e: HTTPException) -> Response:
    detail = e.description or e.name
    if e.code == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        detail = f"the upload is larger than this server accepts ({limit / 1024 / 1024:g} MB)"
    headers = {k: v for k, v in e.get_headers() if k.lower() in ("allow", "www-authenticate")}
    kind = re.sub(r"[^a-z]+", "-", e.name.lower()).strip("-")
    return problem_response(e.code or 500, kind, e.name, detail, headers)


def _unexpected(e: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.path)
    return problem_response(500, "internal-error", "Internal error",
                            "the server failed to answer this request; the error is in its log")
