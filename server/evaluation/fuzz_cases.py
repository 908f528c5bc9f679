"""The hostile requests of the HTTP fuzz check (:mod:`.http_fuzz`), as raw bytes on the wire.

Each :class:`Case` is one whole HTTP/1.1 request (``Connection: close``) and the statuses a
correct server may answer. The audio comes from a real song of the library, encoded in every
format the service reads and then damaged: truncated, bytes flipped, headers that lie about
the length or the rate. The rest is the protocol: wrong methods, content types, names, ids,
tokens and parameters, oversize and malformed bodies.
"""
from __future__ import annotations

import io
import struct
import uuid
from dataclasses import dataclass

import numpy as np

QUERIES = ("/identify", "/similar", "/genre")
OK, AUDIO = (200,), (200, 422)  # a damaged file may still hold enough audio to answer


@dataclass(frozen=True)
class Case:
    kind: str  # the row of the report
    raw: bytes  # the request as sent
    expect: tuple[int, ...] = ()  # statuses a correct server answers; () = any below 500
    incomplete: bool = False  # never finished: the server must close it at its idle timeout


def request(method: str, path: str, body: bytes = b"", headers: dict | None = None, *,
            content_length: int | None = None) -> bytes:
    """A raw HTTP/1.1 request; header values may be bytes (to send what a str cannot)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else str(value).encode()))
    if content_length is not None or body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: %d" % (len(body) if content_length is None else content_length))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def multipart(parts: list[tuple[str, bytes | None, bytes]], boundary: str | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, file name or None, data) parts, and its Content-Type."""
    boundary = boundary or uuid.uuid4().hex
    out = b""
    for field, filename, data in parts:
        disposition = b'form-data; name="' + field.encode() + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        out += (b"Content-Type: application/octet-stream\r\n" if filename is not None else b"") + b"\r\n" + data + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


def form(path: str, parts: list[tuple[str, bytes | None, bytes]], headers: dict | None = None) -> bytes:
    body, ctype = multipart(parts)
    return request("POST", path, body, {"Content-Type": ctype, **(headers or {})})


def upload(path: str, data: bytes, name: bytes = b"clip.wav", headers: dict | None = None,
           fields: tuple = ()) -> bytes:
    return form(path, [("file", name, data), *fields], headers)


# -- audio: every format, then damaged ---------------------------------------------------------
def encodings(y: np.ndarray, sr: int) -> dict[str, bytes]:
    """``y`` (mono float32 at ``sr``) in the formats the service reads: the name → the file's bytes."""
    import soundfile as sf

    out = {}
    for name, fmt, subtype in [("wav-pcm16", "WAV", "PCM_16"), ("wav-float", "WAV", "FLOAT"), ("wav-u8", "WAV", "PCM_U8"),
                               ("flac", "FLAC", None), ("ogg-vorbis", "OGG", "VORBIS"), ("ogg-opus", "OGG", "OPUS"),
                               ("mp3", "MP3", None), ("aiff", "AIFF", "PCM_16")]:
        buf = io.BytesIO()
        sf.write(buf, y, 48000 if subtype == "OPUS" else sr, format=fmt, subtype=subtype)
        out[name] = buf.getvalue()
    for name, container, codec, rate in [("webm-opus", "webm", "libopus", 48000), ("m4a-aac", "mp4", "aac", 44100)]:
        out[name] = encode_audio(y, sr, container, codec, rate)
    return out


