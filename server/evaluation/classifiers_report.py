"""The classifiers' figures as markdown: the docs/BENCHMARKS.md section of the corpus benchmark
(:func:`run_benchmark`), and the part of a library's ``tuneprint evaluate`` report (:func:`render`,
from report.json's numbers); the confusion matrix as a PNG."""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from .classifiers import HOW, ClassifierEvaluation, build_library, derive_tags, evaluate_classifiers

log = logging.getLogger(__name__)
SECTION = ("classifiers", "Classifiers: labels and tags (head, CNN, 10-NN vote)")


def _f(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c if isinstance(c, str) else _f(c) if c is None or isinstance(c, float) else str(c)
                                for c in r) + " |"
              for r in rows]
    return "\n".join(lines)


def _scores_row(x: dict) -> list:
    return [x["name"], x["precision"], x["recall"], x["f1"], x["ap"], x["support"]]


def render(ev: ClassifierEvaluation | dict, *, figure: str | None, setup: str, label_kind: str = "collection") -> str:
    """The section's body: setup, the single-label table (methods × aggregations), per-label figures
    (with micro and macro averages), the tags' figures and the training times.

    Parameters
    ----------
    ev : the evaluation, or its :meth:`~.classifiers.ClassifierEvaluation.to_dict` (report.json's form)
    figure : the confusion matrix PNG's link (None: no figure)
    setup : what was measured on what (the corpus benchmark's or a library's words)
    label_kind : what a label is, for the table's title ("collection" on the corpus)
    """
    ev = ev.to_dict() if isinstance(ev, ClassifierEvaluation) else ev
    results = ev["results"]
    head, knn = results[0], results[1]
    parts = [setup.strip(), ""]
    rows = [[r["method"], how, r["accuracy"][how], r["macro"][how]["precision"], r["macro"][how]["recall"],
             r["macro"][how]["f1"], r["macro"][how]["ap"], r["micro"][how]["ap"]] for r in results for how in HOW]
    parts += [f"**Single label ({label_kind}), {ev['heldout_tracks']} held-out tracks, {len(ev['labels'])} labels, "
              f"trained on {ev['train_tracks']} tracks** — track answers from 3-s segments, three aggregations "
              "(micro P = R = F1 = accuracy for single-label answers):", "",
              _table(["method", "aggregation", "accuracy", "macro P", "macro R", "macro F1", "macro AP", "micro AP"], rows),
              "", "Every segment on its own: " + ", ".join(f"{r['method']} {_f(r['segment_accuracy'])}"
                                                          for r in results) + ".", ""]
    best_knn = max(knn["macro"][h]["f1"] for h in HOW)
    parts += [f"Trained head vs 10-NN vote on seen labels (raw aggregation): macro F1 {_f(head['macro']['raw']['f1'])} vs "
              f"{_f(knn['macro']['raw']['f1'])}, accuracy {_f(head['accuracy']['raw'])} vs {_f(knn['accuracy']['raw'])} — "
              f"the head {'beats' if head['macro']['raw']['f1'] > best_knn else 'does not beat'} the vote "
              f"(the vote's best aggregation: macro F1 {_f(best_knn)}).", ""]
    parts += ["Per label, head on embeddings, raw aggregation:", "",
              _table(["label", "precision", "recall", "F1", "AP", "held-out tracks"],
                     [_scores_row(x) for x in head["per_label"]["raw"]]
                     + [_scores_row(head["micro"]["raw"]), _scores_row(head["macro"]["raw"])]), ""]
    if len(results) > 2:
        parts += ["Per-label F1 of every method, raw aggregation:", "",
                  _table(["label"] + [r["method"] for r in results],
                         [[name] + [r["per_label"]["raw"][j]["f1"] for r in results]
                          for j, name in enumerate(ev["labels"])]), ""]
    if figure:
        parts += [f"Confusion matrix (head, raw): ![confusion]({figure})", ""]
    parts += _render_tags(ev)
    parts += [_render_timing(ev)]
    parts += [""] + [f"- {n}" for n in ev["notes"]]
    return "\n".join(parts).rstrip() + "\n"


def _render_tags(ev: dict) -> list[str]:
    if not ev["tag_scores"]:
        return []
    raw = ev["tag_scores"]["raw"]
    return [f"**Tags (multi-label, sigmoid head, threshold 0.5), raw aggregation**, {len(ev['tags'])} tags:", "",
            _table(["tag", "precision", "recall", "F1", "AP", "held-out tracks"],
                   [_scores_row(x) for x in raw["per_label"]] + [_scores_row(raw["micro"]), _scores_row(raw["macro"])]),
            "", "Tags by aggregation: " + "; ".join(
                f"{how}: micro F1 {_f(ev['tag_scores'][how]['micro']['f1'])}, macro F1 "
                f"{_f(ev['tag_scores'][how]['macro']['f1'])}, macro AP {_f(ev['tag_scores'][how]['macro']['ap'])}"
                for how in HOW) + ".", ""]


