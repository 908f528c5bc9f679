"""Learn a classifier from the library's labelled tracks: ``tuneprint classify train``.

Every labelled track is cut into segments (half-overlapping for training; inputs.py); its
labels become soft targets (a track with two labels is half of each) and its tags 0/1 targets
after rare ones are folded into "Others". A head learns from the segments' mean embeddings, a
CNN from their spectrograms. Where the training segments' embeddings lie is kept for the
"unknown" rule, whose bar comes from how far each training track is from the *other* tracks.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from tuneprint.errors import LibraryError

from .config import ClassifierConfig
from .inputs import evenly, spectrogram_segments, track_embedding_segments, track_spectrogram
from .store import Classifier, build_nets, save_classifier

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total): "reading" tracks, "training" epochs


@dataclass(frozen=True)
class TrainingReport:
    """What ``train_classifier`` learnt and how long it took."""

    model: str
    labels: list[str]
    tags: list[str]
    tracks: int
    segments: int
    seconds: float  # wall time of reading and training
    loss: float  # the last epoch's mean training loss
    distance_bar: float
    path: str = ""  # classifier.json, once stored

    def to_dict(self) -> dict:
        return {**self.__dict__, "seconds": round(self.seconds, 2), "loss": round(self.loss, 4),
                "distance_bar": round(self.distance_bar, 4)}


@dataclass
class TrainingSet:
    """The training tracks' targets, and their segments with the track each comes from."""

    labels: np.ndarray  # [shape=(tracks, labels)] soft label shares
    tags: np.ndarray  # [shape=(tracks, tags)] 0/1 (after folding)
    embeddings: np.ndarray  # [shape=(n, D)] segment mean embeddings: the head's input, the "unknown" rule's
    embedding_track: np.ndarray  # [shape=(n,)]
    spectrograms: np.ndarray | None = None  # [shape=(m, bins, frames), float16]: the CNN's input
    spectrogram_track: np.ndarray | None = None  # [shape=(m,)]

    @property
    def tagged(self) -> np.ndarray:
        """[shape=(tracks,)] whether each track carries tags (tracks without tags teach no tag)."""
        return self.tags.sum(axis=1) > 0


def choose_tracks(lib, labels: Sequence[str] | None = None, tags: Sequence[str] | None = None,
                  song_ids: Sequence[str] | None = None):
    """The labelled tracks to learn from (of ``song_ids`` when given), the label names, and each
    track's labels and tags (only ``labels`` / ``tags`` when given). Raises LibraryError when
    there is nothing to learn."""
    songs = lib.tracks()
    if song_ids is not None:
        wanted = set(song_ids)
        songs = [s for s in songs if s.song_id in wanted]
    known_labels = sorted({label for s in songs for label in s.labels})
    known_tags = sorted({t for s in songs for t in s.tags})
    for kind, asked, known in (("label", labels, known_labels), ("tag", tags, known_tags)):
        unknown = sorted(set(asked or ()) - set(known))
        if unknown:
            raise LibraryError(f"unknown {kind}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
                               f"the library's {kind}s are {', '.join(known) or 'none'}")
    wanted_labels = set(labels or known_labels)
    wanted_tags = set(tags or known_tags)
    chosen = [(s, tuple(sorted(set(s.labels) & wanted_labels)), tuple(sorted(set(s.tags) & wanted_tags)))
              for s in songs]
    chosen = [c for c in chosen if c[1]]
    if not chosen:
        raise LibraryError(f"{lib.root}: no labelled tracks to learn from; give tracks labels first "
                           "(`tuneprint add --label L`, `--labels CSV`, or `tuneprint label SONG_ID --label L`)")
    names = sorted({label for _, ls, _ in chosen for label in ls})
    if len(names) < 2:
        raise LibraryError(f"{lib.root}: all {len(chosen)} labelled tracks carry the one label {names[0]!r}; "
                           "a classifier needs tracks of at least two labels")
    return chosen, names


def gather(lib, chosen, names: list[str], tag_names: list[str], track_tags: list[tuple[str, ...]],
           cfg: ClassifierConfig, progress: Progress | None = None) -> TrainingSet:
    """Every chosen track's targets and training segments (and spectrogram segments for a CNN)."""
    hop = lib.settings.index_hop_frames * lib.features.frame_seconds  # a window at every stored patch
    emb, emb_track, spec, spec_track = [], [], [], []
    for i, (song, _, _) in enumerate(chosen):
        x = track_embedding_segments(lib, song.song_id, cfg.segment_s)
        emb.append(x[evenly(len(x), cfg.max_segments)])
        emb_track.append(np.full(len(emb[-1]), i))
        if cfg.model == "cnn":
            spec.append(_spectrogram_segments(lib, song, cfg, hop))
            spec_track.append(np.full(len(spec[-1]), i))
        if progress:
            progress("reading", i + 1, len(chosen))
    if not sum(map(len, emb_track)):
        raise LibraryError(f"{lib.root}: the labelled tracks have no stored snippets to learn from")
    labels = np.stack([np.isin(names, ls).astype(np.float32) / len(ls) for _, ls, _ in chosen])
    tags = np.stack([np.isin(tag_names, ts).astype(np.float32) for ts in track_tags])
    tags = tags.reshape(len(chosen), len(tag_names))
    data = TrainingSet(labels, tags, np.concatenate(emb).astype(np.float32), np.concatenate(emb_track))
    if cfg.model == "cnn":
        data.spectrograms = np.concatenate([s for s in spec if len(s)])
        data.spectrogram_track = np.concatenate(spec_track)
    return data


