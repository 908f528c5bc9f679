"""The library's labels and tags: a clip's labels and tags by the trained classifier
(``POST /classify``), and a track's tags (and labels) changed with the write token
(``PUT /tracks/<id>/tags``)."""
from __future__ import annotations

from flask import Blueprint, request

from tuneprint.server.http.auth import read_access, write_access
from tuneprint.server.http.errors import Problem
from tuneprint.server.http.limits import rate_limited
from tuneprint.server.http.service import current_library, current_service
from tuneprint.server.http.uploads import query_clip

MAX_NAMES = 100  # tags (or labels) one track may be given at once
MAX_NAME_CHARS = 100

blueprint = Blueprint("labels", __name__)


@blueprint.post("/classify")
@read_access
@rate_limited
def classify():
    from tuneprint.server.classify.api import classify as classify_clip
    from tuneprint.server.classify.store import has_classifier

    lib = current_library()
    if not has_classifier(lib.root):  # before reading the upload: the answer does not depend on it
        raise Problem(409, "no-classifier", "No classifier",
                      "this library has no trained classifier; its owner trains one with "
                      "`tuneprint classify train --library LIB`")
    y, name = query_clip()
    return classify_clip(lib, y, name=name).to_dict()


@blueprint.put("/tracks/<song_id>/tags")
@write_access
def set_tags(song_id: str):
    """JSON ``{"tags": [...], "labels": [...]}``: each list given replaces the track's tags (labels)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not ({"tags", "labels"} & set(body)):
        raise Problem(400, "bad-request", "Bad request",
                      'send a JSON object with "tags" (and/or "labels"): lists of names, '
                      'e.g. {"tags": ["calm", "piano"]}')
    names = {kind: _names(body[kind], kind) for kind in ("tags", "labels") if kind in body}
    lib = current_library()
    with current_service().write_lock:
        lib.song(song_id)  # 404 before anything changes
        if "tags" in names:
            lib.set_tags(song_id, names["tags"])
        if "labels" in names:
            lib.set_labels(song_id, names["labels"])
    return {"status": "updated", "song": lib.song(song_id).to_dict()}


def _names(value, kind: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Problem(400, "bad-request", "Bad request", f'"{kind}" must be a list of strings')
    names = [v.strip() for v in value if v.strip()]
    if len(names) > MAX_NAMES or any(len(n) > MAX_NAME_CHARS for n in names):
        raise Problem(400, "bad-request", "Bad request",
                      f'"{kind}": at most {MAX_NAMES} names of at most {MAX_NAME_CHARS} characters')
    return names