def _render_timing(ev: dict) -> str:
    t = ev["timing"]
    said = [f"head on {ev['train_tracks']} training tracks {t['head_train_split']:.0f} s"]
    said += [f"{r['method']} {r['train_s']:.0f} s" for r in ev["results"][2:]]
    if "head_100" in t:
        said.append(f"**head on a {ev['timing_tracks']}-track library {t['head_100']:.0f} s** "
                    f"({'under' if t['head_100'] < 120 else 'over'} 2 minutes)")
    return "**Training time** (wall clock, this machine, shared with other jobs): " + ", ".join(said) + "."


def plot_confusion(confusion: np.ndarray, names: list[str], title: str, path: str | Path) -> str:
    """The confusion matrix as a PNG (rows: true label, columns: answered label); returns its file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion)
    size = max(1.0, len(names) / 5)  # more labels, a bigger figure
    fig, ax = plt.subplots(figsize=(4.8 * size, 4.2 * size))
    ax.imshow(confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=11)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("answered")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path).name


def run_benchmark(corpus: str | Path, library: str | Path, benchmarks: str | Path | None, figure: str | Path, *,
                  cnn_inputs=("mel",), cnn_epochs: int = 10, timing_tracks: int = 100) -> ClassifierEvaluation:
    """Build (or reuse) the corpus library, derive tags, evaluate, draw the confusion matrix and
    write the BENCHMARKS.md section (``benchmarks`` None: no section)."""
    from .markdown import write_section

    started = time.perf_counter()
    lib, split = build_library(corpus, library)
    tags = derive_tags(lib, split)
    ev = evaluate_classifiers(lib, split, cnn_inputs=cnn_inputs, cnn_epochs=cnn_epochs, timing_tracks=timing_tracks)
    head = ev.results[0]
    figure = Path(figure)
    plot_confusion(head.confusion["raw"], ev.labels, f"head on embeddings, raw: {ev.heldout_tracks} held-out tracks",
                   figure)
    n_tags = {t: sum(t in ts for ts in tags.values()) for t in sorted({t for ts in tags.values() for t in ts})}
    ev.notes += [
        f"Whole run {time.perf_counter() - started:.0f} s (library reused where present; embedding the corpus "
        "from scratch adds a few minutes).",
        "Training times include reading the tracks' segments from the library; the first training of a run "
        "also reads the index from disk and starts torch, and the machine is shared, so the same head can take "
        "several times longer in one run than in the next; the 100-track timing runs last (warm).",
        "CNN: " + (f"{cnn_epochs} epochs (a head trains 30), log-mel segments of 3 s; "
                   if cnn_inputs else "not run; ") + ("CQT input not run in this budget (`--cnn-inputs mel cqt`)."
                                                      if "cqt" not in cnn_inputs else "CQT from the audio files."),
    ]
    rel = os.path.relpath(figure, Path(benchmarks).parent) if benchmarks else str(figure)
    setup = (f"Library: the seen collections of `data/corpus` ({', '.join(ev.labels)}), split by song with "
             f"`split_corpus` (train {ev.train_tracks} tracks; val + test {ev.heldout_tracks} held-out tracks — "
             "nothing is tuned on val here, so both are queries); unseen collections are not in it. "
             "Labels: the collection. Tags (derived, reproducible, from the stored log-mel): the collection, "
             "a tempo band from `librosa.feature.tempo` on the log-mel's onset strength (tempo-slow < 100 BPM ≤ "
             "tempo-mid < 140 BPM ≤ tempo-fast) and bright / dark (median spectral centroid against the training "
             "tracks' median); counts over the library: "
             + ", ".join(f"{t} {n}" for t, n in n_tags.items()) + ". "
             "Held-out tracks are read from the library's stored embeddings and log-mel, cut into non-overlapping "
             "3-s segments. The 10-NN vote: each segment's patches vote with their 10 nearest patches of the "
             "training songs only (the `genre` rule, seeing what the head saw). Settings: `ClassifierConfig()` "
             "defaults (depth 1, class weights, raw aggregation), seed 0.")
    if benchmarks:
        write_section(benchmarks, *SECTION, render(ev, figure=rel, setup=setup))
        log.info("wrote the %r section of %s", SECTION[0], benchmarks)
    return ev
