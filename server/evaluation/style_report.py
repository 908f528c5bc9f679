"""Training and measuring the style head (encoder/style.py) on the style corpus; the head shipped,
its docs/BENCHMARKS.md section and its embedding maps.

The corpus splits by collection (:func:`.corpus.split_style_corpus`): heads train on the ``train``
songs of the training collections, the ``val`` collections choose the objective, and the
``unseen`` collections and the ``seen_test`` songs (training collections, songs never trained on)
only measure. Every representation — MFCC statistics, the fingerprint, the raw trunk statistics
and a head per objective — is measured the same way (:func:`.style.score_style`): whole-track
vectors (the normalised mean of patch vectors, patches 32 frames apart over the whole track),
a 10-NN vote over the other tracks, 10-s clips voted by the other tracks' whole-track vectors,
and the precision of the five most similar other tracks (``similar --track``).

The trunk statistics of the corpus are kept in an ``.npz`` cache (no pickle), so that a second
run only trains and measures.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from tuneprint.encoder.style import StyleHead, StyleModel, save_style, track_vector
from tuneprint.encoder.style_training import (OBJECTIVES, StyleTrainConfig, TrackStatistics, collect_statistics,
                                              fit_style_head)

from .labels import mfcc_stats
from .style import StyleScores, clip_starts, score_style

log = logging.getLogger(__name__)

PARTS = ("train", "seen_test", "val", "unseen")
GROUPS = ("val", "unseen", "seen_test")  # the parts that are measured
GROUP_TITLES = {"val": "val collections", "unseen": "unseen collections",
                "seen_test": "seen collections, test songs"}
HOP_FRAMES = 32  # patches ≈1.49 s apart
CLIP_PATCHES = 7  # a clip: 7 consecutive patches, ≈10 s of music
MAX_CLIPS = 6  # clips per track at most, spread over it
K = 10  # neighbours that vote
DEFAULT_OBJECTIVE = "track"  # the label-free objective: wins ties
BASELINES = ("mfcc", "fingerprint", "trunk statistics")
CACHE_FORMAT = 1
SECTION = ("style", "Style embedding: collections by neighbours, similar tracks")


# -- the trunk statistics of the corpus -------------------------------------------------------------
@dataclass
class StyleData:
    """Statistics of every readable track of the style corpus, by part, and what they were made with."""

    model_id: str
    hop_frames: int
    parts: dict[str, list[TrackStatistics]]
    items: dict[str, list[tuple[str, str]]]  # the tracks asked for (unreadable ones are not in ``parts``)
    collect_seconds: float = 0.0

    def tracks(self) -> list[TrackStatistics]:
        """Every track, part after part in :data:`PARTS` order."""
        return [t for part in PARTS for t in self.parts.get(part, [])]

    def groups(self) -> np.ndarray:
        """The part of each track of :meth:`tracks`."""
        return np.array([part for part in PARTS for _ in self.parts.get(part, [])], dtype=object)

    def labels(self) -> np.ndarray:
        """The collection of each track of :meth:`tracks`."""
        return np.array([t.label for t in self.tracks()], dtype=object)

    def collections(self, part: str) -> list[str]:
        return sorted({t.label for t in self.parts.get(part, [])})


def collect_part(items: Sequence[tuple[str, str]], model, *, augment: bool = False, hop_frames: int = HOP_FRAMES,
                 seed: int = 0, max_seconds: float = 600.0,
                 progress: Callable[[int, int], None] | None = None) -> list[TrackStatistics]:
    """:func:`tuneprint.encoder.style_training.collect_statistics`, with the patches' MFCC statistics
    (the baseline, ``patches_mfcc`` [shape=(p, 40), float32]) from the same decoding."""
    return collect_statistics(items, model, hop_frames=hop_frames, augment=augment, seed=seed,
                              max_seconds=max_seconds, patch_features=mfcc_stats, progress=progress)


def collect_corpus(items: dict[str, list[tuple[str, str]]], model, *, hop_frames: int = HOP_FRAMES,
                   seed: int = 0) -> StyleData:
    """Statistics of every part (re-recordings for ``train`` only), logging progress."""
    started = time.perf_counter()
    total = sum(len(items.get(p, [])) for p in PARTS)
    done = 0
    parts = {}
    for part in PARTS:
        def progress(i: int, n: int, before: int = done) -> None:
            if (before + i) % 25 == 0 or i == n:
                log.info("statistics: %d/%d tracks (%.0f s)", before + i, total, time.perf_counter() - started)

        parts[part] = collect_part(items.get(part, []), model, augment=part == "train", hop_frames=hop_frames,
                                   seed=seed, progress=progress)
        done += len(items.get(part, []))
    return StyleData(model.model_id, hop_frames, parts, {p: list(items.get(p, [])) for p in PARTS},
                     round(time.perf_counter() - started, 1))


def save_cache(path: str | Path, data: StyleData) -> Path:
    """Write ``data`` as one uncompressed ``.npz`` of plain arrays (strings as unicode, no pickle)."""
    path = Path(path)
    tracks = data.tracks()
    asked = [(p, label, part) for part in PARTS for p, label in data.items.get(part, [])]
    aug = [t.augmented for t in tracks if t.augmented is not None]
    dim = tracks[0].stats.shape[1] if tracks else 0
    arrays = {
        "format": np.array(CACHE_FORMAT), "model_id": np.array(data.model_id), "hop_frames": np.array(data.hop_frames),
        "collect_seconds": np.array(data.collect_seconds),
        "asked_paths": np.array([a[0] for a in asked], dtype=str), "asked_labels": np.array([a[1] for a in asked], dtype=str),
        "asked_parts": np.array([a[2] for a in asked], dtype=str),
        "paths": np.array([t.path for t in tracks], dtype=str), "labels": np.array([t.label for t in tracks], dtype=str),
        "parts": np.array(list(data.groups()), dtype=str),
        "n_patches": np.array([len(t.stats) for t in tracks], dtype=np.int64),
        "n_augmented": np.array([-1 if t.augmented is None else len(t.augmented) for t in tracks], dtype=np.int64),
        "stats": _rows([t.stats for t in tracks], np.float16, dim),
        "fingerprints": _rows([t.fingerprints for t in tracks], np.float16),
        "mfcc": _rows([t.patches_mfcc for t in tracks], np.float32),
        "augmented": _rows(aug, np.float16, dim),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path)
    return path


def _rows(blocks: list[np.ndarray | None], dtype, dim: int = 0) -> np.ndarray:
    blocks = [b for b in blocks if b is not None]
    return np.concatenate(blocks).astype(dtype) if blocks else np.zeros((0, dim), dtype)


def load_cache(path: str | Path) -> StyleData:
    """Read a cache written by :func:`save_cache` (ValueError: not one, or another format)."""
    with np.load(path, allow_pickle=False) as z:
        if int(z["format"]) != CACHE_FORMAT:
            raise ValueError(f"{path}: style cache format {int(z['format'])}, not {CACHE_FORMAT}")
        ends = np.concatenate([[0], np.cumsum(z["n_patches"])])
        n_aug = z["n_augmented"]
        aug_ends = np.concatenate([[0], np.cumsum(np.maximum(n_aug, 0))])
        stats, fps, mfcc, aug = z["stats"], z["fingerprints"], z["mfcc"], z["augmented"]
        parts: dict[str, list[TrackStatistics]] = {p: [] for p in PARTS}
        for i, (path_, label, part) in enumerate(zip(z["paths"], z["labels"], z["parts"])):
            rows = slice(ends[i], ends[i + 1])
            t = TrackStatistics(str(path_), str(label), stats[rows], fps[rows],
                                patches_mfcc=mfcc[rows] if len(mfcc) else None,
                                augmented=aug[aug_ends[i]:aug_ends[i + 1]] if n_aug[i] >= 0 else None)
            parts[str(part)].append(t)
        items: dict[str, list[tuple[str, str]]] = {p: [] for p in PARTS}
        for p, label, part in zip(z["asked_paths"], z["asked_labels"], z["asked_parts"]):
            items[str(part)].append((str(p), str(label)))
        return StyleData(str(z["model_id"]), int(z["hop_frames"]), parts, items, float(z["collect_seconds"]))


def corpus_statistics(corpus: str | Path, model, cache: str | Path | None = None, *,
                      hop_frames: int = HOP_FRAMES) -> StyleData:
    """The statistics of the style corpus: from ``cache`` when it holds the same tracks for the same
    encoder, otherwise collected (about 5 minutes on 2 CPU cores) and written to ``cache``."""
    from .corpus import split_style_corpus

    items = split_style_corpus(corpus)
    if cache is not None and Path(cache).is_file():
        try:
            data = load_cache(cache)
        except (OSError, ValueError, KeyError) as e:
            log.warning("style cache %s unreadable (%s): collecting again", cache, e)
        else:
            if (data.model_id, data.hop_frames) == (model.model_id, hop_frames) and all(
                    data.items[p] == list(items.get(p, [])) for p in PARTS):
                log.info("statistics of %d tracks from %s", len(data.tracks()), cache)
                return data
            log.info("style cache %s holds other tracks or another encoder's statistics: collecting again", cache)
    data = collect_corpus(items, model, hop_frames=hop_frames)
    if cache is not None:
        save_cache(cache, data)
        log.info("statistics written to %s", cache)
    return data


# -- representations ------------------------------------------------------------------------------
PatchVectors = Callable[[TrackStatistics], np.ndarray]  # a track → one vector per patch [shape=(p, d)]


def _standardise(rows: np.ndarray, eps: float) -> Callable[[np.ndarray], np.ndarray]:
    mean, scale = rows.mean(axis=0), rows.std(axis=0) + eps
    return lambda x: (x - mean) / scale


def mfcc_vectors(train: list[TrackStatistics]) -> PatchVectors:
    """The baseline: patches' MFCC mean and std (40-d), standardised on the training patches."""
    z = _standardise(np.concatenate([t.patches_mfcc for t in train]).astype(np.float32), 1e-6)
    return lambda t: z(t.patches_mfcc.astype(np.float32))


