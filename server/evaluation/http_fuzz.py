"""Fuzz check of the HTTP service: hostile requests and slow clients against ``tuneprint serve``.

:func:`run_fuzz` copies a small library to a temporary folder, serves the copy on 127.0.0.1 (only)
with a write token read from a file, sends the cases of :mod:`.fuzz_cases` (each from its own
loopback address, so that the rate limit per client does not hide the answers), then checks the
rate limit from one address, then holds ``slow_clients`` half-sent requests open while it asks
``/health``, and waits for the server to close them. It samples the server's resident memory
throughout, and stops the server and removes the copy at the end.

The checks: no 5xx answer, no request left unanswered past ``request_timeout_s``, the server's
memory below ``rss_limit_mb``, ``/health`` within 1 s while the slow clients hold their sockets.
"""
from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from tuneprint.errors import TuneprintError
from tuneprint.server.evaluation.fuzz_cases import Case, build_cases, request, upload
from tuneprint.server.evaluation.http_load import start_server, stop_server
from tuneprint.server.evaluation.markdown import write_section

log = logging.getLogger(__name__)

SECTION, TITLE = "http-fuzz", "HTTP service under hostile clients"
HANG, CLOSED = -1, 0  # statuses recorded for no answer in time, and a connection closed without one


@dataclass(frozen=True)
class FuzzConfig:
    seed: int = 0
    workers: int = 4  # cases in flight at once
    threads: int = 4  # server worker threads
    max_upload_mb: float = 8.0  # small, so that oversize uploads cost little to send
    max_track_seconds: float = 600.0
    request_timeout_s: float = 30.0  # an answer later than this is a hang
    slow_clients: int = 200
    slow_hold_s: float = 10.0  # how long /health is probed while the slow clients hold their sockets
    channel_timeout_s: float = 30.0  # the server's (serve.py); the check waits that long for the slow sockets to close
    rss_limit_mb: float = 2048.0


@dataclass
class Outcome:
    kind: str
    status: int
    seconds: float
    expected: bool


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    health_s: list[float] = field(default_factory=list)
    slow: dict = field(default_factory=dict)
    rate: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)


def run_fuzz(library: Path, cfg: FuzzConfig = FuzzConfig()) -> dict:
    """Fuzz a server of a copy of ``library``; the :func:`summarise` result."""
    token = "fuzz-" + np.random.default_rng(cfg.seed).bytes(8).hex()
    with tempfile.TemporaryDirectory(prefix="tuneprint-fuzz-") as tmp:
        copy = Path(tmp) / "library"
        shutil.copytree(library, copy, ignore=shutil.ignore_patterns(".lock"))
        (Path(tmp) / "token").write_text(token + "\n")
        song, sr, song_ids, titles = _material(copy)
        cases = build_cases(song, sr, token, song_ids, cfg.seed)
        proc, url = start_server(copy, cfg.threads, "--token-file", str(Path(tmp) / "token"),
                                 "--max-upload-mb", f"{cfg.max_upload_mb:g}",
                                 "--max-track-seconds", f"{cfg.max_track_seconds:g}")
        address = (urlsplit(url).hostname, urlsplit(url).port)
        if address[0] != "127.0.0.1":
            stop_server(proc)
            raise TuneprintError(f"the fuzz check runs on 127.0.0.1 only, not {address[0]}")
        run, sampling = Run(), threading.Event()
        sampler = threading.Thread(target=_sample_rss, args=(proc.pid, run.rss_mb, sampling), daemon=True)
        sampler.start()
        try:
            log.info("%d cases against %s …", len(cases), url)
            started = time.perf_counter()
            run.outcomes = _send_all(address, cases, cfg)
            run.rate = _rate_limit(address, song, sr)
            run.slow, run.health_s = _slow_clients(address, cfg)
            run.after = _after(address, token, Path(tmp), copy)
            elapsed = time.perf_counter() - started
        finally:
            sampling.set()
            sampler.join()
            stop_server(proc)
    return summarise(run, cfg, elapsed, titles)