def _spectrogram_segments(lib, song, cfg: ClassifierConfig, hop_s: float) -> np.ndarray:
    """A track's CNN training segments [shape=(k, bins, frames), float16], at most ``max_segments``."""
    S = track_spectrogram(lib, song, cfg.input)
    if S is None:
        log.warning("%s: no stored spectrogram; left out of the CNN's training", song.path)
        return np.zeros((0, 1, 1), np.float16)
    s = spectrogram_segments(S, lib.features.frame_seconds, cfg.segment_s, hop_s)
    return s[evenly(len(s), cfg.max_segments)].astype(np.float16)


def train_classifier(lib, cfg: ClassifierConfig = ClassifierConfig(), *, labels: Sequence[str] | None = None,
                     tags: Sequence[str] | None = None, progress: Progress | None = None) -> TrainingReport:
    """Train a classifier on the library's labelled tracks and store it in the library folder.

    Parameters
    ----------
    lib : an open :class:`~tuneprint.server.library.Library` (with its encoder and index)
    cfg : settings (model, depth, aggregation, ...)
    labels, tags : learn only these (default: all of the library's); unknown names are refused
    progress : called with (stage, done, total) while tracks are read and epochs run
    """
    if lib.catalog.read_only:
        raise LibraryError(f"{lib.root}: the library is read-only here; a classifier cannot be stored in it")
    clf, report = fit_classifier(lib, cfg, labels=labels, tags=tags, progress=progress)
    return replace(report, path=str(save_classifier(lib.root, clf)))


def fit_classifier(lib, cfg: ClassifierConfig = ClassifierConfig(), *, labels: Sequence[str] | None = None,
                   tags: Sequence[str] | None = None, song_ids: Sequence[str] | None = None,
                   progress: Progress | None = None) -> tuple[Classifier, TrainingReport]:
    """:func:`train_classifier` without storing: the classifier and its report. ``song_ids``:
    learn from these tracks only (an evaluation's training split)."""
    from .heads import distance_bar, fit_subspace, fold_rare_tags

    if lib.index is None:
        raise LibraryError(f"{lib.root}: opened without its encoder and index; open it fully to train a classifier")
    started = time.perf_counter()
    chosen, names = choose_tracks(lib, labels, tags, song_ids)
    tag_names, track_tags = fold_rare_tags([t for _, _, t in chosen], cfg.others_min_tracks)
    data = gather(lib, chosen, names, tag_names, track_tags, cfg, progress)
    learnt_tags = tag_names if _tags_learnable(data) else []
    nets = build_nets(cfg, data.embeddings.shape[1], len(names), len(learnt_tags))
    loss = _train(nets, data, cfg, progress)
    subspace = fit_subspace(data.embeddings)
    bar = distance_bar(data.embeddings, data.embedding_track, cfg.unknown_quantile)
    seconds = time.perf_counter() - started
    segments = len(data.embeddings) if data.spectrograms is None else len(data.spectrograms)
    meta = {"tracks": len(chosen), "segments": segments, "seconds": round(seconds, 2), "loss": round(loss, 5),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    log.info("trained a %s classifier on %d tracks (%d segments) in %.1f s", cfg.model, len(chosen), segments, seconds)
    return (Classifier(cfg, lib.model_id, names, learnt_tags, bar, nets, subspace, meta),
            TrainingReport(cfg.model, names, learnt_tags, len(chosen), segments, seconds, loss, bar))


def _tags_learnable(data: TrainingSet) -> bool:
    """Tags teach something when at least two tracks carry tags and some tag is absent from some of them."""
    tagged = data.tags[data.tagged]
    return tagged.shape[1] > 0 and len(tagged) >= 2 and bool((tagged == 0).any())


def _train(nets: dict, data: TrainingSet, cfg: ClassifierConfig, progress: Progress | None) -> float:
    """Fit the networks; returns the label network's last training loss."""
    import torch

    from .heads import fit, label_weights, soft_cross_entropy, standardise, tag_pos_weights

    torch.manual_seed(cfg.seed)

    def report(stage: str):
        return (lambda epoch, loss: progress(stage, epoch, cfg.epochs)) if progress else None

    if cfg.model == "cnn":
        from .cnn import JointLoss, segment_batch

        net, track = nets["cnn"], data.spectrogram_track
        labels, tags = data.labels[track], data.tags[track][:, : net.n_tags]
        has_tags = data.tagged[track].astype(np.float32)
        weights = label_weights(labels, labels.shape[1]) if cfg.class_weights else None
        pos = tag_pos_weights(tags[has_tags > 0]) if cfg.class_weights and net.n_tags else None
        target = np.concatenate([labels, tags, has_tags[:, None]], axis=1)
        loss_fn = JointLoss(labels.shape[1], net.n_tags, weights, pos)
        return fit(net, data.spectrograms, target, loss_fn, cfg, report("training cnn"), batch=segment_batch)
    track = data.embedding_track
    labels = data.labels[track]
    standardise(nets["labels"], data.embeddings)
    weights = label_weights(labels, labels.shape[1]) if cfg.class_weights else None
    loss = fit(nets["labels"], data.embeddings, labels, soft_cross_entropy(weights), cfg, report("training labels"))
    if "tags" in nets:
        rows = data.tagged[track]
        x, y = data.embeddings[rows], data.tags[track][rows]
        standardise(nets["tags"], x)
        pos = torch.from_numpy(tag_pos_weights(y)) if cfg.class_weights else None
        fit(nets["tags"], x, y, torch.nn.BCEWithLogitsLoss(pos_weight=pos), cfg, report("training tags"))
    return loss
