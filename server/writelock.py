"""One writer at a time per library folder, across processes (the CLI, a server, scripts).

Writers hold ``LIB/.lock`` (an OS file lock, released by the kernel if the process dies, so a
``kill -9`` never leaves a stale lock). Readers take no lock: a writer saves the index before the
catalog commits, so a reader that reloads on a new catalog generation always finds every vector
the catalog lists (see :meth:`server.library.Library.refresh`).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from tuneprint.errors import BusyError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
DEFAULT_WAIT_S = 60.0  # how long a writer waits for another one before saying the library is busy


@contextmanager
def writer_lock(root: Path, wait_s: float = DEFAULT_WAIT_S):
    """Hold the library's writer lock, waiting up to ``wait_s`` seconds for another writer.

    Raises
    ------
    BusyError
        When another process still holds it after ``wait_s``.
    """
    lock = FileLock(str(Path(root) / LOCK_FILE), thread_local=False)
    try:
        lock.acquire(timeout=wait_s)
    except Timeout:
        raise BusyError(f"{root}: the library is busy (another tuneprint is writing to it); retry later") from None
    try:
        yield
    finally:
        lock.release()
