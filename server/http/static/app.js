// tuneprint's web page: record from the microphone (MediaRecorder) or drop a file, then ask
// the service which song it is (/identify), what is near it (/similar), how its
// neighbours are labelled (/genre) and, where the library has trained a classifier, its
// labels and tags (/classify). Plain browser APIs only (Chromium, Firefox, Safari).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SIMILAR_SHOWN = 5;
  const RECORD_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/ogg", "audio/mp4"];

  let token = sessionStorage.getItem("tuneprint-token") || "";
  let busy = false;
  let lastQuery = null; // {blob, name}: asked again once a token is given
  let recorder = null;

  // -- talking to the service ----------------------------------------------------------
  class ProblemError extends Error {
    constructor(problem, status) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.problem = problem;
      this.status = status;
    }
  }

  async function call(path, form) {
    const init = { method: form ? "POST" : "GET", headers: token ? { Authorization: `Bearer ${token}` } : {} };
    if (form) init.body = form;
    const response = await fetch(path, init);
    const type = response.headers.get("Content-Type") || "";
    const body = type.includes("json") ? await response.json() : { detail: (await response.text()).slice(0, 300) };
    if (!response.ok) throw new ProblemError(body, response.status);
    return body;
  }

  function clipForm(blob, name, extra = {}) {
    const form = new FormData();
    form.append("file", blob, name);
    for (const [key, value] of Object.entries(extra)) form.append(key, value);
    return form;
  }

  async function analyse(blob, name) {
    if (busy) return;
    busy = true;
    lastQuery = { blob, name };
    setInputsEnabled(false);
    hideError();
    setStatus(`Looking up “${name}”…`, true);
    try {
      const [identification, similar, labels, classification] = await Promise.all([
        call("identify", clipForm(blob, name)),
        call("similar", clipForm(blob, name, { n: SIMILAR_SHOWN + 1 })),
        call("genre", clipForm(blob, name)),
        call("classify", clipForm(blob, name)).catch(withoutClassifier),
      ]);
      showAnswer(identification, similar, labels, classification);
      setStatus("");
    } catch (error) {
      setStatus("");
      $("result").hidden = true; // an answer shown now would be the previous clip's
      showError(error);
    } finally {
      busy = false;
      setInputsEnabled(true);
    }
  }

  // A library without a trained classifier answers /classify with 409: the page then shows no classifier card.
  function withoutClassifier(error) {
    if (error instanceof ProblemError && error.status === 409) return null;
    throw error;
  }

  // -- showing answers -----------------------------------------------------------------
  function showAnswer(identification, similar, labels, classification) {
    const match = identification.match;
    const answer = $("answer");
    $("query-name").textContent = identification.query;
    $("song-labels").replaceChildren();
    $("closest").textContent = "";
    if (match) {
      answer.dataset.state = "match";
      $("song-title").textContent = match.title || match.song_id;
      $("song-artist").textContent = match.artist || "";
      $("song-offset").textContent = clock(match.offset_s);
      $("song-confidence").textContent = percent(confidence(match));
      $("song-confidence").title = match.by === "landmarks"
        ? `found by its landmarks: ${match.landmarks.aligned} of the clip's ${match.landmarks.pairs} peak pairs at this offset`
        : `similarity ${match.similarity.toFixed(2)}, vote score ${match.score.toFixed(2)}`;
      $("song-meter").style.width = percent(confidence(match));
      $("song-facts").hidden = false;
      for (const label of match.labels) $("song-labels").append(chip(label));
    } else {
      const notMusic = identification.reason === "not_music";
      answer.dataset.state = "unknown";
      $("song-title").textContent = notMusic ? "Not music" : "Not in the library";
      $("song-artist").textContent = "";
      $("song-facts").hidden = true;
      const closest = identification.candidates[0];
      const lines = [whyUnknown(identification.reason)];
      if (closest && !notMusic) {
        lines.push(`Closest: ${closest.title || closest.song_id} (confidence ${percent(confidence(closest))}, too low to call it).`);
      }
      $("closest").textContent = lines.filter(Boolean).join(" ");
    }

    const list = $("similar");
    const neighbours = similar.neighbours.filter((n) => !match || n.song_id !== match.song_id).slice(0, SIMILAR_SHOWN);
    list.replaceChildren(...neighbours.map((n) => similarItem(n, similar.by)));
    $("similar-empty").textContent = similar.reason === "not_music" ? "Not music: no similar tracks are looked for."
      : "No similar tracks.";
    $("similar-empty").hidden = neighbours.length > 0;

    const bars = $("labels");
    bars.replaceChildren(...labels.top.map(([label, share]) => bar(label, share)));
    const notMusic = labels.reason === "not_music";
    const unclear = labels.reason === "no_clear_label" || notMusic;
    $("labels-empty").textContent = notMusic ? "Not music: the clip gets no label."
      : unclear ? "No clear label: the neighbours agree on none clearly enough."
      : "The neighbours carry no labels.";
    $("labels-empty").hidden = labels.top.length > 0 && !unclear;

    showClassification(classification);
    $("result").hidden = false;
  }

  // The trained classifier's top labels (bars) and the tags that apply (chips), or why none.
  function showClassification(answer) {
    $("classified").hidden = !answer;
    if (!answer) return;
    const verdict = answer.reason === "not_music" ? "Not music."
      : answer.label === null ? "Unknown: unlike every label the classifier learnt." : "";
    $("classified-label").textContent = verdict;
    $("classified-label").hidden = !verdict;
    $("classified-bars").replaceChildren(...answer.labels.slice(0, 3).map(([label, p]) => bar(label, p)));
    const applied = answer.tags.filter(([, p]) => p >= answer.tag_threshold);
    $("classified-tags").replaceChildren(...applied.map(([tag, p]) => chip(`${tag} ${percent(p)}`)));
    $("classified-tags-empty").hidden = applied.length > 0 || answer.reason === "not_music";
    $("classified-tags-empty").textContent = answer.tags.length ? "No tag applies." : "The classifier learnt no tags.";
  }

  function similarItem(neighbour, by) {
    const item = document.createElement("li");
    const row = document.createElement("div");
    row.className = "row";
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = neighbour.title || neighbour.song_id;
    title.title = neighbour.path;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = neighbour.score.toFixed(2);
    score.title = by === "style" ? "style similarity (cosine of the style vectors, 1 = same style)" : "mean best cosine similarity";
    row.append(title, score);
    item.append(row);
    if (neighbour.labels.length) {
      const tags = document.createElement("div");
      tags.className = "tags";
      tags.textContent = neighbour.labels.join(" · ");
      item.append(tags);
    }
    return item;
  }

  function bar(label, share) {
    const row = document.createElement("div");
    row.className = "bar";
    row.setAttribute("role", "listitem");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = label;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = percent(share);
    track.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = percent(share);
    row.append(name, track, pct);
    return row;
  }

  function chip(text) {
    const span = document.createElement("span");
    span.className = "chip";
    span.textContent = text;
    return span;
  }

  const percent = (x) => `${Math.round(Math.max(0, Math.min(1, x)) * 100)}%`;

  // The one confidence people read (0.5 is the library's "unknown" bar); a server that
  // predates it gives only the raw vote score, shown as before.
  const confidence = (vote) => vote.confidence ?? vote.score;

  const UNKNOWN_REASONS = {
    no_match: "No song in the library is close enough to this clip.",
    ambiguous: "More than one song fits this clip about equally well.",
    too_short: "The clip is too short to tell.",
    not_music: "The music gate hears no music in this clip, so no song is named.",
  };

  function whyUnknown(reason) {
    if (!reason) return "";
    return UNKNOWN_REASONS[reason] || `Reason: ${reason.replaceAll("_", " ")}.`;
  }

  function clock(seconds) {
    const s = Math.max(0, seconds);
    const m = Math.floor(s / 60);
    return `${m}:${(s - 60 * m).toFixed(1).padStart(4, "0")}`;
  }

  function setStatus(text, spinning = false) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("busy", spinning && !!text);
  }

  function showError(error) {
    const box = $("error");
    box.replaceChildren();
    const title = document.createElement("strong");
    title.textContent = error.problem?.title || "Something went wrong";
    const detail = document.createElement("span");
    detail.textContent = error.message;
    box.append(title, detail);
    box.hidden = false;
    if (error.status === 401) $("token-box").hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
  }

  function setInputsEnabled(enabled) {
    $("record").disabled = !enabled && !recorder;
    $("file").disabled = !enabled;
    $("drop").classList.toggle("disabled", !enabled);
  }

  // -- the microphone ------------------------------------------------------------------
  async function toggleRecording() {
    if (recorder) {
      recorder.stop(); // stop early: send what was heard so far
      return;
    }
    if (!navigator.mediaDevices?.getUserMedia || !window.MediaRecorder) {
      showError(new Error("This browser cannot record here: the microphone needs a secure page (https or localhost) and MediaRecorder."));
      return;
    }
    hideError();
    let stream;
    try {
      // Music, not speech: the voice-call filters would remove much of what identifies it.
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (error) {
      showError(new Error(`No microphone: ${error.message}`));
      return;
    }
    const wanted = RECORD_TYPES.find((t) => MediaRecorder.isTypeSupported(t));
    const rec = new MediaRecorder(stream, wanted ? { mimeType: wanted } : {});
    const chunks = [];
    const seconds = Number($("record-seconds").value);
    const started = performance.now();
    const ticker = setInterval(() => {
      const done = Math.min(1, (performance.now() - started) / (seconds * 1000));
      $("record-progress").style.width = `${done * 100}%`;
      $("record-label").textContent = `Listening… ${Math.max(0, seconds - (performance.now() - started) / 1000).toFixed(0)} s`;
    }, 100);
    const stopper = setTimeout(() => rec.state === "recording" && rec.stop(), seconds * 1000);
    rec.ondataavailable = (event) => event.data.size && chunks.push(event.data);
    rec.onstop = () => {
      clearInterval(ticker);
      clearTimeout(stopper);
      stream.getTracks().forEach((t) => t.stop());
      recorder = null;
      $("record").classList.remove("recording");
      $("record-label").textContent = "Record";
      $("record-progress").style.width = "0";
      const type = rec.mimeType || wanted || "audio/webm";
      analyse(new Blob(chunks, { type }), `recording.${extension(type)}`);
    };
    recorder = rec;
    rec.start();
    $("record").classList.add("recording");
    $("record-label").textContent = `Listening… ${seconds} s`;
    setStatus("Listening — click again to stop early.");
  }

  function extension(type) {
    if (type.includes("ogg")) return "ogg";
    if (type.includes("mp4")) return "m4a";
    return "webm";
  }

  // -- files ---------------------------------------------------------------------------
  function wireDrop() {
    const drop = $("drop");
    // A file dropped beside the zone must not make the browser leave the page.
    for (const type of ["dragover", "drop"]) document.addEventListener(type, (e) => e.preventDefault());
    for (const type of ["dragenter", "dragover"]) {
      drop.addEventListener(type, (e) => {
        e.preventDefault();
        drop.classList.add("over");
      });
    }
    for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      const file = e.dataTransfer?.files?.[0];
      if (file) analyse(file, file.name);
    });
    $("file").addEventListener("change", (e) => {
      const file = e.target.files[0];
      if (file) analyse(file, file.name);
      e.target.value = ""; // the same file can be chosen again
    });
  }

  // -- token and library line ----------------------------------------------------------
  function wireToken() {
    $("token").value = token;
    $("token-save").addEventListener("click", () => {
      token = $("token").value.trim();
      sessionStorage.setItem("tuneprint-token", token);
      $("token-box").hidden = true;
      showLibrary();
      if (lastQuery) analyse(lastQuery.blob, lastQuery.name);
    });
  }

  async function showLibrary() {
    try {
      const stats = await call("stats");
      const labels = Object.keys(stats.labels);
      const size = stats.hours >= 1 ? `${stats.hours.toFixed(1)} h` : `${Math.round(stats.hours * 60)} min`;
      $("library-info").textContent = `${stats.songs} songs · ${size}` +
        (labels.length ? ` · labels: ${labels.slice(0, 6).join(", ")}${labels.length > 6 ? ", …" : ""}` : "");
    } catch (error) {
      if (error.status === 401) $("token-box").hidden = false;
    }
  }

  $("record").addEventListener("click", toggleRecording);
  wireDrop();
  wireToken();
  showLibrary();
})();