def _material(library: Path) -> tuple[np.ndarray, int, list[str], list[str]]:
    """Ten seconds of the library's first track (at the feature rate), its song ids and titles."""
    from tuneprint.encoder.audio import load_audio
    from tuneprint.server.library import Library

    with Library.open(library, load_encoder=False) as lib:
        songs, sr = lib.tracks(), lib.features.sample_rate
    if not songs:
        raise TuneprintError(f"{library}: the library is empty; the fuzz check needs a few songs")
    y = load_audio(songs[0].path, sr=sr, max_seconds=40.0)
    return y[-10 * sr:], sr, [s.song_id for s in songs], [s.title or Path(s.path).stem for s in songs]


# -- sending ------------------------------------------------------------------------------------
def exchange(address, raw: bytes, timeout: float, source: str | None = None) -> tuple[int, float]:
    """Send one raw request on a fresh connection; its status (CLOSED, HANG) and seconds."""
    started = time.perf_counter()
    try:
        with socket.create_connection(address, timeout=timeout, source_address=(source, 0) if source else None) as s:
            try:
                s.sendall(raw)
            except OSError:  # the server refused the body while it was being sent: its answer may be there
                pass
            return read_status(s), time.perf_counter() - started
    except TimeoutError:
        return HANG, time.perf_counter() - started
    except OSError:
        return CLOSED, time.perf_counter() - started


def read_status(s: socket.socket) -> int:
    """The status of the final answer on ``s`` (informational 1xx skipped), reading its whole body."""
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return CLOSED
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        if 100 <= status < 200:
            continue
        length = next((int(v) for k, _, v in (line.partition(b":") for line in lines[1:])
                       if k.strip().lower() == b"content-length"), None)
        while length is None or len(buf) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return status


def _send_all(address, cases: list[Case], cfg: FuzzConfig) -> list[Outcome]:
    """Every case, ``cfg.workers`` at a time; the incomplete ones all at once beside them (each waits
    for the server's idle timeout)."""
    rng = np.random.default_rng(cfg.seed + 1)
    sources = [f"127.{a}.{b}.{c}" for a, b, c in rng.integers(1, 255, (len(cases), 3))]
    idle_limit = cfg.channel_timeout_s + 15  # the idle timeout, waitress's cleanup interval, slack

    def one(i: int) -> Outcome:
        case = cases[i]
        status, seconds = exchange(address, case.raw, idle_limit if case.incomplete else cfg.request_timeout_s, sources[i])
        expected = status in case.expect if case.expect else 0 <= status < 500
        return Outcome(case.kind, status, seconds, expected)

    waiting = [i for i, case in enumerate(cases) if case.incomplete]
    with ThreadPoolExecutor(max(len(waiting), 1)) as slow, ThreadPoolExecutor(cfg.workers) as pool:
        pending = slow.map(one, waiting)
        outcomes = list(pool.map(one, [i for i, case in enumerate(cases) if not case.incomplete]))
        return outcomes + list(pending)


def _rate_limit(address, song: np.ndarray, sr: int, requests: int = 40) -> dict:
    """``requests`` queries at once from one address: how many were answered 429, with Retry-After."""
    from tuneprint.server.evaluation.fuzz_cases import encodings

    raw = upload("/identify", encodings(song[: 3 * sr], sr)["wav-pcm16"])

    def one(_) -> bytes:
        with socket.create_connection(address, timeout=120, source_address=("127.9.9.9", 0)) as s:
            s.sendall(raw)
            answer = b""
            while chunk := s.recv(65536):  # the server closes after its answer (Connection: close)
                answer += chunk
        return answer.partition(b"\r\n\r\n")[0]

    with ThreadPoolExecutor(requests) as pool:
        heads = list(pool.map(one, range(requests)))
    statuses = Counter(int(head.split()[1]) for head in heads)
    retry_after = [head for head in heads if head.split()[1] == b"429" and b"\r\nretry-after:" in head.lower()]
    return {"requests": requests, "statuses": dict(sorted(statuses.items())), "with_retry_after": len(retry_after)}


