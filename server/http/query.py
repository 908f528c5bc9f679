"""Questions about a clip: which song (``/identify``), what is near it (``/similar``), its label (``/genre``)."""
from __future__ import annotations

from flask import Blueprint, request

from tuneprint.server.http.auth import read_access
from tuneprint.server.http.errors import Problem
from tuneprint.server.http.service import current_library
from tuneprint.server.http.uploads import int_param, upload

# Bounds of the `n` field; openapi.json states the same (tests compare them).
DEFAULT_SIMILAR_N = 10
MAX_SIMILAR_N = 100

blueprint = Blueprint("queries", __name__)


@blueprint.post("/identify")
@read_access
def identify():
    data, name = upload()
    return current_library().identify(data, name=name).to_dict()


@blueprint.post("/similar")
@read_access
def similar():
    n = int_param("n", DEFAULT_SIMILAR_N, 1, MAX_SIMILAR_N)
    track = (request.form.get("track") or "").strip() or None
    if track is not None and "file" in request.files:
        raise Problem(400, "bad-request", "Bad request",
                      "send either a clip in `file` or a stored song id in `track`, not both")
    if track is not None:
        query, neighbours = current_library().similar(track=track, n=n)
    else:
        data, name = upload()
        query, neighbours = current_library().similar(data, n=n, name=name)
    return {"query": query, "neighbours": [nb.to_dict() for nb in neighbours]}


@blueprint.post("/genre")
@read_access
def genre():
    data, name = upload()
    return current_library().label(data, name=name).to_dict()
