"""Serve a library over HTTP with waitress (a production WSGI server).

:func:`serve` is the whole job of ``tuneprint serve``, whose options are parsed in
``server/cli/serve_command.py``.

Slow clients cannot starve the others: waitress reads requests on one I/O thread and hands a
worker thread only a request that has fully arrived, so a half-sent request holds a socket, not a
worker. Sockets are what is bounded: up to ``connection_limit`` at once (waitress's own default,
100, let 120 half-sent requests lock everyone else out), each closed after ``channel_timeout_s``
without a byte, and a body over the upload cap is refused as soon as its headers announce it.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

from tuneprint.server.http import DEFAULT_MAX_UPLOAD_MB, create_app

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_THREADS = 8
CONNECTION_LIMIT = 1000  # open sockets at once; each costs a descriptor and a few kB
CHANNEL_TIMEOUT_S = 30.0  # a connection that sends nothing for this long is closed
MAX_HEADER_BYTES = 64 * 1024
BODY_SLACK_BYTES = 1 << 20  # multipart framing and form fields around the upload itself
INBUF_BYTES = 128 * 1024  # a request body larger than this waits on disk, not in memory, until it is whole


def serve(library_path: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          token: str | None = None, *, read_token: str | None = None,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, threads: int = DEFAULT_THREADS, limits=None,
          connection_limit: int = CONNECTION_LIMIT, channel_timeout_s: float = CHANNEL_TIMEOUT_S) -> None:
    """Open the library and serve it until Ctrl-C or SIGTERM, then close it.

    Parameters
    ----------
    library_path : the library folder
    host, port : where to listen (port 0 picks a free one; the line on stderr says which)
    token : bearer token for the write endpoints; None: writes are refused (403)
    read_token : bearer token the read endpoints then require; None: reads are open
    max_upload_mb : larger uploads are refused with 413
    threads : waitress worker threads
    limits : :class:`~tuneprint.server.http.limits.Limits` (audio per request, rate per client); None: defaults
    connection_limit : open connections at once; more wait in the listen backlog
    channel_timeout_s : a connection idle this long (a half-sent request included) is closed

    Tokens are taken as given: reading them from the environment or a file is the command line's job.
    """
    if max_upload_mb <= 0 or threads < 1 or connection_limit < threads or channel_timeout_s <= 0:
        raise ValueError(f"max_upload_mb and channel_timeout_s must be > 0, threads >= 1 and connection_limit "
                         f">= threads, not {max_upload_mb}, {channel_timeout_s}, {threads}, {connection_limit}")
    from waitress import create_server

    from tuneprint.server.library import Library

    connection_limit = _descriptors_for(connection_limit)
    with Library.open(library_path) as lib:
        app = create_app(lib, token=token, read_token=read_token, max_upload_mb=max_upload_mb, limits=limits)
        # waitress refuses a larger body as soon as its Content-Length is read (or, chunked, once it
        # grows past it); up to the slack, Flask answers 413 as problem+json.
        server = create_server(app, host=host, port=port, threads=threads, ident="tuneprint",
                               max_request_body_size=app.config["MAX_CONTENT_LENGTH"] + BODY_SLACK_BYTES,
                               max_request_header_size=MAX_HEADER_BYTES, inbuf_overflow=INBUF_BYTES,
                               connection_limit=connection_limit,
                               channel_timeout=channel_timeout_s, cleanup_interval=max(1.0, channel_timeout_s / 4),
                               asyncore_use_poll=True)  # select() watches no more than 1024 sockets
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # close the library on a polite stop
        shown_host = f"[{server.effective_host}]" if ":" in str(server.effective_host) else server.effective_host
        try:
            # The address on stderr, as the one line a person (or a test on port 0) waits for.
            print(f"tuneprint: serving {lib.root} ({lib.stats()['songs']} songs) on "
                  f"http://{shown_host}:{server.effective_port}/ with {threads} threads; "
                  f"writes {'need the token' if token else 'disabled (no --token)'}", file=sys.stderr, flush=True)
            server.run()  # returns on Ctrl-C or SIGTERM
        except KeyboardInterrupt:
            pass
        finally:
            server.close()


def _descriptors_for(connections: int) -> int:
    """Raise this process's open-file limit to fit ``connections`` sockets, as many bodies spooled to
    disk, and the library's files, as far as the hard limit allows; the connection limit that then fits."""
    try:
        import resource
    except ImportError:  # not a Unix: the system's own limit stands
        return connections
    spare = 64  # the library's files, the log, the listening socket
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    fits = connections if soft == resource.RLIM_INFINITY else min(connections, (soft - spare) // 2)
    if fits < connections:
        log.warning("only %d open files allowed: serving at most %d connections, not %d", soft, fits, connections)
    return max(fits, 1)
