"""Load check of the HTTP service: concurrent clients send short clips to ``POST /identify``.

:func:`run_load_test` starts ``tuneprint serve`` on loopback (or uses a running server), cuts
clips at random from the library's own tracks (the files its catalog points to; the server
must run on this machine), lets ``clients`` threads send them back to back for ``seconds``,
and :func:`summarise` reports requests/s, latency percentiles, errors and how many clips
were identified right. Timings depend on the machine: a benchmark, not a test.
"""
from __future__ import annotations

import http.client
import io
import json
import logging
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import soundfile as sf

from tuneprint.errors import TuneprintError
from tuneprint.server.evaluation.markdown import write_section

log = logging.getLogger(__name__)

SECTION, TITLE = "http-load", "HTTP service under load"  # the section of docs/BENCHMARKS.md
RUN_CLI = "import sys; from tuneprint.server.cli import main; sys.exit(main())"  # where no `tuneprint` script is


@dataclass(frozen=True)
class LoadConfig:
    """How hard and how long to load the server."""

    clients: int = 20  # concurrent clients
    seconds: float = 60.0  # how long to send
    clip_seconds: float = 3.0  # length of each clip
    clips: int = 64  # distinct clips prepared
    threads: int = 8  # server worker threads when the server is started here
    seed: int = 0


@dataclass
class Tally:
    """What all clients saw; appended to under a lock."""

    latencies_s: list[float] = field(default_factory=list)  # successful requests
    errors: dict[str, int] = field(default_factory=dict)  # "HTTP 503", "ConnectionResetError", ...
    right: int = 0
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, latency: float, correct: bool) -> None:
        with self.lock:
            self.latencies_s.append(latency)
            self.answered += 1
            self.right += correct

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1


def run_load_test(library: Path, cfg: LoadConfig, url: str | None = None) -> tuple[dict, dict]:
    """Load the server of ``library`` (started here unless ``url`` names a running one).

    Returns the :func:`summarise` result and the server's ``/stats`` answer.
    """
    server = None if url else start_server(library, cfg.threads)
    url = url or server[1]
    try:
        info = get_json(url, "stats")
        log.info("server %s: %s songs, encoder %s", url, info["songs"], info["model_id"])
        clips = make_clips(library, cfg.clips, cfg.clip_seconds, cfg.seed)
        send(url, clips[:1], 1, 0.0, Tally())  # warm up (first request pays for lazy set-up)
        tally = Tally()
        log.info("%d clients × %g s of %g-s clips …", cfg.clients, cfg.seconds, cfg.clip_seconds)
        elapsed = send(url, clips, cfg.clients, cfg.seconds, tally)
    finally:
        if server:
            stop_server(server[0])
    return summarise(tally, elapsed), info


