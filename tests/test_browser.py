"""The web page in real browsers, against a live `tuneprint serve` (waitress) on loopback.

Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright with executable_path;
never `playwright install`) uploads, drops and records (a fake microphone that plays a
library song) and must show the right song. Firefox (Debian's firefox-esr, driven over
WebDriver BiDi) does the same where it is installed. Skipped only where the browser is absent.
"""
from __future__ import annotations

import base64
import http.client
import json
import queue
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import SR, cut, synth_song

CHROMIUM = Path("/usr/bin/chromium")
FIREFOX = Path("/usr/lib/firefox-esr/firefox-esr")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ANSWER_TIMEOUT_MS = 120_000  # a busy CI machine may take a while to embed


# -- a live server ------------------------------------------------------------------------
class LiveServer:
    """`tuneprint serve` in a subprocess on a free port; its stderr is drained by a thread."""

    def __init__(self, library: Path, *extra: str):
        exe = Path(sys.executable).with_name("tuneprint")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tuneprint.server.cli"]
        self.proc = subprocess.Popen([*cmd, "serve", "--library", str(library), "--port", "0", "--threads", "4", *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        found: queue.Queue[str] = queue.Queue()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line)
                if m := re.search(r"on (http://\S+/)", line):
                    found.put(m.group(1))
            found.put("")

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        try:
            self.url = found.get(timeout=180)
        except queue.Empty:
            self.url = ""
        if not self.url:
            self.stop()
            raise RuntimeError("tuneprint serve did not start:\n" + "".join(self.log))

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=30) as response:
            return json.load(response)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._drain.join(timeout=10)
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def server(library_path):
    live = LiveServer(library_path, "--max-upload-mb", "1")
    yield live
    live.stop()
    assert live.proc.returncode == 0, "".join(live.log)  # SIGTERM is a clean stop
    assert "Traceback" not in "".join(live.log), "".join(live.log)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("browser-clips")
    made = {"song05": (5, 6.0, 5.0), "song02": (2, 9.0, 5.0), "song07": (7, 3.0, 12.0)}
    out = {}
    for name, (song, start, seconds) in made.items():
        out[name] = folder / f"{name}-clip.wav"
        sf.write(out[name], cut(synth_song(song), start, seconds), SR, subtype="PCM_16")
    out["notes"] = folder / "notes.txt"
    out["notes"].write_text("not audio at all\n" * 50)
    return out


def post_file(url: str, data: bytes, name: str = "clip.wav") -> tuple[int, str, bytes]:
    boundary = "tuneprint-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n".encode()
            + data + f"\r\n--{boundary}--\r\n".encode())
    request = urllib.request.Request(url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read()


def test_the_live_server_is_waitress_and_answers(server, clips):
    with urllib.request.urlopen(server.url + "health", timeout=30) as response:
        assert response.headers["Server"] == "tuneprint"  # waitress' ident, not Werkzeug's dev server
        assert json.load(response)["songs"] == 10
    assert {"/identify", "/tracks/{song_id}"} <= set(server.get_json("openapi.json")["paths"])
    status, ctype, body = post_file(server.url + "identify", clips["song05"].read_bytes())
    assert (status, ctype) == (200, "application/json") and json.loads(body)["query"] == "clip.wav"
    # Over the 1-MB cap: Flask's problem answer; far over it, waitress refuses before reading it all.
    status, ctype, body = post_file(server.url + "identify", bytes(1_500_000))
    assert (status, ctype) == (413, "application/problem+json") and "1 MB" in json.loads(body)["detail"]
    parts = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("POST", "/identify")
    for header, value in (("Content-Type", "multipart/form-data; boundary=x"), ("Content-Length", "8000000")):
        conn.putheader(header, value)
    conn.endheaders()  # no body sent: the answer comes from the headers alone
    assert conn.getresponse().status == 413
    conn.close()


# -- Chromium -------------------------------------------------------------------------------
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed")


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chromium(playwright, clips):
    # The fake microphone plays a 12-s excerpt of song07, looped.
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={clips['song07']}"]
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    yield browser
    browser.close()


def open_page(browser, server):
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server.url)
    page.wait_for_function("document.getElementById('library-info').textContent.includes('10 songs')")
    return page, problems


