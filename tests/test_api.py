"""The HTTP service through Flask's test client, over the session's small real library.

Every response any test receives is checked against the OpenAPI document the app serves
(its status must be listed for that route and method, its body must fit the schema), so
the document cannot drift from what the server does.
"""
from __future__ import annotations

import io
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from werkzeug.exceptions import MethodNotAllowed, NotFound

from tests.conftest import SR, TEST_MODEL, cut, synth_song
from tuneprint.server.http import create_app, openapi_document
from tuneprint.server.http.limits import Limits

TOKEN = "s3cret-write"
READ_TOKEN = "r3ad-only"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


# -- an OpenAPI-checking test client ------------------------------------------------------
def openapi_path(rule: str) -> str:
    """Flask's ``/tracks/<song_id>`` → OpenAPI's ``/tracks/{song_id}`` (converters dropped)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


class OpenAPIClient(FlaskClient):
    """A test client that checks every answer against the app's own OpenAPI document."""

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        check_against_openapi(self.application, response)
        return response


def check_against_openapi(app, response) -> None:
    doc = app.extensions.setdefault("openapi_for_tests", openapi_document())
    method, path = response.request.method, response.request.path
    try:
        rule, _ = app.url_map.bind("localhost").match(path, method=method, return_rule=True)
    except (NotFound, MethodNotAllowed):  # no such route: a plain problem answer
        assert response.mimetype == "application/problem+json", response.data[:200]
        return
    op = doc["paths"][openapi_path(rule.rule)][method.lower() if method != "HEAD" else "get"]
    documented = op["responses"].get(str(response.status_code))
    assert documented is not None, f"{method} {path} answered {response.status_code}, not in the OpenAPI document"
    [(ctype, media)] = documented["content"].items()
    assert ctype == "*/*" or response.mimetype == ctype, f"{method} {path}: {response.mimetype}, documented {ctype}"
    if ctype.endswith("json"):
        schema = {**media["schema"], "components": doc["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(response.get_json()), key=str)
        assert not errors, f"{method} {path} {response.status_code}: {errors[0].message} at {list(errors[0].absolute_path)}"


def make_app(library=None, **kwargs):
    kwargs.setdefault("limits", Limits(rate_per_min=0))  # tests send bursts; test_http_limits.py checks the limit
    app = create_app(library, **kwargs)
    app.test_client_class = OpenAPIClient
    return app


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(library):
    """The session library served read-only (writes need TOKEN; nothing here writes)."""
    return make_app(library, token=TOKEN)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def write_app(library_copy):
    """A private library copy, served with a write token; closed after the test."""
    app = make_app(library_path=library_copy, token=TOKEN)
    yield app
    app.extensions["tuneprint"].library.close()


@pytest.fixture(scope="module")
def ids(library) -> dict[str, str]:
    """Title ("song03") → song id."""
    return {song.title: song.song_id for song in library.tracks()}


# -- audio to upload ----------------------------------------------------------------------
def wav(y: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def clip(song: int, start_s: float = 5.0, seconds: float = 5.0) -> bytes:
    """A clean WAV clip of a library song; 5 s, like a short recording from the page."""
    return wav(cut(synth_song(song), start_s, seconds))


def encode(y: np.ndarray, container: str, codec: str, rate: int) -> bytes:
    """Encode with FFmpeg (PyAV), as a browser's MediaRecorder or an encoder app would."""
    from tuneprint.server.evaluation.fuzz_cases import encode_audio

    return encode_audio(y, SR, container, codec, rate)


def sf_bytes(y: np.ndarray, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format=fmt, subtype=subtype)
    return buf.getvalue()


def files(data: bytes, name: str = "clip.wav", **fields) -> dict:
    return {"file": (io.BytesIO(data), name), **fields}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response, status: int, kind: str | None = None, *, mentions: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["detail"]
    if kind:
        assert body["type"] == f"urn:tuneprint:problem:{kind}", body
    if mentions:
        assert mentions in body["detail"], body["detail"]
    return body


# -- the OpenAPI document ---------------------------------------------------------------
def test_openapi_lists_exactly_the_routes_the_app_serves(app, client):
    doc = client.get("/openapi.json").get_json()
    served = {(openapi_path(rule.rule), method.lower())
              for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops if method in HTTP_METHODS}
    assert documented == served
    assert ("/identify", "post") in served and ("/tracks/{song_id}", "delete") in served


def test_openapi_document_is_valid_openapi(client):
    validator = pytest.importorskip("openapi_spec_validator")
    doc = client.get("/openapi.json").get_json()
    validator.validate(doc)
    assert doc["openapi"].startswith("3.1")
    for path, ops in doc["paths"].items():  # path parameters are declared
        for name in re.findall(r"{(\w+)}", path):
            for op in ops.values():
                assert any(p["name"] == name and p["in"] == "path" for p in op.get("parameters", [])), (path, name)


def test_openapi_states_the_servers_bounds_and_version(client):
    """openapi.json is a file: its parameter bounds must be the ones the views enforce."""
    from tuneprint.server.http import query, tracks
    from tuneprint.server.http.openapi import service_version

    doc = client.get("/openapi.json").get_json()
    assert doc["info"]["version"] == service_version()
    n = doc["paths"]["/similar"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["n"]
    assert (n["default"], n["maximum"]) == (query.DEFAULT_SIMILAR_N, query.MAX_SIMILAR_N)
    limit = next(p["schema"] for p in doc["paths"]["/tracks"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["default"], limit["maximum"]) == (tracks.DEFAULT_TRACKS_LIMIT, tracks.MAX_TRACKS_LIMIT)

def test_openapi_describes_confidence_and_reasons():
    """The answers may carry one confidence and say why they are unknown; the older shape stays valid."""
    doc = openapi_document()

    def errors(schema_name: str, answer: dict) -> list[str]:
        schema = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
        return [e.message for e in Draft202012Validator(schema).iter_errors(answer)]

    match = {"song_id": "a", "path": "a.wav", "title": None, "artist": None, "offset_s": 6.0, "score": 0.58,
             "similarity": 0.72, "votes": 3, "labels": [], "verified": 0.4}
    candidate = {k: match[k] for k in ("song_id", "path", "title", "score", "similarity", "offset_s", "verified")}
    answered = {"query": "q", "match": {**match, "confidence": 0.8}, "candidates": [{**candidate, "confidence": 0.8}],
                "reason": None, "clip_s": 8.0}
    unknown = {"query": "q", "match": None, "candidates": [{**candidate, "confidence": 0.3}], "reason": "no_match",
               "clip_s": 3.0}
    assert errors("Identification", answered) == errors("Identification", unknown) == []
    assert errors("Identification", {"query": "q", "match": match, "candidates": [candidate]}) == []
    assert errors("Identification", {**unknown, "reason": "no idea"})
    assert errors("Identification", {**answered, "match": {**match, "confidence": 1.5}})
    labels = {"query": "q", "label": None, "top": [["rock", 0.4]]}
    assert errors("LabelVotes", labels) == errors("LabelVotes", {**labels, "reason": "no_clear_label"}) == []
    assert errors("LabelVotes", {**labels, "reason": "unsure"})



# -- reads ----------------------------------------------------------------------------------
def test_page_and_its_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for needle in ('id="record"', 'id="file"', 'id="drop"', "static/app.js", "static/style.css"):
        assert needle in html
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "MediaRecorder" in client.get("/static/app.js").get_data(as_text=True)
    assert_problem(client.get("/static/nope.js"), 404)


def test_health(client, library):
    body = client.get("/health").get_json()
    assert body["status"] == "ok" and body["songs"] == 10 and body["model_id"] == library.model_id


def test_stats_match_the_library(client, library):
    assert client.get("/stats", headers=bearer(TOKEN)).get_json() == library.stats()
    # without the write token, the library's name, not where it lies on the server
    assert client.get("/stats").get_json() == {**library.stats(), "library": library.root.name}


def test_only_the_write_token_sees_server_paths(client, library, ids):
    song = library.song(ids["song03"])
    assert client.get(f"/tracks/{ids['song03']}").get_json()["path"] == "song03.wav"
    assert client.get(f"/tracks/{ids['song03']}", headers=bearer(TOKEN)).get_json()["path"] == song.path
    assert {t["path"] for t in client.get("/tracks").get_json()["tracks"]} == {f"song{i:02d}.wav" for i in range(10)}
    found = client.post("/identify", data=files(clip(3))).get_json()
    assert found["match"]["path"] == "song03.wav" and all("/" not in c["path"] for c in found["candidates"])
    near = client.post("/similar", data=files(clip(3))).get_json()
    assert all("/" not in n["path"] for n in near["neighbours"])
    missing = assert_problem(client.get("/tracks/nosuchsong"), 404)
    assert str(library.root) not in missing["detail"] and "the library" in missing["detail"]


def test_tracks_list_and_pages(client):
    everything = client.get("/tracks").get_json()
    assert everything["total"] == 10 and len(everything["tracks"]) == 10
    assert [t["title"] for t in everything["tracks"]] == [f"song{i:02d}" for i in range(10)]
    page = client.get("/tracks?limit=3&offset=2").get_json()
    assert [t["title"] for t in page["tracks"]] == ["song02", "song03", "song04"]
    assert (page["limit"], page["offset"], page["total"]) == (3, 2, 10)
    assert_problem(client.get("/tracks?limit=0"), 400, "bad-parameter", mentions="limit")
    assert_problem(client.get("/tracks?offset=x"), 400, "bad-parameter", mentions="offset")


def test_one_track(client, ids):
    body = client.get(f"/tracks/{ids['song07']}").get_json()
    assert body["title"] == "song07" and body["labels"] == ["beta"] and body["snippets"] > 0
    assert_problem(client.get("/tracks/nosuchsong"), 404, "not-found", mentions="nosuchsong")


def test_unknown_route_and_wrong_method_are_problems(client):
    assert_problem(client.get("/nope"), 404)
    response = client.get("/identify")
    assert_problem(response, 405)
    assert "POST" in response.headers["Allow"]


# -- queries ----------------------------------------------------------------------------------
@pytest.mark.parametrize("song, start_s", [(2, 4.0), (5, 11.0), (8, 1.0)])
def test_identify_finds_the_right_song_and_offset(client, song, start_s):
    response = client.post("/identify", data=files(clip(song, start_s), "phone.wav"))
    body = response.get_json()
    assert response.status_code == 200 and body["query"] == "phone.wav"
    assert body["match"] is not None, body
    assert body["match"]["title"] == f"song{song:02d}"
    assert abs(body["match"]["offset_s"] - start_s) < 1.0
    assert 0 < body["match"]["score"] <= 1
    assert body["candidates"][0]["song_id"] == body["match"]["song_id"]


BROWSER_AND_FILE_FORMATS = {
    "webm-opus (Chromium MediaRecorder)": ("rec.webm", lambda y: encode(y, "webm", "libopus", 48000)),
    "ogg-opus (Firefox MediaRecorder)": ("rec.ogg", lambda y: encode(y, "ogg", "libopus", 48000)),
    "m4a-aac (Safari)": ("rec.m4a", lambda y: encode(y, "mp4", "aac", 44100)),
    "mp3": ("clip.mp3", lambda y: encode(y, "mp3", "libmp3lame", 44100)),
    "flac": ("clip.flac", lambda y: sf_bytes(y, "FLAC")),
    "ogg-vorbis": ("clip.ogg", lambda y: sf_bytes(y, "OGG", "VORBIS")),
}


@pytest.mark.parametrize("fmt", list(BROWSER_AND_FILE_FORMATS))
def test_identify_reads_browser_recordings_and_common_formats(client, fmt):
    name, make = BROWSER_AND_FILE_FORMATS[fmt]
    data = make(cut(synth_song(6), 7.0, 5.0))
    body = client.post("/identify", data=files(data, name)).get_json()
    assert body["match"] is not None and body["match"]["title"] == "song06", body


def test_similar_to_a_clip(client):
    body = client.post("/similar", data=files(clip(3), n="4")).get_json()
    assert len(body["neighbours"]) == 4 and body["query"] == "clip.wav"
    assert body["neighbours"][0]["title"] == "song03"
    scores = [n["score"] for n in body["neighbours"]]
    assert scores == sorted(scores, reverse=True)


def test_similar_to_a_stored_track(client, ids):
    body = client.post("/similar", data={"track": ids["song02"], "n": "3"}).get_json()
    assert body["query"] == ids["song02"] and len(body["neighbours"]) == 3
    assert ids["song02"] not in [n["song_id"] for n in body["neighbours"]]


def test_similar_refuses_unclear_requests(client, ids):
    assert_problem(client.post("/similar", data=files(clip(1), track=ids["song01"])), 400, "bad-request")
    assert_problem(client.post("/similar", data={}), 400, "missing-file")
    assert_problem(client.post("/similar", data=files(clip(1), n="0")), 400, "bad-parameter", mentions="n")
    assert_problem(client.post("/similar", data=files(clip(1), n="many")), 400, "bad-parameter")
    assert_problem(client.post("/similar", data={"track": "nosuchsong"}), 404, "not-found")


def test_genre_votes_the_labels_of_the_tracks_nearest_in_style(client):
    # 'alpha' and 'beta' alternate over the songs, whatever they sound like: the 10 tracks nearest in
    # style are the whole library, so both labels get votes (tests/test_style.py checks the right label)
    body = client.post("/genre", data=files(clip(4), "even.wav")).get_json()
    assert body["query"] == "even.wav" and body["by"] == "style" and body["model"] == "neighbours"
    assert body["label"] == body["top"][0][0] and {label for label, _ in body["top"]} == {"alpha", "beta"}
    assert 0.5 <= body["top"][0][1] <= 1 and abs(sum(share for _, share in body["top"]) - 1.0) < 1e-6


def test_queries_on_an_empty_library(tmp_path):
    from tuneprint.server.library import Library, LibrarySettings

    with Library.create(tmp_path / "empty", LibrarySettings(model=TEST_MODEL)) as lib:
        client = make_app(lib).test_client()
        body = client.post("/identify", data=files(clip(1))).get_json()
        assert body["match"] is None and body["candidates"] == []
        assert client.post("/similar", data=files(clip(1))).get_json()["neighbours"] == []
        assert client.post("/genre", data=files(clip(1))).get_json()["label"] is None
        assert client.get("/tracks").get_json() == {"total": 0, "limit": 100, "offset": 0, "tracks": []}


# -- bad uploads --------------------------------------------------------------------------
def _truncated_ogg_opus() -> bytes:
    return encode(cut(synth_song(1), 2.0), "ogg", "libopus", 48000)[:1000]


BAD_UPLOADS = {
    # kind: (bytes or None for "no file field", name, status, problem kind, words the detail holds)
    "no file field": (None, "", 400, "missing-file", "`file`"),
    "empty": (lambda: b"", "empty.wav", 422, "empty-upload", "empty"),
    "text, not audio": (lambda: b"just some words, not audio\n" * 40, "notes.txt", 422, "unreadable-audio", "not a readable audio file"),
    "an image": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(4000), "cover.png", 422, "unreadable-audio", "not a readable audio file"),
    "truncated wav (header only)": (lambda: clip(1)[:44], "cut.wav", 422, "unreadable-audio", "no audio samples"),
    "truncated ogg/opus": (_truncated_ogg_opus, "cut.ogg", 422, "unreadable-audio", "not a readable audio file"),
    "truncated wav (a blip left)": (lambda: clip(1)[:2000], "blip.wav", 422, "too-short", "needed"),
    "too short": (lambda: clip(1, seconds=0.5), "short.wav", 422, "too-short", "needed"),
    "silent": (lambda: wav(np.zeros(3 * SR, dtype=np.float32)), "silence.wav", 422, "silent-audio", "silent"),
}


TOO_SHORT_TO_TELL = ("truncated wav (a blip left)", "too short")  # /identify answers these "unknown", too_short


@pytest.mark.parametrize("endpoint", ["/identify", "/similar", "/genre"])
@pytest.mark.parametrize("kind", list(BAD_UPLOADS))
def test_bad_uploads_get_a_4xx_with_a_reason(client, endpoint, kind):
    if endpoint == "/identify" and kind in TOO_SHORT_TO_TELL:
        pytest.skip("a decodable clip too short to tell is an answer of /identify: see the next test")
    make, name, status, problem, words = BAD_UPLOADS[kind]
    data = {} if make is None else files(make(), name)
    body = assert_problem(client.post(endpoint, data=data), status, problem, mentions=words)
    if name:
        assert body["detail"].startswith(name), body["detail"]


@pytest.mark.parametrize("kind", TOO_SHORT_TO_TELL)
def test_identify_answers_a_clip_too_short_to_tell_unknown_with_the_reason(client, kind):
    make, name, *_ = BAD_UPLOADS[kind]
    response = client.post("/identify", data=files(make(), name))
    assert response.status_code == 200
    body = response.get_json()
    assert body["match"] is None and body["reason"] == "too_short"
    assert 0 < body["clip_s"] < 1.0


def test_uploads_over_the_cap_get_413(library):
    client = make_app(library, max_upload_mb=0.25).test_client()
    assert client.post("/identify", data=files(clip(1, seconds=3.0))).status_code == 200  # ≈130 kB
    big = clip(1, start_s=0, seconds=8.0)  # ≈350 kB
    for endpoint in ("/identify", "/similar", "/genre"):
        assert_problem(client.post(endpoint, data=files(big)), 413, mentions="0.25 MB")
    assert_problem(client.post("/tracks", data=files(big)), 403)  # no token: refused before the body is read


# -- tokens -------------------------------------------------------------------------------
def test_writes_are_refused_without_a_configured_token(library, ids):
    client = make_app(library).test_client()
    assert_problem(client.post("/tracks", data=files(clip(1)), headers=bearer("anything")), 403, "writes-disabled")
    assert_problem(client.delete(f"/tracks/{ids['song01']}", headers=bearer("anything")), 403, "writes-disabled")


def test_writes_need_the_right_token(client, ids):
    response = client.delete(f"/tracks/{ids['song01']}")
    assert_problem(response, 401, "unauthorized", mentions="Authorization: Bearer")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = client.post("/tracks", data=files(clip(1)), headers=bearer("wrong"))
    assert_problem(response, 401, "unauthorized")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert_problem(client.delete(f"/tracks/{ids['song01']}", headers={"Authorization": TOKEN}), 401)  # no scheme
    assert client.get("/tracks").get_json()["total"] == 10  # nothing changed


def test_a_read_token_guards_reads_but_not_page_health_or_document(library, ids):
    client = make_app(library, token=TOKEN, read_token=READ_TOKEN).test_client()
    for path in ("/stats", "/tracks", f"/tracks/{ids['song01']}"):
        assert_problem(client.get(path), 401)
        assert client.get(path, headers=bearer(READ_TOKEN)).status_code == 200
        assert client.get(path, headers=bearer(TOKEN)).status_code == 200  # the write token reads too
    for endpoint in ("/identify", "/genre", "/similar"):
        assert_problem(client.post(endpoint, data=files(clip(1))), 401)
    assert client.post("/identify", data=files(clip(2)), headers=bearer(READ_TOKEN)).status_code == 200
    for path in ("/", "/health", "/openapi.json", "/static/app.js"):
        assert client.get(path).status_code == 200
    assert_problem(client.delete(f"/tracks/{ids['song01']}", headers=bearer(READ_TOKEN)), 401)  # reading is not writing


# -- writes -------------------------------------------------------------------------------
def test_add_identify_and_remove_a_track(write_app):
    client = write_app.test_client()
    lib = write_app.extensions["tuneprint"].library
    song = synth_song(42, seconds=15.0)
    response = client.post("/tracks", data={**files(wav(song), "My New Song.wav"), "label": ["gamma", "delta"]},
                           headers=bearer(TOKEN))
    assert response.status_code == 201, response.get_json()
    added = response.get_json()["song"]
    assert added["title"] == "My New Song" and added["labels"] == ["delta", "gamma"]
    assert response.headers["Location"].endswith(f"/tracks/{added['song_id']}")
    stored = lib.root / "uploads"
    assert [p.name for p in stored.glob("*/*")] == ["My New Song.wav"]
    assert client.get(response.headers["Location"]).get_json()["song_id"] == added["song_id"]
    assert client.get("/tracks").get_json()["total"] == 11

    found = client.post("/identify", data=files(wav(cut(song, 6.0)))).get_json()
    assert found["match"] and found["match"]["song_id"] == added["song_id"]

    again = client.post("/tracks", data=files(wav(song), "copy.wav"), headers=bearer(TOKEN))
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert again.get_json()["song"]["song_id"] == added["song_id"]
    assert len(list(stored.glob("*/*"))) == 1  # the duplicate's file is not kept

    removed = client.delete(f"/tracks/{added['song_id']}", headers=bearer(TOKEN))
    assert removed.status_code == 200 and removed.get_json()["status"] == "removed"
    assert list(stored.glob("*/*")) == []  # its uploaded file went with it
    assert_problem(client.get(f"/tracks/{added['song_id']}"), 404)
    assert_problem(client.delete(f"/tracks/{added['song_id']}", headers=bearer(TOKEN)), 404)
    assert client.get("/stats").get_json()["songs"] == 10


def test_removing_a_track_added_from_disk_keeps_its_file(write_app):
    client = write_app.test_client()
    lib = write_app.extensions["tuneprint"].library
    song = next(s for s in lib.tracks() if s.title == "song09")
    assert client.delete(f"/tracks/{song.song_id}", headers=bearer(TOKEN)).status_code == 200
    assert Path(song.path).is_file()
    assert client.get("/tracks").get_json()["total"] == 9


def test_bad_track_uploads_get_a_4xx_and_leave_nothing_behind(write_app):
    client = write_app.test_client()
    lib = write_app.extensions["tuneprint"].library
    for kind in ("no file field", "empty", "text, not audio", "truncated ogg/opus", "too short", "silent"):
        make, name, status, problem, _ = BAD_UPLOADS[kind]
        data = {} if make is None else files(make(), name)
        if kind == "too short":  # a track needs a whole patch (≈3 s); a query needs 1 s
            data = files(clip(1, seconds=2.0), name)
        assert_problem(client.post("/tracks", data=data, headers=bearer(TOKEN)), status, problem)
    assert client.get("/stats").get_json()["songs"] == 10
    assert list((lib.root / "uploads").glob("**/*")) == []


def test_adding_and_removing_tracks_while_queries_run(write_app):
    """Queries in several threads keep answering right while tracks are added and removed."""
    results: list[tuple[int, int, str | None]] = []
    errors: list[BaseException] = []

    def ask(song: int) -> None:
        client = write_app.test_client()
        try:
            for start in (2.0, 9.0):
                response = client.post("/identify", data=files(clip(song, start)))
                body = response.get_json()
                results.append((song, response.status_code, body["match"]["title"] if body.get("match") else None))
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(song,)) for song in (1, 3, 5)]
    for t in threads:
        t.start()
    writer = write_app.test_client()
    new_ids = []
    for seed in (60, 61):
        response = writer.post("/tracks", data=files(wav(synth_song(seed, seconds=8.0)), f"new{seed}.wav"),
                               headers=bearer(TOKEN))
        assert response.status_code == 201
        new_ids.append(response.get_json()["song"]["song_id"])
    assert writer.delete(f"/tracks/{new_ids[0]}", headers=bearer(TOKEN)).status_code == 200
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results) == sorted((song, 200, f"song{song:02d}") for song in (1, 3, 5) for _ in range(2))
    assert writer.get("/stats").get_json()["songs"] == 11


def test_an_unexpected_failure_is_a_500_problem(library, monkeypatch):
    client = make_app(library).test_client()
    monkeypatch.setattr(library, "stats", lambda: 1 / 0)
    body = assert_problem(client.get("/stats"), 500, "internal-error")
    assert "ZeroDivision" not in body["detail"]  # no internals leak


# -- the command -----------------------------------------------------------------------------
def test_serve_is_a_command(tmp_path):
    from tuneprint.server.cli.serve_command import cmd_serve
    from tuneprint.server.cli import build_parser

    args = build_parser().parse_args(["serve", "--library", str(tmp_path), "--port", "0", "--token", "t",
                                      "--max-upload-mb", "5", "--threads", "2"])
    assert args.run is cmd_serve and (args.port, args.token, args.max_upload_mb, args.threads) == (0, "t", 5.0, 2)
