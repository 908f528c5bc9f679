"""``report.md`` and ``report.json`` of an evaluation, its figures (:mod:`.figures`), the headline
numbers and the per-track table, from the numbers :func:`server.evaluation.run.evaluate` gathers;
and the section of docs/BENCHMARKS.md that quotes an evaluation's headline."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .figures import plot_confusions, plot_identification
from .labels import LabelGroups, TrackAnswer, aggregate

log = logging.getLogger(__name__)


def write_report(report: dict, out_dir: Path) -> None:
    """Figures from the numbers, then report.json and report.md in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = report["sections"]
    figures = report["figures"]
    if "identification" in sections:
        figures["identification"] = plot_identification(sections["identification"], out_dir / "identification.png")
    if "labels" in sections:
        figures["confusion"] = plot_confusions({g: sections["labels"].get(g) for g in ("all", "seen", "unseen")},
                                               out_dir / "confusion_neighbours.png",
                                               "labels by neighbours (k-NN vote per sub-track)")
    if "baseline" in sections:
        figures["confusion_baseline"] = plot_confusions({"all": sections["baseline"].get("all")},
                                                        out_dir / "confusion_baseline.png", "MFCC baseline (k-NN)")
    if sections.get("classifier", {}).get("all"):
        figures["confusion_classifier"] = plot_confusions({"all": sections["classifier"]["all"]},
                                                          out_dir / "confusion_classifier.png", "classifier head")
    trained = sections.get("classifiers") or {}
    if trained.get("results"):
        from .classifiers_report import plot_confusion

        figures["confusion_classifiers"] = plot_confusion(
            trained["results"][0]["confusion"]["raw"], trained["labels"],
            f"head on embeddings, raw: {trained['heldout_tracks']} held-out tracks", out_dir / "confusion_classifiers.png")
    report["figures"] = {k: v for k, v in figures.items() if v}
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    (out_dir / "report.md").write_text(render_markdown(report))


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _figure(report: dict, key: str, alt: str) -> str:
    name = report["figures"].get(key)
    return f"\n![{alt}]({name})\n" if name else ""


def render_markdown(report: dict) -> str:
    """``report.md``: what was measured on what, the headline, then one part per section."""
    sections = report["sections"]
    md = _md_setting(report) + ["## Headline\n", _table(["measure", "value"],
                                                        [[k, _pct(v)] for k, v in report["headline"].items()])]
    if sections.get("identification"):
        md += _md_identification(report, sections["identification"])
    if sections.get("labels"):
        md += _md_labels(report, sections["labels"])
    if sections.get("style_labels"):
        md += _md_style_labels(sections["style_labels"])
    if any(key in sections for key in ("labels", "baseline", "classifier")):
        md += _md_aggregation(report, sections)
    if sections.get("map"):
        md += _md_map(report, sections["map"])
    if sections.get("timing"):
        md += _md_timing(sections["timing"])
    if sections.get("baseline"):
        md += _md_baseline(report, sections["baseline"], bool(sections.get("map")))
    if sections.get("classifiers"):
        md += _md_classifiers(report, sections["classifiers"])
    md.append("Numbers: `report.json` (per-track answers under `tracks`).\n")
    return "\n".join(md)


def _md_setting(report: dict) -> list[str]:
    lib, model, split = report["library"], report["model"], report["split"]
    prov = model["provenance"]
    md = ["# tuneprint evaluation\n",
          f"Library `{lib['path']}`: {lib['songs']} songs, {lib['snippets']} stored snippets "
          f"(one every {lib['index_hop_s']} s), labels {', '.join(lib['labels']) or 'none'}; "
          f"index backend {lib['backend']}, vote k = {lib['vote']['k']}, min share {lib['vote']['min_share']}. "
          f"Encoder `{model['model_id']}` ({model['spec']}). Evaluated in {report['seconds']} s "
          f"on {report['machine']['cpus']} CPUs; seed {report['config']['seed']}.\n",
          "## What is measured on what\n",
          f"- Encoder training: {prov['source']}"
          + (f"; {prov['train_tracks']} training tracks" if prov.get("train_tracks") else "")
          + (f"; labels seen in training: {', '.join(prov['seen_labels']) or 'none'}" if prov.get("seen_labels") is not None else "")
          + ".",
          f"- Splits by song, never by snippet. Identification: the index holds {split['index_songs']} in-library songs; "
          f"clips of {split['identification_query_songs']} of them are identified; held-out songs ({split['held_out_songs']}) "
          "are never in that index and their clips should come back \"unknown\".",
          f"- Labels: {split['label_query_songs']} labelled songs, each labelled leave-one-song-out (its own snippets never vote).",
          *[f"- {note}." for note in split["notes"]]]
    if split.get("unreadable_songs"):
        md.append(f"- {len(split['unreadable_songs'])} songs could not be decoded and were skipped.")
    md.append("")
    return md


