"""Load check of the HTTP service: concurrent clients send short clips to ``POST /identify``.

Starts ``tuneprint serve`` on loopback (or uses a running server, ``--url``), cuts clips at
random from the library's own tracks (the files its catalog points to; the server must
run on this machine), lets ``--clients`` threads send them back to back for ``--seconds``,
and reports requests/s, latency percentiles, errors and how many clips were identified
right. ``--out`` writes (or replaces) a markdown section in that file.

    .venv/bin/python scripts/load_test.py --library demo-library --clients 20 --seconds 60 --out docs/BENCHMARKS.md

Not a test: timings depend on the machine, and nothing here asserts.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import soundfile as sf

SECTION = "## HTTP service under load"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", type=Path, required=True, help="library folder to serve (and to cut clips from)")
    parser.add_argument("--url", help="a server already running on this machine, e.g. http://127.0.0.1:8000/ "
                                      "(default: start `tuneprint serve --library LIB` on a free port)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send (default 60)")
    parser.add_argument("--clip-seconds", type=float, default=3.0, help="length of each clip (default 3)")
    parser.add_argument("--clips", type=int, default=64, help="distinct clips prepared (default 64)")
    parser.add_argument("--threads", type=int, default=8, help="server worker threads when started here (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="markdown file to write the results section into (e.g. docs/BENCHMARKS.md)")
    args = parser.parse_args(argv)

    server = None if args.url else start_server(args.library, args.threads)
    url = args.url or server[1]
    try:
        info = get_json(url, "stats")
        print(f"server {url}: {info['songs']} songs, encoder {info['model_id']}", file=sys.stderr)
        clips = make_clips(url, args.clips, args.clip_seconds, args.seed)
        send(url, clips[:1], 1, 0.0, Tally())  # warm up (first request pays for lazy set-up)
        tally = Tally()
        print(f"{args.clients} clients × {args.seconds:g} s of {args.clip_seconds:g}-s clips …", file=sys.stderr)
        elapsed = send(url, clips, args.clients, args.seconds, tally)
    finally:
        if server:
            stop_server(server[0])
    result = summarise(tally, elapsed)
    print(json.dumps(result, indent=2))
    if args.out:
        write_section(args.out, markdown(result, args, info, url if args.url else None))
        print(f"wrote the section {SECTION!r} in {args.out}", file=sys.stderr)
    return 0


# -- the server -------------------------------------------------------------------------
def start_server(library: Path, threads: int) -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).with_name("tuneprint")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tuneprint.server.cli"]
    proc = subprocess.Popen([*cmd, "serve", "--library", str(library), "--port", "0", "--threads", str(threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found: queue.Queue[str] = queue.Queue()

    def drain():  # keep reading, so the server never blocks on a full pipe
        for line in proc.stderr:
            if m := re.search(r"on (http://\S+/)", line):
                found.put(m.group(1))
            elif "Traceback" in line or "error" in line.lower():
                print(f"server: {line.rstrip()}", file=sys.stderr)
        found.put("")

    threading.Thread(target=drain, daemon=True).start()
    url = found.get(timeout=300)
    if not url:
        raise SystemExit("tuneprint serve did not start")
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- clips ------------------------------------------------------------------------------
def make_clips(url: str, n: int, seconds: float, seed: int) -> list[tuple[str, bytes]]:
    """``n`` WAV clips (song id, bytes) cut at random from the library's tracks."""
    from tuneprint.encoder.audio import load_audio

    tracks, offset = [], 0
    while True:
        page = get_json(url, f"tracks?limit=1000&offset={offset}")
        tracks += page["tracks"]
        offset += len(page["tracks"])
        if not page["tracks"] or offset >= page["total"]:
            break
    tracks = [t for t in tracks if t["duration_s"] >= seconds + 1 and Path(t["path"]).is_file()]
    if not tracks:
        raise SystemExit("no track of the library is long enough, or on this machine, to cut clips from")
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

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
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
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
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
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def get_json(url: str, path: str) -> dict:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("GET", parts.path.rstrip("/") + "/" + path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


# -- the report -------------------------------------------------------------------------
def summarise(tally: Tally, elapsed: float) -> dict:
    lat = np.array(tally.latencies_s) * 1000
    pct = (lambda q: round(float(np.percentile(lat, q)), 1)) if len(lat) else (lambda q: None)
    errors = sum(tally.errors.values())
    return {"seconds": round(elapsed, 1), "requests": tally.answered + errors, "ok": tally.answered,
            "requests_per_s": round((tally.answered + errors) / elapsed, 2) if elapsed else None,
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": round(float(lat.max()), 1) if len(lat) else None,
            "errors": errors, "error_kinds": dict(sorted(tally.errors.items())),
            "identified_right": round(tally.right / tally.answered, 3) if tally.answered else None}


def markdown(r: dict, args, info: dict, external_url: str | None) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    server = f"the server at {external_url}" if external_url else f"`tuneprint serve` (waitress, {args.threads} threads)"
    errors = f"{r['errors']}" + (f" ({', '.join(f'{k}: {v}' for k, v in r['error_kinds'].items())})" if r["errors"] else "")
    fmt = lambda v: "–" if v is None else f"{v:g}"  # noqa: E731
    return "\n".join([
        SECTION, "",
        f"`scripts/load_test.py --clients {args.clients} --seconds {args.seconds:g}`, {when}: {args.clients} clients on "
        f"loopback, each sending {args.clip_seconds:g}-s WAV clips (cut at random from the library's tracks) to "
        f"`POST /identify` back to back, against {server}. Library: {info['songs']} songs ({info['hours']:.2f} h, "
        f"{info['backend']}), encoder `{info['model_id']}`. Machine: {os.cpu_count()} CPU threads, "
        f"{platform.machine()}, Python {platform.python_version()}.", "",
        "| clients | seconds | requests | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors | identified right |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {args.clients} | {r['seconds']:g} | {r['requests']} | {fmt(r['requests_per_s'])} | {fmt(r['p50_ms'])} | "
        f"{fmt(r['p90_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['max_ms'])} | {errors} | "
        f"{'–' if r['identified_right'] is None else format(r['identified_right'], '.1%')} |", "",
        "Latency is per request, from sending the upload to the last byte of the answer, so with more clients than "
        "cores it includes the wait for a free core. Errors count any answer other than 200 and any broken connection.",
        "",
    ])


def write_section(path: Path, section: str) -> None:
    """Replace this script's section in ``path`` (up to the next ``## `` heading), or append it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = section.rstrip("\n") + "\n"
    start = text.find(SECTION + "\n")
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