def wait_until_answered(page) -> None:
    """After a recording started: wait until it stopped and its answer (or error) is in."""
    page.wait_for_function("!document.getElementById('record').classList.contains('recording')"
                           " && document.getElementById('status').textContent === ''", timeout=ANSWER_TIMEOUT_MS)


def answer(page) -> dict:
    page.wait_for_selector("#result:not([hidden]), #error:not([hidden])", timeout=ANSWER_TIMEOUT_MS)
    return {"title": page.text_content("#song-title"), "state": page.get_attribute("#answer", "data-state"),
            "offset": page.text_content("#song-offset"), "confidence": page.text_content("#song-confidence"),
            "similar": page.locator("#similar li").count(), "bars": page.locator("#labels .bar").count(),
            "error": None if page.is_hidden("#error") else page.text_content("#error")}


@needs_chromium
def test_chromium_upload_shows_the_right_song(chromium, server, clips):
    page, problems = open_page(chromium, server)
    page.set_input_files("#file", str(clips["song05"]))
    shown = answer(page)
    assert shown["error"] is None, shown["error"]
    assert shown["state"] == "match" and shown["title"] == "song05"
    assert shown["offset"].startswith("0:0") and shown["confidence"].endswith("%")  # clip cut at 0:06
    assert shown["similar"] >= 1 and shown["bars"] >= 1
    assert "song05" not in page.text_content("#similar")  # the answer itself is not listed as similar
    assert not problems, problems


@needs_chromium
def test_chromium_dropped_file_shows_the_right_song(chromium, server, clips):
    page, problems = open_page(chromium, server)
    data = base64.b64encode(clips["song02"].read_bytes()).decode()
    transfer = page.evaluate_handle(
        """(b64) => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                      const dt = new DataTransfer();
                      dt.items.add(new File([bytes], "dropped.wav", {type: "audio/wav"}));
                      return dt; }""", data)
    page.dispatch_event("#drop", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    shown = answer(page)
    assert shown["error"] is None, shown["error"]
    assert shown["title"] == "song02"
    assert page.text_content("#query-name") == "dropped.wav"
    assert not problems, problems


@needs_chromium
def test_chromium_microphone_recording_shows_the_right_song(chromium, server):
    page, problems = open_page(chromium, server)
    page.context.grant_permissions(["microphone"])
    page.select_option("#record-seconds", "5")
    page.click("#record")
    page.wait_for_selector("#record.recording")
    wait_until_answered(page)
    shown = answer(page)
    assert shown["error"] is None, shown["error"]
    assert page.text_content("#query-name") == "recording.webm"  # MediaRecorder's WebM/Opus
    assert shown["title"] == "song07"
    assert not problems, problems


@needs_chromium
def test_chromium_shows_why_a_file_is_refused(chromium, server, clips):
    page, _ = open_page(chromium, server)
    page.set_input_files("#file", str(clips["notes"]))
    shown = answer(page)
    assert shown["error"] and "Unreadable audio" in shown["error"] and "notes.txt" in shown["error"]
    assert page.is_hidden("#result")


# -- Firefox --------------------------------------------------------------------------------
# Playwright's Firefox needs Playwright's own build, and its BiDi mode sends commands that
# Firefox ESR lacks; so stock Firefox is driven here over WebDriver BiDi directly, with
# just the commands these tests need, and the page is worked by script.
class Firefox:
    """Headless stock Firefox with a fresh profile whose fake microphone plays a tone."""

    PREFS = {"media.navigator.streams.fake": True, "media.navigator.permission.disabled": True,
             "remote.active-protocols": 1, "browser.shell.checkDefaultBrowser": False,
             "datareporting.policy.dataSubmissionEnabled": False, "app.update.disabledForTesting": True}

    def __init__(self, profile: Path):
        from websockets.sync.client import connect

        profile.mkdir(parents=True, exist_ok=True)
        (profile / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
                                                 for k, v in self.PREFS.items()))
        self.proc = subprocess.Popen([str(FIREFOX), "--headless", "--no-remote", "--profile", str(profile),
                                      "--remote-debugging-port=0", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        found: queue.Queue[str] = queue.Queue()

        def drain():
            for line in self.proc.stderr:
                if m := re.search(r"WebDriver BiDi listening on (ws://\S+)", line):
                    found.put(m.group(1))
            found.put("")

        self._drain = threading.Thread(target=drain, daemon=True)
        self._drain.start()
        url = found.get(timeout=120)
        if not url:
            self.proc.kill()
            raise RuntimeError("Firefox did not start its WebDriver BiDi server")
        self._closing = ExitStack()
        self.ws = self._closing.enter_context(connect(url + "/session", max_size=None, open_timeout=60))
        self._id = 0
        self.send("session.new", {"capabilities": {}})
        self.context = self.send("browsingContext.getTree", {})["contexts"][0]["context"]

    def send(self, method: str, params: dict) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=ANSWER_TIMEOUT_MS / 1000 + 30))
            if message.get("id") == self._id:  # (events are not subscribed to)
                if message.get("type") == "error":
                    raise RuntimeError(f"{method}: {message['error']}: {message.get('message')}")
                return message["result"]

    def goto(self, url: str) -> None:
        self.send("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"})

    def js(self, expression: str):
        """Evaluate ``expression`` in the page (awaiting a promise); its value, through JSON."""
        result = self.send("script.evaluate", {
            "expression": f"(async () => JSON.stringify(await ({expression})))()",
            "target": {"context": self.context}, "awaitPromise": True})
        if result["type"] == "exception":
            raise AssertionError(f"in Firefox: {result['exceptionDetails']['text']}")
        return json.loads(result["result"]["value"])

    def close(self) -> None:
        try:
            self.send("browser.close", {})
        except Exception:
            pass
        self._closing.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._drain.join(timeout=10)
        self.proc.stderr.close()


