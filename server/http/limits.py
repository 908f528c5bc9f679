"""Bounded work per request: how much audio a request may make the server decode, and how often
one client may ask for it.

The expensive endpoints (``/identify``, ``/similar``, ``/genre``, ``POST /tracks``) decode and embed
audio. Their cost is bounded by what they read, not by a clock: a query decodes at most
``max_query_seconds`` of its clip (the rest of the file is never decoded), a track upload longer
than ``max_track_seconds`` is refused, and files recorded below 8 kHz are refused before decoding
(encoder/audio.py). A worker thread cannot be interrupted safely in the middle of decoding or of
the encoder, so a bound on the input is the time limit that holds. A token bucket per client
address then keeps one client from taking all of the server's threads. (Behind a reverse proxy
every request comes from the proxy's address: limit the rate there, and set ``rate_per_min=0``.)
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import wraps

from flask import request

from tuneprint.server.http.errors import Problem
from tuneprint.server.http.service import current_service


@dataclass(frozen=True)
class Limits:
    """What one request may cost.

    max_query_seconds : audio decoded of a query clip; the start of a longer clip is used
    max_track_seconds : longest track ``POST /tracks`` accepts (longer: 422 ``too-long``)
    rate_per_min : expensive requests per minute per client address (0: no limit)
    rate_burst : how many of them a client may send at once, after a quiet while
    """

    max_query_seconds: float = 60.0  # ample for identification; decodes and embeds in ~1 s on one core
    max_track_seconds: float = 2 * 3600.0  # a long DJ mix; more is a mistake or an attack
    rate_per_min: float = 120.0  # a person at the web page asks every few seconds at most
    rate_burst: int = 20

    def __post_init__(self):
        if self.max_query_seconds <= 0 or self.max_track_seconds <= 0 or self.rate_per_min < 0 or self.rate_burst < 1:
            raise ValueError(f"limits must be positive (rate_per_min 0 turns the rate limit off): {self}")


class RateLimiter:
    """A token bucket per client: ``burst`` tokens, refilled at ``per_min`` a minute.

    Remembers the ``max_clients`` most recent clients (a forgotten client starts with a full bucket).
    """

    def __init__(self, per_min: float, burst: int, *, max_clients: int = 10_000, clock=time.monotonic):
        self.rate_per_s, self.burst, self.max_clients, self.clock = per_min / 60.0, burst, max_clients, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client → (tokens, when)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def take(self, client: str) -> float:
        """Spend one of ``client``'s tokens: 0.0 if it had one, else the seconds until it will."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate_per_s)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate_per_s
            self._buckets[client] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait


def rate_limited(view):
    """Answer 429 with ``Retry-After`` when the client has used up its requests for now."""
    @wraps(view)
    def limited(*args, **kwargs):
        limiter = current_service().rate
        wait = limiter.take(request.remote_addr or "unknown")
        if wait > 0:
            per_min = limiter.rate_per_s * 60
            raise Problem(429, "too-many-requests", "Too many requests",
                          f"this client sent more than {per_min:g} audio requests a minute (bursts of "
                          f"{limiter.burst}); retry in {math.ceil(wait)} s",
                          {"Retry-After": str(math.ceil(wait))})
        return view(*args, **kwargs)
    return limited