def fingerprint_vectors() -> PatchVectors:
    """The fingerprint embeddings themselves."""
    return lambda t: t.fingerprints.astype(np.float32)


def _log_stats(stats: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(stats.astype(np.float32), 0, None))


def trunk_vectors(train: list[TrackStatistics]) -> PatchVectors:
    """Raw trunk statistics (1,920-d), log1p and standardised on the training patches: no training."""
    z = _standardise(np.concatenate([_log_stats(t.stats) for t in train]), 1e-4)
    return lambda t: z(_log_stats(t.stats))


def head_vectors(head: StyleHead) -> PatchVectors:
    """A trained head's unit-norm patch style vectors."""
    return lambda t: head.vectors(t.stats)


@dataclass
class Vectors:
    tracks: np.ndarray  # [shape=(n, d)] unit-norm whole-track vectors
    clips: dict[int, np.ndarray]  # track position → [shape=(c, d)] its 10-s clips' vectors


def vectors_of(tracks: list[TrackStatistics], patch_vectors: PatchVectors, clip_patches: int = CLIP_PATCHES,
               max_clips: int = MAX_CLIPS) -> Vectors:
    """Whole-track and clip vectors: the normalised mean of their patches' vectors."""
    whole, clips = [], {}
    for i, t in enumerate(tracks):
        P = np.asarray(patch_vectors(t), dtype=np.float32)
        whole.append(track_vector(P))
        starts = clip_starts(len(P), clip_patches, max_clips)
        if starts:
            clips[i] = np.stack([track_vector(P[s:s + clip_patches]) for s in starts])
    return Vectors(np.stack(whole), clips)