# Resolves, once the page is idle again, with what it shows.
WAIT_FOR_ANSWER = """new Promise((resolve, reject) => {
  const $ = (id) => document.getElementById(id), t0 = Date.now();
  const tick = () => {
    const shown = !$("result").hidden || !$("error").hidden;
    if (shown && $("status").textContent === "" && !$("record").classList.contains("recording")) {
      resolve({title: $("song-title").textContent, state: $("answer").dataset.state, query: $("query-name").textContent,
               error: $("error").hidden ? null : $("error").textContent, similar: $("similar").children.length,
               bars: $("labels").children.length});
    } else if (Date.now() - t0 > %d) reject(new Error("no answer shown"));
    else setTimeout(tick, 100);
  };
  tick();
})""" % ANSWER_TIMEOUT_MS

CHOOSE_FILE = """(() => {
  const bytes = Uint8Array.from(atob(%s), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], %s, {type: "audio/wav"}));
  const input = document.getElementById("file");
  input.files = dt.files;
  input.dispatchEvent(new Event("change", {bubbles: true}));
  return true;
})()"""


@pytest.mark.skipif(not FIREFOX.exists(), reason=f"{FIREFOX} is not installed")
def test_firefox_upload_and_recording(server, clips, tmp_path):
    """Firefox: a chosen file is identified; a recording (the fake microphone's tone) goes
    through Firefox's MediaRecorder and is decoded by the server."""
    firefox = Firefox(tmp_path / "profile")
    try:
        firefox.goto(server.url)
        data = base64.b64encode(clips["song05"].read_bytes()).decode()
        firefox.js(CHOOSE_FILE % (json.dumps(data), json.dumps("firefox.wav")))
        shown = firefox.js(WAIT_FOR_ANSWER)
        assert shown["error"] is None, shown["error"]
        assert (shown["query"], shown["state"], shown["title"]) == ("firefox.wav", "match", "song05")
        assert shown["similar"] >= 1 and shown["bars"] >= 1

        firefox.goto(server.url)
        firefox.js("""(() => { document.getElementById("record-seconds").value = "5";
                              document.getElementById("record").click(); return true; })()""")
        firefox.js("""new Promise((resolve) => { const t = setInterval(() => {
                        if (document.getElementById("record").classList.contains("recording")) {
                          clearInterval(t); resolve(true); }
                      }, 50); })""")
        shown = firefox.js(WAIT_FOR_ANSWER)
        # A tone is no song, and may be too plain to embed; it must be decoded all the same.
        assert shown["error"] is None or "Silent audio" in shown["error"], shown["error"]
        if shown["error"] is None:
            assert re.fullmatch(r"recording\.(webm|ogg)", shown["query"]), shown
    finally:
        firefox.close()