def _md_identification(report: dict, ident: dict) -> list[str]:
    c = ident["conditions"]
    md = ["## 1. Song identification\n",
          f"{c['clips_per_song']} random offsets per song and clip length; every condition degrades the same excerpt. "
          f"noise: {_noise(report)} "
          f"at {c['snr_db'][0]:g}–{c['snr_db'][1]:g} dB SNR; phone: noise at {c['phone_snr_db'][0]:g}–"
          f"{c['phone_snr_db'][1]:g} dB, 300–3400 Hz at 8 kHz through low-bitrate MP3 or GSM; reverb: synthetic "
          f"room, RT60 {c['rt60_s'][0]:g}–{c['rt60_s'][1]:g} s; speed: ±{100 * c['speed_change'][0]:g}–"
          f"{100 * c['speed_change'][1]:g} % (tempo and pitch). **top-1**: the library's answer (after its "
          "'unknown' threshold) is the clip's song; **top-2**: the song is one of the two best candidates; "
          "**unknown**: in-library clips answered 'not in the library'. The baseline answers the same clips "
          "with MFCC statistics and the same vote.\n"]
    for method, table in ident["in_library"].items():
        conditions = list(dict.fromkeys(cond for cells in table.values() for cond in cells))
        rows = [[d] + [f"{_pct(cells[cn]['top1'])} / {_pct(cells[cn]['top2'])}" if cn in cells else "–"
                       for cn in conditions] + [str(next(iter(cells.values()))["n"])]
                for d, cells in table.items()]
        md += [f"**{method}** — top-1 / top-2 of in-library clips\n", _table(["clip"] + conditions + ["clips each"], rows)]
        rows = [[d] + [f"{_pct(cells[cn]['unknown'])} · {_fmt_s(cells[cn]['offset_median_s'])} · "
                       f"{_pct(cells[cn]['offset_within_tol'])}" if cn in cells else "–" for cn in conditions]
                for d, cells in table.items()]
        md += [f"**{method}** — wrongly 'unknown' · median offset error of hits · hits within "
               f"{ident['offset_tolerance_s']:g} s\n", _table(["clip"] + conditions, rows)]
    for method, table in ident["held_out"].items():
        conditions = list(dict.fromkeys(cond for cells in table.values() for cond in cells))
        rows = [[d] + [_pct(cells[cn]["unknown"]) if cn in cells else "–" for cn in conditions]
                + [str(next(iter(cells.values()))["n"])] for d, cells in table.items()]
        md += [f"**{method}** — clips of held-out songs answered 'unknown' (higher is better)\n",
               _table(["clip"] + conditions + ["clips each"], rows)]
    if ident.get("unanswerable_clips"):
        md.append(f"Clips with no usable patch (counted as 'unknown'): {ident['unanswerable_clips']}.\n")
    md.append(_figure(report, "identification", "top-1 against clip length"))
    return md


def _md_labels(report: dict, labels: dict) -> list[str]:
    md = ["## 2. Labels by neighbours\n",
          f"Each query track is cut into sub-tracks {labels['subtrack_s']} s apart; each sub-track is labelled by "
          f"the {labels['k']} nearest stored snippets of *other* songs (exact search). Sub-track numbers count each "
          "sub-track (the design report's unit); track numbers sum the sub-tracks' votes (maximum probability; "
          "`tuneprint genre` answers by style instead where the encoder has a style head, below). Seen / unseen: the track's label was / was not among the "
          "encoder's training labels.\n"]
    rows = [[g, s["tracks"], s["subtracks"], _pct(s["raw"]), _pct(s["subtrack_top2"]), _pct(s["max_probability"]),
             _pct(s["track_top2"])] for g in ("all", "seen", "unseen") if (s := labels.get(g)) and s.get("tracks")]
    md.append(_table(["labels", "tracks", "sub-tracks", "sub-track accuracy", "sub-track top-2", "track accuracy",
                      "track top-2"], rows))
    per_label = labels.get("all", {}).get("per_label", {})
    if per_label:
        md += ["Per label (sub-tracks, all query tracks):\n",
               _table(["label", "precision", "recall", "sub-tracks"],
                      [[k, _pct(v["precision"]), _pct(v["recall"]), v["subtracks"]] for k, v in per_label.items()])]
    md.append(_figure(report, "confusion", "confusion matrix of labels by neighbours"))
    return md