# -- scores and the choice -----------------------------------------------------------------------------
def score_groups(vectors: Vectors, labels: np.ndarray, groups: np.ndarray,
                 k: int = K) -> dict[str, dict[str, StyleScores]]:
    """Scores of each measured group's tracks: ``all`` (every corpus track a reference) and ``within``
    (references: the tracks of the group's own collections only)."""
    out = {}
    for g in GROUPS:
        queries = np.flatnonzero(groups == g)
        if not len(queries):
            continue
        within = np.flatnonzero(np.isin(labels, sorted(set(labels[queries]))))
        out[g] = {"all": score_style(vectors.tracks, labels, queries, vectors.clips, k),
                  "within": score_style(vectors.tracks, labels, queries, vectors.clips, k, references=within)}
    return out


@dataclass
class Variant:
    """One representation, its vectors and scores; for a trained head, the head and its training summary."""

    name: str
    vectors: Vectors
    scores: dict[str, dict[str, StyleScores]]
    objective: str | None = None
    head: StyleHead | None = None
    summary: dict = field(default_factory=dict)

    def figure(self, group: str, protocol: str = "all", what: str = "track_accuracy") -> float:
        s = self.scores.get(group, {}).get(protocol)
        return float("nan") if s is None else float(getattr(s, what))


def measure(name: str, data: StyleData, patch_vectors: PatchVectors, **head_fields) -> Variant:
    """One representation's vectors and scores on every measured group."""
    vectors = vectors_of(data.tracks(), patch_vectors)
    return Variant(name, vectors, score_groups(vectors, data.labels(), data.groups()), **head_fields)


