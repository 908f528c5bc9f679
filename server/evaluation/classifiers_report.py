"""The classifiers' benchmark as a docs/BENCHMARKS.md section (markdown tables)."""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from .classifiers import HOW, ClassifierEvaluation, build_library, derive_tags, evaluate_classifiers, plot_confusion

log = logging.getLogger(__name__)
SECTION = ("classifiers", "Classifiers: labels and tags (head, CNN, 10-NN vote)")


def _f(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c if isinstance(c, str) else _f(c) if isinstance(c, float) else str(c) for c in r) + " |"
              for r in rows]
    return "\n".join(lines)


def render(ev: ClassifierEvaluation, *, figure: str, setup: str) -> str:
    """The section's body: setup, the single-label table (methods × aggregations), per-label figures,
    the tags' figures and the training times."""
    head, knn = ev.results[0], ev.results[1]
    parts = [setup.strip(), ""]
    rows = []
    for r in ev.results:
        for how in HOW:
            rows.append([r.method, how, r.accuracy[how], r.macro[how].precision, r.macro[how].recall,
                         r.macro[how].f1, r.macro[how].ap, r.micro[how].ap])
    parts += [f"**Single label (collection), {ev.heldout_tracks} held-out tracks, {len(ev.labels)} labels, "
              f"trained on {ev.train_tracks} tracks** — track answers from 3-s segments, three aggregations "
              "(micro P = R = F1 = accuracy for single-label answers):", "",
              _table(["method", "aggregation", "accuracy", "macro P", "macro R", "macro F1", "macro AP", "micro AP"], rows),
              "", "Every segment on its own: " + ", ".join(f"{r.method} {r.segment_accuracy:.3f}" for r in ev.results) + ".", ""]
    best_knn = max(knn.macro[h].f1 for h in HOW)
    parts += [f"Trained head vs 10-NN vote on seen labels (raw aggregation): macro F1 {head.macro['raw'].f1:.3f} vs "
              f"{knn.macro['raw'].f1:.3f}, accuracy {head.accuracy['raw']:.3f} vs {knn.accuracy['raw']:.3f} — "
              f"the head {'beats' if head.macro['raw'].f1 > best_knn else 'does not beat'} the vote "
              f"(the vote's best aggregation: macro F1 {best_knn:.3f}).", ""]
    parts += ["Per label, head on embeddings, raw aggregation:", "",
              _table(["label", "precision", "recall", "F1", "AP", "held-out tracks"], [x.row() for x in head.per_label["raw"]]),
              "", f"Confusion matrix (head, raw): ![confusion]({figure})", ""]
    if ev.tag_scores:
        per, micro, macro = ev.tag_scores["raw"]
        parts += [f"**Tags (multi-label, sigmoid head, threshold 0.5), raw aggregation**, {len(ev.tags)} tags:", "",
                  _table(["tag", "precision", "recall", "F1", "AP", "held-out tracks"],
                         [x.row() for x in per] + [micro.row(), macro.row()]), "",
                  "Tags by aggregation: " + "; ".join(
                      f"{how}: micro F1 {ev.tag_scores[how][1].f1:.3f}, macro F1 {ev.tag_scores[how][2].f1:.3f}, "
                      f"macro AP {ev.tag_scores[how][2].ap:.3f}" for how in HOW) + ".", ""]
    t = ev.timing
    parts += ["**Training time** (wall clock, this machine, shared with other jobs): " + ", ".join(
        [f"head on {ev.train_tracks} training tracks {t['head_train_split']:.0f} s"]
        + [f"{r.method} {r.train_s:.0f} s" for r in ev.results[2:]]
        + [f"**head on a {ev.timing_tracks}-track library {t['head_100']:.0f} s** "
           f"({'under' if t['head_100'] < 120 else 'over'} 2 minutes)"]) + "."]
    parts += [""] + [f"- {n}" for n in ev.notes]
    return "\n".join(parts).rstrip() + "\n"


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