def encode_audio(y: np.ndarray, sr: int, container: str, codec: str, rate: int) -> bytes:
    """Encode mono samples at ``sr`` with FFmpeg (PyAV) into ``container``/``codec`` at ``rate``, as a
    browser's MediaRecorder or an encoder app would."""
    import av

    from tuneprint.encoder.audio import to_rate

    z = to_rate(y, sr, rate)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(z[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def damaged(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random damage to a file: cut short, bytes flipped, a range zeroed, junk in front, or doubled."""
    how = rng.choice(["truncated", "flipped", "zeroed", "junk-prefix", "header-only", "doubled"])
    b = bytearray(data)
    if how == "truncated":
        b = b[: int(rng.integers(1, max(len(b), 2)))]
    elif how == "flipped":
        for i in rng.integers(0, len(b), int(rng.integers(1, 64))):
            b[i] ^= int(rng.integers(1, 256))
    elif how == "zeroed":
        start = int(rng.integers(0, len(b)))
        b[start : start + int(rng.integers(1, 4096))] = bytes(min(len(b) - start, 4096))
    elif how == "junk-prefix":
        b = bytearray(rng.bytes(int(rng.integers(1, 2048)))) + b
    elif how == "header-only":
        b = b[: int(rng.integers(4, 200))]
    else:
        b = b + b
    return how, bytes(b)


def lying_wav(rate: int, channels: int = 1, bits: int = 16, data: bytes = b"", claimed: int | None = None) -> bytes:
    """A WAV whose header states any rate, channel count and data length, whatever follows it."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 3 if bits in (32, 64) and rate % 2 else 1, channels, rate & 0xFFFFFFFF,
                      (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    size = len(data) if claimed is None else claimed
    return (b"RIFF" + struct.pack("<I", min(36 + size, 0xFFFFFFFF)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", min(size, 0xFFFFFFFF)) + data)


def low_rate_wav(rate: int, seconds: float, rng: np.random.Generator) -> bytes:
    """Noise at ``rate`` Hz: a small file that would decode to ``seconds`` of audio."""
    n = int(rate * seconds)
    return lying_wav(rate, data=(rng.uniform(-0.5, 0.5, n) * 32767).astype("<i2").tobytes())


def long_flac(seconds: float, tone: bool) -> bytes:
    """A FLAC of ``seconds`` of silence (or a steady tone): it compresses to little and decodes to much."""
    import soundfile as sf

    sr = 8000
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sr, 1, format="FLAC") as f:
        block = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr * 60) / sr)).astype(np.float32) if tone else np.zeros(sr * 60, np.float32)
        for _ in range(int(seconds // 60)):
            f.write(block)
    return buf.getvalue()


# -- the cases ----------------------------------------------------------------------------------
ANY_4XX = tuple(range(400, 500))
TRAVERSAL_NAMES = [b"../../../../etc/passwd", b"..\\..\\..\\boot.ini", b"/etc/shadow", b"a/../../b.wav", b"..", b".",
                   b"%2e%2e%2fx.wav", b"....//....//x.wav", b"C:\\Windows\\x.wav", b"\\\\server\\share\\x.wav",
                   b"x" * 5000 + b".wav", b"", b" ", b".hidden.wav", b"con.wav", b"a\tb.wav", b"\xe2\x80\xaeevil.wav"]


def build_cases(song: np.ndarray, sr: int, token: str, song_ids: list[str], seed: int = 0) -> list[Case]:
    """More than a thousand hostile requests, built from ``song`` (mono float32 at ``sr``, ≥ 10 s) and
    the ids of stored songs. The write ``token`` goes with the cases that must reach the write code."""
    rng = np.random.default_rng(seed)
    auth = {"Authorization": f"Bearer {token}"}
    clip = song[: 8 * sr]
    formats = encodings(clip, sr)
    cases: list[Case] = []
    add = cases.append
    pick = lambda: QUERIES[int(rng.integers(len(QUERIES)))]  # noqa: E731

    for name, data in formats.items():  # clean audio: every format is read, by every query
        for path in QUERIES:
            add(Case("clean audio", upload(path, data, f"clip.{name}".encode()), OK))
    for _ in range(150):
        size = int(np.exp(rng.uniform(0, np.log(300_000))))
        add(Case("random bytes", upload(pick(), rng.bytes(size), b"noise.wav"), AUDIO + (422,)))
    for name, data in formats.items():
        for _ in range(30):
            how, bad = damaged(data, rng)
            add(Case(f"damaged audio ({how})", upload(pick(), bad, f"bad.{name}".encode()), AUDIO))
    for rate in (25, 100, 1000, 4000, 7999):
        data = low_rate_wav(rate, min(4000.0, 400_000 / rate), rng)
        for path in QUERIES:
            add(Case("sample rate below 8 kHz", upload(path, data, b"hum.wav"), (422,)))
        add(Case("sample rate below 8 kHz", upload("/tracks", data, b"hum.wav", auth), (422,)))
    for rate in (0, 1, 7999, 8000, 44100, 768_001, 4_000_000_000):
        for channels, bits in ((0, 16), (1, 16), (2, 24), (255, 8), (65535, 16), (1, 0), (1, 12), (2, 64)):
            data = lying_wav(rate, channels, bits, rng.bytes(int(rng.integers(0, 4096))), claimed=0xFFFFFFF0)
            add(Case("header claims a huge length or odd format", upload(pick(), data, b"liar.wav"), AUDIO))
    for seconds, tone in ((3600, False), (1200, True), (900, True)):  # each under the fuzzed server's 8-MB cap
        data = long_flac(seconds, tone)
        for path in QUERIES:
            add(Case("long audio (cut to the query cap)", upload(path, data, b"long.flac"), AUDIO))
        add(Case("long audio (cut to the query cap)", upload("/tracks", data, b"long.flac", auth), (422,)))
    cases += _protocol_cases(formats["wav-pcm16"], token, song_ids, rng)
    return cases


def _protocol_cases(wav: bytes, token: str, song_ids: list[str], rng: np.random.Generator) -> list[Case]:
    auth = {"Authorization": f"Bearer {token}"}
    body, ctype = multipart([("file", b"clip.wav", wav)])  # sent with the wrong Content-Type
    cases: list[Case] = []
    add = cases.append
    for path in QUERIES:
        for header in ("application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                       "multipart/form-data; boundary=", "multipart/form-data; boundary=nope", "audio/wav",
                       "multipart/mixed; boundary=x", None, ctype.replace("form-data", "form-data; charset=latin-9")):
            headers = {} if header is None else {"Content-Type": header}
            add(Case("wrong content type", request("POST", path, wav, headers), ANY_4XX))
            add(Case("wrong content type", request("POST", path, body, headers), ANY_4XX + (200,)))
        for text in (b"{", b'{"file": "AAAA"}', b"[]", b"null", b'{"file": 1e999}', b"\xff\xfe{}", b'"' * 1000):
            add(Case("JSON instead of a form", request("POST", path, text, {"Content-Type": "application/json"}), ANY_4XX))
    for _ in range(3):
        add(Case("JSON instead of a form", request("POST", "/tracks", b"{}", {"Content-Type": "application/json", **auth}), ANY_4XX))
    for name in [*TRAVERSAL_NAMES, "café".encode("latin-1"), b"\xff\xfe\xfd.wav", bytes(rng.integers(128, 256, 12, dtype=np.uint8))]:
        utf8 = _is_utf8(name)
        for path in QUERIES:
            add(Case("file names (traversal, not UTF-8, odd)", upload(path, wav, name), OK if utf8 else (400,)))
        add(Case("file names (traversal, not UTF-8, odd)", upload("/tracks", wav, name, auth), (200, 201) if utf8 else (400,)))
    for path in ("/", "/identify", "/similar", "/genre", "/tracks", f"/tracks/{song_ids[0]}", "/stats", "/health",
                 "/openapi.json", "/static/app.js"):
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "FOO"):
            add(Case("methods", request(method, path), ()))
    weird = ["nosuchsong", "0" * 12, "%00", "..%2F..%2Fsettings.json", "%2e%2e", "caf%C3%A9", "%FF%FE", "x" * 8000,
             "' OR 1=1 --", "1;DROP TABLE songs", "<script>", "%0d%0aSet-Cookie:x"]
    weird += ["".join(rng.choice(list("abcdef0123456789-_~."), int(rng.integers(1, 40)))) for _ in range(28)]
    for song_id in weird:
        add(Case("bad song ids", request("GET", f"/tracks/{song_id}"), (404, 400)))
        add(Case("bad song ids", request("DELETE", f"/tracks/{song_id}", headers=auth), (404, 400)))
    tokens = [None, "Bearer", "Bearer ", "Bearer wrong", "Basic dXNlcjpwYXNz", token, f"Bearer {token}",
              f"bearer  {token}x", "Bearer " + "t" * 10_000, b"Bearer \xff\xfe", f"Bearer {token}\x00"]
    for value in tokens:
        headers = {} if value is None else {"Authorization": value}
        ok = value == f"Bearer {token}"
        for _ in range(3):
            add(Case("tokens (missing, wrong, odd)", upload("/tracks", rng.bytes(2000), b"x.wav", headers), (422,) if ok else (401, 400)))
            add(Case("tokens (missing, wrong, odd)", request("DELETE", "/tracks/nosuchsong", headers=headers), (404,) if ok else (401, 400)))
    for query in ("limit=0", "limit=-1", "limit=1001", "limit=abc", "limit=1e3", "limit=%00", "offset=-5", "offset=99999999999",
                  "offset=x", "limit=5&limit=6", "limit=" + "9" * 400, "offset=2147483648"):
        add(Case("parameters", request("GET", f"/tracks?{query}"), (200, 400)))
    for n in ("0", "-1", "101", "abc", "1e2", "", "5" * 50, "\x00"):
        add(Case("parameters", upload("/similar", wav, fields=(("n", None, n.encode()),)), (200, 400)))
        add(Case("parameters", form("/similar", [("track", None, song_ids[0].encode()), ("n", None, n.encode())]), (200, 400)))
    for track in [*song_ids[:3], "nosuchsong", "", "%", "x" * 5000, "..%2F"]:
        add(Case("parameters", form("/similar", [("track", None, track.encode())]), (200, 400, 404)))
    return cases + _oversize_cases(rng) + _malformed_http_cases()


def _oversize_cases(rng: np.random.Generator) -> list[Case]:
    """Bodies over the cap: announced and sent, announced but not sent, and chunked (the server caps at 8 MB)."""
    cases = []
    for _ in range(6):
        cases.append(Case("oversize upload", request("POST", "/identify", b"", {"Content-Type": "multipart/form-data; boundary=b"},
                                                    content_length=int(rng.integers(10**8, 10**12))), (413, 0)))
    for size_mb in (8.5, 9.5, 12, 30):
        body, ctype = multipart([("file", b"big.wav", bytes(int(size_mb * 2**20)))])
        cases.append(Case("oversize upload", request("POST", "/identify", body, {"Content-Type": ctype}), (413, 0)))
    chunk = b"%x\r\n" % (1 << 20) + bytes(1 << 20) + b"\r\n"
    for chunks in (10, 20):
        raw = (b"POST /identify HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Type: multipart/form-data; boundary=b\r\n\r\n" + chunk * chunks + b"0\r\n\r\n")
        cases.append(Case("oversize upload", raw, (413, 0)))
    return cases


def _malformed_http_cases() -> list[Case]:
    """Requests that are not quite HTTP: waitress answers 4xx or closes the connection (0)."""
    raws = [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", b"GET /\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /identify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 3000 + b"\r\n",
            b"GET http://evil.example/health HTTP/1.1\r\nHost: x\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]
    cases = [Case("malformed HTTP", raw, ANY_4XX + (0, 200)) for raw in raws]
    # RFC 9112 6.1: a transfer coding the server does not know is answered 501 (by waitress, before the app)
    cases.append(Case("malformed HTTP", b"POST /identify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                                        b"0\r\n\r\n", (501,)))
    cases = cases * 2 + [Case("malformed HTTP", raw.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1), ANY_4XX + (0, 200)) for raw in raws]
    # Never finished: blank lines only, a TLS hello, a GET that waits for "100 Continue" it needs not (waitress
    # sends it and then waits for a body), a body shorter than announced, a chunked body never ended.
    incomplete = [b"\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                  b"GET /health HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", b"GET /health HTTP/1.1\r\nHost:",
                  b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc",
                  b"POST /identify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"]
    return cases + [Case("incomplete requests (closed at the idle timeout)", raw, (0,), incomplete=True) for raw in incomplete]


def _is_utf8(name: bytes) -> bool:
    try:
        name.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