def train_head(train: list[TrackStatistics], objective: str, *, steps: int | None = None,
               seed: int = 0) -> tuple[StyleHead, dict]:
    """:func:`fit_style_head` with the default settings but ``objective`` (and ``steps``, when given)."""
    cfg = StyleTrainConfig(objective=objective, seed=seed, **({"steps": steps} if steps else {}))
    head, summary = fit_style_head(train, cfg, progress=lambda step, loss: log.debug(
        "%s: step %d, loss %.4f", objective, step, loss))
    log.info("head %s: %d steps in %.1f s, final loss %.4f", objective, cfg.steps, summary["seconds"],
             summary["final_loss"])
    return head, summary


def compare_variants(data: StyleData, *, steps: int | None = None, seed: int = 0,
                     objectives: Sequence[str] = OBJECTIVES) -> list[Variant]:
    """Measure the baselines and a head trained on the ``train`` part for each objective (same seed)."""
    train = data.parts["train"]
    variants = [measure("mfcc", data, mfcc_vectors(train)), measure("fingerprint", data, fingerprint_vectors()),
                measure("trunk statistics", data, trunk_vectors(train))]
    for objective in objectives:
        head, summary = train_head(train, objective, steps=steps, seed=seed)
        variants.append(measure(f"head: {objective}", data, head_vectors(head), objective=objective, head=head,
                                summary=summary))
    for v in variants:
        log.info("%-18s val %.3f (within %.3f), unseen %.3f (within %.3f)", v.name, v.figure("val"),
                 v.figure("val", "within"), v.figure("unseen"), v.figure("unseen", "within"))
    return variants


def choose_variant(variants: Sequence[Variant]) -> Variant:
    """The trained head with the best val track accuracy. Heads within one standard error of the best
    (binomial, over the val tracks: a handful of tracks decide otherwise) are tied; of the tied, the
    :data:`DEFAULT_OBJECTIVE` head is kept, else the best (the first listed of equals)."""
    heads = [v for v in variants if v.head is not None and "val" in v.scores]
    if not heads:
        raise ValueError("no trained head measured on the val collections")
    best = max(heads, key=lambda v: v.figure("val"))
    p, n = best.figure("val"), best.scores["val"]["all"].tracks
    tied = [v for v in heads if v.figure("val") >= p - tie_margin(p, n)]
    return next((v for v in tied if v.objective == DEFAULT_OBJECTIVE), best)


def tie_margin(accuracy: float, n: int) -> float:
    """One binomial standard error of an accuracy measured on ``n`` tracks."""
    return float(np.sqrt(accuracy * (1 - accuracy) / max(n, 1)))


def style_meta(data: StyleData, chosen: Variant) -> dict:
    """The shipped head's provenance: objective, collections trained on and held out, training, figures."""
    cfg = chosen.summary.get("config", {})
    return {"objective": chosen.objective, "trained": date.today().isoformat(),
            "train_collections": data.collections("train"),
            "held_out": {"val": data.collections("val"), "unseen": data.collections("unseen")},
            "tracks": {p: len(data.parts.get(p, [])) for p in PARTS},
            "steps": cfg.get("steps"), "training_seconds": chosen.summary.get("seconds"),
            "final_loss": chosen.summary.get("final_loss"), "config": cfg, "hop_frames": data.hop_frames,
            "chosen_by": f"val track accuracy ({K}-NN vote, every corpus track a reference); heads within one "
                         f"standard error of the best are tied, ties go to {DEFAULT_OBJECTIVE}",
            "figures": {g: {p: s.as_dict() for p, s in by.items()} for g, by in chosen.scores.items()},
            "how": "scripts/train_style.py (server/evaluation/style_report.py)"}


