"""Serve a library over HTTP with waitress (a production WSGI server).

:func:`serve` is the whole job of ``tuneprint serve``, whose options are parsed in
``server/cli/serve_command.py``.
"""
from __future__ import annotations

import os
import signal
import sys

from tuneprint.server.http import DEFAULT_MAX_UPLOAD_MB, create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_THREADS = 8


def serve(library_path: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          token: str | None = None, *, read_token: str | None = None,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, threads: int = DEFAULT_THREADS) -> None:
    """Open the library and serve it until Ctrl-C or SIGTERM, then close it.

    Parameters
    ----------
    library_path : the library folder
    host, port : where to listen (port 0 picks a free one; the line on stderr says which)
    token : bearer token for the write endpoints; None: writes are refused (403)
    read_token : bearer token the read endpoints then require; None: reads are open
    max_upload_mb : larger uploads are refused with 413
    threads : waitress worker threads

    Tokens are taken as given: reading them from the environment is the command line's job.
    """
    if max_upload_mb <= 0 or threads < 1:
        raise ValueError(f"max_upload_mb must be > 0 and threads >= 1, not {max_upload_mb} and {threads}")
    from waitress import create_server

    from tuneprint.server.library import Library

    with Library.open(library_path) as lib:
        app = create_app(lib, token=token, read_token=read_token, max_upload_mb=max_upload_mb)
        cap = app.config["MAX_CONTENT_LENGTH"]
        # waitress buffers a body before Flask sees it: let through a little more than the cap so
        # Flask answers 413 as problem+json; far larger bodies waitress refuses itself.
        server = create_server(app, host=host, port=port, threads=threads,
                               max_request_body_size=2 * cap + (1 << 20), ident="tuneprint")
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