def _md_style_labels(style: dict) -> list[str]:
    md = ["### Labels by style (what `tuneprint genre` answers)\n"]
    if "skipped" in style:
        return md + [f"Not measured: {style['skipped']}\n"]
    md.append(f"Each query track is labelled by the {style['k']} tracks nearest to it in style (one style vector per "
              "track, the mean over its patches; its own track never votes).\n")
    rows = [[g, s["tracks"], _pct(s["max_probability"]), _pct(s["track_top2"])]
            for g in ("all", "seen", "unseen") if (s := style.get(g)) and s.get("tracks")]
    return md + [_table(["labels", "tracks", "track accuracy", "track top-2"], rows)]


def _md_aggregation(report: dict, sections: dict) -> list[str]:
    md = ["## 3. Aggregation: raw, maximum probability, majority vote\n",
          "**raw**: each sub-track's own top answer, scored per sub-track; **max probability**: the sub-tracks' "
          "probabilities (k-NN vote shares or softmax) summed, top label; **majority**: each sub-track's top label "
          "counted, the most frequent wins. Track-level accuracy.\n"]
    rows = []
    for name, key in (("neighbours (embedding k-NN)", "labels"), ("MFCC baseline (k-NN)", "baseline"),
                      ("classifier head", "classifier")):
        section = sections.get(key) or {}
        for g in ("all", "seen", "unseen"):
            s = section.get(g)
            if isinstance(s, dict) and s.get("tracks"):
                rows.append([name, g, s["tracks"], _pct(s["raw"]), _pct(s["max_probability"]), _pct(s["majority"])])
    md.append(_table(["method", "labels", "tracks", "raw", "max probability", "majority"], rows) if rows else
              "No labelled query tracks.\n")
    clf = sections.get("classifier")
    if clf is not None:
        md.append("Classifier head: " + ". ".join(x for x in (clf.get("source"), clf.get("note")) if x) + ".\n")
        md.append(_figure(report, "confusion_classifier", "confusion matrix of the classifier head"))
    return md


def _md_map(report: dict, emap: dict) -> list[str]:
    md = ["## 4. The embedding map\n",
          f"{emap['points']} sub-tracks of the label query tracks; ▲ marks labels the encoder never saw in training. "
          "Silhouette (cosine, −1…1, higher = labels form tighter clusters) in the full space:\n"]
    sil = emap.get("silhouette", {})
    if sil:
        groups = list(next(iter(sil.values())))
        md.append(_table(["vectors"] + groups, [[k] + [_fmt(v.get(g)) for g in groups] for k, v in sil.items()]))
    md += [_figure(report, "tsne", "t-SNE of sub-track embeddings"), _figure(report, "pca", "PCA of sub-track embeddings")]
    if emap.get("note"):
        md.append(emap["note"] + "\n")
    return md


def _md_timing(timing: dict) -> list[str]:
    md = ["## 5. Search timing\n"]
    if "rows" in timing:
        ks = timing["config"]["ks"]
        md.append(f"{timing['vectors']} of the library's {timing['dim']}-d snippet vectors indexed; {timing['queries']} "
                  f"other snippets as single queries (median time each), on {timing['threads']} thread(s) of a machine "
                  "that may be busy. Recall@k: share of the exact k nearest found (a vector exactly as similar as the exact "
                  "k-th counts too: overlapping snippets tie).\n")
        md.append(_table(["backend", "build s"] + [f"{k}-NN ms" for k in ks] + [f"recall@{k}" for k in ks] + ["MB", "note"],
                         [[r["backend"], f"{r['build_s']:.3f}"] + [f"{r[f'query_{k}nn_ms']:.3f}" for k in ks]
                          + [f"{r[f'recall@{k}']:.3f}" for k in ks]
                          + ["–" if r["bytes"] is None else f"{r['bytes'] / 1e6:.1f}", r["note"]] for r in timing["rows"]]))
    else:
        md.append(timing.get("skipped", "") + "\n")
    return md


def _md_baseline(report: dict, base: dict, has_map: bool) -> list[str]:
    return ["## 6. Baseline\n", base["method"] + ". Its identification rows are in section 1, its label "
            "aggregation in section 3" + (", its silhouette in section 4" if has_map else "") + ".\n",
            _figure(report, "confusion_baseline", "confusion matrix of the MFCC baseline")]


