"""What the app shares between requests, and how a view reaches it."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:  # the library pulls in torch: it is imported when an app is made, not here
    from tuneprint.server.http.limits import Limits, RateLimiter
    from tuneprint.server.library import Library


@dataclass
class Service:
    """The library, the lock that serialises writes (adds and removals), and the bounds on requests."""

    library: Library
    write_lock: threading.Lock
    limits: Limits
    rate: RateLimiter


def current_service() -> Service:
    return current_app.extensions["tuneprint"]


def current_library() -> Library:
    return current_service().library
