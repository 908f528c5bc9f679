"""Questions about a clip: which song (``/identify``), what is near it (``/similar``), its label (``/genre``).

Each decodes at most the first ``Limits.max_query_seconds`` of the clip, and counts against the
client's rate limit (limits.py).
"""
from __future__ import annotations

from flask import Blueprint, request

from tuneprint.server.http.auth import for_client, read_access
from tuneprint.server.http.errors import Problem
from tuneprint.server.http.limits import rate_limited
from tuneprint.server.http.service import current_library
from tuneprint.server.http.uploads import int_param, query_clip

# Bounds of the `n` field; openapi.json states the same (tests compare them).
DEFAULT_SIMILAR_N = 10
MAX_SIMILAR_N = 100

blueprint = Blueprint("queries", __name__)


@blueprint.post("/identify")
@read_access
@rate_limited
def identify():
    y, name = query_clip(min_seconds=0.0)  # a clip too short to tell is answered "unknown", reason "too_short"
    return for_client(current_library().identify(y, name=name).to_dict())


@blueprint.post("/similar")
@read_access
@rate_limited
def similar():
    n = int_param("n", DEFAULT_SIMILAR_N, 1, MAX_SIMILAR_N)
    track = (request.form.get("track") or "").strip() or None
    if track is not None and "file" in request.files:
        raise Problem(400, "bad-request", "Bad request",
                      "send either a clip in `file` or a stored song id in `track`, not both")
    if track is not None:
        answer = current_library().similar(track=track, n=n)
    else:
        y, name = query_clip()
        answer = current_library().similar(y, n=n, name=name)
    return for_client(answer.to_dict())


@blueprint.post("/genre")
@read_access
@rate_limited
def genre():
    y, name = query_clip()
    return current_library().label(y, name=name).to_dict()
