"""The decode-and-embed step of an ingest (server/ingest.py) on a Ray cluster.

Ray actors each hold one copy of the library's encoder, shipped once through Ray's object store,
and turn file paths into :class:`~tuneprint.server.ingest.PreparedFile` s; the driver gets them back
in the order of the paths and commits them exactly as a serial ingest does (one writer, the
library's lock). The actors read the audio themselves, from the paths the driver names: those
must be on storage that every node mounts at the same place. Nothing durable is written on the
cluster. The layout of a deployment, and what was tested: docs/CLUSTER.md.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tuneprint.errors import TuneprintError

from .ingest import PreparedFile, prepare_file

log = logging.getLogger(__name__)

MISSING_RAY = "the --ray option needs `pip install 'tuneprint[cluster]'`"


@dataclass(frozen=True)
class RayIngest:
    """Where and how wide the decode-and-embed step runs on Ray.

    Parameters
    ----------
    address : a Ray address: "auto" (the cluster this node joined with ``ray start``),
        "ray://HOST:10001" (Ray Client), or "local" (start Ray on this machine for this ingest).
        A process already connected to Ray (``ray.init`` called) uses that session instead.
    actors : encoder copies at work at once (default: the cluster's CPUs / ``threads_per_actor``)
    threads_per_actor : CPUs reserved for, and torch threads of, each actor
    in_flight_per_actor : files handed to each actor ahead of the results: bounds driver and
        object-store memory whatever the number of files
    """

    address: str = "local"
    actors: int | None = None
    threads_per_actor: int = 1
    in_flight_per_actor: int = 2


def require_ray():
    """The ``ray`` module, or a clear error when the optional extra is not installed."""
    try:
        import ray
    except ImportError as e:
        raise TuneprintError(MISSING_RAY) from e
    return ray


def prepare_on_ray(paths: list[Path], embedder, hop_frames: int, known_hashes: frozenset[str],
                   cfg: RayIngest) -> Iterator[PreparedFile]:
    """Decode and embed ``paths`` on Ray actors, yielding them in the order of ``paths``.

    Starts or joins Ray per ``cfg.address``; a session it started is shut down when done, and its
    actors are killed either way (also when the caller stops early).
    """
    ray = require_ray()
    if not paths:
        return
    started = _connect(ray, cfg.address)
    try:
        n = min(len(paths), cfg.actors or _cluster_actors(ray, cfg.threads_per_actor))
        actors = _start_actors(ray, n, embedder, hop_frames, known_hashes, cfg.threads_per_actor)
        try:
            yield from _in_order(ray, actors, paths, window=n * cfg.in_flight_per_actor)
        finally:
            for actor in actors:
                ray.kill(actor)
    finally:
        if started:
            ray.shutdown()


def _connect(ray, address: str) -> bool:
    """Join or start Ray; True if this call started the session (and so must shut it down)."""
    if ray.is_initialized():
        log.info("using this process's Ray session (--ray %s not needed)", address)
        return False
    # A dashboard is of no use to one ingest, and costs a few seconds and a port.
    options = {"include_dashboard": False} if address == "local" else {}
    for attempt in range(2):
        try:
            ray.init(address=address, **options)
            break
        except Exception as e:  # a bare Exception when a local node misses Ray's 30-s start-up window
            ray.shutdown()
            if attempt == 1 or address != "local":
                raise
            log.warning("Ray did not start (%s); trying once more", e)
    log.info("connected to Ray at %s: %s", address, ray.cluster_resources())
    return True


def _cluster_actors(ray, threads_per_actor: int) -> int:
    cpus = ray.cluster_resources().get("CPU", 1)
    return max(1, int(cpus // threads_per_actor))


def _start_actors(ray, n: int, embedder, hop_frames: int, known_hashes: frozenset[str], threads: int) -> list:
    free = ray.available_resources().get("CPU", 0)
    if n * threads > free:  # an autoscaler may add nodes; otherwise the extra actors never start
        log.warning("%d actors × %d threads ask for more CPUs than Ray has free (%g)", n, threads, free)
    # Retries re-run a file whose node died: preparing a file is pure, so running it twice is harmless.
    actor_class = ray.remote(num_cpus=threads, max_restarts=2, max_task_retries=2)(_PrepareActor)
    shared = ray.put(embedder), ray.put(known_hashes)  # one copy in the object store, not one per actor
    log.info("starting %d Ray actors with encoder %s", n, embedder.model_id)
    return [actor_class.remote(*shared, hop_frames, threads) for _ in range(n)]


def _in_order(ray, actors: list, paths: list[Path], window: int) -> Iterator[PreparedFile]:
    """Hand paths round-robin to the actors, at most ``window`` unanswered, and yield the answers
    in the order of ``paths`` (so duplicates and row ids come out as in a serial ingest)."""
    pending: deque = deque()
    for i, path in enumerate(paths):
        if len(pending) >= window:
            yield ray.get(pending.popleft())
        # Resolved here: an actor's working directory is not the driver's.
        pending.append(actors[i % len(actors)].prepare.remote(str(Path(path).resolve())))
    while pending:
        yield ray.get(pending.popleft())


class _PrepareActor:
    """One encoder copy on a Ray worker: paths in, prepared files out."""

    def __init__(self, embedder, known_hashes: frozenset[str], hop_frames: int, threads: int):
        import torch

        torch.set_num_threads(threads)  # the actors are the parallelism
        self.embedder, self.known_hashes, self.hop_frames = embedder, known_hashes, hop_frames

    def prepare(self, path: str) -> PreparedFile:
        return prepare_file(Path(path), self.embedder, self.hop_frames, self.known_hashes)
