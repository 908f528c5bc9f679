"""The HTTP service: a Flask application factory over :class:`tuneprint.server.library.Library`.

One Blueprint per area, each a thin adapter over the library:

=============  ================================================================
``query.py``   ``POST /identify``, ``POST /similar``, ``POST /genre`` — a clip in the
               multipart field ``file``; JSON with the fields of the CLI's ``--json``
``tracks.py``  ``GET /tracks``, ``GET /tracks/<id>``; ``POST /tracks`` and
               ``DELETE /tracks/<id>`` need ``Authorization: Bearer <token>``
``labels.py``  ``POST /classify`` (labels and tags of a clip by the library's trained
               classifier); ``PUT /tracks/<id>/tags`` (a track's tags and labels, token)
``meta.py``    ``GET /`` (the web page, ``static/``), ``GET /stats``, ``GET /health``,
               ``GET /openapi.json`` (``openapi.json`` beside this file)
=============  ================================================================

Beside them: ``errors.py`` (every error is an RFC 9457 ``application/problem+json`` answer
with a ``detail`` a person can act on; a bad upload is a 4xx, never a 500), ``auth.py``
(bearer tokens; server paths only for the write token), ``uploads.py`` (the uploaded clip,
spooled to disk as it arrives, and query parameters), ``limits.py`` (how much audio a request
may make the server decode, a rate limit per client), ``service.py`` (what requests share) and
``serve.py`` (waitress, behind ``tuneprint serve``, with its connection limits).

The model and index are loaded once, in :func:`create_app` (nothing at import time),
and shared by the server's threads: the library guards its index and catalog with a
lock, and the service serialises writes (adds and removals) so two uploads of the same
song cannot race.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from tuneprint.server.http.openapi import openapi_document

if TYPE_CHECKING:
    from flask import Flask

    from tuneprint.server.http.limits import Limits

__all__ = ["create_app", "openapi_document", "DEFAULT_MAX_UPLOAD_MB"]

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 40.0  # a whole track as FLAC fits; a query clip is far smaller


def create_app(library=None, *, library_path: str | os.PathLike | None = None, token: str | None = None,
               read_token: str | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               limits: Limits | None = None, test_config: dict | None = None) -> Flask:
    """Make the tuneprint web app.

    Parameters
    ----------
    library : an open :class:`~tuneprint.server.library.Library` to serve; or give ``library_path``
    library_path : a library folder, opened here (model and index load once, now)
    token : bearer token that unlocks the write endpoints; without one, writes are refused (403)
    read_token : bearer token that the read endpoints then require (``token`` also works for them);
        ``/``, ``/health`` and ``/openapi.json`` stay open
    max_upload_mb : uploads larger than this are refused with 413
    limits : how much audio a request may make the server decode, and the rate limit per client
        (:class:`~tuneprint.server.http.limits.Limits`; default ``Limits()``: 60 s per query clip,
        2 h per track, 120 audio requests a minute per client address)
    test_config : Flask config overrides (``TUNEPRINT_TOKEN``, ``MAX_CONTENT_LENGTH``, ...)
    """
    # Flask and the views are imported here, so that `tuneprint serve --help` (which imports
    # serve.py, hence this package) does not load them.
    from flask import Flask

    from tuneprint.server.http import labels, meta, query, tracks
    from tuneprint.server.http.errors import register_error_handlers
    from tuneprint.server.http.limits import Limits, RateLimiter
    from tuneprint.server.http.service import Service
    from tuneprint.server.http.uploads import UploadRequest

    limits = limits or Limits()
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.request_class = UploadRequest  # uploads spooled to disk as they arrive
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
        from tuneprint.server.library import Library  # torch: loaded when an app is made, not on import

        library = Library.open(app.config["TUNEPRINT_LIBRARY"])
    app.extensions["tuneprint"] = Service(library, threading.Lock(), limits,
                                          RateLimiter(limits.rate_per_min, limits.rate_burst))

    for blueprint in (meta.blueprint, query.blueprint, tracks.blueprint, labels.blueprint):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    log.info("serving library %s (%d songs, encoder %s)", library.root, library.stats()["songs"], library.model_id)
    return app
