"""Bearer tokens: reads are open unless the server has a read token; writes need the write token.

Where the library's files lie on the server is for the write token's holder only: other clients
see file names (:func:`for_client`).
"""
from __future__ import annotations

import hmac
from functools import wraps
from pathlib import PurePath

from flask import current_app, request

from tuneprint.server.http.errors import Problem


def bearer() -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if the request has one."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_matches(given: str | None, *expected: str | None) -> bool:
    """Whether ``given`` is one of the configured tokens (compared in constant time)."""
    return given is not None and any(
        e and hmac.compare_digest(given.encode(), e.encode()) for e in expected)


def unauthorized(what: str) -> Problem:
    given = bearer()
    detail = (f"{what} need a token: send `Authorization: Bearer <token>`" if given is None
              else "the bearer token is not valid for this request")
    challenge = 'Bearer realm="tuneprint"' + ("" if given is None else ', error="invalid_token"')
    return Problem(401, "unauthorized", "Unauthorized", detail, {"WWW-Authenticate": challenge})


def read_access(view):
    """Open, unless the server was started with a read token (the write token also reads)."""
    @wraps(view)
    def guarded(*args, **kwargs):
        read_token = current_app.config["TUNEPRINT_READ_TOKEN"]
        if read_token and not token_matches(bearer(), read_token, current_app.config["TUNEPRINT_TOKEN"]):
            raise unauthorized("reads on this server")
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
        if not token_matches(bearer(), token):
            raise unauthorized("writes")
        return view(*args, **kwargs)
    return guarded


SERVER_PATH_FIELDS = ("path", "library")  # a track's file (tracks, matches, neighbours); the folder (/stats)


def for_client(answer: dict) -> dict:
    """``answer`` as this client may see it: without the write token, file names instead of server paths."""
    if token_matches(bearer(), current_app.config["TUNEPRINT_TOKEN"]):
        return answer
    return _names_only(answer)


def _names_only(value):
    if isinstance(value, dict):
        return {k: PurePath(v).name if k in SERVER_PATH_FIELDS and isinstance(v, str) else _names_only(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_names_only(v) for v in value]
    return value