def save_shipped(out: str | Path, model_id: str, chosen: Variant, meta: dict) -> Path:
    """Write the chosen head with :func:`save_style`, for the encoder ``model_id``."""
    path = save_style(out, StyleModel(model_id, chosen.head, meta))
    log.info("style head (%s) written to %s, %.1f MB", chosen.objective, path, path.stat().st_size / 1e6)
    return path


# -- embedding maps ------------------------------------------------------------------------------------
DPI = 90


def _tsne(X: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    reduced = PCA(n_components=min(50, len(X) - 1, X.shape[1]), random_state=seed).fit_transform(X)
    perplexity = float(min(30.0, max(2.0, (len(X) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)


def _silhouette(X: np.ndarray, labels: np.ndarray) -> float | None:
    from sklearn.metrics import silhouette_score

    return (float(silhouette_score(X, labels, metric="cosine"))
            if 2 <= len(set(labels)) < len(labels) else None)


def plot_map(panels: list[tuple[str, np.ndarray]], labels: np.ndarray, marked: np.ndarray, path: Path, title: str,
             marked_name: str = "", seed: int = 0) -> dict[str, float | None]:
    """t-SNE maps of whole-track vectors side by side (one panel per representation), coloured by
    collection, tracks in ``marked`` drawn as triangles; returns each panel's cosine silhouette."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from threadpoolctl import threadpool_limits

    names = sorted(set(labels), key=lambda n: (-int((labels == n).sum()), n))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 2.3, 4.6), squeeze=False)
    silhouettes = {}
    for ax, (name, X) in zip(axes[0], panels):
        with threadpool_limits(limits=1):  # small problems: OpenMP threads only spin
            coords = _tsne(X, seed)
        silhouettes[name] = _silhouette(X, labels)
        for j, label in enumerate(names):
            for mask, marker in ((labels == label) & ~marked, "o"), ((labels == label) & marked, "^"):
                if mask.any():
                    ax.scatter(coords[mask, 0], coords[mask, 1], s=22, alpha=0.8, color=cmap(j % cmap.N),
                               marker=marker, edgecolors="none")
        sil = silhouettes[name]
        ax.set(title=f"{name} (silhouette {sil:.2f})" if sil is not None else name, xticks=[], yticks=[])
    handles = [plt.Line2D([], [], ls="", marker="o", color=cmap(j % cmap.N), label=f"{n} ({int((labels == n).sum())})")
               for j, n in enumerate(names)]
    if marked.any() and marked_name:
        handles.append(plt.Line2D([], [], ls="", marker="^", color="grey", label=marked_name))
    right = (4.6 * len(panels)) / (4.6 * len(panels) + 2.3)
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(right, 0.5), fontsize=9, frameon=False,
               title="collection (tracks)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, right, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return silhouettes


def plot_maps(data: StyleData, fingerprint: Variant, style: Variant, out_dir: Path,
              seed: int = 0) -> dict[str, tuple[Path, dict]]:
    """``style-map-seen.png`` (train and seen_test tracks) and ``style-map-unseen.png`` (unseen
    collections): fingerprint vs style, t-SNE of whole-track vectors. Returns name → (path, silhouettes)."""
    groups, labels = data.groups(), data.labels()
    out = {}
    for name, mask, title in (
            ("seen", np.isin(groups, ["train", "seen_test"]), "training collections (train and test songs)"),
            ("unseen", groups == "unseen", "unseen collections (never trained on)")):
        if mask.sum() < 5:
            continue
        path = Path(out_dir) / f"style-map-{name}.png"
        panels = [("fingerprint", fingerprint.vectors.tracks[mask]), (style.name, style.vectors.tracks[mask])]
        sil = plot_map(panels, labels[mask], groups[mask] == "seen_test", path,
                       f"t-SNE of whole-track vectors, {title}: {int(mask.sum())} tracks",
                       marked_name="test songs", seed=seed)
        out[name] = (path, sil)
        log.info("map written to %s", path)
    return out


# -- the BENCHMARKS.md section -------------------------------------------------------------------------
def _f(x: float | None) -> str:
    return "–" if x is None or np.isnan(x) else f"{x:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def chance_precision(labels: np.ndarray, groups: np.ndarray, group: str, within: bool) -> float:
    """Precision@5 of neighbours drawn at random: the mean share of same-collection tracks among the
    other references of each query."""
    queries = np.flatnonzero(groups == group)
    refs = np.isin(labels, sorted(set(labels[queries]))) if within else np.ones(len(labels), bool)
    return float(np.mean([((labels[refs] == labels[q]).sum() - 1) / max(refs.sum() - 1, 1) for q in queries]))


def render(data: StyleData, variants: Sequence[Variant], chosen: Variant, *, weights: str | None,
           maps: dict[str, tuple[str, dict]], seconds: float) -> str:
    """The section's body: what was shipped and why, the data, the val comparison of every variant, the
    unseen and seen figures of MFCC, fingerprint, trunk statistics and the shipped head, the maps."""
    labels, groups = data.labels(), data.groups()
    by_name = {v.name: v for v in variants}
    steps = chosen.summary.get("config", {}).get("steps")
    lead = (f"Style head shipped as `{weights}` for encoder `{data.model_id}`" if weights
            else "Style head not written (`--no-save`)")
    val = [v.figure("val") for v in variants if v.head is not None]
    margin = tie_margin(max(val), chosen.scores["val"]["all"].tracks)
    parts = [f"{lead}: objective **{chosen.objective}**, chosen by track accuracy on the val collections: heads "
             f"within one standard error ({margin:.3f}) of the best ({max(val):.3f}) count as tied, and ties go to "
             f"`{DEFAULT_OBJECTIVE}`, the label-free objective. Trained on the "
             f"{len(data.parts['train'])} train songs of {len(data.collections('train'))} collections, "
             f"{steps} steps in {chosen.summary.get('seconds', 0):.0f} s; the whole run took {seconds / 60:.1f} min "
             + (f"(statistics of the corpus: {data.collect_seconds / 60:.1f} min when collected)."
                if data.collect_seconds else "."), ""]
    rows = [[part, str(len(data.parts.get(part, []))), str(len(data.collections(part))), ", ".join(
        f"{c} ({int(sum(t.label == c for t in data.parts[part]))})" for c in data.collections(part))]
        for part in PARTS]
    parts += ["Data (`split_style_corpus`, split by collection; val and unseen collections are never trained on):", "",
              *_table(["part", "tracks", "collections", "collections (tracks)"], rows), "",
              f"How measured: whole-track vectors = normalised mean of patch vectors ({data.hop_frames}-frame hop, "
              f"≈1.5 s); **track** = {K}-NN majority vote of the other tracks (leave-one-out), every corpus track a "
              "reference; **within** = the same vote with references restricted to the query group's own "
              f"collections (a small collection cannot win a {K}-vote majority against the big training "
              f"collections); **clip** = ≤ {MAX_CLIPS} 10-s clips per track ({CLIP_PATCHES} consecutive patches, "
              "not sharing one), each voted by the other tracks' whole-track vectors; **p@5** = share of the five "
              "most similar other tracks from the same collection (`similar --track`), every corpus track a "
              "reference.", ""]
    header = ["representation", "track", "track within val collections", "clip", "p@5"]
    rows = [[f"{v.name}{' **(shipped)**' if v is chosen else ''}", _f(v.figure("val")), _f(v.figure("val", "within")),
             _f(v.figure("val", what="clip_accuracy")), _f(v.figure("val", what="precision_at_5"))] for v in variants]
    n_val = len(data.parts.get("val", []))
    parts += [f"Variants on the val collections ({n_val} tracks, {len(data.collections('val'))} collections; "
              "the choice is made here, and it is noisy):", "", *_table(header, rows), ""]
    shown = [by_name[n] for n in BASELINES if n in by_name] + [chosen]
    rows = []
    for g in ("unseen", "seen_test"):
        if g not in chosen.scores:
            continue
        for v in shown:
            rows.append([GROUP_TITLES[g], f"{v.name}{' (shipped)' if v is chosen else ''}", _f(v.figure(g)),
                         _f(v.figure(g, "within")), _f(v.figure(g, what="clip_accuracy")),
                         _f(v.figure(g, what="precision_at_5"))])
    parts += [f"Held-out figures: unseen collections ({len(data.parts.get('unseen', []))} tracks, "
              f"{len(data.collections('unseen'))} collections) and test songs of the training collections "
              f"({len(data.parts.get('seen_test', []))} tracks, {len(data.collections('seen_test'))} collections):", "",
              *_table(["tracks", "representation", "track", "track within the group's collections", "clip", "p@5"],
                      rows), ""]
    if "unseen" in chosen.scores:
        figs = ", ".join(f"{v.name} {v.figure('unseen'):.3f}" for v in shown[:-1])
        parts += [f"On the unseen collections the shipped head's track accuracy is {chosen.figure('unseen'):.3f} "
                  f"(p@5 {chosen.figure('unseen', what='precision_at_5'):.3f}), against {figs}.", ""]
    chance = {g: (chance_precision(labels, groups, g, False), chance_precision(labels, groups, g, True))
              for g in GROUPS if g in chosen.scores}
    parts += ["Random neighbours would give p@5 " + "; ".join(
        f"{GROUP_TITLES[g]} {a:.3f} (all references), {w:.3f} (within)" for g, (a, w) in chance.items()) + ".", ""]
    if maps:
        parts += ["t-SNE maps of whole-track vectors, fingerprint vs style (cosine silhouette of the collections in "
                  "each panel's title):", ""]
        parts += [f"![style map, {name}]({path})" for name, (path, _) in maps.items()]
    parts += ["", "Training times (wall clock, this machine): " + ", ".join(
        f"{v.objective} {v.summary.get('seconds', 0):.0f} s" for v in variants if v.head is not None)
        + f"; load average over the run's last 15 minutes {_load():.1f} on {os.cpu_count()} cores"
        + (": other jobs shared the machine, and every time here is longer than on an idle one."
           if _load() > (os.cpu_count() or 1) else ".")]
    return "\n".join(parts).rstrip() + "\n"


# -- the whole run ----------------------------------------------------------------------------------
def _load() -> float:
    try:
        return os.getloadavg()[2]
    except OSError:
        return float("nan")


def train_style(corpus: str | Path, out: str | Path | None, benchmarks: str | Path | None, *,
                cache: str | Path | None = None, steps: int | None = None, maps_dir: str | Path | None = None,
                model_spec: str = "default", seed: int = 0) -> dict:
    """Collect (or reuse) the corpus's statistics, train and measure every variant, keep the best on
    val, write it to ``out`` (None: not written), draw the maps into ``maps_dir`` and write the
    "style" section of ``benchmarks`` (None: neither). Returns the figures and the choice."""
    from tuneprint.encoder.checkpoint import load_model

    from .markdown import shown_path, write_section

    started = time.perf_counter()
    model = load_model(model_spec)
    data = corpus_statistics(corpus, model, cache)
    variants = compare_variants(data, steps=steps, seed=seed)
    chosen = choose_variant(variants)
    meta = style_meta(data, chosen)
    if out is not None:
        save_shipped(out, model.model_id, chosen, meta)
    maps = {}
    if maps_dir is not None:
        drawn = plot_maps(data, next(v for v in variants if v.name == "fingerprint"), chosen, Path(maps_dir), seed)
        base = Path(benchmarks).parent if benchmarks is not None else Path.cwd()
        maps = {name: (shown_path(path, base), sil) for name, (path, sil) in drawn.items()}
    seconds = time.perf_counter() - started
    if benchmarks is not None:
        body = render(data, variants, chosen, weights=shown_path(Path(out), Path.cwd()) if out is not None else None,
                      maps=maps, seconds=seconds)
        write_section(benchmarks, *SECTION, body)
        log.info("section %r written to %s", SECTION[0], benchmarks)
    return {"chosen": chosen.objective, "seconds": round(seconds, 1), "meta": meta, "maps": maps,
            "variants": {v.name: {g: {p: s.as_dict() for p, s in by.items()} for g, by in v.scores.items()}
                         for v in variants}}