def _slow_clients(address, cfg: FuzzConfig) -> tuple[dict, list[float]]:
    """Hold ``slow_clients`` half-sent requests (headers cut short, a body promised and not sent, a
    drip of bytes) while asking /health; then wait for the server to close them."""
    openings = [b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 100000\r\n\r\n--b\r\nConte",
                b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"]
    slow = []
    for i in range(cfg.slow_clients):
        s = socket.create_connection(address, timeout=5, source_address=(f"127.10.{i // 250}.{i % 250 + 1}", 0))
        s.sendall(openings[i % len(openings)])
        slow.append(s)
    health, started = [], time.perf_counter()
    while time.perf_counter() - started < cfg.slow_hold_s:
        status, seconds = exchange(address, request("GET", "/health"), 5.0)
        health.append(seconds if status == 200 else float("inf"))
        for s in slow[2::3]:  # the drip: a byte now and then keeps these from timing out early
            _send_quietly(s, b"x")
        time.sleep(0.5)
    query = exchange(address, upload("/genre", b"not audio"), 30.0)
    waited = time.perf_counter()
    deadline = waited + cfg.channel_timeout_s + 20
    pending = list(slow)
    while pending and time.perf_counter() < deadline:
        time.sleep(1.0)
        pending = [s for s in pending if not _closed_by_server(s)]
    closed = len(slow) - len(pending)
    for s in slow:
        s.close()
    return ({"clients": len(slow), "closed_by_server": closed, "closed_within_s": round(time.perf_counter() - waited, 1),
             "query_meanwhile": query[0]}, health)


def _send_quietly(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except OSError:
        pass


def _closed_by_server(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _after(address, token: str, folder: Path, library: Path) -> dict:
    """The server still answers, the library still opens, and no upload escaped LIB/uploads."""
    health = exchange(address, request("GET", "/health"), 10.0)[0]
    stray = [str(p.relative_to(folder)) for p in folder.rglob("*")
             if p.is_file() and library not in p.parents and p.name != "token"]
    uploads = library / "uploads"
    outside = [str(p) for p in uploads.rglob("*") if p.is_file() and p.parent.parent != uploads] if uploads.exists() else []
    return {"health": health, "stray_files": stray + outside,
            "uploaded_tracks": len(list(uploads.glob("*/*"))) if uploads.exists() else 0}


def _sample_rss(pid: int, samples: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    samples.append(int(line.split()[1]) / 1024)
        except OSError:
            return
        stop.wait(0.2)


# -- the report -----------------------------------------------------------------------------------
def summarise(run: Run, cfg: FuzzConfig, elapsed: float, songs: list[str]) -> dict:
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for o in run.outcomes:
        by_kind[o.kind.split(" (")[0] if o.kind.startswith("damaged") else o.kind].append(o)
    rows = {kind: {"cases": len(os), "statuses": dict(sorted(Counter(o.status for o in os).items())),
                   "max_s": round(max(o.seconds for o in os), 2),
                   "unexpected": sum(not o.expected for o in os)} for kind, os in sorted(by_kind.items())}
    server_errors = sum(o.status >= 500 and not o.expected for o in run.outcomes)  # 501: see fuzz_cases
    hangs = sum(o.status == HANG for o in run.outcomes)
    health_max = max(run.health_s) if run.health_s else float("inf")
    answered = [o.seconds for o in run.outcomes if not o.kind.startswith("incomplete")]
    rss_max = max(run.rss_mb) if run.rss_mb else None
    checks = {"no 5xx": server_errors == 0, "no hangs": hangs == 0,
              "RSS bounded": rss_max is not None and rss_max < cfg.rss_limit_mb,
              "/health within 1 s under slow clients": health_max < 1.0,
              "rate limit answers 429 with Retry-After": run.rate.get("with_retry_after", 0) > 0,
              "slow clients closed by the server": run.slow.get("closed_by_server") == run.slow.get("clients"),
              "no upload outside LIB/uploads": not run.after.get("stray_files"),
              "healthy afterwards": run.after.get("health") == 200}
    return {"cases": len(run.outcomes), "seconds": round(elapsed, 1), "songs": songs, "server_errors": server_errors,
            "hangs": hangs, "unexpected": sum(not o.expected for o in run.outcomes),
            "p50_s": round(float(np.median(answered)), 3), "max_s": round(max(answered), 2),  # incomplete ones aside
            "rss_start_mb": round(run.rss_mb[0]) if run.rss_mb else None, "rss_max_mb": None if rss_max is None else round(rss_max),
            "health_max_s": round(health_max, 3), "health_probes": len(run.health_s), "slow": run.slow,
            "rate": run.rate, "after": run.after, "kinds": rows, "checks": checks, "passed": all(checks.values())}


def markdown(r: dict, cfg: FuzzConfig) -> str:
    """The results as the body of a BENCHMARKS.md section."""
    verdict = lambda ok: "yes" if ok else "**no**"  # noqa: E731
    lines = [
        f"`tuneprint serve` ({cfg.threads} threads, uploads capped at {cfg.max_upload_mb:g} MB, tracks at "
        f"{cfg.max_track_seconds:g} s, default query cap and rate limit) on a copy of a {len(r['songs'])}-song library "
        f"of real music ({', '.join(r['songs'])}), on 127.0.0.1. {r['cases']} hostile requests, 4 at a time, each from its own loopback "
        f"address; then 40 queries at once from one address; then {r['slow']['clients']} slow clients.", "",
        "| check | result |", "| --- | --- |",
        f"| answers 5xx (besides waitress's 501, below) | {r['server_errors']} |",
        f"| no answer within {cfg.request_timeout_s:g} s | {r['hangs']} |",
        f"| answers outside the statuses expected | {r['unexpected']} |",
        f"| latency p50 / max (requests sent whole) | {r['p50_s']:g} s / {r['max_s']:g} s |",
        f"| server memory (RSS) at start / max | {r['rss_start_mb']} MB / {r['rss_max_mb']} MB |",
        f"| `/health` slowest of {r['health_probes']} while {r['slow']['clients']} slow clients hold sockets | "
        f"{r['health_max_s'] * 1000:.0f} ms |",
        f"| slow clients closed by the server (idle timeout {cfg.channel_timeout_s:g} s) | "
        f"{r['slow']['closed_by_server']} of {r['slow']['clients']}, within {r['slow']['closed_within_s']:g} s |",
        f"| 40 queries at once from one address | {', '.join(f'{k}: {v}' for k, v in r['rate']['statuses'].items())} "
        f"({r['rate']['with_retry_after']} with Retry-After) |",
        f"| files written outside LIB/uploads | {len(r['after']['stray_files'])} |",
        f"| all checks passed | {verdict(r['passed'])} |", "",
        "| kind of request | cases | statuses (0: closed without an answer) | slowest s | unexpected |",
        "| --- | ---: | --- | ---: | ---: |",
        *[f"| {kind} | {row['cases']} | {', '.join(f'{k}: {v}' for k, v in row['statuses'].items())} | "
          f"{row['max_s']:g} | {row['unexpected']} |" for kind, row in r["kinds"].items()], "",
        "Each kind's expected statuses are in `server/evaluation/fuzz_cases.py`; damaged audio may still hold "
        "enough to answer (200). The oversize and malformed requests that waitress refuses itself get its plain-text "
        "4xx or a closed connection; its one 5xx, 501 to an unknown `Transfer-Encoding`, is what RFC 9112 (6.1) asks "
        "for and is counted as expected, not as a server error. Incomplete requests are closed at the idle timeout "
        "without an answer and without holding a worker thread.",
    ]
    return "\n".join(lines)


def write_results(path: Path, r: dict, cfg: FuzzConfig) -> None:
    write_section(path, SECTION, TITLE, markdown(r, cfg))