# -- the server -------------------------------------------------------------------------
def start_server(library: Path, threads: int, *options: str) -> tuple[subprocess.Popen, str]:
    """Start ``tuneprint serve`` on a free loopback port (with more ``options`` of the command);
    the process and its URL once it listens."""
    exe = Path(sys.executable).with_name("tuneprint")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", RUN_CLI]
    proc = subprocess.Popen([*cmd, "serve", "--library", str(library), "--port", "0", "--threads", str(threads), *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found: queue.Queue[str] = queue.Queue()

    def drain():  # keep reading, so the server never blocks on a full pipe
        for line in proc.stderr:
            if m := re.search(r"on (http://\S+/)", line):
                found.put(m.group(1))
            elif "Traceback" in line or "error" in line.lower():
                log.warning("server: %s", line.rstrip())
        found.put("")

    threading.Thread(target=drain, daemon=True).start()
    url = found.get(timeout=300)
    if not url:
        raise TuneprintError("tuneprint serve did not start")
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    """Ask the server to stop (SIGTERM); kill it if it has not after 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- clips ------------------------------------------------------------------------------
def make_clips(library: Path, n: int, seconds: float, seed: int) -> list[tuple[str, bytes]]:
    """``n`` WAV clips (song id, bytes) cut at random from the library's tracks (read from its catalog:
    the server shows clients without its write token file names, not paths)."""
    from tuneprint.encoder.audio import load_audio
    from tuneprint.server.library import Library

    with Library.open(library, load_encoder=False) as lib:
        tracks = [song.to_dict() for song in lib.tracks()]
    tracks = [t for t in tracks if t["duration_s"] >= seconds + 1 and Path(t["path"]).is_file()]
    if not tracks:
        raise TuneprintError("no track of the library is long enough, or on this machine, to cut clips from")
    rng = np.random.default_rng(seed)
    sr = 22050
    picked = [tracks[i] for i in rng.integers(0, len(tracks), n)]
    cache: dict[str, np.ndarray] = {}
    clips = []
    for track in picked:
        if track["song_id"] not in cache:
            cache[track["song_id"]] = load_audio(track["path"], sr=sr)
        y = cache[track["song_id"]]
        start = int(rng.uniform(0, len(y) / sr - seconds) * sr)
        buf = io.BytesIO()
        sf.write(buf, y[start : start + int(seconds * sr)], sr, format="WAV", subtype="PCM_16")
        clips.append((track["song_id"], buf.getvalue()))
    return clips


# -- the clients ------------------------------------------------------------------------
def send(url: str, clips: list[tuple[str, bytes]], clients: int, seconds: float, tally: Tally) -> float:
    """Each client posts clips back to back until the time is up (``seconds`` 0: one request each)."""
    parts = urlsplit(url)
    started = time.perf_counter()
    deadline = started + seconds

    # Each client from its own loopback address, as distinct clients are to the server's rate limit per address.
    loopback = re.fullmatch(r"127\.\d+\.\d+\.\d+", parts.hostname or "") and clients < 250
    source = (lambda index: (f"127.0.0.{index + 2}", 0)) if loopback else (lambda index: None)

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120, source_address=source(index))
        i = index
        while True:
            song_id, data = clips[i % len(clips)]
            i += clients
            body, content_type = multipart(data)
            t0 = time.perf_counter()
            try:
                conn.request("POST", parts.path.rstrip("/") + "/identify", body=body,
                             headers={"Content-Type": content_type, "Content-Length": str(len(body))})
                response = conn.getresponse()
                payload = response.read()
                latency = time.perf_counter() - t0
                if response.status == 200:
                    match = json.loads(payload)["match"]
                    tally.ok(latency, bool(match) and match["song_id"] == song_id)
                else:
                    tally.error(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException) as e:
                tally.error(type(e).__name__)
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120, source_address=source(index))
            if time.perf_counter() >= deadline:
                break
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def multipart(data: bytes, name: str = "clip.wav") -> tuple[bytes, str]:
    """A multipart/form-data body with ``data`` as the field ``file``, and its Content-Type."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def get_json(url: str, path: str) -> dict:
    """GET ``path`` of the server at ``url``; the JSON answer (anything but 200 raises TuneprintError)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("GET", parts.path.rstrip("/") + "/" + path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise TuneprintError(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


# -- the report -------------------------------------------------------------------------
def summarise(tally: Tally, elapsed: float) -> dict:
    """Requests, requests/s, latency percentiles (ms), errors by kind and the share identified right."""
    lat = np.array(tally.latencies_s) * 1000
    pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if len(lat) else (lambda q: None)
    errors = sum(tally.errors.values())
    return {"seconds": round(elapsed, 1), "requests": tally.answered + errors, "ok": tally.answered,
            "requests_per_s": round((tally.answered + errors) / elapsed, 2) if elapsed else None,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": round(float(lat.max()), 1) if len(lat) else None,
            "errors": errors, "error_kinds": dict(sorted(tally.errors.items())),
            "identified_right": round(tally.right / tally.answered, 3) if tally.answered else None}


def markdown(r: dict, cfg: LoadConfig, info: dict, external_url: str | None) -> str:
    """The results as the body of a BENCHMARKS.md section: what was loaded, one table, how to read it."""
    server = f"the server at {external_url}" if external_url else f"`tuneprint serve` (waitress, {cfg.threads} threads)"
    errors = f"{r['errors']}" + (f" ({', '.join(f'{k}: {v}' for k, v in r['error_kinds'].items())})" if r["errors"] else "")
    fmt = lambda v: "–" if v is None else f"{v:g}"  # noqa: E731
    return "\n".join([
        f"{cfg.clients} clients on loopback, each sending {cfg.clip_seconds:g}-s WAV clips (cut at random from the "
        f"library's tracks) to `POST /identify` back to back for {cfg.seconds:g} s, against {server}. Library: "
        f"{info['songs']} songs ({info['hours']:.2f} h, {info['backend']}), encoder `{info['model_id']}`.", "",
        "| clients | seconds | requests | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors | identified right |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {cfg.clients} | {r['seconds']:g} | {r['requests']} | {fmt(r['requests_per_s'])} | {fmt(r['p50_ms'])} | "
        f"{fmt(r['p90_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {errors} | "
        f"{'–' if r['identified_right'] is None else format(r['identified_right'], '.1%')} |", "",
        "Latency is per request, from sending the upload to the last byte of the answer, so with more clients than "
        "cores it includes the wait for a free core. Errors count any answer other than 200 and any broken connection. "
        "On loopback each client connects from its own address (127.0.0.2, …), as distinct clients would: the server's "
        "rate limit counts requests per address.",
    ])


def write_results(path: Path, r: dict, cfg: LoadConfig, info: dict, external_url: str | None) -> None:
    """Write (or replace) the section SECTION of the markdown file ``path`` (docs/BENCHMARKS.md)."""
    write_section(path, SECTION, TITLE, markdown(r, cfg, info, external_url))
