"""What a request sends: the uploaded clip (field ``file``), its safe name, integer parameters.

An upload streams to a temporary file as it arrives (never whole into memory): Flask refuses a
body over ``MAX_CONTENT_LENGTH`` with 413 before reading it, and :class:`UploadRequest` spools
every file part to disk. The decoder then reads the file from there, only as much as it needs.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flask import Request, g, request
from werkzeug.formparser import FormDataParser

from tuneprint.server.http.errors import Problem
from tuneprint.server.http.service import current_service

MAX_FORM_PARTS = 64  # a clip, a few labels and parameters; each file part is a temporary file


class StrictFormDataParser(FormDataParser):
    """Werkzeug's parser drops a whole form it cannot parse (a file name that is not UTF-8, a body
    cut short) without a word, and the request then looks as if it sent no file: say what is wrong."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "silent": False})

    def parse(self, *args, **kwargs):
        try:
            return super().parse(*args, **kwargs)
        except UnicodeDecodeError:
            raise Problem(400, "bad-multipart", "Bad multipart body",
                          "a part's headers (its file name?) are not UTF-8 text; send the file name in "
                          "UTF-8 (as browsers and curl do for UTF-8 names), or rename the file") from None
        except ValueError as e:
            raise Problem(400, "bad-multipart", "Bad multipart body",
                          f"the multipart/form-data body cannot be read ({e})") from None


class UploadRequest(Request):
    """Flask's request, with every uploaded file spooled to a named temporary file (deleted when
    the request ends) and form parse errors answered as 400."""

    form_data_parser_class = StrictFormDataParser
    _max_form_parts = MAX_FORM_PARTS  # Flask's MAX_FORM_PARTS (1000) is far more than any answer here needs

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        suffix = Path(safe_name(filename or "")).suffix
        return tempfile.NamedTemporaryFile("wb+", prefix="tuneprint-upload-",
                                           suffix=suffix if re.fullmatch(r"\.\w{1,8}", suffix, re.A) else "")


@dataclass(frozen=True)
class Upload:
    """An uploaded file: where it is spooled on disk, the name to show for it, its size in bytes."""

    path: Path
    name: str
    size: int


def upload() -> Upload:
    """The multipart field ``file`` (413 beyond the cap, 4xx when missing or empty)."""
    f = request.files.get("file")  # reading the form enforces MAX_CONTENT_LENGTH (413)
    if f is None:
        raise Problem(400, "missing-file", "Missing file",
                      "send the audio as multipart/form-data in the field `file`")
    name = safe_name(f.filename or "") or "upload"
    f.stream.flush()  # the decoder opens the file by its name
    path = Path(f.stream.name)
    g.upload_name, g.upload_path = name, str(path)  # the audio errors name the upload, not the spool file
    size = os.fstat(f.stream.fileno()).st_size
    if not size:
        raise Problem(422, "empty-upload", "Empty upload", f"{name}: the uploaded file is empty")
    return Upload(path, name, size)


def query_clip(min_seconds: float | None = None):
    """The uploaded clip decoded for a query, and its name; shorter than ``min_seconds`` (default: the
    features' ``min_clip_seconds``) is refused.

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]
        At the library's rate: the first ``max_query_seconds`` of the clip (the rest is not decoded).
    name : str
    """
    from tuneprint.encoder.audio import load_audio  # numpy and the codecs: loaded on use

    up = upload()
    service = current_service()
    features = service.library.features
    least = features.min_clip_seconds if min_seconds is None else min_seconds
    y = load_audio(up.path, sr=features.sample_rate, min_seconds=least,
                   max_seconds=service.limits.max_query_seconds)
    return y, up.name


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
