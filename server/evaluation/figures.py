"""The evaluation's figures: the embedding map (t-SNE and PCA, coloured by label, with the label
clusters' silhouette), confusion matrices and identification curves, as small PNGs."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .data import Provenance, Snippets, subtrack_rows
from .labels import BaselineReference

log = logging.getLogger(__name__)

DPI = 80  # small PNGs: they are committed with the docs


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- the embedding map ------------------------------------------------------------------------------
def embedding_map(snippets: Snippets, songs: list[int], subtrack_s: float, provenance: Provenance, max_points: int,
                  seed: int, out_dir: Path, baseline: BaselineReference | None = None) -> tuple[dict, dict]:
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
        base_rows = np.concatenate([baseline.subtracks(i, subtrack_s)
                                    for i in songs if i in baseline.rows and snippets.songs[i].labels]
                                   or [np.zeros(0, np.int64)])
        if len(base_rows) > max_points:
            base_rows = np.sort(rng.choice(base_rows, max_points, replace=False))
        base_labels = [snippets.songs[s].labels[0] for s in baseline.song[base_rows]]
        section["silhouette"]["mfcc_baseline"] = silhouettes(baseline.vectors[base_rows], base_labels, seen)
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
