"""The evaluation's figures (confusion matrices, identification curves, t-SNE and PCA maps)
and ``report.md`` / ``report.json``, from the numbers :func:`server.evaluation.evaluate` gathers."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .eval_data import Provenance, Snippets, subtrack_rows

log = logging.getLogger(__name__)

DPI = 80  # small PNGs: they are committed with the docs


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- the embedding map ------------------------------------------------------------------------------
def embedding_map(snippets: Snippets, songs: list[int], subtrack_s: float, provenance: Provenance, max_points: int,
                  seed: int, out_dir: Path, baseline: dict | None = None) -> tuple[dict, dict]:
    """t-SNE and PCA of the query songs' sub-track embeddings, coloured by label; and how well
    labels cluster (cosine silhouette), for the embeddings and, where given, the MFCC baseline.

    Returns the section's numbers and {figure name: file name}.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # small problems: OpenMP threads only spin, badly so on a busy machine
        return _embedding_map(snippets, songs, subtrack_s, provenance, max_points, seed, out_dir, baseline)


def _embedding_map(snippets, songs, subtrack_s, provenance, max_points, seed, out_dir, baseline):
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    rows = np.concatenate([snippets.rows_of(i)[subtrack_rows(snippets.offsets_s[snippets.rows_of(i)], subtrack_s)]
                           for i in songs if snippets.songs[i].labels] or [np.zeros(0, np.int64)])
    if len(rows) > max_points:
        rows = np.sort(rng.choice(rows, max_points, replace=False))
    section: dict = {"points": int(len(rows)), "songs": len(songs)}
    if len(rows) < 5:
        section["note"] = "too few labelled sub-tracks for a map"
        return section, {}
    X = snippets.vectors[rows]
    point_labels = [snippets.songs[s].labels[0] for s in snippets.song[rows]]
    seen = None if provenance.seen_labels is None else set(provenance.seen_labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    pca = PCA(n_components=2, random_state=seed).fit(X)
    section["pca_explained_variance"] = [round(float(v), 4) for v in pca.explained_variance_ratio_]
    figures["pca"] = _scatter(pca.transform(X), point_labels, seen, out_dir / "map_pca.png",
                              f"PCA of {len(rows)} sub-track embeddings")
    reduced = PCA(n_components=min(50, len(rows) - 1, X.shape[1]), random_state=seed).fit_transform(X)
    perplexity = float(min(30.0, max(2.0, (len(rows) - 1) / 3)))
    coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
    section["tsne_perplexity"] = perplexity
    figures["tsne"] = _scatter(coords, point_labels, seen, out_dir / "map_tsne.png",
                               f"t-SNE of {len(rows)} sub-track embeddings")
    section["silhouette"] = {"embedding": silhouettes(X, point_labels, seen)}
    if baseline:
        base_rows = np.concatenate([baseline["rows"][i][subtrack_rows(baseline["offsets"][baseline["rows"][i]], subtrack_s)]
                                    for i in songs if i in baseline["rows"] and snippets.songs[i].labels]
                                   or [np.zeros(0, np.int64)])
        if len(base_rows) > max_points:
            base_rows = np.sort(rng.choice(base_rows, max_points, replace=False))
        base_labels = [snippets.songs[s].labels[0] for s in baseline["song"][base_rows]]
        section["silhouette"]["mfcc_baseline"] = silhouettes(baseline["vectors"][base_rows], base_labels, seen)
    return section, figures


def silhouettes(X: np.ndarray, labels: list[str], seen: set[str] | None) -> dict:
    """Cosine silhouette of the label clusters: all points, and seen / unseen labels apart."""
    from sklearn.metrics import silhouette_score

    labels = np.array(labels)
    groups = {"all": np.ones(len(labels), bool)}
    if seen is not None:
        groups["seen"] = np.isin(labels, list(seen))
        groups["unseen"] = ~groups["seen"]
    out = {}
    for name, mask in groups.items():
        n_labels = len(set(labels[mask]))
        out[name] = (round(float(silhouette_score(X[mask], labels[mask], metric="cosine")), 4)
                     if 2 <= n_labels < mask.sum() else None)
    return out


def _scatter(coords: np.ndarray, labels: list[str], seen: set[str] | None, path: Path, title: str) -> str:
    plt = _plt()
    names = sorted(set(labels))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    labels = np.array(labels)
    for j, name in enumerate(names):
        mask = labels == name
        unseen = seen is not None and name not in seen
        ax.scatter(coords[mask, 0], coords[mask, 1], s=7, alpha=0.75, color=cmap(j % cmap.N),
                   marker="^" if unseen else "o", label=f"{name}{' (unseen)' if unseen else ''}")
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(fontsize=7, markerscale=2, loc="best", framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path.name


# -- confusion and identification figures ---------------------------------------------------------------
def plot_confusions(scores: dict[str, dict], path: Path, title: str) -> str | None:
    """Row-normalised confusion matrices (one panel per group) with counts in the cells."""
    panels = [(g, s) for g, s in scores.items() if isinstance(s, dict) and s.get("subtracks")]
    if len(panels) > 1 and any(s["tracks"] == panels[0][1]["tracks"] for _, s in panels[1:]):
        panels = panels[:1]  # a group that is all of 'all' would only repeat it
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    for ax, (group, s) in zip(axes[0], panels):
        labels, C = s["confusion"]["labels"], np.array(s["confusion"]["matrix"], dtype=float)
        used = [j for j in range(len(labels)) if C[j].sum() or C[:, j].sum()]
        cols = used + ([len(labels)] if C[:, -1].sum() else [])
        C = C[np.ix_(used, cols)]
        norm = C / np.maximum(C.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        names = [labels[j] for j in used]
        ax.set_xticks(range(len(cols)), names + (["none"] if len(cols) > len(used) else []), rotation=60, ha="right",
                      fontsize=7)
        ax.set_yticks(range(len(used)), names, fontsize=7)
        if len(used) <= 12:
            for r in range(C.shape[0]):
                for c in range(C.shape[1]):
                    if C[r, c]:
                        ax.text(c, r, int(C[r, c]), ha="center", va="center", fontsize=6,
                                color="white" if norm[r, c] > 0.5 else "black")
        ax.set(xlabel="predicted", ylabel="true", title=f"{group} ({s['subtracks']} sub-tracks)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path.name


def plot_identification(ident: dict, path: Path) -> str | None:
    """Top-1 hit rate against clip length, one line per condition, a panel per method."""
    methods = [m for m, t in ident["in_library"].items() if t]
    if not methods:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(methods), figsize=(4.8 * len(methods), 3.6), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        table = ident["in_library"][method]
        durations = list(table)
        conditions = list(dict.fromkeys(c for cells in table.values() for c in cells))
        for condition in conditions:
            ax.plot([float(d.rstrip("s")) for d in durations],
                    [table[d].get(condition, {}).get("top1") or 0.0 for d in durations], "o-", label=condition)
        ax.set(title=f"{method}: top-1", xlabel="clip seconds", ylim=(0, 1.02),
               xticks=[float(d.rstrip("s")) for d in durations])
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of clips")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path.name


# -- report files ---------------------------------------------------------------------------------------
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
    lib, model, split, sections = report["library"], report["model"], report["split"], report["sections"]
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
    md += ["## Headline\n", _table(["measure", "value"], [[k, _pct(v)] for k, v in report["headline"].items()])]

    ident = sections.get("identification")
    if ident:
        c = ident["conditions"]
        md += ["## 1. Song identification (seed 004 §6.3)\n",
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

    labels = sections.get("labels")
    if labels:
        md += ["## 2. Labels by neighbours (seed 004 §6.1)\n",
               f"Each query track is cut into sub-tracks {labels['subtrack_s']} s apart; each sub-track is labelled by "
               f"the {labels['k']} nearest stored snippets of *other* songs (exact search). Sub-track numbers count each "
               "sub-track (the seed's figures); track numbers sum the sub-tracks' votes (maximum probability, what "
               "`tuneprint genre` answers for a whole track). Seen / unseen: the track's label was / was not among the "
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

    md += ["## 3. Aggregation: raw, maximum probability, majority vote (seed 002)\n",
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

    emap = sections.get("map")
    if emap:
        md += ["## 4. The embedding map (seed 004 §6.2)\n",
               f"{emap['points']} sub-tracks of the label query tracks; ▲ marks labels the encoder never saw in training. "
               "Silhouette (cosine, −1…1, higher = labels form tighter clusters) in the full space:\n"]
        sil = emap.get("silhouette", {})
        if sil:
            groups = list(next(iter(sil.values())))
            md.append(_table(["vectors"] + groups, [[k] + [_fmt(v.get(g)) for g in groups] for k, v in sil.items()]))
        md += [_figure(report, "tsne", "t-SNE of sub-track embeddings"), _figure(report, "pca", "PCA of sub-track embeddings")]
        if emap.get("note"):
            md.append(emap["note"] + "\n")

    timing = sections.get("timing")
    if timing:
        md += ["## 5. Search timing (seed 004 table 1)\n"]
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
    base = sections.get("baseline")
    if base:
        md += ["## 6. Baseline\n", base["method"] + ". Its identification rows are in section 1, its label "
               "aggregation in section 3" + (", its silhouette in section 4" if emap else "") + ".\n",
               _figure(report, "confusion_baseline", "confusion matrix of the MFCC baseline")]
    md.append("Numbers: `report.json` (per-track answers under `tracks`).\n")
    return "\n".join(md)


def _noise(report: dict) -> str:
    noise = report.get("noise") or {}
    return f"{noise['recorded_files']} recorded noises" if noise.get("recorded_files") else "white/pink/brown noise"


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _fmt_s(x) -> str:
    return "–" if x is None else f"{x:.2f} s"
