"""Bounded work per request: low-rate and over-long uploads, the rate limit per client, a busy
library, odd multipart bodies, and slow clients against the real server (waitress).

Answers through the Flask test client are checked against the OpenAPI document (tests/test_api.py).
"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import cut, synth_song
from tests.test_api import TOKEN, assert_problem, bearer, files, make_app, wav
from tuneprint.server.http.limits import Limits, RateLimiter

FAST_S = 5.0  # a refusal must come this quickly (the 25-Hz upload took 124 s)


def low_rate_wav(rate: int, seconds: float) -> bytes:
    """Noise recorded at ``rate`` Hz: a few hundred kB that would decode to ``seconds`` of audio."""
    y = np.random.default_rng(0).uniform(-0.5, 0.5, int(rate * seconds)).astype(np.float32)
    return wav(y, rate)


@pytest.fixture
def track_app(library_copy):
    """A private library copy served with a write token and small caps; closed after the test."""
    app = make_app(library_path=library_copy, token=TOKEN, limits=Limits(max_track_seconds=12.0, rate_per_min=0))
    yield app
    app.extensions["tuneprint"].library.close()


# -- what one request may make the server decode ------------------------------------------------
@pytest.mark.parametrize("endpoint", ["/identify", "/similar", "/genre"])
def test_a_low_rate_upload_is_refused_before_decoding(library, endpoint):
    client = make_app(library).test_client()
    started = time.perf_counter()
    body = assert_problem(client.post(endpoint, data=files(low_rate_wav(25, 4000.0), "hum.wav")), 422,
                          "bad-sample-rate", mentions="25 Hz")
    assert time.perf_counter() - started < FAST_S
    assert body["detail"].startswith("hum.wav: ") and "/tmp" not in body["detail"]


def test_a_long_query_is_cut_to_the_cap(library):
    client = make_app(library, limits=Limits(max_query_seconds=4.0, rate_per_min=0)).test_client()
    body = client.post("/identify", data=files(wav(cut(synth_song(2), 0.0, 20.0)))).get_json()
    assert body["clip_s"] == pytest.approx(4.0, abs=0.2)
    assert body["match"] is not None and body["match"]["title"] == "song02" and body["match"]["offset_s"] < 1.0


def test_track_uploads_refuse_low_rates_and_over_long_audio(track_app):
    client = track_app.test_client()
    lib = track_app.extensions["tuneprint"].library
    started = time.perf_counter()
    assert_problem(client.post("/tracks", data=files(low_rate_wav(100, 1000.0), "hum.wav"), headers=bearer(TOKEN)),
                   422, "bad-sample-rate", mentions="100 Hz")
    assert time.perf_counter() - started < FAST_S
    assert_problem(client.post("/tracks", data=files(wav(synth_song(70, seconds=15.0)), "long.wav"),
                               headers=bearer(TOKEN)), 422, "too-long", mentions="long.wav")
    assert client.get("/stats").get_json()["songs"] == 10
    assert list((lib.root / "uploads").glob("**/*")) == []
    response = client.post("/tracks", data=files(wav(synth_song(71, seconds=10.0)), "ok.wav"), headers=bearer(TOKEN))
    assert response.status_code == 201, response.get_json()


def test_uploads_are_spooled_to_disk_and_removed(library, tmp_path, monkeypatch):
    import tuneprint.encoder.audio as audio

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    decoded = []
    load_audio = audio.load_audio

    def spy(source, **kwargs):  # the decoder is handed a file on disk, not bytes in memory
        decoded.append((Path(source), Path(source).stat().st_size, kwargs["max_seconds"]))
        return load_audio(source, **kwargs)

    monkeypatch.setattr(audio, "load_audio", spy)
    client = make_app(library).test_client()
    data = wav(cut(synth_song(1), 2.0, 4.0))
    assert client.post("/identify", data=files(data, "a.wav")).status_code == 200
    [(path, size, max_seconds)] = decoded
    assert path.parent == tmp_path and path.suffix == ".wav" and size == len(data) and max_seconds == 60.0
    assert not path.exists()  # removed when the request ended


# -- odd multipart bodies ----------------------------------------------------------------------
def multipart_body(filename: bytes, data: bytes, boundary: bytes = b"b0undary") -> tuple[bytes, str]:
    body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename
            + b'"\r\nContent-Type: audio/wav\r\n\r\n' + data + b"\r\n--" + boundary + b"--\r\n")
    return body, f"multipart/form-data; boundary={boundary.decode()}"


def test_a_file_name_that_is_not_utf8_is_named_as_the_problem(library):
    client = make_app(library).test_client()
    body, ctype = multipart_body("café.wav".encode("latin-1"), wav(cut(synth_song(1), 2.0)))
    assert_problem(client.post("/identify", data=body, content_type=ctype), 400, "bad-multipart", mentions="UTF-8")
    assert_problem(client.post("/similar", data=body, content_type=ctype), 400, "bad-multipart")
    utf8, ctype = multipart_body("café ♪.wav".encode(), wav(cut(synth_song(1), 2.0)))
    assert client.post("/identify", data=utf8, content_type=ctype).get_json()["query"] == "café ♪.wav"


def test_a_body_cut_short_is_a_400_not_a_missing_file(library):
    client = make_app(library).test_client()
    body, ctype = multipart_body(b"a.wav", wav(cut(synth_song(1), 2.0)))
    assert_problem(client.post("/identify", data=body[:-40], content_type=ctype), 400, "bad-multipart")


# -- the rate limit -------------------------------------------------------------------------------
def test_the_rate_limit_answers_429_with_retry_after(library):
    client = make_app(library, limits=Limits(rate_per_min=6, rate_burst=2)).test_client()
    clip = wav(cut(synth_song(1), 2.0))
    for _ in range(2):
        assert client.post("/identify", data=files(clip)).status_code == 200
    response = client.post("/genre", data=files(clip))
    assert_problem(response, 429, "too-many-requests", mentions="retry in")
    assert 1 <= int(response.headers["Retry-After"]) <= 10
    assert client.get("/health").status_code == 200  # cheap answers are not limited
    other = client.post("/identify", data=files(clip), environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert other.status_code == 200  # another client has its own bucket


def test_the_token_bucket_refills_and_forgets_old_clients():
    now = [0.0]
    limiter = RateLimiter(60, 2, max_clients=2, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    now[0] = 1.0
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    limiter.take("b"), limiter.take("c")  # "a" is the oldest: forgotten
    assert limiter.take("a") == 0.0
    assert RateLimiter(0, 1).take("a") == 0.0  # off


# -- a library another process is writing to --------------------------------------------------------
def test_a_busy_library_answers_503_with_retry_after(track_app):
    from tuneprint.server.writelock import writer_lock

    client = track_app.test_client()
    lib = track_app.extensions["tuneprint"].library
    lib.write_wait_s = 0.2
    song_id = lib.tracks()[0].song_id
    with writer_lock(lib.root):  # held as another process would hold it
        response = client.post("/tracks", data=files(wav(synth_song(72, seconds=8.0)), "new.wav"), headers=bearer(TOKEN))
        body = assert_problem(response, 503, "library-busy", mentions="busy")
        assert str(lib.root) not in body["detail"] and int(response.headers["Retry-After"]) > 0
        assert_problem(client.delete(f"/tracks/{song_id}", headers=bearer(TOKEN)), 503, "library-busy")
        assert client.post("/identify", data=files(wav(cut(synth_song(3), 2.0)))).status_code == 200  # reads go on
    assert list((lib.root / "uploads").glob("**/*")) == []
    assert client.get("/stats").get_json()["songs"] == 10
    assert client.delete(f"/tracks/{song_id}", headers=bearer(TOKEN)).status_code == 200


# -- the command's options ----------------------------------------------------------------------
def test_tokens_come_from_a_file_or_the_environment(tmp_path, monkeypatch):
    from tuneprint.server.cli.common import UsageError
    from tuneprint.server.cli.serve_command import _token

    monkeypatch.setenv("TUNEPRINT_TOKEN", "from-env")
    (tmp_path / "token").write_text("from-file\nignored\n")
    assert _token(None, tmp_path / "token", "TUNEPRINT_TOKEN") == "from-file"
    assert _token(None, None, "TUNEPRINT_TOKEN") == "from-env"
    assert _token("given", None, "TUNEPRINT_TOKEN") == "given"
    (tmp_path / "empty").write_text("\n")
    for given, file in ((None, tmp_path / "empty"), (None, tmp_path / "missing"), ("given", tmp_path / "token")):
        with pytest.raises(UsageError):
            _token(given, file, "TUNEPRINT_TOKEN")


def test_serve_defaults_are_the_limits_defaults():
    from tuneprint.server.cli import serve_command

    assert (serve_command.DEFAULT_MAX_QUERY_SECONDS, serve_command.DEFAULT_MAX_TRACK_SECONDS,
            serve_command.DEFAULT_RATE_LIMIT) == (Limits().max_query_seconds, Limits().max_track_seconds,
                                                  Limits().rate_per_min)


# -- slow clients against the real server ------------------------------------------------------------
SLOW_CLIENTS = 200  # waitress's own connection limit (100) let 120 of these lock everyone out


@pytest.fixture(scope="module")
def live_server(library_path, tmp_path_factory):
    """`tuneprint serve` in a subprocess on a free loopback port, the write token read from a file."""
    token_file = tmp_path_factory.mktemp("secret") / "token"
    token_file.write_text(TOKEN + "\n")
    exe = Path(sys.executable).with_name("tuneprint")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tuneprint.server.cli"]
    proc = subprocess.Popen([*cmd, "serve", "--library", str(library_path), "--port", "0", "--threads", "2",
                             "--token-file", str(token_file)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    found = threading.Event()

    def drain():
        for line in proc.stderr:
            lines.append(line)
            if " on http://" in line:
                found.set()
        found.set()  # the server ended

    threading.Thread(target=drain, daemon=True).start()
    found.wait(timeout=300)
    match = next((re.search(r"on http://([\d.]+):(\d+)/", line) for line in lines if " on http://" in line), None)
    if match is None:
        proc.kill()
        pytest.fail("tuneprint serve did not start:\n" + "".join(lines[-20:]))
    yield match.group(1), int(match.group(2))
    proc.terminate()
    proc.wait(timeout=30)


def get(address, path: str, headers: dict | None = None, timeout: float = 10.0) -> tuple[int, float]:
    """Status and seconds of one GET on a fresh connection."""
    import http.client

    started = time.perf_counter()
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        conn.close()


def test_health_answers_while_slow_clients_hold_connections(live_server):
    assert get(live_server, "/health")[0] == 200
    slow = []
    try:
        for _ in range(SLOW_CLIENTS):  # each claims a 100-kB body and sends 10 bytes of it
            s = socket.create_connection(live_server, timeout=5)
            s.sendall(b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"Content-Length: 100000\r\n\r\n--b\r\nConte")
            slow.append(s)
        time.sleep(0.5)
        for _ in range(3):
            status, seconds = get(live_server, "/health", timeout=5.0)
            assert status == 200 and seconds < 2.0, seconds
    finally:
        for s in slow:
            s.close()


def test_the_live_server_reads_its_token_from_the_file(live_server):
    import http.client

    conn = http.client.HTTPConnection(*live_server, timeout=10)
    conn.request("DELETE", "/tracks/nosuchsong", headers=bearer(TOKEN))
    assert conn.getresponse().status == 404  # the token was accepted (403: no token; 401: a wrong one)
    conn.close()


def test_an_oversize_body_is_refused_as_it_arrives(live_server):
    """A body announced far over the cap is refused after its headers: the server reads none of it."""
    s = socket.create_connection(live_server, timeout=10)
    try:
        s.sendall(b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 10000000000\r\n\r\n")
        answer = s.recv(4096)
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