def _md_classifiers(report: dict, trained: dict) -> list[str]:
    md = ["## 7. Classifiers trained on the library's labels\n"]
    if trained.get("skipped"):
        return md + [f"Not measured: {trained['skipped']}.\n"]
    from .classifiers_report import render

    inputs = " and ".join({"mel": "log-mel", "cqt": "CQT"}[i] for i in trained["cnn_inputs"])
    cnn = f"; the CNN {trained['cnn_epochs']} epochs on {inputs}" if inputs else "; no CNN"
    setup = (f"The library's labelled tracks, split by song (deterministic from file names and seed {trained['seed']}): "
             f"of each label's tracks a share of {trained['holdout']:g} (at least one, when the label has two or more) "
             f"is held out, {trained['heldout_tracks']} tracks in all; the classifiers learn from the other "
             f"{trained['train_tracks']} (`ClassifierConfig()` defaults: the head of depth 1, class weights, 30 epochs"
             f"{cnn}). Held-out tracks are read from the library's stored embeddings and log-mel (the CQT from their "
             "files), cut into non-overlapping 3-s segments. The 10-NN vote: each segment's patches vote with their 10 "
             "nearest patches of the training tracks only. Labels and tags: the library's own.")
    notes = "".join(f" {n[0].upper()}{n[1:]}." for n in trained.get("split_notes", []))
    return md + [render(trained, figure=report["figures"].get("confusion_classifiers"), setup=setup + notes,
                        label_kind="the library's labels")]


def _noise(report: dict) -> str:
    noise = report.get("noise") or {}
    return f"{noise['recorded_files']} recorded noises" if noise.get("recorded_files") else "white/pink/brown noise"


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _fmt_s(x) -> str:
    return "–" if x is None else f"{x:.2f} s"


# -- the numbers to quote ----------------------------------------------------------------------------
def headline(report: dict) -> dict:
    """The few numbers to quote: 3-s identification, unknown rate, label accuracy, baseline beside."""
    out: dict = {}
    ident = report["sections"].get("identification")
    if ident:
        for method, table in ident["in_library"].items():
            cells = table.get("3s") or next(iter(table.values()), {})
            for condition, cell in cells.items():
                out[f"{method} id top-1 3s {condition}"] = cell["top1"]
        for method, table in ident["held_out"].items():
            cells = table.get("3s") or next(iter(table.values()), {})
            n = sum(c["n"] for c in cells.values())
            if n:
                out[f"{method} unknown rate 3s held-out"] = round(sum(c["unknown"] * c["n"] for c in cells.values()) / n, 4)
    for method in ("labels", "baseline", "classifier"):
        section = report["sections"].get(method) or {}
        for group in ("all", "seen", "unseen"):
            scores = section.get(group)
            if isinstance(scores, dict) and scores.get("tracks"):
                out[f"{method} track accuracy {group}"] = scores["max_probability"]
                out[f"{method} sub-track accuracy {group}"] = scores["raw"]
    for result in (report["sections"].get("classifiers") or {}).get("results", []):
        out[f"trained {result['method']} track accuracy held-out"] = result["accuracy"]["raw"]
    return out


def track_table(songs, groups: LabelGroups, answers: dict[str, tuple[list[TrackAnswer], list[str]]]) -> list[dict]:
    """Per query track: truth and each method's answers (maximum probability, majority, raw accuracy).

    Parameters
    ----------
    answers : method → (its track answers, the label names its probabilities are over)
    """
    rows: dict[int, dict] = {}
    for method, (method_answers, names) in answers.items():
        for answer in method_answers:
            song = songs[answer.song]
            row = rows.setdefault(answer.song, {"song_id": song.song_id, "title": song.title, "labels": list(song.labels),
                                                "group": groups.group_of(answer.song)})
            row[method] = _track_answer(answer, names)
    return [rows[i] for i in sorted(rows, key=lambda i: songs[i].path)]


def _track_answer(answer: TrackAnswer, names: list[str]) -> dict:
    agg = aggregate(answer.probs)
    pick = lambda j: names[j] if j >= 0 else None  # noqa: E731
    return {"max_probability": pick(agg["max_probability"]), "majority": pick(agg["majority"]),
            "raw": round(float(np.mean([p in answer.truth for p in agg["raw"]])), 3) if len(agg["raw"]) else None}


def summary_section(report: dict, report_path: Path) -> str:
    """The docs/BENCHMARKS.md section quoting the headline of ``report`` (read from ``report_path``)."""
    rows = "\n".join(f"| {name} | {value:.1%} |" for name, value in report["headline"].items() if value is not None)
    link = Path("evaluation") / "report.md" if report_path.parent.name == "evaluation" else report_path.with_name("report.md")
    return f"""
From `python scripts/evaluate_corpus.py --corpus data/corpus --out docs/evaluation` (library: the whole
development corpus, {report['library'].get('songs', '?')} songs; encoder `{report['model'].get('model_id', report['model'])}`;
{report['seconds']:.0f} s). The full report with every table and plot: [{link}]({link}).
*embedding* is tuneprint; *baseline* is MFCC statistics per 3-s patch with the same k-NN vote;
*classifier* is the training run's classifier head. 3-s clips; labels by leave-one-song-out 10-NN.

| measure | value |
| --- | --- |
{rows}
"""
