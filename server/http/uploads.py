"""What a request sends: the uploaded clip (field ``file``), its safe name, integer parameters."""
from __future__ import annotations

from flask import g, request

from tuneprint.server.http.errors import Problem


def upload() -> tuple[bytes, str]:
    """The bytes and name of the multipart field ``file`` (413 beyond the cap, 4xx when missing or empty)."""
    f = request.files.get("file")  # reading the form enforces MAX_CONTENT_LENGTH (413)
    if f is None:
        raise Problem(400, "missing-file", "Missing file",
                      "send the audio as multipart/form-data in the field `file`")
    name = safe_name(f.filename or "") or "upload"
    g.upload_name = name  # the audio errors name the upload (errors.py)
    data = f.read()
    if not data:
        raise Problem(422, "empty-upload", "Empty upload", f"{name}: the uploaded file is empty")
    return data, name


def safe_name(filename: str) -> str:
    """The last component of an uploaded file's name, without path tricks or control characters."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*').strip().lstrip(".")
    if len(name) > 120:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 110] + dot + ext[:9]) if dot and len(ext) < 10 else name[:120]
    return name


def int_param(name: str, default: int, low: int, high: int) -> int:
    """The integer form or query field ``name``, ``default`` when absent; 400 when not in [low, high]."""
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
