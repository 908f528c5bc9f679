"""serve: the library over HTTP (JSON API and web page), until Ctrl-C.

The defaults are written out here so that ``serve --help`` needs no web framework; they are those
of :func:`tuneprint.server.http.serve.serve` (tests/test_cli.py checks that they agree).
"""
from __future__ import annotations

import os
from pathlib import Path

from .common import UsageError, add_command

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_THREADS = 8
DEFAULT_MAX_UPLOAD_MB = 40.0
DEFAULT_MAX_QUERY_SECONDS = 60.0  # those of tuneprint.server.http.limits.Limits
DEFAULT_MAX_TRACK_SECONDS = 7200.0
DEFAULT_RATE_LIMIT = 120.0


def add_parser(sub) -> None:
    p = add_command(sub, "serve", "Serve the library over HTTP: the JSON API and the web page (waitress).", cmd_serve)
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--token", default=None,
                   help="bearer token for the write endpoints (default: env TUNEPRINT_TOKEN; none: writes are refused); "
                        "other users can read a command line, so prefer --token-file or the environment")
    p.add_argument("--token-file", type=Path, default=None, help="read the write token from this file (its first line)")
    p.add_argument("--read-token", default=None,
                   help="bearer token the read endpoints then require (default: env TUNEPRINT_READ_TOKEN; none: reads are open)")
    p.add_argument("--read-token-file", type=Path, default=None, help="read the read token from this file (its first line)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest upload accepted, in MB (default {DEFAULT_MAX_UPLOAD_MB:g}; larger gets 413)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=f"worker threads (default {DEFAULT_THREADS})")
    p.add_argument("--max-query-seconds", type=float, default=DEFAULT_MAX_QUERY_SECONDS,
                   help=f"audio decoded of a query clip; the start of a longer one is used (default {DEFAULT_MAX_QUERY_SECONDS:g})")
    p.add_argument("--max-track-seconds", type=float, default=DEFAULT_MAX_TRACK_SECONDS,
                   help=f"longest track POST /tracks accepts (default {DEFAULT_MAX_TRACK_SECONDS:g}; longer gets 422)")
    p.add_argument("--rate-limit", type=float, default=DEFAULT_RATE_LIMIT,
                   help=f"audio requests a minute per client address (default {DEFAULT_RATE_LIMIT:g}; more get 429; 0: no limit)")


def cmd_serve(args) -> int:
    if args.max_upload_mb <= 0 or args.threads < 1:
        raise UsageError("--max-upload-mb must be > 0 and --threads >= 1")
    if args.max_query_seconds <= 0 or args.max_track_seconds <= 0 or args.rate_limit < 0:
        raise UsageError("--max-query-seconds and --max-track-seconds must be > 0, --rate-limit >= 0")
    token = _token(args.token, args.token_file, "TUNEPRINT_TOKEN")
    read_token = _token(args.read_token, args.read_token_file, "TUNEPRINT_READ_TOKEN")
    from tuneprint.server.http.limits import Limits
    from tuneprint.server.http.serve import serve

    serve(args.library, args.host, args.port, token, read_token=read_token, max_upload_mb=args.max_upload_mb,
          threads=args.threads, limits=Limits(max_query_seconds=args.max_query_seconds,
                                              max_track_seconds=args.max_track_seconds, rate_per_min=args.rate_limit))
    return 0


def _token(given: str | None, file: Path | None, env: str) -> str | None:
    """The token from the option, else its file, else the environment variable."""
    if given and file:
        raise UsageError("give a token or a token file, not both")
    if file is None:
        return given or os.environ.get(env) or None
    try:
        token = file.read_text(encoding="utf-8").partition("\n")[0].strip()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{file}: cannot read the token ({e})") from None
    if not token:
        raise UsageError(f"{file}: the token file is empty")
    return token
